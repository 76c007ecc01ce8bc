import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import { runScript } from '../redis/scripts.js';
import type { Core } from '../runtime.js';
import type { StrategyDef } from '../strategies/schema.js';
import type { LoggedEvent } from './events.js';
import type { FeaturesBody } from './features.js';
import { servingModel, type LearnedParams } from './kind.js';
import { learnerKeys } from './keys.js';
import { deserializeWeights, initialWeights, serializeWeights } from './model.js';
import { ModelRegistry, type ModelVersion } from './registry.js';
import { mulberry32 } from './rng.js';
import { runTrainJob, trainJob, type TrainJobInput } from './train-process.js';
import type { TrainOptions } from './trainer.js';

/** Cap of the training buffer (newest events kept). */
export const BUFFER_CAP = 100_000;
const INGEST_BATCH = 5000;
const DEFAULTED_MEMORY_MS = 7 * 86_400_000;

/** The learned strategies of a pipeline; the first is the one whose parameters drive training. */
export function learnedStrategies(view: ControlView, pipeline: Pipeline): readonly StrategyDef[] {
  // Memoised per control view: the shadow hook asks on every allocation of every pipeline.
  return view.memo(`learner:strategies:${pipeline.id}:${pipeline.version}`, () => {
    const all = [...view.strategies.values()].filter((s) => s.pipeline === pipeline.id && s.kind === 'learned').sort((a, b) => a.id.localeCompare(b.id));
    const dflt = all.findIndex((s) => s.id === pipeline.defaultStrategy);
    if (dflt > 0) all.unshift(...all.splice(dflt, 1));
    return all;
  });
}

export function trainingParams(view: ControlView, pipeline: Pipeline): LearnedParams | undefined {
  const s = learnedStrategies(view, pipeline)[0];
  return s ? (s.params as LearnedParams) : undefined;
}

export interface IngestResult {
  readonly moved: number;
  readonly dropped: number;
  readonly defaulted: number;
  readonly left: number;
}

export interface TrainResult {
  readonly trained: boolean;
  readonly reason?: string;
  readonly model?: ModelVersion;
}

/** Buffer ingest, counters and training of one pipeline's model (runs in the worker). */
export class TrainingService {
  readonly registry: ModelRegistry;

  constructor(
    private readonly core: Core,
    private readonly trainOptions: TrainOptions = {},
    /** Train in a low-priority child process (default) so serving in this process is neither blocked nor starved. */
    private readonly inThread = true,
  ) {
    this.registry = new ModelRegistry(core);
  }

  async ingest(pipeline: string, now = Date.now()): Promise<IngestResult> {
    const lk = learnerKeys(this.core.keys, pipeline);
    let total = { moved: 0, dropped: 0, defaulted: 0, left: 0 };
    for (let round = 0; round < 100; round++) {
      const [moved, dropped, defaulted, left] = await runScript<number[]>(
        this.core.redis,
        'learnerIngest',
        [lk.incoming, lk.buffer, lk.pending, lk.pendingData, lk.defaulted, lk.resolved],
        [now, BUFFER_CAP, INGEST_BATCH, DEFAULTED_MEMORY_MS],
      );
      total = { moved: total.moved + moved!, dropped: total.dropped + dropped!, defaulted: total.defaulted + defaulted!, left: left! };
      if (left === 0 && moved! + dropped! < INGEST_BATCH && defaulted! < INGEST_BATCH) break;
    }
    return total;
  }

  /** Newest first. */
  async events(pipeline: string, limit: number): Promise<LoggedEvent[]> {
    const raw = await this.core.redis.lrange(learnerKeys(this.core.keys, pipeline).buffer, 0, limit - 1);
    return raw.map((r) => JSON.parse(r) as LoggedEvent);
  }

  /** Counts an applied outcome; true when enough arrived since the last training to train again. */
  async countOutcome(pipeline: string, trainEvery: number): Promise<boolean> {
    const lk = learnerKeys(this.core.keys, pipeline);
    const res = await this.core.redis.multi().hincrby(lk.counters, 'outcomes', 1).hget(lk.counters, 'trainedAt').exec();
    const outcomes = Number(res?.[0]?.[1] ?? 0);
    const trainedAt = Number(res?.[1]?.[1] ?? 0);
    return outcomes - trainedAt >= trainEvery;
  }

  /** Whether a retrain is due by count or by time. */
  async due(pipeline: string, params: LearnedParams, now = Date.now()): Promise<boolean> {
    const key = learnerKeys(this.core.keys, pipeline).counters;
    const c = await this.core.redis.hgetall(key);
    const fresh = Number(c.outcomes ?? 0) - Number(c.trainedAt ?? 0);
    if (fresh >= (params.trainEvery ?? 500)) return true;
    if (c.trainedTs === undefined) {
      // Never trained: the interval starts now (not at the epoch), so a handful of first outcomes does not
      // trigger a retrain on almost no data.
      await this.core.redis.hsetnx(key, 'trainedTs', now);
      return false;
    }
    return fresh > 0 && now - Number(c.trainedTs) >= (params.trainIntervalSeconds ?? 60) * 1000;
  }

  async train(pipelineId: string): Promise<TrainResult> {
    const view = this.core.view();
    const pipeline = view.pipelines.get(pipelineId);
    if (!pipeline) return { trained: false, reason: 'no such pipeline' };
    const params = trainingParams(view, pipeline);
    if (!params) return { trained: false, reason: 'no learned strategy' };
    const lk = learnerKeys(this.core.keys, pipelineId);
    await this.ingest(pipelineId);
    const outcomes = Number((await this.core.redis.hget(lk.counters, 'outcomes')) ?? 0);
    await this.core.redis.hset(lk.counters, 'trainedAt', outcomes, 'trainedTs', Date.now());
    const serving = servingModel(view, pipeline);
    const agents = pipeline.agents.map((a) => a.name);
    const costWeight = params.costWeight ?? 0;
    const init = serving.version > 0 ? serving.weights : initialWeights(serving.encoder.dim, agents.length, pipeline.defaultTotalTokens, mulberry32(1));
    const decl = view.raw.kinds.features.get(pipelineId)?.doc as FeaturesBody | undefined;
    const input: TrainJobInput = {
      redisUrl: this.core.config.redisUrl,
      bufferKey: lk.buffer,
      window: params.window ?? 8000,
      features: decl?.features ?? [],
      agents,
      costWeight,
      ...(params.halfLife !== undefined ? { halfLife: params.halfLife } : {}),
      init: serializeWeights(init),
      seed: outcomes,
      train: this.trainOptions,
    };
    const out = this.inThread
      ? await runTrainJob(input, (err) => this.core.log.warn({ err }, 'training process unavailable; training in this process'))
      : await trainJob({ ...input, train: { ...this.trainOptions, yieldToEventLoop: true } });
    if (!out.trained || !out.weights || !out.metrics) return { trained: false, reason: out.reason ?? 'not trained' };
    const weights = deserializeWeights(out.weights);
    const metrics = out.metrics;
    const events = { length: out.events };
    const saved = await this.registry.save(pipelineId, weights, {
      signature: serving.encoder.signature,
      agents,
      metrics: { ...metrics, costWeight, buffer: events.length },
    });
    await this.registry.activate(saved);
    this.core.log.info({ pipeline: pipelineId, version: saved.version, rows: metrics.rows, ms: metrics.ms, holdoutMse: metrics.holdoutMse }, 'learner model trained');
    return { trained: true, model: saved };
  }
}
