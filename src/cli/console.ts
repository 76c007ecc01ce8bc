import type { Command } from 'commander';
import { keyOption, urlOption } from '../config/cli-api.js';
import { intArg, seedArg } from '../config/cli-options.js';

/** `apportion demo`: example data for every console page, sent to a running server through its API. */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('fill a running server with example traffic, experiments, budgets and cost traces for the console')
    .addOption(urlOption())
    .addOption(keyOption())
    .option('--requests <n>', 'allocations and outcomes sent through the demo experiment (1 to 1,000,000)', intArg(1, 1_000_000), 600)
    .option('--simulate <n>', 'outcomes of the learner simulation (support-basic world, with its learning-curve chart), 0 to 10,000,000; 0 skips it', intArg(0, 10_000_000), 1000)
    .option('--seed <n>', 'random seed (0 to 4294967295)', seedArg, 7)
    .action(async (o: { url: string; key?: string; requests: number; simulate: number; seed: number }) => {
      const { runDemo } = await import('../console/demo.js');
      await runDemo({ url: o.url, ...(o.key ? { key: o.key } : {}), requests: o.requests, seed: o.seed });
      if (o.simulate > 0) {
        const { simulate } = await import('./learner.js');
        await simulate('support-basic', { url: o.url, ...(o.key ? { key: o.key } : {}), outcomes: o.simulate, concurrency: 8, checkpoint: 250, trainEvery: 250, seed: o.seed, local: false, quiet: !process.stdout.isTTY, lockstep: true });
      }
      process.stdout.write(`\nOpen the console: ${o.url.replace(/\/$/, '')}/\n`);
    });
}
