/**
 * Drift recovery on a pipeline with model tiers, through the service's tier loop (src/learner/sim/tier-loop.ts): is a
 * real change of the world detected, and is none detected where the world does not change?
 *
 *   node --import tsx bench/learner-tiers-drift.ts [--seed 1] [--world cheap-suffices] [--outcomes 5000] [--at 2500] [--reach 0.1,0.5]
 *
 * Per reach factor: the loop runs `outcomes` outcomes and at outcome `at` every cheap model's reach is scaled by it
 * for every agent (the world changes; a joint version keeps the cheap models where it learned they suffice). The
 * runtime guard's reverts are off, so drift recovery alone acts. Reported: the changes detected (retrain, version,
 * the residual test's squared error against the held-out error of the same kinds of action, n), the detection delay
 * in outcomes, and drift recovery's retirements. Baseline in the same run: the same loop without the change (every
 * change detected there is a false one).
 */
import { runTierLoop, type TierLoopResult } from '../src/learner/sim/tier-loop.js';
import { loadTierWorld, tierWorld } from '../src/learner/sim/tiers.js';
import { flag } from './lib.js';

const seed = Number(flag('seed', '1'));
const name = flag('world', 'cheap-suffices');
const outcomes = Number(flag('outcomes', '5000'));
const at = Number(flag('at', '2500'));
const reaches = flag('reach', '0.1,0.5').split(',').map(Number);
const tw = loadTierWorld(name);
const t0 = Date.now();

const describe = (r: TierLoopResult) =>
  `${r.changes.length} change(s)${r.changes.map((c) => ` [at ${c.at}: version ${c.version}, squared error ${c.mse.toFixed(4)} vs held-out ${c.holdoutMse.toFixed(4)} on ${c.n}]`).join('')}; retirements: ${
    r.reverts.filter((v) => v.reason === 'drift').map((v) => `version ${v.from} at ${v.at} (${v.diff.toFixed(3)} vs the default)`).join(', ') || 'none'
  }`;

console.log(`bench/learner-tiers-drift: ${name}, seed ${seed}, ${outcomes} outcomes, the service's tier loop with drift recovery (guard reverts off)`);
const still = runTierLoop({ world: tw, outcomes, seed, guard: false });
console.log(`no change (baseline): ${describe(still)}`);
for (const reach of reaches) {
  const degraded = tierWorld({
    ...tw.doc,
    name: `${name}-reach-${reach}`,
    response: Object.fromEntries(Object.entries(tw.doc.response).map(([agent, byModel]) => [agent, Object.fromEntries(Object.entries(byModel).map(([m, r]) => [m, { ...r, reach: r.reach * reach }]))])),
  });
  const r = runTierLoop({ world: tw, outcomes, seed, degradeAt: at, degraded, guard: false });
  const first = r.changes.find((c) => c.at > at);
  console.log(`cheap models' reach × ${reach} at ${at}: ${describe(r)}; first detection ${first ? `${first.at - at} outcomes after the change` : 'none'}; false before it: ${r.changes.filter((c) => c.at <= at).length}`);
}
console.log(`done in ${Math.round((Date.now() - t0) / 1000)} s`);
