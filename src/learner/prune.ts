import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.js';
import { learnerKeys } from './keys.js';
import type { ModelDoc } from './registry.js';

/**
 * Prunes a pipeline's model versions in Redis (the `models` hash, which holds every version's weights): keeps the
 * newest `keep` versions, the serving one, the candidate, and every version that ever served. Versions that
 * served are remembered in `<p>:{pipeline:<id>}:learner:served` (a set this function keeps up to date from the
 * `models` document: its serving version and every listed version with an activation time), so a version stays
 * even after it drops out of the document's listing. Model files under the models directory are not touched:
 * `get` still reads a pruned version from its file. Returns the versions removed.
 */
export async function pruneModelVersions(redis: Redis, keys: Keys, pipeline: string, doc: ModelDoc | undefined, keep: number): Promise<number[]> {
  const lk = learnerKeys(keys, pipeline);
  const servedKey = keys.pipeline(pipeline, 'learner', 'served');
  const served = new Set<number>();
  if (doc) {
    if (doc.active > 0) served.add(doc.active);
    for (const v of doc.versions) if (v.activatedAt !== undefined) served.add(v.version);
    if (served.size) await redis.sadd(servedKey, ...[...served].map(String));
  }
  for (const v of await redis.smembers(servedKey)) served.add(Number(v));
  const versions = (await redis.hkeys(lk.models)).map(Number).filter((v) => Number.isInteger(v) && v > 0).sort((a, b) => b - a);
  const protect = new Set<number>([...versions.slice(0, keep), ...served]);
  if (doc?.candidate) protect.add(doc.candidate.version);
  const drop = versions.filter((v) => !protect.has(v));
  if (drop.length) await redis.hdel(lk.models, ...drop.map(String));
  return drop;
}
