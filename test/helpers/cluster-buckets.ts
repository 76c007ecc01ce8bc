import { addCluster, emptyClusterSums, UNIT_BUCKETS, type ClusterSums } from '../../src/feedback/units.js';

/**
 * Per-bucket sums of one arm and metric as apply-outcome.lua keeps them, with their cluster sums kept incrementally
 * (what `clusteredOf` computes from the bucket hash), for seeded simulations of unit statistics.
 */
export class ClusterBuckets {
  n = new Float64Array(UNIT_BUCKETS);
  s = new Float64Array(UNIT_BUCKETS);
  sums: ClusterSums = emptyClusterSums();
  add(b: number, y: number): void {
    const n = this.n[b]!;
    const s = this.s[b]!;
    const c = this.sums;
    // Replace cluster b's contribution (n, s) by (n + 1, s + y).
    const without = n > 0 ? { g: c.g - 1, n: c.n - n, s: c.s - s, ss: c.ss - s * s, ns: c.ns - n * s, nn: c.nn - n * n } : c;
    this.sums = addCluster(without, n + 1, s + y);
    this.n[b] = n + 1;
    this.s[b] = s + y;
  }
}
