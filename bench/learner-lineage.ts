/**
 * The activation gate's lineage after a change drift detection may miss: the agents change roles while a trained
 * version serves. The gate judges a candidate against the default strategy along the serving version's record
 * (gate.ts `chainedDiff`); a record that mixes decisions from before and after the change can vouch for a candidate
 * that is worse than the default now. `GateRule.lineageCheck` (on by default) compares the record's recent part
 * with its older part and falls back to the direct comparison when it shows a change. This bench runs the same
 * worlds with the same seeds under both rules, in one process:
 *
 *   node --import tsx bench/learner-lineage.ts [--compare lineage|cold] [--worlds named,1,2,3,5,6,7,9,10,11] [--change-at 2500] [--after 5000] [--shard k/n]
 *
 * `--compare cold` runs drift recovery's cold retrains (drift.ts COLD_AFTER_CHANGE_DEFAULT) off and on instead, both
 * with the default gate, and adds per world the served − default over the last 1,000 outcomes and the outcome at
 * which the first version trained after the change served.
 *
 * Per world (the four non-drift named worlds and the non-drift dev seeds of the generated family): at outcome
 * `change-at` the agents change roles, in reverse order of the oracle's mean budgets over 300 requests (the agent the
 * oracle gives the most acts as the one it gives the fewest, and so on): a trained version that had learned the world
 * is then worse than the default strategy (uniform), and stays so until retrained on the new world. Run for `after`
 * more outcomes with the service's loop (sim/loop.ts: gate, guard, drift recovery, all defaults). Printed per rule:
 * - `worse-served`: outcomes after the change served by a trained version whose greedy split is worse than the
 *   default's by more than the gate's δ (true values on 150 requests of the new world);
 * - `worse-admitted`: versions trained after the change that served and are worse than the default by more than δ
 *   (the gate's failures; what the check is for);
 * - `served − default`: mean true reward served after the change less the default split's on the same requests;
 * - `detected`: whether drift recovery detected a change after it.
 * Then the paired differences (checked − unchecked) over the worlds. Ratios against the unchecked rule of the same run.
 */
import { loadTf } from '../src/learner/backend.js';
import { forward } from '../src/learner/model.js';
import { EXPLORE_DEFAULTS, greedyBudgets } from '../src/learner/policy.js';
import { DEFAULT_GATE, type GateRule } from '../src/learner/gate.js';
import { generateWorld, namedWorld, uniformSplitOf, type SimWorld } from '../src/learner/sim/family.js';
import { policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { mulberry32 } from '../src/learner/rng.js';
import { loadWorld } from '../src/learner/sim/world.js';
import { flag } from './lib.js';

const NAMED = ['support-basic', 'doc-heavy', 'generous-caps', 'uneven-needs'];
const worldArg = flag('worlds', 'named,1,2,3,5,6,7,9,10,11').split(',').flatMap((w) => (w === 'named' ? NAMED : [w]));
const changeAt = Number(flag('change-at', '2500'));
const after = Number(flag('after', '5000'));
const [shardK, shardN] = flag('shard', '1/1').split('/').map(Number) as [number, number];
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS };
// `--compare lineage` (default): the gate's lineage check off (baseline) and on. `--compare cold`: drift recovery's
// retrains from the untrained prior while no version serves after a change (drift.ts COLD_AFTER_CHANGE_DEFAULT) off and on.
const compare = flag('compare', 'lineage');
const RULES: readonly { readonly name: string; readonly rule: GateRule; readonly cold?: boolean }[] =
  compare === 'cold'
    ? [
        { name: 'warm', rule: DEFAULT_GATE, cold: false },
        { name: 'cold', rule: DEFAULT_GATE, cold: true },
      ]
    : [
        { name: 'unchecked', rule: { ...DEFAULT_GATE, lineageCheck: false } },
        { name: 'checked', rule: DEFAULT_GATE },
      ];
const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);

/** Budgets as they act after the change: agent k's budget acts as agent roles[k]'s did. */
function permute(b: readonly number[], roles: readonly number[]): number[] {
  const out = b.map(() => 0);
  b.forEach((v, k) => (out[roles[k]!] = v));
  return out;
}

/** `world` whose agents change roles at `at` (phase 1). Its own drift, if any, is not used (non-drift worlds only). */
function changeRoles(world: SimWorld, at: number): SimWorld & { roles: number[] } {
  const rng = mulberry32(7);
  const ctx = Array.from({ length: 300 }, () => world.sample(rng));
  const m = world.agents.map((_, k) => mean(ctx.map((x) => world.oracle(0, x, world.totalTokens)[k]!)));
  const rank = m.map((_, k) => k).sort((a, b) => m[b]! - m[a]!);
  const roles = m.map(() => 0);
  rank.forEach((k, r) => (roles[k] = rank[rank.length - 1 - r]!));
  return {
    ...world,
    roles,
    name: `${world.name}`,
    driftAt: at,
    summary: `${world.summary}; roles ${roles.join(',')} from ${at}`,
    expected: (ph, c, b) => world.expected(0, c, ph === 1 ? permute(b, roles) : b),
    outcome: (ph, c, b, r) => world.outcome(0, c, ph === 1 ? permute(b, roles) : b, r),
    // The split that acts as the old oracle's (it may leave an agent's bounds; only the loop's evaluation reads it).
    oracle: (ph, c, total) => (ph === 1 ? ((o) => o.map((_, k) => o[roles[k]!]!))(world.oracle(0, c, total)) : world.oracle(0, c, total)),
  };
}

const { tf, backend } = await loadTf();
console.log(`bench/learner-lineage: backend ${backend}; change of roles at ${changeAt}, ${after} outcomes after; rules ${RULES.map((r) => r.name).join(' vs ')}; δ ${DEFAULT_GATE.delta}`);
const rows: { world: string; rule: string; worseServed: number; worseAdmitted: number; admitted: number; vsDefault: number; lastVsDefault: number; firstNew: number | null; detected: boolean }[] = [];
const mine = worldArg.filter((_, i) => i % shardN === shardK - 1);
for (const w of mine) {
  const base = NAMED.includes(w) ? namedWorld(loadWorld(w)) : generateWorld(Number(w));
  const name = NAMED.includes(w) ? w : `gen-${w}`;
  const world = changeRoles(base, changeAt);
  const agents = policyAgents(world);
  const uni = uniformSplitOf(world, world.totalTokens);
  const erng = mulberry32(11);
  const evalCtx = Array.from({ length: 150 }, () => world.sample(erng));
  const dflt1 = mean(evalCtx.map((x) => world.expected(1, x, uni)));
  for (const { name: rn, rule, cold } of RULES) {
    const t0 = Date.now();
    const res = await runLoop(tf, { world, outcomes: changeAt + after, seed: 1, explore, evalContexts: 0, checkpointEvery: changeAt + after, gate: rule, ...(cold !== undefined ? { coldAfterChange: cold } : {}) });
    const gap = new Map<number, number>();
    const gapOf = (v: number) => {
      if (!gap.has(v)) {
        const mv = res.versions[v - 1]!;
        gap.set(v, mean(evalCtx.map((x) => world.expected(1, x, greedyBudgets(forward(mv.weights, mv.encoder.encode(world.features(x))), agents, world.totalTokens)))) - dflt1);
      }
      return gap.get(v)!;
    };
    let worseServed = 0;
    const servedAfter = new Set<number>();
    const dv: number[] = [];
    for (let t = changeAt; t < res.served.length; t++) {
      const v = res.servingVersion[t]!;
      if (v > 0) {
        servedAfter.add(v);
        if (gapOf(v) < -rule.delta) worseServed++;
      }
      if (t % 4 === 0) dv.push(res.served[t]! - world.expected(1, res.contexts[t], uni));
    }
    const admitted = [...servedAfter].filter((v) => res.versions[v - 1]!.at > changeAt);
    const worseAdmitted = admitted.filter((v) => gapOf(v) < -rule.delta).length;
    const detected = res.detected.some((d) => d > changeAt);
    const lastDv = dv.slice(-250);
    let firstNew: number | null = null;
    for (let t = changeAt; t < res.served.length && firstNew === null; t++) {
      const v = res.servingVersion[t]!;
      if (v > 0 && res.versions[v - 1]!.at > changeAt) firstNew = t - changeAt;
    }
    const row = { world: name, rule: rn, worseServed, worseAdmitted, admitted: admitted.length, vsDefault: mean(dv), lastVsDefault: mean(lastDv), firstNew, detected };
    rows.push(row);
    console.log(`ROW ${JSON.stringify(row)}`);
    console.log(
      `${name.padEnd(14)} ${rn.padEnd(10)} worse-served ${String(worseServed).padStart(5)} of ${after} · worse-admitted ${worseAdmitted} of ${admitted.length} admitted after the change · served − default ${mean(dv).toFixed(4)} (last 1,000: ${mean(lastDv).toFixed(4)}) · a version trained after the change served from ${firstNew === null ? 'never' : `+${firstNew}`} · change detected ${detected ? 'yes' : 'no'} · versions ${res.versions.length}, refused ${res.versions.filter((v) => v.gate && !v.gate.pass).length} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
    );
  }
}

const pairs = mine.map((w) => (NAMED.includes(w) ? w : `gen-${w}`)).map((n) => ({ n, u: rows.find((r) => r.world === n && r.rule === RULES[0]!.name)!, c: rows.find((r) => r.world === n && r.rule === RULES[1]!.name)! }));
const sum = (k: 'worseServed' | 'worseAdmitted' | 'admitted', rule: 'u' | 'c') => pairs.reduce((s, p) => s + p[rule][k], 0);
console.log(
  `\n${pairs.length} worlds: worse-served outcomes ${sum('worseServed', 'c')} ${RULES[1]!.name} vs ${sum('worseServed', 'u')} ${RULES[0]!.name} (ratio ${(sum('worseServed', 'c') / Math.max(1, sum('worseServed', 'u'))).toFixed(2)}); ` +
    `worse versions admitted after the change ${sum('worseAdmitted', 'c')} of ${sum('admitted', 'c')} vs ${sum('worseAdmitted', 'u')} of ${sum('admitted', 'u')}; ` +
    `served − default after the change, mean ${mean(pairs.map((p) => p.c.vsDefault)).toFixed(4)} vs ${mean(pairs.map((p) => p.u.vsDefault)).toFixed(4)} (paired Δ ${mean(pairs.map((p) => p.c.vsDefault - p.u.vsDefault)).toFixed(4)}; better on ${pairs.filter((p) => p.c.vsDefault - p.u.vsDefault > 0.002).length}, worse on ${pairs.filter((p) => p.c.vsDefault - p.u.vsDefault < -0.002).length}); ` +
    `over the last 1,000 outcomes ${mean(pairs.map((p) => p.c.lastVsDefault)).toFixed(4)} vs ${mean(pairs.map((p) => p.u.lastVsDefault)).toFixed(4)}; a version trained after the change served on ${pairs.filter((p) => p.c.firstNew !== null).length} vs ${pairs.filter((p) => p.u.firstNew !== null).length} worlds`,
);
