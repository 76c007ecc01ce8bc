/**
 * `npm run test:cluster`: starts a local Redis Cluster of three masters (test/helpers/cluster.ts), runs the
 * integration suites that touch Redis against it through test/run.ts with `APPORTION_TEST_REDIS=cluster` and
 * `REDIS_CLUSTER_NODES` (test/helpers/env.ts points every helper at the cluster), then fails the run if any node
 * refused any command with CROSSSLOT (INFO errorstats), whether or not a test noticed, or (for the default file list)
 * if a Lua script of the product never ran on it. The cluster is torn down at the end, also when a suite fails.
 *
 * `npm test` runs the same files on a cluster of its own alongside the rest of the suite (test/run.ts, which imports
 * CLUSTER_SUITES, clusterEnv and checkCluster from here); this file's own run is for the cluster stage alone.
 *
 * Usage: node --import tsx test/cluster/run.ts [file …]   (default: CLUSTER_SUITES)
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { luaScripts } from '../../src/redis/scripts.js';
import { LocalCluster } from '../helpers/cluster.js';

/** Every Lua script of the product (src/redis/lua, all in the one registry), by name and SHA1 as the server sends it. */
function allScripts(): { name: string; sha: string }[] {
  return [...luaScripts()].map(([name, s]) => ({ name, sha: s.sha }));
}

/** The suites run on the cluster: every surface that writes to Redis, in-process and as separate processes. */
export const CLUSTER_SUITES = [
  // Two API and two worker processes over real sockets: config propagation (pub/sub), allocations, outcomes
  // exactly once through a worker SIGKILL, 200 concurrent reservation clients, the sweeper, spans.
  'test/cluster/scale-out.test.ts',
  // Slots resharded under concurrent traffic, on a cluster of the file's own.
  'test/cluster/reshard.test.ts',
  'test/integration/api.test.ts',
  'test/integration/propagation.test.ts',
  'test/integration/worker-crash.test.ts',
  // Outcome receipts (first report wins, the learner's default sweep defers to an accepted outcome) and client-chosen
  // decision ids written only if free: outcome-receipt.lua, decision-claim.lua, decisions-put-nx.lua.
  'test/integration/outcome-receipts.test.ts',
  // Decision records written only before their pending deadline (decisions-put.lua against TIME), queued behind held
  // writes until it, and outcome intake's DECISION_PENDING → DECISION_NOT_FOUND on the same deadline.
  'test/allocation/record-deadline.test.ts',
  'test/budgets/reservations.test.ts',
  'test/budgets/draws.test.ts',
  'test/budgets/concurrency.test.ts',
  // A tenant's last budget deleted: its streams (its slot) and its index entry (another slot).
  'test/budgets/retention.test.ts',
  // Deletes remove a pipeline's keys by SCAN on the master of its slot; tombstones against late outcomes; the sweep.
  'test/pipelines/delete-data.test.ts',
  'test/rollout/lifecycle.test.ts',
  'test/rollout/api.test.ts',
  'test/rollout/concurrency.test.ts',
  'test/rollout/job.test.ts',
  'test/learner/api.test.ts',
  'test/costs/fixtures.test.ts',
  'test/costs/otel.test.ts',
  // Out-of-range contributions refused whole, spans taken back (span-unstore.lua), a failed request repaired.
  'test/costs/ingest-safety.test.ts',
  'test/costs/otlp-malformed.test.ts',
  // Generated bad input against every API operation: no CROSSSLOT refusal (a 5xx) and no half-written state on any route.
  'test/integration/api-fuzz.test.ts',
  // Generated concurrent control-plane writes (two tenants, two instances) and concurrent model-document writes:
  // the conditional config scripts name documents of several kinds, all in the {config} slot.
  'test/integration/control-races.test.ts',
  'test/learner/registry-races.test.ts',
  'test/integration/stale-snapshot.test.ts',
];

/**
 * The environment of a test file run on the cluster at `nodes`. Files on one cluster run two at once by default: they
 * all share it. (The console's session listing was a bounded SCAN of it until 2026-12-04, and with four files writing
 * at once scale-out.test.ts's listing was cut at its budget, 4 of its 7 sessions, in one run; it now reads the session
 * indexes, src/costs/session-list.ts.)
 */
export function clusterEnv(nodes: string): Record<string, string> {
  return { APPORTION_TEST_REDIS: 'cluster', REDIS_CLUSTER_NODES: nodes };
}

/** Files at once on the one cluster unless APPORTION_TEST_CONCURRENCY is set (then that many). */
export const CLUSTER_CONCURRENCY = 2;

/**
 * After the files ran on the cluster: one line per check, and whether every check passed. No node refused a command
 * with CROSSSLOT; with `everyScript` (the whole CLUSTER_SUITES list ran), every Lua script of the product ran on it.
 */
export async function checkCluster(cluster: LocalCluster, everyScript: boolean): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  const crossSlot = await cluster.crossSlotErrors();
  const total = crossSlot.reduce((s, n) => s + n, 0);
  if (total > 0) {
    lines.push(`✖ CROSSSLOT: the cluster's nodes refused ${total} command(s) with CROSSSLOT (per node: ${crossSlot.join(', ')})`);
    ok = false;
  } else {
    lines.push('✔ no CROSSSLOT error on any node of the cluster');
  }
  if (everyScript) {
    // The whole cluster stage must have run every script on the cluster (a script cached on no node never ran).
    const scripts = allScripts();
    const ran = await cluster.scriptsRun(scripts.map((s) => s.sha));
    const never = scripts.filter((_, i) => !ran[i]).map((s) => s.name);
    if (never.length) {
      lines.push(`✖ scripts never run on the cluster: ${never.join(', ')}`);
      ok = false;
    } else {
      lines.push(`✔ all ${scripts.length} Lua scripts ran on the cluster`);
    }
  }
  return { ok, lines };
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const files = process.argv.length > 2 ? process.argv.slice(2) : CLUSTER_SUITES;
  const cluster = await LocalCluster.start(3);
  process.stdout.write(`\n━━ Redis Cluster of 3 masters on ${cluster.nodes}: ${files.length} test files ━━\n`);
  let code = 1;
  const stop = () => cluster.stop();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      stop();
      process.exit(130);
    });
  }
  try {
    code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/run.ts', ...files], {
        stdio: 'inherit',
        env: { ...process.env, ...clusterEnv(cluster.nodes), APPORTION_TEST_CONCURRENCY: process.env.APPORTION_TEST_CONCURRENCY ?? String(CLUSTER_CONCURRENCY) },
      });
      child.on('close', (c) => resolve(c ?? 1));
    });
    const checks = await checkCluster(cluster, process.argv.length <= 2);
    process.stdout.write(`${checks.lines.join('\n')}\n`);
    if (!checks.ok) code = 1;
  } finally {
    stop();
  }
  process.exitCode = code;
}
