import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adaptiveControlShare } from '../../src/learner/guard.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadWorld } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { testPrefix } from '../helpers/env.js';
import { startLearnerWorld, type LearnerWorldServer } from '../helpers/learner-world.js';

/**
 * The control arm's share while a trained version leads the control clearly (docs/learner.md, "A smaller control arm
 * while the learned arm leads"), end to end over a real socket: the guard's tick lowers it in the models document,
 * the next decisions are drawn and logged at it, the model list shows it, and a manual activation or a revert (a new
 * segment of the guard's evidence) restores the strategy's own share.
 */
const world = loadWorld('support-basic');
const rng = mulberry32(77);
let sv: LearnerWorldServer;
let rt: Running;
let learner: LearnerModule;
let http: LearnerWorldServer['http'];
const BASE = 0.3;

/** One decision (the helper's armRound), with its id left out. */
const round = async (learned: number, control: number) => ({ meta: await sv.armRound(learned, control) });
const settle = () => sv.settle();
const serveVersion = (manual: boolean) => sv.serveVersion(manual);

before(async () => {
  sv = await startLearnerWorld(testPrefix('learner-control-share'), world, { controlShare: BASE, gate: false, trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0 }, rng);
  ({ rt, learner, http } = sv);
});
after(async () => {
  await sv?.close();
});

describe('the control share while the learned arm leads', () => {
  it('is lowered by the guard’s tick, drawn and logged at the new level, listed, and restored by a new segment', async () => {
    const v1 = await serveVersion(false);
    for (let i = 0; i < 400; i++) await round(0.9, 0.2);
    await settle();
    const check = await learner.guard.check('sim');
    assert.equal(check?.verdict.status, 'ok');
    const doc = learner.training.registry.doc('sim')!;
    const share = doc.guard?.controlShare;
    assert.ok(share !== undefined && share < BASE, `the guard lowered the share (${share}; diff ${check?.verdict.diff})`);
    // The level the rule gives for the guard's stored evidence (the same tick's).
    const stored = JSON.parse((await rt.core.redis.get(rt.core.keys.pipeline('sim', 'learner', 'guard')))!) as { total: Parameters<typeof adaptiveControlShare>[1] };
    assert.equal(share, adaptiveControlShare(BASE, stored.total));

    // The next decisions draw and log the control arm at that share.
    let control = 0;
    const n = 300;
    for (let i = 0; i < n; i++) {
      const { meta } = await round(0.9, 0.2);
      assert.equal(meta.m, v1);
      assert.equal(meta.x!.s, share, 'logged at the guard’s share');
      control += meta.x!.a;
    }
    // At 0.3 about 90 of 300 would be control decisions; at the lowered share (≤ 0.0375) at most about 11.
    assert.ok(control < 45, `${control} control decisions of ${n} at share ${share}`);
    const listed = (await http('GET', '/v1/models/sim')).json;
    assert.equal(listed.runtimeGuard.controlShare, share);

    // An automatic activation keeps it (the guard's segment goes on); a manual one starts a new segment at the full share.
    const v2 = await serveVersion(false);
    assert.equal(learner.training.registry.doc('sim')!.guard?.controlShare, share);
    assert.equal((await round(0.9, 0.2)).meta.x!.s, share);
    const v3 = await serveVersion(true);
    assert.ok(v3 > v2);
    assert.equal(learner.training.registry.doc('sim')!.guard?.controlShare, undefined);
    assert.equal((await round(0.9, 0.2)).meta.x!.s, BASE);
    assert.equal((await http('GET', '/v1/models/sim')).json.runtimeGuard?.controlShare ?? BASE, BASE);

    // Lowered again on the new segment, then a revert (the guard's, as guard-monitor makes it) restores the full share.
    for (let i = 0; i < 400; i++) await round(0.9, 0.2);
    await settle();
    await learner.guard.check('sim');
    assert.ok((learner.training.registry.doc('sim')!.guard?.controlShare ?? BASE) < BASE, 'lowered on the new segment');
    const reverted = await learner.training.registry.revert('sim', { reason: 'guard', from: v3, to: 0, at: Date.now(), diff: -0.1, ci: [-0.2, -0.01], learned: { n: 1, mean: 0 }, control: { n: 1, mean: 0, strategy: '@uniform' } }, 0);
    assert.ok(reverted);
    assert.equal(learner.training.registry.doc('sim')!.guard?.controlShare, undefined);
    const after = await round(0.9, 0.2);
    assert.deepEqual([after.meta.m, after.meta.x!.s], [0, BASE], 'the safe start at the full share');
  });
});
