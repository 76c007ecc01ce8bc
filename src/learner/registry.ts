import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors/app-error.js';
import type { Core } from '../runtime.js';
import { learnerKeys } from './keys.js';
import { deserializeWeights, serializeWeights, type ModelWeights, type SerializedWeights } from './model.js';
import type { TrainMetrics } from './trainer.js';

/** One model version: its weights and what it was trained on. */
export interface ModelVersion {
  readonly version: number;
  readonly pipeline: string;
  readonly createdAt: number;
  /** Feature encoder signature and agent order the weights expect. */
  readonly signature: string;
  readonly agents: readonly string[];
  readonly metrics: TrainMetrics & { readonly costWeight: number; readonly buffer: number };
  readonly weights: SerializedWeights;
}

export type ModelSummary = Omit<ModelVersion, 'weights' | 'pipeline'>;

/**
 * The `models` control document of a pipeline (id = pipeline id): the active version's weights ride along,
 * so every process's snapshot carries them and switches within about a second of a change.
 */
export interface ModelDoc {
  readonly pipeline: string;
  readonly active: number;
  readonly signature: string;
  readonly agents: readonly string[];
  readonly weights: SerializedWeights;
  readonly activatedAt: number;
  /** Newest first, at most MAX_LISTED. */
  readonly versions: readonly ModelSummary[];
}

const MAX_LISTED = 100;

const summary = (v: ModelVersion): ModelSummary => ({ version: v.version, createdAt: v.createdAt, signature: v.signature, agents: v.agents, metrics: v.metrics });

/**
 * Model registry: every version in a Redis hash of the pipeline's slot (the copy rollback reads, shared by
 * all processes) and as a file `<modelsDir>/<pipeline>/<version>/model.json` (the durable artefact); the
 * active one in the `models` control document.
 */
export class ModelRegistry {
  constructor(private readonly core: Pick<Core, 'redis' | 'keys' | 'store' | 'snapshot' | 'view' | 'config' | 'log'>) {}

  doc(pipeline: string): ModelDoc | undefined {
    return this.core.view().raw.kinds.models.get(pipeline)?.doc as ModelDoc | undefined;
  }

  async save(pipeline: string, weights: ModelWeights, meta: Omit<ModelVersion, 'version' | 'pipeline' | 'createdAt' | 'weights'>): Promise<ModelVersion> {
    const lk = learnerKeys(this.core.keys, pipeline);
    const version = await this.core.redis.incr(lk.modelSeq);
    const mv: ModelVersion = { version, pipeline, createdAt: Date.now(), ...meta, weights: serializeWeights(weights) };
    await this.core.redis.hset(lk.models, String(version), JSON.stringify(mv));
    try {
      const dir = path.join(this.core.config.modelsDir, pipeline, String(version));
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'model.json'), `${JSON.stringify(mv, null, 1)}\n`);
    } catch (err) {
      this.core.log.warn({ err, pipeline, version }, 'model file not written (the Redis copy is kept)');
    }
    return mv;
  }

  async get(pipeline: string, version: number): Promise<ModelVersion | undefined> {
    const json = await this.core.redis.hget(learnerKeys(this.core.keys, pipeline).models, String(version));
    if (json) return JSON.parse(json) as ModelVersion;
    try {
      return JSON.parse(await readFile(path.join(this.core.config.modelsDir, pipeline, String(version), 'model.json'), 'utf8')) as ModelVersion;
    } catch {
      return undefined;
    }
  }

  /** Makes `mv` the serving version (validated first) and waits until this process serves it. */
  async activate(mv: ModelVersion): Promise<ModelDoc> {
    try {
      deserializeWeights(mv.weights);
    } catch (e) {
      throw new AppError('MODEL_INCOMPATIBLE', `body/version: model ${mv.version} has unusable weights (${(e as Error).message})`);
    }
    const prev = this.doc(mv.pipeline);
    const listed = new Map<number, ModelSummary>((prev?.versions ?? []).map((v) => [v.version, v]));
    listed.set(mv.version, summary(mv));
    const versions = [...listed.values()].sort((a, b) => b.version - a.version).slice(0, MAX_LISTED);
    const doc: ModelDoc = {
      pipeline: mv.pipeline,
      active: mv.version,
      signature: mv.signature,
      agents: mv.agents,
      weights: mv.weights,
      activatedAt: Date.now(),
      versions,
    };
    await this.core.store.put('models', mv.pipeline, doc);
    await this.core.snapshot.refresh();
    return doc;
  }
}
