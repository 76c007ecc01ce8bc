import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clusterDf, clusteredDiffVariance, clusteredVariance, clustersOf } from '../../src/feedback/units.js';
import { testMoments } from '../../src/rollout/analysis.js';
import { welch } from '../../src/stats/welch.js';
import { momentsOf } from '../../src/stats/winsorize.js';
import { mulberry32 } from '../../src/learner/rng.js';

const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

/** (cluster, value) pairs of clusters given as lists of values. */
const pairsOf = (clusters: readonly (readonly number[])[]): [number, number][] => clusters.flatMap((ys, c) => ys.map((y) => [c, y] as [number, number]));
const sumSq = (ys: readonly number[]): number => {
  const m = ys.reduce((t, y) => t + y, 0) / ys.length;
  return ys.reduce((t, y) => t + (y - m) ** 2, 0);
};

/**
 * The CR2 variance of a mean and its Bell–McCaffrey / Imbens–Kolesár degrees of freedom by the general matrix
 * formulas (Imbens & Kolesár 2016, as their dfadjust package states them), for a regression on a constant: every
 * N × N matrix built out, so it shares nothing with the closed forms under test but the definitions.
 */
function byMatrices(clusters: readonly (readonly number[])[], ik: boolean): { nv: number; df: number } {
  const ys = clusters.flat();
  const cl = clusters.flatMap((c, i) => c.map(() => i));
  const n = ys.length;
  const m = ys.reduce((t, y) => t + y, 0) / n;
  const u = ys.map((y) => y - m);
  const size = (c: number): number => clusters[c]!.length;
  // a_i = A_s Q_s ℓ̃ for a constant: Q = 1/√N, ℓ̃ = 1/√N, A_s = (I − Q_s Q_s')^(−1/2) = (1 − n_s/N)^(−1/2) on 1.
  const a = cl.map((c) => 1 / Math.sqrt(1 - size(c) / n) / n);
  let v = 0;
  for (let c = 0; c < clusters.length; c++) v += cl.reduce((t, x, i) => t + (x === c ? a[i]! * u[i]! : 0), 0) ** 2;
  // G: column s is (I − QQ')'_s a_s.
  const g = clusters.map((_, c) => Array.from({ length: n }, (_, j) => cl.reduce((t, x, i) => t + (x === c ? ((i === j ? 1 : 0) - 1 / n) * a[i]! : 0), 0)));
  let rho = 0;
  let sig = 1;
  if (ik) {
    const ssr = u.reduce((t, x) => t + x * x, 0);
    const den = clusters.reduce((t, c) => t + c.length ** 2, 0) - n;
    const sums = clusters.map((_, c) => cl.reduce((t, x, i) => t + (x === c ? u[i]! : 0), 0));
    rho = den > 0 ? Math.max(0, (sums.reduce((t, s) => t + s * s, 0) - ssr) / den) : 0;
    sig = Math.max(0, ssr / n - rho);
  }
  const omega = (i: number, j: number): number => (i === j ? sig : 0) + (cl[i] === cl[j] ? rho : 0);
  let tr = 0;
  let tr2 = 0;
  for (let s = 0; s < clusters.length; s++) {
    for (let t = 0; t < clusters.length; t++) {
      let x = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) x += g[s]![i]! * omega(i, j) * g[t]![j]!;
      if (s === t) tr += x;
      tr2 += x * x;
    }
  }
  return { nv: n * v, df: (tr * tr) / tr2 };
}

describe('CR2 variance of a mean with units as clusters (pure)', () => {
  it('a hand-computed case: clusters [1, 2, 3], [4, 5], [6]', () => {
    // N = 6, m = 3.5; residual sums e = −4.5, 2, 2.5; N·V = Σ e²/(N − n_b) = 20.25/3 + 4/4 + 6.25/5 = 9.
    // CR1 gave G/(G − 1) · Σ e² / N = 1.5 · 30.5 / 6 = 7.625: the big cluster's residual is shrunk by its leverage 1/2.
    const c = clustersOf(pairsOf([[1, 2, 3], [4, 5], [6]]));
    const v = clusteredVariance(c)!;
    close(v.variance, 9, 1e-12, 'N·V');
    assert.equal(v.clusters, 3);
    // Bell–McCaffrey: p = (1/2, 1/3, 1/6), w = 1/(1 − p) = (2, 3/2, 6/5); tr = 1 and tr of the square
    // Σp² + (Σ w p²)² − Σ w² p⁴ = 7/18 + 0.49 − 251/900 = 0.6, so f = 1/0.6 = 5/3 (CR1 counted G − 1 = 2).
    close(v.df, 5 / 3, 1e-12, 'BM df');
    close(clusterDf(c), 5 / 3, 1e-12, 'BM df');
    // Imbens–Kolesár: Σ (y − m)² = 17.5, ρ = (30.5 − 17.5)/(14 − 6) = 1.625, σ² = 17.5/6 − ρ; against the matrices.
    close(clusterDf(c, 17.5), byMatrices([[1, 2, 3], [4, 5], [6]], true).df, 1e-9, 'IK df');
    assert.ok(clusterDf(c, 17.5) < 5 / 3, 'a positive within-cluster correlation: fewer degrees of freedom than BM');
  });

  it('matches the general matrix formulas on random unequal clusters (variance, BM and IK degrees of freedom)', () => {
    const u = mulberry32(3);
    for (let k = 0; k < 20; k++) {
      const clusters = Array.from({ length: 2 + Math.floor(u() * 6) }, () => {
        const level = u();
        return Array.from({ length: 1 + Math.floor(u() ** 2 * 9) }, () => level + 0.3 * u());
      });
      const c = clustersOf(pairsOf(clusters));
      const ss = sumSq(clusters.flat());
      const bm = byMatrices(clusters, false);
      const ik = byMatrices(clusters, true);
      close(clusteredVariance(c)!.variance, bm.nv, 1e-9, `case ${k}: N·V`);
      close(clusterDf(c), bm.df, 1e-9, `case ${k}: BM df`);
      close(clusterDf(c, ss), ik.df, 1e-9, `case ${k}: IK df`);
      close(clusteredVariance(c, ss)!.df, ik.df, 1e-9, `case ${k}: clusteredVariance df`);
    }
  });

  it('clusters of equal size: CR2 is CR1 and the degrees of freedom are G − 1', () => {
    const clusters = [[0.1, 0.5, 0.9], [0.3, 0.3, 0.2], [0.8, 0.7, 1], [0, 0.2, 0.1]];
    const c = clustersOf(pairsOf(clusters));
    const m = clusters.flat().reduce((t, y) => t + y, 0) / 12;
    const e = clusters.map((ys) => ys.reduce((t, y) => t + y, 0) - 3 * m);
    const cr1 = ((4 / 3) * e.reduce((t, x) => t + x * x, 0)) / 12;
    close(clusteredVariance(c)!.variance, cr1, 1e-12, 'CR2 = CR1');
    close(clusterDf(c), 3, 1e-12, 'BM df');
    close(clusterDf(c, sumSq(clusters.flat())), 3, 1e-12, 'IK df');
  });

  it('one outcome per cluster: the per-outcome variance s² and N − 1 degrees of freedom, under both working models', () => {
    const u = mulberry32(9);
    for (const n of [2, 3, 17, 400]) {
      const ys = Array.from({ length: n }, () => u() ** 3);
      const c = clustersOf(ys.map((y, i) => [i, y] as const));
      const v = clusteredVariance(c, sumSq(ys))!;
      close(v.variance, momentsOf(ys).variance, 1e-12, `n = ${n}: s²`);
      close(v.df, n - 1, 1e-12, `n = ${n}: IK df`);
      close(clusterDf(c), n - 1, 1e-12, `n = ${n}: BM df`);
      // So the Welch interval of two such arms is the per-outcome one.
      const other = Array.from({ length: n + 3 }, () => u());
      const oc = clustersOf(other.map((y, i) => [i, y] as const));
      const w = welch(testMoments(momentsOf(ys), v), testMoments(momentsOf(other), clusteredVariance(oc, sumSq(other))), 0.05)!;
      const p = welch(momentsOf(ys), momentsOf(other), 0.05)!;
      close(w.df, p.df, 1e-9, `n = ${n}: Welch df`);
      close(w.ci[0], p.ci[0], 1e-9, `n = ${n}: Welch lower`);
      close(w.ci[1], p.ci[1], 1e-9, `n = ${n}: Welch upper`);
    }
  });

  it('fewer than 2 clusters: no variance; empty clusters are skipped', () => {
    assert.equal(clusteredVariance(clustersOf([[0, 1], [0, 2]])), undefined);
    const v = clusteredVariance({ n: [0, 3, 0, 2, 0, 1], s: [0, 6, 0, 9, 0, 6] })!;
    close(v.variance, 9, 1e-12, 'zeros skipped');
    assert.equal(v.clusters, 3);
  });

  it('the degrees of freedom fall towards 1 as one cluster holds most outcomes', () => {
    const few = (big: number) => clusterDf({ n: [big, 1, 1, 1, 1], s: [0, 0, 0, 0, 0] });
    close(few(1), 4, 1e-12, 'equal');
    assert.ok(few(10) < 4 && few(100) < few(10) && few(10_000) < 1.1, `${few(10)}, ${few(100)}, ${few(10_000)}`);
  });
});

describe('CR2 variance of a difference of two groups sharing clusters (pure)', () => {
  it('a hand-computed case', () => {
    // Cluster 0: a [1, 2], b [3]; 1: a [4], b [0, 1]; 2: a [3], b [2]; 3: b [4]. N_a = 4, m_a = 2.5; N_b = 5, m_b = 2.
    // Residual sums a: −2, 1.5, 0.5, –; b: 1, −3, 0, 2. h = N_g/(N_g − n_g,c): a 2, 4/3, 4/3; b 5/4, 5/3, 5/4, 5/4.
    // e_a = √h·E/N_a = −√2/2, 0.75/√3, 0.25/√3; e_b = √5/10, −√15/5, 0, √5/5.
    // Σ e_a² = 17/24, Σ e_b² = 17/20, Σ e_a·e_b = −√10/20 − 0.15·√5, V = Σ e_a² + Σ e_b² − 2 Σ e_a·e_b.
    const pairs: [number, 0 | 1, number][] = [[0, 0, 1], [0, 0, 2], [0, 1, 3], [1, 0, 4], [1, 1, 0], [1, 1, 1], [2, 0, 3], [2, 1, 2], [3, 1, 4]];
    const d = clusteredDiffVariance(pairs)!;
    close(d.va, 17 / 24, 1e-12, 'group a');
    close(d.vb, 17 / 20, 1e-12, 'group b');
    close(d.v, 17 / 24 + 17 / 20 + Math.sqrt(10) / 10 + 0.3 * Math.sqrt(5), 1e-12, 'difference');
    assert.deepEqual([d.ga, d.gb], [3, 4]);
    // Each group's part is its own CR2 variance of the mean, with its own degrees of freedom.
    const a = clusteredVariance(clustersOf(pairs.filter((p) => p[1] === 0).map((p) => [p[0], p[2]] as const)))!;
    const b = clusteredVariance(clustersOf(pairs.filter((p) => p[1] === 1).map((p) => [p[0], p[2]] as const)))!;
    close(d.va, a.variance / 4, 1e-12, 'group a as a mean');
    close(d.vb, b.variance / 5, 1e-12, 'group b as a mean');
    close(d.dfa, a.df, 1e-12, 'group a df');
    close(d.dfb, b.df, 1e-12, 'group b df');
  });

  it('one outcome per cluster: the per-outcome Welch variance s_a²/N_a + s_b²/N_b', () => {
    const u = mulberry32(4);
    const ys = Array.from({ length: 60 }, () => u());
    const group = ys.map(() => (u() < 0.3 ? 1 : 0) as 0 | 1);
    const a = ys.filter((_, i) => group[i] === 0);
    const b = ys.filter((_, i) => group[i] === 1);
    const d = clusteredDiffVariance(ys.map((y, i) => [i, group[i]!, y] as [number, 0 | 1, number]), [sumSq(a), sumSq(b)])!;
    close(d.v, momentsOf(a).variance / a.length + momentsOf(b).variance / b.length, 1e-12, 'V');
    close(d.dfa, a.length - 1, 1e-12, 'df a');
    close(d.dfb, b.length - 1, 1e-12, 'df b');
  });
});
