import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { createRedisClient } from '../redis/connection.js';
import { loadTf } from './backend.js';
import { buildTrainingData, decodeEvent, type LoggedEvent } from './events.js';
import { compileFeatures, fitScaling, type FeatureScaling, type FeatureSpec } from './features.js';
import { deserializeWeights, rescaleInputs, serializeWeights, type SerializedWeights } from './model.js';
import { trainModel, type TrainJobOutput, type TrainOptions } from './trainer.js';
import { trainTiers, type TierJobInput } from './train-tiers.js';

/** Everything a retrain needs, as plain data (it crosses a thread boundary). */
export interface TrainJobInput {
  readonly redisUrl: string;
  /** Redis Cluster seed nodes, when the server runs on a cluster. */
  readonly redisClusterNodes?: readonly string[] | undefined;
  readonly bufferKey: string;
  readonly window: number;
  readonly features: readonly FeatureSpec[];
  readonly agents: readonly string[];
  readonly costWeight: number;
  readonly halfLife?: number;
  readonly init: SerializedWeights;
  /** The scaling `init` was trained with (its inputs are re-expressed in the newly fitted scaling). */
  readonly initScaling?: FeatureScaling;
  readonly seed: number;
  readonly train?: TrainOptions;
  /** A pipeline with model tiers: train the joint model-and-tokens reward model (tiers-policy.ts) instead. */
  readonly tiers?: TierJobInput;
}


export type { TrainJobOutput } from './trainer.js';

/**
 * Reads the newest `window` buffered events, builds the rows and trains. Pure CPU after the reads: run it in
 * the trainer child (runTrainJob) so parsing the events and the tfjs steps never block serving.
 */
export async function trainJob(input: TrainJobInput): Promise<TrainJobOutput> {
  const redis = createRedisClient({ url: input.redisUrl, clusterNodes: input.redisClusterNodes }, { lazyConnect: true, maxRetriesPerRequest: 2 });
  let read: { events: LoggedEvent[]; fetched: number };
  try {
    await redis.connect();
    read = await readWindow(redis, input.redisUrl, input.bufferKey, input.window);
  } finally {
    redis.disconnect();
  }
  const { events, fetched } = read;
  if (events.length < 20) return { trained: false, reason: `only ${events.length} logged events`, events: events.length, fetched };
  if (input.tiers) return trainTiers(input, input.tiers, events, fetched);
  // Scaling refitted on this window at every retrain; the warm start's inputs are re-expressed in it.
  const scaling = fitScaling(input.features, events.map((e) => e.f));
  const encoder = compileFeatures(input.features, scaling);
  const data = buildTrainingData(events, encoder, input.agents, { costWeight: input.costWeight, ...(input.halfLife !== undefined ? { halfLife: input.halfLife } : {}) });
  if (data.rows < 20) return { trained: false, reason: `only ${data.rows} events match the pipeline's agents`, events: events.length, fetched };
  const { tf } = await loadTf();
  const init = rescaleInputs(deserializeWeights(input.init), compileFeatures(input.features, input.initScaling).numeric, encoder.numeric);
  const { weights, metrics } = await trainModel(tf, data, init, { seed: input.seed, yieldToEventLoop: false, ...input.train });
  return { trained: true, events: events.length, fetched, weights: serializeWeights(weights), metrics, scaling };
}

/**
 * An event with only what training reads (buildTrainingData: features, budgets, quality, cost; the position gives
 * the recency weight). The candidate set and its probabilities (C, P, k) are for off-policy evaluation and are most
 * of an event's objects (a dozen small arrays each): the cached window keeps without them. Undefined for an entry
 * that is not an event (corrupted in Redis): training leaves it out.
 */
function trainingFields(raw: string): LoggedEvent | undefined {
  const e = decodeEvent(raw);
  if (!e) return undefined;
  return { id: e.id, t: e.t, s: e.s, f: e.f, T: e.T, b: e.b, q: e.q, c: e.c, ...(e.m !== undefined ? { m: e.m } : {}), ...(e.M !== undefined ? { M: e.M } : {}) };
}

/**
 * What this process read from each buffer at its last retrain: the newest `window` events, parsed, newest first,
 * and the raw newest entry as a marker. The trainer child is kept between jobs, so a retrain fetches and parses
 * only the events pushed since (the buffer only grows at its head, LPUSH, and is trimmed at its tail).
 */
const windows = new Map<string, { readonly window: number; readonly newest: string; readonly events: readonly LoggedEvent[] }>();

/**
 * The newest `window` events of a buffer. Pages from the head (500 entries a page: one LRANGE of 100k entries,
 * ~50 MB, would hold Redis, and so every allocation, for tens of milliseconds) until it meets the newest entry of
 * the previous read, then reuses the rest of that read. A full read when there is no previous read of the same
 * window, when the marker is not within the window (more new events than the window), or when the buffer is
 * shorter than the previous read implies (it was deleted or rewritten).
 *
 * Why: a retrain used to fetch and parse the whole window every time, and Redis serves those reads at normal
 * priority (the trainer child's low priority does not reach it). With a 100k window that raised serving latency
 * while retraining (bench/learner-serving at a fixed load: p50 × 1.5 before, × 1.04 and × 1.23 in two runs after).
 */
export async function readWindow(redis: Redis, redisUrl: string, key: string, window: number): Promise<{ events: LoggedEvent[]; fetched: number }> {
  const cacheKey = `${redisUrl}\n${key}`;
  const prev = windows.get(cacheKey);
  const marker = prev && prev.window === window ? prev.newest : undefined;
  const fresh: string[] = [];
  let found = false;
  for (let from = 0; from < window; from += TRAIN_READ_PAGE) {
    const page = await redis.lrange(key, from, Math.min(window, from + TRAIN_READ_PAGE) - 1);
    const at = marker === undefined ? -1 : page.indexOf(marker);
    for (let i = 0; i < (at >= 0 ? at : page.length); i++) fresh.push(page[i]!);
    if (at >= 0) {
      found = true;
      break;
    }
    if (page.length < TRAIN_READ_PAGE) break;
  }
  // After the marker the previous read's events must still be there: a shorter buffer was deleted or rewritten.
  if (found && (await redis.llen(key)) < Math.min(window, fresh.length + prev!.events.length)) {
    windows.delete(cacheKey);
    return readWindow(redis, redisUrl, key, window);
  }
  const parsed: LoggedEvent[] = [];
  for (const raw of fresh) {
    const e = trainingFields(raw);
    if (e) parsed.push(e);
  }
  const events = found ? parsed.concat(prev!.events.slice(0, window - fresh.length)) : parsed;
  const newest = fresh[0] ?? (found ? marker : undefined);
  if (newest !== undefined) windows.set(cacheKey, { window, newest, events });
  else windows.delete(cacheKey);
  return { events, fetched: fresh.length };
}

const SELF = new URL(import.meta.url);
const CHILD_FLAG = 'APPORTION_TRAIN_CHILD';
const CHRT = '/usr/bin/chrt';
const TRAIN_READ_PAGE = 500;

type Reply = { id: number; ok: true; out: TrainJobOutput } | { id: number; ok: false; error: string };

/** The trainer child of this process: started on first use, kept (tfjs stays loaded), restarted if it dies. */
let trainer: { child: ChildProcess; waiting: Map<number, { resolve: (o: TrainJobOutput) => void; reject: (e: Error) => void }> } | undefined;
let seq = 0;
let chain: Promise<unknown> = Promise.resolve();

function trainerProcess(): NonNullable<typeof trainer> {
  if (trainer) return trainer;
  // On Linux the child runs under SCHED_IDLE (util-linux `chrt -i 0`, inherited by every thread it starts): it
  // only gets a core no serving thread wants, and a waking serving thread preempts it at once. nice 19 alone
  // still hands the trainer time slices that a request then waits behind.
  const idleSched = canRunIdle();
  const child = fork(fileURLToPath(SELF), [], {
    env: { ...process.env, [CHILD_FLAG]: '1' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    serialization: 'advanced',
    // Run from source this file is TypeScript, and the child needs tsx's loader whether the parent got it on its
    // command line (`node --import tsx`, in execArgv) or registered it in-process (bin/apportion.mjs through
    // tsx/esm/api, which execArgv does not show; without it every retrain failed: "Unknown file extension .ts").
    // Built (dist/*.js) it needs none.
    ...((execArgv: string[]) => (idleSched ? { execPath: CHRT, execArgv: ['-i', '0', process.execPath, ...execArgv] } : { execArgv }))(
      SELF.pathname.endsWith('.ts') && !process.execArgv.some((a) => /(^|[/=])tsx($|\/)/.test(a) || a.includes('/tsx/'))
        ? ['--import', import.meta.resolve('tsx'), ...process.execArgv]
        : process.execArgv,
    ),
  });
  try {
    if (child.pid !== undefined) setPriority(child.pid, 19);
  } catch {
    // Not permitted here: training still runs, at normal priority.
  }
  const t = { child, waiting: new Map<number, { resolve: (o: TrainJobOutput) => void; reject: (e: Error) => void }>() };
  child.on('message', (m: Reply) => {
    const w = t.waiting.get(m.id);
    if (!w) return;
    t.waiting.delete(m.id);
    if (m.ok) w.resolve(m.out);
    else w.reject(new Error(m.error));
    if (t.waiting.size === 0) idle(t.child);
  });
  const fail = (err: Error) => {
    if (trainer === t) trainer = undefined;
    for (const w of t.waiting.values()) w.reject(err);
    t.waiting.clear();
  };
  child.on('error', fail);
  child.on('exit', (code) => fail(new Error(`training process exited with code ${code}`)));
  trainer = t;
  return t;
}

/** Whether `chrt -i 0` works here (it exists, and this container lets a process lower its own scheduling class). */
let idleOk: boolean | undefined;
function canRunIdle(): boolean {
  idleOk ??= process.platform === 'linux' && existsSync(CHRT) && spawnSync(CHRT, ['-i', '0', 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  return idleOk;
}

/** An idle trainer must not keep its parent alive. */
function idle(child: ChildProcess): void {
  child.unref();
  (child.channel as { unref?: () => void } | undefined)?.unref?.();
}

function busy(child: ChildProcess): void {
  child.ref();
  (child.channel as { ref?: () => void } | undefined)?.ref?.();
}

/** Stops this process's trainer child (on shutdown). */
export function stopTrainer(): void {
  trainer?.child.kill();
  trainer = undefined;
}

/**
 * Runs trainJob in this process's trainer child, one job at a time, at the lowest CPU priority (SCHED_IDLE
 * where chrt exists, and nice 19):
 * parsing 100k events and the tfjs steps then neither block the serving event loop nor compete with it for
 * a core (a worker thread avoided the blocking but, on a 2-core machine, still halved serving throughput).
 * The child is kept between jobs (starting it and loading tfjs costs seconds). Falls back to the calling
 * thread, yielding between steps, when the child cannot start.
 */
export function runTrainJob(input: TrainJobInput, onFallback?: (err: unknown) => void): Promise<TrainJobOutput> {
  const run = async (): Promise<TrainJobOutput> => {
    let t: NonNullable<typeof trainer>;
    try {
      t = trainerProcess();
    } catch (err) {
      onFallback?.(err);
      return trainJob({ ...input, train: { ...input.train, yieldToEventLoop: true } });
    }
    const id = ++seq;
    return new Promise<TrainJobOutput>((resolve, reject) => {
      t.waiting.set(id, { resolve, reject });
      busy(t.child);
      t.child.send({ id, input }, (err) => {
        if (!err) return;
        t.waiting.delete(id);
        onFallback?.(err);
        trainJob({ ...input, train: { ...input.train, yieldToEventLoop: true } }).then(resolve, reject);
      });
    });
  };
  const p = chain.then(run, run);
  chain = p.catch(() => undefined);
  return p;
}

if (process.env[CHILD_FLAG] === '1' && process.send) {
  process.on('message', ({ id, input }: { id: number; input: TrainJobInput }) => {
    trainJob(input).then(
      (out) => process.send!({ id, ok: true, out }),
      (e: unknown) => process.send!({ id, ok: false, error: e instanceof Error ? e.message : String(e) }),
    );
  });
  // The parent is gone: so is the reason to exist.
  process.on('disconnect', () => process.exit(0));
}
