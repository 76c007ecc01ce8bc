import { createHash } from 'node:crypto';

/**
 * Unit statistics of an experiment arm (docs/rollout.md, "Outcomes per unit"): assignment is per unit, so the SRM test
 * counts units and the intervals use a variance with units as clusters. Both are kept in bounded memory.
 *
 * SRM: a Bloom-style bitmap per experiment phase, shared by the phase's arms, of UNIT_BITMAP_BITS bits; a unit sets
 * UNIT_BITMAP_HASHES bits and counts (in its arm's `units`) when at least one of them was not set yet. A unit whose
 * bits were all set already (by its own earlier outcome, or by other units: a collision) does not count. Collisions
 * depend on the unit's hash and the bitmap, never on its arm, so they thin every arm alike and the counts stay
 * multinomial with the weights under correct assignment.
 *
 * Intervals: each unit hashes into one of UNIT_BUCKETS buckets per arm, which keep the outcome count and sum of each
 * metric; the buckets are the clusters of the cluster-robust (delta-method) variance of the arm's mean.
 */

/** Bits of a phase's unit bitmap: 2^23 bits = 1 MiB per phase (Redis allocates up to the highest bit set). */
export const UNIT_BITMAP_BITS = 2 ** 23;
/**
 * Bits a unit sets. With m = 2^23 bits and k = 4, the share of new units taken for seen ones after n units is
 * (1 − e^(−kn/m))^k: 0.2 % at 500,000 units per phase, 2 % at 1 M, 14 % at 2 M, 50 % at 4.5 M.
 */
export const UNIT_BITMAP_HASHES = 4;
/** Clusters of the cluster-robust variance per arm. */
export const UNIT_BUCKETS = 1024;
/**
 * Clusters (non-empty buckets) an arm needs before its cluster-robust variance is used for an interval or a guardrail:
 * with a handful of clusters the variance is itself too uncertain (the interval would be a t with a few degrees of
 * freedom, which the always-valid interval's normal mixture does not allow for). Until then the comparison has no
 * always-valid interval (its Welch interval takes the few clusters into its degrees of freedom) and the guardrail is
 * not judged.
 */
export const UNIT_MIN_CLUSTERS = 30;

export interface UnitSpec {
  readonly bucket: number;
  readonly bits: readonly number[];
}

/**
 * A unit's bucket and bitmap bits (pure): from SHA-256 of the unit key, independent of the variant hash (murmur3 with
 * the experiment's seed), so neither says anything about the unit's arm.
 */
export function unitSpec(unitKey: string): UnitSpec {
  const h = createHash('sha256').update('apportion-unit-stats\0').update(unitKey, 'utf8').digest();
  const bits: number[] = [];
  for (let i = 0; i < UNIT_BITMAP_HASHES; i++) bits.push(h.readUInt32BE(4 * i) % UNIT_BITMAP_BITS);
  return { bucket: h.readUInt32BE(4 * UNIT_BITMAP_HASHES) % UNIT_BUCKETS, bits };
}

/** The unit argument of apply-outcome.lua: "<bucket> <bit> <bit> …". */
export const unitArg = (s: UnitSpec): string => [s.bucket, ...s.bits].join(' ');

/**
 * One arm's (or group's) clusters for one metric: for each cluster b its outcome count n_b and the metric's sum S_b
 * (index-aligned; a cluster with n_b ≤ 0 is empty and skipped, so a fixed array of every bucket can be passed as is).
 */
export interface Clusters {
  readonly n: ArrayLike<number>;
  readonly s: ArrayLike<number>;
}

/** A cluster-robust variance of a mean: the effective per-outcome variance N·V, its degrees of freedom, the clusters. */
export interface ClusteredVariance {
  /** N·V (what `variance / n` of the intervals expects). */
  readonly variance: number;
  /** Small-sample degrees of freedom of V (`clusterDf`). */
  readonly df: number;
  /** Non-empty clusters. */
  readonly clusters: number;
}

/** Clusters of (cluster, value) pairs (pure): the values of one cluster summed, each cluster once. */
export function clustersOf(pairs: Iterable<readonly [number, number]>): Clusters {
  const byCluster = new Map<number, [number, number]>();
  for (const [c, y] of pairs) {
    const cur = byCluster.get(c);
    if (cur) {
      cur[0] += 1;
      cur[1] += y;
    } else byCluster.set(c, [1, y]);
  }
  const n: number[] = [];
  const s: number[] = [];
  for (const [cn, cs] of byCluster.values()) {
    n.push(cn);
    s.push(cs);
  }
  return { n, s };
}

/** Non-empty clusters G, outcomes N = Σ n_b and the metric's total Σ S_b of one arm's clusters (pure). */
export function clusterTotals(c: Clusters): { g: number; total: number; sum: number } {
  let g = 0;
  let total = 0;
  let sum = 0;
  for (let i = 0; i < c.n.length; i++) {
    const n = c.n[i]!;
    if (n <= 0) continue;
    g++;
    total += n;
    sum += c.s[i]!;
  }
  return { g, total, sum };
}

/**
 * The cluster-robust variance of the mean m = S/N with the CR2 (Bell–McCaffrey) leverage adjustment (pure). For a mean
 * (a regression on a constant) cluster b's leverage is n_b/N and its adjustment (1 − n_b/N)^(−1/2) on its residual sum:
 *   V = Σ_b (S_b − m·n_b)² / (1 − n_b/N) / N²,   so N·V = Σ_b (S_b − m·n_b)² / (N − n_b)
 * which is unbiased when the outcomes are independent with one variance, whatever the clusters' sizes (CR1's
 * G/(G − 1) · Σ_b (S_b − m·n_b)² / N² is so only when they are equal, and runs low when a few clusters hold most
 * outcomes). With clusters of equal size the two are the same; with one outcome per cluster both are Σ (y − m)² /
 * (N (N − 1)) = s²/N, the per-outcome variance of the mean. `ss`: the outcomes' sum of squared deviations from m
 * (Σ (y − m)²), for the degrees of freedom (`clusterDf`). Undefined with fewer than 2 clusters.
 */
export function clusteredVariance(c: Clusters, ss?: number): ClusteredVariance | undefined {
  const { g, total, sum } = clusterTotals(c);
  if (g < 2 || total <= 0) return undefined;
  const m = sum / total;
  let v = 0;
  for (let i = 0; i < c.n.length; i++) {
    const n = c.n[i]!;
    if (n <= 0) continue;
    const e = c.s[i]! - m * n;
    v += (e * e) / (total - n);
  }
  return { variance: v, df: clusterDf(c, ss), clusters: g };
}

/**
 * Small-sample degrees of freedom of the CR2 variance of a mean (pure): Bell & McCaffrey's (2002) f = tr(M'ΩM)² /
 * tr((M'ΩM)²), M the N × G matrix whose column b is (I − H)'_b a_b (a_b = (1 − p_b)^(−1/2) · 1/N on cluster b's
 * outcomes, p_b = n_b/N, H the hat matrix of the constant), as Imbens & Kolesár (2016) and their `dfadjust` package
 * compute it. For a mean, with w_b = 1/(1 − p_b):
 *   M'ΩM_bc = √(w_b w_c) · [σ²/N · (δ_bc p_b − p_b p_c) + ρ · p_b p_c (δ_bc − p_b − p_c + Σ p²)]
 * under the working model Ω of independent outcomes with variance σ² plus a covariance ρ between two outcomes of one
 * cluster (Moulton's). Without `ss` the working model is Bell–McCaffrey's, ρ = 0 (σ² cancels): f depends only on the
 * clusters' sizes, is G − 1 when they are equal (so N − 1 with one outcome per cluster) and falls towards 1 as one
 * cluster holds most outcomes. With `ss` (Σ (y − m)² over the outcomes) it is Imbens–Kolesár's: ρ and σ² are
 * estimated as dfadjust does, ρ = (Σ_b e_b² − ss)/(Σ_b n_b² − N) (e_b = S_b − m·n_b; taken as 0 when negative, as
 * dfadjust's `rho0` option does, or when every cluster holds one outcome) and σ² = ss/N − ρ; it too is G − 1 with
 * clusters of equal size. Computed in O(G) from the closed form of both traces.
 */
export function clusterDf(c: Clusters, ss?: number): number {
  const { g, total, sum } = clusterTotals(c);
  if (g < 2) return 1;
  let a = 1;
  let b = 0;
  if (ss !== undefined) {
    const m = sum / total;
    let ee = 0;
    let nn = 0;
    for (let i = 0; i < c.n.length; i++) {
      const n = c.n[i]!;
      if (n <= 0) continue;
      const e = c.s[i]! - m * n;
      ee += e * e;
      nn += n * n;
    }
    const rho = nn > total ? Math.max(0, (ee - ss) / (nn - total)) : 0;
    a = Math.max(0, ss / total - rho) / total;
    b = rho;
  }
  // M'ΩM = W^(1/2) K W^(1/2) with K_bc = L_bc + δ_bc d_b, L_bc = p_b p_c (k − b p_b − b p_c), k = b Σp² − a, and
  // d_b = a p_b + b p_b². tr = Σ w_b K_bb; tr of the square = Σ_bc w_b w_c L_bc² + Σ_b w_b² (2 L_bb d_b + d_b²), the
  // first sum from T_j = Σ_b w_b p_b^(2+j): k² T0² − 4 k b T0 T1 + 2 b² (T0 T2 + T1²).
  let p2 = 0;
  for (let i = 0; i < c.n.length; i++) if (c.n[i]! > 0) p2 += (c.n[i]! / total) ** 2;
  const k = b * p2 - a;
  let t0 = 0;
  let t1 = 0;
  let t2 = 0;
  let tr = 0;
  let diag = 0;
  for (let i = 0; i < c.n.length; i++) {
    const n = c.n[i]!;
    if (n <= 0) continue;
    const p = n / total;
    const w = total / (total - n);
    const wp2 = w * p * p;
    t0 += wp2;
    t1 += wp2 * p;
    t2 += wp2 * p * p;
    const l = p * p * (k - 2 * b * p);
    const d = a * p + b * p * p;
    tr += w * (l + d);
    diag += w * w * (2 * l * d + d * d);
  }
  const tr2 = k * k * t0 * t0 - 4 * k * b * t0 * t1 + 2 * b * b * (t0 * t2 + t1 * t1) + diag;
  if (!(tr > 0) || !(tr2 > 0)) return g - 1;
  return Math.max(1, (tr * tr) / tr2);
}

/**
 * The cluster-robust variance of a difference of two means m_a − m_b whose outcomes fall into the same clusters (pure):
 * two groups of one arm's outcomes (e.g. those where an agent hit its budget and those where it did not), so a unit's
 * outcomes may be in both and the two means are correlated. This is the CR2 variance of the contrast in the regression
 * of y on the two groups' indicators with these clusters: the hat matrix is block-diagonal by group, so cluster c's
 * leverage adjustment is (1 − n_g,c/N_g)^(−1/2) on each group's residual sum in it. With e_g,c = (S_g,c − m_g·n_g,c)/N_g
 * and h_g,c = N_g/(N_g − n_g,c):
 *   V = Σ_c (√h_a,c·e_a,c − √h_b,c·e_b,c)²
 * which is each group's own CR2 variance (`clusteredVariance` ÷ N_g) plus the other's minus twice their covariance over
 * the clusters shared; never negative. When no cluster holds both groups the covariance is 0 and V is the sum of the two
 * variances; with one outcome per cluster that is s_a²/N_a + s_b²/N_b, the per-outcome (Welch) variance of the
 * difference. Returns V, each group's part (Σ h_g,c·e_g,c²) with its clusters and degrees of freedom (`clusterDf` over the
 * group's clusters; `ssA`, `ssB` its Σ (y − m_g)², as for `clusterDf`), or undefined when a group has fewer than 2
 * clusters.
 */
export function clusteredDiffVariance(
  pairs: Iterable<readonly [cluster: number, group: 0 | 1, y: number]>,
  ss?: readonly [number, number],
): { v: number; va: number; vb: number; ga: number; gb: number; dfa: number; dfb: number } | undefined {
  const by = new Map<number, [number, number, number, number]>();
  const tot = [0, 0, 0, 0];
  for (const [c, g, y] of pairs) {
    let cur = by.get(c);
    if (!cur) by.set(c, (cur = [0, 0, 0, 0]));
    cur[2 * g]! += 1;
    cur[2 * g + 1]! += y;
    tot[2 * g]! += 1;
    tot[2 * g + 1]! += y;
  }
  const cells = [...by.values()];
  const group = (g: 0 | 1): Clusters => ({ n: cells.map((c) => c[2 * g]!), s: cells.map((c) => c[2 * g + 1]!) });
  const ga = cells.filter((c) => c[0] > 0).length;
  const gb = cells.filter((c) => c[2] > 0).length;
  if (ga < 2 || gb < 2) return undefined;
  const [na, sa, nb, sb] = tot as [number, number, number, number];
  const ma = sa / na;
  const mb = sb / nb;
  let v = 0;
  let va = 0;
  let vb = 0;
  for (const c of cells) {
    const ea = (Math.sqrt(na / (na - c[0])) * (c[1] - ma * c[0])) / na;
    const eb = (Math.sqrt(nb / (nb - c[2])) * (c[3] - mb * c[2])) / nb;
    v += (ea - eb) ** 2;
    va += ea * ea;
    vb += eb * eb;
  }
  return { v, va, vb, ga, gb, dfa: clusterDf(group(0), ss?.[0]), dfb: clusterDf(group(1), ss?.[1]) };
}
