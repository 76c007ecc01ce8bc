import { get, readAll } from '../api.js';
import { amount, card, h, pct, pill, rateLimitNotice, table, time, unavailable } from '../dom.js';

interface Balance {
  scope: string;
  unit: string;
  allocated: number;
  remaining: number;
  reserved: number;
  spent: number;
  debt: number;
  frozen: boolean;
  overagePolicy: string;
  period?: string;
}
interface Overview {
  tenants: string[];
  reservations: { tenant: string; id: string; scope: string; unit: string; amount: number; expiresAt: number; parent?: string }[];
  alerts: { kind: 'threshold'; tenant: string; scope: string; unit: string; threshold: number; used: number; allocated: number; at: number }[];
  /** Absent from servers older than the overrun listing. */
  overruns?: { kind: 'overrun'; tenant: string; scope: string; unit: string; overrun: number; used: number; allocated: number; reservation?: string; at: number }[];
  truncated: boolean;
}

/** A stacked bar: spent (+ debt), reserved, remaining, as shares of the allocation. */
function usageBar(b: Balance): HTMLElement {
  const total = Math.max(1, b.allocated, b.spent + b.debt + b.reserved);
  const seg = (v: number, color: string, title: string) => h('span', { style: `width:${(100 * v) / total}%;background:${color}`, title });
  return h('div', { class: 'bar' }, seg(b.spent + b.debt, b.debt > 0 ? '#b91c1c' : '#2563eb', 'spent'), seg(b.reserved, '#f59e0b', 'reserved'));
}

/** Entries of each listing (`GET /v1/console/budgets`'s default limit). */
const LIMIT = 100;

export async function budgetsPage(root: HTMLElement): Promise<void> {
  root.append(h('h1', null, 'Budgets'));
  const ov = await get<Overview>('/v1/console/budgets');
  if (ov.tenants.length === 0) {
    root.append(card(h('p', { class: 'muted' }, 'No budgets yet. Create one with PUT /v1/budgets or `apportion budgets set`.')));
    return;
  }
  if (ov.truncated) root.append(h('p', { class: 'muted', 'data-testid': 'budgets-truncated' }, `Not everything is listed: tenants, live reservations, alerts and overruns are each cut at ${LIMIT} entries.`));
  // A few tenants at a time; a tenant whose balances could not be read says so in place (the others are shown).
  const trees = await readAll(ov.tenants, (t) => get<{ balances: Balance[] }>(`/v1/balances?scope=${encodeURIComponent(`tenant:${t}`)}`));
  const notice = rateLimitNotice(trees.rateLimited);
  if (notice) root.append(notice);
  for (const [i, tenant] of ov.tenants.entries()) {
    const read = trees.results[i]!;
    if (!read.ok) {
      root.append(h('h2', null, `tenant:${tenant}`), h('div', { class: 'card', 'data-testid': `budget-tree-${tenant}` }, h('p', null, 'Balances ', unavailable(read.error.code))));
      continue;
    }
    const rows = [...read.value.balances].sort((a, b) => b.unit.localeCompare(a.unit) || a.scope.localeCompare(b.scope));
    root.append(
      h('h2', null, `tenant:${tenant}`),
      card(
        table(
          rows,
          [
            {
              title: 'scope',
              cell: (b) => {
                const parts = b.scope.split('/');
                return h('span', { style: `display:block;padding-left:${(parts.length - 1) * 18}px` }, parts.length > 1 ? '└ ' : '', parts.at(-1)!);
              },
            },
            { title: 'unit', cell: (b) => (b.unit === 'USD_MICROCENTS' ? 'USD' : 'tokens') },
            { title: 'allocated', num: true, cell: (b) => amount(b.allocated, b.unit) },
            { title: 'reserved', num: true, cell: (b) => amount(b.reserved, b.unit) },
            { title: 'spent', num: true, cell: (b) => amount(b.spent, b.unit) },
            { title: 'remaining', num: true, cell: (b) => amount(b.remaining, b.unit) },
            { title: 'used', cell: (b) => [usageBar(b), h('span', { class: 'muted' }, pct(b.allocated ? (b.spent + b.debt) / b.allocated : null, 0))] },
            { title: 'policy', cell: (b) => [b.overagePolicy, b.debt ? ` · debt ${amount(b.debt, b.unit)}` : '', b.frozen ? pill('FROZEN') : null] },
          ],
          'No budgets.',
          { class: 'tree', 'data-testid': `budget-tree-${tenant}` },
        ),
      ),
    );
  }
  root.append(
    h('h2', null, 'Live reservations'),
    card(
      table(
        ov.reservations,
        [
          { title: 'reservation', cell: (r) => h('code', null, r.id) },
          { title: 'scope', cell: (r) => r.scope },
          { title: 'held', num: true, cell: (r) => amount(r.amount, r.unit) },
          { title: 'expires', cell: (r) => time(r.expiresAt) },
          { title: 'draws from', cell: (r) => (r.parent ? h('code', null, r.parent) : '–') },
        ],
        'No live reservations.',
        { 'data-testid': 'reservations' },
      ),
    ),
    h('h2', null, 'Alerts'),
    card(
      table(
        ov.alerts,
        [
          { title: 'when', cell: (a) => time(a.at) },
          { title: 'scope', cell: (a) => a.scope },
          { title: 'threshold', cell: (a) => pill(`${a.threshold} %`, a.threshold >= 100 ? 'bad' : a.threshold >= 80 ? 'warn' : '') },
          { title: 'used', num: true, cell: (a) => amount(a.used, a.unit) },
          { title: 'of', num: true, cell: (a) => amount(a.allocated, a.unit) },
        ],
        'No threshold crossings.',
        { 'data-testid': 'alerts' },
      ),
    ),
    h('h2', null, 'Overruns'),
    card(
      h('p', { class: 'muted' }, 'Spend charged beyond what the overage policy allowed (commits are never refused for an overage).'),
      table(
        ov.overruns ?? [],
        [
          { title: 'when', cell: (o) => time(o.at) },
          { title: 'scope', cell: (o) => o.scope },
          { title: 'overrun', num: true, cell: (o) => pill(amount(o.overrun, o.unit), 'bad') },
          { title: 'used', num: true, cell: (o) => amount(o.used, o.unit) },
          { title: 'of', num: true, cell: (o) => amount(o.allocated, o.unit) },
          { title: 'reservation', cell: (o) => (o.reservation ? h('code', null, o.reservation) : '–') },
        ],
        'No overruns.',
        { 'data-testid': 'overruns' },
      ),
    ),
  );
}
