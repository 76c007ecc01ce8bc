import type { ExperimentResults } from './service.js';
import type { PhaseResult } from './analysis.js';

/** Plain-text tables for `apportion experiments results` (pure). */

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const num = (x: number | null | undefined, digits = 4): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
const p = (x: number | null | undefined): string => (x === null || x === undefined ? '–' : x < 1e-4 ? x.toExponential(1) : x.toFixed(4));
const ci = (c: readonly [number, number] | null | undefined, d = 4): string => (c ? `[${num(c[0], d)}, ${num(c[1], d)}]` : '–');
/** The confidence level of every interval of an experiment with error rate α, as a percentage: 1 − α (α = 0.1: "90 %"). */
export const level = (alpha: number): string => `${Number(((1 - alpha) * 100).toFixed(2))} %`;

export function formatResults(r: ExperimentResults): string {
  const out: string[] = [];
  const welchCi = `Welch ${level(r.alpha)} CI`;
  out.push(`experiment ${r.experiment} (${r.type}) on ${r.pipeline}: ${r.status}, phase ${r.phase}, coverage now ${(r.effectiveCoverage * 100).toFixed(1)} %, α = ${r.alpha}`);
  if (r.state.rollback) out.push(`rolled back by ${r.state.rollback.by}: ${r.state.rollback.reason}`);
  if (r.state.promoted) out.push(`promoted variant ${r.state.promoted.variant} (${r.state.promoted.strategy})`);
  const f = r.state.srm;
  if (f && f.acknowledged) out.push(`sample-ratio mismatch flagged in phase ${f.phase} (p = ${p(f.pValue)}), acknowledged by ${f.acknowledged.by}: ${f.acknowledged.reason}`);
  // A flag of an earlier phase holds nothing (the current phase is tested afresh) and cannot be acknowledged (409).
  else if (f && f.phase !== r.phase) out.push(`⚠ sample-ratio mismatch flagged in phase ${f.phase} (p = ${p(f.pValue)}): do not trust that phase's results; phase ${r.phase} is tested afresh`);
  else if (f) out.push(`⚠ sample-ratio mismatch flagged in phase ${f.phase} (p = ${p(f.pValue)}): do not trust these results; the ramp holds until acknowledged (experiments acknowledge-srm)`);
  const held = new Map((r.state.holdoutPhases ?? []).map((h) => [h.phase, h]));
  for (const ph of r.phases) {
    const h = held.get(ph.phase);
    // The phase's split (held-out share of eligible units) as the results judge it; entries recorded before coverage was kept lack it.
    const cov = h?.coverage !== undefined ? `, coverage ${Number((h.coverage * 100).toFixed(2))} % held out` : '';
    if (h) out.push('', `holdout phase ${h.phase} from ${new Date(h.startedAt).toISOString()} (${h.cause}): held out get ${h.held}, exposed default ${h.exposedDefault}${cov}`);
    out.push('', `phase ${ph.phase}${ph.srm ? `  (sequential SRM p = ${p(ph.srm.pValue)}${ph.srm.mismatch ? ' MISMATCH' : ''})` : ''}`);
    // Results of a phase written (in part) before unit statistics were kept (older results lack `basis`).
    const basis = (ph as { basis?: PhaseResult['basis'] }).basis;
    // Results from before the ceiling-hit and observation bases were reported lack them (then on outcomes).
    const ceilingHit = basis?.ceilingHit ?? 'outcomes';
    const observations = basis?.observations ?? 'outcomes';
    if (basis && [basis.srm, basis.variance, ceilingHit, observations].includes('outcomes') && ph.variants.some((v) => v.n > 0)) {
      out.push(
        `  statistics kept before units were: ${basis.srm === 'outcomes' ? 'SRM on outcome counts' : 'SRM on units'}, ${basis.variance === 'outcomes' ? 'per-outcome variances' : 'unit (cluster-robust) variances'}` +
          `, ceiling hits ${ceilingHit === 'outcomes' ? 'per outcome' : 'on units'}, winsorized cost and quality drops ${observations === 'outcomes' ? 'per outcome' : 'on units'}`,
      );
    }
    out.push(
      table(
        ['variant', 'n', 'quality', 'cost $', 'cost (winsorized)', 'quality/$'],
        ph.variants.map((v) => [
          v.variant + (v.variant === r.control ? ' (control)' : ''),
          String(v.n),
          // An arm without outcomes has no quality, and one whose outcomes reported no cost has no cost: "–", not 0.
          v.n > 0 ? num(v.quality.mean) : '–',
          v.cost.n > 0 ? num(v.cost.mean, 6) : '–',
          v.cost.n > 0 && v.cost.winsorizedMean !== undefined ? num(v.cost.winsorizedMean, 6) : '–',
          num(v.qualityPerDollar, 1),
        ]),
      ),
    );
    if (ph.comparisons.length) {
      out.push('');
      out.push(
        table(
          ['vs control', 'metric', 'diff', 'relative', welchCi, 'p', 'p (Holm)', 'sequential CI', 'seq p'],
          ph.comparisons.map((c) => [
            c.variant,
            c.metric,
            num(c.welch?.diff ?? c.sequential?.diff, c.metric === 'cost' ? 6 : 4),
            c.welch?.relative !== null && c.welch?.relative !== undefined ? `${(c.welch.relative * 100).toFixed(1)} %` : '–',
            ci(c.welch?.ci, c.metric === 'cost' ? 6 : 4),
            p(c.welch?.pValue),
            p(c.pHolm),
            ci(c.sequential?.ci, c.metric === 'cost' ? 6 : 4),
            p(c.sequential?.pValue),
          ]),
        ),
      );
    }
    if (ph.agentComparisons.length) {
      out.push('');
      out.push(
        table(
          ['agent vs control', 'budget diff', 'utilization diff', 'ceiling-hit diff', welchCi, 'p', 'sequential CI'],
          ph.agentComparisons.map((c) => [
            `${c.agent} / ${c.variant}`,
            num(c.budgetDiff, 0),
            num(c.utilizationDiff, 3),
            num(c.ceilingHit.welch?.diff ?? c.ceilingHit.sequential?.diff, 3),
            ci(c.ceilingHit.welch?.ci, 3),
            p(c.ceilingHit.welch?.pValue),
            ci(c.ceilingHit.sequential?.ci, 3),
          ]),
        ),
      );
    }
    const agents = [...new Set(ph.variants.flatMap((v) => Object.keys(v.agents)))].sort();
    if (agents.length) {
      out.push('');
      const rows: string[][] = [];
      for (const a of agents)
        for (const v of ph.variants) {
          const s = v.agents[a];
          if (!s) continue;
          rows.push([
            `${a} / ${v.variant}`,
            String(s.n),
            num(s.utilization, 3),
            num(s.ceilingHitRate, 3),
            num(s.meanAllocated, 0),
            s.truncation ? `${num(s.truncation.drop, 4)} (n ${s.truncation.nHit})` : '–',
            s.atCeiling ? `${num(s.atCeiling.drop, 4)} (n ${s.atCeiling.nHit})` : '–',
          ]);
        }
      out.push(table(['agent / variant', 'n', 'utilization', 'ceiling hits', 'mean budget', 'quality drop when truncated', 'quality drop at ceiling'], rows));
    }
  }
  if (r.guardrails.length) {
    out.push('', 'guardrails (always-valid, current phase)');
    out.push(
      table(
        ['guardrail', 'variant', 'regression', 'CI', 'tolerance', 'status'],
        r.guardrails.map((g) => [
          `${g.guardrail.metric}${g.guardrail.agent ? `:${g.guardrail.agent}` : ''}`,
          g.variant,
          num(g.regression),
          ci(g.ci),
          num(g.tolerance),
          !g.judged ? `waiting (n ${g.n?.join('/')})` : g.breached ? 'BREACHED' : 'ok',
        ]),
      ),
    );
  }
  if (r.criticalPath?.length) {
    out.push('', 'critical path (quality elasticity per agent: 1 = quality falls in proportion to the budget cut)');
    out.push(
      table(
        ['rank', 'agent', 'budget ratio', 'quality diff', 'elasticity', `${level(r.alpha)} CI`, 'critical'],
        [...r.criticalPath]
          .sort((a, b) => (a.rank ?? 99) - (b.rank ?? 99))
          .map((e) => [String(e.rank ?? '–'), e.agent, num(e.budgetRatio, 2), num(e.qualityDiff), num(e.elasticity, 3), ci(e.ci, 3), e.critical === null ? 'n/a' : e.critical ? 'yes' : 'no']),
      ),
    );
    for (const e of r.criticalPath) if (e.unavailable) out.push(`  ${e.agent}: not measured yet: ${e.unavailable}`);
    // Results from before the basis was reported lack it: those intervals were per outcome too.
    const perOutcome = r.criticalPath.filter((e) => e.ci !== null && e.basis !== 'units').map((e) => e.agent);
    if (perOutcome.length) out.push(`  per-outcome variances (statistics kept before unit buckets were) for ${perOutcome.join(', ')}: intervals too narrow when units report several outcomes`);
  }
  return out.join('\n');
}
