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
 * Sums over the clusters of one arm and metric: G non-empty clusters, N outcomes, S = Σ S_b, SS = Σ S_b², NS = Σ n_b S_b,
 * NN = Σ n_b² (n_b outcomes and S_b the metric's sum in cluster b).
 */
export interface ClusterSums {
  readonly g: number;
  readonly n: number;
  readonly s: number;
  readonly ss: number;
  readonly ns: number;
  readonly nn: number;
}

export const emptyClusterSums = (): ClusterSums => ({ g: 0, n: 0, s: 0, ss: 0, ns: 0, nn: 0 });

export function addCluster(acc: ClusterSums, n: number, s: number): ClusterSums {
  if (n <= 0) return acc;
  return { g: acc.g + 1, n: acc.n + n, s: acc.s + s, ss: acc.ss + s * s, ns: acc.ns + n * s, nn: acc.nn + n * n };
}

/**
 * The cluster-robust (delta-method) variance of the arm's mean m = S/N (pure):
 *   V = G/(G − 1) · Σ_b (S_b − m·n_b)² / N²
 * With one outcome per cluster (n_b = 1, G = N) this is Σ (y − m)² / (N (N − 1)) = s²/N, the per-outcome variance of
 * the mean. Returned as the effective per-outcome variance N·V (what `variance / n` of the intervals expects), or
 * undefined with fewer than 2 clusters.
 */
export function clusteredVariance(c: ClusterSums): number | undefined {
  if (c.g < 2 || c.n <= 0) return undefined;
  const m = c.s / c.n;
  const ss = Math.max(0, c.ss - 2 * m * c.ns + m * m * c.nn);
  return (c.g / (c.g - 1)) * ss / c.n;
}

/** Cluster sums of (cluster, value) pairs (pure): the values of one cluster summed, each cluster counted once. */
export function clusterSumsOf(pairs: Iterable<readonly [number, number]>): ClusterSums {
  const byCluster = new Map<number, [number, number]>();
  for (const [c, y] of pairs) {
    const cur = byCluster.get(c);
    if (cur) {
      cur[0] += 1;
      cur[1] += y;
    } else byCluster.set(c, [1, y]);
  }
  let acc = emptyClusterSums();
  for (const [n, s] of byCluster.values()) acc = addCluster(acc, n, s);
  return acc;
}

/**
 * The cluster-robust variance of a difference of two means m_a − m_b whose outcomes fall into the same clusters (pure):
 * two groups of one arm's outcomes (e.g. those where an agent hit its budget and those where it did not), so a unit's
 * outcomes may be in both and the two means are correlated. With e_g,c = (S_g,c − m_g·n_g,c)/N_g the cluster c's
 * deviation in group g and f_g = G_g/(G_g − 1) (G_g the clusters holding group g):
 *   V = Σ_c (√f_a·e_a,c − √f_b·e_b,c)²
 * which is f_a·Σ e_a² + f_b·Σ e_b² (each group's own cluster-robust variance, `clusteredVariance` ÷ N) minus twice the
 * covariance over the clusters shared; never negative. When no cluster holds both groups the covariance is 0 and V is
 * the sum of the two variances; with one outcome per cluster that is s_a²/N_a + s_b²/N_b, the per-outcome (Welch)
 * variance of the difference. Returns V and each group's part (f_g·Σ e_g², for the degrees of freedom), or undefined
 * when a group has fewer than 2 clusters.
 */
export function clusteredDiffVariance(pairs: Iterable<readonly [cluster: number, group: 0 | 1, y: number]>): { v: number; va: number; vb: number; ga: number; gb: number } | undefined {
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
  let ga = 0;
  let gb = 0;
  for (const c of by.values()) {
    if (c[0] > 0) ga++;
    if (c[2] > 0) gb++;
  }
  if (ga < 2 || gb < 2) return undefined;
  const [na, sa, nb, sb] = tot as [number, number, number, number];
  const ma = sa / na;
  const mb = sb / nb;
  const fa = Math.sqrt(ga / (ga - 1));
  const fb = Math.sqrt(gb / (gb - 1));
  let v = 0;
  let va = 0;
  let vb = 0;
  for (const c of by.values()) {
    const ea = (fa * (c[1] - ma * c[0])) / na;
    const eb = (fb * (c[3] - mb * c[2])) / nb;
    v += (ea - eb) ** 2;
    va += ea * ea;
    vb += eb * eb;
  }
  return { v, va, vb, ga, gb };
}
