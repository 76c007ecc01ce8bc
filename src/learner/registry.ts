import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors/app-error.js';
import type { Core } from '../runtime.js';
import type { FeatureScaling } from './features.js';
import type { GateComparison } from './gate.js';
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
  /** Numeric feature scaling fitted on the version's training window (applied identically when it serves). */
  readonly scaling?: FeatureScaling;
  /** The activation gate's verdict, once the version was put to it (see gate.ts). */
  readonly gate?: GateRecord;
}

/** What the activation gate decided about a version, and why. */
export interface GateRecord {
  /** `candidate`: awaiting the gate; `passed`: cleared it (served from then on, until superseded); `refused`: did not. */
  readonly status: 'candidate' | 'passed' | 'refused';
  readonly reason: string;
  readonly events: number;
  readonly comparisons: readonly GateComparison[];
  readonly decidedAt: number;
}

export type ModelSummary = Omit<ModelVersion, 'weights' | 'pipeline' | 'scaling'>;

/**
 * The `models` control document of a pipeline (id = pipeline id): the active version's weights ride along,
 * so every process's snapshot carries them and switches within about a second of a change.
 */
export interface ModelDoc {
  readonly pipeline: string;
  /** The serving version; 0 while none has cleared the gate (the safe start serves the default strategy). */
  readonly active: number;
  readonly signature: string;
  readonly agents: readonly string[];
  /** The serving version's weights and scaling (absent while active is 0). */
  readonly weights?: SerializedWeights;
  readonly scaling?: FeatureScaling;
  readonly activatedAt: number;
  /** The newest trained version awaiting the gate: its split is mixed into decisions (policy.ts withCandidate). */
  readonly candidate?: { readonly version: number; readonly createdAt: number; readonly proposedAt?: number; readonly signature: string; readonly agents: readonly string[]; readonly weights: SerializedWeights; readonly scaling?: FeatureScaling };
  /** Newest first, at most MAX_LISTED. */
  readonly versions: readonly ModelSummary[];
}

const MAX_LISTED = 100;

const summary = (v: ModelVersion): ModelSummary => ({ version: v.version, createdAt: v.createdAt, signature: v.signature, agents: v.agents, metrics: v.metrics, ...(v.gate ? { gate: v.gate } : {}) });

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
      ...(mv.scaling ? { scaling: mv.scaling } : {}),
      activatedAt: Date.now(),
      // A candidate other than the version activated keeps awaiting the gate.
      ...(prev?.candidate && prev.candidate.version !== mv.version ? { candidate: prev.candidate } : {}),
      versions,
    };
    await this.core.store.put('models', mv.pipeline, doc);
    await this.core.snapshot.refresh();
    return doc;
  }

  /**
   * Makes `mv` the candidate (awaiting the activation gate; its split is mixed into decisions from now on) without
   * changing what serves. A previous candidate is superseded.
   */
  async propose(mv: ModelVersion): Promise<ModelDoc> {
    deserializeWeights(mv.weights);
    const prev = this.doc(mv.pipeline);
    const withGate: ModelVersion = { ...mv, gate: { status: 'candidate', reason: 'awaiting the activation gate', events: 0, comparisons: [], decidedAt: Date.now() } };
    await this.core.redis.hset(learnerKeys(this.core.keys, mv.pipeline).models, String(mv.version), JSON.stringify(withGate));
    const listed = new Map<number, ModelSummary>((prev?.versions ?? []).map((v) => [v.version, v]));
    listed.set(mv.version, summary(withGate));
    const versions = [...listed.values()].sort((a, b) => b.version - a.version).slice(0, MAX_LISTED);
    const candidate = { version: mv.version, createdAt: mv.createdAt, proposedAt: Date.now(), signature: mv.signature, agents: mv.agents, weights: mv.weights, ...(mv.scaling ? { scaling: mv.scaling } : {}) };
    const doc: ModelDoc = prev
      ? { ...prev, candidate, versions }
      : { pipeline: mv.pipeline, active: 0, signature: mv.signature, agents: mv.agents, activatedAt: 0, candidate, versions };
    await this.core.store.put('models', mv.pipeline, doc);
    await this.core.snapshot.refresh();
    return doc;
  }

  /** Records the gate's verdict on a version (Redis copy and listing); a refused candidate stops being mixed in. */
  async recordGate(pipeline: string, version: number, gate: GateRecord): Promise<void> {
    const mv = await this.get(pipeline, version);
    if (mv) await this.core.redis.hset(learnerKeys(this.core.keys, pipeline).models, String(version), JSON.stringify({ ...mv, gate }));
    const prev = this.doc(pipeline);
    if (!prev) return;
    const versions = prev.versions.map((v) => (v.version === version ? { ...v, gate } : v));
    const { candidate, ...rest } = prev;
    const keep = candidate && !(candidate.version === version && gate.status === 'refused');
    await this.core.store.put('models', pipeline, { ...rest, ...(keep ? { candidate } : {}), versions });
    await this.core.snapshot.refresh();
  }
}
