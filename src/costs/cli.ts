import { Command, Option } from 'commander';
import { apiClient, keyOption, urlOption } from '../config/cli-api.js';
import { reportCsv, type CostReport } from './reports.js';
import { DIMENSIONS } from './rollup-vector.js';

interface Opts {
  url: string;
  key?: string;
  by: string;
  from?: string;
  to?: string;
  csv?: boolean;
}

function table(r: CostReport): string {
  const rows = [['', 'calls', 'tokens', 'cost USD', 'unpriced'], ...r.rows.map((x) => [x.key, String(x.calls), String(x.tokens.total), x.costUsd.toFixed(6), x.unpricedCalls ? String(x.unpricedCalls) : ''])];
  rows.push(['TOTAL', String(r.total.calls), String(r.total.tokens.total), r.total.costUsd.toFixed(6), r.total.unpricedCalls ? String(r.total.unpricedCalls) : '']);
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  const note = r.total.unpricedCalls ? `\n${r.total.unpricedCalls} call(s) use unpriced models: their cost is not included (see --csv unpriced_tokens).` : '';
  return `costs by ${r.groupBy}, ${r.from} … ${r.to}\n${rows.map(line).join('\n')}${note}`;
}

/** `apportion report costs --by customer|team|agent|model|day [--from] [--to] [--csv]` (showback). */
export function registerCosts(program: Command): void {
  const report = program.commands.find((c) => c.name() === 'report') ?? program.command('report').description('reports');
  report
    .command('costs')
    .description('showback: cost and tokens grouped by customer, team, agent, model or day (from the same leaf spans)')
    .addOption(new Option('--by <dimension>', 'group by').choices([...DIMENSIONS]).default('customer'))
    .option('--from <day>', 'first day (YYYY-MM-DD, UTC); default 29 days before --to')
    .option('--to <day>', 'last day (YYYY-MM-DD, UTC); default today')
    .option('--csv', 'print CSV (exact nano-USD amounts as USD with 9 decimals)')
    .addOption(urlOption())
    .addOption(keyOption())
    .action(async (o: Opts) => {
      const client = apiClient(o);
      const q = new URLSearchParams({ groupBy: o.by, ...(o.from ? { from: o.from } : {}), ...(o.to ? { to: o.to } : {}) });
      const r = await client.request<CostReport>('GET', `/v1/reports/costs?${q}`);
      process.stdout.write(o.csv ? reportCsv(r) : `${table(r)}\n`);
    });
}
