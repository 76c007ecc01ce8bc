import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chiSquareSf, normalCdf, normalSf, tQuantile, tTwoSided } from '../../src/stats/distributions.js';
import { fromWelford } from '../../src/stats/moments.js';
import { holm } from '../../src/stats/multiple.js';
import { csHalfwidth, csPValue, sequentialDiff } from '../../src/stats/sequential.js';
import { srm } from '../../src/stats/srm.js';
import { welch } from '../../src/stats/welch.js';
import { bernoulliMoments, momentsOf, winsorizedMoments } from '../../src/stats/winsorize.js';

/** Relative closeness |a − b| ≤ tol·|b| (absolute when b = 0), so tiny tail probabilities are checked too. */
function close(a: number, b: number, tol: number, what: string): void {
  assert.ok(Math.abs(a - b) <= tol * (b === 0 ? 1 : Math.abs(b)), `${what}: ${a} vs ${b}`);
}

/** Moments from a summary (n, mean, sd) the way the Lua Welford state would hold them. */
const summary = (n: number, mean: number, sd: number) => fromWelford(n, mean, sd * sd * (n - 1));

// Reference values: scipy 1.17 (stats.t, stats.chi2, stats.norm, ttest_ind_from_stats, chisquare).
describe('distributions against scipy', () => {
  it('Student t tails and quantiles', () => {
    close(tTwoSided(2.228138851986, 10), 0.05, 1e-9, 't(10)');
    close(tTwoSided(1.5, 3.7), 0.2135981692020135, 1e-9, 't(3.7)');
    close(tTwoSided(5, 2), 0.037749551350623724, 1e-9, 't(2)');
    close(tTwoSided(0.3, 120), 0.7646962111751864, 1e-9, 't(120)');
    close(tQuantile(0.975, 10), 2.228138851986274, 1e-9, 'qt(10)');
    close(tQuantile(0.975, 17.165), 2.1082717221008425, 1e-8, 'qt(17.165)');
    close(tQuantile(0.995, 3.5), 5.085702223091256, 1e-8, 'qt(3.5)');
  });
  it('chi-square survival', () => {
    close(chiSquareSf(3.841458820694124, 1), 0.05, 1e-9, 'chi2(1) 95%');
    close(chiSquareSf(0.99009901, 1), 0.31971817678867104, 1e-7, 'chi2(1)');
    close(chiSquareSf(20, 3), 0.00016974243555282632, 1e-7, 'chi2(3)');
    close(chiSquareSf(35, 1), 3.2970532689972886e-9, 1e-6, 'chi2(1) tail');
    close(chiSquareSf(1e-3, 4), 0.9999998750416589, 1e-9, 'chi2(4) head');
  });
  it('normal tails keep relative accuracy far out', () => {
    close(normalSf(1.96), 0.024997895148220435, 1e-6, 'sf(1.96)');
    close(normalSf(6), 9.865876450376946e-10, 1e-6, 'sf(6)');
    close(normalCdf(-3.2), 0.0006871379379158471, 1e-6, 'cdf(-3.2)');
  });
});

describe('Welch', () => {
  it('matches scipy ttest_ind_from_stats (unequal variances)', () => {
    const w = welch(summary(10, 20, 5), summary(12, 17, 4))!;
    close(w.t, 1.5322617553657474, 1e-9, 't');
    close(w.df, 17.16519174041298, 1e-9, 'df');
    close(w.pValue, 0.14368059067344688, 1e-8, 'p');
    close(w.ci[0], -1.1277606893398948, 1e-8, 'ci lo');
    close(w.ci[1], 7.127760689339895, 1e-8, 'ci hi');
    const w2 = welch(summary(5000, 0.71, 0.2), summary(4800, 0.7, 0.25))!;
    close(w2.t, 2.1810972770630612, 1e-9, 't2');
    close(w2.pValue, 0.029201511086894807, 1e-7, 'p2');
  });
  it('needs two observations per side', () => assert.equal(welch(summary(1, 1, 0), summary(10, 1, 1)), null));
});

describe('SRM (chi-square goodness of fit)', () => {
  it('matches scipy chisquare', () => {
    const a = srm([5000, 5100], [1, 1])!;
    close(a.chiSquare, 0.9900990099009901, 1e-12, 'chi');
    close(a.pValue, 0.3197181768128675, 1e-7, 'p');
    assert.equal(a.mismatch, false);
    const b = srm([821, 1040, 1139], [1, 1, 1])!;
    close(b.chiSquare, 52.962, 1e-12, 'chi3');
    close(b.pValue, 3.158259598569679e-12, 1e-5, 'p3');
    assert.equal(b.mismatch, true);
    const c = srm([1910, 8090], [0.2, 0.8])!;
    close(c.pValue, 0.024448945310089332, 1e-7, 'weighted');
    const d = srm([5000, 5400], [1, 1])!;
    close(d.pValue, 8.769942375590228e-5, 1e-6, 'flagged');
    assert.equal(d.mismatch, true, 'p < 0.001 flags');
  });
  it('a zero-weight variant with traffic is a mismatch', () => assert.equal(srm([10, 10, 1], [1, 1, 0])!.mismatch, true));
});

describe('Holm, moments, winsorization', () => {
  it('Holm step-down adjusted p-values in input order', () => {
    const adj = holm([0.01, 0.04, 0.03, 0.005]);
    [0.03, 0.06, 0.06, 0.02].forEach((want, i) => close(adj[i]!, want, 1e-12, `p${i}`));
  });
  it('Bernoulli and plain moments agree', () => {
    const b = bernoulliMoments(3, 10);
    const m = momentsOf([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    close(b.variance, m.variance, 1e-12, 'var');
    close(b.mean, 0.3, 1e-12, 'mean');
  });
  it('winsorization caps the tail at the quantile', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1).concat([1_000_000]);
    const w = winsorizedMoments(xs, 0.99);
    assert.ok(w.cap < 1000 && w.mean < 60, `cap ${w.cap}, mean ${w.mean}`);
  });
});

describe('confidence sequence', () => {
  it('is wider than the fixed-horizon interval and shrinks like sqrt(log n / n)', () => {
    const hw1 = csHalfwidth(1, 1000, 0.05);
    const hw2 = csHalfwidth(1, 100_000, 0.05);
    assert.ok(hw1 > 1.96 / Math.sqrt(1000));
    assert.ok(hw2 < hw1 / 5);
    const s = sequentialDiff(summary(5000, 0.71, 0.2), summary(4800, 0.7, 0.25))!;
    const w = welch(summary(5000, 0.71, 0.2), summary(4800, 0.7, 0.25))!;
    assert.ok(s.ci[1] - s.ci[0] > w.ci[1] - w.ci[0]);
  });
  it('its p-value crosses α exactly where the interval stops covering 0', () => {
    const s2 = 0.08;
    const n = 4000;
    const hw = csHalfwidth(s2, n, 0.05);
    close(csPValue(hw, s2, n, 0.05), 0.05, 1e-9, 'p at the boundary');
    assert.ok(csPValue(hw * 1.01, s2, n, 0.05) < 0.05);
    assert.ok(csPValue(hw * 0.99, s2, n, 0.05) > 0.05);
  });
});
