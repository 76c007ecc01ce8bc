import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { closedPort, runCli } from '../helpers/cli.js';

/**
 * `apportion budgets …` amounts, over the CLI entry point (a child process, as a user runs it): a refused amount is
 * named by its option or argument, with the value and why, exit 1, no stack trace, nothing sent.
 */
const prefix = testPrefix('budgets-cli');
let rt: Running;

const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { ...process.env, ...env });

before(async () => {
  rt = await startTest(prefix, { listen: true });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

/** Runs `cases` two at a time (each is a node process). */
async function all<T, R>(cases: readonly T[], f: (c: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < cases.length; i += 2) out.push(...(await Promise.all(cases.slice(i, i + 2).map(f))));
  return out;
}

describe('budgets CLI: a refused amount names its option or argument', () => {
  it('not a number, negative, fractional tokens, too many decimals, too large: the option or argument, the value and why; exit 1, no stack, nothing sent', async () => {
    const option = (flags: string, value: string) => `error: option '${flags}' argument '${value}' is invalid. `;
    const argument = (name: string, value: string) => `error: command-argument value '${value}' is invalid for argument '${name}'. `;
    const cases: readonly { args: string[]; head: string; why: RegExp }[] = [
      { args: ['set', 'tenant:x', 'ten'], head: argument('allocated', 'ten'), why: /It must be a dollar amount \(e\.g\. 50, \$12\.50, 0\.0004\)\.$/ },
      { args: ['set', 'tenant:x', '-1'], head: argument('allocated', '-1'), why: /It must not be negative\.$/ },
      { args: ['set', 'tenant:x', '2.5', '--unit', 'TOKENS'], head: argument('allocated', '2.5'), why: /It must be a non-negative integer \(tokens\)\.$/ },
      { args: ['set', 'tenant:x', '7.5', '--unit', 'USD_MICROCENTS'], head: argument('allocated', '7.5'), why: /It must be a non-negative integer \(micro-cents\)\.$/ },
      { args: ['set', 'tenant:x', '10', '--policy', 'ALLOW_WITH_OVERDRAFT', '--overdraft', 'abc'], head: option('--overdraft <amount>', 'abc'), why: /It must be a dollar amount/ },
      { args: ['set', 'tenant:x', '10', '--policy', 'ALLOW_WITH_OVERDRAFT', '--overdraft=-5'], head: option('--overdraft <amount>', '-5'), why: /It must not be negative\.$/ },
      { args: ['set', 'tenant:x', '10', '--unit', 'TOKENS', '--overdraft', '1.5'], head: option('--overdraft <amount>', '1.5'), why: /It must be a non-negative integer \(tokens\)\.$/ },
      { args: ['fund', 'tenant:x', '1e3'], head: argument('amount', '1e3'), why: /It must be a dollar amount/ },
      { args: ['fund', 'tenant:x', '0.123456789'], head: argument('amount', '0.123456789'), why: /It must have at most 8 decimals \(\$0\.00000001 is one micro-cent\)\.$/ },
      { args: ['debit', 'tenant:x', '-0.5'], head: argument('amount', '-0.5'), why: /It must not be negative\.$/ },
      { args: ['debit', 'tenant:x', '3.25', '--unit', 'TOKENS'], head: argument('amount', '3.25'), why: /It must be a non-negative integer \(tokens\)\.$/ },
      { args: ['fund', 'tenant:x', '99999999999999999999'], head: argument('amount', '99999999999999999999'), why: /It must be at most \$90,071,992\.54740991\.$/ },
      { args: ['fund', 'tenant:x', '99999999999999999999', '--unit', 'TOKENS'], head: argument('amount', '99999999999999999999'), why: /It must be at most 9,007,199,254,740,991 \(tokens\)\.$/ },
    ];
    // Nothing listens at this URL: an amount that slipped through would fail with "cannot reach the Apportion API".
    const env = { APPORTION_URL: `http://127.0.0.1:${await closedPort()}` };
    const results = await all(cases, async (c) => ({ c, r: await cli(['budgets', ...c.args], env) }));
    for (const { c, r } of results) {
      const what = `budgets ${c.args.join(' ')}: ${r.stderr}`;
      assert.equal(r.code, 1, what);
      const line = r.stderr.trim();
      assert.ok(line.startsWith(c.head), `${what}\nexpected to start with: ${c.head}`);
      assert.match(line, c.why, what);
      assert.doesNotMatch(r.stderr, /\n\s+at |cannot reach/, what);
      assert.equal(line.split('\n').length, 1, what);
      assert.equal(r.stdout, '', what);
    }
  });

  it('the same options take valid amounts (dollars, tokens, an overdraft, fund and debit)', async () => {
    const url = rt.url!;
    const ok = await all(
      [
        ['set', 'tenant:bc', '$12.50', '--policy', 'ALLOW_WITH_OVERDRAFT', '--overdraft', '0.5'],
        ['set', 'tenant:bc/workflow:w', '1,000', '--unit', 'TOKENS', '--policy', 'ALLOW_WITH_OVERDRAFT', '--overdraft', '0'],
      ],
      (args) => cli(['budgets', ...args, '--url', url]),
    );
    for (const r of ok) assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(ok[0]!.stdout) as { overdraftLimit: string }).overdraftLimit, '$0.50');
    for (const args of [['fund', 'tenant:bc', '2.25'], ['debit', 'tenant:bc', '0.00000001']]) {
      const r = await cli(['budgets', ...args, '--url', url]);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const b = await cli(['budgets', 'balances', 'tenant:bc', '--url', url]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /tenant:bc\s+USD\s+\$14\.75/);
    assert.match(b.stdout, /tenant:bc\/workflow:w\s+tokens\s+1,000/);
  });

  it('a refusal counted in micro-cents also says its amounts in dollars, unless the command works in micro-cents', async () => {
    const url = rt.url!;
    assert.equal((await cli(['budgets', 'set', 'tenant:rf', '10', '--url', url])).code, 0);
    const r = await cli(['budgets', 'debit', 'tenant:rf', '1000', '--url', url]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr.trim(), /^409 BUDGET_EXCEEDED: .*100000000000.*\(in dollars: requested \$1,000\.00, remaining \$10\.00\)$/);
    const raw = await cli(['budgets', 'debit', 'tenant:rf', '1000', '--micro-cents', '--url', url]);
    assert.equal(raw.code, 1, raw.stderr);
    assert.doesNotMatch(raw.stderr, /in dollars/);
    assert.equal((await cli(['budgets', 'debit', 'tenant:rf', '5', '--url', url])).code, 0);
    const used = await cli(['budgets', 'set', 'tenant:rf', '1', '--url', url]);
    assert.equal(used.code, 1, used.stderr);
    assert.match(used.stderr, /ALLOCATION_BELOW_USAGE: .*\(in dollars: used \$5\.00\)/);
  });
});

