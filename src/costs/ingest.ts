import type { Redis } from 'ioredis';
import { readDecision } from '../allocation/decisions.js';
import type { ControlView } from '../control/view.js';
import { pipelineTenants } from '../http/tenancy.js';
import { overridesOf } from '../kernel/price-overrides.js';
import type { Keys } from '../redis/keys.js';
import { callScript } from '../redis/scripts.js';
import type { CostKeys } from './keys.js';
import type { Pricer } from './pricing.js';
import { contribution, encodeContribution, priceStamp, rollupNames, STAMP_MARK, stampedOverrides, stampOfApplied, type OverridesFor } from './rollup-vector.js';
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
  has(k: string): boolean {
    return this.m.has(k);
  }
  set(k: string, v: V): void {
    if (this.m.size >= this.max) this.m.clear();
    this.m.set(k, v);
  }
}

/** Per-tenant overrides from the control plane (`priceOverrides` documents; id = customer or `*`). */
export { overridesOf };

/**
 * Stores spans and keeps the rollups equal to the trees. Per request: one Lua call per trace stores its new
 * spans once and returns the trace (compact lines); the trees are rebuilt in memory; one Lua call in the rollup
 * slot replaces each trace's previous contribution by the new one; then the session and pipeline indexes are
 * written (idempotent set/zset adds). All calls go through the auto-pipelined connection.
 */
const TRIM_EVERY_MS = 60_000;

/** Removes the entries of a pipeline's trace index first seen more than `retentionSeconds` before `now`; returns how many. */
export function trimTraceIndex(redis: Redis, key: string, retentionSeconds: number, now = Date.now()): Promise<number> {
  return redis.zremrangebyscore(key, '-inf', `(${now - retentionSeconds * 1000}`);
}

export class SpanStore {
  private readonly decisions = new Memo<DecisionInfo | null>(50_000);
  private readonly indexed = new Memo<true>(200_000);
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
    // One set of overrides for the whole request: the rollups and the price stamp must agree.
    const overridesFor = overridesOf(this.d.view());
    const traces = await Promise.all(
      [...byTrace].map(async ([traceId, idx]) => {
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
        idx.forEach((i, k) => {
          const st = statuses[k];
          if (st === '1') {
            result.accepted++;
            all.push(spans[i]!);
          } else if (st === '0') result.duplicates++;
          else result.refused.push({ index: i, reason: `trace ${traceId} already holds ${this.d.maxSpansPerTrace} spans (APPORTION_MAX_SPANS_PER_TRACE)` });
        });
        for (const l of others) all.push(decodeSpan(traceId, l));
        const trace = this.resolve(traceId, all, overridesFor);
        return { traceId, version, trace, stamp: priceStamp(trace, overridesFor) };
      }),
    );
    await this.applyRollups(traces);
    await this.index(traces);
    return result;
  }

  /**
   * Replaces each trace's contribution in the rollups (idempotent; see cost-rollup.lua), with the price stamp its
   * cost tree is read with (see priceStamp).
   */
  async applyRollups(traces: readonly { traceId: string; version: number; trace: ResolvedTrace; stamp: string }[]): Promise<void> {
    if (traces.length === 0) return;
    // One script call per rollup shard (one call when the layout is unsharded): all its keys share the slot.
    const byShard = new Map<number, (typeof traces)[number][]>();
    for (const t of traces) {
      const s = this.d.costKeys.shardOf(t.traceId);
      let l = byShard.get(s);
      if (!l) byShard.set(s, (l = []));
      l.push(t);
    }
    await Promise.all(
      [...byShard].map(([shard, group]) => {
        const names = new Set<string>();
        for (const t of group) for (const n of rollupNames(t.trace)) names.add(n);
        const nameList = [...names];
        const keys = [...group.map((t) => this.d.costKeys.applied(t.traceId)), ...nameList.map((n) => this.d.costKeys.rollup(n, shard))];
        const args: (string | number)[] = [group.length, this.d.retentionSeconds, ...nameList];
        for (const t of group) args.push(t.version, encodeContribution(contribution(t.trace)) + STAMP_MARK + t.stamp);
        return callScript(this.d.redis, 'costRollup', keys, args);
      }),
    );
  }

  /** Session → traces and pipeline → decisions/traces indexes; each pair written once per process. */
  private async index(traces: readonly { traceId: string; trace: ResolvedTrace }[]): Promise<void> {
    const r = this.d.redis;
    const ck = this.d.costKeys;
    const ttl = this.d.retentionSeconds;
    const writes: Promise<unknown>[] = [];
    for (const { traceId, trace } of traces) {
      const sessions = new Set<string>();
      const decisions = new Set<string>();
      for (const n of trace.nodes) {
        sessions.add(n.sessionId);
        if (n.decisionId) decisions.add(n.decisionId);
      }
      for (const s of sessions) {
        const k = `s\x1f${s}\x1f${traceId}`;
        if (this.indexed.has(k)) continue;
        writes.push(Promise.all([r.sadd(ck.sessionTraces(s), traceId), r.expire(ck.sessionTraces(s), ttl)]).then(() => this.indexed.set(k, true)));
      }
      for (const d of decisions) {
        const k = `d\x1f${d}\x1f${traceId}`;
        if (this.indexed.has(k)) continue;
        writes.push(
          this.decision(d).then(async (info) => {
            if (!info) return;
            // A tenant's trace (`<tenant>~<id>`) joins only its own pipelines' envelopes: naming another tenant's
            // decision id does not put its spans there. Operator traces are indexed as given.
            const { tenant } = splitNamespace(traceId);
            if (tenant !== null && pipelineTenants(this.d.view()).get(info.pipeline) !== tenant) {
              this.indexed.set(k, true);
              return;
            }
            const z = ck.pipelineTraces(info.pipeline);
            await Promise.all([
              r.zadd(z, 'NX', Date.now(), `${d}/${traceId}`),
              r.expire(z, ttl),
              r.set(ck.pipelineBudget(info.pipeline, d), info.budgets, 'EX', ttl, 'NX'),
              this.trim(z),
            ]);
            this.indexed.set(k, true);
          }),
        );
      }
    }
    await Promise.all(writes);
  }

  /**
   * Drops index entries older than the retention (the index's own TTL only helps a pipeline that stops sending
   * spans): at most once a minute per index and process, so a busy pipeline's index holds one retention's worth.
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

