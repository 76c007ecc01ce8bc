import { roundToTarget, waterFill } from '../../strategies/fit.js';
import type { Features } from '../../strategies/types.js';
import { predict, type Heads } from '../model.js';
import { candidatesAround, signedPerturbation, type Decision, type ExploreOptions, type PolicyAgent } from '../policy.js';

/**
 * A model-free correction of the model's greedy split, measured in the in-process loop only (`bench/learner.ts
 * --ratchet on`; off by default, the service and the SDK do not have it): per cell of the categorical features, a
 * log-offset per agent, θ, multiplies the greedy split (g'_i ∝ g_i·e^{θ_i}, refitted to the total within the bounds).
 * The decision then explores around g' as usual (its e^{±δ} perturbations, the uniform anchor), g' kept as the
 * policy's best. From every served decision of a cell, a doubly robust contrast of each perturbation against g'
 * (the model's predicted difference plus the inverse-propensity-weighted residuals of what was played, with the
 * logged probabilities) is summed; every `every` decisions of the cell, the perturbation with the largest lower bound
 * mean − z·SE, if above 0, moves θ by `step` in its direction, and the cell's contrasts start afresh (they were
 * relative to the old g'). What it is for: the quality model's form keeps its greedy split away from the truth where
 * the logs never show it (docs/learner.md, "Where the quality model is wrong"); the contrasts are local, so each step
 * has support, and the steps walk the split to where the local evidence stops.
 */
export interface RatchetOptions {
  /** Log-size of one move of θ (default 0.25, half the e^{±0.5} perturbation). */
  readonly step: number;
  /** z of the lower bound a contrast must clear (default 3: 2n contrasts are looked at together). */
  readonly z: number;
  /** Decisions of a cell between looks, and the fewest a look needs (default 100). */
  readonly every: number;
  /** Largest |θ_i| (default 2.5). */
  readonly max: number;
}

export const RATCHET_DEFAULTS: RatchetOptions = { step: 0.25, z: 3, every: 100, max: 2.5 };

interface Cell {
  readonly theta: Float64Array;
  /** Per agent and direction (2i: up, 2i + 1: down): sum and sum of squares of the contrasts, and decisions seen. */
  readonly sum: Float64Array;
  readonly sq: Float64Array;
  n: number;
  moves: number;
}

export class Ratchet {
  private readonly cells = new Map<string, Cell>();
  private readonly opts: RatchetOptions;
  moves = 0;

  constructor(
    private readonly agents: readonly PolicyAgent[],
    opts: Partial<RatchetOptions> = {},
  ) {
    this.opts = { ...RATCHET_DEFAULTS, ...opts };
  }

  /** The cell of a request: its categorical (string) feature values, in name order. */
  cellOf(f: Features): string {
    const keys = Object.keys(f).sort();
    let s = '';
    for (const k of keys) {
      const v = (f as Record<string, unknown>)[k];
      if (typeof v === 'string') s += `${k}=${v};`;
    }
    return s;
  }

  private cell(key: string): Cell {
    let c = this.cells.get(key);
    if (!c) {
      const n = this.agents.length;
      c = { theta: new Float64Array(n), sum: new Float64Array(2 * n), sq: new Float64Array(2 * n), n: 0, moves: 0 };
      this.cells.set(key, c);
    }
    return c;
  }

  /** g' for this request (g itself while the cell's θ is all zero). */
  apply(g: readonly number[], f: Features, total: number): number[] {
    const c = this.cells.get(this.cellOf(f));
    if (!c || c.theta.every((v) => v === 0)) return g.slice();
    const fit = this.agents.map((a, i) => ({ min: a.min, cap: Math.max(a.min, a.cap), weight: Math.max(g[i]!, 1) * Math.exp(c.theta[i]!) }));
    const real = waterFill(fit, total);
    const target = Math.floor(Math.min(total, fit.reduce((s, a) => s + a.cap, 0)));
    return roundToTarget(real, fit.map((a) => a.min), fit.map((a) => a.cap), target);
  }

  /** The decision around g' (index 0), SquareCB as policy.ts explorationProbs with g' held as the best. */
  decide(heads: Heads, gp: number[], total: number, opts: ExploreOptions, rng: () => number, uniform: number[]): Decision {
    const candidates = candidatesAround(gp, this.agents, total, signedPerturbation(opts), uniform);
    const K = candidates.length;
    let probs: number[];
    if (K === 1) probs = [1];
    else if (opts.explorer === 'epsilon') {
      const e = Math.min(1, Math.max(0, opts.epsilon));
      probs = candidates.map((_, k) => e / K + (k === 0 ? 1 - e : 0));
    } else {
      const y0 = predict(heads, gp);
      const base = K / Math.min(1, Math.max(1e-6, opts.budget ?? 1));
      probs = candidates.map((c, k) => (k === 0 ? 0 : 1 / (base + opts.gamma * Math.max(0, y0 - predict(heads, c)))));
      probs[0] = 1 - probs.reduce((s, v) => s + v, 0);
    }
    const u = rng();
    let chosen = K - 1;
    let acc = 0;
    for (let k = 0; k < K; k++) {
      acc += probs[k]!;
      if (u < acc) {
        chosen = k;
        break;
      }
    }
    return { budgets: candidates[chosen]!, candidates, probs, chosen, greedy: 0 };
  }

  /**
   * One served decision of a model (its final logged candidates and probabilities, candidate version and control
   * arm mixed in; index 0 is g') and its reward. Returns true when θ moved.
   */
  observe(heads: Heads, f: Features, dec: Decision, reward: number): boolean {
    const c = this.cell(this.cellOf(f));
    const g = dec.candidates[0]!;
    const n = this.agents.length;
    const y0 = predict(heads, g);
    const p0 = dec.probs[0]!;
    const base = dec.chosen === 0 && p0 > 0 ? (reward - y0) / p0 : 0;
    const seen = new Uint8Array(2 * n);
    for (let k = 1; k < dec.candidates.length; k++) {
      const slot = this.slotOf(g, dec.candidates[k]!);
      if (slot < 0 || seen[slot]) continue;
      seen[slot] = 1;
      const yk = predict(heads, dec.candidates[k]!);
      const pk = dec.probs[k]!;
      const d = yk - y0 + (dec.chosen === k && pk > 0 ? (reward - yk) / pk : 0) - base;
      c.sum[slot] = c.sum[slot]! + d;
      c.sq[slot] = c.sq[slot]! + d * d;
    }
    c.n++;
    if (c.n < this.opts.every || c.n % this.opts.every !== 0) return false;
    let best = -1;
    let bestLb = 0;
    for (let s = 0; s < 2 * n; s++) {
      const m = c.sum[s]! / c.n;
      const v = Math.max(0, c.sq[s]! / c.n - m * m);
      const lb = m - this.opts.z * Math.sqrt(v / c.n);
      if (lb > bestLb) {
        bestLb = lb;
        best = s;
      }
    }
    if (best < 0) return false;
    const i = best >> 1;
    const dir = best & 1 ? -1 : 1;
    const next = Math.max(-this.opts.max, Math.min(this.opts.max, c.theta[i]! + dir * this.opts.step));
    if (next === c.theta[i]) return false;
    c.theta[i] = next;
    c.sum.fill(0);
    c.sq.fill(0);
    c.n = 0;
    c.moves++;
    this.moves++;
    return true;
  }

  /** Which perturbation of g a candidate is (2i: agent i up, 2i + 1: down), or −1 (the anchor, a candidate version's split). */
  private slotOf(g: readonly number[], c: readonly number[]): number {
    let best = -1;
    let bestAbs = 0;
    let second = 0;
    for (let i = 0; i < g.length; i++) {
      if (g[i]! <= 0 || c[i]! <= 0) {
        if (g[i] !== c[i]) return -1;
        continue;
      }
      const r = Math.abs(Math.log(c[i]! / g[i]!));
      if (r > bestAbs) {
        second = bestAbs;
        bestAbs = r;
        best = i;
      } else if (r > second) second = r;
    }
    // A perturbation moves one agent by up to δ and the others in proportion, by less.
    if (best < 0 || bestAbs < 0.05 || bestAbs > 0.75 || second >= bestAbs * 0.8) return -1;
    return 2 * best + (c[best]! > g[best]! ? 0 : 1);
  }

  /** θ per cell, for reports. */
  offsets(): Record<string, number[]> {
    const out: Record<string, number[]> = {};
    for (const [k, c] of this.cells) out[k] = Array.from(c.theta);
    return out;
  }
}
