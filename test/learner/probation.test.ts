import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CONTROL_SHARE_DEFAULTS, GUARD_DEFAULTS } from '../../src/learner/guard.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadWorld } from '../../src/learner/sim/world.js';
import { testPrefix } from '../helpers/env.js';
import { startLearnerWorld, type LearnerWorldServer } from '../helpers/learner-world.js';

/**
 * Probation (docs/learner.md, "Probation: a larger control arm until the serving version has shown it is not worse"),
 * end to end over a real socket with real Redis and the service's own tick running: a version that starts serving gets
 * the control arm at `probationShare` (0.2) instead of `controlShare` (0.05), drawn and logged at it and listed,
 * until it has shown that it is no worse than the control by more than `probationMargin`; a version that is worse stays
 * on probation and the guard reverts it on the control outcomes a 5 % arm would take four times as long to gather; a
 * version that leads leaves probation; bad values are 400s naming the field.
 */
const world = loadWorld('support-basic');
const rng = mulberry32(91);
let sv: LearnerWorldServer;
let learner: LearnerModule;
let http: LearnerWorldServer['http'];
const BASE = GUARD_DEFAULTS.controlShare;
const RAISED = CONTROL_SHARE_DEFAULTS.max;

/** What the service's tick does, now: every reported outcome applied, moved to the buffer, and the guard's check. */
async function tick(): Promise<void> {
  await sv.settle();
  await learner.guard.check('sim');
}

before(async () => {
  // The strategy's control share and probation are the defaults: nothing about them is set.
  sv = await startLearnerWorld(testPrefix('learner-probation'), world, { gate: false, trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0 }, rng);
  ({ learner, http } = sv);
});
after(async () => {
  await sv?.close();
});

describe('probation: a larger control arm until the serving version has shown it is not worse', () => {
  it('refuses a probation share or margin out of range or of the wrong type, naming the field', async () => {
    for (const [field, bad] of [['probationShare', 0.6], ['probationShare', -0.1], ['probationShare', 'high'], ['probationMargin', 1.5], ['probationMargin', -0.01], ['probationMargin', null]] as const) {
      const r = await http('PUT', '/v1/strategies/bad', { pipeline: 'sim', kind: 'learned', params: { [field]: bad } });
      assert.equal(r.status, 400, `${field} ${String(bad)}: ${r.text}`);
      assert.match(r.text, new RegExp(field));
    }
    assert.equal((await http('GET', '/v1/strategies/bad')).status, 404, 'nothing half-written');
  });

  it('serves a new version with the raised control share, keeps it while the version is worse, and the guard reverts it within the decisions a 5 % arm could not', async () => {
    const v1 = await sv.serveVersion(true);
    await tick();
    assert.equal(learner.training.registry.doc('sim')!.guard?.controlShare, RAISED, 'a new segment starts on probation');
    assert.equal((await http('GET', '/v1/models/sim')).json.runtimeGuard.controlShare, RAISED, 'listed');
    // The learned arm earns 0.5, the control 0.7: the version is worse, and stays on probation until it is reverted.
    let served = 0;
    let control = 0;
    for (; served < 1200; served++) {
      const meta = await sv.armRound(0.5, 0.7);
      if (meta.m !== v1) break;
      assert.equal(meta.x!.s, RAISED, 'drawn and logged at the probation share');
      control += meta.x!.a;
      if ((served + 1) % 25 === 0) await tick();
    }
    const doc = learner.training.registry.doc('sim')!;
    assert.equal(doc.active, 0, `reverted to the control strategy after ${served} decisions`);
    assert.equal(doc.guard?.reverts[0]?.from, v1);
    // The guard needs 30 control outcomes: at 5 % that is about 600 decisions; on probation about 150.
    assert.ok(served < 450, `version ${v1} served ${served} decisions (${control} control) before the revert`);
    assert.ok(control >= GUARD_DEFAULTS.minPerArm, `${control} control outcomes`);
    const safe = await sv.armRound(0.5, 0.7);
    assert.deepEqual([safe.m, safe.x!.s], [0, BASE], 'the safe start at the strategy’s share');
  });

  it('lets a version that leads leave probation: its share falls to the usual level and below', async () => {
    const v2 = await sv.serveVersion(true);
    await tick();
    assert.equal(learner.training.registry.doc('sim')!.guard?.controlShare, RAISED);
    let control = 0;
    for (let i = 0; i < 400 && control < 2 * GUARD_DEFAULTS.minPerArm; i++) {
      const meta = await sv.armRound(0.9, 0.2);
      assert.equal(meta.m, v2);
      control += meta.x!.a;
    }
    await tick();
    const share = learner.training.registry.doc('sim')!.guard?.controlShare;
    // A lead of 0.7: off probation, and lowered (guard.ts adaptiveControlShare) to the floor.
    assert.ok(share !== undefined && share < BASE, `share ${share} after ${control} control outcomes`);
    assert.equal((await http('GET', '/v1/models/sim')).json.runtimeGuard.controlShare, share);
    const next = await sv.armRound(0.9, 0.2);
    assert.equal(next.x!.s, share, 'the next decisions are drawn at it');
  });
});
