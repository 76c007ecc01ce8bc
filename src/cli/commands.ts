import type { Command } from 'commander';

/**
 * Commands contributed by domain modules (experiments, simulate, report, …). Each domain adds one
 * `register…(program)` call here so the entry point stays small.
 */
export function registerCommands(_program: Command): void {}
