import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { compileFeatures } from '../../src/learner/features.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { initialWeights, serializeWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadWorld, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import { execDone, schedOf, trainerLadder, trainerStatus, type TrainJobInput } from '../../src/learner/train-process.js';
import { TrainingService } from '../../src/learner/training.js';
import type { Running } from '../../src/server.js';
import { decisionsOf, dropPrefix, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';
import { randomSplitEvents } from '../helpers/logged-events.js';

/**
 * Priority escalation of the trainer child (train-process.ts), with real processes and real Redis. A retrain job
 * that cannot progress at a low priority is made with the test hook `holdWhile` (the child waits while /proc says it
 * runs under SCHED_IDLE or at nice 19): without escalation it would never finish (and the test would time out). With
 * a 50 ms bound the job's trainer rises to SCHED_OTHER at nice 19, then to the top level (nice 10 under a test
 * process at nice 0), read back from /proc/<pid>/stat; the job trains once and its version is saved once. Both ways
 * of rising are covered: a new child per step (what a process without CAP_SYS_NICE must do: forced here, and for real
 * in a process run without the capability) and in place where permitted. The next job starts at the lowest level again.
 */
const prefix = testPrefix('learner-trainprio');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-trainprio-models-'));
const world = loadWorld('support-basic');
const PIPELINE = 'prio';
let rt: Running;
const http = jsonHttp(() => rt.url!);
const HOLD = { idle: true, niceAtLeast: 19 } as const;

const models = async () => (await http('GET', `/v1/models/${PIPELINE}`)).json;
const metric = async (to: string, how: string): Promise<number> => {
  const text = await rt.core.metrics.registry.metrics();
  const m = new RegExp(`^apportion_learner_trainer_escalations_total\\{to="${to}",how="${how}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
};
/**
 * Whether process `pid` has been killed: it is gone, a zombie, or SIGKILL is pending for it (/proc/<pid>/status). A
 * killed child that ran at SCHED_IDLE on a host whose cores are busy may take many seconds to be scheduled and exit;
 * a pending SIGKILL cannot be ignored or caught, so it is as good as gone.
 */
const killed = (pid: number): boolean => {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return true;
  }
  if (/^State:\s*[ZX]/m.test(status)) return true;
  const pending = /^ShdPnd:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0';
  return (BigInt(`0x${pending}`) & (1n << 8n)) !== 0n; // signal 9 is bit 8
};

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_MODELS_DIR: modelsDir });
  assert.equal((await http('PUT', `/v1/pipelines/${PIPELINE}`, worldPipeline(world))).status, 200);
  assert.equal((await http('PUT', `/v1/pipelines/${PIPELINE}/features`, worldFeatures(world))).status, 200);
  const s = await http('PUT', '/v1/strategies/prio-learned', { pipeline: PIPELINE, kind: 'learned', params: { gate: false, trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
  assert.equal(s.status, 200, s.text);
  // 300 logged events of the simulated world, as ingest pushes them (newest first).
  const items = randomSplitEvents(world, 300, 9, 'prio-learned');
  await rt.core.redis.lpush(learnerKeys(rt.core.keys, PIPELINE).buffer, ...items);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('trainer priority escalation', { timeout: 240_000 }, () => {
  const ladder = trainerLadder();
  const top = ladder.at(-1)!;
  const name = (l: { policy: string; nice: number }) => `${l.policy}-nice${l.nice}`;

  it('the ladder: SCHED_IDLE at nice 19 (where chrt works), SCHED_OTHER at nice 19, SCHED_OTHER below 19 but above this process', () => {
    assert.deepEqual(ladder.slice(-2).map((l) => l.policy), ['other', 'other']);
    assert.equal(ladder.at(-2)!.nice, 19);
    assert.ok(top.nice < 19 && top.nice > (schedOf(process.pid)?.nice ?? 0), `top level nice ${top.nice}`);
    if (process.platform === 'linux') assert.equal(ladder[0]!.policy, 'idle', 'chrt -i 0 works on this Linux host');
  });

  it('a child still in its wrappers (before they exec node) is not raised in place: execDone tells it apart', async () => {
    // What the trainer's wrappers are before they exec node: another program under the same pid.
    const wrapper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => wrapper.once('spawn', resolve));
      assert.equal(execDone(wrapper.pid!), process.platform !== 'linux', 'a process running another program');
    } finally {
      wrapper.kill('SIGKILL');
    }
    assert.equal(execDone(process.pid), true, 'a process running node');
  });

  it('a job that cannot progress at low priority restarts in a new child per step and finishes at the top level; trained and saved once', async () => {
    // A first job (a 50 ms bound: on a busy host an idle-class job may get no CPU at all): the trainer child exists.
    const warm = new TrainingService(rt.core, decisionsOf(rt), {}, true, { afterMs: 50 });
    assert.equal((await warm.train(PIPELINE)).trained, true);
    const first = trainerStatus()!;
    const before = await models();
    const counted = await Promise.all(ladder.slice(1).map((l) => metric(name(l), 'new-process')));

    const escalating = new TrainingService(rt.core, decisionsOf(rt), {}, true, { afterMs: 50, how: 'restart', holdWhile: HOLD });
    const res = await escalating.train(PIPELINE);
    assert.equal(res.trained, true, res.reason);
    const now = trainerStatus()!;
    assert.notEqual(now.pid, first.pid, 'the job finished in a new child');
    // The first child was killed when the job left it (not merely left running): checked now, with no wait.
    assert.ok(killed(first.pid), `the first child (pid ${first.pid}) was killed`);
    // What /proc says of the child that ran the job (it stays there until the next job lowers it).
    assert.deepEqual(now.sched, { policy: 'other', nice: top.nice });
    assert.equal(now.level.level, top.level);
    const after = await models();
    assert.equal(after.versions.length, before.versions.length + 1, 'one new version: the job was applied once');
    assert.equal(after.active, res.model!.version);
    // The job started at the lowest level (the warm job's child was lowered first) and took one step per level, each listed and counted.
    assert.equal(after.trainer.escalations, before.trainer.escalations + ladder.length - 1);
    assert.equal(after.trainer.lastEscalation.how, 'new-process');
    assert.equal(after.trainer.lastEscalation.policy, 'other');
    assert.equal(after.trainer.lastEscalation.nice, top.nice);
    assert.equal(after.trainer.lastEscalation.level, top.level);
    for (const [i, l] of ladder.slice(1).entries()) assert.equal(await metric(name(l), 'new-process'), counted[i]! + 1, name(l));
  });

  it('auto: raised in place where this process may (else in a new child); the job starts at the lowest level again', async () => {
    const before = await models();
    const pid = trainerStatus()!.pid;
    const counted = { 'in-place': await metric(name(top), 'in-place'), 'new-process': await metric(name(top), 'new-process') };
    const escalating = new TrainingService(rt.core, decisionsOf(rt), {}, true, { afterMs: 50, holdWhile: HOLD });
    const res = await escalating.train(PIPELINE);
    assert.equal(res.trained, true, res.reason);
    const after = await models();
    assert.equal(after.versions.length, before.versions.length + 1);
    // Held at the lowest level again (the previous job left the child at the top): it had to climb every step.
    assert.equal(after.trainer.escalations, before.trainer.escalations + ladder.length - 1);
    const now = trainerStatus()!;
    assert.deepEqual(now.sched, { policy: 'other', nice: top.nice });
    const how = after.trainer.lastEscalation.how as 'in-place' | 'new-process';
    if (how === 'in-place') assert.equal(now.pid, pid, 'raised in place: the same child');
    else assert.notEqual(now.pid, pid);
    assert.equal(await metric(name(top), how), counted[how] + 1);
  });

  it('without CAP_SYS_NICE (a container default) the running child cannot be raised: each step is a new child, and the job finishes', async () => {
    const serving = await models();
    const features = worldFeatures(world).features;
    const input: TrainJobInput = {
      redisUrl: REDIS_URL,
      bufferKey: learnerKeys(rt.core.keys, PIPELINE).buffer,
      window: 300,
      features,
      agents: world.agents.map((a) => a.name),
      costWeight: 0,
      init: serializeWeights(initialWeights(compileFeatures(features).dim, world.agents.length, world.totalTokens, mulberry32(1))),
      seed: 1,
      holdWhile: HOLD,
    };
    const root = process.getuid?.() === 0;
    const node = [process.execPath, '--import', 'tsx', fileURLToPath(new URL('../fixtures/trainer-escalate.ts', import.meta.url)), '50'];
    // As root, drop CAP_SYS_NICE from the bounding and inheritable sets (what Docker's default capabilities are); otherwise this process is unprivileged already.
    const cmd = root ? ['setpriv', '--bounding-set=-sys_nice', '--inh-caps=-sys_nice', ...node] : node;
    // Spawned asynchronously: this process serves the model list meanwhile.
    const child = spawn(cmd[0]!, cmd.slice(1), { cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += String(d)));
    child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
    child.stdin.end(JSON.stringify(input));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    const r = { status: code, stdout, stderr };
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { trained: boolean; steps: { how: string; to: { nice: number; policy: string }; reason?: string }[]; status: { sched: { policy: string; nice: number } } };
    assert.equal(out.trained, true);
    assert.deepEqual(out.steps.map((s) => s.how), ladder.slice(1).map(() => 'new-process'), JSON.stringify(out.steps));
    assert.match(out.steps[0]!.reason ?? '', /not permitted|EPERM|EACCES|denied/i);
    assert.deepEqual(out.status.sched, { policy: 'other', nice: top.nice });
    assert.equal((await models()).versions.length, serving.versions.length, 'a job run outside the service saves nothing');
  });
});
