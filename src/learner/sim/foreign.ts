import type { FeaturesBody } from '../features.js';
import { mulberry32, normal } from '../rng.js';
import { waterFill } from '../../strategies/fit.js';
import { numericOracle, type SimWorld } from './family.js';

/**
 * Worlds outside the reward model's class (pure, deterministic per seed): docs/learner.md, "Worlds outside the
 * model's class". The reward model (model.ts) is a product of per-agent responses that never fall with more tokens,
 * and so is every world of the generated family (family.ts). A user's pipeline need not be: its quality may be a
 * weighted sum of what each agent contributes, be set by its weakest agent, fall when an agent gets far more tokens
 * than it can use (a verbose agent drowns the next one), or depend on the tokens the agents spend together. These
 * worlds are written apart from the family (their own code, features and curves) to check what the learner's
 * safety holds to on a world it is misspecified for: the activation gate, the safe start and the runtime guard
 * judge splits by their realised reward, not by the model, so a learned split worse than the default strategy's
 * must not serve for longer than the guard takes to see it.
 */
export type ForeignKind = 'additive' | 'bottleneck' | 'verbose' | 'pooled';
export const FOREIGN_KINDS: readonly ForeignKind[] = ['additive', 'bottleneck', 'verbose', 'pooled'];

export interface ForeignContext {
  readonly kind: number;
  readonly size: number;
  readonly depth: number;
  readonly junk: number;
  readonly urgent: boolean;
}

interface ForeignAgent {
  readonly name: string;
  readonly base: number;
  /** Need ∝ (1 + size / sizeRef)^elasticity. */
  readonly elasticity: number;
  /** Need grows by this share per unit of depth. */
  readonly depthSlope: number;
  /** How much the agent matters per request kind (0: not at all). */
  readonly importance: readonly number[];
  readonly minTokens: number;
  readonly maxTokens: number;
}

export interface ForeignSpec {
  readonly seed: number;
  readonly composition: ForeignKind;
  readonly kinds: number;
  readonly sizeRef: number;
  readonly noise: number;
  readonly agents: readonly ForeignAgent[];
  /** `verbose`: past `verboseAt` × need, each further need's worth of tokens costs this much of the agent's response. */
  readonly verbosePenalty: number;
  readonly verboseAt: number;
}

const logUniform = (rng: () => number, lo: number, hi: number) => Math.exp(Math.log(lo) + rng() * (Math.log(hi) - Math.log(lo)));

/** The world's parameters for a seed; `composition` forces one kind (default: drawn from the seed). */
export function foreignSpec(seed: number, composition?: ForeignKind): ForeignSpec {
  const rng = mulberry32(seed * 40503 + 0x2545f491);
  const drawn = FOREIGN_KINDS[Math.floor(rng() * FOREIGN_KINDS.length)]!;
  const n = 3 + Math.floor(rng() * 6);
  const kinds = 2 + Math.floor(rng() * 3);
  const agents: ForeignAgent[] = Array.from({ length: n }, (_, i) => {
    const base = logUniform(rng, 150, 2500);
    // Each agent matters for each kind of request with probability 0.75, by 0.2–1 when it does; at least one kind.
    const importance: number[] = Array.from({ length: kinds }, () => (rng() < 0.75 ? 0.2 + 0.8 * rng() : 0));
    if (!importance.some((a) => a > 0)) importance[Math.floor(rng() * kinds)] = 0.2 + 0.8 * rng();
    return {
      name: `step${i}`,
      base,
      elasticity: rng() * 0.6,
      depthSlope: rng() < 0.5 ? 0.05 + rng() * 0.15 : 0,
      importance,
      minTokens: Math.round(rng() * 80),
      maxTokens: rng() < 0.3 ? Math.round(base * (2 + rng() * 3)) : 1_000_000,
    };
  });
  return {
    seed,
    composition: composition ?? drawn,
    kinds,
    sizeRef: logUniform(rng, 10, 10_000),
    noise: 0.03 + rng() * 0.09,
    agents,
    verbosePenalty: 0.05 + rng() * 0.15,
    verboseAt: 1.5 + rng(),
  };
}

function needs(spec: ForeignSpec, c: ForeignContext): number[] {
  return spec.agents.map((a) => a.base * Math.pow(1 + c.size / spec.sizeRef, a.elasticity) * (1 + a.depthSlope * c.depth) * (c.urgent ? 0.7 : 1));
}

/** Expected quality in [0, 1] of a split (the ground truth). */
export function foreignQuality(spec: ForeignSpec, c: ForeignContext, budgets: readonly number[]): number {
  const need = needs(spec, c);
  const imp = spec.agents.map((a) => a.importance[c.kind]!);
  const wsum = imp.reduce((s, v) => s + v, 0);
  const resp = need.map((nd, i) => 1 - Math.exp(-budgets[i]! / nd));
  switch (spec.composition) {
    case 'additive':
      return resp.reduce((s, r, i) => s + imp[i]! * r, 0) / wsum;
    case 'bottleneck': {
      // A soft minimum over the agents that matter: the weakest one sets the quality.
      const p = 4;
      let s = 0;
      resp.forEach((r, i) => (s += (imp[i]! / wsum) * Math.pow(Math.max(r, 1e-6), -p)));
      return Math.pow(s, -1 / p);
    }
    case 'verbose': {
      // Additive, but an agent given far more than it needs rambles and costs the pipeline.
      let q = 0;
      resp.forEach((r, i) => {
        const over = Math.max(0, budgets[i]! / need[i]! - spec.verboseAt);
        q += imp[i]! * (r - spec.verbosePenalty * over);
      });
      return Math.max(0, Math.min(1, q / wsum));
    }
    case 'pooled': {
      // What counts is the useful tokens spent together, weighted by how much each agent matters here.
      let useful = 0;
      let ref = 0;
      need.forEach((nd, i) => {
        useful += imp[i]! * Math.min(budgets[i]!, 1.5 * nd);
        ref += imp[i]! * nd;
      });
      return 1 - Math.exp(-useful / ref);
    }
  }
}

/** A foreign world for a seed (deterministic); see the module comment. */
export function foreignWorld(seed: number, composition?: ForeignKind): SimWorld<ForeignContext> & { readonly spec: ForeignSpec } {
  const spec = foreignSpec(seed, composition);
  const rng = mulberry32(seed * 69069 + 1);
  // Median request: size ≈ sizeRef, depth 3, not urgent. The total is 0.5–1.3× what the agents need there.
  const medianNeed = needs(spec, { kind: 0, size: spec.sizeRef, depth: 3, junk: 0, urgent: false }).reduce((s, v) => s + v, 0);
  const totalTokens = Math.max(spec.agents.reduce((s, a) => s + a.minTokens, 0) + 500, Math.round(medianNeed * (0.5 + 0.8 * rng())));
  const mins = spec.agents.map((a) => a.minTokens);
  const caps = spec.agents.map((a) => a.maxTokens);
  const declaration: FeaturesBody = {
    features: [
      { name: 'kind', type: 'categorical', values: Array.from({ length: spec.kinds }, (_, k) => `kind${k}`) },
      { name: 'size', type: 'numeric' },
      { name: 'depth', type: 'numeric', transform: 'log' },
      { name: 'junk', type: 'numeric' },
      { name: 'urgent', type: 'numeric' },
    ],
  };
  const expected = (_phase: 0 | 1, c: ForeignContext, b: readonly number[]) => foreignQuality(spec, c, b);
  return {
    name: `foreign-${seed}`,
    spec,
    totalTokens,
    agents: spec.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })),
    declaration,
    costWeight: 0,
    summary: `${spec.composition}, ${spec.agents.length} agents, ${spec.kinds} kinds, noise ${spec.noise.toFixed(2)}, total ${totalTokens}`,
    sample: (r) => ({
      kind: Math.floor(r() * spec.kinds),
      // Log-normal size around sizeRef (raw values over several orders of magnitude), depth 0–20, junk up to 1e4.
      size: spec.sizeRef * Math.exp(1.5 * normal(r)),
      depth: Math.floor(r() * 21),
      junk: r() * 10_000,
      urgent: r() < 0.2,
    }),
    features: (c) => ({ kind: `kind${c.kind}`, size: c.size, depth: c.depth, junk: c.junk, urgent: c.urgent }),
    expected,
    outcome: (_phase, c, b, r) => ({ quality: Math.min(1, Math.max(0, foreignQuality(spec, c, b) + spec.noise * normal(r))), cost: null }),
    oracle: (phase, c, total) => {
      const need = needs(spec, c);
      const bounds = spec.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens }));
      const starts = [waterFill(bounds.map((a) => ({ ...a, weight: 1 })), total), waterFill(bounds.map((a, i) => ({ ...a, weight: need[i]! * (spec.agents[i]!.importance[c.kind]! + 0.01) })), total)];
      return numericOracle((b) => expected(phase, c, b), mins, caps, total, starts);
    },
  };
}
