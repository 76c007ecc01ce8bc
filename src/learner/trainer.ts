import type { Tf } from './backend.js';
import type { FeatureScaling, FeatureUse } from './features.js';
import { forward, GLOBAL_MAX, GLOBAL_MIN, NEED_SCALE, OUTPUTS, predict, upgradeLegacy, type ModelWeights, type SerializedWeights } from './model.js';
import type { SerializedTierParams } from './tiers-policy.js';
import { mulberry32 } from './rng.js';

/** Training rows, flattened: N contexts of width d, N budget vectors of n agents (tokens), rewards, weights. */
export interface TrainingData {
  readonly rows: number;
  readonly x: Float32Array;
  readonly b: Float32Array;
  readonly r: Float32Array;
  /** Per-row weight (recency). */
  readonly w: Float32Array;
  /**
   * Per row, 1 when it is held out (DatasetOptions.holdout `id`, a bench option; events.ts isHeldOut: by decision id
   * among the newest, the same decisions at every retrain). Absent: the trainer draws its held-out tenth
   * (`TrainOptions.holdout`) with its seed.
   */
  readonly held?: Uint8Array;
}

export interface TrainOptions {
  /** Passes over the data. Default 4. */
  readonly epochs?: number;
  /** Default 256. */
  readonly batchSize?: number;
  /** Adam learning rate. Default 0.02. */
  readonly learningRate?: number;
  /** L2 penalty on the weight matrices. Default 1e-5. */
  readonly l2?: number;
  /**
   * Penalty on how much the agents matter: this times the batch mean of Σ_i (w_i(x) + v_i(x)) (the saturating and
   * threshold weights) is added to the loss, so an agent keeps a weight only as far as the data show it (a bench
   * option: `--weight-penalty`; default 0, the service's).
   */
  readonly weightPenalty?: number;
  /**
   * Lower bound on gradient steps: passes continue past `epochs` until this many, so an early retrain on a small
   * buffer (4 epochs of 1,000 rows are 12 steps) still fits. Default DEFAULT_MIN_STEPS (docs/learner.md).
   */
  readonly minSteps?: number;
  /** Upper bound on gradient steps (keeps a retrain bounded on huge buffers). Default 3000. */
  readonly maxSteps?: number;
  /** Share of rows held out for the metrics. Default 0.1. */
  readonly holdout?: number;
  readonly seed?: number;
  /** Yield to the event loop between steps so a co-located API keeps serving. Default true. */
  readonly yieldToEventLoop?: boolean;
}

/** The held-out squared errors of one kind of action (stratum): rows, their mean and standard deviation. */
export interface StratumError {
  readonly n: number;
  readonly mse: number;
  readonly sd: number;
}

export interface TrainMetrics {
  readonly rows: number;
  readonly steps: number;
  readonly ms: number;
  /** Weighted mean squared error on the training rows, and on the held-out rows. */
  readonly trainMse: number;
  readonly holdoutMse: number;
  /** Variance of the held-out rewards: holdoutMse below it means the model explains something. */
  readonly holdoutVariance: number;
  /** Tier versions: the held-out squared errors per served model assignment (drift.ts, the stratified residual test). */
  readonly holdoutStrata?: Readonly<Record<string, StratumError>>;
  readonly backend: string;
}

/** Default floor on gradient steps per retrain (chosen on dev seeds, confirmed on the test seeds: docs/learner.md). */
export const DEFAULT_MIN_STEPS = 100;

const tick = () => new Promise<void>((r) => setImmediate(r));

type T = import('@tensorflow/tfjs').Tensor;
/** The trained parameters as tensors (variables when training): the rows of ModelWeights the trainer fits. */
interface Params {
  readonly w1: T;
  readonly b1: T;
  /** [need, weight] rows of W2, W3, b2. */
  readonly w2: T;
  readonly w3: T;
  readonly b2: T;
  readonly bk: T;
  /** The step rows. */
  readonly w2s: T;
  readonly w3s: T;
  readonly b2s: T;
  readonly bl: T;
  readonly bt: T;
  readonly glob?: { readonly gh: T; readonly gx: T; readonly g0: T } | undefined;
}

function tensorsOf(tf: Tf, w: ModelWeights, variable: boolean): Params {
  const { inputDim: d, hidden: h, agents: n } = w;
  const v = (t: T) => (variable ? tf.variable(t) : t);
  return {
    w1: v(tf.tensor2d(w.w1, [h, d])),
    b1: v(tf.tensor1d(w.b1)),
    // The need, weight and step heads depend on the context; the shape κ, the threshold's location (relative to the
    // need) and its steepness are one learned constant per agent (their rows of W2 and W3 stay zero): a
    // context-dependent shape fitted no better on the worlds and learned slower.
    w2: v(tf.tensor2d(w.w2.subarray(0, 2 * n * h), [2 * n, h])),
    w3: v(tf.tensor2d(w.w3.subarray(0, 2 * n * d), [2 * n, d])),
    b2: v(tf.tensor1d(w.b2.subarray(0, 2 * n))),
    bk: v(tf.tensor1d(w.b2.subarray(2 * n, 3 * n))),
    w2s: v(tf.tensor2d(w.w2.subarray(3 * n * h, 4 * n * h), [n, h])),
    w3s: v(tf.tensor2d(w.w3.subarray(3 * n * d, 4 * n * d), [n, d])),
    b2s: v(tf.tensor1d(w.b2.subarray(3 * n, 4 * n))),
    bl: v(tf.tensor1d(w.b2.subarray(4 * n, 5 * n))),
    bt: v(tf.tensor1d(w.b2.subarray(5 * n, 6 * n))),
    // The global factor g(x) = exp(o_g) (model.ts GlobalWeights), when the weights have one: trained jointly.
    glob: w.glob ? { gh: v(tf.tensor2d(w.glob.gh, [1, h])), gx: v(tf.tensor2d(w.glob.gx, [1, d])), g0: v(tf.tensor1d([w.glob.g0])) } : undefined,
  };
}

/** r̂(x, b) of model.ts as a tfjs graph (xb: contexts, bb: budgets / NEED_SCALE): what training fits. */
function rewardGraph(tf: Tf, p: Params, xb: T, bb: T, weights?: (w: T, v: T) => void): T {
  const hid = tf.relu(tf.add(tf.matMul(xb, p.w1, false, true), p.b1));
  const o = tf.add(tf.add(tf.matMul(hid, p.w2, false, true), tf.matMul(xb, p.w3, false, true)), p.b2);
  const [ol, ow] = tf.split(o, 2, 1) as import('@tensorflow/tfjs').Tensor2D[];
  // Saturating factor 1 − w·(1 + b/(κ·need))^(−κ), κ = 1 + exp(bk), need = NEED_SCALE·exp(ol) (b is pre-scaled).
  const kappa = tf.add(1, tf.exp(tf.clipByValue(p.bk, -8, 8)));
  const u = tf.mul(bb, tf.exp(tf.neg(tf.clipByValue(ol!, -12, 12))));
  const sat = tf.sub(1, tf.mul(tf.sigmoid(ow!), tf.exp(tf.neg(tf.mul(kappa, tf.log1p(tf.div(u, kappa)))))));
  // Threshold factor 1 − v·σ(s·(1 − b/L))/σ(s), v = σ(os), L = need·exp(bl), s = 1 + exp(bt).
  const os = tf.add(tf.add(tf.matMul(hid, p.w2s, false, true), tf.matMul(xb, p.w3s, false, true)), p.b2s);
  const s = tf.add(1, tf.exp(tf.clipByValue(p.bt, -3, 4)));
  const z = tf.mul(s, tf.sub(1, tf.mul(u, tf.exp(tf.neg(tf.clipByValue(p.bl, -3, 3))))));
  const stepLoss = tf.div(tf.sigmoid(z), tf.sigmoid(s));
  const c = tf.mul(sat, tf.sub(1, tf.mul(tf.sigmoid(os), stepLoss)));
  weights?.(tf.sigmoid(ow!), tf.sigmoid(os));
  const q = tf.prod(c, 1);
  if (!p.glob) return q;
  const og = tf.add(tf.add(tf.matMul(hid, p.glob.gh, false, true), tf.matMul(xb, p.glob.gx, false, true)), p.glob.g0);
  return tf.mul(q, tf.exp(tf.clipByValue(tf.reshape(og, [-1]), GLOBAL_MIN, GLOBAL_MAX)));
}

/** The training graph's r̂ for `rows` contexts and budget vectors (flattened as TrainingData): for tests that serving (model.ts predict) and training agree. */
export function predictWithTrainingGraph(tf: Tf, weights: ModelWeights, rows: number, x: Float32Array, b: Float32Array): Float32Array {
  const w = upgradeLegacy(weights);
  return tf.tidy(() => {
    const p = tensorsOf(tf, w, false);
    const q = rewardGraph(tf, p, tf.tensor2d(x, [rows, w.inputDim]), tf.div(tf.tensor2d(b, [rows, w.agents]), NEED_SCALE));
    return q.dataSync() as Float32Array;
  });
}

/**
 * Fits the reward model of model.ts to (context, budgets, reward) rows with Adam, starting from `init`
 * (warm start: a retrain refines the serving model rather than starting over). Returns plain weights.
 */
export async function trainModel(tf: Tf, data: TrainingData, initWeights: ModelWeights, opts: TrainOptions = {}): Promise<{ weights: ModelWeights; metrics: TrainMetrics }> {
  const t0 = Date.now();
  const init = upgradeLegacy(initWeights);
  const { inputDim: d, hidden: h, agents: n } = init;
  const rng = mulberry32(opts.seed ?? 1);
  const N = data.rows;
  const order = Array.from({ length: N }, (_, i) => i);
  for (let i = N - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const nHold = N >= 50 ? Math.floor(N * (opts.holdout ?? 0.1)) : 0;
  const byId = data.held && N >= 50 ? data.held : undefined;
  const hold = byId ? order.filter((i) => byId[i] === 1) : order.slice(0, nHold);
  const trainIdx = byId ? order.filter((i) => byId[i] !== 1) : order.slice(nHold);

  const P = tensorsOf(tf, init, true);
  const { w1, b1, w2, w3, b2, bk, w2s, w3s, b2s, bl, bt, glob } = P;
  const globVars = glob ? [glob.gh, glob.gx, glob.g0] : [];
  const X = tf.tensor2d(data.x, [N, d]);
  const B = tf.tidy(() => tf.div(tf.tensor2d(data.b, [N, n]), NEED_SCALE));
  const R = tf.tensor1d(data.r);
  const W = tf.tensor1d(data.w);
  const optimizer = tf.train.adam(opts.learningRate ?? 0.02);
  const l2 = opts.l2 ?? 1e-5;
  const weightPenalty = opts.weightPenalty ?? 0;
  const batch = Math.max(1, Math.min(opts.batchSize ?? 256, trainIdx.length));
  const epochs = opts.epochs ?? 4;
  const maxSteps = opts.maxSteps ?? 3000;
  const minSteps = Math.min(maxSteps, opts.minSteps ?? DEFAULT_MIN_STEPS);
  let steps = 0;
  try {
    outer: for (let e = 0; (e < epochs || steps < minSteps) && trainIdx.length > 0; e++) {
      for (let i = trainIdx.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [trainIdx[i], trainIdx[j]] = [trainIdx[j]!, trainIdx[i]!];
      }
      for (let s = 0; s + batch <= trainIdx.length || (s === 0 && trainIdx.length > 0); s += batch) {
        if (steps >= maxSteps) break outer;
        const idx = tf.tensor1d(Int32Array.from(trainIdx.slice(s, s + batch)), 'int32');
        tf.tidy(() => {
          const xb = tf.gather(X, idx);
          const bb = tf.gather(B, idx);
          const rb = tf.gather(R, idx);
          const wb = tf.gather(W, idx);
          optimizer.minimize(() => {
            let wpen: T | undefined;
            const q = rewardGraph(tf, P, xb, bb, weightPenalty > 0 ? (w, v) => (wpen = tf.mul(weightPenalty, tf.div(tf.sum(tf.add(w, v)), xb.shape[0]!))) : undefined);
            const mse = tf.div(tf.sum(tf.mul(tf.squaredDifference(q, rb), wb)), tf.sum(wb));
            const pen = tf.mul(l2, tf.addN([tf.sum(tf.square(w1)), tf.sum(tf.square(w2)), tf.sum(tf.square(w3)), tf.sum(tf.square(w2s)), tf.sum(tf.square(w3s)), ...(glob ? [tf.sum(tf.square(glob.gh)), tf.sum(tf.square(glob.gx))] : [])]));
            return (wpen ? tf.addN([mse, pen, wpen]) : tf.add(mse, pen)) as import('@tensorflow/tfjs').Scalar;
          }, false, [w1, b1, w2, w3, b2, bk, w2s, w3s, b2s, bl, bt, ...globVars] as import('@tensorflow/tfjs').Variable[]);
        });
        idx.dispose();
        steps++;
        if (opts.yieldToEventLoop !== false) await tick();
        if (trainIdx.length < batch) break;
      }
    }
    const rows = async (a: import('@tensorflow/tfjs').Tensor, zeroRows: number, b: import('@tensorflow/tfjs').Tensor, width: number) => {
      // [need, weight] rows, zero rows for the constant shape, the step rows, zero rows for loc and steep.
      const out = new Float32Array(OUTPUTS * n * width);
      out.set(await a.data(), 0);
      out.set(await b.data(), (2 + zeroRows) * n * width);
      return out;
    };
    const weights: ModelWeights = {
      inputDim: d,
      hidden: h,
      agents: n,
      w1: Float32Array.from(await w1.data()),
      b1: Float32Array.from(await b1.data()),
      w2: await rows(w2, 1, w2s, h),
      w3: await rows(w3, 1, w3s, d),
      b2: Float32Array.from([...(await b2.data()), ...(await bk.data()), ...(await b2s.data()), ...(await bl.data()), ...(await bt.data())]),
      ...(glob ? { glob: { gh: Float32Array.from(await glob.gh.data()), gx: Float32Array.from(await glob.gx.data()), g0: (await glob.g0.data())[0]! } } : {}),
    };
    const mse = (rows: readonly number[]) => {
      let se = 0;
      let ws = 0;
      for (const i of rows) {
        const heads = forward(weights, data.x.subarray(i * d, (i + 1) * d));
        const err = predict(heads, data.b.subarray(i * n, (i + 1) * n)) - data.r[i]!;
        se += data.w[i]! * err * err;
        ws += data.w[i]!;
      }
      return ws > 0 ? se / ws : 0;
    };
    let mean = 0;
    for (const i of hold) mean += data.r[i]! / hold.length;
    let variance = 0;
    for (const i of hold) variance += (data.r[i]! - mean) ** 2 / hold.length;
    const sample = trainIdx.slice(0, 5000);
    return {
      weights,
      metrics: { rows: N, steps, ms: Date.now() - t0, trainMse: mse(sample), holdoutMse: mse(hold), holdoutVariance: variance, backend: tf.getBackend() },
    };
  } finally {
    tf.dispose([w1, b1, w2, w3, b2, bk, w2s, w3s, b2s, bl, bt, ...globVars, X, B, R, W]);
    optimizer.dispose();
  }
}

/** What a retrain job answers (src/learner/train-process.ts for the token model, train-tiers.ts for a joint model-and-tokens one). */
export interface TrainJobOutput {
  readonly trained: boolean;
  readonly reason?: string;
  /** Events trained on (the window). */
  readonly events: number;
  /** Of those, how many this retrain fetched from Redis (the rest were kept from the previous read). */
  readonly fetched: number;
  readonly weights?: SerializedWeights;
  readonly metrics?: TrainMetrics;
  /** Numeric feature scaling fitted on the window (stored with the version). */
  readonly scaling?: FeatureScaling;
  /** A tier job's fitted parameters (TrainJobInput.tiers). */
  readonly tiers?: SerializedTierParams;
  /** Per declared feature, what the window's requests carried and what the encoder could not read (features.ts featureUse). */
  readonly featureUse?: Record<string, FeatureUse>;
}
