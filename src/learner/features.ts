import { Type, type Static } from '@sinclair/typebox';
import murmurhash from 'murmurhash';
import { AppError } from '../errors/app-error.js';
import type { Features } from '../strategies/types.js';

/**
 * Per-pipeline feature declarations (pure: no I/O). A declaration turns a request's raw features into a
 * fixed-length numeric vector the learner's model reads:
 *
 * - `numeric`: x → transform (`log` = ln(1+max(x,0)), `none`) → (x − mean) / std, plus a missing indicator;
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
      mean: Type.Optional(Type.Number({ description: 'Subtracted after the transform. Default 0.' })),
      std: Type.Optional(Type.Number({ description: 'Divides after the transform; must be > 0. Default 1.' })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
      type: Type.Literal('categorical'),
      values: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 256 })),
      hashBuckets: Type.Optional(Type.Integer({ minimum: 2, maximum: 1024 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$', description: 'Reads <name>Tokens (derived from <name>Text).' }),
      type: Type.Literal('tokens'),
      mean: Type.Optional(Type.Number()),
      std: Type.Optional(Type.Number()),
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

/** A compiled declaration: encodes features into a preallocated-size Float32Array. */
export interface FeatureEncoder {
  readonly dim: number;
  /** Identifies the encoding; a model trained with another signature cannot read this encoder's vectors. */
  readonly signature: string;
  encode(features: Features, out?: Float32Array): Float32Array;
}

/** Compiles a declaration (an empty one yields just the bias input: a context-free learner). */
export function compileFeatures(specs: readonly FeatureSpec[]): FeatureEncoder {
  const dim = inputDim(specs);
  const signature = `${dim}:${murmurhash.v3(JSON.stringify(specs)).toString(16)}`;
  const steps: ((features: Features, out: Float32Array, at: number) => void)[] = [];
  const offsets: number[] = [];
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
        steps.push((x, out, o) => {
          const v = x[f.name];
          if (v === undefined || v === null) return;
          out[o + (murmurhash.v3(String(v)) % buckets)] = 1;
        });
      }
    } else {
      const key = f.type === 'tokens' ? `${f.name}Tokens` : f.name;
      const log = f.type === 'tokens' || f.transform === 'log';
      const mean = f.mean ?? 0;
      const std = f.std ?? 1;
      steps.push((x, out, o) => {
        const raw = x[key];
        const v = typeof raw === 'boolean' ? (raw ? 1 : 0) : raw;
        if (typeof v !== 'number' || !Number.isFinite(v)) {
          out[o + 1] = 1;
          return;
        }
        const t = log ? Math.log1p(Math.max(v, 0)) : v;
        out[o] = (t - mean) / std;
      });
    }
    at += width(f);
  }
  return {
    dim,
    signature,
    encode(features, out = new Float32Array(dim)) {
      out.fill(0);
      out[0] = 1;
      for (let k = 0; k < steps.length; k++) steps[k]!(features, out, offsets[k]!);
      return out;
    },
  };
}
