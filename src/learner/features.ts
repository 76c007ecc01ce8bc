import { Type, type Static } from '@sinclair/typebox';
import murmurhash from 'murmurhash';
import { AppError } from '../errors/app-error.js';
import type { Features } from '../strategies/types.js';

/**
 * Per-pipeline feature declarations (pure: no I/O). A declaration turns a request's raw features into a
 * fixed-length numeric vector the learner's model reads:
 *
 * - `numeric`: x → transform (`log` = ln(1+max(x,0)), `none`) → (x − center) / scale clipped to ±CLIP, plus a missing
 *   indicator. center and scale are fitted from the training buffer at each retrain (fitScaling: median and
 *   IQR/1.349, robust to heavy tails) and stored with the model version; a declared `mean`/`std` overrides them;
 * - `categorical` with `values`: one-hot over the listed values plus one slot for unknown or missing;
 * - `categorical` with `hashBuckets`: murmurhash of the value modulo the bucket count (open vocabularies);
 * - `tokens`: the token count of a raw text field `<field>Text` (the allocation service tokenizes it with
 *   o200k_base into `<field>Tokens`, which is read here; a caller may also send `<field>Tokens` directly),
 *   log-transformed and standardised like a numeric feature.
 *
 * A missing or non-finite numeric value encodes as 0 (the mean after standardisation) with its indicator set;
 * a boolean counts as 0/1. Encoding never throws: the declaration was validated when it was stored.
 */
export const FeatureSpec = Type.Union([
  Type.Object(
    {
      name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
      type: Type.Literal('numeric'),
      transform: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('log')], { description: 'Default none.' })),
      mean: Type.Optional(Type.Number({ description: 'Subtracted after the transform. Default: fitted from the logged data at each retrain (median).' })),
      std: Type.Optional(Type.Number({ description: 'Divides after the transform; must be > 0. Default: fitted from the logged data at each retrain (IQR / 1.349).' })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
      type: Type.Literal('categorical'),
      values: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 1024, description: 'At most 1,024; the encoded vector of all features is limited to 512 inputs (INVALID_FEATURES).' })),
      hashBuckets: Type.Optional(Type.Integer({ minimum: 2, maximum: 1024 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$', description: 'Reads <name>Tokens (derived from <name>Text).' }),
      type: Type.Literal('tokens'),
      mean: Type.Optional(Type.Number({ description: 'Default: fitted from the logged data (see numeric).' })),
      std: Type.Optional(Type.Number({ description: 'Default: fitted from the logged data (see numeric).' })),
    },
    { additionalProperties: false },
  ),
]);
export type FeatureSpec = Static<typeof FeatureSpec>;

export const FeaturesBody = Type.Object(
  { features: Type.Array(FeatureSpec, { maxItems: 64 }) },
  { additionalProperties: false },
);
export type FeaturesBody = Static<typeof FeaturesBody>;

/** Largest encoded vector (bias included). */
export const MAX_INPUT_DIM = 512;

/** Checks what the schema cannot: unique names, exactly one vocabulary kind, positive std, total width. */
export function validateFeatures(body: FeaturesBody): void {
  const seen = new Set<string>();
  body.features.forEach((f, i) => {
    const at = `body/features/${i}`;
    if (seen.has(f.name)) throw new AppError('INVALID_FEATURES', `${at}/name: "${f.name}" is declared twice`);
    seen.add(f.name);
    if (f.type === 'categorical') {
      if ((f.values === undefined) === (f.hashBuckets === undefined)) {
        throw new AppError('INVALID_FEATURES', `${at}: a categorical feature needs exactly one of values or hashBuckets`);
      }
      if (f.values && new Set(f.values).size !== f.values.length) {
        throw new AppError('INVALID_FEATURES', `${at}/values: values must be unique`);
      }
    }
    if (f.type !== 'categorical' && f.std !== undefined && !(f.std > 0)) {
      throw new AppError('INVALID_FEATURES', `${at}/std: must be greater than 0, got ${f.std}`);
    }
  });
  const dim = inputDim(body.features);
  if (dim > MAX_INPUT_DIM) {
    throw new AppError('INVALID_FEATURES', `body/features: the declaration encodes to ${dim} inputs, above the limit of ${MAX_INPUT_DIM}`);
  }
}

function width(f: FeatureSpec): number {
  if (f.type === 'categorical') return f.values ? f.values.length + 1 : f.hashBuckets!;
  return 2; // value + missing indicator
}

/** Encoded width, including the constant bias input. */
export function inputDim(specs: readonly FeatureSpec[]): number {
  return 1 + specs.reduce((s, f) => s + width(f), 0);
}

/** Hashed categorical values whose bucket an encoder remembers. */
const HASH_CACHE = 1024;

/** Scaled numeric inputs are clipped to ±CLIP (after centring and scaling): one outlier cannot dominate a layer. */
export const CLIP = 5;

/**
 * How each numeric (and tokens) feature is centred and scaled after its transform, by declared name. Fitted
 * from logged requests at each retrain (fitScaling) and stored with the model version, so training and serving
 * apply the same numbers. A feature absent from it (and without a declared mean/std) goes in raw.
 */
export type FeatureScaling = Readonly<Record<string, { readonly center: number; readonly scale: number }>>;

/** One numeric input of an encoder: where its value sits in the vector and how it is scaled. */
export interface NumericSlot {
  readonly name: string;
  readonly at: number;
  readonly center: number;
  readonly scale: number;
  /** Whether the value is clipped to ±CLIP (true once it is centred and scaled, by fit or declaration). */
  readonly clipped: boolean;
}

/** A compiled declaration: encodes features into a preallocated-size Float32Array. */
export interface FeatureEncoder {
  readonly dim: number;
  /** Identifies the encoding; a model trained with another signature cannot read this encoder's vectors. */
  readonly signature: string;
  readonly numeric: readonly NumericSlot[];
  encode(features: Features, out?: Float32Array): Float32Array;
}

/** The transformed value of a numeric/tokens feature, or undefined when missing (pure; shared by fit and encode). */
function transformed(f: Exclude<FeatureSpec, { type: 'categorical' }>, x: Features): number | undefined {
  const raw = x[f.type === 'tokens' ? `${f.name}Tokens` : f.name];
  const v = typeof raw === 'boolean' ? (raw ? 1 : 0) : raw;
  if (typeof v !== 'number' || !Number.isFinite(v)) return undefined;
  return f.type === 'tokens' || f.transform === 'log' ? Math.log1p(Math.max(v, 0)) : v;
}

/**
 * What the logged requests carried for one declared feature (a retrain counts it over its window: docs/learner.md,
 * "Features"). `present`: requests with a value (not absent, not null). `unusable`: of those, values the encoder
 * cannot read, so they count as missing (numeric and tokens) or unknown (categorical with `values`): for a numeric or
 * tokens feature anything but a finite number or a boolean, a number spelled as a string (`"12"`) included; for a
 * categorical feature with `values`, a value that is none of them; never for a hashed categorical. `example`: the
 * first unusable value, as JSON, cut to 40 characters.
 */
export interface FeatureUse {
  readonly present: number;
  readonly unusable: number;
  readonly example?: string;
}

/** Counts, per declared feature, the values `rows` carried and those the encoder cannot read (pure). */
export function featureUse(specs: readonly FeatureSpec[], rows: Iterable<Features>): Record<string, FeatureUse> {
  const acc = specs.map(() => ({ present: 0, unusable: 0, example: undefined as string | undefined }));
  const values = specs.map((f) => (f.type === 'categorical' && f.values ? new Set(f.values) : undefined));
  for (const x of rows) {
    specs.forEach((f, i) => {
      const raw = x[f.type === 'tokens' ? `${f.name}Tokens` : f.name];
      if (raw === undefined || raw === null) return;
      const a = acc[i]!;
      a.present++;
      // The encoder's own rules: transformed() for numeric and tokens, the values' index (as strings) for categorical.
      const readable = f.type === 'categorical' ? (values[i] ? values[i].has(String(raw)) : true) : transformed(f, x) !== undefined;
      if (readable) return;
      a.unusable++;
      if (a.example === undefined) a.example = (JSON.stringify(raw) ?? String(raw)).slice(0, 40);
    });
  }
  return Object.fromEntries(specs.map((f, i) => [f.name, { present: acc[i]!.present, unusable: acc[i]!.unusable, ...(acc[i]!.example !== undefined ? { example: acc[i]!.example } : {}) }]));
}

/** Scaling statistic: `robust` = median and IQR/1.349 (MAD, then std as fallbacks); `meanstd` = mean and std of the values clipped to their 1st–99th percentiles. */
export type ScalingMethod = 'robust' | 'meanstd';

function quantile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = p * (sorted.length - 1);
  const lo = Math.floor(i);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (i - lo);
}

/**
 * Fits center and scale of every numeric/tokens feature from logged requests (pure). Missing values are left
 * out; a feature never present gets center 0 and scale 1 (clipped, so a later raw value cannot blow up the
 * model); a constant feature gets scale 1 (it encodes to 0). Scales below 1e-9·(1+|center|) count as constant.
 */
export function fitScaling(specs: readonly FeatureSpec[], rows: Iterable<Features>, method: ScalingMethod = 'robust'): FeatureScaling {
  const numeric = specs.filter((f): f is Exclude<FeatureSpec, { type: 'categorical' }> => f.type !== 'categorical');
  const values = numeric.map(() => [] as number[]);
  for (const x of rows) {
    numeric.forEach((f, i) => {
      const t = transformed(f, x);
      if (t !== undefined) values[i]!.push(t);
    });
  }
  const out: Record<string, { center: number; scale: number }> = {};
  numeric.forEach((f, i) => {
    const v = Float64Array.from(values[i]!).sort();
    if (v.length === 0) {
      out[f.name] = { center: 0, scale: 1 };
      return;
    }
    let center: number;
    let scale: number;
    if (method === 'robust') {
      center = quantile(v, 0.5);
      scale = (quantile(v, 0.75) - quantile(v, 0.25)) / 1.349;
      if (!(scale > 1e-9 * (1 + Math.abs(center)))) {
        const dev = Float64Array.from(v, (x) => Math.abs(x - center)).sort();
        scale = quantile(dev, 0.5) * 1.4826;
      }
      if (!(scale > 1e-9 * (1 + Math.abs(center)))) {
        let m = 0;
        for (const x of v) m += x / v.length;
        let s2 = 0;
        for (const x of v) s2 += (x - m) ** 2 / v.length;
        scale = Math.sqrt(s2);
      }
    } else {
      const lo = quantile(v, 0.01);
      const hi = quantile(v, 0.99);
      let m = 0;
      for (const x of v) m += Math.min(hi, Math.max(lo, x)) / v.length;
      let s2 = 0;
      for (const x of v) s2 += (Math.min(hi, Math.max(lo, x)) - m) ** 2 / v.length;
      center = m;
      scale = Math.sqrt(s2);
    }
    if (!(scale > 1e-9 * (1 + Math.abs(center))) || !Number.isFinite(scale)) scale = 1;
    out[f.name] = { center, scale };
  });
  return out;
}

/**
 * Compiles a declaration (an empty one yields just the bias input: a context-free learner). `scaling` (fitted,
 * stored with a model version) centres and scales numeric features the declaration gives no mean/std for.
 */
export function compileFeatures(specs: readonly FeatureSpec[], scaling?: FeatureScaling): FeatureEncoder {
  const dim = inputDim(specs);
  const signature = `${dim}:${murmurhash.v3(JSON.stringify(specs)).toString(16)}`;
  const steps: ((features: Features, out: Float32Array, at: number) => void)[] = [];
  const offsets: number[] = [];
  const numeric: NumericSlot[] = [];
  let at = 1;
  for (const f of specs) {
    offsets.push(at);
    if (f.type === 'categorical') {
      if (f.values) {
        const index = new Map(f.values.map((v, i) => [v, i] as const));
        const unknown = f.values.length;
        steps.push((x, out, o) => {
          const v = x[f.name];
          const i = v === undefined || v === null ? undefined : index.get(String(v));
          out[o + (i ?? unknown)] = 1;
        });
      } else {
        const buckets = f.hashBuckets!;
        // Recent values' buckets (bounded): a lookup instead of encoding and hashing the string on every request.
        const seen = new Map<string, number>();
        steps.push((x, out, o) => {
          const v = x[f.name];
          if (v === undefined || v === null) return;
          const key = String(v);
          let bucket = seen.get(key);
          if (bucket === undefined) {
            bucket = murmurhash.v3(key) % buckets;
            if (seen.size >= HASH_CACHE) seen.clear();
            seen.set(key, bucket);
          }
          out[o + bucket] = 1;
        });
      }
    } else {
      const fitted = scaling?.[f.name];
      const center = f.mean ?? fitted?.center ?? 0;
      const scale = f.std ?? fitted?.scale ?? 1;
      const clipped = f.mean !== undefined || f.std !== undefined || fitted !== undefined;
      numeric.push({ name: f.name, at, center, scale, clipped });
      steps.push((x, out, o) => {
        const t = transformed(f, x);
        if (t === undefined) {
          out[o + 1] = 1;
          return;
        }
        const z = (t - center) / scale;
        out[o] = clipped ? (z > CLIP ? CLIP : z < -CLIP ? -CLIP : z) : z;
      });
    }
    at += width(f);
  }
  return {
    dim,
    signature,
    numeric,
    encode(features, out = new Float32Array(dim)) {
      out.fill(0);
      out[0] = 1;
      for (let k = 0; k < steps.length; k++) steps[k]!(features, out, offsets[k]!);
      return out;
    },
  };
}
