import { api, get, whoami } from '../api.js';
import { intervalChart, type Interval } from '../charts.js';
import { card, errorBox, h, int, kv, num, pct, pill, table, time } from '../dom.js';

interface Guardrail {
  metric: string;
  agent?: string;
  maxRegression?: number;
  relative?: boolean;
  minSamples?: number;
}
interface Experiment {
  id: string;
  pipeline: string;
  type: string;
  description?: string;
  coverage: number;
  effectiveCoverage?: number;
  variants?: { name: string; strategy: string; weight: number }[];
  control?: string;
  guardrails?: Guardrail[];
  ramp?: { steps: { share: number; minSamples?: number; minDurationSec?: number }[] };
  layer?: { id: string; range: [number, number] };
  state: { status: string; rampStep?: number; startedAt?: number; promoted?: { variant: string; strategy: string }; rollback?: { by: string; reason?: string } };
}
interface Ci {
  diff: number;
  ci: [number, number] | null;
  pValue?: number;
}
interface Results {
  status: string;
  alpha: number;
  control?: string;
  phases: {
    phase: number;
    variants: { variant: string; strategy: string; n: number; quality: { mean: number | null }; cost: { mean: number | null; n: number }; qualityPerDollar?: number | null }[];
    // null while an arm has fewer than 2 outcomes (nothing to compare yet).
    comparisons?: { variant: string; metric: string; welch: Ci | null; sequential: Ci | null; pHolm?: number }[];
    agentComparisons?: { variant: string; agent: string; budgetDiff: number; utilizationDiff: number; ceilingHit: { welch: Ci | null; sequential: Ci | null } }[];
    // pValue is the sequential test's (always valid); chiSquare is the fixed-sample statistic, for reference only.
    srm?: { chiSquare: number; df: number; pValue: number; mismatch: boolean } | null;
  }[];
  guardrails?: { guardrail: Guardrail; variant: string; judged: boolean; breached: boolean; n: number[] }[];
  ranking?: unknown;
}
interface AuditItem {
  at: number;
  by: string;
  action: string;
  details?: Record<string, unknown>;
}

// maxRegression defaults to 0 (no regression tolerated) when the experiment leaves it out.
const guardText = (g: Guardrail) => `${g.agent ? `${g.agent} ` : ''}${g.metric} ≤ ${g.relative ? pct(g.maxRegression ?? 0, 0) : (g.maxRegression ?? 0)} worse`;
const rampText = (e: Experiment) => {
  const steps = e.ramp?.steps;
  if (!steps?.length) return '–';
  const i = Math.min(e.state.rampStep ?? 0, steps.length - 1);
  return `step ${i + 1}/${steps.length} (${pct(steps[i]!.share, 0)})`;
};

export async function experimentsPage(root: HTMLElement): Promise<void> {
  const { items } = await get<{ items: Experiment[] }>('/v1/experiments');
  root.append(
    h('h1', null, 'Experiments'),
    card(
      table(
        items,
        [
          { title: 'experiment', cell: (e) => h('a', { href: `#/experiments/${encodeURIComponent(e.id)}` }, e.id) },
          { title: 'pipeline', cell: (e) => e.pipeline },
          { title: 'type', cell: (e) => e.type },
          { title: 'state', cell: (e) => pill(e.state.status) },
          { title: 'coverage', num: true, cell: (e) => `${pct(e.coverage, 0)}${e.effectiveCoverage !== undefined && e.effectiveCoverage !== e.coverage ? ` (now ${pct(e.effectiveCoverage, 1)})` : ''}` },
          { title: 'ramp', cell: rampText },
          { title: 'guardrails', cell: (e) => (e.guardrails ?? []).map(guardText).join('; ') || '–' },
        ],
        'No experiments yet. Create one with PUT /v1/experiments/<id> or `apportion experiments apply FILE`.',
        { 'data-testid': 'experiments' },
      ),
    ),
  );
}

/** The rows that can be drawn: a comparison is null until both arms have 2 outcomes. */
function intervals(rows: { label: string; a: Ci | null; b: Ci | null }[]): Interval[] {
  return rows.flatMap((r) => (r.a ? [{ label: r.label, estimate: r.a.diff, ci: r.a.ci, ci2: r.b?.ci ?? null }] : []));
}

export async function experimentPage(root: HTMLElement, id: string, rerender: () => void): Promise<void> {
  const path = `/v1/experiments/${encodeURIComponent(id)}`;
  const [e, results, audit, me] = await Promise.all([get<Experiment>(path), get<Results>(`${path}/results`), get<{ items: AuditItem[] }>(`${path}/audit`), whoami()]);
  const status = e.state.status;
  // The actions are admin routes: an analyst's key would be refused (403), so it is offered none of them.
  const mayAct = me !== 'signed-out' && (!me.authEnabled || me.role === 'admin');
  const message = h('div');
  const act = (label: string, op: string, body: unknown, cls = '', confirmText?: string) =>
    h(
      'button',
      {
        class: cls,
        'data-action': op,
        onclick: async () => {
          if (confirmText && !window.confirm(confirmText)) return;
          message.replaceChildren();
          // One action at a time: a second click (or another button) while one is on its way would send it twice.
          const all = [...actions.querySelectorAll('button')];
          for (const b of all) b.disabled = true;
          try {
            await api('POST', `${path}/${op}`, body);
            rerender();
          } catch (err) {
            message.append(errorBox(err));
            for (const b of all) b.disabled = false;
          }
        },
      },
      label,
    );
  const buttons: HTMLElement[] = [];
  const actions = h('div', { class: 'actions' });
  if (mayAct) {
    if (status === 'draft') buttons.push(act('Start', 'start', {}, 'primary'));
    if (status === 'running') buttons.push(act('Evaluate ramp now', 'evaluate', undefined), act('Pause', 'pause', {}));
    if (status === 'paused') buttons.push(act('Resume', 'resume', {}, 'primary'));
    if (status === 'running' || status === 'paused') buttons.push(act('Roll back', 'rollback', { reason: 'rolled back from the console' }, 'danger', `Roll back ${id}? Every unit goes to control at once.`));
    // Promote: while it runs or is paused, and after a rollback (a guardrail's rollback needs force: the button says so
    // and asks first). An ended experiment (stopped, a variant promoted or not) has nothing left to promote.
    const byGuardrail = status === 'rolled_back' && (e.state.rollback?.by ?? '').startsWith('system:');
    for (const v of e.variants ?? [])
      if (v.name !== e.control && (status === 'running' || status === 'paused' || status === 'rolled_back'))
        buttons.push(
          byGuardrail
            ? act(`Promote ${v.name} anyway`, 'promote', { variant: v.name, force: true }, 'danger', `A guardrail rolled ${id} back (${e.state.rollback?.reason ?? 'no reason given'}). Make ${v.strategy} the default of ${e.pipeline} anyway?`)
            : act(`Promote ${v.name}`, 'promote', { variant: v.name }, '', `Make ${v.strategy} the default of ${e.pipeline} and end ${id}?`),
        );
    actions.append(...buttons);
  }

  root.append(
    h('p', null, h('a', { href: '#/experiments' }, '← Experiments')),
    h('h1', null, e.id, ' ', pill(status)),
    e.description ? h('p', { class: 'muted' }, e.description) : '',
    card(
      kv([
        ['pipeline', e.pipeline],
        ['type', e.type],
        ['variants', (e.variants ?? []).map((v) => `${v.name} → ${v.strategy} (weight ${v.weight})`).join(', ') || '–'],
        ['coverage', `${pct(e.coverage, 0)} of the pipeline's traffic; effective now ${pct(e.effectiveCoverage ?? e.coverage, 1)}`],
        ['ramp', rampText(e)],
        ['layer', e.layer ? `${e.layer.id} [${e.layer.range[0]}, ${e.layer.range[1]})` : '–'],
        ['started', time(e.state.startedAt)],
        ['guardrails', (e.guardrails ?? []).map(guardText).join('; ') || '–'],
        ...(e.state.rollback ? ([['rolled back', `by ${e.state.rollback.by}${e.state.rollback.reason ? `: ${e.state.rollback.reason}` : ''}`]] as [string, string][]) : []),
        ...(e.state.promoted ? ([['promoted', `${e.state.promoted.variant} → ${e.state.promoted.strategy}`]] as [string, string][]) : []),
      ]),
      mayAct
        ? actions
        : h('p', { class: 'muted', 'data-testid': 'read-only' }, `Starting, evaluating, pausing, rolling back and promoting need an admin key (signed in as ${me === 'signed-out' ? 'nobody' : (me.role ?? 'unknown')}).`),
      message,
    ),
  );

  for (const ph of results.phases) {
    root.append(h('h2', null, `Results${results.phases.length > 1 ? ` — phase ${ph.phase}` : ''}`));
    root.append(
      card(
        table(
          ph.variants,
          [
            { title: 'variant', cell: (v) => `${v.variant}${v.variant === results.control ? ' (control)' : ''}` },
            { title: 'strategy', cell: (v) => v.strategy },
            { title: 'n', num: true, cell: (v) => int(v.n) },
            { title: 'quality', num: true, cell: (v) => (v.n ? num(v.quality.mean) : '–') },
            { title: 'cost (USD)', num: true, cell: (v) => (v.cost.n ? num(v.cost.mean, 4) : '–') },
            { title: 'quality per $', num: true, cell: (v) => num(v.qualityPerDollar ?? null, 2) },
          ],
          'No outcomes yet.',
        ),
        ph.srm
          ? h(
              'p',
              { 'data-testid': 'srm' },
              `Sample ratio: sequential test p = ${num(ph.srm.pValue, 4)} (always valid) `,
              ph.srm.mismatch ? pill('SRM mismatch', 'bad') : pill('no mismatch', 'ok'),
              h('span', { class: 'muted' }, ` · fixed-sample χ² = ${num(ph.srm.chiSquare, 2)} (df ${ph.srm.df}), for reference`),
            )
          : h('p', { class: 'muted' }, 'Sample ratio: not enough data.'),
      ),
    );
    const metrics = [...new Set((ph.comparisons ?? []).map((c) => c.metric))];
    const grid = h('div', { class: 'grid' });
    for (const metric of metrics) {
      const rows = (ph.comparisons ?? []).filter((c) => c.metric === metric);
      const drawn = intervals(rows.map((c) => ({ label: c.variant, a: c.welch, b: c.sequential })));
      grid.append(
        card(
          h('h3', null, `${metric}: difference vs control`),
          drawn.length
            ? intervalChart(drawn, { ciLabel: `Welch ${pct(1 - results.alpha, 0)} CI`, ci2Label: 'always-valid (sequential) CI', xLabel: `${metric} (variant − control)` })
            : h('p', { class: 'muted' }, 'Not enough data: every arm needs 2 outcomes.'),
          h('p', { class: 'muted' }, rows.map((c) => (c.welch ? `${c.variant}: Δ ${num(c.welch.diff, 4)}, p ${num(c.welch.pValue ?? null, 4)}, Holm p ${num(c.pHolm ?? null, 4)}` : `${c.variant}: not enough data`)).join(' · ')),
        ),
      );
    }
    const agentRows = ph.agentComparisons ?? [];
    if (agentRows.length)
      grid.append(
        card(
          h('h3', null, 'Per agent: ceiling-hit rate, variant − control'),
          intervalChart(
            intervals(agentRows.map((a) => ({ label: `${a.agent}${(e.variants?.length ?? 0) > 2 ? ` (${a.variant})` : ''}`, a: a.ceilingHit.welch, b: a.ceilingHit.sequential }))),
            { ciLabel: 'Welch CI', ci2Label: 'sequential CI', xLabel: 'ceiling-hit rate difference' },
          ),
          table(agentRows, [
            { title: 'agent', cell: (a) => a.agent },
            { title: 'variant', cell: (a) => a.variant },
            { title: 'budget Δ (tokens)', num: true, cell: (a) => int(a.budgetDiff) },
            { title: 'utilization Δ', num: true, cell: (a) => pct(a.utilizationDiff) },
          ]),
        ),
      );
    if (metrics.length || agentRows.length) root.append(grid);
  }

  if (results.guardrails?.length)
    root.append(
      h('h2', null, 'Guardrails'),
      card(
        table(results.guardrails, [
          { title: 'guardrail', cell: (g) => guardText(g.guardrail) },
          { title: 'variant', cell: (g) => g.variant },
          { title: 'n (variant, control)', num: true, cell: (g) => g.n.join(', ') },
          { title: 'state', cell: (g) => (g.breached ? pill('breached') : g.judged ? pill('ok') : pill('collecting', 'draft')) },
        ]),
      ),
    );

  root.append(
    h('h2', null, 'Audit trail'),
    card(
      table(
        audit.items,
        [
          { title: 'when', cell: (a) => time(a.at) },
          { title: 'who', cell: (a) => a.by },
          { title: 'what', cell: (a) => a.action },
          { title: 'details', cell: (a) => h('code', null, JSON.stringify(a.details ?? {}).slice(0, 240)) },
        ],
        'No changes recorded.',
        { 'data-testid': 'audit' },
      ),
    ),
  );
}
