import { randomUUID } from 'node:crypto';
import { Option, type Command } from 'commander';
import { CLI_UNITS, formatAmount, formatUsd, inDollars, parseAmount, serverUnit, type CliUnit } from './amounts.js';
import { ApportionHttpError, ReservationsClient } from '@apportion/sdk';
import { apiClient as client, withConnection, type ApiConn as Conn } from '../config/cli-api.js';

interface UnitOpts {
  unit: CliUnit;
  microCents?: boolean;
}

const conn = (c: Command) => withConnection(c);
const unitOption = () =>
  new Option('--unit <unit>', 'USD: amounts in dollars (stored as micro-cents); USD_MICROCENTS: raw micro-cents ($1 = 100,000,000); TOKENS').choices([...CLI_UNITS]).default('USD');
const rawOption = () => new Option('--micro-cents', 'print money as raw micro-cents instead of dollars');
/** Server answers, with money in dollars unless raw micro-cents were asked for (or given). */
const out = (v: unknown, o: UnitOpts) => process.stdout.write(`${JSON.stringify(o.microCents || o.unit === 'USD_MICROCENTS' ? v : inDollars(v), null, 2)}\n`);

/** The amounts a refusal's `details` carries (BUDGET_EXCEEDED, OVERDRAFT_LIMIT_EXCEEDED, ALLOCATION_BELOW_USAGE, …). */
const DETAIL_AMOUNTS = ['requested', 'remaining', 'available', 'used', 'reserved', 'debt'] as const;

/**
 * `call`, with a refusal in dollars when the command works in dollars: the server's message counts micro-cents
 * (`100000000000 exceeds the remaining 1000000000`), so the line adds its amounts as dollars
 * (`(in dollars: requested $1,000.00, remaining $10.00)`).
 */
async function inDollarsOnError<T>(o: UnitOpts, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (e) {
    if (!(e instanceof ApportionHttpError) || o.unit !== 'USD' || o.microCents) throw e;
    const details = typeof e.body === 'object' && e.body !== null ? (e.body as { details?: unknown }).details : undefined;
    if (typeof details !== 'object' || details === null) throw e;
    const d = details as Record<string, unknown>;
    const amounts = DETAIL_AMOUNTS.flatMap((k) => (typeof d[k] === 'number' ? [`${k} ${formatUsd(d[k])}`] : []));
    if (amounts.length === 0) throw e;
    throw new Error(`${e.message} (in dollars: ${amounts.join(', ')})`, { cause: e });
  }
}

/** `--overdraft`: kept as an object so a refused value names it by its flags, as commander names its options. */
const overdraftOption = () => new Option('--overdraft <amount>', 'overdraft limit (ALLOW_WITH_OVERDRAFT), in the same unit');

/**
 * An amount given on the command line as `where` (an option or a command argument), in `unit`. A value refused
 * ends the command through commander's `error()` with commander's own wording for a bad value, naming the option
 * or argument and the value, then why (`error: option '--overdraft <amount>' argument '-5' is invalid. It must not
 * be negative.`; `error: command-argument value 'ten' is invalid for argument 'amount'. It must be a dollar amount
 * …`), exit status 1, no stack trace, like the range checks of src/config/cli-options.ts. Parsed in the action,
 * not by an option parser, because the unit is another option, known only once every option is parsed.
 */
function amountOf(cmd: Command, text: string, unit: CliUnit, where: { readonly option: Option } | { readonly argument: string }): number {
  try {
    return parseAmount(text, unit);
  } catch (e) {
    const head = 'option' in where ? `error: option '${where.option.flags}' argument '${text}' is invalid.` : `error: command-argument value '${text}' is invalid for argument '${where.argument}'.`;
    return cmd.error(`${head} ${(e as Error).message}`, { exitCode: 1, code: 'commander.invalidArgument' });
  }
}

/**
 * `apportion budgets set|balances|fund|debit|reset|freeze|unfreeze|delete`: the budget ledger from the shell.
 * Money is given and shown in dollars (`--unit USD`, the default); `--unit USD_MICROCENTS` takes raw micro-cents.
 */
export function registerBudgets(program: Command): void {
  const budgets = program.command('budgets').description('scoped budgets (tenant/workspace/workflow/agent)');
  const overdraft = overdraftOption();
  conn(
    budgets
      .command('set <scope> <allocated>')
      .description('create a scope’s budget or change its allocation (e.g. `budgets set tenant:acme/workspace:alpha 50` for $50)')
      .addOption(unitOption())
      .addOption(rawOption())
      .addOption(new Option('--policy <policy>', 'overage policy at commit').choices(['REJECT', 'ALLOW_IF_AVAILABLE', 'ALLOW_WITH_OVERDRAFT']))
      .addOption(overdraft)
      .addOption(new Option('--period <period>', 'calendar reset').choices(['day', 'month'])),
  ).action(async (scope: string, allocatedText: string, o: Conn & UnitOpts & { policy?: string; overdraft?: string; period?: string }, cmd: Command) => {
    const allocated = amountOf(cmd, allocatedText, o.unit, { argument: 'allocated' });
    const overdraftLimit = o.overdraft !== undefined ? amountOf(cmd, o.overdraft, o.unit, { option: overdraft }) : undefined;
    out(
      await inDollarsOnError(
        o,
        client(o).request('PUT', '/v1/budgets', {
          scope,
          unit: serverUnit(o.unit),
          allocated,
          ...(o.policy ? { overagePolicy: o.policy } : {}),
          ...(overdraftLimit !== undefined ? { overdraftLimit } : {}),
          ...(o.period ? { period: o.period } : {}),
        }),
      ),
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
      out(await inDollarsOnError(o, client(o).request('DELETE', `/v1/budgets?scope=${encodeURIComponent(scope)}&unit=${serverUnit(o.unit)}`)), o);
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
      const cmd = rest[withAmount ? 2 : 1] as Command;
      const amount = withAmount ? amountOf(cmd, rest[0] as string, o.unit, { argument: 'amount' }) : undefined;
      out(
        await inDollarsOnError(
          o,
          client(o).request('POST', `/v1/budgets/${op}`, {
            scope,
            unit: serverUnit(o.unit),
            idempotencyKey: o.idempotencyKey ?? randomUUID(),
            ...(amount !== undefined ? { amount } : {}),
          }),
        ),
        o,
      );
    });
  }
}
