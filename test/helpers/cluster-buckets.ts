import { clusteredVariance, UNIT_BUCKETS, type ClusteredVariance, type Clusters } from '../../src/feedback/units.js';

/**
 * Per-bucket sums of one arm and metric as apply-outcome.lua keeps them, and the arm's Σ (y − m)² (Welford), for
 * seeded simulations of unit statistics: `cr2()` is what `clusteredOf` computes from the bucket hash and the moments,
 * `cr1()` the variance the statistics used before (the baseline of the benches).
 */
export class ClusterBuckets implements Clusters {
  n = new Float64Array(UNIT_BUCKETS);
  s = new Float64Array(UNIT_BUCKETS);
  private count = 0;
  private mean = 0;
  private m2 = 0;
  add(b: number, y: number): void {
    this.n[b]! += 1;
    this.s[b]! += y;
    this.count++;
    const d = y - this.mean;
    this.mean += d / this.count;
    this.m2 += d * (y - this.mean);
  }
  /** Non-empty buckets. */
  get g(): number {
    let g = 0;
    for (let i = 0; i < UNIT_BUCKETS; i++) if (this.n[i]! > 0) g++;
    return g;
  }
  /**
   * The CR2 variance with its degrees of freedom: Imbens–Kolesár's from the outcomes' Σ (y − m)², as the reader
   * computes them, or (`bm`) Bell–McCaffrey's from the buckets' sizes alone.
   */
  cr2(bm = false): ClusteredVariance | undefined {
    return clusteredVariance(this, bm ? undefined : this.m2);
  }
  /**
   * The cluster-robust variance as it was before CR2: G/(G − 1) · Σ_b (S_b − m·n_b)² / N² (as N·V), with min(N, G) − 1
   * degrees of freedom.
   */
  cr1(): ClusteredVariance | undefined {
    const g = this.g;
    if (g < 2 || this.count <= 0) return undefined;
    const m = this.mean;
    let ss = 0;
    for (let i = 0; i < UNIT_BUCKETS; i++) if (this.n[i]! > 0) ss += (this.s[i]! - m * this.n[i]!) ** 2;
    return { variance: ((g / (g - 1)) * ss) / this.count, df: Math.min(this.count, g) - 1, clusters: g };
  }
}
