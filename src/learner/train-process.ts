import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { createRedisClient } from '../redis/connection.js';
import { loadTf } from './backend.js';
import { buildTrainingData, decodeEvent, type LoggedEvent } from './events.js';
import { compileFeatures, featureUse, fitScaling, type FeatureScaling, type FeatureSpec } from './features.js';
import { deserializeWeights, rescaleInputs, serializeWeights, type SerializedWeights } from './model.js';
import { trainModel, type TrainJobOutput, type TrainOptions } from './trainer.js';
import { trainTiers, type TierJobInput } from './train-tiers.js';
import type { ForgetSpan } from './drift.js';

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
  /** Drift recovery's forgetting (drift.ts forgetSpan): events decided in [from, before) (epoch ms) weigh `weight` × their recency weight. */
  readonly forget?: ForgetSpan;
  readonly init: SerializedWeights;
  /** The scaling `init` was trained with (its inputs are re-expressed in the newly fitted scaling). */
  readonly initScaling?: FeatureScaling;
  readonly seed: number;
  readonly train?: TrainOptions;
  /** A pipeline with model tiers: train the joint model-and-tokens reward model (tiers-policy.ts) instead. */
  readonly tiers?: TierJobInput;
  /**
   * For tests: a job that cannot progress below a priority. Before training, the child waits (polling its own
   * /proc/self/stat every 20 ms) while its process runs under SCHED_IDLE (`idle`) or at a nice value ≥ `niceAtLeast`.
   */
  readonly holdWhile?: { readonly idle?: boolean; readonly niceAtLeast?: number };
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
  // What the window's requests carried per declared feature (values the encoder cannot read count as missing).
  const rows = events.map((e) => e.f);
  const use = featureUse(input.features, rows);
  if (input.tiers) {
    const out = await trainTiers(input, input.tiers, events, fetched);
    return out.trained ? { ...out, featureUse: use } : out;
  }
  // Scaling refitted on this window at every retrain; the warm start's inputs are re-expressed in it.
  const scaling = fitScaling(input.features, rows);
  const encoder = compileFeatures(input.features, scaling);
  const data = buildTrainingData(events, encoder, input.agents, { costWeight: input.costWeight, ...(input.halfLife !== undefined ? { halfLife: input.halfLife } : {}), ...(input.forget ? { forget: input.forget } : {}) });
  if (data.rows < 20) return { trained: false, reason: `only ${data.rows} events match the pipeline's agents`, events: events.length, fetched };
  const { tf } = await loadTf();
  const init = rescaleInputs(deserializeWeights(input.init), compileFeatures(input.features, input.initScaling).numeric, encoder.numeric);
  const { weights, metrics } = await trainModel(tf, data, init, { seed: input.seed, yieldToEventLoop: false, ...input.train });
  return { trained: true, events: events.length, fetched, weights: serializeWeights(weights), metrics, scaling, featureUse: use };
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
 * At most this many events are kept over all buffers (least recently read dropped first): without a bound the child
 * held the window of every pipeline it ever trained, deleted ones included, until it restarted. 200,000 parsed events
 * are some hundreds of MB at most; 25 pipelines at the default window of 8,000, or two of 100,000. A buffer whose
 * read was dropped is read whole at its next retrain, as after a restart.
 */
export const KEPT_EVENTS_MAX = 200_000;

function keep(cacheKey: string, entry: { readonly window: number; readonly newest: string; readonly events: readonly LoggedEvent[] }, max: number): void {
  windows.delete(cacheKey);
  windows.set(cacheKey, entry);
  let total = 0;
  for (const w of windows.values()) total += w.events.length;
  // Oldest first (a Map iterates in insertion order, and every read re-inserts its own); the newest read always stays.
  for (const [k, w] of windows) {
    if (total <= max || k === cacheKey) break;
    windows.delete(k);
    total -= w.events.length;
  }
}

/** Buffers whose last read is kept and the events kept over all of them (tests). */
export function keptWindows(): { buffers: number; events: number } {
  let events = 0;
  for (const w of windows.values()) events += w.events.length;
  return { buffers: windows.size, events };
}

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
export async function readWindow(redis: Redis, redisUrl: string, key: string, window: number, keptMax = KEPT_EVENTS_MAX): Promise<{ events: LoggedEvent[]; fetched: number }> {
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
    return readWindow(redis, redisUrl, key, window, keptMax);
  }
  const parsed: LoggedEvent[] = [];
  for (const raw of fresh) {
    const e = trainingFields(raw);
    if (e) parsed.push(e);
  }
  const events = found ? parsed.concat(prev!.events.slice(0, window - fresh.length)) : parsed;
  const newest = fresh[0] ?? (found ? marker : undefined);
  if (newest !== undefined) keep(cacheKey, { window, newest, events }, keptMax);
  else windows.delete(cacheKey);
  return { events, fetched: fresh.length };
}

const SELF = new URL(import.meta.url);
const CHILD_FLAG = 'APPORTION_TRAIN_CHILD';
const CHRT = '/usr/bin/chrt';
const NICE = '/usr/bin/nice';
const TRAIN_READ_PAGE = 500;

type Reply = { id: number; ok: true; out: TrainJobOutput } | { id: number; ok: false; error: string };
type Waiter = { resolve: (o: TrainJobOutput) => void; reject: (e: Error) => void };

/** A CPU priority the trainer child runs at: a scheduling class (SCHED_IDLE or SCHED_OTHER) and a nice value. */
export interface TrainerLevel {
  /** 0 = the lowest (where every job starts); each escalation step is one more. */
  readonly level: number;
  readonly policy: 'idle' | 'other';
  readonly nice: number;
}

/** One step of a job's priority escalation (logged, counted and recorded by the caller). */
export interface TrainerEscalation {
  readonly from: TrainerLevel;
  readonly to: TrainerLevel;
  /** in-place: the running child was raised; new-process: the job was restarted in a new child started at `to`. */
  readonly how: 'in-place' | 'new-process';
  /** The child that runs the job from now on. */
  readonly pid: number;
  /** How long the job had run (ms, since it was sent to a trainer child) when it was raised. */
  readonly afterMs: number;
  /** Why the running child could not be raised (new-process only). */
  readonly reason?: string;
}

/** How a job's trainer priority rises while the job is slow (config APPORTION_TRAIN_ESCALATE_AFTER_MS). */
export interface EscalationOptions {
  /** A job that has run this long (ms) at one level moves to the next one; 0 or absent: never (it stays idle). */
  readonly afterMs?: number;
  /**
   * auto (default): raise the running child in place when this process may (CAP_SYS_NICE, or an RLIMIT_NICE that
   * allows it), else restart the job in a new child started at the higher level; restart: always the latter.
   */
  readonly how?: 'auto' | 'restart';
  readonly onEscalate?: (e: TrainerEscalation) => void;
}

/**
 * The trainer child of this process: started on first use, kept (tfjs stays loaded), restarted if it dies. `level`
 * indexes ladder(): the priority it runs at now (an escalated child is lowered again before its next job).
 */
let trainer: { child: ChildProcess; waiting: Map<number, Waiter>; level: number } | undefined;
let seq = 0;
let chain: Promise<unknown> = Promise.resolve();

/** This process's own nice value (0 when it cannot be read). */
function ownNice(): number {
  try {
    return getPriority();
  } catch {
    return 0;
  }
}

/**
 * The trainer's priority levels, lowest first: SCHED_IDLE at nice 19 (where chrt works), SCHED_OTHER at nice 19,
 * then SCHED_OTHER halfway between this process's nice value and 19 (nice 10 under a server at nice 0). Never at
 * or above this process's own priority: serving keeps the edge. A process may always start a child at a nice value
 * ≥ its own, so every level can be reached by starting a new child, privileged or not.
 */
export function trainerLadder(): readonly TrainerLevel[] {
  const own = ownNice();
  const mid = Math.min(19, own + Math.ceil((19 - own) / 2));
  const levels: Omit<TrainerLevel, 'level'>[] = [];
  if (canRunIdle()) levels.push({ policy: 'idle', nice: 19 });
  levels.push({ policy: 'other', nice: 19 });
  if (mid < 19) levels.push({ policy: 'other', nice: mid });
  return levels.map((l, level) => ({ ...l, level }));
}

/** The scheduling class and nice value of a process's main thread, from /proc/<pid>/stat (undefined off Linux or once it is gone). */
export function schedOf(pid: number): { policy: 'other' | 'fifo' | 'rr' | 'batch' | 'idle' | 'deadline'; nice: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): field 3 (state) is rest[0].
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const nice = Number(rest[19 - 3]);
    const policy = (['other', 'fifo', 'rr', 'batch', 'other', 'idle', 'deadline'] as const)[Number(rest[41 - 3])] ?? 'other';
    return Number.isFinite(nice) ? { policy, nice } : undefined;
  } catch {
    return undefined;
  }
}

/** What the trainer child runs at now (for logs and tests): its pid, its level and what /proc says. */
export function trainerStatus(): { pid: number; level: TrainerLevel; sched: ReturnType<typeof schedOf> } | undefined {
  const t = trainer;
  if (!t || t.child.pid === undefined) return undefined;
  return { pid: t.child.pid, level: trainerLadder()[t.level]!, sched: schedOf(t.child.pid) };
}

/** Sets the nice value of every thread of a process (Linux setpriority acts on one thread). Throws when not permitted. */
function setNiceAll(pid: number, nice: number): void {
  let tids: number[] = [pid];
  try {
    tids = readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    // not Linux: the process as one
  }
  for (const tid of tids) {
    try {
      setPriority(tid, nice);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH' || /ESRCH|no such process/i.test(String(err))) continue; // the thread ended meanwhile
      throw err;
    }
  }
}

/**
 * Moves a running child to `to` in place: its scheduling class with `chrt -a` (every thread), then the nice value of
 * every thread. Raising needs privilege on Linux: leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that covers
 * the child's nice value (the default soft and hard limit 0 does not, even at nice 19), and lowering a nice value
 * needs CAP_SYS_NICE or RLIMIT_NICE; lowering a priority is always allowed. Returns why it failed, or undefined.
 */
function setLevel(pid: number, from: TrainerLevel, to: TrainerLevel): string | undefined {
  if (to.policy !== from.policy) {
    if (!canRunIdle()) return 'chrt is not available';
    const r = spawnSync(CHRT, ['-a', to.policy === 'idle' ? '-i' : '-o', '-p', '0', String(pid)], { encoding: 'utf8', timeout: 5000 });
    if (r.status !== 0) return `chrt: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
  }
  if (to.nice !== from.nice) {
    try {
      setNiceAll(pid, to.nice);
    } catch (err) {
      return `setpriority: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  return undefined;
}

function trainerProcess(level = 0): NonNullable<typeof trainer> {
  if (trainer) return trainer;
  // On Linux the child starts under SCHED_IDLE (util-linux `chrt -i 0`, inherited by every thread it starts): it
  // only gets a core no serving thread wants, and a waking serving thread preempts it at once. nice 19 alone
  // still hands the trainer time slices that a request then waits behind. A job that runs too long raises it
  // (escalate below); a child started for an escalated job starts at that level.
  const lv = trainerLadder()[level]!;
  // The nice value is set by coreutils `nice` before node starts (so every thread has it); without it, just after.
  // Not both: `nice -n` adds to the value it finds, so a setpriority that lands before it runs would be added twice.
  const niceWrap = existsSync(NICE);
  const wrappers = [...(niceWrap ? [NICE, '-n', String(lv.nice - ownNice())] : []), ...(lv.policy === 'idle' ? [CHRT, '-i', '0'] : [])];
  const child = fork(fileURLToPath(SELF), [], {
    env: { ...process.env, [CHILD_FLAG]: '1' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    serialization: 'advanced',
    // Run from source this file is TypeScript, and the child needs tsx's loader whether the parent got it on its
    // command line (`node --import tsx`, in execArgv) or registered it in-process (bin/apportion.mjs through
    // tsx/esm/api, which execArgv does not show; without it every retrain failed: "Unknown file extension .ts").
    // Built (dist/*.js) it needs none.
    ...((execArgv: string[]) => (wrappers.length > 0 ? { execPath: wrappers[0]!, execArgv: [...wrappers.slice(1), process.execPath, ...execArgv] } : { execArgv }))(
      SELF.pathname.endsWith('.ts') && !process.execArgv.some((a) => /(^|[/=])tsx($|\/)/.test(a) || a.includes('/tsx/'))
        ? ['--import', import.meta.resolve('tsx'), ...process.execArgv]
        : process.execArgv,
    ),
  });
  try {
    if (child.pid !== undefined && !niceWrap) setPriority(child.pid, lv.nice);
  } catch {
    // Not permitted here: training still runs, at normal priority.
  }
  const t = { child, waiting: new Map<number, Waiter>(), level };
  child.on('message', (m: Reply) => {
    const w = t.waiting.get(m.id);
    if (!w) return; // a job restarted elsewhere (escalation) or already failed: its answer here is not applied
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
  // A child killed by a signal (an operator's or the OOM killer's SIGKILL) has no exit code: say which signal.
  child.on('exit', (code, signal) => fail(new Error(`training process ${signal ? `was killed by signal ${signal}` : `exited with code ${code}`} (the retrain failed; the next one starts a new trainer)`)));
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

/** Replaces the trainer child by a new one at `level` (the old one is killed; jobs it still held are the caller's). */
function replaceTrainer(t: NonNullable<typeof trainer>, level: number): NonNullable<typeof trainer> {
  if (trainer === t) trainer = undefined;
  t.child.kill('SIGKILL');
  return trainerProcess(level);
}

/** Sends job `id` to trainer `t`, which answers through `w`. */
function send(t: NonNullable<typeof trainer>, id: number, input: TrainJobInput, w: Waiter, onSendError: (err: Error) => void): void {
  t.waiting.set(id, w);
  busy(t.child);
  t.child.send({ id, input }, (err) => {
    if (!err || !t.waiting.has(id)) return;
    t.waiting.delete(id);
    onSendError(err);
  });
}

/** Whether process `pid` runs this Node binary (its wrappers have exec'd it). True where /proc cannot say (not Linux). */
export function execDone(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/exe`) === realpathSync(process.execPath);
  } catch {
    return true;
  }
}

/**
 * One escalation step of job `id`, if the trainer still runs it: the running child is raised in place when this
 * process may; otherwise the job is taken from it (its answer, should it still come, finds no waiter and is
 * dropped), the child is killed, and the job is sent to a new child started at the higher level. Synchronous (a
 * chrt call of a few ms): nothing can answer or start a job in between, so a job is applied exactly once.
 */
function escalate(id: number, input: TrainJobInput, opts: EscalationOptions, sentAt: number, onSendError: (err: Error) => void): boolean {
  const t = trainer;
  const ladder = trainerLadder();
  if (!t || !t.waiting.has(id) || t.level + 1 >= ladder.length || t.child.pid === undefined) return false;
  // A child still in its wrappers (`nice`, then `chrt -i 0`, before they exec node) is not at its level yet: raised
  // in place now, the wrapper still to run would put it back (a step counted, the job still at the lowest level).
  // The step waits for the next bound instead.
  if (!execDone(t.child.pid)) return true;
  const from = ladder[t.level]!;
  const to = ladder[t.level + 1]!;
  const afterMs = Date.now() - sentAt;
  const why = opts.how === 'restart' ? 'a new process was asked for' : setLevel(t.child.pid, from, to);
  if (why === undefined) {
    t.level = to.level;
    opts.onEscalate?.({ from, to, how: 'in-place', pid: t.child.pid, afterMs });
    return true;
  }
  const w = t.waiting.get(id)!;
  t.waiting.delete(id);
  let n: NonNullable<typeof trainer>;
  try {
    n = replaceTrainer(t, to.level);
  } catch (err) {
    onSendError(err instanceof Error ? err : new Error(String(err))); // no child at all: the job runs in this process
    return false;
  }
  send(n, id, input, w, onSendError);
  opts.onEscalate?.({ from, to, how: 'new-process', pid: n.child.pid ?? 0, afterMs, reason: why });
  return true;
}

/**
 * Runs trainJob in this process's trainer child, one job at a time, at the lowest CPU priority (SCHED_IDLE
 * where chrt exists, and nice 19):
 * parsing 100k events and the tfjs steps then neither block the serving event loop nor compete with it for
 * a core (a worker thread avoided the blocking but, on a 2-core machine, still halved serving throughput).
 * The child is kept between jobs (starting it and loading tfjs costs seconds). Falls back to the calling
 * thread, yielding between steps, when the child cannot start.
 *
 * Escalation (`escalation.afterMs`): on a host whose cores are always busy an idle-class child gets no CPU and no
 * retrain would ever finish. A job that has run `afterMs` at one level moves to the next one (trainerLadder:
 * SCHED_OTHER at nice 19, then nice 10 under a server at nice 0), in place or in a new child (escalate); the
 * next job starts at the lowest level again (an escalated child is lowered first: always permitted).
 */
export function runTrainJob(input: TrainJobInput, onFallback?: (err: unknown) => void, escalation: EscalationOptions = {}): Promise<TrainJobOutput> {
  const run = async (): Promise<TrainJobOutput> => {
    let t: NonNullable<typeof trainer>;
    try {
      t = trainerProcess();
      if (t.level > 0 && t.child.pid !== undefined) {
        // Escalated by the previous job: back to the lowest level (lowering is always permitted; else a new child).
        const ladder = trainerLadder();
        if (setLevel(t.child.pid, ladder[t.level]!, ladder[0]!) === undefined) t.level = 0;
        else t = replaceTrainer(t, 0);
      }
    } catch (err) {
      onFallback?.(err);
      return trainJob({ ...input, train: { ...input.train, yieldToEventLoop: true } });
    }
    const id = ++seq;
    const sentAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<TrainJobOutput>((resolve, reject) => {
        const onSendError = (err: Error) => {
          onFallback?.(err);
          trainJob({ ...input, train: { ...input.train, yieldToEventLoop: true } }).then(resolve, reject);
        };
        send(t, id, input, { resolve, reject }, onSendError);
        const after = escalation.afterMs ?? 0;
        const step = () => {
          if (escalate(id, input, escalation, sentAt, onSendError)) timer = setTimeout(step, after);
        };
        if (after > 0) timer = setTimeout(step, after);
      });
    } finally {
      if (timer) clearTimeout(timer);
    }
  };
  const p = chain.then(run, run);
  chain = p.catch(() => undefined);
  return p;
}

/** The test hook TrainJobInput.holdWhile: resolves once this process runs above the given priority. */
async function holdWhile(h: NonNullable<TrainJobInput['holdWhile']>): Promise<void> {
  for (;;) {
    const s = schedOf(process.pid);
    if (!s) return; // not Linux: nothing to wait for
    if (!(h.idle && s.policy === 'idle') && !(h.niceAtLeast !== undefined && s.nice >= h.niceAtLeast)) return;
    await new Promise<void>((r) => setTimeout(r, 20));
  }
}

if (process.env[CHILD_FLAG] === '1' && process.send) {
  process.on('message', ({ id, input }: { id: number; input: TrainJobInput }) => {
    (input.holdWhile ? holdWhile(input.holdWhile) : Promise.resolve()).then(() => trainJob(input)).then(
      (out) => process.send!({ id, ok: true, out }),
      (e: unknown) => process.send!({ id, ok: false, error: e instanceof Error ? e.message : String(e) }),
    );
  });
  // The parent is gone: so is the reason to exist.
  process.on('disconnect', () => process.exit(0));
}
