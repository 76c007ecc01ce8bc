import { Command, Help } from 'commander';

type Register = (program: Command) => void;

/** A domain's top-level commands, registered for real only when one of them runs. */
interface LazyDomain {
  /**
   * Top-level command names the domain's `register…` adds, with their one-line descriptions and their arguments as
   * `--help` lists them (`[options] <world>`: what commander shows for the real command; '' for none).
   */
  readonly commands: readonly (readonly [name: string, description: string, usage: string])[];
  readonly load: () => Promise<Register>;
}

/**
 * Commands contributed by domain modules (experiments, simulate, report, …). Each domain adds one entry here so
 * the entry point stays small. Domains are imported only when one of their commands runs: the learner's CLI
 * alone pulls in TensorFlow.js, which would make `apportion --help` take seconds.
 */
export const DOMAINS: readonly LazyDomain[] = [
  { commands: [['experiments', 'rollout experiments: define, start, watch, roll back, promote', '']], load: async () => (await import('../rollout/cli.js')).registerExperiments },
  { commands: [['report', 'reports', '']], load: async () => (await import('../costs/cli.js')).registerCosts },
  {
    commands: [
      ['simulate', 'drive the API with a simulated world (`apportion simulate --help` lists the worlds) and compare learned vs uniform vs best static vs oracle', '[options] <world>'],
      ['export-logs', "write a pipeline's logged decisions with outcomes as Vowpal Wabbit DSJSON lines", '[options] <pipeline>'],
    ],
    load: async () => (await import('./learner.js')).registerLearnerCommands,
  },
  {
    commands: [
      ['features', "a pipeline's feature declaration (what the learned strategy reads from a request)", ''],
      ['models', "a pipeline's learned model versions: list, retrain, roll back, evaluate", ''],
    ],
    load: async () => (await import('../learner/cli.js')).registerLearnerOps,
  },
  { commands: [['budgets', 'scoped budgets (tenant/workspace/workflow/agent)', '']], load: async () => (await import('../budgets/cli.js')).registerBudgets },
  { commands: [['keys', 'API keys: each bound to a tenant and a role (admin, analyst, client)', '']], load: async () => (await import('../tenancy/cli.js')).registerKeys },
  { commands: [['demo', 'fill a running server with example traffic, experiments, budgets and cost traces for the console', '[options]']], load: async () => (await import('./console.js')).registerDemo },
];

/**
 * Registers a placeholder per domain command: it lists the command in `--help` and, when run, loads the domain,
 * registers its real commands on a fresh program and parses the same arguments again (so `apportion budgets
 * balances --help` shows the real options).
 */
export function registerCommands(program: Command): void {
  // `--help` lists a placeholder as its real command reads (`simulate [options] <world>`), not as `simulate [args...]`.
  const terms = new Map<Command, string>();
  program.configureHelp({
    subcommandTerm(this: Help, cmd: Command): string {
      return terms.get(cmd) ?? Help.prototype.subcommandTerm.call(this, cmd);
    },
  });
  for (const domain of DOMAINS) {
    for (const [name, description, usage] of domain.commands) {
      const placeholder = program
        .command(name)
        .description(description)
        .helpOption(false)
        .allowUnknownOption()
        .allowExcessArguments()
        .argument('[args...]')
        .action(async () => {
          const real = new Command(program.name()).description(program.description());
          (await domain.load())(real);
          await real.parseAsync(process.argv);
        });
      terms.set(placeholder, usage ? `${name} ${usage}` : name);
    }
  }
}
