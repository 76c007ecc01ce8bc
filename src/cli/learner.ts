import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, openSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig } from '../config/env.js';
import { ApportionClient } from '@apportion/sdk';
import { renderChart } from '../learner/chart.js';
import { toDsjson } from '../learner/dsjson.js';
import type { LoggedEvent } from '../learner/events.js';
import { compileFeatures } from '../learner/features.js';
import { deserializeWeights, type SerializedWeights } from '../learner/model.js';
import { mulberry32 } from '../learner/rng.js';
import { learnedValues, prepareEvaluation, type Evaluation } from '../learner/sim/loop.js';
import { contextFeatures, loadWorld, phaseAt, sampleContext, simulateOutcome, worldFeatures, worldPipeline, WORLD_NAMES } from '../learner/sim/world.js';
import { intArg, numberArg, seedArg } from '../config/cli-options.js';
import { keyOption as keyOptionOf, urlOption } from '../config/cli-api.js';

const keyOption = () => keyOptionOf('bearer key (admin)');

/** `simulate <world>`: a known world's name, or the path of a world JSON file that exists. */
function worldArg(value: string): string {
  if ((WORLD_NAMES as readonly string[]).includes(value) || (value.endsWith('.json') && existsSync(value))) return value;
  throw new InvalidArgumentError(`No such world. Known worlds: ${WORLD_NAMES.join(', ')}; or the path of a world JSON file.`);
}
const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);

interface SimulateOptions {
  url: string;
  key?: string;
  outcomes: number;
  concurrency: number;
  checkpoint: number;
  trainEvery: number;
  seed: number;
  out?: string;
  local: boolean;
  quiet: boolean;
  lockstep: boolean;
}

/**
 * `--out` checked before anything runs: a directory, or a path whose directory does not exist, would otherwise fail
 * only when the file is written, after the whole run (simulate) or export.
 */
function checkOutPath(out: string): void {
  const isDir = (p: string) => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return undefined;
    }
  };
  if (isDir(out)) throw new Error(`--out ${out}: is a directory (name a file)`);
  const dir = path.dirname(path.resolve(out));
  if (isDir(dir) !== true) throw new Error(`--out ${out}: cannot write there (its directory ${dir} does not exist)`);
}

/** Drives the real API with a simulated world: allocate → simulated outcome → report, then compares. */
export async function simulate(worldName: string, o: SimulateOptions): Promise<{ learned: number; oracle: number; uniform: number; bestStatic: number; chart: string }> {
  if (o.out !== undefined) checkOutPath(o.out);
  const world = loadWorld(worldName);
  let client = new ApportionClient({ url: o.url, ...(o.key ? { key: o.key } : {}), timeoutMs: 30_000 });
  let stopLocal: (() => Promise<void>) | undefined;
  let baseUrl = o.url;
  if (o.local) {
    // A private in-process server under a fresh key prefix (dropped afterwards) and a temporary models dir.
    const prefix = `sim-${randomBytes(4).toString('hex')}`;
    // A models directory of its own unless APPORTION_MODELS_DIR names one: removed with the prefix afterwards.
    const ownModels = process.env.APPORTION_MODELS_DIR ? undefined : mkdtempSync(path.join(tmpdir(), 'apportion-sim-models-'));
    const config = loadConfig({ ...process.env, APPORTION_KEY_PREFIX: prefix, PORT: '0', APPORTION_SEED_EXAMPLES: 'false', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', APPORTION_ADMIN_KEY: '', APPORTION_CLIENT_KEY: '', APPORTION_MODELS_DIR: ownModels ?? process.env.APPORTION_MODELS_DIR! });
    // The server's modules (fastify, BullMQ, the workers: about a second of CPU to load) only for --local: a run
    // against --url, and every refusal of bad input before it, does without them.
    const [{ start }, { createLogger }, { redisTarget }, { dropPrefix }] = await Promise.all([import('../server.js'), import('../logger.js'), import('../redis/connection.js'), import('../redis/prefix.js')]);
    const running = await start(config, createLogger(config), { api: true, workers: true });
    client = new ApportionClient({ url: running.url!, timeoutMs: 30_000 });
    baseUrl = running.url!;
    stopLocal = async () => {
      await running.close();
      await dropPrefix(redisTarget(config), prefix);
      if (ownModels) rmSync(ownModels, { recursive: true, force: true });
    };
  }
  try {
    const pipeline = `sim-${world.name}`;
    const strategy = `learned-${world.name}`;
    await client.request('PUT', `/v1/pipelines/${pipeline}`, worldPipeline(world));
    await client.request('PUT', `/v1/pipelines/${pipeline}/features`, worldFeatures(world));
    await client.request('PUT', `/v1/strategies/${strategy}`, { pipeline, kind: 'learned', params: { trainEvery: o.trainEvery, trainIntervalSeconds: 10 } });

    const rng = mulberry32(o.seed);
    const evalRng = mulberry32(o.seed ^ 0x5bd1e995);
    const contexts = Array.from({ length: 400 }, () => sampleContext(world, evalRng));
    const evals: (Evaluation | undefined)[] = [prepareEvaluation(world, 0, contexts), world.drift ? prepareEvaluation(world, 1, contexts) : undefined];
    const encoder = compileFeatures(worldFeatures(world).features);
    const curve: { n: number; learned: number; oracle: number; uniform: number; bestStatic: number; model: number }[] = [];
    const measure = async (n: number) => {
      const phase = phaseAt(world, n);
      const ev = evals[phase]!;
      const m = await client.request<{ active: number | null; compatible: boolean; weights?: SerializedWeights }>('GET', `/v1/models/${pipeline}?weights=true`);
      const learned = m.active && m.compatible && m.weights ? mean(learnedValues(world, phase, deserializeWeights(m.weights), encoder, contexts)) : mean(ev.uniform);
      curve.push({ n, learned, oracle: mean(ev.oracle), uniform: mean(ev.uniform), bestStatic: mean(ev.bestStatic), model: m.active ?? 0 });
    };
    await measure(0);
    const bar = o.quiet ? undefined : new cliProgress.SingleBar({ format: `${world.name} [{bar}] {value}/{total} outcomes | learned/oracle {ratio} | model v{model}` }, cliProgress.Presets.shades_classic);
    bar?.start(o.outcomes, 0, { ratio: '-', model: 0 });
    let done = 0;
    let served = 0;
    const one = async (i: number) => {
      const phase = phaseAt(world, i);
      const x = sampleContext(world, rng);
      const a = await client.allocate({ pipeline, strategy, features: contextFeatures(x) });
      const out = simulateOutcome(world, phase, x, world.agents.map((ag) => a.budgets[ag.name]!.tokens), rng);
      served += out.quality;
      await client.reportOutcome({ decisionId: a.decisionId, quality: out.quality, usage: out.usage });
      done++;
      bar?.increment(1);
    };
    /** The newest version trained so far, served or not (0: none): a retrain has finished when it grows. */
    const newestVersion = async () => (await newestModel(client, pipeline))?.version ?? 0;
    let lastTrained = await newestVersion();
    for (let from = 0; from < o.outcomes; from += o.checkpoint) {
      const to = Math.min(o.outcomes, from + o.checkpoint);
      let next = from;
      await Promise.all(
        Array.from({ length: o.concurrency }, async () => {
          for (let i = next++; i < to; i = next++) await one(i);
        }),
      );
      if (o.lockstep) {
        // Outcomes arrive faster here than in production: give the trainer the chance to catch up, so the
        // curve shows learning per outcome rather than this machine's training latency (bounded wait). The wait
        // ends when a retrain has finished (a new version exists), whether the activation gate passed it, refused
        // it or holds it as a candidate: waiting for a new *serving* version waited out the whole bound after
        // every refusal.
        const deadline = Date.now() + 15_000;
        for (;;) {
          const newest = await newestVersion();
          if (newest > lastTrained || Date.now() > deadline) {
            lastTrained = Math.max(lastTrained, newest);
            break;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await measure(done);
      const c = curve.at(-1)!;
      bar?.update(done, { ratio: (c.learned / c.oracle).toFixed(3), model: c.model });
    }
    bar?.stop();
    // Let the last outcomes reach the buffer and train once more, so the report reflects all of them.
    await new Promise((r) => setTimeout(r, 1500));
    // Waits (30 s at most) for that retrain to finish, not for a new version to serve: a new version is a candidate
    // until the gate has judged it on traffic, and no more traffic comes; and while one awaits the gate a retrain
    // only judges it (no new version). Finished: the server's count of finished retrains grew (/metrics, every
    // result), or, where /metrics does not say, the newest version or its gate record changed.
    const before = await retrainState(client, pipeline, baseUrl, o.local ? undefined : o.key);
    await client.request('POST', `/v1/models/${pipeline}/train`);
    for (let t = 0; t < 150; t++) {
      if ((await retrainState(client, pipeline, baseUrl, o.local ? undefined : o.key)) !== before) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await measure(o.outcomes);
    const last = curve.at(-1)!;
    const failedRetrains = await retrainFailures(baseUrl, o.local ? undefined : o.key);
    const chartPath = o.out ?? path.join(tmpdir(), `apportion-sim-${world.name}.html`);
    const series = [
      { name: 'learned (greedy)', color: '#d62728', points: curve.map((c) => [c.n, c.learned] as const) },
      { name: 'oracle', color: '#2ca02c', dashed: true, points: curve.map((c) => [c.n, c.oracle] as const) },
      { name: 'best static split', color: '#1f77b4', dashed: true, points: curve.map((c) => [c.n, c.bestStatic] as const) },
      { name: 'uniform', color: '#7f7f7f', dashed: true, points: curve.map((c) => [c.n, c.uniform] as const) },
    ];
    writeFileSync(
      chartPath,
      renderChart({
        title: `Apportion learned allocation — world "${world.name}"`,
        subtitle: world.description,
        xLabel: 'outcomes reported',
        yLabel: 'expected quality (400 held-out contexts)',
        series,
        notes: [
          `final: learned ${last.learned.toFixed(4)} (${((100 * last.learned) / last.oracle).toFixed(1)} % of oracle), best static ${last.bestStatic.toFixed(4)}, uniform ${last.uniform.toFixed(4)}, oracle ${last.oracle.toFixed(4)}`,
          `mean observed quality of served (exploring) decisions: ${(served / o.outcomes).toFixed(4)}; model version ${last.model}`,
          ...(world.drift ? [`the world drifts at outcome ${world.drift.at}`] : []),
        ],
      }),
    );
    const row = (name: string, v: number) => process.stdout.write(`  ${name.padEnd(18)} ${v.toFixed(4)}  (${((100 * v) / last.oracle).toFixed(1)} % of oracle)\n`);
    process.stdout.write(`\nworld ${world.name}: ${o.outcomes} outcomes through ${o.local ? 'an in-process server' : o.url}, model v${last.model}\n`);
    row('learned', last.learned);
    row('best static split', last.bestStatic);
    row('uniform', last.uniform);
    row('oracle', last.oracle);
    process.stdout.write(`  served (exploring) mean observed quality ${(served / o.outcomes).toFixed(4)}\n  learning curve: ${chartPath}\n`);
    // Versions trained so far, served or not: with none after all these outcomes the learner is broken; with some
    // but none serving, the activation gate has not passed one yet and the default strategy serves (a result).
    const trained = last.model > 0 ? 1 : ((await client.request<{ versions: unknown[] }>('GET', `/v1/models/${pipeline}`)).versions?.length ?? 0);
    if (last.model === 0 && trained > 0) {
      process.stdout.write(`  ${trained} version(s) trained; none has cleared the activation gate yet, so the pipeline's default strategy serves ("learned" above is that strategy)\n`);
    }
    if (trained === 0 || (failedRetrains ?? 0) > 0) {
      // Loud, and a failing exit status: no version trained after thousands of outcomes is a broken learner, not a result.
      const what = trained === 0 ? `no model was trained after ${o.outcomes} outcomes (model v0): "learned" above is the default strategy` : `the model reached v${last.model}`;
      const failures = failedRetrains === undefined ? 'the server did not report apportion_learner_retrains_total' : `${failedRetrains} retrain attempt(s) failed`;
      process.stderr.write(`\nWARNING: ${what}; ${failures}. See the worker's log ("learner retrain FAILED") and /metrics.\n`);
      process.exitCode = 1;
    }
    return { learned: last.learned, oracle: last.oracle, uniform: last.uniform, bestStatic: last.bestStatic, chart: chartPath };
  } finally {
    await stopLocal?.();
  }
}

/** Failed retrain attempts the server counted (`apportion_learner_retrains_total{result="failed"}`), if it reports them. */
async function retrainFailures(baseUrl: string, key: string | undefined): Promise<number | undefined> {
  return (await retrainCounts(baseUrl, key))?.failed;
}

/** The server's apportion_learner_retrains_total by result (0 for a result not yet counted); undefined when /metrics does not answer it. */
async function retrainCounts(baseUrl: string, key: string | undefined): Promise<{ trained: number; skipped: number; failed: number } | undefined> {
  try {
    // The admin key opens /metrics when APPORTION_METRICS_KEY guards it.
    const res = await fetch(`${baseUrl.replace(/\/$/, '')}/metrics`, { signal: AbortSignal.timeout(10_000), ...(key ? { headers: { authorization: `Bearer ${key}` } } : {}) });
    const text = await res.text();
    if (!/^# TYPE apportion_learner_retrains_total /m.test(text)) return undefined;
    const count = (result: string) => Number(new RegExp(`^apportion_learner_retrains_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return { trained: count('trained'), skipped: count('skipped'), failed: count('failed') };
  } catch {
    return undefined;
  }
}

/** What changes when a retrain of `pipeline` finishes: the finished retrains' count, else the newest version and its gate record. */
async function retrainState(client: ApportionClient, pipeline: string, baseUrl: string, key: string | undefined): Promise<string> {
  const c = await retrainCounts(baseUrl, key);
  if (c) return `retrains ${c.trained + c.skipped + c.failed}`;
  const newest = await newestModel(client, pipeline);
  return newest ? `v${newest.version} ${newest.gate?.status ?? ''} ${newest.gate?.events ?? ''} ${newest.gate?.decidedAt ?? ''}` : 'none';
}

type VersionSummary = { version: number; gate?: { status?: string; events?: number; decidedAt?: number } };

/** The newest version of `pipeline`'s model list (served or not) with its gate record; undefined before the first. */
async function newestModel(client: ApportionClient, pipeline: string): Promise<VersionSummary | undefined> {
  const m = await client.request<{ versions?: VersionSummary[] }>('GET', `/v1/models/${pipeline}`);
  return (m.versions ?? []).reduce<VersionSummary | undefined>((best, v) => (best === undefined || v.version > best.version ? v : best), undefined);
}

/**
 * Writes a pipeline's logged decisions as DSJSON lines, oldest first: the newest `limit` lines buffered when the
 * export starts, then those that arrive while it runs, paged by the route's cursor (each line exactly once; a line
 * trimmed from the buffer before it was read is reported on stderr). λ: the pipeline's (as OPE uses) unless given.
 * With `--out` the lines go to a file beside it, renamed over `--out` once the export is complete: a failed export
 * (an unknown pipeline, a server that went away) leaves a file already at that path as it was, and no partial one.
 */
async function exportLogs(pipeline: string, o: { url: string; key?: string; out?: string; limit: number; costWeight?: number }): Promise<void> {
  const client = new ApportionClient({ url: o.url, ...(o.key ? { key: o.key } : {}), timeoutMs: 60_000 });
  if (!o.out) {
    await exportPages(client, pipeline, o, process.stdout);
    return;
  }
  if (existsSync(o.out) && statSync(o.out).isDirectory()) throw new Error(`--out ${o.out}: is a directory (name a file)`);
  const partial = `${o.out}.${process.pid}.partial`;
  let fd: number;
  try {
    // Opened here, not by the stream: a path that cannot be written is a one-line error, not an unhandled 'error' event.
    fd = openSync(partial, 'w');
  } catch (e) {
    throw new Error(`--out ${o.out}: cannot write there (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const sink = createWriteStream(partial, { fd });
  try {
    const written = await exportPages(client, pipeline, o, sink);
    await new Promise<void>((r, reject) => sink.on('error', reject).end(r));
    renameSync(partial, o.out);
    process.stderr.write(`${written.count} decisions written to ${o.out} (DSJSON, oldest first, λ ${written.lambda})\n`);
  } catch (e) {
    sink.destroy();
    rmSync(partial, { force: true });
    throw e;
  }
}

/** Writes the pages to `sink`; how many lines, and the λ they were written with. */
async function exportPages(client: ApportionClient, pipeline: string, o: { limit: number; costWeight?: number }, sink: NodeJS.WritableStream): Promise<{ count: number; lambda: number }> {
  const base = `/v1/pipelines/${encodeURIComponent(pipeline)}/logs`;
  let cursor = `start&newest=${o.limit}`;
  let written = 0;
  let gaps = 0;
  let lambda: number | undefined;
  while (written < o.limit) {
    const page = Math.min(10_000, o.limit - written);
    const res = await client.request<{ agents: string[]; costWeight?: number; items: LoggedEvent[]; next: string; gap?: boolean }>('GET', `${base}?limit=${page}&cursor=${cursor}`);
    // One λ for the whole file: the first page's (the pipeline's when the export started).
    lambda ??= o.costWeight ?? res.costWeight ?? 0;
    if (res.gap) gaps++;
    for (const e of res.items) sink.write(`${toDsjson(e, res.agents, lambda)}\n`);
    written += res.items.length;
    cursor = encodeURIComponent(res.next);
    if (res.items.length < page) break;
  }
  if (gaps > 0) process.stderr.write(`warning: ${gaps} time(s) lines were trimmed from the buffer (it keeps the newest 100,000) before the export read them\n`);
  return { count: written, lambda: lambda ?? 0 };
}

export function registerLearnerCommands(program: Command): void {
  program
    .command('simulate')
    .description(`drive the API with a simulated world (${WORLD_NAMES.join(', ')} or a path to a world JSON) and compare learned vs uniform vs best static vs oracle`)
    .argument('<world>', `${WORLD_NAMES.join(', ')}, or the path of a world JSON file`, worldArg)
    .addOption(urlOption())
    .addOption(keyOption())
    .option('--outcomes <n>', 'outcomes to report (1 to 10,000,000)', intArg(1, 10_000_000), 3000)
    .option('--concurrency <n>', 'requests in flight (1 to 1024)', intArg(1, 1024), 8)
    .option('--checkpoint <n>', 'evaluate the served model every n outcomes (1 to 10,000,000)', intArg(1, 10_000_000), 250)
    .option('--train-every <n>', 'learned strategy retrains after n outcomes (10 to 1,000,000)', intArg(10, 1_000_000), 250)
    .option('--seed <n>', 'random seed (0 to 4294967295)', seedArg, 7)
    .option('--out <file>', 'learning-curve chart (HTML); default <tmpdir>/apportion-sim-<world>.html')
    .option('--local', 'start a private in-process server (own key prefix and, unless APPORTION_MODELS_DIR is set, own models directory; both dropped afterwards) instead of using --url', false)
    .option('--quiet', 'no progress bar', false)
    .option('--no-lockstep', 'do not wait for a retrain at each checkpoint (outcomes then outpace training on a fast loop)')
    .action(async (world: string, o: SimulateOptions) => {
      await simulate(world, o);
    });

  program
    .command('export-logs <pipeline>')
    .description("write a pipeline's logged decisions with outcomes as Vowpal Wabbit DSJSON lines")
    .addOption(urlOption())
    .addOption(keyOption())
    .option('--out <file>', 'output file (default stdout); replaced only once the export is complete')
    .option('--limit <n>', 'most decisions: the newest n buffered at the start, then those arriving meanwhile, written oldest first (1 to 100,000,000)', intArg(1, 100_000_000), 100_000)
    .option('--cost-weight <λ>', "λ in reward = quality − λ·cost (cost = −reward), a number from 0 to 1,000,000; default the pipeline's (its learned strategy's costWeight, as OPE uses)", numberArg(0, 1_000_000))
    .action((pipeline: string, o: { url: string; key?: string; out?: string; limit: number; costWeight?: number }) => exportLogs(pipeline, o));
}
