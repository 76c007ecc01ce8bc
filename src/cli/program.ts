import { Command } from 'commander';
import { ConfigError, loadConfig } from '../config/env.js';
import { apiClient as clientFrom, keyOption as keyOptionOf, printJson as print, urlOption } from '../config/cli-api.js';
import { applyRequests, type ApplyFile } from '../seed.js';
import { DOMAINS, registerCommands } from './commands.js';
import { intArg, jsonObjectArg } from '../config/cli-options.js';
import { EntryError, readJsonFile } from '../config/cli-files.js';

function bootConfig() {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}

async function run(api: boolean, workers: boolean): Promise<void> {
  const config = bootConfig();
  const redisProblem = await (await import('./preflight.js')).checkRedisTarget(config.redisUrl, config.redisClusterNodes);
  if (redisProblem) {
    process.stderr.write(`${redisProblem}\n`);
    process.exit(2);
  }
  // Imported here, not at the top: the server pulls in fastify, BullMQ and TensorFlow.js, and `--help` should not wait for them.
  const [{ createLogger }, { closeOnSignals, start }] = await Promise.all([import('../logger.js'), import('../server.js')]);
  const log = createLogger(config);
  const running = await start(config, log, { api, workers, defaultMetrics: true }).catch((e: unknown) => {
    // A listener's address or port (HOST, PORT, …): one line naming the variable, as for a bad value at boot.
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  });
  closeOnSignals(running, log);
  log.info({ url: running.url, api, workers, prefix: config.keyPrefix }, 'apportion started');
}

const keyOption = () => keyOptionOf('bearer key');

async function apply(file: string, only: 'pipelines' | 'strategies', opts: { url: string; key?: string }): Promise<void> {
  const doc = readJsonFile(file);
  const list = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)[only] : undefined;
  // A file without the list is the wrong file (or a typo), not an empty one: say so rather than apply nothing.
  if (!Array.isArray(list)) throw new Error(`${file}: no "${only}" list, nothing applied (expected { "${only}": [{ "id": …, … }] })`);
  if (list.length === 0) process.stderr.write(`${file}: the "${only}" list is empty, nothing applied\n`);
  list.forEach((e: unknown, i) => {
    if (typeof e !== 'object' || e === null || typeof (e as { id?: unknown }).id !== 'string' || (e as { id: string }).id === '') throw new Error(`${file}: ${only}/${i}/id is missing, nothing applied`);
  });
  const client = clientFrom(opts);
  const subset: ApplyFile = only === 'pipelines' ? { pipelines: list as NonNullable<ApplyFile['pipelines']> } : { strategies: list as NonNullable<ApplyFile['strategies']> };
  for (const r of applyRequests(subset)) {
    // The entry by its kind and id (`pipelines/research`), as the request's path names it.
    const entry = decodeURIComponent(r.url.replace(/^\/v1\//, ''));
    const res = await client.request<{ id: string; version: number }>(r.method, r.url, r.body).catch((e: unknown) => {
      throw new EntryError(file, entry, e);
    });
    process.stdout.write(`${r.method} ${r.url} → version ${res.version}\n`);
  }
}

const NAME = 'apportion';
const DESCRIPTION = 'Token budget allocation for multi-agent LLM pipelines';

/** The commands of the entry point itself (the domains' are added by `registerCommands` or, all loaded, by `fullProgram`). */
function registerCore(program: Command): void {
  program.command('serve').description('run the API and the workers in one process (the main job)').action(() => run(true, true));
  program.command('api').description('run the HTTP API only').action(() => run(true, false));
  program.command('worker').description('run the BullMQ workers only').action(() => run(false, true));

  program
    .command('pipelines')
    .description('manage pipelines')
    .command('apply <file>')
    .description('create or replace the pipelines of a JSON file ({ "pipelines": [{ "id", …body }] })')
    .addOption(urlOption())
    .addOption(keyOption())
    .action((file: string, opts: { url: string; key?: string }) => apply(file, 'pipelines', opts));

  program
    .command('strategies')
    .description('manage strategies')
    .command('apply <file>')
    .description('create or replace the strategies of a JSON file ({ "strategies": [{ "id", …body }] })')
    .addOption(urlOption())
    .addOption(keyOption())
    .action((file: string, opts: { url: string; key?: string }) => apply(file, 'strategies', opts));

  program
    .command('allocate <pipeline>')
    .description('ask for a per-agent allocation')
    .option('--features <json>', 'request features as a JSON object', jsonObjectArg, {})
    .option('--total <tokens>', 'total token budget (1 to 100,000,000)', intArg(1, 100_000_000))
    .option('--unit <key>', 'unit key for sticky bucketing')
    .option('--strategy <id>', 'force a strategy')
    .addOption(urlOption())
    .addOption(keyOption())
    .action(async (pipeline: string, o: { features: Record<string, unknown>; total?: number; unit?: string; strategy?: string; url: string; key?: string }) => {
      const res = await clientFrom(o).allocate({
        pipeline,
        features: o.features as Record<string, string | number | boolean | null>,
        ...(o.total !== undefined ? { totalTokens: o.total } : {}),
        ...(o.unit ? { unitKey: o.unit } : {}),
        ...(o.strategy ? { strategy: o.strategy } : {}),
      });
      print(res);
    });

  program
    .command('stats <strategy>')
    .description("a strategy's outcome statistics")
    .option('--pipeline <id>', 'pipeline (needed for the built-in @uniform)')
    .addOption(urlOption())
    .addOption(keyOption())
    .action(async (strategy: string, o: { pipeline?: string; url: string; key?: string }) => {
      print(await clientFrom(o).strategyStats(strategy, o.pipeline));
    });
}

/** The CLI as `apportion` runs it: the domains' commands are placeholders that load the domain when one runs. */
export function buildProgram(): Command {
  const program = new Command(NAME).description(DESCRIPTION);
  registerCore(program);
  registerCommands(program);
  // commander's own `help <command>` would print a domain placeholder's help (`budgets [args...]`, no subcommands):
  // this one loads the domain first, so `help budgets` and `help budgets set` say what `budgets --help` and
  // `budgets set --help` say.
  program.helpCommand(false);
  program
    .command('help')
    .description('display help for command')
    .argument('[command...]')
    .action(async (names: string[]) => {
      if (names.length === 0) program.help();
      const domain = DOMAINS.find((d) => d.commands.some(([n]) => n === names[0]));
      let cmd = program;
      if (domain) {
        cmd = new Command(NAME).description(DESCRIPTION);
        (await domain.load())(cmd);
      }
      for (const name of names) {
        const next = cmd.commands.find((c) => c.name() === name);
        if (!next) cmd.error(`error: unknown command '${name}'`);
        cmd = next!;
      }
      cmd.help();
    });
  return program;
}

/**
 * The CLI with every domain's commands registered for real (loads them all, TensorFlow.js included): what
 * `npm run docs:cli` writes docs/cli.md from (scripts/cli-docs.ts, src/cli/reference.ts).
 */
export async function fullProgram(): Promise<Command> {
  const program = new Command(NAME).description(DESCRIPTION);
  registerCore(program);
  for (const domain of DOMAINS) (await domain.load())(program);
  return program;
}
