import { get, readAll, type Read } from '../api.js';
import { barChart } from '../charts.js';
import { card, h, int, num, pill, rateLimitNotice, table, unavailable } from '../dom.js';

interface Agent {
  name: string;
  priority?: string;
  minTokens?: number;
  maxTokens?: number;
  model?: string;
}
interface Pipeline {
  id: string;
  description?: string;
  defaultTotalTokens: number;
  defaultStrategy?: string;
  agents: Agent[];
  version?: number;
}
interface Strategy {
  id: string;
  pipeline: string;
  kind: string;
  description?: string;
  params?: unknown;
  version?: number;
}
interface Stats {
  count: number;
  quality: { mean: number | null };
  cost: { mean: number | null; n: number };
  agents: Record<string, { n: number; utilization: number | null; ceilingHitRate: number | null; meanAllocated?: number | null; meanConsumed?: number | null }>;
}

export async function pipelinesPage(root: HTMLElement): Promise<void> {
  root.append(h('h1', null, 'Pipelines & strategies'));
  const [{ items: pipelines }, { items: strategies }] = await Promise.all([get<{ items: Pipeline[] }>('/v1/pipelines'), get<{ items: Strategy[] }>('/v1/strategies')]);
  if (!pipelines.length) root.append(card(h('p', { class: 'muted' }, 'No pipelines yet. Register one with PUT /v1/pipelines/<id>.')));
  // Every strategy's stats, a few at a time; a failed read is shown as unavailable, never as zero outcomes.
  const shown = strategies.filter((s) => pipelines.some((p) => p.id === s.pipeline));
  const batch = await readAll(shown, (s) => get<Stats>(`/v1/strategies/${encodeURIComponent(s.id)}/stats`));
  const statsOf = new Map<string, Read<Stats>>(shown.map((s, i) => [s.id, batch.results[i]!]));
  const notice = rateLimitNotice(batch.rateLimited);
  if (notice) root.append(notice);
  for (const p of pipelines) {
    const own = strategies.filter((s) => s.pipeline === p.id);
    const reads = own.map((s) => statsOf.get(s.id)!);
    const stats = reads.map((r) => (r.ok ? r.value : undefined));
    const failure = (i: number) => { const r = reads[i]!; return r.ok ? undefined : unavailable(r.error.code); };
    const section = h('section', { 'data-testid': `pipeline-${p.id}` });
    section.append(
      h('h2', null, p.id),
      p.description ? h('p', { class: 'muted' }, p.description) : '',
      card(
        h('p', null, `Default total ${int(p.defaultTotalTokens)} tokens; default strategy ${p.defaultStrategy ?? '@uniform (built in)'}.`),
        table(p.agents, [
          { title: 'agent', cell: (a) => a.name },
          { title: 'priority', cell: (a) => a.priority ?? 'standard' },
          { title: 'min tokens', num: true, cell: (a) => int(a.minTokens ?? 0) },
          { title: 'max tokens', num: true, cell: (a) => (a.maxTokens !== undefined ? int(a.maxTokens) : '–') },
          { title: 'model', cell: (a) => a.model ?? '–' },
        ]),
      ),
      card(
        h('h3', null, 'Strategies'),
        table(
          own.map((s, i) => ({ s, st: stats[i], i })),
          [
            { title: 'strategy', cell: ({ s }) => [s.id, s.id === p.defaultStrategy ? pill('default', 'ok') : null] },
            { title: 'kind', cell: ({ s }) => s.kind },
            { title: 'outcomes', num: true, cell: ({ st, i }) => (st ? int(st.count) : failure(i)) },
            { title: 'quality', num: true, cell: ({ st, i }) => (st ? (st.count ? num(st.quality.mean) : '–') : failure(i)) },
            { title: 'cost (USD)', num: true, cell: ({ st, i }) => (st ? (st.cost.n ? num(st.cost.mean, 4) : '–') : failure(i)) },
            { title: 'definition', cell: ({ s }) => h('code', null, JSON.stringify(s.params ?? {}).slice(0, 160)) },
          ],
          'No strategies.',
        ),
      ),
    );
    const measured = own.map((s, i) => ({ s, st: stats[i] })).filter((x) => (x.st?.count ?? 0) > 0);
    if (measured.length) {
      const agents = p.agents.map((a) => a.name);
      const series = (k: 'utilization' | 'ceilingHitRate') => measured.map(({ s, st }) => ({ label: s.id, data: agents.map((a) => st!.agents[a]?.[k] ?? null) }));
      section.append(
        h(
          'div',
          { class: 'grid' },
          card(h('h3', null, 'Per-agent utilization (used ÷ allocated)'), barChart(agents, series('utilization'), { yLabel: 'utilization', max: 1 })),
          card(h('h3', null, 'Per-agent ceiling-hit rate (≥ 95 % used or truncated)'), barChart(agents, series('ceilingHitRate'), { yLabel: 'ceiling-hit rate', max: 1 })),
        ),
      );
    }
    root.append(section);
  }
}
