import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { featureUse, type FeatureSpec } from '../../src/learner/features.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { TrainingService } from '../../src/learner/training.js';
import type { Running } from '../../src/server.js';
import { decisionsOf, dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

describe('featureUse: what the logged requests carried per declared feature', () => {
  const specs: FeatureSpec[] = [
    { name: 'size', type: 'numeric' },
    { name: 'turns', type: 'numeric', transform: 'log' },
    { name: 'task', type: 'categorical', values: ['a', 'b', '1'] },
    { name: 'user', type: 'categorical', hashBuckets: 16 },
    { name: 'doc', type: 'tokens' },
  ];

  it('counts present values and the ones the encoder cannot read, with the first as an example', () => {
    const use = featureUse(specs, [
      { size: 12, turns: true, task: 'a', user: 'u1', docTokens: 300 },
      { size: '12', turns: null, task: 'c', user: 7, docTokens: '300' },
      { size: 'big', task: 1, docText: 'hello' },
      { size: Infinity as unknown as number, task: 'b' },
      {},
    ]);
    assert.deepEqual(use.size, { present: 4, unusable: 3, example: '"12"' });
    // A boolean counts as 0/1, null as absent.
    assert.deepEqual(use.turns, { present: 1, unusable: 0 });
    // A categorical value is compared as its string: 1 is "1"; "c" is none of the values.
    assert.deepEqual(use.task, { present: 4, unusable: 1, example: '"c"' });
    // A hashed categorical reads any value.
    assert.deepEqual(use.user, { present: 2, unusable: 0 });
    // A tokens feature is read from <name>Tokens (the service counts <name>Text into it before logging).
    assert.deepEqual(use.doc, { present: 2, unusable: 1, example: '"300"' });
  });

  it('cuts a long example to 40 characters', () => {
    const use = featureUse([{ name: 'x', type: 'numeric' }], [{ x: 'y'.repeat(100) }]);
    assert.equal(use.x!.example!.length, 40);
  });
});

/**
 * Over a real socket: a client that sends a numeric feature as a string on a third of its requests trains a version
 * that lists the feature under `unusableFeatures` with the exact counts, and a version trained on readable values
 * lists none.
 */
const prefix = testPrefix('learner-feature-use');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
let rt: Running;
const http = jsonHttp(() => rt.url!);
const N = 120;

before(async () => {
  rt = await startTest(prefix, { listen: true }, { PORT: '0', APPORTION_MODELS_DIR: modelsDir });
  const pipeline = { defaultTotalTokens: 3000, agents: [{ name: 'a' }, { name: 'b' }] };
  for (const id of ['strings', 'numbers']) {
    assert.equal((await http('PUT', `/v1/pipelines/${id}`, pipeline)).status, 200);
    assert.equal((await http('PUT', `/v1/pipelines/${id}/features`, { features: [{ name: 'size', type: 'numeric', transform: 'log' }, { name: 'task', type: 'categorical', values: ['x', 'y'] }] })).status, 200);
    const put = await http('PUT', `/v1/strategies/${id}-learn`, { pipeline: id, kind: 'learned', params: { gate: false, trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
    assert.equal(put.status, 200, JSON.stringify(put.json));
  }
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('a version lists the features whose values it could not read (real socket)', () => {
  it('counts a numeric feature sent as a string, and nothing where every value is readable', async () => {
    const rng = mulberry32(3);
    for (const id of ['strings', 'numbers']) {
      for (let i = 0; i < N; i++) {
        const size = Math.round(1 + rng() * 5000);
        const features = { size: id === 'strings' && i % 3 === 0 ? String(size) : size, task: i % 2 ? 'x' : 'y' };
        const r = await http('POST', '/v1/allocations', { pipeline: id, strategy: `${id}-learn`, features });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.equal((await http('POST', '/v1/outcomes', { decisionId: r.json.decisionId, quality: 0.5 + 0.3 * rng() })).status, 202);
      }
    }
    const training = new TrainingService(rt.core, decisionsOf(rt), {}, false);
    for (const id of ['strings', 'numbers']) {
      await eventually(async () => (await training.ingest(id)) && (await training.events(id, 1000)).length >= N, 300_000, 250);
      const res = await training.train(id);
      assert.equal(res.trained, true, res.reason);
    }
    const strings = (await http('GET', '/v1/models/strings')).json as { versions: { version: number; metrics: { buffer: number }; unusableFeatures?: Record<string, { present: number; unusable: number; example?: string }> }[] };
    const v = strings.versions[0]!;
    assert.equal(v.metrics.buffer, N);
    assert.deepEqual(Object.keys(v.unusableFeatures ?? {}), ['size'], 'only the feature sent as a string is listed');
    assert.equal(v.unusableFeatures!.size!.present, N);
    assert.equal(v.unusableFeatures!.size!.unusable, N / 3);
    assert.match(v.unusableFeatures!.size!.example!, /^"\d+"$/);
    const numbers = (await http('GET', '/v1/models/numbers')).json as { versions: { unusableFeatures?: unknown }[] };
    assert.equal(numbers.versions[0]!.unusableFeatures, undefined);
  });
});
