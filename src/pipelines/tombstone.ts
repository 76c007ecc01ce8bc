import type { Keys } from '../redis/keys.js';

/**
 * `<p>:{pipeline:<id>}:deleted`: the highest version of the pipeline that was deleted. Raised (with an expiry, see
 * PipelinePurger) before a deleted pipeline's data is removed; the writers that may run late for a decision or a
 * model of the deleted pipeline (the outcome script, the learner's ingest, default rewards and training) compare
 * the version they work for with it and write nothing when it is not newer, so they neither bring back keys that
 * would then never expire nor feed a pipeline re-created under the id (versions survive a delete: a re-created
 * pipeline's are higher).
 */
export function pipelineTombstone(keys: Keys, pipeline: string): string {
  return keys.pipeline(pipeline, 'deleted');
}

/**
 * How long a tombstone is kept: past it no outcome of a decision made before the delete can be applied (the outcome
 * script refuses it as `expired` at the decision's second + reward window + 1 s + the markers' grace), and the
 * decision records default rewards are built from have expired. A minute more for the clocks of the processes.
 */
export function tombstoneTtlMs(c: { readonly rewardWindowSeconds: number; readonly outcomeMarkerGraceSeconds: number }): number {
  return (c.rewardWindowSeconds + 1 + c.outcomeMarkerGraceSeconds + 60) * 1000;
}
