import { randomUUID } from 'node:crypto';
import { Option, type Command } from 'commander';
import { CLI_UNITS, formatAmount, inDollars, parseAmount, serverUnit, type CliUnit } from './amounts.js';
import { ApportionClient, ReservationsClient } from '@apportion/sdk';

interface Conn {
  url: string;
  key?: string;
}
interface UnitOpts {
  unit: CliUnit;
  microCents?: boolean;
}

const conn = (c: Command) =>
  c
    .addOption(new Option('--url <url>', 'API base URL').env('APPORTION_URL').default('http://127.0.0.1:3000'))
    .addOption(new Option('--key <key>', 'admin bearer key').env('APPORTION_KEY'));
const unitOption = () =>
  new Option('--unit <unit>', 'USD: amounts in dollars (stored as micro-cents); USD_MICROCENTS: raw micro-cents ($1 = 100,000,000); TOKENS').choices([...CLI_UNITS]).default('USD');
const rawOption = () => new Option('--micro-cents', 'print money as raw micro-cents instead of dollars');
const client = (o: Conn) => new ApportionClient({ url: o.url, ...(o.key ? { key: o.key } : {}) });
/** Server answers, with money in dollars unless raw micro-cents were asked for (or given). */
const out = (v: unknown, o: UnitOpts) => process.stdout.write(`${JSON.stringify(o.microCents || o.unit === 'USD_MICROCENTS' ? v : inDollars(v), null, 2)}\n`);

/**
 * `apportion budgets set|balances|fund|debit|reset|freeze|unfreeze|delete`: the budget ledger from the shell.
 * Money is given and shown in dollars (`--unit USD`, the default); `--unit USD_MICROCENTS` takes raw micro-cents.
 */
export function registerBudgets(program: Command): void {
  const budgets = program.command('budgets').description('scoped budgets (tenant/workspace/workflow/agent)');
  conn(
    budgets
      .command('set <scope> <allocated>')
      .description('create a scope’s budget or change its allocation (e.g. `budgets set tenant:acme/workspace:alpha 50` for $50)')
      .addOption(unitOption())
      .addOption(rawOption())
      .addOption(new Option('--policy <policy>', 'overage policy at commit').choices(['REJECT', 'ALLOW_IF_AVAILABLE', 'ALLOW_WITH_OVERDRAFT']))
      .option('--overdraft <amount>', 'overdraft limit (ALLOW_WITH_OVERDRAFT), in the same unit')
      .addOption(new Option('--period <period>', 'calendar reset').choices(['day', 'month'])),
  ).action(async (scope: string, allocated: string, o: Conn & UnitOpts & { policy?: string; overdraft?: string; period?: string }) => {
    out(
      await client(o).request('PUT', '/v1/budgets', {
        scope,
        unit: serverUnit(o.unit),
        allocated: parseAmount(allocated, o.unit),
        ...(o.policy ? { overagePolicy: o.policy } : {}),
        ...(o.overdraft !== undefined ? { overdraftLimit: parseAmount(o.overdraft, o.unit) } : {}),
        ...(o.period ? { period: o.period } : {}),
      }),
      o,
    );
  });
  conn(
    budgets
      .command('balances <scope>')
      .description('balances of a scope and the scopes below it, in every unit unless --unit is given')
      .addOption(new Option('--unit <unit>', 'only budgets of this unit (default: all)').choices([...CLI_UNITS]))
      .addOption(rawOption()),
  ).action(async (scope: string, o: Conn & { unit?: CliUnit; microCents?: boolean }) => {
    const rows = await new ReservationsClient(client(o)).balances(scope, o.unit ? serverUnit(o.unit) : undefined);
    if (rows.length === 0) {
      process.stdout.write(`no budgets at or below ${scope}${o.unit ? ` in ${o.unit}` : ''}\n`);
      return;
    }
    const raw = o.microCents === true;
    const w = Math.max(5, ...rows.map((r) => r.scope.length));
    const unitName = (u: string) => (u === 'TOKENS' ? 'tokens' : raw ? 'µ¢' : 'USD');
    process.stdout.write(`${'scope'.padEnd(w)}  ${'unit'.padEnd(6)}${['allocated', 'remaining', 'reserved', 'spent', 'debt'].map((h) => h.padStart(18)).join('')}\n`);
    for (const r of rows) {
      const cells = [r.allocated, r.remaining, r.reserved, r.spent, r.debt].map((n) => formatAmount(n, r.unit, raw).padStart(18)).join('');
      process.stdout.write(`${r.scope.padEnd(w)}  ${unitName(r.unit).padEnd(6)}${cells}${r.frozen ? '  FROZEN' : ''}\n`);
    }
  });
  conn(budgets.command('delete <scope>').description('delete a scope’s budget (refused while reservations hold amounts at it)').addOption(unitOption()).addOption(rawOption())).action(
    async (scope: string, o: Conn & UnitOpts) => {
      out(await client(o).request('DELETE', `/v1/budgets?scope=${encodeURIComponent(scope)}&unit=${serverUnit(o.unit)}`), o);
    },
  );
  for (const op of ['fund', 'debit', 'reset', 'freeze', 'unfreeze'] as const) {
    const withAmount = op === 'fund' || op === 'debit';
    conn(
      budgets
        .command(`${op} <scope>${withAmount ? ' <amount>' : ''}`)
        .description(`${op} a scope${op === 'debit' ? ' (and its budgeted ancestors)' : ''}`)
        .addOption(unitOption())
        .addOption(rawOption())
        .option('--idempotency-key <key>', 'reuse to make a retry safe (default: a fresh UUID)'),
    ).action(async (scope: string, ...rest: unknown[]) => {
      const o = rest[withAmount ? 1 : 0] as Conn & UnitOpts & { idempotencyKey?: string };
      const amount = withAmount ? parseAmount(rest[0] as string, o.unit) : undefined;
      out(
        await client(o).request('POST', `/v1/budgets/${op}`, {
          scope,
          unit: serverUnit(o.unit),
          idempotencyKey: o.idempotencyKey ?? randomUUID(),
          ...(amount !== undefined ? { amount } : {}),
        }),
        o,
      );
    });
  }
}
