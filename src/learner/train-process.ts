import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { loadTf } from './backend.js';
import { buildTrainingData, type LoggedEvent } from './events.js';
import { compileFeatures, type FeatureSpec } from './features.js';
import { deserializeWeights, serializeWeights, type SerializedWeights } from './model.js';
import { trainModel, type TrainMetrics, type TrainOptions } from './trainer.js';

/** Everything a retrain needs, as plain data (it crosses a thread boundary). */
export interface TrainJobInput {
  readonly redisUrl: string;
  readonly bufferKey: string;
  readonly window: number;
  readonly features: readonly FeatureSpec[];
  readonly agents: readonly string[];
  readonly costWeight: number;
  readonly halfLife?: number;
  readonly init: SerializedWeights;
  readonly seed: number;
  readonly train?: TrainOptions;
}

export interface TrainJobOutput {
  readonly trained: boolean;
  readonly reason?: string;
  readonly events: number;
  readonly weights?: SerializedWeights;
  readonly metrics?: TrainMetrics;
}

/**
 * Reads the newest `window` buffered events, builds the rows and trains. Pure CPU after the one LRANGE:
 * run it in a worker thread (runTrainJob) so parsing 100k events and the tfjs steps never block serving.
 */
export async function trainJob(input: TrainJobInput): Promise<TrainJobOutput> {
  const redis = new Redis(input.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  let raw: string[];
  try {
    await redis.connect();
    raw = await redis.lrange(input.bufferKey, 0, input.window - 1);
  } finally {
    redis.disconnect();
  }
  const events = raw.map((r) => JSON.parse(r) as LoggedEvent);
  if (events.length < 20) return { trained: false, reason: `only ${events.length} logged events`, events: events.length };
  const encoder = compileFeatures(input.features);
  const data = buildTrainingData(events, encoder, input.agents, { costWeight: input.costWeight, ...(input.halfLife !== undefined ? { halfLife: input.halfLife } : {}) });
  if (data.rows < 20) return { trained: false, reason: `only ${data.rows} events match the pipeline's agents`, events: events.length };
  const { tf } = await loadTf();
  const { weights, metrics } = await trainModel(tf, data, deserializeWeights(input.init), { seed: input.seed, yieldToEventLoop: false, ...input.train });
  return { trained: true, events: events.length, weights: serializeWeights(weights), metrics };
}

const SELF = new URL(import.meta.url);

/** Under tsx (running the TypeScript sources) a worker needs tsx's loader registered before importing this file. */
function startWorker(input: TrainJobInput): Worker {
  if (!SELF.pathname.endsWith('.ts')) return new Worker(SELF, { workerData: input });
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(SELF.href)}); })`;
  return new Worker(boot, { eval: true, workerData: input });
}

/**
 * Runs trainJob in a fresh worker thread (one job per thread keeps memory bounded; loading tfjs there
 * costs well under a second). Falls back to the calling thread when a worker cannot start (e.g. a
 * loader that does not propagate to workers), yielding between steps there.
 */
export async function runTrainJob(input: TrainJobInput, onFallback?: (err: unknown) => void): Promise<TrainJobOutput> {
  try {
    return await new Promise<TrainJobOutput>((resolve, reject) => {
      const w = startWorker(input);
      let done = false;
      w.once('message', (m: { ok: true; out: TrainJobOutput } | { ok: false; error: string }) => {
        done = true;
        if (m.ok) resolve(m.out);
        else reject(new Error(m.error));
        void w.terminate();
      });
      w.once('error', reject);
      w.once('exit', (code) => {
        if (!done) reject(new Error(`training thread exited with code ${code}`));
      });
    });
  } catch (err) {
    if (err instanceof Error && /training thread|Cannot find module|ERR_UNKNOWN_FILE_EXTENSION|Unknown file extension/.test(err.message)) {
      onFallback?.(err);
      return trainJob({ ...input, train: { ...input.train, yieldToEventLoop: true } });
    }
    throw err;
  }
}

if (!isMainThread && parentPort && (workerData as Partial<TrainJobInput> | undefined)?.bufferKey) {
  const port = parentPort;
  trainJob(workerData as TrainJobInput).then(
    (out) => port.postMessage({ ok: true, out }),
    (e: unknown) => port.postMessage({ ok: false, error: e instanceof Error ? e.message : String(e) }),
  );
}
