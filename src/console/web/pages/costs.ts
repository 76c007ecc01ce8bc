import { get, readAll, whoami } from '../api.js';
import { barChart } from '../charts.js';
import { card, errorBox, h, int, pct, pill, rateLimitNotice, table, unavailable, usd } from '../dom.js';

interface Totals {
  calls: number;
  tokens: { input: number; output: number; cacheRead: number; total: number };
  costUsd: number;
  unpricedCalls: number;
  complete: boolean;
}
interface Node {
  spanId: string;
  traceId: string;
  children: string[];
  depth: number;
  agent: string;
  kind: string;
  status: string;
  role: string;
  failed: boolean;
  model?: string;
  attempt?: number;
  selfCostUsd: number;
  subtree: Totals;
  priceSource: string;
}
interface CostTree {
  sessionId: string;
  traces: string[];
  total: Totals;
  nodes: Node[];
  byAgent?: ({ key: string } & Totals)[];
  attempts?: { failed: Totals; successful: Totals; failedSpans: number; retriedSpans: number; maxAttempt: number };
  coordinator?: { agent: string; costUsd: number; overhead: number } | null;
}
interface Report {
  groupBy: string;
  from: string;
  to: string;
  rows: ({ key: string } & Totals)[];
  total: Totals;
}
interface Envelopes {
  pipeline: string;
  sessions: number;
  roles: { agent: string; sessions: number; tokens: { p50: number; p95: number; p99: number }; costUsd: { p50: number; p95: number; p99: number }; recommended: { tokens: number; costUsd: number }; utilization: { median: number } | null; exhaustionRate: number; flags: string[] }[];
}

/** Sessions listed on the Costs page; the listing says when there are more. */
const SESSION_LIMIT = 50;
/** Tree levels the cost tree indents; deeper nodes are drawn at this indent with their depth written out. */
const MAX_INDENT = 12;
const DIMS = ['customer', 'team', 'agent', 'model', 'day'] as const;

/** Named sessions first; traces that named no session (`trace-…`) only as a short tail; each newest first, as listed. */
function sessionLinks(sessions: readonly string[]): HTMLElement {
  const link = (s: string, i: number) => [i ? ' · ' : '', h('a', { href: `#/costs/session/${encodeURIComponent(s)}` }, s)];
  const named = sessions.filter((s) => !s.startsWith('trace-'));
  const bare = sessions.filter((s) => s.startsWith('trace-'));
  const tail = bare.slice(0, named.length ? 5 : 20);
  return h(
    'div',
    { 'data-testid': 'sessions' },
    named.length ? h('p', null, ...named.flatMap(link)) : null,
    tail.length ? h('p', { class: 'muted' }, `Traces without a session id${bare.length > tail.length ? ` (${tail.length} of ${bare.length})` : ''}: `, ...tail.flatMap(link)) : null,
  );
}

export async function costsPage(root: HTMLElement): Promise<void> {
  root.append(h('h1', null, 'Costs'));
  const [{ sessions, truncated }, { items: pipelines }, me] = await Promise.all([get<{ sessions: string[]; truncated?: boolean }>(`/v1/console/sessions?limit=${SESSION_LIMIT}`), get<{ items: { id: string }[] }>('/v1/pipelines'), whoami()]);
  // A tenant key reads its own showback row only (by customer: the tenant); the other groupings span tenants.
  const tenant = me !== 'signed-out' && me.tenant ? me.tenant : undefined;
  const dims = tenant ? (['customer'] as const) : DIMS;

  const open = h('input', { placeholder: 'session id', 'aria-label': 'session id' });
  const openProblem = h('div', { 'data-testid': 'open-problem' });
  root.append(
    h('h2', null, 'Session cost trees'),
    card(
      h('form', { class: 'actions', onsubmit: (e: Event) => {
        e.preventDefault();
        openProblem.replaceChildren();
        if (open.value.trim()) location.hash = `#/costs/session/${encodeURIComponent(open.value.trim())}`;
        else {
          // An empty id was a silent no-op: say which field needs what.
          openProblem.append(errorBox('session id: enter the id of a session to open its cost tree.'));
          open.focus();
        }
      } }, open, h('button', { type: 'submit' }, 'Open')),
      openProblem,
      sessions.length ? sessionLinks(sessions) : h('p', { class: 'muted' }, 'No sessions with spans yet. Send spans to POST /v1/spans or OTLP to POST /v1/traces.'),
      truncated
        ? h('p', { class: 'muted', 'data-testid': 'sessions-truncated' }, `Not every session is listed: the listing stops at ${SESSION_LIMIT}, the most recently written (named sessions before traces without one). Open another by its id above.`)
        : null,
    ),
  );

  root.append(h('h2', null, 'Showback'));
  const body = h('div');
  const tabs = h('div', { class: 'tabs' });
  // The last tab clicked wins: an earlier answer that arrives later is dropped, and a failed one is shown in place.
  let showSeq = 0;
  const show = async (dim: string) => {
    const seq = ++showSeq;
    for (const b of tabs.querySelectorAll('button')) {
      b.classList.toggle('active', b.textContent === dim);
      // The selected tab is said, not only drawn (screen readers, keyboard users).
      b.setAttribute('aria-pressed', String(b.textContent === dim));
    }
    let r: Report;
    try {
      r = await get<Report>(`/v1/reports/costs?groupBy=${dim}`);
    } catch (e) {
      if (seq === showSeq) {
        body.setAttribute('data-dim', dim);
        body.replaceChildren(errorBox(e));
      }
      return;
    }
    if (seq !== showSeq) return;
    body.setAttribute('data-dim', dim);
    const rows = [...r.rows].sort((a, b) => (dim === 'day' ? a.key.localeCompare(b.key) : b.costUsd - a.costUsd));
    body.replaceChildren(
      barChart(rows.map((x) => x.key), [{ label: 'cost (USD)', data: rows.map((x) => x.costUsd) }], { yLabel: 'USD', small: true }),
      table(
        rows,
        [
          { title: dim, cell: (x) => x.key },
          { title: 'calls', num: true, cell: (x) => int(x.calls) },
          { title: 'tokens', num: true, cell: (x) => int(x.tokens.total) },
          { title: 'cost', num: true, cell: (x) => usd(x.costUsd) },
          { title: 'unpriced calls', num: true, cell: (x) => int(x.unpricedCalls) },
        ],
        'No spend in this window.',
        { 'data-testid': 'showback' },
      ),
      h('p', { class: 'muted' }, `${r.from} to ${r.to}: total ${usd(r.total.costUsd)} over ${int(r.total.calls)} calls${r.total.complete ? '' : ' (some calls unpriced)'}.`),
    );
  };
  for (const d of dims) tabs.append(h('button', { onclick: () => void show(d) }, d));
  root.append(card(tabs, body, tenant ? h('p', { class: 'muted' }, `Signed in with a key of tenant ${tenant}: its own spend only (showback by team, agent, model or day needs an operator key).`) : null));
  await show('customer');

  root.append(h('h2', null, 'Budget envelopes'));
  // A few at a time; a pipeline whose envelopes could not be read says so in place (it is not left out).
  const envs = await readAll(pipelines, (p) => get<Envelopes>(`/v1/pipelines/${encodeURIComponent(p.id)}/envelopes`));
  const notice = rateLimitNotice(envs.rateLimited);
  if (notice) root.append(notice);
  for (const [i, read] of envs.results.entries()) {
    if (!read.ok) {
      root.append(h('div', { class: 'card', 'data-testid': `envelopes-${pipelines[i]!.id}` }, h('h3', null, pipelines[i]!.id), h('p', null, 'Envelopes ', unavailable(read.error.code))));
      continue;
    }
    const env = read.value;
    if (env.sessions === 0) continue;
    root.append(
      card(
        h('h3', null, `${env.pipeline} (${int(env.sessions)} sessions)`),
        table(env.roles, [
          { title: 'agent', cell: (r) => r.agent },
          { title: 'tokens P50 / P95 / P99', num: true, cell: (r) => `${int(r.tokens.p50)} / ${int(r.tokens.p95)} / ${int(r.tokens.p99)}` },
          { title: 'cost P95', num: true, cell: (r) => usd(r.costUsd.p95) },
          { title: 'recommended (1.5 × P95)', num: true, cell: (r) => `${int(r.recommended.tokens)} tok · ${usd(r.recommended.costUsd)}` },
          { title: 'median utilization', num: true, cell: (r) => pct(r.utilization?.median ?? null, 0) },
          { title: 'exhausted', num: true, cell: (r) => pct(r.exhaustionRate, 0) },
          { title: 'flags', cell: (r) => (r.flags.length ? r.flags.map((f) => pill(f, 'warn')) : '–') },
        ]),
      ),
    );
  }
}

export async function sessionPage(root: HTMLElement, id: string): Promise<void> {
  const t = await get<CostTree>(`/v1/sessions/${encodeURIComponent(id)}/cost-tree`);
  const byId = new Map(t.nodes.map((n) => [`${n.traceId}/${n.spanId}`, n]));
  const childIds = new Set(t.nodes.flatMap((n) => n.children.map((c) => `${n.traceId}/${c}`)));
  const ordered: Node[] = [];
  const walk = (n: Node) => {
    ordered.push(n);
    for (const c of n.children) {
      const k = byId.get(`${n.traceId}/${c}`);
      if (k) walk(k);
    }
  };
  for (const n of t.nodes) if (!childIds.has(`${n.traceId}/${n.spanId}`)) walk(n);
  const byAgent = t.byAgent ?? [];
  const failed = t.attempts?.failed;
  const coord = t.coordinator;
  root.append(
    h('p', null, h('a', { href: '#/costs' }, '← Costs')),
    h('h1', null, `Session ${id}`),
    card(
      h('p', { 'data-testid': 'session-total' },
        `Total ${usd(t.total.costUsd)} over ${int(t.total.calls)} calls and ${int(t.total.tokens.total)} tokens in ${t.traces.length} trace(s)${t.total.complete ? '' : ` (some calls unpriced: ${int(t.total.unpricedCalls)} of ${int(t.total.calls)})`}. `,
        failed ? `Failed attempts: ${int(failed.calls)} calls costing ${usd(failed.costUsd)} (${int(t.attempts?.retriedSpans ?? 0)} retried). ` : '',
        coord ? `Coordinator (${coord.agent}) overhead: ${usd(coord.costUsd)}, ${pct(coord.overhead, 0)} of the session.` : 'No coordinator identified.',
      ),
      barChart(byAgent.map((a) => a.key), [{ label: 'cost by agent (USD)', data: byAgent.map((a) => a.costUsd) }], { yLabel: 'USD', small: true }),
    ),
    card(
      table(
        ordered,
        [
          {
            title: 'span',
            // Indented by depth up to MAX_INDENT levels; deeper nodes say their depth instead, so a deep tree does not
            // push the figures out of view.
            cell: (n) =>
              h(
                'span',
                { style: `display:block;padding-left:${Math.min(n.depth, MAX_INDENT) * 18}px`, class: n.failed ? 'failed' : '', title: `depth ${n.depth}` },
                n.depth > MAX_INDENT ? `└ (depth ${n.depth}) ` : n.depth ? '└ ' : '',
                `${n.agent} · ${n.kind}`,
                n.model ? ` · ${n.model}` : '',
              ),
          },
          { title: 'attempt', cell: (n) => [n.attempt ? String(n.attempt) : '', n.failed ? pill('failed', 'bad') : null] },
          { title: 'self cost', num: true, cell: (n) => usd(n.selfCostUsd) },
          { title: 'subtree cost', num: true, cell: (n) => usd(n.subtree.costUsd) },
          { title: 'subtree tokens', num: true, cell: (n) => int(n.subtree.tokens.total) },
          { title: 'calls', num: true, cell: (n) => int(n.subtree.calls) },
          { title: 'price', cell: (n) => n.priceSource },
        ],
        'No spans.',
        { class: 'tree', 'data-testid': 'cost-tree' },
      ),
    ),
  );
}
