import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { RedisClock } from '../redis/clock.js';
import { GroupCommitter } from '../redis/group-commit.js';
import type { Keys } from '../redis/keys.js';
import { callScript } from '../redis/scripts.js';
import type { DecisionRecord, DefaultClaim } from '../kernel/decision.js';
import { bucketField, decodeRecords, encodeRecord, packBatch, RecordDictionary } from './record-codec.js';
/**
 * What was decided for one request: joined with its outcome later, and the log off-policy evaluation reads.
 * The engine's record type (`@apportion/sdk/engine`), which builds it for the server and for the SDK's local mode;
 * `routing` is the routing stage of the logging policy when it was random (see DecisionRouting there).
 */
export type { DecisionRecord, DecisionRouting, RouteAlternative } from '../kernel/decision.js';

/**
 * `<epoch second, base 36>-<UUID>`: 122 random bits, and the second the decision was made, which names the
 * time bucket its record is stored in (so reading it needs no index). randomUUID draws from a cached entropy
 * pool: far cheaper per call than randomBytes(16).
 */
export function newDecisionId(now = Date.now()): string {
  return `${Math.floor(now / 1000).toString(36)}-${randomUUID()}`;
}

export { DECISION_ID_PATTERN } from '../kernel/decision.js';

/** The epoch second a decision id was made in, or undefined for ids without a (plausible) time prefix. */
export function decisionSecond(id: string): number | undefined {
  const dash = id.indexOf('-');
  // A time prefix is 6–7 base-36 digits; a bare UUID's first group is 8 hex digits.
  if (dash < 6 || dash > 7) return undefined;
  const sec = parseInt(id.slice(0, dash), 36);
  // Plausible: after 2017 and not in the future (beyond a day of clock skew).
  return sec > 1_500_000_000 && sec < Date.now() / 1000 + 86_400 ? sec : undefined;
}

/** Reads one decision record; undefined when gone (or unreadable, or its id has no time prefix: none is stored). */
export async function readDecision(redis: Redis, keys: Keys, id: string): Promise<DecisionRecord | undefined> {
  return (await readDecisions(redis, keys, [id]))[0];
}

/**
 * Reads many decision records (undefined where gone), in the order of `ids`: one HMGET per time bucket rather
 * than a command per record (the default-reward sweep reads thousands at a time). A record is looked up under
 * its bucket field (16 bytes of its UUID, or the id itself for other id forms, see record-codec.ts). Every id
 * the API accepts for a new decision has a time prefix (allocation and sync check it), so an id without one has
 * no record.
 */
export async function readDecisions(redis: Redis, keys: Keys, ids: readonly string[]): Promise<(DecisionRecord | undefined)[]> {
  const raw: (Buffer | null)[] = new Array<Buffer | null>(ids.length).fill(null);
  const buckets = new Map<string, number[]>();
  ids.forEach((id, i) => {
    const sec = decisionSecond(id);
    if (sec === undefined) return;
    const bucket = keys.decisionBucket(sec, keys.shardOf(id));
    let at = buckets.get(bucket);
    if (!at) buckets.set(bucket, (at = []));
    at.push(i);
  });
  await Promise.all(
    [...buckets].map(async ([bucket, at]) => {
      const got = await redis.hmgetBuffer(bucket, ...at.map((i) => bucketField(ids[i]!)));
      at.forEach((i, j) => (raw[i] = got[j] ?? null));
    }),
  );
  return decodeRecords(ids, raw, RecordDictionary.for(redis, keys));
}

/** Reads one decision record as JSON (the whole record, whichever encoding stored it); null when gone. */
export async function readDecisionJson(redis: Redis, keys: Keys, id: string): Promise<string | null> {
  const r = await readDecision(redis, keys, id);
  return r ? JSON.stringify(r) : null;
}

/** Reads many decision records as JSON (null where gone), in the order of `ids`. */
export async function readDecisionJsons(redis: Redis, keys: Keys, ids: readonly string[]): Promise<(string | null)[]> {
  return (await readDecisions(redis, keys, ids)).map((r) => (r ? JSON.stringify(r) : null));
}

/**
 * Decision records, in one hash per second of decisions (`<p>:{decisions:<second>}`; with a sharded layout one
 * hash per second and shard, `<p>:{decisions:<second>:<shard>}`, see keys.ts), field = the 16 bytes of
 * the id's UUID (the bucket already names the second), value = the compact record (record-codec.ts): the
 * strings every record of a strategy repeats (pipeline, strategy, reason, agent and feature names) are written
 * once to a dictionary and referenced by number. Writes are group-committed: the records of one event-loop turn
 * go to Redis as one script call per bucket, not one SET each — a Redis command costs the client ~10 µs of CPU,
 * several times the rest of an allocation. The bucket expires one second after its second's reward window, so a
 * record lives between the reward window and one second more. A bucket holds one second of decisions, so
 * expiring it frees a bounded amount at once.
 */
/** The field of a decision's outcome receipt in its bucket: the record's field and '!' (no record field ends so). */
export function receiptField(id: string): Buffer {
  const f = bucketField(id);
  return Buffer.concat([typeof f === 'string' ? Buffer.from(f, 'utf8') : f, RECEIPT_SUFFIX]);
}
const RECEIPT_SUFFIX = Buffer.from('!');

/**
 * What outcome intake learned from writing a decision's receipt (outcome-receipt.lua): `new` (this report is the
 * decision's first; `learner`: whether it is the decision's learner event, false once the default-reward sweep claimed
 * the decision), `same` (the same report was received before: a retry, answered with the first's receipt), `conflict`
 * (another report was received first), `gone` (no record).
 */
export type OutcomeReceipt =
  | { readonly kind: 'new' | 'same'; readonly learner: boolean; readonly receivedAt: number; readonly written: string; readonly previous: string }
  | { readonly kind: 'conflict' }
  | { readonly kind: 'gone' };

/**
 * How long after the end of its second (its id's time prefix) a decision's record may still be written, ms, for a given
 * `APPORTION_REDIS_COMMAND_TIMEOUT_MS`: 7 s, or 2 × the command timeout + 1 s when that is longer (see "pending
 * deadline" below).
 */
export const decisionPendingMs = (commandTimeoutMs: number): number => Math.max(7000, 2 * commandTimeoutMs + 1000);

/**
 * How long after a decision's pending deadline outcome intake still answers DECISION_PENDING, ms: more than the error
 * of this host's estimate of Redis's clock (RedisClock: at most half of a 250 ms round trip).
 */
export const PENDING_MARGIN_MS = 500;

/** A decision record refused by Redis because its deadline had passed when its write ran: nothing of it was written. */
export class RecordDeadlineError extends Error {
  constructor(id: string) {
    super(`decision record ${id} not written: its write reached Redis after the record's deadline`);
    this.name = 'RecordDeadlineError';
  }
}

/**
 * Options of the decision store.
 *
 * **Pending deadline.** A decision's record is written only before its deadline, on Redis's clock (the write script
 * compares it with `TIME` and writes nothing past it): the end of the decision's second plus `pendingMs`, or, for an id
 * the client chose whose second is older than that, the moment its writer's answer is due (the write wait, less the
 * error of the clock estimate). A record whose write is not confirmed within the write wait (`recorded: false`) stays
 * queued for a write slot until its deadline, and is sent when one frees. Outcome intake answers DECISION_PENDING for
 * an unreadable record until `PENDING_MARGIN_MS` after the same deadline (`mayStillLand`) and DECISION_NOT_FOUND after
 * it, when the record can no longer appear.
 */
export interface DecisionStoreOptions {
  /** How long after the end of a decision's second its record may still be written, ms. Default decisionPendingMs(1000). */
  readonly pendingMs?: number;
  /** This process's estimate of Redis's clock. Default: one of the store's own. */
  readonly clock?: RedisClock;
  /**
   * Called for each record dropped unsent: its writer had stopped waiting (`recorded: false`) and its pending deadline
   * passed while it still waited for a write slot, so it was never sent and will never be written.
   */
  readonly onDropped?: (record: DecisionRecord) => void;
}

export class DecisionStore {
  private readonly committer: GroupCommitter<DecisionRecord>;
  /** Records written with `nx` that found their id taken (their write promise then answers `taken`). */
  private readonly nx = new WeakSet<DecisionRecord>();
  private readonly taken = new WeakSet<DecisionRecord>();
  /** Records Redis refused because their deadline had passed (their write promise then rejects with RecordDeadlineError). */
  private readonly late = new WeakSet<DecisionRecord>();
  /** Each queued record's deadline, epoch ms on Redis's clock. */
  private readonly deadlines = new WeakMap<DecisionRecord, number>();
  private readonly dict: RecordDictionary;
  private readonly pendingMs: number;
  private readonly clock: RedisClock;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ttlSeconds: number,
    /** Longest an allocation waits for its record, in ms (then it answers `recorded: false`). Default: no bound of its own. */
    private readonly writeWaitMs?: number,
    opts: DecisionStoreOptions = {},
  ) {
    this.dict = RecordDictionary.for(redis, keys);
    this.pendingMs = opts.pendingMs ?? decisionPendingMs(1000);
    this.clock = opts.clock ?? new RedisClock({ redis });
    this.committer = new GroupCommitter<DecisionRecord>((records) => this.flush(records), {
      maxBatch: 400,
      maxInFlight: 4,
      // A record whose writer stopped waiting stays queued until its deadline: it may still land until then.
      ...(writeWaitMs !== undefined ? { itemTimeoutMs: writeWaitMs, keepUntil: (r: DecisionRecord) => this.deadlineOf(r), clock: () => this.clock.now() } : {}),
      ...(opts.onDropped ? { onDrop: opts.onDropped } : {}),
    });
  }

  /** The pending deadline of a decision made in epoch second `sec`, epoch ms on Redis's clock. */
  private pendingDeadline(sec: number): number {
    return (sec + 1) * 1000 + this.pendingMs;
  }

  private deadlineOf(record: DecisionRecord): number {
    return this.deadlines.get(record) ?? this.pendingDeadline(decisionSecond(record.id) ?? Math.floor(record.ts / 1000));
  }

  /** This process's estimate of Redis's clock now, epoch ms (what `mayStillLand` is given). */
  redisNow(): number {
    return this.clock.now();
  }

  /**
   * Whether the record of decision `id`, not readable by a read sent at `readAt` (Redis's clock, `redisNow()` taken
   * before the read), may still be written: its pending deadline (plus PENDING_MARGIN_MS) had not passed. False for
   * an id without a time prefix (none is ever stored).
   */
  mayStillLand(id: string, readAt: number): boolean {
    const sec = decisionSecond(id);
    return sec !== undefined && readAt < this.pendingDeadline(sec) + PENDING_MARGIN_MS;
  }

  /**
   * Resolves once the record is in Redis (`written`); rejects when it is not there within the write wait (it may
   * still land until its deadline, see DecisionStoreOptions), or with RecordDeadlineError when Redis refused it as
   * past its deadline. With `nx` (a decision id the client chose) the record is written only if no record holds the
   * id: `taken` otherwise, and the recorded decision is left as it was.
   */
  async write(record: DecisionRecord, opts: { readonly nx?: boolean } = {}): Promise<'written' | 'taken'> {
    if (opts.nx) this.nx.add(record);
    // The decision's pending deadline; for an id whose second is older than that (a client's), the writer's answer:
    // a record not confirmed by then must not land after its writer was answered (less the clock estimate's error, at
    // most half its largest round trip).
    const wait = this.writeWaitMs ?? this.pendingMs;
    const answerDue = this.clock.now() + wait - Math.min(this.clock.maxRttMs / 2, wait / 2);
    this.deadlines.set(record, Math.max(this.deadlineOf(record), answerDue));
    await this.committer.submit(record);
    if (this.late.has(record)) throw new RecordDeadlineError(record.id);
    return this.taken.has(record) ? 'taken' : 'written';
  }

  /**
   * Writes the outcome receipt of a decision (outcome-receipt.lua): first report wins, an identical one is a retry,
   * a different one a conflict; `fingerprint` names the report (11 characters).
   */
  async receipt(id: string, fingerprint: string): Promise<OutcomeReceipt> {
    const sec = decisionSecond(id);
    if (sec === undefined) return { kind: 'gone' };
    const written = fingerprint;
    const r = await callScript(this.redis, 'outcomeReceipt', [this.keys.decisionBucket(sec, this.keys.shardOf(id))], ['put', bucketField(id), receiptField(id), written]);
    if (r[0] === 'new' || r[0] === 'same') {
      const flag = r[1] ?? 'L';
      const at = r[2] ?? '0';
      return { kind: r[0], learner: flag === 'L', receivedAt: Number(at), written: `${flag}${fingerprint}${at}`, previous: r[3] ?? '' };
    }
    return { kind: r[0] === 'conflict' ? 'conflict' : 'gone' };
  }

  /** Withdraws a receipt this process wrote (`new`) for an outcome that was certainly not queued; false when it was not there any more. */
  async dropReceipt(id: string, receipt: { readonly written: string; readonly previous: string }): Promise<boolean> {
    const sec = decisionSecond(id);
    if (sec === undefined) return false;
    const r = await callScript(this.redis, 'outcomeReceipt', [this.keys.decisionBucket(sec, this.keys.shardOf(id))], ['drop', bucketField(id), receiptField(id), receipt.written, receipt.previous]);
    return r[0] === 'dropped';
  }

  /**
   * The default-reward sweep's claim on due decisions (decision-claim.lua), in the order of `ids`: each decision
   * without an outcome receipt is marked defaulted, so an outcome received later is not logged for the learner
   * beside its default reward; undefined where the record is gone.
   */
  async claimForDefault(ids: readonly string[]): Promise<(DefaultClaim | undefined)[]> {
    const receipts: string[] = new Array<string>(ids.length).fill('');
    const buckets = new Map<string, number[]>();
    ids.forEach((id, i) => {
      const sec = decisionSecond(id);
      if (sec === undefined) return;
      const bucket = this.keys.decisionBucket(sec, this.keys.shardOf(id));
      let at = buckets.get(bucket);
      if (!at) buckets.set(bucket, (at = []));
      at.push(i);
    });
    await Promise.all(
      [...buckets].map(async ([bucket, at]) => {
        const got = await callScript(this.redis, 'decisionClaim', [bucket], at.flatMap((i) => [bucketField(ids[i]!), receiptField(ids[i]!)]));
        at.forEach((i, j) => (receipts[i] = got[j] ?? ''));
      }),
    );
    const records = await this.readMany(ids);
    return ids.map((_, i) => {
      const record = records[i];
      const r = receipts[i]!;
      if (!record || r === '') return undefined;
      if (r === 'D' || r.length < 13) return { record };
      return { record, outcome: { learner: r[0] === 'L', receivedAt: Number(r.slice(12)) } };
    });
  }

  read(id: string): Promise<DecisionRecord | undefined> {
    return readDecision(this.redis, this.keys, id);
  }

  /** Many records (undefined where gone), in the order of `ids` (see readDecisions). */
  readMany(ids: readonly string[]): Promise<(DecisionRecord | undefined)[]> {
    return readDecisions(this.redis, this.keys, ids);
  }

  private async flush(records: readonly DecisionRecord[]): Promise<void> {
    await this.dict.register(records);
    // Dictionary entries no record can refer to any more go (at most once a minute; a failure is retried then).
    void this.dict.prune(this.ttlSeconds).catch(() => undefined);
    // One script call per bucket: per second, and per shard of the second when the layout is sharded.
    // One call per bucket and deadline: the records of one second share their deadline, but for ids a client chose
    // with an older second (see `write`).
    const calls = new Map<string, { key: string; sec: number; deadline: number; nx: boolean; records: DecisionRecord[] }>();
    for (const r of records) {
      const sec = decisionSecond(r.id) ?? Math.floor(r.ts / 1000);
      const key = this.keys.decisionBucket(sec, this.keys.shardOf(r.id));
      const deadline = this.deadlineOf(r);
      // A decision id the client chose is written only if it is free (decisions-put-nx.lua).
      const nx = this.nx.has(r);
      const at = `${nx ? 'n' : 'p'}${deadline} ${key}`;
      let c = calls.get(at);
      if (!c) calls.set(at, (c = { key, sec, deadline, nx, records: [] }));
      c.records.push(r);
    }
    await Promise.all(
      [...calls.values()].map(async ({ key, sec, deadline, nx, records: rs }) => {
        const args = [sec + this.ttlSeconds + 1, packBatch(rs.flatMap((r) => [bucketField(r.id), encodeRecord(r, this.dict)])), deadline] as const;
        if (!nx) {
          if ((await callScript(this.redis, 'decisionsPut', [key], args)) === -1) for (const r of rs) this.late.add(r);
          return;
        }
        const got = await callScript(this.redis, 'decisionsPutNx', [key], args);
        if (got[0] === -1) for (const r of rs) this.late.add(r);
        else rs.forEach((r, i) => got[i] === 0 && this.taken.add(r));
      }),
    );
  }
}
