import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command, InvalidArgumentError } from 'commander';
import fc from 'fast-check';
import { DOMAINS } from '../../src/cli/commands.js';
import { intArg, numberArg } from '../../src/config/cli-options.js';
import { checkRedisTarget } from '../../src/cli/preflight.js';
import { runDemo } from '../../src/console/demo.js';
import { ConfigError } from '../../src/config/env.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';
import { closedPort, runCli } from '../helpers/cli.js';

const prefix = testPrefix('cli');
let rt: Running;

const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { ...process.env, ...env });

before(async () => {
  rt = await startTest(prefix, { listen: true });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('CLI', () => {
  it('lists each domain command under the name and description its module registers', async () => {
    for (const d of DOMAINS) {
      const real = new Command('apportion');
      (await d.load())(real);
      assert.deepEqual(real.commands.map((c) => c.name()).sort(), d.commands.map(([n]) => n).sort());
      for (const [name, description] of d.commands) {
        const r = real.commands.find((c) => c.name() === name)!;
        // simulate's real description lists the worlds, which the lazy entry must not import to know.
        if (name !== 'simulate') assert.equal(description, r.description(), name);
      }
    }
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    for (const d of DOMAINS) for (const [name] of d.commands) assert.match(help.stdout, new RegExp(`\\n  ${name}\\b`));
  });

  it("shows a domain command's real options", async () => {
    const r = await cli(['budgets', 'balances', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--micro-cents/);
  });

  it('names the server URL when the server is down', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const r = await cli(['budgets', 'balances', 'tenant:acme', '--url', url]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`cannot reach the Apportion API at ${url}`), r.stderr);
    assert.match(r.stderr, /APPORTION_URL/);
  });

  it('names REDIS_URL and how to start Redis when Redis is missing', async () => {
    const r = await cli(['serve'], { REDIS_URL: `redis://:hunter2@127.0.0.1:${await closedPort()}`, PORT: '0' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ \(REDIS_URL\)/);
    assert.match(r.stderr, /redis-server/);
    assert.doesNotMatch(r.stderr, /hunter2/);
  });

  it("pings each cluster seed node at its own port, also when REDIS_URL names no host (it gives only credentials and TLS there)", async () => {
    const live = new URL(REDIS_URL).host;
    const down = `127.0.0.1:${await closedPort()}`;
    for (const url of ['redis://', REDIS_URL]) {
      assert.equal(await checkRedisTarget(url, [live]), undefined, url);
      const problem = await checkRedisTarget(url, [down]);
      assert.ok(problem?.includes(down), `${url}: ${problem}`);
      assert.equal(await checkRedisTarget(url, [down, live]), undefined, `${url}: the second seed answers`);
    }
  });

  describe('a listener that cannot start names the variable to change, in one line, without a stack', () => {
    const startPrefix = testPrefix('cli-listen');
    after(() => dropPrefix(startPrefix));
    const ADMIN = 'cli-listen-admin-key-0123456789';
    const env = { APPORTION_KEY_PREFIX: startPrefix, APPORTION_SEED_EXAMPLES: 'false', REDIS_URL, LOG_LEVEL: 'info' };
    /** A port held by another listener for the duration of `fn`. */
    async function withPortTaken<T>(fn: (port: number) => Promise<T>): Promise<T> {
      const srv = createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      try {
        return await fn((srv.address() as { port: number }).port);
      } finally {
        await new Promise((r) => srv.close(r));
      }
    }
    const oneLine = (r: { stdout: string; stderr: string }, variable: string) => {
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`^Invalid configuration: ${variable} `));
      for (const out of [r.stdout, r.stderr]) assert.doesNotMatch(out, /\n\s+at |"stack"/, 'no stack trace');
      return lines[0]!;
    };

    it('PORT in use (EADDRINUSE): the port, and how to pick another; exit 2', async () => {
      await withPortTaken(async (port) => {
        const r = await cli(['api'], { ...env, PORT: String(port) });
        assert.equal(r.code, 2, r.stderr);
        const line = oneLine(r, 'PORT');
        assert.ok(line.includes(`${port} is already in use`), line);
        assert.match(line, /set PORT to a free port/);
      });
    });

    it('HOST not of this machine (EADDRNOTAVAIL), or malformed (refused before Redis): exit 2', async () => {
      const notHere = await cli(['api'], { ...env, PORT: '0', APPORTION_ADMIN_KEY: ADMIN, HOST: '192.0.2.7' });
      assert.equal(notHere.code, 2, notHere.stderr);
      assert.match(oneLine(notHere, 'HOST'), /"192\.0\.2\.7" is not an address of this machine/);
      // Refused by the configuration: with Redis unreachable too, HOST is what is reported.
      const malformed = await cli(['api'], { ...env, PORT: '0', APPORTION_ADMIN_KEY: ADMIN, HOST: '999.1.1.1', REDIS_URL: `redis://127.0.0.1:${await closedPort()}` });
      assert.equal(malformed.code, 2, malformed.stderr);
      assert.match(oneLine(malformed, 'HOST'), /"999\.1\.1\.1"/);
    });

    it('in process: a name that does not resolve, the OTLP/gRPC port and the worker metrics port in use', async () => {
      const refusal = (variable: string, text: RegExp) => (e: unknown) => e instanceof ConfigError && e.variable === variable && text.test(e.message);
      await assert.rejects(startTest(startPrefix, { listen: true }, { APPORTION_ADMIN_KEY: ADMIN, HOST: 'no-such-host.invalid' }), refusal('HOST', /"no-such-host\.invalid" does not resolve/));
      await withPortTaken(async (port) => {
        await assert.rejects(startTest(startPrefix, { listen: true }, { APPORTION_OTLP_GRPC_PORT: String(port) }), refusal('APPORTION_OTLP_GRPC_PORT', new RegExp(`${port} is already in use`)));
        await assert.rejects(
          startTest(startPrefix, { api: false, workers: true, listen: true }, { APPORTION_WORKER_METRICS_PORT: String(port) }),
          refusal('APPORTION_WORKER_METRICS_PORT', new RegExp(`${port} is already in use`)),
        );
      });
    });
  });

  describe('numeric options refuse what is not a number in their range', () => {
    /** Every numeric option of every CLI command (src/cli/, src/<domain>/cli.ts), with its range (`exclusive`: both ends out). */
    const OPTIONS: readonly { command: readonly string[]; option: string; min: number; max: number; integer: boolean; exclusive?: boolean }[] = [
      { command: ['simulate', 'support-basic'], option: 'outcomes', min: 1, max: 10_000_000, integer: true },
      { command: ['simulate', 'support-basic'], option: 'concurrency', min: 1, max: 1024, integer: true },
      { command: ['simulate', 'support-basic'], option: 'checkpoint', min: 1, max: 10_000_000, integer: true },
      { command: ['simulate', 'support-basic'], option: 'train-every', min: 10, max: 1_000_000, integer: true },
      { command: ['simulate', 'support-basic'], option: 'seed', min: 0, max: 2 ** 32 - 1, integer: true },
      { command: ['export-logs', 'p'], option: 'limit', min: 1, max: 100_000_000, integer: true },
      { command: ['export-logs', 'p'], option: 'cost-weight', min: 0, max: 1_000_000, integer: false },
      { command: ['demo'], option: 'requests', min: 1, max: 1_000_000, integer: true },
      { command: ['demo'], option: 'simulate', min: 0, max: 10_000_000, integer: true },
      { command: ['demo'], option: 'seed', min: 0, max: 2 ** 32 - 1, integer: true },
      { command: ['allocate', 'p'], option: 'total', min: 1, max: 100_000_000, integer: true },
      { command: ['experiments', 'results', 'e'], option: 'winsorize', min: 0.5, max: 1, integer: false, exclusive: true },
      { command: ['experiments', 'audit', 'e'], option: 'limit', min: 1, max: 9999, integer: true },
      { command: ['keys', 'create', '--tenant', 't', '--role', 'admin', '--name', 'n'], option: 'rate-limit', min: 1, max: 100_000_000, integer: true },
    ];
    /** Values no option takes whatever its range (`parseInt` read `12abc` as 12 and `abc` as NaN). */
    const junk = fc.oneof(
      fc.stringMatching(/^[a-zA-Z!@#%&*_]{1,8}$/),
      fc.constantFrom('', ' ', 'NaN', 'Infinity', '-Infinity', '0x10', '1_000', '1,5', '--'),
      fc.tuple(fc.integer({ min: 0, max: 999 }), fc.stringMatching(/^[a-z%]{1,3}$/)).map(([n, u]) => `${n}${u}`),
    );
    const badFor = (o: (typeof OPTIONS)[number]) =>
      fc.oneof(
        junk,
        fc.integer({ min: 1, max: 1_000_000 }).map((d) => String(o.min - d)),
        fc.integer({ min: 1, max: 1_000_000 }).map((d) => String(o.max + d)),
        ...(o.integer ? [fc.integer({ min: o.min, max: Math.min(o.max, 1000) }).map((n) => `${n}.5`), fc.constant('1e3')] : []),
        ...(o.exclusive ? [fc.constantFrom(String(o.min), String(o.max))] : []),
      );
    const parserOf = (o: (typeof OPTIONS)[number]) => (o.integer ? intArg(o.min, o.max) : numberArg(o.min, o.max, { exclusive: o.exclusive === true }));
    const rangeText = (o: (typeof OPTIONS)[number]) => `from ${o.min.toLocaleString('en-US')} to ${o.max.toLocaleString('en-US')}${o.exclusive ? ', both excluded' : ''}`;

    it('the parsers: every value of the range in, generated others out (in process)', () => {
      for (const o of OPTIONS) {
        const parse = parserOf(o);
        const good = o.integer
          ? fc.integer({ min: o.min, max: o.max })
          : fc.double({ min: o.min, max: o.max, noNaN: true, minExcluded: o.exclusive === true, maxExcluded: o.exclusive === true });
        fc.assert(
          fc.property(good, (n) => assert.equal(parse(String(n)), n)),
          { seed: 81, numRuns: 200 },
        );
        fc.assert(
          fc.property(badFor(o), (v) => {
            assert.throws(() => parse(v), (e: unknown) => e instanceof InvalidArgumentError && e.message.includes(rangeText(o)), `--${o.option} ${v}`);
          }),
          { seed: 82, numRuns: 300 },
        );
      }
    });

    it('over the CLI entry point: a message naming the option and its range, exit 1, no stack, nothing done', async () => {
      const cases = OPTIONS.flatMap((o, i) => fc.sample(badFor(o), { seed: 83 + i, numRuns: 1 }).map((value) => ({ o, value })));
      // Nothing listens at this URL: a value that slipped through would fail differently (and a demo would hang).
      const env = { APPORTION_URL: `http://127.0.0.1:${await closedPort()}` };
      const results: { o: (typeof OPTIONS)[number]; value: string; r: Awaited<ReturnType<typeof cli>> }[] = [];
      for (let i = 0; i < cases.length; i += 2) {
        results.push(...(await Promise.all(cases.slice(i, i + 2).map(async ({ o, value }) => ({ o, value, r: await cli([...o.command, `--${o.option}=${value}`], env) })))));
      }
      for (const { o, value, r } of results) {
        const what = `${o.command.join(' ')} --${o.option}=${JSON.stringify(value)}: ${r.stderr}`;
        assert.equal(r.code, 1, what);
        const line = r.stderr.trim();
        assert.ok(line.startsWith(`error: option '--${o.option} <`), what);
        assert.ok(line.includes(`argument '${value}' is invalid.`), what);
        assert.ok(line.includes(rangeText(o)), what);
        assert.doesNotMatch(r.stderr, /\n\s+at /, what);
        assert.equal(r.stdout, '', what);
      }
    });

    it("--help gives each option's range", async () => {
      const commands = [...new Set(OPTIONS.map((o) => o.command.join('\u0000')))].map((c) => c.split('\u0000'));
      const helps = new Map<string, string>();
      for (let i = 0; i < commands.length; i += 2) {
        await Promise.all(
          commands.slice(i, i + 2).map(async (c) => {
            const r = await cli([...c, '--help']);
            assert.equal(r.code, 0, `${c.join(' ')} --help: ${r.stderr}`);
            helps.set(c.join(' '), r.stdout.replace(/\s+/g, ' '));
          }),
        );
      }
      for (const o of OPTIONS) {
        const help = helps.get(o.command.join(' '))!;
        // With or without thousands separators (`1 to 1024`, `0 to 4294967295`, `1 to 100,000,000`).
        const ranges = [o.min, o.min.toLocaleString('en-US')].flatMap((a) => [o.max, o.max.toLocaleString('en-US')].map((b) => `${a} to ${b}${o.exclusive ? ', both excluded' : ''}`));
        assert.ok(help.includes(`--${o.option} <`) && ranges.some((r) => help.includes(r)), `${o.command.join(' ')} --help names --${o.option} and its range ${ranges[3]}: ${help}`);
      }
    });

    it('runDemo refuses counts that are not positive integers before sending anything', async () => {
      const url = `http://127.0.0.1:${await closedPort()}`;
      for (const requests of [Number.NaN, -5, 0, 2.5, Number.POSITIVE_INFINITY]) {
        await assert.rejects(runDemo({ url, requests, seed: 7, log: () => undefined }), (e: unknown) => e instanceof RangeError && /requests must be an integer/.test(e.message), String(requests));
      }
      await assert.rejects(runDemo({ url, requests: 10, seed: Number.NaN, log: () => undefined }), RangeError);
    });

    it('simulate names the known worlds for an unknown one; pipelines apply refuses a file without its list', async () => {
      const world = await cli(['simulate', 'nope-world']);
      assert.equal(world.code, 1, world.stderr);
      assert.match(world.stderr, /'nope-world' is invalid for argument 'world'\. No such world\. Known worlds: support-basic, doc-heavy, drift/);
      assert.doesNotMatch(world.stderr, /ENOENT|\n\s+at /);
      const file = path.join(tmpdir(), `${prefix}-apply.json`);
      for (const [doc, kind] of [[{}, 'pipelines'], [{ pipelines: [] }, 'strategies'], [[], 'pipelines'], [{ pipelines: {} }, 'pipelines']] as const) {
        writeFileSync(file, JSON.stringify(doc));
        const r = await cli([kind, 'apply', file, '--url', rt.url!]);
        assert.equal(r.code, 1, `${JSON.stringify(doc)}: ${r.stderr}`);
        assert.ok(r.stderr.includes(`no "${kind}" list, nothing applied`), r.stderr);
      }
      writeFileSync(file, JSON.stringify({ pipelines: [] }));
      const empty = await cli(['pipelines', 'apply', file, '--url', rt.url!]);
      assert.equal(empty.code, 0, empty.stderr);
      assert.match(empty.stderr, /the "pipelines" list is empty, nothing applied/);
    });
  });

  it('sets budgets in dollars and shows balances of every unit in their natural form', async () => {
    const url = rt.url!;
    assert.equal((await cli(['budgets', 'set', 'tenant:cli/workspace:w', '50', '--url', url])).code, 0);
    assert.equal((await cli(['budgets', 'set', 'tenant:cli', '$120.25', '--url', url])).code, 0);
    assert.equal((await cli(['budgets', 'set', 'tenant:cli/workflow:f', '20000', '--unit', 'TOKENS', '--url', url])).code, 0);
    const b = await cli(['budgets', 'balances', 'tenant:cli', '--url', url]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /tenant:cli\s+USD\s+\$120\.25/);
    assert.match(b.stdout, /tenant:cli\/workspace:w\s+USD\s+\$50\.00/);
    assert.match(b.stdout, /tenant:cli\/workflow:f\s+tokens\s+20,000/);
    const raw = await cli(['budgets', 'balances', 'tenant:cli', '--unit', 'USD', '--micro-cents', '--url', url]);
    assert.match(raw.stdout, /5,000,000,000/);
    assert.doesNotMatch(raw.stdout, /workflow:f/);
  });
});
