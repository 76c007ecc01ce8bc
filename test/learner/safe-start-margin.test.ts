/**
 * The safe start's cost test (guard.ts safeStartCostVerdict, the learned strategy's `safeStartMargin`): what its
 * exploration costs per decision against the default strategy's split, estimated from the decisions that drew the
 * default split and those that drew a perturbation of it. An external evaluation saw the safe start's traffic 0.007–0.024 below the
 * default for whole 3,000-outcome runs while the control test (learned against the 5 % control arm) never fired.
 *
 * Pure: the estimate from known rewards, the rule (worse only when the interval lies below −margin), false shrinks
 * when the exploration costs exactly the margin, and the power the control test lacks on the same decisions.
 * Over a real socket (real Redis): a safe start whose exploration costs twice the margin has its exploration rate (not
 * the candidate's share) halved by the cost test, listed and counted, and serves at that rate; the same traffic on a
 * pipeline with `safeStartMargin: null` is not shrunk and lists the same estimate; bad values are 400s.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  addSafeStartReward,
  EMPTY_SAFE_START,
  GUARD_DEFAULTS,
  safeStartAlpha,
  safeStartCheck,
  safeStartCostVerdict,
  type SafeStartEvidence,
} from '../../src/learner/guard.js';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import type { LearnerMeta } from '../../src/learner/kind.js';
import { compileFeatures } from '../../src/learner/features.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { initialWeights } from '../../src/learner/model.js';
import { SAFE_START_EPSILON } from '../../src/learner/policy.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { mulberry32, normal } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * One simulated safe start: each decision is the control arm's with probability `control`, else the learned arm's,
 * which serves another split than the default's with probability `away`; rewards N(mean, sd²).
 */
function simulate(seed: number, n: number, o: { control: number; away: number; atDefault: number; awayMean: number; sd: number }, look?: (e: SafeStartEvidence, i: number) => boolean): SafeStartEvidence {
  const rng = mulberry32(seed);
  let e = EMPTY_SAFE_START;
  for (let i = 0; i < n; i++) {
    const control = rng() < o.control;
    const atDefault = control || rng() >= o.away;
    const r = (atDefault ? o.atDefault : o.awayMean) + o.sd * normal(rng);
    e = addSafeStartReward(e, r, control, atDefault);
    if (look && (i + 1) % 25 === 0 && look(e, i + 1)) break;
  }
  return e;
}

describe('the safe start’s cost test (pure)', () => {
  it('estimates share × (mean away − mean at the default split) from exactly the decisions given', () => {
    // Learned arm: 6 at the default split (0.8), 2 away (0.5, 0.3); control arm: 2 (0.9, 0.7).
    let e = EMPTY_SAFE_START;
    for (const r of [0.8, 0.8, 0.8, 0.8, 0.8, 0.8]) e = addSafeStartReward(e, r, false, true);
    for (const r of [0.5, 0.3]) e = addSafeStartReward(e, r, false, false);
    for (const r of [0.9, 0.7]) e = addSafeStartReward(e, r, true, true);
    assert.deepEqual([e.learned.n, e.control.n, e.cost!.learnedN, e.cost!.atDefault.n, e.cost!.away.n], [8, 2, 8, 8, 2]);
    const v = safeStartCostVerdict(e, { margin: 0.01, minPerArm: 2 });
    assert.equal(v.share, 2 / 8);
    // At the default split: six 0.8s and the control's 0.9 and 0.7 → mean 0.8; away: 0.4.
    assert.ok(Math.abs(v.atDefault.mean - 0.8) < 1e-12 && Math.abs(v.away.mean - 0.4) < 1e-12, JSON.stringify(v));
    assert.ok(Math.abs(v.cost! - 0.25 * (0.4 - 0.8)) < 1e-12, `cost ${v.cost}`);
    assert.ok(v.ci![0] <= v.cost! && v.cost! <= v.ci![1]);
    // Decisions the cost test does not judge (explore-first's) still count in the control test's arms.
    const skipped = addSafeStartReward(e, 0.1, false, false, false);
    assert.equal(skipped.learned.n, 9);
    assert.deepEqual(skipped.cost, e.cost);
  });

  it('is worse only when the whole interval lies below −margin, never with too few decisions, and its interval holds the estimate', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), fc.double({ min: 0, max: 0.3, noNaN: true }), fc.integer({ min: 20, max: 4000 }), fc.double({ min: 0, max: 0.05, noNaN: true }), (seed, gap, n, margin) => {
        const e = simulate(seed, n, { control: 0.05, away: 0.2, atDefault: 0.7, awayMean: 0.7 - gap, sd: 0.1 });
        const v = safeStartCostVerdict(e, { margin });
        const awayN = e.cost!.away.n;
        if (awayN < GUARD_DEFAULTS.minPerArm) assert.equal(v.status, 'insufficient');
        if (v.status === 'worse') assert.ok(v.ci![1] < -margin);
        if (v.status === 'ok') assert.ok(v.ci![1] >= -margin);
        if (v.ci) assert.ok(v.ci[0] <= v.cost! && v.cost! <= v.ci[1]);
      }),
      { numRuns: 200 },
    );
  });

  it('shrinks in few runs when the exploration costs exactly the margin, looking every 25 decisions', () => {
    // 20 % of the learned decisions away, each 0.025 below: 0.005 per decision, the margin. The test's level at the
    // first shrink is α/(1·2)/2 (half of the safe start's, the control test has the other half).
    const margin = 0.005;
    const level = safeStartAlpha(GUARD_DEFAULTS.alpha, 0) / 2;
    const runs = 200;
    let shrunk = 0;
    for (let r = 0; r < runs; r++) {
      simulate(1000 + r, 4000, { control: 0.05, away: 0.2, atDefault: 0.7, awayMean: 0.7 - margin / 0.2, sd: 0.1 }, (e) => {
        const worse = safeStartCostVerdict(e, { margin, alpha: level }).status === 'worse';
        if (worse) shrunk++;
        return worse;
      });
    }
    assert.ok(shrunk / runs <= level, `false shrinks ${shrunk} of ${runs} (level ${level})`);
  });

  it('finds exploration that costs twice the margin where the control test alone does not, on the same decisions', () => {
    const margin = 0.005;
    const runs = 40;
    let byCost = 0;
    let byControlAlone = 0;
    for (let r = 0; r < runs; r++) {
      // 0.05 below on 20 % of the learned decisions: 0.01 per decision.
      const e = simulate(5000 + r, 3000, { control: 0.05, away: 0.2, atDefault: 0.7, awayMean: 0.65, sd: 0.1 });
      if (safeStartCheck(e, 0, {}, margin).by === 'cost') byCost++;
      if (safeStartCheck(e, 0, {}).status === 'worse') byControlAlone++;
    }
    assert.ok(byCost >= 0.9 * runs, `the cost test found it in ${byCost} of ${runs} runs`);
    assert.ok(byControlAlone <= 0.25 * runs, `the control test alone found it in ${byControlAlone} of ${runs} runs`);
  });

  it('runs each test at half the level when both run, the control test alone at the full level', () => {
    const e = simulate(7, 2000, { control: 0.05, away: 0.2, atDefault: 0.7, awayMean: 0.7, sd: 0.1 });
    const both = safeStartCheck(e, 0, {}, 0.005);
    const alone = safeStartCheck(e, 0, {});
    assert.ok(both.cost && !alone.cost);
    const width = (ci: readonly [number, number] | null) => (ci ? ci[1] - ci[0] : NaN);
    assert.ok(width(both.control.ci) > width(alone.control.ci), 'the control test is wider at half the level');
    assert.notEqual(both.status, 'worse');
  });
});

// ---- Over a real socket --------------------------------------------------------------------------------------------

const prefix = testPrefix('learner-safe-start-margin');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-ssm-models-'));
const AGENTS = ['a', 'b', 'c'];
const TOTAL = 6000;
const MARGIN = 0.005;
let rt: Running;
let learner: LearnerModule;
const http = jsonHttp(() => rt.url!);
const dflt: Record<string, number[]> = {};

describe('the safe start’s cost test over HTTP', () => {
  before(async () => {
    rt = await startTest(prefix, { listen: true }, { PORT: '0', APPORTION_MODELS_DIR: modelsDir });
    learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
    const agents = AGENTS.map((name) => ({ name, minTokens: 100 }));
    for (const [p, margin] of [
      ['p', MARGIN],
      ['q', null],
    ] as const) {
      assert.equal((await http('PUT', `/v1/pipelines/${p}`, { defaultTotalTokens: TOTAL, agents })).status, 200);
      assert.equal((await http('PUT', `/v1/strategies/fixed-${p}`, { pipeline: p, kind: 'static', params: { shares: { a: 5, b: 1, c: 3 } } })).status, 200);
      assert.equal((await http('PUT', `/v1/pipelines/${p}`, { defaultTotalTokens: TOTAL, agents, defaultStrategy: `fixed-${p}` })).status, 200);
      assert.equal((await http('PUT', `/v1/pipelines/${p}/features`, { features: [{ name: 'n', type: 'numeric' }] })).status, 200);
      // guardMargin 0.05: the control test acts only on a shortfall beyond 0.05, which this traffic (0.01) never has,
      // so whatever shrinks here is the cost test's (how much sooner it resolves a gap is the pure tests' above).
      const put = await http('PUT', `/v1/strategies/learn-${p}`, { pipeline: p, kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0, guardMargin: 0.05, safeStartMargin: margin } });
      assert.equal(put.status, 200, put.text);
      const f = (await http('POST', '/v1/allocations', { pipeline: p, strategy: `fixed-${p}`, features: { n: 0 }, totalTokens: TOTAL })).json as { budgets: Record<string, { tokens: number }> };
      dflt[p] = AGENTS.map((n) => f.budgets[n]!.tokens);
    }
  });
  after(async () => {
    await rt.close();
    await dropPrefix(prefix);
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('refuses a margin out of range or of the wrong type, naming the field', async () => {
    for (const bad of [-0.01, 1.5, 'small', true]) {
      const r = await http('PUT', '/v1/strategies/bad', { pipeline: 'p', kind: 'learned', params: { safeStartMargin: bad } });
      assert.equal(r.status, 400, r.text);
      assert.match(r.text, /safeStartMargin/);
    }
    assert.equal((await http('GET', '/v1/strategies/bad')).status, 404, 'nothing half-written');
  });

  it('shrinks a safe start whose exploration costs twice the margin, says why, and leaves the same traffic alone without the test', async () => {
    // The default split earns 0.8, any other 0.75 (noise sd 0.05): with the safe start's 20 % exploration the learned
    // traffic loses about 0.01 per decision, twice the margin.
    const rng = mulberry32(11);
    const N = 1500;
    for (const p of ['p', 'q']) await learner.guard.checkSafeStart(p);
    for (let i = 0; i < N; i++) {
      for (const p of ['p', 'q']) {
        const a = await http('POST', '/v1/allocations', { pipeline: p, strategy: `learn-${p}`, features: { n: i % 5 }, totalTokens: TOTAL });
        assert.equal(a.status, 200, a.text);
        const budgets = (a.json as { budgets: Record<string, { tokens: number }> }).budgets;
        const atDefault = AGENTS.every((n, j) => budgets[n]!.tokens === dflt[p]![j]);
        const q = (atDefault ? 0.8 : 0.75) + 0.05 * normal(rng);
        assert.equal((await http('POST', '/v1/outcomes', { decisionId: (a.json as { decisionId: string }).decisionId, quality: q })).status, 202);
      }
    }
    for (const p of ['p', 'q']) {
      const counters = learnerKeys(rt.core.keys, p).counters;
      await eventually(async () => Number((await rt.core.redis.hget(counters, 'outcomes')) ?? 0) >= N, 300_000);
      await learner.training.ingest(p);
      await learner.guard.checkSafeStart(p);
    }

    // With the cost test: shrunk by it, the reason and its interval listed, counted in /metrics.
    const list = (await http('GET', '/v1/models/p')).json as { serving: string; guard?: { safeStart?: Record<string, unknown> & { current?: Record<string, unknown> } } };
    assert.equal(list.serving, 'default-strategy');
    const ss = list.guard?.safeStart;
    assert.ok(ss && (ss.shrinks as number) >= 1, `shrunk: ${JSON.stringify(list.guard)}`);
    assert.equal(ss.by, 'cost');
    assert.match(ss.reason as string, /the safe start's exploration \(the default strategy's split perturbed\) costs more than safeStartMargin 0\.005 per decision against the control strategy fixed-p's split/);
    const ci = ss.ci as number[];
    assert.ok(ci[1]! < -MARGIN && (ss.diff as number) < -MARGIN, JSON.stringify(ss));
    // The exploration rate alone was halved (as often as the test fired); the candidate's share (scale) was not.
    assert.equal(ss.scale, 1);
    assert.equal(ss.exploration, 0.5 ** (ss.shrinks as number));
    // Serving explores at the smaller rate: the default split's logged probability rose to ≥ 1 − 0.2 × exploration.
    const a = await http('POST', '/v1/allocations', { pipeline: 'p', strategy: 'learn-p', features: { n: 1 }, totalTokens: TOTAL });
    const rec = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, (a.json as { decisionId: string }).decisionId))!) as DecisionRecord;
    const P0 = (rec.meta!.learner as LearnerMeta).P[0]!;
    assert.ok(P0 >= 1 - SAFE_START_EPSILON * (ss.exploration as number) - 1e-6 && P0 < 1 - SAFE_START_EPSILON * 0.125 + 1e-6, `P(default split) ${P0} at exploration ${ss.exploration}`);
    assert.match((await http('GET', '/metrics')).text, /apportion_learner_guard_reverts_total\{reason="safe-start",to="shrunk"\} [1-9]/);
    // The running comparison lists the cost test beside the control test; every safe-start decision is in one of its groups.
    const cur = ss.current as { learned: { n: number }; control: { n: number }; alpha: number; cost: { away: { n: number; mean: number }; atDefault: { n: number; mean: number }; share: number; margin: number } };
    assert.ok(cur.cost, JSON.stringify(cur));
    assert.equal(cur.cost.margin, MARGIN);
    assert.equal(cur.cost.away.n + cur.cost.atDefault.n, cur.learned.n + cur.control.n);
    if (cur.learned.n > 0) assert.ok(Math.abs(cur.cost.share - cur.cost.away.n / cur.learned.n) < 1e-12);
    assert.equal(cur.alpha, safeStartAlpha(GUARD_DEFAULTS.alpha, ss.shrinks as number) / 2);

    // Without a margin (safeStartMargin null): the same traffic is not shrunk (the cost test does not act, and the control
    // test's margin is out of reach), and the cost estimate is listed all the same, reported only (margin null), at the
    // safe start's full level.
    const q = (await http('GET', '/v1/models/q')).json as { guard?: { safeStart?: { shrinks: number; current?: Record<string, unknown> } } };
    const qs = q.guard?.safeStart;
    assert.ok(qs?.current, JSON.stringify(q.guard));
    assert.equal(qs.shrinks, 0, `not shrunk: ${JSON.stringify(qs)}`);
    const qcost = qs.current.cost as { margin: number | null; cost: number; ci: number[]; status: string; away: { n: number; mean: number }; atDefault: { n: number; mean: number } };
    assert.ok(qcost, JSON.stringify(qs.current));
    assert.equal(qcost.margin, null);
    assert.equal(qs.current.alpha, safeStartAlpha(GUARD_DEFAULTS.alpha, 0), 'the control test at the full level: the cost test does not act');
    // Perturbed decisions earned 0.75, the default split 0.8: what the product lists is what was served.
    assert.ok(Math.abs(qcost.away.mean - 0.75) < 0.02 && Math.abs(qcost.atDefault.mean - 0.8) < 0.01, JSON.stringify(qcost));
    assert.ok(qcost.ci[1]! < 0 && qcost.status === 'worse', `the exploration is resolved below the default: ${JSON.stringify(qcost)}`);
    const qc = qs.current as { status: string; learned: { mean: number }; control: { mean: number } };
    assert.notEqual(qc.status, 'worse');
  });

  it("leaves the pending candidate's plays out of the cost test (its own arm judges them)", async () => {
    const agents = AGENTS.map((name) => ({ name, minTokens: 100 }));
    assert.equal((await http('PUT', '/v1/pipelines/r', { defaultTotalTokens: TOTAL, agents })).status, 200);
    assert.equal((await http('PUT', '/v1/pipelines/r/features', { features: [{ name: 'n', type: 'numeric' }] })).status, 200);
    // A candidate that is never refused here: the runtime guard's candidate arm is off, so its plays go on. Margins of 1
    // keep both safe-start tests from acting (a shrink would restart the evidence this test counts); the cost test
    // still sorts every decision.
    const put = await http('PUT', '/v1/strategies/learn-r', { pipeline: 'r', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0, guardCandidate: false, guardMargin: 1, safeStartMargin: 1 } });
    assert.equal(put.status, 200, put.text);
    const enc = compileFeatures([{ name: 'n', type: 'numeric' }]);
    const metrics = { rows: 0, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 0 };
    const cand = await learner.training.registry.save('r', initialWeights(enc.dim, AGENTS.length, TOTAL, mulberry32(3)), { signature: enc.signature, agents: AGENTS, metrics });
    await learner.training.registry.propose(cand);
    await learner.guard.checkSafeStart('r');
    const rng = mulberry32(12);
    const N = 600;
    let plays = 0;
    let all = 0;
    for (let i = 0; i < N; i++) {
      const a = await http('POST', '/v1/allocations', { pipeline: 'r', strategy: 'learn-r', features: { n: i % 5 }, totalTokens: TOTAL });
      assert.equal(a.status, 200, a.text);
      const id = (a.json as { decisionId: string }).decisionId;
      const m = (JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord).meta!.learner as LearnerMeta;
      all++;
      if (m.cw === 1 && m.x?.a !== 1) plays++;
      assert.equal((await http('POST', '/v1/outcomes', { decisionId: id, quality: 0.7 + 0.05 * normal(rng) })).status, 202);
    }
    const counters = learnerKeys(rt.core.keys, 'r').counters;
    await eventually(async () => Number((await rt.core.redis.hget(counters, 'outcomes')) ?? 0) >= N, 300_000);
    await learner.training.ingest('r');
    const check = await learner.guard.checkSafeStart('r');
    assert.ok(check?.cost, 'the cost test ran');
    assert.ok(plays > 10, `${plays} candidate plays`);
    // Every decision since the test's first check is in the control test's arms; the cost test has all but the plays.
    const list = (await http('GET', '/v1/models/r')).json as { guard: { safeStart: { shrinks: number; current: { learned: { n: number }; control: { n: number }; cost: { away: { n: number }; atDefault: { n: number } } } } } };
    const cur = list.guard.safeStart.current;
    assert.equal(list.guard.safeStart.shrinks, 0);
    assert.equal(cur.learned.n + cur.control.n, all);
    assert.equal(cur.cost.away.n + cur.cost.atDefault.n, all - plays);
  });
});
