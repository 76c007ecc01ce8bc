import type { Redis } from 'ioredis';
import { callScript } from '../redis/scripts.js';

/**
 * Registers learned decisions in their pipeline's pending set (decision id → wait-window deadline) in
 * batches: one variadic ZADD per pipeline every `flushMs` (or `maxBatch` entries) instead of a command per
 * allocation. Only the id and the deadline are sent: when a deadline passes without an outcome, the worker
 * builds the default-reward event from the decision record, which is stored anyway (training.ts).
 * A process that dies loses at most one batch of registrations; those decisions then simply never get the
 * default reward (an outcome for them still counts).
 *
 * A decision made on the allocation path is registered only once its record is confirmed written (`hold`, then
 * `settle`): an allocation answered `recorded: false` is never registered, even when its record's write lands
 * later. Its client was told the decision was not recorded and its outcome may have been refused (404) or never
 * sent, so a default reward for it would put a reward nobody observed into the training buffer (and into the
 * activation gate's and drift recovery's evidence); an outcome for it that is accepted later still counts.
 */
/** Longest a registration waits for its record's write to settle (an allocation answers well within it). */
const HOLD_MAX_MS = 60_000;

/**
 * The pipeline a registration is for: its tombstone key (src/pipelines/tombstone.ts) and the version the decision
 * was made with. A batch that lands after the pipeline was deleted registers none of its decisions (learner-register.lua).
 */
export interface PendingGuard {
  readonly tombstone: string;
  readonly version: number;
}

export class PendingBatcher {
  /** Pending zset key → its pipeline's tombstone and the script's arguments (deadline, id, version, …). */
  private readonly batches = new Map<string, { tombstone: string; args: (string | number)[] }>();
  private size = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Registrations waiting for their decision record's write: decision id → (key, deadline, when held). */
  private readonly held = new Map<string, { readonly key: string; readonly deadline: number; readonly at: number; readonly guard: PendingGuard | undefined }[]>();

  constructor(
    private readonly redis: Redis,
    private readonly opts: { readonly flushMs?: number; readonly maxBatch?: number; readonly onError?: (err: unknown) => void } = {},
  ) {}

  /** `key`: the pipeline's pending zset (learnerKeys(…).pending); `guard`: its pipeline (unchecked without). */
  add(key: string, decisionId: string, deadline: number, guard?: PendingGuard): void {
    let b = this.batches.get(key);
    if (!b) {
      b = { tombstone: guard?.tombstone ?? key, args: [] };
      this.batches.set(key, b);
    }
    if (guard) b.tombstone = guard.tombstone;
    b.args.push(deadline, decisionId, guard?.version ?? '');
    if (++this.size >= (this.opts.maxBatch ?? 500)) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.opts.flushMs ?? 50).unref();
  }

  /** Registers a decision once its record is written: `settle(id, true)` adds it, `settle(id, false)` forgets it. */
  hold(key: string, decisionId: string, deadline: number, guard?: PendingGuard): void {
    let h = this.held.get(decisionId);
    if (!h) this.held.set(decisionId, (h = []));
    h.push({ key, deadline, at: Date.now(), guard });
  }

  /** The decision's record was written (`recorded`) or not (the allocation answered `recorded: false`). */
  settle(decisionId: string, recorded: boolean): void {
    const h = this.held.get(decisionId);
    if (!h) return;
    this.held.delete(decisionId);
    if (recorded) for (const r of h) this.add(r.key, decisionId, r.deadline, r.guard);
  }

  /** Registrations still waiting for their record (settled ones are gone). */
  get holding(): number {
    return this.held.size;
  }

  async flush(): Promise<void> {
    // A registration never settled (its allocation failed after deciding) is forgotten after a minute.
    const old = Date.now() - HOLD_MAX_MS;
    for (const [id, h] of this.held) if (h[0]!.at < old) this.held.delete(id);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batches = [...this.batches];
    this.batches.clear();
    this.size = 0;
    await Promise.all(
      batches.map(async ([key, { tombstone, args }]) => {
        try {
          await callScript(this.redis, 'learnerRegister', [key, tombstone], args);
        } catch (err) {
          this.opts.onError?.(err);
        }
      }),
    );
  }
}
