import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.js';
import type { Features } from '../strategies/types.js';

/** What was decided for one request: joined with its outcome later, and the log off-policy evaluation reads. */
export interface DecisionRecord {
  readonly id: string;
  readonly pipeline: string;
  readonly pipelineVersion: number;
  readonly strategy: string;
  readonly strategyVersion: number;
  readonly strategyKind: string;
  readonly reason: string;
  readonly budgets: Readonly<Record<string, number>>;
  readonly totalTokens: number;
  readonly features: Features;
  readonly unitKey?: string;
  /** Epoch ms. */
  readonly ts: number;
  /** Routing details (experiment, variant, phase…) and strategy meta (propensity, model version…). */
  readonly route?: Readonly<Record<string, unknown>>;
  readonly meta?: Readonly<Record<string, unknown>>;
  /** What shadow strategies would have done (see ShadowHook). */
  readonly shadow?: Readonly<Record<string, unknown>>;
}

/** 122 random bits. randomUUID draws from a cached entropy pool: far cheaper per call than randomBytes(16). */
export function newDecisionId(): string {
  return randomUUID();
}

export const DECISION_ID_PATTERN = '^[A-Za-z0-9_-]{16,64}$';

export class DecisionStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ttlSeconds: number,
  ) {}

  async write(record: DecisionRecord): Promise<void> {
    await this.redis.set(this.keys.decision(record.id), JSON.stringify(record), 'EX', this.ttlSeconds);
  }

  async read(id: string): Promise<DecisionRecord | undefined> {
    const json = await this.redis.get(this.keys.decision(id));
    return json ? (JSON.parse(json) as DecisionRecord) : undefined;
  }
}
