import { createHash } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import { jsonDecoder } from '../redis/decode.js';
import type { Keys } from '../redis/keys.js';
import { callScript } from '../redis/scripts.js';
import type { DecisionRecord } from '../kernel/decision.js';

/**
 * The compact encoding of decision records (MessagePack arrays, no field names):
 *
 *   [1, ref,   budgets[], totalTokens, featureValues[], tsOffsetMs, unitKey?, route?, meta?, shadow?, routing?, tiers?]
 *   [2, names, budgets[], totalTokens, featureValues[], tsOffsetMs, unitKey?, route?, meta?, shadow?, routing?, tiers?]
 *
 * `names` = [pipeline, pipelineVersion, strategy, strategyVersion, strategyKind, reason, agent names[], feature
 * names[]]: what every record of one strategy, reason and feature set repeats. Form 1 stores it once in the
 * record dictionary (`<p>:{decision-dict}`, a hash ref → names JSON) and refers to it by a 32-bit number; form 2
 * (self-contained) carries it, for outcome jobs, for a dictionary ref that collided, and past the per-process
 * cap of distinct names. Budgets and feature values are in the order of their names. The id is not stored: the
 * record is found by it (its bucket field is the id's UUID), and the timestamp is stored as ms since the id's
 * second. `tiers` = [models[] (agent order, nil for an agent without a model) or nil, maxCostUsd or nil]. Absent trailing optional fields are left off; absent ones in the middle are nil. Every writer
 * (DecisionStore, the outcome queue's payload) writes one of these two forms; anything else reads as missing.
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

const WITH_REF = 1;
const INLINE = 2;
/** How often a process re-asserts a dictionary entry it writes records with (HSETNX, so a no-op unless Redis lost it). */
const RECONFIRM_MS = 10_000;
/** Most distinct names tuples one process gives a dictionary ref to at once; past it records carry their names. */
export const DICTIONARY_CAP = 4096;
/** A tuple a process has not written a record with for this long is forgotten when it reaches DICTIONARY_CAP. */
const IDLE_MS = 10 * 60_000;
/** How long a process uses the names it read for a ref before reading them again. */
const NAMES_CACHE_MS = 10 * 60_000;
/**
 * An entry is dropped this long after the last record that may refer to it expired. More than NAMES_CACHE_MS: a
 * process that read a ref's names before the drop has let them go before another tuple can claim the ref.
 */
export const PRUNE_MARGIN_MS = 15 * 60_000;
const PRUNE_EVERY_MS = 60_000;

type Names = [string, number, string, number, string, string, string[], string[]];
/** A dictionary entry as stored (see Names); an entry of another shape reads as missing. */
const decodeNames = jsonDecoder(
  Type.Tuple([Type.String(), Type.Number(), Type.String(), Type.Number(), Type.String(), Type.String(), Type.Array(Type.String()), Type.Array(Type.String())]),
);

const CANONICAL_ID = /^[0-9a-z]{6,7}-([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/;

/** The field a record is stored under in its second's bucket: the 16 bytes of the id's UUID, or the id itself (other forms). */
export function bucketField(id: string): string | Buffer {
  const m = CANONICAL_ID.exec(id);
  return m ? Buffer.from(m[1]! + m[2]! + m[3]! + m[4]! + m[5]!, 'hex') : id;
}

/** The epoch second encoded in an id's time prefix (0 when it has none): the record's ts is stored relative to it. */
function baseMs(id: string): number {
  const dash = id.indexOf('-');
  if (dash < 6 || dash > 7) return 0;
  const sec = parseInt(id.slice(0, dash), 36);
  return Number.isFinite(sec) ? sec * 1000 : 0;
}

function namesOf(r: DecisionRecord): Names {
  return [r.pipeline, r.pipelineVersion, r.strategy, r.strategyVersion, r.strategyKind, r.reason, Object.keys(r.budgets), Object.keys(r.features)];
}

function body(r: DecisionRecord, head: number | Names, names: Names): Buffer {
  const out: unknown[] = [
    typeof head === 'number' ? WITH_REF : INLINE,
    head,
    names[6].map((a) => r.budgets[a]),
    r.totalTokens,
    names[7].map((f) => r.features[f]),
    r.ts - baseMs(r.id),
    r.unitKey ?? null,
    r.route ?? null,
    r.meta ?? null,
    r.shadow ?? null,
    r.routing ?? null,
    r.models || r.maxCostUsd !== undefined ? [r.models ? names[6].map((a) => r.models![a] ?? null) : null, r.maxCostUsd ?? null] : null,
  ];
  while (out.length > 6 && out[out.length - 1] === null) out.pop();
  return packr.pack(out);
}

/** The record in the self-contained form (no dictionary needed to read it). */
export function encodeInline(r: DecisionRecord): Buffer {
  const names = namesOf(r);
  return body(r, names, names);
}

/** The record in its shortest form: with a dictionary ref when `dict` has one for its names (see register). */
export function encodeRecord(r: DecisionRecord, dict: RecordDictionary): Buffer {
  const names = namesOf(r);
  const ref = dict.refOf(JSON.stringify(names));
  return body(r, ref ?? names, names);
}

function build(id: string, names: Names, a: unknown[]): DecisionRecord {
  const [pipeline, pipelineVersion, strategy, strategyVersion, strategyKind, reason, agents, featureNames] = names;
  const b = a[2] as number[];
  const fv = a[4] as (string | number | boolean | null)[];
  const budgets: Record<string, number> = {};
  agents.forEach((n, i) => (budgets[n] = b[i]!));
  const features: Record<string, string | number | boolean | null> = {};
  featureNames.forEach((n, i) => (features[n] = fv[i] ?? null));
  const opt = (i: number) => (a[i] === undefined || a[i] === null ? undefined : a[i]);
  const unitKey = opt(6) as string | undefined;
  const route = opt(7) as DecisionRecord['route'];
  const meta = opt(8) as DecisionRecord['meta'];
  const shadow = opt(9) as DecisionRecord['shadow'];
  const routing = opt(10) as DecisionRecord['routing'];
  const tiers = opt(11) as [(string | null)[] | null, number | null] | undefined;
  let models: Record<string, string> | undefined;
  if (tiers?.[0]) {
    models = {};
    agents.forEach((n, i) => {
      const m = tiers[0]![i];
      if (typeof m === 'string') models![n] = m;
    });
  }
  // The key order of the records the allocation service writes.
  return {
    id,
    pipeline,
    pipelineVersion,
    strategy,
    strategyVersion,
    strategyKind,
    reason,
    budgets,
    totalTokens: a[3] as number,
    features,
    ...(unitKey !== undefined ? { unitKey } : {}),
    ts: baseMs(id) + (a[5] as number),
    ...(route ? { route } : {}),
    ...(meta ? { meta } : {}),
    ...(shadow ? { shadow } : {}),
    ...(routing ? { routing } : {}),
    ...(models ? { models } : {}),
    ...(typeof tiers?.[1] === 'number' ? { maxCostUsd: tiers[1] } : {}),
  };
}

type Parsed = { arr: unknown[] } | undefined;

function parse(raw: Buffer | string): Parsed {
  try {
    const buf = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
    if (buf.length === 0) return undefined;
    const arr: unknown = packr.unpack(buf);
    if (!Array.isArray(arr) || (arr[0] !== WITH_REF && arr[0] !== INLINE) || arr.length < 6) return undefined;
    return { arr };
  } catch {
    return undefined;
  }
}

/** Decodes a record that needs no dictionary (the self-contained form); undefined otherwise. */
export function decodeInline(id: string, raw: Buffer | string): DecisionRecord | undefined {
  const p = parse(raw);
  if (!p) return undefined;
  return p.arr[0] === INLINE ? build(id, p.arr[1] as Names, p.arr) : undefined;
}

/** Decodes records of any form (undefined where null or unreadable), fetching the dictionary entries it lacks. */
export async function decodeRecords(ids: readonly string[], raws: readonly (Buffer | null)[], dict: RecordDictionary): Promise<(DecisionRecord | undefined)[]> {
  const parsed = raws.map((r) => (r ? parse(r) : undefined));
  const missing = new Set<number>();
  for (const p of parsed) if (p && p.arr[0] === WITH_REF && !dict.namesOf(p.arr[1] as number)) missing.add(p.arr[1] as number);
  if (missing.size) await dict.fetch([...missing]);
  return parsed.map((p, i) => {
    if (!p) return undefined;
    try {
      const names = p.arr[0] === WITH_REF ? dict.namesOf(p.arr[1] as number) : (p.arr[1] as Names);
      return names ? build(ids[i]!, names, p.arr) : undefined;
    } catch {
      return undefined;
    }
  });
}

/**
 * The record dictionary: names tuple ↔ 32-bit ref (the first 4 bytes of the tuple's SHA-1), stored in
 * `<p>:{decision-dict}` only if the ref is free, so every process agrees (decision-dict-claim.lua). A ref taken by
 * another tuple (a hash collision) is not reused while that tuple's entry is kept: records with the second tuple
 * carry their names. Entries are small (one per distinct pipeline version × strategy version × reason ×
 * feature-name set) and each is kept while records may refer to it: every claim and confirmation (a writer confirms
 * the entries it writes records with every RECONFIRM_MS) stamps the ref in `<p>:{decision-dict}:seen`, and `prune`
 * (the decision store's, at most once a minute) drops the entries not stamped for the records' lifetime plus
 * PRUNE_MARGIN_MS. Before 2026-12-05 entries were kept for ever: each new pipeline or strategy version and each new
 * set of feature names a client sent added one for good.
 */
export class RecordDictionary {
  private static readonly all = new WeakMap<Redis, Map<string, RecordDictionary>>();
  private readonly refs = new Map<string, number | null>();
  /** When each names tuple's entry was last confirmed in Redis (epoch ms). */
  private readonly confirmed = new Map<string, number>();
  /** ref → names, and when they were read (a cached tuple is read again after NAMES_CACHE_MS: a pruned ref may be reused). */
  private readonly names = new Map<number, { names: Names; at: number }>();
  private readonly pending = new Map<string, Promise<void>>();
  private lastPrune = 0;
  readonly seenKey: string;

  private constructor(
    private readonly redis: Redis,
    readonly key: string,
  ) {
    this.seenKey = `${key}:seen`;
  }

  /** One dictionary cache per connection and prefix. */
  static for(redis: Redis, keys: Keys): RecordDictionary {
    let byPrefix = RecordDictionary.all.get(redis);
    if (!byPrefix) RecordDictionary.all.set(redis, (byPrefix = new Map()));
    let d = byPrefix.get(keys.prefix);
    if (!d) byPrefix.set(keys.prefix, (d = new RecordDictionary(redis, `${keys.prefix}:{decision-dict}`)));
    return d;
  }

  refOf(namesJson: string): number | undefined {
    return this.refs.get(namesJson) ?? undefined;
  }

  namesOf(ref: number): Names | undefined {
    const e = this.names.get(ref);
    return e && Date.now() - e.at < NAMES_CACHE_MS ? e.names : undefined;
  }

  /** Makes sure every record's names have a ref (or are known to go inline) before the records are encoded. */
  async register(records: readonly DecisionRecord[]): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const r of records) {
      const json = JSON.stringify(namesOf(r));
      // A known entry is confirmed again now and then, so a Redis that lost its data gets it back before
      // records referring to it are read elsewhere, and the prune sees it in use.
      if (this.refs.has(json) && (this.refs.get(json) === null || Date.now() - (this.confirmed.get(json) ?? 0) < RECONFIRM_MS)) continue;
      let p = this.pending.get(json);
      if (!p) {
        p = this.claim(json).finally(() => this.pending.delete(json));
        this.pending.set(json, p);
      }
      waits.push(p);
    }
    if (waits.length) await Promise.all(waits);
  }

  private async claim(json: string): Promise<void> {
    if (!this.refs.has(json) && this.refs.size >= DICTIONARY_CAP) this.forgetIdle();
    if (!this.refs.has(json) && this.refs.size >= DICTIONARY_CAP) return; // past the cap: inline, and nothing more cached
    const ref = createHash('sha1').update(json).digest().readUInt32BE(0);
    const ok = (await callScript(this.redis, 'decisionDictClaim', [this.key, this.seenKey], [String(ref), json])) === 1;
    this.refs.set(json, ok ? ref : null);
    this.confirmed.set(json, Date.now());
    const names = ok ? decodeNames(json) : undefined;
    if (names) this.remember(ref, names);
  }

  /** Forgets the tuples this process has not written a record with for IDLE_MS (a later record claims its ref again). */
  private forgetIdle(): void {
    const before = Date.now() - IDLE_MS;
    for (const [json, at] of this.confirmed) {
      if (at >= before) continue;
      this.confirmed.delete(json);
      this.refs.delete(json);
    }
  }

  private remember(ref: number, names: Names): void {
    if (this.names.size >= DICTIONARY_CAP && !this.names.has(ref)) {
      const stale = Date.now() - NAMES_CACHE_MS;
      for (const [k, e] of this.names) if (e.at < stale) this.names.delete(k);
      if (this.names.size >= DICTIONARY_CAP) this.names.clear();
    }
    this.names.set(ref, { names, at: Date.now() });
  }

  async fetch(refs: readonly number[]): Promise<void> {
    const got = await this.redis.hmget(this.key, ...refs.map(String));
    refs.forEach((ref, i) => {
      const json = got[i];
      if (!json) return;
      const names = decodeNames(json);
      if (!names) return; // unreadable entry: its records read as gone
      this.remember(ref, names);
    });
  }

  /**
   * Drops the entries no record can refer to any more: not claimed or confirmed by any writer for `recordTtlSeconds`
   * (the longest a decision record lives) plus PRUNE_MARGIN_MS. Runs at most once a minute per process (`force`:
   * now); returns the number of entries dropped.
   */
  async prune(recordTtlSeconds: number, force = false): Promise<number> {
    const now = Date.now();
    if (!force && now - this.lastPrune < PRUNE_EVERY_MS) return 0;
    this.lastPrune = now;
    let dropped = 0;
    for (;;) {
      const n = await callScript(this.redis, 'decisionDictPrune', [this.key, this.seenKey], [(recordTtlSeconds + 1) * 1000 + PRUNE_MARGIN_MS, 500]);
      dropped += n;
      if (n < 500) return dropped;
    }
  }
}

/**
 * The arguments of decisions-put.lua: field, value, field, value… as one MessagePack array of strings (one
 * argument: the client pays per argument). Binary fields and values are written as MessagePack str, not bin:
 * Redis's Lua cmsgpack reads str as a (binary-safe) Lua string and does not know bin.
 */
export function packBatch(parts: readonly (string | Buffer)[]): Buffer {
  const chunks: Buffer[] = [];
  const head = Buffer.alloc(5);
  head[0] = 0xdd;
  head.writeUInt32BE(parts.length, 1);
  chunks.push(head);
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    const h = Buffer.alloc(5);
    h[0] = 0xdb;
    h.writeUInt32BE(b.length, 1);
    chunks.push(h, b);
  }
  return Buffer.concat(chunks);
}
