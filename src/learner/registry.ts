import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { AppError } from '../errors/app-error.js';
import { ControlConflict, versionIn } from '../control/store.js';
import { writeFresh } from '../control/write.js';
import { jsonDecoder } from '../redis/decode.js';
import type { Services } from '../kernel/module.js';
import type { FeatureScaling, FeatureUse } from './features.js';
import type { GateComparison } from './gate.js';
import { learnerKeys } from './keys.js';
import { deserializeWeights, serializeWeights, type ModelWeights, type SerializedWeights } from './model.js';
import type { TrainMetrics } from './trainer.js';
import type { CandidateRefusal, RevertRecord, SafeStartState } from './guard.js';
import { fitsTierModels, type SerializedTierParams } from './tiers-policy.js';
import { learnsTiers, tierModelIds } from '@apportion/sdk/engine';
import type { Pipeline } from '../pipelines/schema.js';

/** One model version: its weights and what it was trained on. */
export interface ModelVersion {
  readonly version: number;
  readonly pipeline: string;
  readonly createdAt: number;
  /**
   * The pipeline's dataset id when the version was saved (learner keys `dataset`; absent: saved before dataset ids):
   * the model file's directory, and what a file read back must carry to be served as this version.
   */
  readonly dataset?: string;
  /** Feature encoder signature and agent order the weights expect. */
  readonly signature: string;
  readonly agents: readonly string[];
  readonly metrics: TrainMetrics & {
    readonly costWeight: number;
    readonly buffer: number;
    /** The training window and recency half-life (events) it was trained with; drift recovery shortens the half-life after a change. */
    readonly window?: number;
    readonly halfLife?: number;
    /** Drift recovery's forgetting: the factor the events decided before the latest detection weighed in its training (drift.ts forgetWeight); absent when none was forgotten. */
    readonly preChangeWeight?: number;
    /** The version whose weights the training started from (absent or 0: the untrained prior). */
    readonly warmStart?: number;
  };
  readonly weights: SerializedWeights;
  /** Numeric feature scaling fitted on the version's training window (applied identically when it serves). */
  readonly scaling?: FeatureScaling;
  /** Per declared feature, what the training window's requests carried and what the encoder could not read (features.ts featureUse). */
  readonly features?: Readonly<Record<string, FeatureUse>>;
  /** The activation gate's verdict, once the version was put to it (see gate.ts). */
  readonly gate?: GateRecord;
  /**
   * `tokens` (absent: written before model tiers): the token split's reward model (`weights`). `tiers`: the joint
   * model-and-tokens reward model of a pipeline with model tiers (tiers-policy.ts), its parameters in `tiers`
   * (`weights` then holds the token model's untrained prior, which never serves).
   */
  readonly kind?: 'tokens' | 'tiers';
  readonly tiers?: SerializedTierParams;
}

/**
 * Why a saved version cannot serve the pipeline as it is now, or undefined when it can: it must have been trained for
 * the pipeline's feature declaration (`signature`, the encoder's) and agents, be of the kind the pipeline learns (a
 * `tiers` version only on a pipeline with model tiers, a token version only on one without), and a tier version must
 * have been fitted for exactly the candidate models the pipeline declares now (tiers-policy.ts fitsTierModels). The
 * one rule for everything that picks a version to serve (the runtime guard's revert target, an operator's rollback),
 * as serving applies it (servingModel serves the safe start instead of a version that breaks it).
 */
export function unfitFor(mv: Pick<ModelVersion, 'signature' | 'agents' | 'kind' | 'tiers'>, pipeline: Pipeline, signature: string): string | undefined {
  const agents = pipeline.agents.map((a) => a.name);
  if (mv.signature !== signature || mv.agents.join('\u0000') !== agents.join('\u0000')) {
    return `was trained for features ${mv.signature} and agents [${mv.agents.join(', ')}]; the pipeline now has ${signature} and [${agents.join(', ')}]`;
  }
  const tiered = learnsTiers(pipeline);
  if (mv.kind === 'tiers') {
    if (!tiered || !mv.tiers) return 'is a joint model-and-tokens (tiers) version; the pipeline now learns token splits only (no model tiers)';
    const models = tierModelIds(pipeline);
    if (!fitsTierModels(mv.tiers, models)) {
      return `was fitted for the candidate models [${(mv.tiers.models ?? []).map((m) => m.join(' | ')).join('; ')}]; the pipeline now declares [${models.map((m) => m.join(' | ')).join('; ')}]`;
    }
    return undefined;
  }
  return tiered ? 'is a token version; the pipeline now has model tiers (it serves joint model-and-tokens versions only)' : undefined;
}

/** What the activation gate decided about a version, and why. */
export interface GateRecord {
  /** `candidate`: awaiting the gate (or judged, not yet conclusively, and waiting for more decisions); `passed`: cleared it (served from then on, until superseded); `refused`: did not. */
  readonly status: 'candidate' | 'passed' | 'refused';
  readonly reason: string;
  readonly events: number;
  readonly comparisons: readonly GateComparison[];
  readonly decidedAt: number;
  /** How many times the gate has judged this version (a candidate waits between looks; gate.ts). */
  readonly look?: number;
  /** Set when the runtime guard refused the candidate on its arm's realised rewards (guard.ts candidateVerdict), before the gate judged it. */
  readonly guard?: CandidateRefusal;
}

/**
 * A computed float: JSON writes NaN and ±Infinity as null, and a version written with one was read as it was
 * stored before these schemas; it still is (typed as the number it was written as).
 */
const Float = Type.Unsafe<number>(Type.Union([Type.Number(), Type.Null()]));

const GateComparisonSchema = Type.Object({
  against: Type.Union([Type.Literal('serving'), Type.Literal('default')]),
  diff: Float,
  lo: Float,
  reference: Float,
  candidate: Float,
});

const ModelVersionSchema = Type.Object({
  version: Type.Number(),
  pipeline: Type.String(),
  createdAt: Type.Number(),
  dataset: Type.Optional(Type.String()),
  signature: Type.String(),
  agents: Type.Array(Type.String()),
  metrics: Type.Object({
    rows: Type.Number(),
    steps: Type.Number(),
    ms: Type.Number(),
    trainMse: Float,
    holdoutMse: Float,
    holdoutVariance: Float,
    holdoutStrata: Type.Optional(Type.Record(Type.String(), Type.Object({ n: Type.Number(), mse: Float, sd: Float }))),
    backend: Type.String(),
    costWeight: Type.Number(),
    buffer: Type.Number(),
  }),
  weights: Type.Object({ inputDim: Type.Number(), hidden: Type.Number(), agents: Type.Number(), w1: Type.String(), b1: Type.String(), w2: Type.String(), w3: Type.String(), b2: Type.String() }),
  scaling: Type.Optional(Type.Record(Type.String(), Type.Object({ center: Float, scale: Float }))),
  features: Type.Optional(Type.Record(Type.String(), Type.Object({ present: Type.Number(), unusable: Type.Number(), example: Type.Optional(Type.String()) }))),
  kind: Type.Optional(Type.Union([Type.Literal('tokens'), Type.Literal('tiers')])),
  tiers: Type.Optional(Type.Object({ u: Type.Array(Type.Array(Type.Number())), theta: Type.Array(Type.Array(Type.Number())), eta: Type.Array(Type.Array(Type.Number())), kappa: Type.Array(Type.Array(Type.Number())), models: Type.Optional(Type.Array(Type.Array(Type.String()))) })),
  gate: Type.Optional(
    Type.Object({
      status: Type.Union([Type.Literal('candidate'), Type.Literal('passed'), Type.Literal('refused')]),
      reason: Type.String(),
      events: Type.Number(),
      comparisons: Type.Array(GateComparisonSchema),
      decidedAt: Type.Number(),
      look: Type.Optional(Type.Number()),
      guard: Type.Optional(
        Type.Object({
          reason: Type.Literal('guard'),
          at: Type.Number(),
          against: Type.Union([Type.Literal('default'), Type.Literal('serving')]),
          diff: Float,
          ci: Type.Unsafe<readonly [number, number]>(Type.Array(Float, { minItems: 2, maxItems: 2 })),
          candidate: Type.Object({ n: Type.Number(), mean: Float }),
          reference: Type.Object({ n: Type.Number(), mean: Float, strategy: Type.Optional(Type.String()) }),
        }),
      ),
    }),
  ),
});

/**
 * A model version as the registry stores it (Redis hash `models`, and the model file), parsed and checked against
 * its schema (typed by ModelVersion); undefined when it is not JSON or not of that shape.
 */
const decodeModelVersion: (text: string) => ModelVersion | undefined = jsonDecoder(ModelVersionSchema);

const WeightsSchema = ModelVersionSchema.properties.weights;

/**
 * What the registry and serving read of a `models` control document (ModelDoc): checked when it is read, so a document
 * of another shape (edited by hand, written by a broken release) is refused by name instead of failing every retrain
 * with a TypeError. Fields the readers do not depend on are not checked.
 */
const ModelDocCheck = TypeCompiler.Compile(
  Type.Object({
    pipeline: Type.String(),
    active: Type.Number(),
    signature: Type.String(),
    agents: Type.Array(Type.String()),
    weights: Type.Optional(WeightsSchema),
    activatedAt: Type.Optional(Type.Number()),
    candidate: Type.Optional(Type.Object({ version: Type.Number(), createdAt: Type.Number(), signature: Type.String(), agents: Type.Array(Type.String()), weights: WeightsSchema })),
    versions: Type.Array(Type.Object({ version: Type.Number(), createdAt: Type.Number(), metrics: Type.Object({}) })),
    guard: Type.Optional(Type.Object({ reverts: Type.Array(Type.Object({})) })),
    drift: Type.Optional(Type.Object({ changes: Type.Array(Type.Object({})) })),
  }),
);

export type ModelSummary = Omit<ModelVersion, 'weights' | 'pipeline' | 'scaling' | 'tiers' | 'features'> & {
  /** The declared features whose values in the training window the encoder could not read (counted as missing or unknown), if any. */
  readonly unusableFeatures?: Readonly<Record<string, FeatureUse>>;
  /** When this version last became the serving one (absent: it never served). */
  readonly activatedAt?: number;
  /** Set when the runtime guard or drift recovery took this version out of service (guard.ts; `reason` says which). */
  readonly reverted?: RevertRecord;
  /** Set when the version was saved but not activated, and why. */
  readonly held?: string;
};

/** The runtime guard's state of a pipeline, kept in its `models` document. */
export interface GuardState {
  /** Every model was taken out of service: the control strategy serves all of the learned strategy's traffic. */
  readonly toControl?: boolean;
  /** Newly trained versions are not activated automatically before the pipeline has this many outcomes. */
  readonly holdUntil?: number;
  /** The newest reverts (the guard's and drift recovery's retirements), newest first (at most 20). */
  readonly reverts: readonly RevertRecord[];
  /** Start of the guard's current segment of evidence (its last revert or a manual activation; absent: its start). */
  readonly since?: number;
  /** The segment began with a revert to an earlier version: the next revert goes to the control strategy. */
  readonly steppedBack?: boolean;
  /** The safe start's exploration scale, set by the guard when it found the safe start's learned traffic worse than the control (guard.ts SafeStartState). */
  readonly safeStart?: SafeStartState;
  /**
   * The control arm's share while a trained version serves, when the guard set it apart from the strategy's
   * `controlShare` (guard.ts adaptiveControlShare: raised on probation, lowered while the version leads clearly);
   * absent: that share. Kept across automatic activations (the guard's segment goes on), dropped by a revert or a
   * manual activation (a new segment).
   */
  readonly controlShare?: number;
}

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
  /** The serving version's kind and, for a `tiers` version, its parameters (ModelVersion). */
  readonly kind?: 'tokens' | 'tiers';
  readonly tiers?: SerializedTierParams;
  readonly activatedAt: number;
  /** The newest trained version awaiting the gate: its split is mixed into decisions (policy.ts withCandidate). */
  readonly candidate?: {
    readonly version: number;
    readonly createdAt: number;
    readonly proposedAt?: number;
    readonly signature: string;
    readonly agents: readonly string[];
    readonly weights: SerializedWeights;
    readonly scaling?: FeatureScaling;
    readonly kind?: 'tokens' | 'tiers';
    readonly tiers?: SerializedTierParams;
    /**
     * The share of decisions its split gets while it is the candidate (policy.ts candidateShareFor), when not the
     * default CANDIDATE_SHARE: set for a version trained while a detected change was recent and the strategy's
     * `driftCandidateShare` is set. Serving (the server and the SDK's local mode) reads it here.
     */
    readonly share?: number;
  };
  /** Newest first, at most MAX_LISTED. */
  readonly versions: readonly ModelSummary[];
  readonly guard?: GuardState;
  /** Set by the trainer once the pipeline had the strategy's `exploreFirst` outcomes: the safe start's random splits and the hold on activations end. */
  readonly exploreFirst?: { readonly endedAt: number; readonly outcomes: number };
  /** Changes of the world drift recovery detected (training.ts checkDrift), newest first (at most 20). */
  readonly drift?: { readonly changes: readonly DriftChange[] };
}

/** A change drift recovery detected at a retrain (drift.ts residualCheck on the newest trained version). */
export interface DriftChange {
  /** When it was detected (epoch ms), and the version checked. */
  readonly detectedAt: number;
  readonly version: number;
  /** Where the change was placed: when the version was trained (epoch ms) and the pipeline's outcome count then. */
  readonly changeTs: number;
  readonly changeAt: number;
  /** The residual test: mean squared error on the n decisions since, the version's held-out error, z. */
  readonly mse: number;
  readonly holdoutMse: number;
  readonly z: number;
  readonly n: number;
  readonly reason: string;
}

const MAX_LISTED = 100;

function guardAfterActivation(g: GuardState | undefined, manual: boolean): { guard?: GuardState } {
  if (!g && !manual) return {};
  const reverts = g?.reverts ?? [];
  const hold = g?.holdUntil !== undefined ? { holdUntil: g.holdUntil } : {};
  if (manual) return { guard: { reverts, ...hold, since: Date.now() } };
  return {
    guard: {
      reverts,
      ...hold,
      ...(g?.since !== undefined ? { since: g.since } : {}),
      ...(g?.steppedBack ? { steppedBack: true } : {}),
      ...(g?.controlShare !== undefined ? { controlShare: g.controlShare } : {}),
    },
  };
}

// The listed metrics leave out a tier version's held-out errors per kind of action (holdoutStrata: drift recovery reads
// them from the version itself), so the models document and the model list stay small and scalar.
const listedMetrics = ({ holdoutStrata: _strata, ...m }: ModelVersion['metrics']): ModelVersion['metrics'] => m;
// Only the features with unusable values are listed (none on a healthy pipeline), so the list stays small.
const unusableOf = (features: ModelVersion['features']) => {
  const bad = Object.entries(features ?? {}).filter(([, u]) => u.unusable > 0);
  return bad.length > 0 ? { unusableFeatures: Object.fromEntries(bad) } : {};
};
const summary = (v: ModelVersion): ModelSummary => ({ version: v.version, createdAt: v.createdAt, signature: v.signature, agents: v.agents, metrics: listedMetrics(v.metrics), ...(v.kind ? { kind: v.kind } : {}), ...(v.gate ? { gate: v.gate } : {}), ...unusableOf(v.features) });

/** What serving reads of a version, as the `models` document carries it (kind and tier parameters only when it has them). */
function servingFields(v: ModelVersion): Pick<ModelDoc, 'signature' | 'agents' | 'weights' | 'scaling' | 'kind' | 'tiers'> {
  return { signature: v.signature, agents: v.agents, weights: v.weights, ...(v.scaling ? { scaling: v.scaling } : {}), ...(v.kind ? { kind: v.kind } : {}), ...(v.tiers ? { tiers: v.tiers } : {}) };
}

/** A models document without the serving version's fields (replaced as a whole when another version serves). */
function withoutServing(doc: ModelDoc): Omit<ModelDoc, 'weights' | 'scaling' | 'kind' | 'tiers'> {
  const { weights: _w, scaling: _s, kind: _k, tiers: _t, ...rest } = doc;
  return rest;
}

/**
 * Model registry: every version in a Redis hash of the pipeline's slot (the copy rollback reads, shared by
 * all processes) and as a file `<modelsDir>/<key prefix>/<pipeline>/<dataset>/<version>/model.json` (the durable
 * artefact, never overwritten); the active one in the `models` control document.
 */
export class ModelRegistry {
  constructor(private readonly core: Services<'redis' | 'keys' | 'store' | 'snapshot' | 'view' | 'log', 'modelsDir'>) {}

  /** The pipeline's model document; undefined when there is none or it is unreadable (see unreadable). */
  doc(pipeline: string): ModelDoc | undefined {
    const stored = this.core.view().raw.kinds.models.get(pipeline);
    return stored && !this.unreadable(pipeline) ? (stored.doc as ModelDoc) : undefined;
  }

  /** Versions of unreadable documents already logged (`<pipeline>@<version>`): one warning per change of the document. */
  private readonly loggedUnreadable = new Set<string>();

  /**
   * MODEL_DOCUMENT_UNREADABLE when the pipeline's stored model document is not of the model document's shape (logged
   * once per version of the document), else undefined. Retrains, the model list and every write but a rollback are
   * refused then; a rollback replaces the document with the chosen version's.
   */
  unreadable(pipeline: string, raw = this.core.view().raw): AppError | undefined {
    const stored = raw.kinds.models.get(pipeline);
    if (!stored || ModelDocCheck.Check(stored.doc)) return undefined;
    const first = ModelDocCheck.Errors(stored.doc).First();
    const where = first ? `${first.path || '/'}: ${first.message}` : 'not an object';
    const hash = this.core.keys.configKind('models');
    const err = new AppError(
      'MODEL_DOCUMENT_UNREADABLE',
      `params/pipeline: the model document of pipeline "${pipeline}" (field "${pipeline}" of hash ${hash}, version ${stored.version}) is not a valid model document (${where}); ` +
        `retrains and the model list are refused until it is repaired: POST /v1/models/${pipeline}/rollback with a saved version replaces it, ` +
        `or delete that field and restart the processes`,
    );
    const key = `${pipeline}@${stored.version}`;
    if (!this.loggedUnreadable.has(key)) {
      this.loggedUnreadable.add(key);
      this.core.log.error({ pipeline, hash, version: stored.version, where }, err.message);
    }
    return err;
  }

  /**
   * Read-modify-write of a pipeline's model document: `make` computes the new document from the current one, and
   * the write applies only if the document is still the one read, else `make` runs again on the reloaded state. So
   * a retrain's activation (trainer process), the runtime guard's revert (outcome worker) and an operator's
   * rollback never overwrite each other's changes. `make` returning undefined writes nothing.
   */
  private async update(
    pipeline: string,
    make: (prev: ModelDoc | undefined) => Promise<ModelDoc | undefined> | ModelDoc | undefined,
    opts: { readonly replaceUnreadable?: boolean } = {},
  ): Promise<ModelDoc | undefined> {
    const doc = await writeFresh(this.core, `params/pipeline: the model document of "${pipeline}"`, async () => {
      const raw = this.core.view().raw;
      const read = versionIn(raw, 'models', pipeline);
      // An unreadable document is never built on (its fields would be carried into the next one); only a rollback
      // (replaceUnreadable) replaces it as a whole.
      const bad = this.unreadable(pipeline, raw);
      if (bad && !opts.replaceUnreadable) throw bad;
      const next = await make(bad ? undefined : (raw.kinds.models.get(pipeline)?.doc as ModelDoc | undefined));
      if (next !== undefined) await this.core.store.put('models', pipeline, next, { expect: { docs: [read] } });
      // "Nothing to do" must also be decided on the current document, not on a snapshot that has not seen it yet
      // (another process's write): then the snapshot is reloaded and `make` runs again.
      else if ((await this.core.store.versionOf('models', pipeline)) !== read.version) throw new ControlConflict(`models ${pipeline}`);
      return next;
    });
    if (doc !== undefined) await this.core.snapshot.refresh();
    return doc;
  }

  async save(pipeline: string, weights: ModelWeights, meta: Omit<ModelVersion, 'version' | 'pipeline' | 'createdAt' | 'dataset' | 'weights'>): Promise<ModelVersion> {
    const lk = learnerKeys(this.core.keys, pipeline);
    const createdAt = Date.now();
    const serialized = serializeWeights(weights);
    for (let skipped = 0; ; skipped++) {
      const { dataset, version } = await this.nextVersion(pipeline);
      const mv: ModelVersion = { version, pipeline, createdAt, dataset, ...meta, weights: serialized };
      // A file already there is another model's (its number was handed out before, say by a model-seq restored from an
      // older backup): never overwritten; this model takes the next number instead.
      if ((await this.writeModelFile(mv)) === 'exists' && skipped < 100) continue;
      await this.core.redis.hset(lk.models, String(version), JSON.stringify(mv));
      return mv;
    }
  }

  /**
   * The next version number and the pipeline's dataset id, in one transaction of the pipeline's slot: the dataset id
   * is created with the first version and lost with the version counter, so numbers handed out again after a data loss
   * belong to a new dataset (and a new directory).
   */
  private async nextVersion(pipeline: string): Promise<{ dataset: string; version: number }> {
    const lk = learnerKeys(this.core.keys, pipeline);
    const res = await this.core.redis.multi().set(lk.dataset, randomBytes(8).toString('hex'), 'NX').get(lk.dataset).incr(lk.modelSeq).exec();
    const err = res?.find(([e]) => e)?.[0];
    if (!res || err) throw err ?? new Error(`model version of "${pipeline}" not allocated (transaction aborted)`);
    return { dataset: String(res[1]![1]), version: Number(res[2]![1]) };
  }

  /**
   * `<modelsDir>/<key prefix>/<pipeline>/<dataset>/<version>/model.json`: unique across key prefixes sharing the
   * directory and across data losses (each starts a new dataset).
   */
  modelFile(pipeline: string, dataset: string, version: number): string {
    return path.join(this.core.config.modelsDir, this.core.keys.prefix, pipeline, dataset, String(version), 'model.json');
  }

  /** Where versions saved before dataset ids were written (`<modelsDir>/<pipeline>/<version>/model.json`), shared by every prefix and dataset. */
  private legacyModelFile(pipeline: string, version: number): string {
    return path.join(this.core.config.modelsDir, pipeline, String(version), 'model.json');
  }

  /** Writes the version's file with exclusive create; a failure other than an existing file is logged (the Redis copy is kept). */
  private async writeModelFile(mv: ModelVersion): Promise<'written' | 'exists' | 'failed'> {
    const file = this.modelFile(mv.pipeline, mv.dataset!, mv.version);
    try {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, `${JSON.stringify(mv, null, 1)}\n`, { flag: 'wx' });
      return 'written';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        this.core.log.error({ pipeline: mv.pipeline, version: mv.version, file }, 'model file already exists: not overwritten, the new model takes the next version number');
        return 'exists';
      }
      this.core.log.warn({ err, pipeline: mv.pipeline, version: mv.version }, 'model file not written (the Redis copy is kept)');
      return 'failed';
    }
  }

  /**
   * The newest saved token version whose weights fit `signature` and `agents` (among the newest `scan` version numbers;
   * pruned or other versions are skipped): a warm start when no version serves and none is pending.
   */
  async newestCompatible(pipeline: string, signature: string, agents: readonly string[], scan = 25): Promise<ModelVersion | undefined> {
    const seq = Number((await this.core.redis.get(learnerKeys(this.core.keys, pipeline).modelSeq)) ?? 0);
    for (let v = seq; v >= 1 && v > seq - scan; v--) {
      const mv = await this.get(pipeline, v);
      if (mv && (mv.kind ?? 'tokens') === 'tokens' && mv.signature === signature && mv.agents.join('\u0000') === agents.join('\u0000')) return mv;
    }
    return undefined;
  }

  /** A saved version of the pipeline's current dataset, or undefined (see read for why not; a bad file is logged there). */
  async get(pipeline: string, version: number): Promise<ModelVersion | undefined> {
    const r = await this.read(pipeline, version);
    return r.status === 'found' ? r.mv : undefined;
  }

  /**
   * A saved version for an operator's request (rollback): MODEL_VERSION_NOT_FOUND when the pipeline never had it, or
   * had it but neither its Redis copy nor its model file is left (the message says it is missing); MODEL_FILE_UNREADABLE
   * when its file exists but cannot be read, parsed, or is another model's.
   */
  async load(pipeline: string, version: number, field = 'body/version'): Promise<ModelVersion> {
    const r = await this.read(pipeline, version);
    switch (r.status) {
      case 'found':
        return r.mv;
      case 'never':
        throw new AppError('MODEL_VERSION_NOT_FOUND', `${field}: pipeline "${pipeline}" has no model version ${version}`);
      case 'missing':
        throw new AppError('MODEL_VERSION_NOT_FOUND', `${field}: model version ${version} of pipeline "${pipeline}" is listed but missing: its Redis copy was pruned and its model file ${r.file} is not there`);
      case 'unreadable':
        throw new AppError('MODEL_FILE_UNREADABLE', `${field}: model version ${version} of pipeline "${pipeline}" is only in its model file ${r.file}, which ${r.why}; restore the file, or roll back to another version`);
    }
  }

  /** Model files already reported (`<file>|<why>`): a bad or missing file is logged once, not at every read. */
  private readonly loggedFiles = new Set<string>();

  private reportFile(pipeline: string, version: number, r: VersionRead): VersionRead {
    if (r.status !== 'missing' && r.status !== 'unreadable') return r;
    const key = `${r.file}|${r.status === 'unreadable' ? r.why : 'missing'}`;
    if (!this.loggedFiles.has(key)) {
      this.loggedFiles.add(key);
      if (r.status === 'unreadable') this.core.log.warn({ pipeline, version, file: r.file, why: r.why }, `model file of version ${version} not served: it ${r.why}`);
      else this.core.log.warn({ pipeline, version, file: r.file }, `model version ${version} is listed but missing (Redis copy pruned, model file not there)`);
    }
    return r;
  }

  /**
   * Reads a version: its Redis copy, else (pruned, or a copy that does not decode) its model file. Only a file that is
   * this dataset's is served: the file under the current dataset id carrying that id, or — for a version saved before
   * dataset ids — the old-layout file when the model document lists the version with the file's creation time (after a
   * data loss the document is gone, so an old file, maybe another dataset's, is never taken for a new version). A
   * deleted pipeline's keys go with it, its dataset id too: one re-created under the id starts a new dataset, and the
   * deleted one's files are never served as its versions.
   */
  async read(pipeline: string, version: number): Promise<VersionRead> {
    return this.reportFile(pipeline, version, await this.find(pipeline, version));
  }

  private async find(pipeline: string, version: number): Promise<VersionRead> {
    const lk = learnerKeys(this.core.keys, pipeline);
    const [json, dataset] = await Promise.all([this.core.redis.hget(lk.models, String(version)), this.core.redis.get(lk.dataset)]);
    const stored = json ? decodeModelVersion(json) : undefined;
    if (stored && stored.pipeline === pipeline && stored.version === version) return { status: 'found', mv: stored };
    if (dataset) {
      const file = this.modelFile(pipeline, dataset, version);
      const r = await readModelFile(file, (mv) => mv.pipeline === pipeline && mv.version === version && mv.dataset === dataset);
      if (r.status !== 'absent') return r;
    }
    const versions = this.doc(pipeline)?.versions;
    const listed = Array.isArray(versions) ? versions.find((v) => v?.version === version) : undefined;
    if (!listed) return { status: 'never' };
    const legacy = this.legacyModelFile(pipeline, version);
    const r = await readModelFile(legacy, (mv) => mv.dataset === undefined && mv.pipeline === pipeline && mv.version === version && mv.createdAt === listed.createdAt);
    if (r.status !== 'absent') return r;
    return { status: 'missing', file: dataset ? this.modelFile(pipeline, dataset, version) : legacy };
  }

  /**
   * Makes `mv` the serving version (validated first) and waits until this process serves it. An automatic
   * activation (a retrain; not `manual`, as a rollback is) during the runtime guard's hold only lists the
   * version, `held`.
   */
  async activate(target: ModelVersion, opts: { readonly manual?: boolean } = {}): Promise<ModelDoc> {
    try {
      deserializeWeights(target.weights);
    } catch (e) {
      throw new AppError('MODEL_INCOMPATIBLE', `body/version: model ${target.version} has unusable weights (${(e as Error).message})`);
    }
    // An operator serving the pending candidate (a rollback to it) ends its wait: it is listed as served without the
    // gate's verdict, not left "awaiting the activation gate" once no candidate is pending.
    const mv: ModelVersion =
      opts.manual && target.gate?.status === 'candidate'
        ? { ...target, gate: { ...target.gate, status: 'passed', reason: 'not judged: an operator activated it (rollback) while it awaited the activation gate', decidedAt: Date.now() } }
        : target;
    const doc = (await this.update(mv.pipeline, async (prev) => {
      if (!opts.manual && prev && (await this.guardHolds(prev))) return heldListing(prev, mv);
      const listed = new Map<number, ModelSummary>((prev?.versions ?? []).map((v) => [v.version, v]));
      // A manual activation of a reverted version clears its mark: the operator decided.
      listed.set(mv.version, { ...summary(mv), activatedAt: Date.now() });
      const versions = [...listed.values()].sort((a, b) => b.version - a.version).slice(0, MAX_LISTED);
      const doc: ModelDoc = {
        pipeline: mv.pipeline,
        active: mv.version,
        ...servingFields(mv),
        activatedAt: Date.now(),
        // A candidate other than the version activated keeps awaiting the gate.
        ...(prev?.candidate && prev.candidate.version !== mv.version ? { candidate: prev.candidate } : {}),
        versions,
        // Serving a model again ends a revert to control; the revert history stays. A manual activation (a
        // rollback) starts a new segment of the guard's evidence.
        ...guardAfterActivation(prev?.guard, opts.manual === true),
        ...(prev?.drift ? { drift: prev.drift } : {}),
        ...(prev?.exploreFirst ? { exploreFirst: prev.exploreFirst } : {}),
      };
      return doc;
    }, { replaceUnreadable: opts.manual === true }))!;
    if (mv !== target) await this.core.redis.hset(learnerKeys(this.core.keys, mv.pipeline).models, String(mv.version), JSON.stringify(mv));
    return doc;
  }

  /**
   * Makes `mv` the candidate (awaiting the activation gate; its split is mixed into decisions from now on) without
   * changing what serves. A previous candidate the gate never judged is superseded: its listing (and Redis copy) says
   * so, a `refused` verdict naming the version that replaced it, so no version stays "awaiting the gate" forever.
   */
  async propose(mv: ModelVersion, share?: number): Promise<ModelDoc> {
    deserializeWeights(mv.weights);
    const withGate: ModelVersion = { ...mv, gate: { status: 'candidate', reason: 'awaiting the activation gate', events: 0, comparisons: [], decidedAt: Date.now() } };
    await this.core.redis.hset(learnerKeys(this.core.keys, mv.pipeline).models, String(mv.version), JSON.stringify(withGate));
    let superseded: { version: number; gate: GateRecord } | undefined;
    const doc = (await this.update(mv.pipeline, (prev) => {
      const listed = new Map<number, ModelSummary>((prev?.versions ?? []).map((v) => [v.version, v]));
      listed.set(mv.version, summary(withGate));
      superseded = undefined;
      const older = prev?.candidate && prev.candidate.version !== mv.version ? listed.get(prev.candidate.version) : undefined;
      if (older) {
        const prior = older.gate;
        const gate: GateRecord = {
          status: 'refused',
          reason: `superseded: version ${mv.version} became the candidate before the gate decided on this one`,
          events: prior?.events ?? 0,
          comparisons: prior?.comparisons ?? [],
          decidedAt: Date.now(),
          ...(prior?.look !== undefined ? { look: prior.look } : {}),
        };
        listed.set(older.version, { ...older, gate });
        superseded = { version: older.version, gate };
      }
      const versions = [...listed.values()].sort((a, b) => b.version - a.version).slice(0, MAX_LISTED);
      const candidate = { version: mv.version, createdAt: mv.createdAt, proposedAt: Date.now(), ...servingFields(mv), weights: mv.weights, ...(share !== undefined ? { share } : {}) };
      const doc: ModelDoc = prev
        ? { ...prev, candidate, versions }
        : { pipeline: mv.pipeline, active: 0, signature: mv.signature, agents: mv.agents, activatedAt: 0, candidate, versions };
      return doc;
    }))!;
    if (superseded) {
      this.core.log.warn({ pipeline: mv.pipeline, superseded: superseded.version, candidate: mv.version }, 'learner candidate superseded before the gate judged it');
      const old = await this.get(mv.pipeline, superseded.version);
      if (old) await this.core.redis.hset(learnerKeys(this.core.keys, mv.pipeline).models, String(old.version), JSON.stringify({ ...old, gate: superseded.gate }));
    }
    return doc;
  }

  /**
   * Versions saved but never proposed nor activated: the process that trained them stopped (was killed, lost Redis)
   * between the save and the listing. Found among the Redis copies numbered below `below` (the version a retrain just
   * saved) and above the oldest listed version (older ones may have left the listing of MAX_LISTED) that the listing
   * does not name, they are listed `refused` with an `abandoned` reason (listing and Redis copy; one already refused
   * keeps its verdict), so the list has no hole and no version is left unexplained. Returns their numbers.
   */
  async listAbandoned(pipeline: string, below: number): Promise<number[]> {
    const doc = this.doc(pipeline);
    const listed = new Set((doc?.versions ?? []).map((v) => v.version));
    const oldest = listed.size > 0 ? Math.min(...listed) : 0;
    const lk = learnerKeys(this.core.keys, pipeline);
    const numbers = (await this.core.redis.hkeys(lk.models)).map(Number).filter((v) => Number.isSafeInteger(v) && v > oldest && v < below && !listed.has(v));
    if (numbers.length === 0) return [];
    const abandoned: GateRecord = {
      status: 'refused',
      reason: 'abandoned: the retrain that saved it stopped before it was proposed (its process ended or lost Redis); it never served',
      events: 0,
      comparisons: [],
      decidedAt: Date.now(),
    };
    const found: ModelVersion[] = [];
    for (const v of numbers.sort((a, b) => b - a)) {
      const json = await this.core.redis.hget(lk.models, String(v));
      const mv = json ? decodeModelVersion(json) : undefined;
      if (!mv || mv.pipeline !== pipeline || mv.version !== v) continue;
      const gate = mv.gate?.status === 'refused' ? mv.gate : abandoned;
      if (gate === abandoned) await this.core.redis.hset(lk.models, String(v), JSON.stringify({ ...mv, gate }));
      found.push({ ...mv, gate });
    }
    if (found.length === 0) return [];
    await this.update(pipeline, (prev) => {
      const current = new Map<number, ModelSummary>((prev?.versions ?? []).map((v) => [v.version, v]));
      const add = found.filter((mv) => !current.has(mv.version));
      if (add.length === 0) return undefined;
      for (const mv of add) current.set(mv.version, summary(mv));
      const versions = [...current.values()].sort((a, b) => b.version - a.version).slice(0, MAX_LISTED);
      const first = add[0]!;
      return prev ? { ...prev, versions } : { pipeline, active: 0, signature: first.signature, agents: first.agents, activatedAt: 0, versions };
    });
    this.core.log.warn({ pipeline, versions: found.map((mv) => mv.version) }, 'learner model versions listed as abandoned: saved, never proposed (the retrain that saved them stopped)');
    return found.map((mv) => mv.version);
  }

  /** Whether the runtime guard's hold after a revert is still on (the pipeline has fewer outcomes than holdUntil). */
  private async guardHolds(doc: ModelDoc): Promise<boolean> {
    const until = doc.guard?.holdUntil;
    if (until === undefined) return false;
    const outcomes = Number((await this.core.redis.hget(learnerKeys(this.core.keys, doc.pipeline).counters, 'outcomes')) ?? 0);
    return outcomes < until;
  }

  /** Records the gate's verdict on a version (Redis copy and listing); a refused candidate stops being mixed in. */
  async recordGate(pipeline: string, version: number, gate: GateRecord): Promise<void> {
    const mv = await this.get(pipeline, version);
    if (mv) await this.core.redis.hset(learnerKeys(this.core.keys, pipeline).models, String(version), JSON.stringify({ ...mv, gate }));
    await this.update(pipeline, (prev) => {
      if (!prev) return undefined;
      const versions = prev.versions.map((v) => (v.version === version ? { ...v, gate } : v));
      const { candidate, ...rest } = prev;
      const keep = candidate && !(candidate.version === version && gate.status === 'refused');
      return { ...rest, ...(keep ? { candidate } : {}), versions };
    });
  }

  /**
   * The safe start's exploration scale (guard-monitor.ts checkSafeStart), only while no version serves: a document is
   * created for a pipeline that has none yet (no version trained). False when a version serves meanwhile.
   */
  async setSafeStart(pipeline: string, state: SafeStartState, fresh: { readonly signature: string; readonly agents: readonly string[] }): Promise<boolean> {
    const doc = await this.update(pipeline, (prev) => {
      if (prev && prev.active !== 0) return undefined;
      const base: ModelDoc = prev ?? { pipeline, active: 0, signature: fresh.signature, agents: fresh.agents, activatedAt: 0, versions: [] };
      return { ...base, guard: { ...(base.guard ?? { reverts: [] }), safeStart: state } };
    });
    return doc?.active === 0 && doc.guard?.safeStart === state;
  }

  /**
   * Ends explore-first (the strategy's `exploreFirst` outcomes were reached): serving stops drawing random splits. Kept
   * from then on (a later safe start, after a revert, does not explore first again). A document is created for a
   * pipeline that has none yet.
   */
  async endExploreFirst(pipeline: string, outcomes: number, fresh: { readonly signature: string; readonly agents: readonly string[] }): Promise<void> {
    await this.update(pipeline, (prev) => {
      if (prev?.exploreFirst) return undefined;
      const base: ModelDoc = prev ?? { pipeline, active: 0, signature: fresh.signature, agents: fresh.agents, activatedAt: 0, versions: [] };
      return { ...base, exploreFirst: { endedAt: Date.now(), outcomes } };
    });
  }

  /**
   * The control arm's share the guard set (guard-monitor.ts check; undefined: the strategy's own), only while
   * `version` serves and the guard's segment is still `since`. False when that no longer holds (a revert or another
   * activation won) or nothing changed.
   */
  async setControlShare(pipeline: string, version: number, since: number, share: number | undefined): Promise<boolean> {
    let changed = false;
    await this.update(pipeline, (prev) => {
      changed = false;
      if (!prev || prev.active !== version || prev.active === 0 || (prev.guard?.since ?? 0) !== since || prev.guard?.controlShare === share) return undefined;
      const guard: GuardState = { ...(prev.guard ?? { reverts: [] }) };
      delete (guard as { controlShare?: number }).controlShare;
      changed = true;
      return { ...prev, guard: share !== undefined ? { ...guard, controlShare: share } : guard };
    });
    return changed;
  }

  /** Records a change drift recovery detected (newest first, at most 20) in the model document. */
  async recordChange(pipeline: string, change: DriftChange): Promise<void> {
    await this.update(pipeline, (prev) => (prev ? { ...prev, drift: { changes: [change, ...(prev.drift?.changes ?? [])].slice(0, 20) } } : undefined));
  }

  /**
   * The runtime guard's revert (guard-monitor.ts; drift recovery's retirement uses it too): marks `record.from` reverted, serves version `to` (or, with
   * `to` = 0, the control strategy for all of the learned strategy's traffic), and holds automatic
   * activations until the pipeline has `holdUntil` outcomes. Returns undefined (and changes nothing) when the
   * serving version is no longer `record.from` (a concurrent change won).
   */
  async revert(pipeline: string, record: RevertRecord, holdUntil: number): Promise<ModelDoc | undefined> {
    return this.update(pipeline, async (prev) => {
      if (!prev || prev.active !== record.from) return undefined;
      const target = record.to > 0 ? await this.get(pipeline, record.to) : undefined;
      const versions = prev.versions.map((v) =>
        v.version === record.from ? { ...v, reverted: record } : v.version === record.to ? { ...v, activatedAt: record.at } : v,
      );
      const guard: GuardState = {
        reverts: [record, ...(prev.guard?.reverts ?? [])].slice(0, 20),
        holdUntil,
        since: record.at,
        ...(target ? { steppedBack: true } : { toControl: true }),
      };
      const doc: ModelDoc = target
        ? { ...withoutServing(prev), active: target.version, ...servingFields(target), activatedAt: record.at, versions, guard }
        : { ...prev, active: 0, activatedAt: record.at, versions, guard };
      return doc;
    });
  }
}

/**
 * What reading a version found: `found`; `never` (the pipeline's current dataset never had it); `missing` (listed in
 * the model document, but neither its Redis copy nor its model file is there); `unreadable` (its file exists but cannot
 * be read, does not parse as a model version, or is another model's).
 */
export type VersionRead =
  | { readonly status: 'found'; readonly mv: ModelVersion }
  | { readonly status: 'never' }
  | { readonly status: 'missing'; readonly file: string }
  | { readonly status: 'unreadable'; readonly file: string; readonly why: string };

/** A model file: `absent` when there is none; `unreadable` when it cannot be read or decoded, or `ours` rejects it. */
async function readModelFile(file: string, ours: (mv: ModelVersion) => boolean): Promise<VersionRead | { readonly status: 'absent' }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { status: 'absent' };
    return { status: 'unreadable', file, why: `cannot be read (${code ?? (err as Error).message})` };
  }
  const mv = decodeModelVersion(text);
  if (!mv) return { status: 'unreadable', file, why: 'is not a model version (not JSON, or not of its shape)' };
  if (!ours(mv)) return { status: 'unreadable', file, why: `holds another model (pipeline "${mv.pipeline}", version ${mv.version}, dataset ${mv.dataset ?? 'none'}, created ${new Date(mv.createdAt).toISOString()})` };
  return { status: 'found', mv };
}

/** The model document listing `mv` as held (the runtime guard holds automatic activations after a revert). */
function heldListing(prev: ModelDoc, mv: ModelVersion): ModelDoc {
  const versions = [{ ...summary(mv), held: 'not activated: the runtime guard holds activations after a revert' }, ...prev.versions.filter((v) => v.version !== mv.version)]
    .sort((a, b) => b.version - a.version)
    .slice(0, MAX_LISTED);
  return { ...prev, versions };
}
