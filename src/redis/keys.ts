/**
 * Redis key naming. Every key starts with the configured prefix and carries a hash tag for the entity
 * it belongs to, so a Lua script or MULTI only ever touches one Redis Cluster slot:
 *
 *   <p>:{config}:<kind>              hash  id → JSON document (control-plane state: pipelines, strategies, …)
 *   <p>:{config}:<kind>:versions     hash  id → version (bumped on every change)
 *   <p>:{config}:version             string global control-plane version
 *   <p>:config-changed               pub/sub channel announcing a new global version
 *   <p>:{decisions:<epoch second>}  hash   decision id → record JSON, for the decisions made in that second;
 *                                           expires one second after its second's reward window ends
 *   <p>:{decision:<id>}              string one decision record (ids without a time prefix, written by older versions)
 *   <p>:{pipeline:<id>}:…            statistics, applied-outcome markers, buffers of one pipeline
 */
export interface Keys {
  readonly prefix: string;
  configKind(kind: string): string;
  configVersions(kind: string): string;
  configVersion(): string;
  configChannel(): string;
  decision(decisionId: string): string;
  decisionBucket(epochSecond: number): string;
  /** Any key in a pipeline's slot: `<p>:{pipeline:<id>}:<parts…>`. */
  pipeline(pipelineId: string, ...parts: string[]): string;
  /** BullMQ prefix; queue names are appended by BullMQ. */
  bullPrefix(): string;
}

export function createKeys(prefix: string): Keys {
  return {
    prefix,
    configKind: (kind) => `${prefix}:{config}:${kind}`,
    configVersions: (kind) => `${prefix}:{config}:${kind}:versions`,
    configVersion: () => `${prefix}:{config}:version`,
    configChannel: () => `${prefix}:config-changed`,
    decision: (id) => `${prefix}:{decision:${id}}`,
    decisionBucket: (sec) => `${prefix}:{decisions:${sec}}`,
    pipeline: (id, ...parts) => [`${prefix}:{pipeline:${id}}`, ...parts].join(':'),
    bullPrefix: () => `${prefix}:bull`,
  };
}
