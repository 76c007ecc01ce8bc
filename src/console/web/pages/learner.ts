import { ApiError, get, getOptional, readAll, type Read } from '../api.js';
import { intervalChart, lineChart } from '../charts.js';
import { card, h, int, num, pct, pill, rateLimitNotice, table, time, unavailable } from '../dom.js';

interface Version {
  version: number;
  createdAt: number;
  signature?: string;
  metrics: Record<string, unknown>;
  /** Present when the server gates new versions (accepted / rejected and why). */
  gate?: unknown;
  [k: string]: unknown;
}
interface Models {
  pipeline: string;
  active: number | null;
  compatible: boolean;
  versions: Version[];
  /** Present when the server reports guard events (rollbacks, refusals) for the pipeline's model. */
  guardEvents?: GuardEvent[];
  /** The runtime guard's and drift recovery's reverts of serving versions, newest first (`GET /v1/models`). */
  guard?: { reverts?: { reason: string; from: number; to: number; at: number; diff: number; ci?: number[] }[]; [k: string]: unknown };
  /** The serving version's runtime-guard test, while a trained version serves (`GET /v1/models`). */
  runtimeGuard?: RuntimeGuardView;
  /** Explore-first, when the learned strategy sets it (`GET /v1/models`). */
  exploreFirst?: { until: number; share: number; status: 'exploring' | 'ended'; endedAt?: number; endedAtOutcomes?: number };
  [k: string]: unknown;
}

/** Explore-first's state in a line: random splits on a share of the safe start until an outcome count, or when it ended. */
function exploreFirstLine(e: NonNullable<Models['exploreFirst']>) {
  return e.status === 'exploring'
    ? h('p', { 'data-testid': 'explore-first' }, pill('exploring first', 'warn'), ` the safe start serves random splits on ${pct(e.share, 0)} of its decisions, and no version is activated, until outcome ${int(e.until)}`)
    : h('p', { 'data-testid': 'explore-first', class: 'muted' }, `Explore-first ended at outcome ${int(e.endedAtOutcomes ?? e.until)}${e.endedAt !== undefined ? ` (${time(e.endedAt)})` : ''}.`);
}
/**
 * The newest version's declared features whose values its training window could not read (`unusableFeatures` in
 * `GET /v1/models`: a number sent as a string, a category not among the declared values), which count as missing.
 */
function unusableFeaturesLine(v: Version) {
  const bad = v.unusableFeatures as Record<string, { present: number; unusable: number; example?: string }> | undefined;
  if (!bad || Object.keys(bad).length === 0) return null;
  const parts = Object.entries(bad).map(([name, u]) => `${name}: ${int(u.unusable)} of ${int(u.present)} values${u.example !== undefined ? ` (e.g. ${u.example})` : ''}`);
  return h('p', { 'data-testid': 'unusable-features' }, pill('unreadable feature values', 'warn'), ` v${v.version}'s training window: ${parts.join('; ')} could not be read by the declaration and count as missing.`);
}
/** The serving version against the control arm (`GET /v1/models` runtimeGuard). */
interface RuntimeGuardView {
  version: number;
  status: string;
  diff: number | null;
  ci: number[] | null;
  learned: { n: number };
  control: { n: number; strategy: string };
  controlShare: number;
  probation?: { on: boolean; share: number | null; margin: number };
}

/**
 * The runtime guard in a line: the serving version's realised reward against the control arm's, and the control's
 * share now, with why (on probation until the version has shown it is not worse; lowered while it leads clearly).
 */
function runtimeGuardLine(g: RuntimeGuardView) {
  const p = g.probation;
  return h(
    'p',
    { 'data-testid': 'runtime-guard' },
    p?.on ? pill(`on probation: control ${pct(g.controlShare, 0)}`, 'warn') : pill(`control ${pct(g.controlShare, g.controlShare < 0.01 ? 1 : 0)}`, 'draft'),
    ` v${g.version} against the control arm (${g.control.strategy}): ${g.diff !== null ? `${signed(g.diff)}${interval(g.ci)} reward per decision` : 'no difference yet'} over ${int(g.learned.n)} and ${int(g.control.n)} decisions.`,
    p?.on ? ` The control arm keeps ${pct(g.controlShare, 0)} of the decisions until the version has shown it is no worse than the control by more than ${p.margin}.` : '',
  );
}

/** The safe start's guard state (`GET /v1/models` guard.safeStart): its exploration scale, the last shrink, the running tests. */
interface SafeStartView {
  scale: number;
  /** The exploration rate's own factor, halved by the cost test (absent: 1). */
  exploration?: number;
  shrinks: number;
  by?: 'control' | 'cost';
  reason?: string;
  current?: {
    status: string;
    learned: { n: number; mean: number };
    control: { n: number; mean: number; strategy: string };
    diff: number | null;
    ci: number[] | null;
    cost?: { status: string; cost: number | null; ci: number[] | null; share: number; margin: number | null; away: { n: number }; atDefault: { n: number } };
  };
}

/** A reward difference with its sign, and its interval, as the guard's lines print them. */
const signed = (x: number) => `${x >= 0 ? '+' : ''}${num(x, 4)}`;
const interval = (ci: readonly number[] | null | undefined) => (ci && ci.length === 2 ? ` [${num(ci[0], 4)}, ${num(ci[1], 4)}]` : '');

/**
 * The safe start in a few lines: what its exploration costs per decision against the default split (the cost test),
 * how its learned traffic compares with the control arm, and whether the guard shrank its exploration and why.
 */
function safeStartLines(ss: SafeStartView) {
  const c = ss.current;
  const cost = c?.cost;
  return h(
    'div',
    { 'data-testid': 'safe-start' },
    cost && cost.cost !== null
      ? h(
          'p',
          null,
          pill(cost.status !== 'worse' ? 'safe start' : cost.margin !== null ? 'exploration over its margin' : 'exploration below the default', cost.status === 'worse' ? 'warn' : 'draft'),
          ` The safe start's exploration against the default split: ${signed(cost.cost)} reward per decision${interval(cost.ci)} (${int(cost.away.n)} perturbed decisions, ${int(cost.atDefault.n)} at the default split; ${cost.margin !== null ? `margin ${cost.margin}` : 'reported only: no safeStartMargin'}).`,
        )
      : null,
    c && c.diff !== null ? h('p', { class: 'muted' }, `Against the control arm (${c.control.strategy}): ${signed(c.diff)}${interval(c.ci)} over ${int(c.learned.n)} and ${int(c.control.n)} decisions.`) : null,
    ss.shrinks > 0
      ? h('p', null, pill(`exploration at ${ss.scale * (ss.exploration ?? 1)}`, 'warn'), ` shrunk ${ss.shrinks} time${ss.shrinks === 1 ? '' : 's'}${ss.by ? `, last by the ${ss.by} test` : ''}: ${ss.reason ?? ''}`)
      : null,
  );
}

interface GuardEvent {
  at?: number;
  kind?: string;
  version?: number;
  reason?: string;
  [k: string]: unknown;
}
interface Est {
  value: number;
  lo: number;
  hi: number;
}
interface Ope {
  strategy: string;
  events: number;
  support: number;
  ess: number;
  /** null when the logs do not support an estimate of this strategy (`reason` says why). */
  ips: Est | null;
  snips: Est | null;
  dr: Est | null;
  dm?: number | null;
  reason?: string | null;
  logged: number;
}
/** An estimate with its interval, or why there is none (no logged support for the strategy's actions). */
function est(e: Est | null, reason: string | null | undefined): string {
  return e ? `${num(e.value)} [${num(e.lo)}, ${num(e.hi)}]` : `n/a${reason ? ` (${reason})` : ''}`;
}
interface Shadow {
  observed: number;
  agreement: number | null;
  servedReward?: number | null;
  reason?: string;
}
interface Strategy {
  id: string;
  pipeline: string;
  kind: string;
  params?: { shadow?: boolean };
}

const metric = (v: Version, k: string) => (typeof v.metrics[k] === 'number' ? (v.metrics[k] as number) : null);
const gateOf = (v: Version): string | null => {
  const g = v.gate ?? v.metrics.gate ?? v.metrics.decision;
  if (g === undefined || g === null) return null;
  if (typeof g === 'string' || typeof g === 'boolean') return String(g);
  const o = g as Record<string, unknown>;
  return [o.status ?? o.decision ?? o.result ?? o.accepted, o.reason].filter((x) => x !== undefined).join(': ') || JSON.stringify(g);
};
/** Guard events: the model API's reverts (a serving version retired by the runtime guard or drift recovery). */
const guardEventsOf = (m: Models): GuardEvent[] | undefined =>
  m.guardEvents ??
  m.guard?.reverts?.map((r) => ({
    at: r.at,
    kind: `revert (${r.reason})`,
    version: r.from,
    reason: `v${r.from} → ${r.to === 0 ? 'the control strategy' : `v${r.to}`}; reward difference ${num(r.diff, 4)}${interval(r.ci)}`,
  }));

export async function learnerPage(root: HTMLElement): Promise<void> {
  root.append(h('h1', null, 'Learner'));
  const [{ items: pipelines }, { items: strategies }] = await Promise.all([get<{ items: { id: string }[] }>('/v1/pipelines'), get<{ items: Strategy[] }>('/v1/strategies')]);
  // Reads a few at a time (a tenant may have hundreds of pipelines and strategies); a failed one is shown as
  // unavailable in place, and a 429 stops the rest (the notice says when to retry).
  const modelReads = await readAll(pipelines, (p) => getOptional<Models>(`/v1/models/${encodeURIComponent(p.id)}`));
  let limited = modelReads.rateLimited;
  const failedModels = pipelines.flatMap((p, i) => { const r = modelReads.results[i]!; return r.ok ? [] : [{ pipeline: p.id, code: r.error.code }]; });
  const models = modelReads.results.flatMap((r) => (r.ok && r.value ? [r.value] : []));
  const withLearner = models.filter((m) => m.versions.length > 0 || strategies.some((s) => s.pipeline === m.pipeline && s.kind === 'learned'));
  const ofLearner = (m: Models) => strategies.filter((s) => s.pipeline === m.pipeline);
  const opeJobs = limited ? [] : withLearner.flatMap((m) => ofLearner(m).map((s) => ({ m, s })));
  const opeBatch = await readAll(opeJobs, ({ m, s }) => getOptional<Ope>(`/v1/pipelines/${encodeURIComponent(m.pipeline)}/ope?strategy=${encodeURIComponent(s.id)}&resamples=200`));
  limited ??= opeBatch.rateLimited;
  const shadowJobs = limited ? [] : withLearner.flatMap((m) => ofLearner(m).filter((s) => s.kind === 'learned' && s.params?.shadow).map((s) => ({ m, s })));
  const shadowBatch = await readAll(shadowJobs, ({ m, s }) => getOptional<Shadow>(`/v1/pipelines/${encodeURIComponent(m.pipeline)}/shadow?strategy=${encodeURIComponent(s.id)}`));
  limited ??= shadowBatch.rateLimited;
  /** A read of a batch that was not run (a 429 came before it) is unavailable with the 429's code. */
  const readOf = <T>(jobs: readonly { m: Models; s: Strategy }[], results: readonly Read<T>[], m: Models, s: Strategy): Read<T> => {
    const i = jobs.findIndex((j) => j.m === m && j.s === s);
    return i >= 0 ? results[i]! : { ok: false, error: new ApiError(429, 'RATE_LIMITED', 'not read: an earlier read was rate limited') };
  };
  const notice = rateLimitNotice(limited && { ...(limited.retryAfter !== undefined ? { retryAfter: limited.retryAfter } : {}), skipped: limited.skipped });
  if (notice) root.append(notice);
  for (const f of failedModels) root.append(h('section', { 'data-testid': `learner-${f.pipeline}` }, h('h2', null, f.pipeline), card(h('p', null, 'Model versions ', unavailable(f.code)))));
  if (withLearner.length === 0 && failedModels.length === 0) {
    root.append(card(h('p', { class: 'muted' }, 'No learned strategy yet. Declare features (PUT /v1/pipelines/<id>/features) and add a strategy of kind "learned"; `npm run demo` does both.')));
    return;
  }
  for (const m of withLearner) {
    const section = h('section', { 'data-testid': `learner-${m.pipeline}` });
    root.append(section);
    const versions = [...m.versions].sort((a, b) => a.version - b.version);
    section.append(
      h('h2', null, `${m.pipeline} `, m.active !== null ? pill(`serving v${m.active}${m.compatible ? '' : ' (incompatible: default served)'}`, m.compatible ? 'ok' : 'warn') : pill('default strategy serves: no version has cleared the activation gate', 'draft')),
    );
    if (m.exploreFirst) section.append(exploreFirstLine(m.exploreFirst));
    if (m.runtimeGuard && m.active !== null) section.append(runtimeGuardLine(m.runtimeGuard));
    const newest = versions.at(-1);
    if (newest) {
      const line = unusableFeaturesLine(newest);
      if (line) section.append(line);
    }
    const safeStart = m.guard?.safeStart as SafeStartView | undefined;
    if (safeStart && m.active === null) section.append(safeStartLines(safeStart));
    const curve = versions.filter((v) => metric(v, 'holdoutMse') !== null);
    const grid = h('div', { class: 'grid' });
    grid.append(
      card(
        h('h3', null, 'Learning curve'),
        curve.length
          ? lineChart(
              [
                { label: 'holdout MSE', points: curve.map((v) => ({ x: metric(v, 'rows') ?? v.version, y: metric(v, 'holdoutMse')! })) },
                { label: 'train MSE', points: curve.map((v) => ({ x: metric(v, 'rows') ?? v.version, y: metric(v, 'trainMse') ?? Number.NaN })), dashed: true },
              ],
              { xLabel: 'training rows (one point per model version)', yLabel: 'reward MSE' },
            )
          : h('p', { class: 'muted' }, 'No trained version yet.'),
      ),
    );
    section.append(grid);
    section.append(
      card(
        h('h3', null, 'Model versions'),
        table(
          [...versions].reverse(),
          [
            { title: 'version', cell: (v) => [`v${v.version}`, v.version === m.active ? pill('active', 'ok') : null] },
            { title: 'trained', cell: (v) => time(v.createdAt) },
            { title: 'rows', num: true, cell: (v) => int(metric(v, 'rows')) },
            { title: 'train MSE', num: true, cell: (v) => num(metric(v, 'trainMse'), 4) },
            { title: 'holdout MSE', num: true, cell: (v) => num(metric(v, 'holdoutMse'), 4) },
            { title: 'backend', cell: (v) => String(v.metrics.backend ?? '–') },
            { title: 'gate', cell: (v) => gateOf(v) ?? h('span', { class: 'muted' }, 'not reported') },
          ],
          'No versions.',
        ),
        guardEventsOf(m)
          ? [h('h3', null, 'Guard events'), table(guardEventsOf(m)!, [
              { title: 'when', cell: (g) => time(g.at) },
              { title: 'event', cell: (g) => String(g.kind ?? '–') },
              { title: 'version', cell: (g) => (g.version !== undefined ? `v${g.version}` : '–') },
              { title: 'reason', cell: (g) => String(g.reason ?? '') },
            ], 'No guard events.', { 'data-testid': 'guard-events' })]
          : null,
      ),
    );
    // Off-policy value of every strategy of the pipeline, from the same logged decisions.
    const strats = ofLearner(m);
    const opeReads = strats.map((s) => ({ s, r: readOf(opeJobs, opeBatch.results, m, s) }));
    const opes = opeReads.flatMap(({ r }) => (r.ok && r.value && r.value.events > 0 ? [r.value] : []));
    const opeFailed = opeReads.flatMap(({ s, r }) => (r.ok ? [] : [{ s, code: r.error.code }]));
    if (opeFailed.length)
      section.append(
        h(
          'div',
          { class: 'card', 'data-testid': 'ope-unavailable' },
          h('h3', null, 'Off-policy evaluation'),
          ...opeFailed.map(({ s, code }) => h('p', null, `${s.id}: `, unavailable(code))),
        ),
      );
    if (opes.length) {
      const logged = opes[0]!.logged;
      grid.append(
        card(
          h('h3', null, 'Off-policy value (doubly robust, 95 % CI)'),
          intervalChart(
            opes.flatMap((o) => (o.dr ? [{ label: o.strategy, estimate: o.dr.value, ci: [o.dr.lo, o.dr.hi] as const, ci2: o.ess > 0 && o.snips ? ([o.snips.lo, o.snips.hi] as const) : null }] : [])),
            { ciLabel: 'DR 95 % CI', ci2Label: 'SNIPS 95 % CI', xLabel: `estimated reward (logged policy: ${num(logged)})` },
          ),
        ),
      );
      section.append(
        card(
          h('h3', null, 'Off-policy evaluation'),
          table(opes, [
            { title: 'strategy', cell: (o) => o.strategy },
            { title: 'events', num: true, cell: (o) => int(o.events) },
            { title: 'support', num: true, cell: (o) => int(o.support) },
            { title: 'ESS', num: true, cell: (o) => num(o.ess, 1) },
            { title: 'IPS', num: true, cell: (o) => est(o.ips, o.reason) },
            { title: 'SNIPS', num: true, cell: (o) => est(o.snips, o.reason) },
            { title: 'DR', num: true, cell: (o) => est(o.dr, o.reason) },
            { title: 'logged', num: true, cell: (o) => num(o.logged) },
          ]),
        ),
      );
    }
    const shadows = strats.filter((s) => s.kind === 'learned' && s.params?.shadow);
    for (const s of shadows) {
      const r = readOf(shadowJobs, shadowBatch.results, m, s);
      if (!r.ok) {
        section.append(card(h('h3', null, `Shadow: ${s.id}`), h('p', { 'data-testid': 'shadow' }, unavailable(r.error.code))));
        continue;
      }
      const sh = r.value;
      if (sh)
        section.append(
          card(
            h('h3', null, `Shadow: ${s.id}`),
            h('p', { 'data-testid': 'shadow' }, sh.agreement === null ? `No comparison yet: ${sh.reason ?? 'nothing observed'}.` : `Agreement with the served split: ${pct(sh.agreement)} over ${int(sh.observed)} decisions with an outcome; served reward ${num(sh.servedReward ?? null)}.`),
          ),
        );
    }
  }
}
