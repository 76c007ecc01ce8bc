import { Type } from '@sinclair/typebox';
import type { Redis } from 'ioredis';
import type { ControlKind } from '../control/kinds.js';
import type { Versioned } from '../control/store.js';
import type { Keys } from '../redis/keys.js';
import { pipelineRef, type PipelineRef } from '../pipelines/service.js';
import { strategyRef, type StrategyRef } from '../strategies/service.js';
import { jsonDecoder } from '../redis/decode.js';
import { callScript } from '../redis/scripts.js';
import { AppError } from '../errors/app-error.js';
import { StoredExperimentDoc, type ExperimentDoc } from './schema.js';


/** One entry of an experiment's audit trail. */
export interface AuditEntry {
  readonly at: number;
  /** Who: `key:<fingerprint>` of the admin key, `anonymous` without auth, or `system:<job>`. */
  readonly by: string;
  readonly action: string;
  readonly version?: number;
  readonly details?: unknown;
}

/** A fresh, consistent read of what experiment writes depend on. */
export interface ExperimentsState {
  /** The experiments write sequence (bumped by every experiment write; a new experiment's generation is seq + 1). */
  readonly seq: number;
  /** The guards' counters as read (absent: 0); see `ExperimentStore.write`. */
  readonly guards: ReadonlyMap<string, number>;
  readonly experiments: ReadonlyMap<string, Versioned<ExperimentDoc>>;
  /** Pipelines and strategies as their domains read them (`PipelineRef`, `StrategyRef`), never their raw documents. */
  readonly pipelines: ReadonlyMap<string, PipelineRef>;
  readonly strategies: ReadonlyMap<string, StrategyRef>;
}

export interface DocWrite {
  readonly kind: ControlKind;
  readonly id: string;
  /** The new document, or null to delete it. */
  readonly doc: unknown;
  /** Version read (0 = absent), or -1 to skip the check. */
  readonly expectedVersion: number;
  /** Only check the version (a document the change was validated against); `doc` is ignored. Never first. */
  readonly checkOnly?: true;
}

export class WriteConflict extends Error {
  constructor(readonly which: string) {
    super(`concurrent change to ${which}`);
  }
}

const AUDIT_CAP = 1000;

const decodeExperiment = jsonDecoder(StoredExperimentDoc);

const decodeAudit = jsonDecoder(
  Type.Object({ at: Type.Number(), by: Type.String(), action: Type.String(), version: Type.Optional(Type.Number()), details: Type.Optional(Type.Unknown()) }),
);

/**
 * Experiments in the control plane. Reads go straight to Redis (not the snapshot) so that a lifecycle
 * change is computed from the latest state; writes are optimistic on exactly what the change depends on:
 * each document's version (two admins, or an admin and the guardrail job, never interleave on one
 * experiment) and the guards it names (the layer slots or the holdout it was validated against). Writes of
 * unrelated experiments never conflict.
 */
export class ExperimentStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  seqKey(): string {
    return `${this.keys.configKind('experiments')}:seq`;
  }

  /** Guard name → counter (rollout-write.lua), in the {config} slot with the documents. */
  guardsKey(): string {
    return `${this.keys.configKind('experiments')}:guards`;
  }

  /** Experiment id → the sequence its delete made, until the id is created again (rollout-write.lua). */
  deletedKey(): string {
    return `${this.keys.configKind('experiments')}:deleted`;
  }

  auditKey(id: string): string {
    return `${this.keys.configKind('experiments')}:audit:${id}`;
  }

  /**
   * The read of every read-modify-write of experiments. A stored experiment document that does not decode
   * (`StoredExperimentDoc`) refuses the write: it throws `EXPERIMENT_UNREADABLE` naming the documents, and
   * nothing is written, so an unreadable document is never overwritten (nor ignored by the layer and holdout
   * checks, which look at every experiment) until it is repaired or removed in Redis.
   */
  async read(): Promise<ExperimentsState> {
    const m = this.redis.multi();
    m.get(this.seqKey());
    m.hgetall(this.guardsKey());
    for (const kind of ['experiments', 'pipelines', 'strategies'] as const) {
      m.hgetall(this.keys.configKind(kind));
      m.hgetall(this.keys.configVersions(kind));
    }
    const res = await m.exec();
    if (!res) throw new Error('experiments read aborted');
    const val = (i: number): unknown => {
      const e = res[i];
      if (!e) throw new Error('experiments read: missing reply');
      if (e[0]) throw e[0];
      return e[1];
    };
    const parse = <T>(i: number, read: (json: string) => T): Map<string, Versioned<T>> => {
      const docs = val(i) as Record<string, string>;
      const versions = val(i + 1) as Record<string, string>;
      const out = new Map<string, Versioned<T>>();
      for (const [id, json] of Object.entries(docs)) out.set(id, { id, version: Number(versions[id] ?? 1), doc: read(json) });
      return out;
    };
    const experiments = new Map<string, Versioned<ExperimentDoc>>();
    const unreadable: string[] = [];
    for (const [id, v] of parse(2, (json) => json)) {
      const doc = decodeExperiment(v.doc);
      if (doc) experiments.set(id, { ...v, doc });
      else unreadable.push(id);
    }
    if (unreadable.length > 0) {
      const ids = unreadable.map((id) => `"${id}"`).join(', ');
      throw new AppError(
        'EXPERIMENT_UNREADABLE',
        `params/id: the stored experiment document ${ids} (hash ${this.keys.configKind('experiments')}) is not a valid experiment; writes to experiments are refused until it is repaired or removed`,
      );
    }
    const guards = new Map(Object.entries(val(1) as Record<string, string>).map(([k, n]) => [k, Number(n)]));
    return {
      seq: Number(val(0) ?? 0),
      guards,
      experiments,
      pipelines: new Map([...parse(4, (json) => JSON.parse(json) as Record<string, unknown>)].map(([id, v]) => [id, pipelineRef(v)])),
      strategies: new Map([...parse(6, (json) => JSON.parse(json) as Record<string, unknown>)].map(([id, v]) => [id, strategyRef(v)])),
    };
  }

  /**
   * Writes documents as one change computed from `st`; returns the first document's (the experiment's) new
   * version. It applies only when every document still has its expected version and every guard in `guards`
   * still has the counter read in `st` (each is then bumped). Throws WriteConflict.
   */
  async write(st: ExperimentsState, experimentId: string, docs: readonly DocWrite[], guards: readonly string[], audit: AuditEntry | undefined): Promise<number> {
    const keys = [this.keys.configVersion(), this.seqKey(), this.auditKey(experimentId), this.guardsKey(), this.deletedKey()];
    const args: (string | number)[] = [this.keys.configChannel(), st.seq, audit ? JSON.stringify(audit) : '', AUDIT_CAP, docs.length, guards.length];
    for (const d of docs) {
      keys.push(this.keys.configKind(d.kind), this.keys.configVersions(d.kind));
      args.push(d.id, d.checkOnly ? '-' : d.doc === null ? '' : JSON.stringify(d.doc), d.expectedVersion);
    }
    for (const g of guards) args.push(g, st.guards.get(g) ?? 0);
    const v = await callScript(this.redis, 'rolloutWrite', keys, args);
    if (v === -1) throw new WriteConflict('experiments');
    if (v < -1) {
      const d = docs[-v - 2]!;
      throw new WriteConflict(`${d.kind}/${d.id}`);
    }
    return v;
  }

  async auditTrail(id: string, limit = 100): Promise<AuditEntry[]> {
    const rows = await this.redis.lrange(this.auditKey(id), 0, limit - 1);
    return rows.flatMap((r) => {
      const e = decodeAudit(r);
      return e ? [e] : [];
    });
  }

  async deleteAudit(id: string): Promise<void> {
    await this.redis.del(this.auditKey(id));
  }
}
