import type { Keys } from '../redis/keys.js';

/** The learner's keys: all in the pipeline's slot, so ingest and training bookkeeping are one-slot Lua calls. */
export function learnerKeys(keys: Keys, pipeline: string) {
  const k = (...parts: string[]) => keys.pipeline(pipeline, 'learner', ...parts);
  return {
    /** list: outcomes joined by the outcome worker (`<ticket>|<event JSON>`), newest first, drained by ingest. */
    incoming: k('incoming'),
    /** list: the training buffer (event JSON), newest first, capped. */
    buffer: k('buffer'),
    /** zset: learned decisions (ticket = decision id) awaiting their outcome, scored by their wait-window deadline (epoch ms). */
    pending: k('pending'),
    /** zset: tickets that got the default reward (late outcomes for them are dropped), scored by time. */
    defaulted: k('defaulted'),
    /** zset: tickets whose outcome was ingested before their (batched) registration arrived, → time. */
    resolved: k('resolved'),
    /** hash: model version → model JSON (weights + metrics); the registry's durable copy. */
    models: k('models'),
    /** string: last model version number. */
    modelSeq: k('model-seq'),
    /**
     * string: the pipeline's dataset id, a random id set once (SET NX) with its first saved version: model files live
     * under it, so versions numbered again after a data loss (model-seq lost with it) never land on an earlier file.
     */
    dataset: k('dataset'),
    /** string: the retrain lock (a random token, with a time to live renewed while the retrain runs): one retrain of the pipeline at a time across processes. */
    trainLock: k('train-lock'),
    /** hash: outcomes (applied count), trainedAt (count at the last training start), trainedTs (epoch ms), trainGap (outcomes between the last two starts). */
    counters: k('counters'),
  };
}
export type LearnerKeys = ReturnType<typeof learnerKeys>;
