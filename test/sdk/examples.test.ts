import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApportionClient } from '@apportion/sdk';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';
import { nodeEntry } from '../helpers/cli.js';

/**
 * The SDK examples against a server, as `APPORTION_URL=… node --import tsx examples/<file>.ts` runs them: the server
 * loads its example pipeline on first start (experiments/example-pipeline.json), as `npm start` does.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('sdk-examples');
const server = serveDuring(prefix, { PORT: '0', APPORTION_SEED_EXAMPLES: 'true' });
const run = promisify(execFile);

/** Runs an example; a failure (or a process still running after 60 s: a hang, not a timing) fails the test. */
const example = (file: string, env: Record<string, string>) =>
  run(process.execPath, nodeEntry(file), { cwd: ROOT, env: { ...process.env, APPORTION_URL: server.rt.url!, ...env }, timeout: 60_000 }).then((r) => r.stdout);

const line = (stdout: string, label: string) => {
  const found = stdout.split('\n').find((l) => l.startsWith(`${label}: `));
  assert.ok(found, `the example prints "${label}"`);
  return JSON.parse(found.slice(label.length + 2)) as Record<string, unknown>;
};

describe('examples/ai-sdk.ts with APPORTION_URL', () => {
  it('runs on the server’s default example pipeline (support-triage, five agents): outcome accepted, spans sent', async () => {
    const names = (JSON.parse(readFileSync(`${ROOT}/experiments/example-pipeline.json`, 'utf8')) as { pipelines: { id: string; agents: { name: string }[] }[] }).pipelines
      .find((p) => p.id === 'support-triage')!
      .agents.map((a) => a.name);
    const stdout = await example('examples/ai-sdk.ts', {});
    assert.match(stdout, new RegExp(`^${names[0]}: `, 'm'), 'the research step ran as the pipeline’s first agent');
    assert.match(stdout, new RegExp(`^${names[1]}: `, 'm'), 'the answer as its second');
    const snapshot = JSON.parse(stdout.split('\n').find((l) => l.startsWith('{"ceiling"'))!) as { agents: { name: string }[] };
    assert.deepEqual(snapshot.agents.map((a) => a.name), names, 'the controller holds every agent of the allocation');
    assert.equal(line(stdout, 'outcome').accepted, true);
    assert.equal(line(stdout, 'spans sent').accepted, 4, 'two agent spans, two llm spans');
  });

  it('runs on any pipeline: the README’s research pipeline, with its researcher and writer', async () => {
    const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
    const body = /curl -sX PUT localhost:3000\/v1\/pipelines\/research -H 'content-type: application\/json' -d '([^']*)'/.exec(readme)![1]!;
    await new ApportionClient({ url: server.rt.url!, timeoutMs: 60_000 }).request('PUT', '/v1/pipelines/research', JSON.parse(body));
    const stdout = await example('examples/ai-sdk.ts', { APPORTION_PIPELINE: 'research' });
    assert.match(stdout, /^researcher: /m);
    assert.match(stdout, /^writer: /m);
    assert.equal(line(stdout, 'outcome').accepted, true);
    assert.equal(line(stdout, 'spans sent').accepted, 4);
  });
});
