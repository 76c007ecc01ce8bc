import { randomUUID } from 'node:crypto';
import { Option, type Command } from 'commander';
import { ApportionClient, type BudgetUnit, ReservationsClient } from '@apportion/sdk';

interface Conn {
  url: string;
  key?: string;
}

const conn = (c: Command) =>
  c
    .addOption(new Option('--url <url>', 'API base URL').env('APPORTION_URL').default('http://127.0.0.1:3000'))
    .addOption(new Option('--key <key>', 'admin bearer key').env('APPORTION_KEY'));
const unitOption = () => new Option('--unit <unit>', 'TOKENS or USD_MICROCENTS').choices(['TOKENS', 'USD_MICROCENTS']).default('TOKENS');
const client = (o: Conn) => new ApportionClient({ url: o.url, ...(o.key ? { key: o.key } : {}) });
const int = (v: string) => {
  if (!/^\d+$/.test(v)) throw new Error(`"${v}" is not a non-negative integer`);
  return Number(v);
};
const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

/**
 * `apportion budgets set|balances|fund|debit|reset|freeze|unfreeze|delete`: the budget ledger from the shell.
 */
export function registerBudgets(program: Command): void {
  const budgets = program.command('budgets').description('scoped budgets (tenant/workspace/workflow/agent)');
  conn(
    budgets
      .command('set <scope> <allocated>')
      .description('create a scope’s budget or change its allocation')
      .addOption(unitOption())
      .addOption(new Option('--policy <policy>', 'overage policy at commit').choices(['REJECT', 'ALLOW_IF_AVAILABLE', 'ALLOW_WITH_OVERDRAFT']))
      .option('--overdraft <amount>', 'overdraft limit (ALLOW_WITH_OVERDRAFT)', int)
      .addOption(new Option('--period <period>', 'calendar reset').choices(['day', 'month'])),
  ).action(async (scope: string, allocated: string, o: Conn & { unit: BudgetUnit; policy?: string; overdraft?: number; period?: string }) => {
    out(
      await client(o).request('PUT', '/v1/budgets', {
        scope,
        unit: o.unit,
        allocated: int(allocated),
        ...(o.policy ? { overagePolicy: o.policy } : {}),
        ...(o.overdraft !== undefined ? { overdraftLimit: o.overdraft } : {}),
        ...(o.period ? { period: o.period } : {}),
      }),
    );
  });
  conn(budgets.command('balances <scope>').description('balances of a scope and the scopes below it').addOption(unitOption())).action(
    async (scope: string, o: Conn & { unit: BudgetUnit }) => {
      const rows = await new ReservationsClient(client(o)).balances(scope, o.unit);
      const w = Math.max(5, ...rows.map((r) => r.scope.length));
      process.stdout.write(`${'scope'.padEnd(w)}  ${['allocated', 'remaining', 'reserved', 'spent', 'debt'].map((h) => h.padStart(14)).join('')}\n`);
      for (const r of rows) {
        const cells = [r.allocated, r.remaining, r.reserved, r.spent, r.debt].map((n) => String(n).padStart(14)).join('');
        process.stdout.write(`${r.scope.padEnd(w)}  ${cells}${r.frozen ? '  FROZEN' : ''}\n`);
      }
    },
  );
  conn(budgets.command('delete <scope>').description('delete a scope’s budget (refused while reservations hold amounts at it)').addOption(unitOption())).action(
    async (scope: string, o: Conn & { unit: BudgetUnit }) => {
      out(await client(o).request('DELETE', `/v1/budgets?scope=${encodeURIComponent(scope)}&unit=${o.unit}`));
    },
  );
  for (const op of ['fund', 'debit', 'reset', 'freeze', 'unfreeze'] as const) {
    const withAmount = op === 'fund' || op === 'debit';
    conn(
      budgets
        .command(`${op} <scope>${withAmount ? ' <amount>' : ''}`)
        .description(`${op} a scope${op === 'debit' ? ' (and its budgeted ancestors)' : ''}`)
        .addOption(unitOption())
        .option('--idempotency-key <key>', 'reuse to make a retry safe (default: a fresh UUID)'),
    ).action(async (scope: string, ...rest: unknown[]) => {
      const amount = withAmount ? int(rest[0] as string) : undefined;
      const o = rest[withAmount ? 1 : 0] as Conn & { unit: BudgetUnit; idempotencyKey?: string };
      out(
        await client(o).request('POST', `/v1/budgets/${op}`, {
          scope,
          unit: o.unit,
          idempotencyKey: o.idempotencyKey ?? randomUUID(),
          ...(amount !== undefined ? { amount } : {}),
        }),
      );
    });
  }
}
