import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApportionClient } from '@apportion/sdk';
import { eventually, testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

/**
 * The SDK snippets of the docs, run as written: docs/costs.md's "SDK" snippet in a plain `node` process against a
 * server holding the README's `research` pipeline (registered with the README's own request body).
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const read = (f: string) => readFileSync(`${ROOT}/${f}`, 'utf8');
const prefix = testPrefix('sdk-docs');
const server = serveDuring(prefix, { PORT: '0' });
const run = promisify(execFile);

/** The first ```ts block of a section (from its heading to the next `## `). */
function snippet(doc: string, heading: string): string {
  const from = doc.indexOf(`\n${heading}\n`);
  assert.ok(from >= 0, `the doc has a "${heading}" section`);
  const section = doc.slice(from + 1, doc.indexOf('\n## ', from + 1));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(block, `"${heading}" has a ts snippet`);
  return block[1]!;
}

/** The JSON body of the README's `curl -sX PUT localhost:3000<path> … -d '…'`. */
function readmeBody(path: string): unknown {
  const m = new RegExp(`curl -sX PUT localhost:3000${path} -H 'content-type: application/json' -d '([^']*)'`).exec(read('README.md'));
  assert.ok(m, `the README registers ${path}`);
  return JSON.parse(m[1]!);
}

/** What the snippet leaves to the reader: the address, the key, the session and the agents' own work. */
const PRELUDE = `
const url = process.env.APPORTION_URL;
const CLIENT_KEY = undefined;
const sessionId = process.env.SESSION;
async function research() { spans.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 800, output: 200 } }); }
async function write() { spans.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 500, output: 400 } }); }
`;

async function costTree(session: string) {
  const res = await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`);
  return res.status === 404 ? undefined : ((await res.json()) as { total: { calls: number; tokens: { input: number; output: number } }; nodes: { agent: string; kind: string; decisionId?: string }[] });
}

describe('docs/costs.md, "SDK": the snippet runs as written against the README’s research pipeline', () => {
  const code = snippet(read('docs/costs.md'), '## SDK');
  let outcomes = 0;

  for (const closing of [true, false]) {
    it(closing ? 'as written: the outcome is accepted and the session reaches the server' : 'without its close(): the spans still reach the server at exit', async () => {
      await new ApportionClient({ url: server.rt.url!, timeoutMs: 60_000 }).request('PUT', '/v1/pipelines/research', readmeBody('/v1/pipelines/research'));
      const program = closing ? code : code.replace(/^await spans\.close\(\);.*$/m, '');
      if (!closing) assert.notEqual(program, code, 'the snippet closes its recorder');
      const session = `costs-snippet-${closing ? 'closed' : 'open'}`;
      // A refused outcome (e.g. 400 UNKNOWN_AGENT) fails the process, and so this call; so does a process still
      // running after 30 s (a bound for a hang, not a timing).
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `${PRELUDE}${program}\nconsole.log(JSON.stringify(alloc));`], {
        cwd: ROOT,
        env: { ...process.env, APPORTION_URL: server.rt.url!, SESSION: session },
        timeout: 30_000,
      });
      const { decisionId, strategy } = JSON.parse(stdout) as { decisionId: string; strategy: string };
      const tree = await costTree(session);
      assert.ok(tree, 'the session reached the server');
      assert.deepEqual(tree.nodes.map((n) => `${n.agent} ${n.kind}`).sort(), ['planner agent', 'planner llm', 'researcher agent', 'researcher llm', 'writer agent', 'writer llm']);
      assert.ok(tree.nodes.every((n) => n.decisionId === decisionId), 'every span carries the decision');
      assert.deepEqual(tree.total.tokens, { ...tree.total.tokens, input: 2500, output: 900 });
      // The outcome carried the agents' usage (the outcome worker folds it into the strategy's statistics).
      outcomes++;
      const stats = await eventually(async () => {
        const res = await fetch(`${server.rt.url}/v1/strategies/${strategy}/stats?pipeline=research`);
        const body = (await res.json()) as { count: number; agents: Record<string, { meanConsumed: number }> };
        return body.count >= outcomes && body;
      });
      assert.deepEqual(Object.fromEntries(Object.entries(stats.agents).map(([a, v]) => [a, v.meanConsumed])), { planner: 1500, researcher: 1000, writer: 900 });
    });
  }
});

describe('docs/sdk.md', () => {
  it('reads the local-mode counters from the promise apportion.stats() returns', () => {
    const doc = read('docs/sdk.md');
    const bare = [...doc.matchAll(/`[^`]*\bstats\(\)[^`]*`/g)].map((m) => m[0]).filter((c) => !/\(await apportion\.stats\(\)\)|evaluator\(\)\)?\.stats\(\)/.test(c));
    assert.deepEqual(bare, [], 'Apportion.stats() is async: (await apportion.stats())…');
  });
});
