/**
 * Redis key naming. Every key starts with the configured prefix and carries a hash tag for the entity
 * it belongs to, so a Lua script or MULTI only ever touches one Redis Cluster slot:
 *
 *   <p>:{config}:<kind>              hash  id → JSON document (control-plane state: pipelines, strategies, …)
 *   <p>:{config}:<kind>:versions     hash  id → version (bumped on every change)
 *   <p>:{config}:pipelines:owners    hash  pipeline id → tenant that first created it (kept after a delete)
 *   <p>:{config}:deleted             hash  deleted objects whose data is still being removed (src/pipelines/purge.ts)
 *   <p>:{config}:version             string global control-plane version
 *   <p>:config-changed               pub/sub channel announcing a new global version
 *   <p>:{decisions:<epoch second>}  hash   decision id's bucket field → compact record (record-codec.ts), for the decisions made in that second;
 *                                           expires one second after its second's reward window ends
 *   <p>:{decisions:<sec>:<shard>}    the same, with `shards` > 1: one second's records spread over `shards` slots
 *                                           (shard = shardOf(decision id))
 *   <p>:{pipeline:<id>}:…            statistics, applied-outcome markers, buffers of one pipeline
 *   <p>:bull:<queue>:…               BullMQ (one Redis); <p>:{bull}:<queue>:… on a cluster (BullMQ's scripts
 *                                           touch many keys of a queue: they must share a slot)
 */
export interface Keys {
  readonly prefix: string;
  /** Shards of the hot single-slot keys (decision buckets, span rollups); 1 = unsharded. */
  readonly shards: number;
  configKind(kind: string): string;
  configVersions(kind: string): string;
  configOwners(kind: string): string;
  /** Journal of deleted objects whose data is still being removed, written with the delete (config-delete.lua). */
  configDeleted(): string;
  configVersion(): string;
  configChannel(): string;
  /** The bucket of a decision made in `epochSecond`; `shard` (0 ≤ shard < shards) is `shardOf(decisionId)`. */
  decisionBucket(epochSecond: number, shard?: number): string;
  /** The shard (0 ≤ n < shards) an id belongs to: stable, uniform over ids. */
  shardOf(id: string): number;
  /** Any key in a pipeline's slot: `<p>:{pipeline:<id>}:<parts…>`. */
  pipeline(pipelineId: string, ...parts: string[]): string;
  /** BullMQ prefix; queue names are appended by BullMQ. */
  bullPrefix(): string;
}

export interface KeyLayout {
  /** Redis Cluster: BullMQ's prefix gets a hash tag. */
  readonly cluster?: boolean;
  /** Shards of the hot single-slot keys (default 1: unsharded). */
  readonly shards?: number;
}

/** FNV-1a over the UTF-16 code units: cheap, stable across processes and versions. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function createKeys(prefix: string, layout: KeyLayout = {}): Keys {
  const shards = layout.shards ?? 1;
  if (!Number.isInteger(shards) || shards < 1) throw new Error(`shards must be a positive integer, got ${shards}`);
  return {
    prefix,
    shards,
    configKind: (kind) => `${prefix}:{config}:${kind}`,
    configVersions: (kind) => `${prefix}:{config}:${kind}:versions`,
    configOwners: (kind) => `${prefix}:{config}:${kind}:owners`,
    configDeleted: () => `${prefix}:{config}:deleted`,
    configVersion: () => `${prefix}:{config}:version`,
    configChannel: () => `${prefix}:config-changed`,
    decisionBucket: (sec, shard = 0) => (shards === 1 ? `${prefix}:{decisions:${sec}}` : `${prefix}:{decisions:${sec}:${shard}}`),
    shardOf: (id) => (shards === 1 ? 0 : fnv1a(id) % shards),
    pipeline: (id, ...parts) => [`${prefix}:{pipeline:${id}}`, ...parts].join(':'),
    bullPrefix: () => (layout.cluster ? `${prefix}:{bull}` : `${prefix}:bull`),
  };
}
