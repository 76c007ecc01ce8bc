import type { Redis } from 'ioredis';
import { AppError } from '../errors/app-error.js';
import type { CostKeys } from './keys.js';
import { DIMENSIONS, FIELD_SEP, dayOf, type Dimension } from './rollup-vector.js';
import { TOTAL_FIELDS, zeroTotals, type Totals } from './tree.js';
import { totalsView, type TotalsView } from './views.js';

export interface ReportRow extends TotalsView {
  key: string;
}

export interface CostReport {
  groupBy: Dimension;
  from: string;
  to: string;
  rows: ReportRow[];
  total: TotalsView;
}

const DAY_MS = 86_400_000;
const MAX_DAYS = 400;

/** A calendar day, exactly `YYYY-MM-DD` (no trailing characters, no 31st of February): its UTC midnight in ms. */
function parseDay(v: string, field: string): number {
  const ms = /^\d{4}-\d{2}-\d{2}$/.test(v) ? Date.parse(`${v}T00:00:00Z`) : Number.NaN;
  // Date.parse rolls an impossible day over into the next month: only a date that reads back the same is one.
  if (!Number.isFinite(ms) || dayOf(ms) !== v) throw new AppError('VALIDATION_FAILED', `querystring/${field} must be a date (YYYY-MM-DD), got "${v}"`);
  return ms;
}

/** Days covered by [from, to] (inclusive, UTC). Default: the last 30 days. */
export function dayRange(from: string | undefined, to: string | undefined, now = Date.now()): string[] {
  const end = to !== undefined ? parseDay(to, 'to') : Date.parse(`${dayOf(now)}T00:00:00Z`);
  const start = from !== undefined ? parseDay(from, 'from') : end - 29 * DAY_MS;
  if (start > end) throw new AppError('VALIDATION_FAILED', 'querystring/from is after to');
  if ((end - start) / DAY_MS >= MAX_DAYS) throw new AppError('VALIDATION_FAILED', `querystring/from..to spans more than ${MAX_DAYS} days`);
  const days: string[] = [];
  for (let d = start; d <= end; d += DAY_MS) days.push(dayOf(d));
  return days;
}

/** Showback: rollups of one dimension over a day range. Every dimension sums the same counted spans. */
export async function costReport(redis: Redis, ck: CostKeys, groupBy: Dimension, from?: string, to?: string): Promise<CostReport> {
  if (!DIMENSIONS.includes(groupBy)) throw new AppError('VALIDATION_FAILED', `querystring/groupBy must be one of ${DIMENSIONS.join(', ')}`);
  const days = dayRange(from, to);
  const shards = Array.from({ length: ck.shards }, (_, s) => s);
  const hashes = await Promise.all(days.flatMap((d) => shards.map((s) => redis.hgetall(ck.rollup(`${groupBy}:${d}`, s)))));
  const groups = new Map<string, Totals>();
  const total = zeroTotals();
  const fields = new Set<string>(TOTAL_FIELDS);
  for (const h of hashes) {
    for (const [f, v] of Object.entries(h)) {
      const cut = f.lastIndexOf(FIELD_SEP);
      // Model ids are matched case-insensitively, as the price table and price overrides match them: `GPT-4o` and
      // `gpt-4o` are one row, keyed in lower case (rollups written before are folded the same way when read).
      const key = groupBy === 'model' ? f.slice(0, cut).toLowerCase() : f.slice(0, cut);
      const metric = f.slice(cut + 1) as keyof Totals;
      if (!fields.has(metric)) continue;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = zeroTotals()));
      const n = Number(v);
      g[metric] += n;
      total[metric] += n;
    }
  }
  const rows = [...groups]
    .map(([key, t]) => ({ key, ...totalsView(t) }))
    // A group may have only the unreported part of a claimed aggregate (no calls of its own): it still shows.
    .filter((r) => r.calls !== 0 || r.unmeteredCalls !== 0 || r.costNano !== 0 || r.tokens.total !== 0 || r.unpricedTokens !== 0)
    .sort((a, b) => b.costNano - a.costNano || (a.key < b.key ? -1 : 1));
  return { groupBy, from: days[0]!, to: days[days.length - 1]!, rows, total: totalsView(total) };
}

const CSV_HEADER = ['key', 'calls', 'input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens', 'cost_usd', 'provided_usd', 'computed_usd', 'unpriced_calls', 'unpriced_tokens', 'unmetered_calls'];

function csvCell(v: string | number): string {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV for showback (USD with 9 decimals: exact nano-USD). */
export function reportCsv(r: CostReport): string {
  const usd = (nano: number) => (nano / 1e9).toFixed(9);
  const line = (row: ReportRow | (TotalsView & { key: string })) =>
    [
      row.key,
      row.calls,
      row.tokens.input,
      row.tokens.output,
      row.tokens.cacheRead,
      row.tokens.cacheWrite,
      usd(row.costNano),
      usd(row.providedNano),
      usd(row.computedNano),
      row.unpricedCalls,
      row.unpricedTokens,
      row.unmeteredCalls,
    ]
      .map(csvCell)
      .join(',');
  return [CSV_HEADER.join(','), ...r.rows.map(line), line({ key: 'TOTAL', ...r.total })].join('\n') + '\n';
}
