import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Keys } from '../redis/keys.js';
import { callScript } from '../redis/scripts.js';
import { unlinkTagged } from '../redis/slot-scan.js';
import { pipelineTombstone, tombstoneTtlMs } from './tombstone.js';

/**
 * When the sweep purges a deleted pipeline again, after its delete: each pass removes what a late writer put back
 * (a retrain that was running, a tick that was half-way, a registration batch in flight: writes of plain commands
 * that do not check the tombstone in the same step), and the first one also finishes a purge its deleting process
 * did not (it died after the delete). After the last pass the journal entry is dropped.
 */
export const PURGE_PASSES_MS = [60_000, 240_000, 960_000, 3_840_000] as const;

/** A deleted pipeline in the journal (`<p>:{config}:deleted`, field `pipelines:<id>`). */
interface Entry {
  /** The version the pipeline was deleted at. */
  readonly v: number;
  /** When, epoch ms. */
  readonly at: number;
  /** Sweep passes done. */
  readonly n: number;
}

function parseEntry(raw: string): Entry | undefined {
  try {
    const e = JSON.parse(raw) as Partial<Entry>;
    return typeof e.v === 'number' && typeof e.at === 'number' && typeof e.n === 'number' ? { v: e.v, at: e.at, n: e.n } : undefined;
  } catch {
    return undefined;
  }
}

export interface PurgerDeps {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly store: { versionOf(kind: 'pipelines', id: string): Promise<number> };
  readonly config: { readonly rewardWindowSeconds: number; readonly outcomeMarkerGraceSeconds: number };
  readonly log: Logger;
}

/**
 * Removes what is kept under a deleted pipeline's id: every key of its slot, `<p>:{pipeline:<id>}:*` (its
 * strategies' statistics, the learner's buffer, pending and resolved sets, model versions, counters and guard
 * state, cost indexes, applied-markers), except its tombstone.
 *
 * Found by SCAN MATCH on the master that holds the pipeline's slot rather than by a list of key names: the names
 * under a pipeline include ones built from data (strategy ids of strategies deleted before, per-decision and
 * per-second keys, experiment arms) and grow with every feature, and a list misses the next one (the learner's
 * `served` and `guard-candidate` were in no list). What it costs: SCAN walks the whole keyspace of that master
 * (one Redis: all of it) in batches of 500, once per delete and per sweep pass, never blocking Redis for long.
 *
 * Ordering: the purge runs only after the delete committed (the conditional control-plane write), and raises
 * the tombstone first, so a writer that checks it in its own script either ran before (its keys are found
 * and deleted) or writes nothing. It stops as soon as the pipeline exists again (the owning tenant re-created
 * it): what is under the id then belongs to the new pipeline.
 */
export class PipelinePurger {
  constructor(private readonly deps: PurgerDeps) {}

  /** The journal entry written with the delete (config-delete.lua), so a sweep finishes a purge a dead process began. */
  journalEntry(id: string, version: number, at = Date.now()): { field: string; value: string } {
    return { field: `pipelines:${id}`, value: JSON.stringify({ v: version, at, n: 0 } satisfies Entry) };
  }

  /** Raises the tombstone of `version` (the deleted pipeline's), then deletes every other key under the id unless it was re-created. */
  async purge(id: string, version: number): Promise<{ unlinked: number; complete: boolean }> {
    const { redis, keys, store, config } = this.deps;
    const tomb = pipelineTombstone(keys, id);
    await callScript(redis, 'tombstoneRaise', [tomb], [version, tombstoneTtlMs(config)]);
    const live = async () => (await store.versionOf('pipelines', id)) === 0;
    if (!(await live())) return { unlinked: 0, complete: false };
    return unlinkTagged(redis, tomb, `${keys.pipeline(id)}:*`, { keep: new Set([tomb]), proceed: live });
  }

  /** Before a pipeline id is created again: finishes the purge of its deleted predecessor if the journal still has it. */
  async beforeCreate(id: string): Promise<void> {
    const raw = await this.deps.redis.hget(this.deps.keys.configDeleted(), `pipelines:${id}`);
    const e = raw === null ? undefined : parseEntry(raw);
    if (e) await this.purge(id, e.v);
  }

  /** One pass over the journal (the `pipelines` queue's repeatable job): purges what is due again, drops what is done. Returns the keys deleted. */
  async sweep(now = Date.now()): Promise<number> {
    const { redis, keys, store, log } = this.deps;
    const journal = keys.configDeleted();
    let unlinked = 0;
    for (const [field, raw] of Object.entries(await redis.hgetall(journal))) {
      if (!field.startsWith('pipelines:')) continue;
      const id = field.slice('pipelines:'.length);
      const e = parseEntry(raw);
      const delay = e ? PURGE_PASSES_MS[e.n] : undefined;
      if (e && delay !== undefined && now < e.at + delay) continue;
      let next = '';
      if (e && delay !== undefined && (await store.versionOf('pipelines', id)) === 0) {
        const r = await this.purge(id, e.v);
        unlinked += r.unlinked;
        if (r.unlinked > 0) log.info({ pipeline: id, keys: r.unlinked, pass: e.n + 1 }, 'deleted pipeline: keys written after its delete removed');
        if (e.n + 1 < PURGE_PASSES_MS.length) next = JSON.stringify({ ...e, n: e.n + 1 } satisfies Entry);
      }
      // Done, re-created (what is under the id is the new pipeline's), or unreadable: the entry goes.
      await callScript(redis, 'hashCas', [journal], [field, raw, next]);
    }
    return unlinked;
  }
}
