import type { Command } from 'commander';
import { registerBudgets } from '../budgets/cli.js';
import { registerCosts } from '../costs/cli.js';
import { registerLearnerCommands } from '../learner/cli.js';
import { registerExperiments } from '../rollout/cli.js';
import { registerKeys } from '../tenancy/cli.js';

/**
 * Commands contributed by domain modules (experiments, simulate, report, …). Each domain adds one
 * `register…(program)` call here so the entry point stays small.
 */
export function registerCommands(program: Command): void {
  registerExperiments(program);
  registerCosts(program);
  registerLearnerCommands(program);
  registerBudgets(program);
  registerKeys(program);
}
