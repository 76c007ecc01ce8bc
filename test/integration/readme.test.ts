import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { holds, quotedValues, readmeCommands } from '../helpers/readme.js';

/**
 * Runs the README's commands as the README writes them, in order, against a real server on a socket: every
 * command of the `sh` blocks from "Walk-through" to "Configuration", and the `npx apportion …` commands named in
 * the prose there. The command text is not changed; only the environment points it at the test server (a
 * `.curlrc` maps localhost:3000 to the server's port and prints the status code; APPORTION_URL for the CLI).
 * The README's placeholders (`<from the allocation>`, `<id>`) are filled from the previous answers, and every
 * value the README quotes after `# →` is checked against the answer.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const prefix = testPrefix('readme');

/** Commands too slow for a test run, each with the reason (the list must match the README exactly). */
const NOT_RUN: Record<string, string> = {
  'npx apportion simulate drift --local --outcomes 20000': '20,000 simulated outcomes with retraining take many minutes; test/learner covers simulate',
};

let rt: Running;
let env: NodeJS.ProcessEnv;
let curlHome: string;

before(async () => {
  // A first start: the example pipeline is loaded, as the README says.
  rt = await startTest(prefix, { listen: true }, { APPORTION_SEED_EXAMPLES: 'true', APPORTION_MODELS_DIR: mkdtempSync(path.join(tmpdir(), 'apportion-readme-models-')) });
  const port = new URL(rt.url!).port;
  curlHome = mkdtempSync(path.join(tmpdir(), 'apportion-readme-curl-'));
  writeFileSync(path.join(curlHome, '.curlrc'), `connect-to = "localhost:3000:127.0.0.1:${port}"\nwrite-out = "\\n%{http_code}"\n`);
  env = { ...process.env, CURL_HOME: curlHome, APPORTION_URL: rt.url!, LOG_LEVEL: 'warn', APPORTION_KEY_PREFIX: prefix };
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
  if (curlHome) rmSync(curlHome, { recursive: true, force: true });
  rmSync(path.join(ROOT, 'support.dsjson'), { force: true });
});

function sh(cmd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', cmd], { cwd: ROOT, env, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const commands = readmeCommands(README);
/** A command without its trailing `# comment`. */
const bare = (t: string) => t.replace(/\s+#[^'\n]*$/, '').trim();

describe('README, run as written', () => {
  it('finds the commands of every walk-through section', () => {
    const texts = commands.map((c) => c.text);
    for (const must of ['curl -sX PUT localhost:3000/v1/pipelines/research', 'curl -sX POST localhost:3000/v1/experiments/static-vs-estimate/start', 'curl -s localhost:3000/v1/sessions/s1/cost-tree', 'npm run demo', 'npx apportion budgets balances', 'npx apportion experiments apply'])
      assert.ok(texts.some((t) => t.startsWith(must)), `no README command starts with ${must}`);
    for (const skipped of Object.keys(NOT_RUN)) assert.ok(texts.map(bare).includes(skipped), `NOT_RUN names "${skipped}", which the README no longer has`);
  });

  const answers: unknown[] = [];
  for (const c of commands) {
    const title = c.text.replace(/\s+/g, ' ').slice(0, 110);
    if (NOT_RUN[bare(c.text)]) continue;
    it(title, async () => {
      const last = <T>(f: (a: Record<string, unknown>) => T | undefined) => {
        for (let i = answers.length - 1; i >= 0; i--) {
          const a = answers[i];
          if (a && typeof a === 'object' && !Array.isArray(a)) {
            const v = f(a as Record<string, unknown>);
            if (v !== undefined) return v;
          }
        }
        return undefined;
      };
      let text = c.text;
      if (text.includes('<from the allocation>')) text = text.replace('<from the allocation>', last((a) => (typeof a.decisionId === 'string' ? a.decisionId : undefined))!);
      if (text.includes('/v1/reservations/<id>')) text = text.replace('<id>', last((a) => (typeof a.id === 'string' && a.state === 'ACTIVE' ? a.id : undefined))!);
      if (text.includes('keys revoke <id>')) text = text.replace('<id>', last((a) => (typeof a.id === 'string' && typeof a.key === 'string' ? a.id : undefined))!);
      const expected = c.expect ? quotedValues(c.expect) : [];
      const isCurl = text.startsWith('curl');
      const isGet = isCurl && !/-sX (PUT|POST|DELETE)|\s-d\s/.test(text);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const r = await sh(text);
        let body = r.stdout;
        let status: number | undefined;
        if (isCurl) {
          const cut = body.lastIndexOf('\n');
          status = Number(body.slice(cut + 1));
          body = body.slice(0, cut);
        }
        let answer: unknown;
        try {
          answer = JSON.parse(body);
        } catch {
          answer = undefined;
        }
        const missing = expected.filter(([k, v]) => !holds(answer, k, v));
        // A GET may run before the outcome it reads was applied (outcomes are processed asynchronously).
        if (isGet && missing.length > 0 && Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, 250));
          continue;
        }
        answers.push(answer);
        assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr}${r.stdout}`);
        if (isCurl) assert.ok(status! >= 200 && status! < 300, `HTTP ${status}: ${body}`);
        assert.deepEqual(missing, [], `the README says the answer holds ${JSON.stringify(missing)}; it was ${body.slice(0, 2000)}`);
        break;
      }
    });
  }
});
