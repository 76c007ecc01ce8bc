import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { readDecision } from '../allocation/decisions.js';
import type { ControlView } from '../control/view.js';
import { pipelineTenants, TENANT_PATTERN } from '../http/tenancy.js';
import { overridesOf } from '../kernel/price-overrides.js';
import type { Keys } from '../redis/keys.js';
import { callScript } from '../redis/scripts.js';
import type { CostKeys } from './keys.js';
import type { Pricer } from './pricing.js';
import { contribution, contributionInRange, encodeContribution, priceStamp, rollupNames, STAMP_MARK, stampedOverrides, stampOfApplied, type OverridesFor } from './rollup-vector.js';
import { decodeSpan, encodeSpan, type Span } from './span.js';
import { resolveTrace, type ResolvedTrace } from './tree.js';
import { splitNamespace } from '../http/namespace.js';

export interface IngestResult {
  accepted: number;
  duplicates: number;
  /** Index into the input array and why the span was refused. */
  refused: { index: number; reason: string }[];
}

export interface SpanStoreDeps {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly costKeys: CostKeys;
  readonly pricer: Pricer;
  readonly view: () => ControlView;
  readonly retentionSeconds: number;
  readonly maxSpansPerTrace: number;
  /**
   * Told how many spans a request newly stored and found already stored, once it is over, also when it failed
   * after storing (so the spans a failed request stored are counted once, not as duplicates of its retry).
   */
  readonly count?: (stored: number, duplicates: number) => void;
  /** Where the repair reports a trace it cannot read. */
  readonly log?: Pick<Logger, 'warn'>;
}

interface DecisionInfo {
  readonly pipeline: string;
  readonly budgets: string;
}

/** Bounded memo: cleared whole when full (cheap, and a miss only costs an idempotent write). */
class Memo<V> {
  private readonly m = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    return this.m.get(k);
  }
  set(k: string, v: V): void {
    if (this.m.size >= this.max) this.m.clear();
    this.m.set(k, v);
  }
}

/** Per-tenant overrides from the control plane (`priceOverrides` documents; id = customer or `*`). */
export { overridesOf };

const TRIM_EVERY_MS = 60_000;
const TENANT = new RegExp(TENANT_PATTERN);
/** A repair intent younger than this may belong to a request still in flight: the repair leaves it alone. */
export const REPAIR_GRACE_MS = 60_000;
/** Intents one repair pass reads per shard. */
const REPAIR_BATCH = 200;

/** Removes the entries of a trace or session index (pipeline cost-traces, session listing) scored (epoch ms) more than `retentionSeconds` before `now`; returns how many. */
export function trimTraceIndex(redis: Redis, key: string, retentionSeconds: number, now = Date.now()): Promise<number> {
  return redis.zremrangebyscore(key, '-inf', `(${now - retentionSeconds * 1000}`);
}

/** A trace as one request or repair rebuilt it. */
interface Built {
  readonly traceId: string;
  readonly version: number;
  readonly trace: ResolvedTrace;
  /** Its rollup contribution (see contribution). */
  readonly vector: Map<string, Map<string, number>>;
  readonly stamp: string;
  /** The spans this request newly stored in the trace (index into the request, compact line). */
  readonly stored: readonly { readonly index: number; readonly line: string }[];
}

const OUT_OF_RANGE = (traceId: string) =>
  `trace ${traceId}: with this span its counted tokens or cost would leave the range the showback rollups add exactly (2^53 - 1 per field: about $9M in nano-USD), so it is not stored`;

/**
 * Stores spans and keeps the rollups equal to the trees. Per request: a repair intent per trace in its rollup
 * shard; one Lua call per trace stores its new spans once and returns the trace (compact lines); the trees are
 * rebuilt in memory; the session and pipeline indexes are written (idempotent adds, their TTL refreshed every time);
 * then one Lua call per rollup shard replaces each trace's previous contribution by the new one and drops the
 * intents. A request that fails after storing (a Redis stall, a crash) leaves its intents: `repair` (run by every
 * API process) finishes their traces, whether or not the client retries. All calls go through the auto-pipelined
 * connection.
 */
export class SpanStore {
  private readonly decisions = new Memo<DecisionInfo | null>(50_000);
  /** Pipeline trace index → when this process last trimmed it (epoch ms). */
  private readonly trimmed = new Map<string, number>();

  constructor(private readonly d: SpanStoreDeps) {}

  /** Builds and prices a trace with the given overrides (default: the current ones). */
  resolve(traceId: string, spans: readonly Span[], overridesFor: OverridesFor = overridesOf(this.d.view())): ResolvedTrace {
    return resolveTrace(traceId, spans, { pricer: this.d.pricer, overridesFor });
  }

  async ingest(spans: readonly Span[]): Promise<IngestResult> {
    const byTrace = new Map<string, number[]>();
    spans.forEach((s, i) => {
      let l = byTrace.get(s.traceId);
      if (!l) byTrace.set(s.traceId, (l = []));
      l.push(i);
    });
    const result: IngestResult = { accepted: 0, duplicates: 0, refused: [] };
    if (byTrace.size === 0) return result;
    // One set of overrides for the whole request: the rollups and the price stamp must agree.
    const overridesFor = overridesOf(this.d.view());
    const intents = await this.intend([...byTrace.keys()]);
    try {
      const built = await Promise.all(
        [...byTrace].map(async ([traceId, idx]): Promise<Built> => {
          // One argument for the whole batch (its lines joined), not two per span: fewer buffers to write.
          const lines = idx.map((i) => encodeSpan(spans[i]!));
          const res = await callScript(
            this.d.redis,
            'spanIngest',
            [this.d.costKeys.traceSpans(traceId), this.d.costKeys.traceVersion(traceId)],
            [this.d.retentionSeconds, this.d.maxSpansPerTrace, lines.join('\n')],
          );
          const { version, statuses, lines: others } = res;
          // The trace = the spans this call stored (already decoded) + the others the script returned.
          const all: Span[] = [];
          const stored: { index: number; line: string }[] = [];
          idx.forEach((i, k) => {
            const st = statuses[k];
            if (st === '1') {
              result.accepted++;
              all.push(spans[i]!);
              stored.push({ index: i, line: lines[k]! });
            } else if (st === '0') result.duplicates++;
            else result.refused.push({ index: i, reason: `trace ${traceId} already holds ${this.d.maxSpansPerTrace} spans (APPORTION_MAX_SPANS_PER_TRACE)` });
          });
          for (const l of others) all.push(decodeSpan(traceId, l));
          const trace = this.resolve(traceId, all, overridesFor);
          return { traceId, version, trace, vector: contribution(trace), stamp: priceStamp(trace, overridesFor), stored };
        }),
      );
      const inRange = built.filter((t) => contributionInRange(t.vector));
      const outOfRange = built.filter((t) => !contributionInRange(t.vector));
      await this.index(inRange);
      const statuses = await this.applyRollups(inRange, intents);
      await this.takeBack([...outOfRange, ...inRange.filter((_, i) => statuses[i] === -1)], result);
      return result;
    } finally {
      this.d.count?.(result.accepted, result.duplicates);
    }
  }

  /**
   * Writes the request's repair intents (one member per trace, in the trace's rollup shard) before anything is
   * stored, and answers them: the rollup call that applies the traces removes them.
   */
  private async intend(traceIds: readonly string[], now = Date.now()): Promise<Map<number, string[]>> {
    const nonce = randomBytes(6).toString('hex');
    const byShard = new Map<number, string[]>();
    for (const t of traceIds) {
      const s = this.d.costKeys.shardOf(t);
      let l = byShard.get(s);
      if (!l) byShard.set(s, (l = []));
      l.push(`${nonce}/${t}`);
    }
    await Promise.all([...byShard].map(([s, members]) => this.d.redis.zadd(this.d.costKeys.repair(s), ...members.flatMap((m) => [now, m]))));
    return byShard;
  }

  /**
   * Refuses the spans this request stored in traces that cannot be rolled up (their contribution out of range):
   * removes them again, so the trace holds what its applied contribution counts, and reports them per span.
   */
  private async takeBack(traces: readonly Built[], result: IngestResult): Promise<void> {
    await Promise.all(
      traces.map(async (t) => {
        if (t.stored.length === 0) return;
        await callScript(this.d.redis, 'spanUnstore', [this.d.costKeys.traceSpans(t.traceId), this.d.costKeys.traceVersion(t.traceId)], [t.stored.map((s) => s.line).join('\n')]);
        result.accepted -= t.stored.length;
        for (const s of t.stored) result.refused.push({ index: s.index, reason: OUT_OF_RANGE(t.traceId) });
      }),
    );
  }

  /**
   * Finishes the traces of requests that stored spans but failed before their rollup (the intents older than
   * `graceMs`): each trace is read whole, indexed and rolled up, and its intents dropped. Idempotent, like the
   * request path it repeats, so several processes may run it at once. Answers how many traces it repaired.
   */
  async repair(now = Date.now(), graceMs = REPAIR_GRACE_MS): Promise<number> {
    const ck = this.d.costKeys;
    let repaired = 0;
    for (let shard = 0; shard < ck.shards; shard++) {
      const members = await this.d.redis.zrangebyscore(ck.repair(shard), '-inf', now - graceMs, 'LIMIT', 0, REPAIR_BATCH);
      if (members.length === 0) continue;
      const traceOf = (m: string) => m.slice(m.indexOf('/') + 1);
      const traceIds = [...new Set(members.map(traceOf))];
      const overridesFor = overridesOf(this.d.view());
      const failed = new Set<string>();
      const built = await Promise.all(
        traceIds.map(async (traceId): Promise<Built | undefined> => {
          try {
            // The version first, then the spans: a contribution never claims a newer version than what it counts.
            const version = Number((await this.d.redis.get(ck.traceVersion(traceId))) ?? 0);
            const lines = await this.d.redis.hvals(ck.traceSpans(traceId));
            // Nothing stored (the request failed before): nothing to finish.
            if (lines.length === 0) return undefined;
            const trace = this.resolve(traceId, lines.map((l) => decodeSpan(traceId, l)), overridesFor);
            return { traceId, version, trace, vector: contribution(trace), stamp: priceStamp(trace, overridesFor), stored: [] };
          } catch (err) {
            // One unreadable trace does not hold up the others; its intent stays for the next pass.
            this.d.log?.warn({ err, traceId }, 'span repair could not read the trace');
            failed.add(traceId);
            return undefined;
          }
        }),
      );
      // A trace out of the rollups' range (possible only for spans stored before the range was enforced) is left as is.
      const ready = built.filter((t): t is Built => t !== undefined && contributionInRange(t.vector));
      await this.index(ready);
      await this.applyRollups(ready, new Map([[shard, members.filter((m) => !failed.has(traceOf(m)))]]));
      repaired += ready.length;
    }
    return repaired;
  }

  /**
   * Replaces each trace's contribution in the rollups (idempotent; see cost-rollup.lua), with the price stamp its
   * cost tree is read with (see priceStamp), and removes the given repair intents. Answers the script's status per
   * trace, in order: 1 applied, 0 an equal or newer one was, -1 refused (out of range, nothing written).
   */
  async applyRollups(traces: readonly Omit<Built, 'stored'>[], intents: ReadonlyMap<number, readonly string[]> = new Map()): Promise<number[]> {
    // One script call per rollup shard (one call when the layout is unsharded): all its keys share the slot.
    const byShard = new Map<number, number[]>();
    const at = (s: number) => {
      let l = byShard.get(s);
      if (!l) byShard.set(s, (l = []));
      return l;
    };
    traces.forEach((t, i) => at(this.d.costKeys.shardOf(t.traceId)).push(i));
    for (const s of intents.keys()) at(s);
    const statuses: number[] = traces.map(() => 0);
    await Promise.all(
      [...byShard].map(async ([shard, idx]) => {
        const group = idx.map((i) => traces[i]!);
        const removed = intents.get(shard) ?? [];
        const names = new Set<string>();
        for (const t of group) for (const n of rollupNames(t.trace)) names.add(n);
        const nameList = [...names];
        const keys = [...group.map((t) => this.d.costKeys.applied(t.traceId)), this.d.costKeys.repair(shard), ...nameList.map((n) => this.d.costKeys.rollup(n, shard))];
        const args: (string | number)[] = [group.length, this.d.retentionSeconds, removed.length, ...nameList];
        for (const t of group) args.push(t.version, encodeContribution(t.vector) + STAMP_MARK + t.stamp);
        args.push(...removed);
        const res = await callScript(this.d.redis, 'costRollup', keys, args);
        idx.forEach((i, k) => (statuses[i] = res[k] ?? 0));
      }),
    );
    return statuses;
  }

  /**
   * Session → traces and pipeline → decisions/traces indexes, written on every write of the trace (idempotent adds)
   * with the trace's TTL, so an index lives as long as the traces it lists.
   */
  private async index(traces: readonly { traceId: string; trace: ResolvedTrace }[]): Promise<void> {
    const r = this.d.redis;
    const ck = this.d.costKeys;
    const ttl = this.d.retentionSeconds;
    const now = Date.now();
    const writes: Promise<unknown>[] = [];
    for (const { traceId, trace } of traces) {
      const sessions = new Set<string>();
      const decisions = new Set<string>();
      for (const n of trace.nodes) {
        sessions.add(n.sessionId);
        if (n.decisionId) decisions.add(n.decisionId);
      }
      for (const s of sessions) {
        writes.push(r.sadd(ck.sessionTraces(s), traceId), r.expire(ck.sessionTraces(s), ttl));
        // The session listing's indexes (by last write, so the console lists the newest first): every session's,
        // and its tenant's when the id is namespaced.
        const { tenant, local } = splitNamespace(s);
        const bare = local.startsWith('trace-');
        const indexes = [ck.sessionIndex(ck.shardOf(s), bare), ...(tenant !== null && TENANT.test(tenant) ? [ck.tenantSessionIndex(tenant, bare)] : [])];
        for (const z of indexes) writes.push(r.zadd(z, now, s), r.expire(z, ttl), this.trim(z, now));
      }
      for (const d of decisions) {
        writes.push(
          this.decision(d).then(async (info) => {
            if (!info) return;
            // A tenant's trace (`<tenant>~<id>`) joins only its own pipelines' envelopes: naming another tenant's
            // decision id does not put its spans there. Operator traces are indexed as given.
            const { tenant } = splitNamespace(traceId);
            if (tenant !== null && pipelineTenants(this.d.view()).get(info.pipeline) !== tenant) return;
            const z = ck.pipelineTraces(info.pipeline);
            const budget = ck.pipelineBudget(info.pipeline, d);
            await Promise.all([
              r.zadd(z, 'NX', Date.now(), `${d}/${traceId}`),
              r.expire(z, ttl),
              r.set(budget, info.budgets, 'EX', ttl, 'NX'),
              r.expire(budget, ttl),
              this.trim(z),
            ]);
          }),
        );
      }
    }
    await Promise.all(writes);
  }

  /**
   * Drops index entries older than the retention (the index's own TTL only helps an index no longer written to): at most once a minute per index and process, so a busy pipeline's index holds one retention's worth.
   */
  private async trim(z: string, now = Date.now()): Promise<void> {
    const last = this.trimmed.get(z) ?? 0;
    if (now - last < TRIM_EVERY_MS) return;
    this.trimmed.set(z, now);
    await trimTraceIndex(this.d.redis, z, this.d.retentionSeconds, now);
  }

  private async decision(id: string): Promise<DecisionInfo | null> {
    const hit = this.decisions.get(id);
    if (hit !== undefined) return hit;
    const rec = await readDecision(this.d.redis, this.d.keys, id);
    // Served models ride along under `@models` (agent names cannot contain `@`), for the per-model envelopes.
    const info: DecisionInfo | null = rec ? { pipeline: rec.pipeline, budgets: JSON.stringify(rec.models ? { ...rec.budgets, '@models': rec.models } : rec.budgets) } : null;
    // An unknown decision is not remembered: its record may simply not be written yet.
    if (info) this.decisions.set(id, info);
    return info;
  }

  /**
   * Reads and resolves whole traces, priced with the overrides their rollup contribution was summed with (the
   * current ones for a trace never rolled up), so trees and showback agree after an override changes.
   */
  async readTraces(traceIds: readonly string[]): Promise<ResolvedTrace[]> {
    const [all, applied] = await Promise.all([
      Promise.all(traceIds.map((t) => this.d.redis.hvals(this.d.costKeys.traceSpans(t)))),
      Promise.all(traceIds.map((t) => this.d.redis.get(this.d.costKeys.applied(t)))),
    ]);
    return traceIds.flatMap((t, i) => {
      const lines = all[i]!;
      if (!lines.length) return [];
      const stamp = stampOfApplied(applied[i]!);
      return [this.resolve(t, lines.map((l) => decodeSpan(t, l)), stamp !== undefined ? stampedOverrides(stamp) : undefined)];
    });
  }
}

