/**
 * The activation gate's comparison with the serving version against the candidate share, on a toy with known truth:
 * two agents, the serving split 80 % of the policy's decisions (a perturbation and the default 10 % each), the
 * candidate's split mixed in at `share`, the guard's control arm (the default) at 5 %; rewards = the split's value
 * + noise 0.1 (serving 0.80, default 0.75); DR's direct part 0.8 everywhere. Per share and candidate value: how many
 * of 40 samples of 500 decisions pass, and the mean width (estimate − lower bound) of the serving comparison.
 *
 *   node --import tsx bench/learner-gate-share.ts
 */
import { gateVerdict, DEFAULT_GATE } from '../src/learner/gate.js';
import type { LoggedEvent } from '../src/learner/events.js';
import { withCandidate, type Decision } from '../src/learner/policy.js';
import { mulberry32 } from '../src/learner/rng.js';
import { compileFeatures } from '../src/learner/features.js';
import { initialWeights } from '../src/learner/model.js';
const S = [60, 40], C = [62, 38], U = [50, 50], P1 = [70, 30];
const key = (b: readonly number[]) => b.join(',');
function sample(share: number, vc: number, seed: number, n = 500): LoggedEvent[] {
  const V: Record<string, number> = { [key(S)]: 0.8, [key(C)]: vc, [key(U)]: 0.75, [key(P1)]: 0.78 };
  const rng = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  return Array.from({ length: n }, (_, t) => {
    const u = rng();
    const probs = [0.8, 0.1, 0.1];
    let dec: Decision = { candidates: [S, P1, U], probs, chosen: u < 0.8 ? 0 : u < 0.9 ? 1 : 2, budgets: [], greedy: 0 } as unknown as Decision;
    dec = { ...dec, budgets: dec.candidates[dec.chosen]! };
    dec = withCandidate(dec, C, share, rng);
    dec = withCandidate(dec, U, 0.05, rng);
    const b = dec.budgets;
    const q = V[key(b)]! + 0.1 * gauss();
    return { id: `${seed}-${t}`, t, s: 'l', f: {}, T: 100, b: { a: b[0]!, b: b[1]! }, q, c: null, C: dec.candidates, P: dec.probs, k: dec.chosen };
  });
}
const enc = compileFeatures([]);
const model = { weights: initialWeights(enc.dim, 2, 100, mulberry32(1)), encoder: enc };
for (const share of [0.1, 0.2, 0.3]) for (const vc of [0.8, 0.805, 0.77]) {
  let pass = 0, width = 0;
  const N = 40;
  for (let s = 0; s < N; s++) {
    const v = gateVerdict({ events: sample(share, vc, 100 + s), agents: ['a', 'b'], costWeight: 0, candidate: model, candidateSplit: () => C, serving: { version: 1, split: () => S }, defaultSplit: () => U, value: () => 0.8 }, DEFAULT_GATE);
    if (v.pass) pass++;
    const c = v.comparisons.find((x) => x.against === 'serving');
    if (c) width += (c.diff - c.lo) / N;
  }
  console.log(`share ${share} vc ${vc}: passed ${pass}/40, mean width ${width.toFixed(4)}`);
}
