import { fork, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
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
    // Page the read: one LRANGE of 100k entries (~50 MB) would hold Redis, and every allocation, for a while.
    raw = [];
    for (let from = 0; from < input.window; from += 2000) {
      const page = await redis.lrange(input.bufferKey, from, Math.min(input.window, from + 2000) - 1);
      raw.push(...page);
      if (page.length < 2000) break;
    }
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
const CHILD_FLAG = 'APPORTION_TRAIN_CHILD';

/**
 * Runs trainJob in a child process at the lowest CPU priority (nice 19), one process per job: parsing 100k
 * events and the tfjs steps then neither block the serving event loop nor compete with it for a core
 * (a worker thread avoided the blocking but, on a 2-core machine, still halved serving throughput).
 * Falls back to the calling thread, yielding between steps, when the child cannot start.
 */
export async function runTrainJob(input: TrainJobInput, onFallback?: (err: unknown) => void): Promise<TrainJobOutput> {
  let child: ChildProcess;
  try {
    child = fork(fileURLToPath(SELF), [], { env: { ...process.env, [CHILD_FLAG]: '1' }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'advanced' });
  } catch (err) {
    onFallback?.(err);
    return trainJob({ ...input, train: { ...input.train, yieldToEventLoop: true } });
  }
  try {
    if (child.pid !== undefined) setPriority(child.pid, 19);
  } catch {
    // Not permitted here: the job still runs, at normal priority.
  }
  return new Promise<TrainJobOutput>((resolve, reject) => {
    let done = false;
    child.once('message', (m: { ok: true; out: TrainJobOutput } | { ok: false; error: string }) => {
      done = true;
      if (m.ok) resolve(m.out);
      else reject(new Error(m.error));
      child.kill();
    });
    child.once('error', (err) => {
      if (done) return;
      done = true;
      onFallback?.(err);
      trainJob({ ...input, train: { ...input.train, yieldToEventLoop: true } }).then(resolve, reject);
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`training process exited with code ${code}`));
    });
    child.send(input);
  });
}

if (process.env[CHILD_FLAG] === '1' && process.send) {
  process.once('message', (input: TrainJobInput) => {
    trainJob(input).then(
      (out) => process.send!({ ok: true, out }, () => process.exit(0)),
      (e: unknown) => process.send!({ ok: false, error: e instanceof Error ? e.message : String(e) }, () => process.exit(1)),
    );
  });
}
