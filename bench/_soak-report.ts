/**
 * The report of bench/soak.ts, from its samples (also run alone on a saved run: `bench/soak.ts --report FILE.json`).
 *
 * Growth is the least-squares slope of a figure against the request count over the samples of each half of the
 * run, per 10,000 requests; the ratio is the second half's over the first's (the baseline: the same run's first
 * half). A bounded structure stops growing (ratio near 0 or below), a leak keeps growing (near 1 or above).
 */

export interface PatternStat {
  keys: number;
  noTtl: number;
  elems: number;
  elemsNoTtl: number;
  bytes: number;
}
export interface Sample {
  t: number;
  requests: number;
  rss: number;
  heap: number;
  lagP99: number;
  trainerRss: number;
  usedMemory: number;
  keys: number;
  noTtl: number;
  patterns: Record<string, PatternStat>;
}
export interface RunInfo {
  readonly seed: number;
  readonly minutes: number;
  readonly concurrency: number;
  readonly rewardWindow: number;
  readonly requests: number;
  readonly statuses: Readonly<Record<string, number>>;
  readonly fivexx: readonly string[];
}

/**
 * What bounds each key family by design (docs/architecture.md, "What Redis keeps, and for how long"): a pattern
 * that grows through a whole run is flagged `GROWS` either way, with this note when its growth is intended.
 */
const KNOWN: readonly [RegExp, string][] = [
  [/:bull:[^:]+:events$/, 'capped: BullMQ event stream, ~10,000 entries'],
  [/:bull:/, 'capped: finished jobs kept by count/age'],
  [/:\{costs\}:rollup:/, 'kept for good: showback rollups per day'],
  [/:\{keys\}:records$/, 'kept for good: API key records (audit trail), one per key ever created'],
  [/:\{config\}:[a-zA-Z]+:versions$|:\{config\}:pipelines:owners$|:\{config\}:experiments:deleted$|:\{config\}:experiments:guards$/, 'kept for good: one field per id ever used'],
  [/:\{config\}:deleted$/, 'bounded: dropped 64 min after the delete'],
  [/:\{config\}:[a-zA-Z]+$|:\{config\}:experiments:audit:\*$/, 'live objects: the population of the generated world'],
  [/:\{pipeline:\*\}:(stats|learner):/, 'live objects: the state of live pipelines, strategies and experiments'],
  [/:\{tenant:\*\}:(b:|bidx$|overruns$|alerts$|dl$)/, 'live objects: budgets of live and retiring tenants'],
  [/:budget-tenants$/, 'live objects: tenants with budgets'],
];
const knownNote = (pattern: string) => KNOWN.find(([re]) => re.test(pattern))?.[1] ?? '';

/** Least-squares slope of y against x over the points, per 10,000 x; 0 with fewer than two distinct x. */
function slope(points: readonly (readonly [number, number])[]): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const [x, y] of points) {
    sxx += (x - mx) ** 2;
    sxy += (x - mx) * (y - my);
  }
  return sxx > 0 ? (sxy / sxx) * 10_000 : 0;
}

export function soakReport(samples: readonly Sample[], run: RunInfo): string[] {
  const lines: string[] = [];
  const out = (s: string) => lines.push(s);
  const first = samples[0]!;
  const last = samples.at(-1)!;
  const half = (first.requests + last.requests) / 2;
  const h1 = samples.filter((s) => s.requests <= half);
  const h2 = samples.filter((s) => s.requests >= half);
  // The sample nearest the middle belongs to both halves, so each half has at least two points.
  const mid = samples.reduce((best, s) => (Math.abs(s.requests - half) < Math.abs(best.requests - half) ? s : best), first);
  if (!h1.includes(mid)) h1.push(mid);
  if (!h2.includes(mid)) h2.unshift(mid);
  const growth = (f: (s: Sample) => number): [number, number] => [slope(h1.map((s) => [s.requests, f(s)])), slope(h2.map((s) => [s.requests, f(s)]))];
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '—');
  const ratio = ([a, b]: [number, number]) => (Math.abs(a) < 1e-9 ? (Math.abs(b) < 1e-9 ? '—' : b > 0 ? '∞' : '-∞') : (b / a).toFixed(2));
  const mb = (b: number) => `${(b / 1048576).toFixed(1)}MB`;
  const secs = (last.t - first.t) / 1000;

  out(`bench/soak: seed ${run.seed}, ${run.minutes} min, ${run.concurrency} loops, ${run.requests} requests (${(run.requests / secs).toFixed(0)}/s), reward window ${run.rewardWindow} s; ${samples.length} samples`);
  out(`  halves: ${first.requests}→${mid.requests} requests and ${mid.requests}→${last.requests}; growth = least-squares slope per 10,000 requests in each half; ratio = 2nd half ÷ 1st half (baseline: this run's 1st half)`);
  const proc: [string, (s: Sample) => number, (x: number) => string][] = [
    ['server RSS', (s) => s.rss, mb],
    ['server heap used', (s) => s.heap, mb],
    ['trainer child RSS', (s) => s.trainerRss, mb],
    ['Redis used_memory', (s) => s.usedMemory, mb],
    ['Redis keys', (s) => s.keys, (x) => fmt(x, 0)],
    ['Redis keys without TTL', (s) => s.noTtl, (x) => fmt(x, 0)],
  ];
  out(`  ${'figure'.padEnd(24)} ${'start'.padStart(9)} ${'mid'.padStart(9)} ${'end'.padStart(9)} ${'1st half/10k'.padStart(13)} ${'2nd half/10k'.padStart(13)} ratio`);
  for (const [name, f, show] of proc) {
    const g = growth(f);
    out(`  ${name.padEnd(24)} ${show(f(first)).padStart(9)} ${show(f(mid)).padStart(9)} ${show(f(last)).padStart(9)} ${show(g[0]).padStart(13)} ${show(g[1]).padStart(13)} ${ratio(g)}`);
  }
  const lags = samples.map((s) => s.lagP99 * 1000).filter(Number.isFinite).sort((a, b) => a - b);
  out(`  event-loop lag p99 (ms) over the samples: median ${fmt(lags[Math.floor(lags.length / 2)] ?? NaN)}, max ${fmt(lags.at(-1) ?? NaN)}`);

  const zero: PatternStat = { keys: 0, noTtl: 0, elems: 0, elemsNoTtl: 0, bytes: 0 };
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.patterns)))].sort();
  const rows = names.map((pattern) => {
    const at = (s: Sample) => s.patterns[pattern] ?? zero;
    const keys = growth((s) => at(s).keys);
    const elems = growth((s) => at(s).elems);
    const noTtlKeys = growth((s) => at(s).noTtl);
    const noTtlElems = growth((s) => at(s).elemsNoTtl);
    const bytes = growth((s) => at(s).bytes / 1024);
    // Keeps growing: the second half's growth is at least half the first's, and adds at least 10 % to the mid
    // level (and 20 keys or elements), so that the turnover of live objects is not taken for growth.
    const secondHalfRequests = last.requests - mid.requests;
    const keeps = (g: [number, number], level: number) => g[1] > 0 && g[1] >= 0.5 * Math.max(g[0], 0) && (g[1] * secondHalfRequests) / 10_000 >= Math.max(20, 0.1 * level);
    const grows = keeps(noTtlKeys, at(mid).noTtl) || keeps(noTtlElems, at(mid).elemsNoTtl);
    const flag = grows ? 'GROWS' : keeps(keys, at(mid).keys) || keeps(elems, at(mid).elems) ? 'ttl' : '';
    return { pattern, end: at(last), keys, noTtlElems, bytes, flag, note: grows ? knownNote(pattern) : '' };
  });
  const order = (f: string) => (f === 'GROWS' ? 0 : f === 'ttl' ? 1 : 2);
  rows.sort((x, y) => order(x.flag) - order(y.flag) || y.end.bytes - x.end.bytes);
  out('');
  out('  per key pattern, at the end of the run; growth per 10,000 requests 1st → 2nd half (ratio)');
  out('  GROWS = keys or elements without a TTL kept growing through the 2nd half; ttl = kept growing, every growing key has a TTL');
  out(`  ${'pattern'.padEnd(60)} ${'keys'.padStart(6)} ${'noTTL'.padStart(6)} ${'elems'.padStart(7)} ${'KB'.padStart(6)}  ${'keys/10k'.padEnd(20)} ${'noTTL elems/10k'.padEnd(22)} ${'KB/10k'.padEnd(20)} flag`);
  const h = (v: [number, number]) => `${fmt(v[0])}→${fmt(v[1])} (${ratio(v)})`;
  for (const r of rows) {
    if (!r.flag && r.end.keys === 0) continue;
    out(`  ${r.pattern.slice(0, 60).padEnd(60)} ${String(r.end.keys).padStart(6)} ${String(r.end.noTtl).padStart(6)} ${String(r.end.elems).padStart(7)} ${(r.end.bytes / 1024).toFixed(0).padStart(6)}  ${h(r.keys).padEnd(20)} ${h(r.noTtlElems).padEnd(22)} ${h(r.bytes).padEnd(20)} ${r.flag}${r.note ? ` (${r.note})` : ''}`);
  }
  const unexplained = rows.filter((r) => r.flag === 'GROWS' && !r.note);
  out('');
  out(`  keeps growing without a TTL or a documented bound: ${unexplained.length ? unexplained.map((r) => r.pattern).join(', ') : 'none'}`);
  out('');
  out(`  answers by operation and status: ${Object.entries(run.statuses).sort().map(([k, v]) => `${k}: ${v}`).join(', ')}`);
  if (run.fivexx.length) out(`  first 5xx answers:\n    ${run.fivexx.join('\n    ')}`);
  return lines;
}
