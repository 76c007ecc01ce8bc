/**
 * Span ingest throughput: OTLP/HTTP batches of 100 spans into trees and rollups, JSON and protobuf
 * (`application/x-protobuf`, the default of most OpenTelemetry SDKs) in the same run, against the same server's
 * no-op route.
 *
 *   node --import tsx bench/spans.ts [--rounds 16] [--slice 3] [--connections 16]
 *
 * The protobuf batches carry the same spans as the JSON ones (encoded once from the JSON template, the trace and
 * session ids patched in place per request, so every request is as fresh as a JSON one).
 *
 * One freshly spawned server (`apportion serve` in a child process, auth on). Every batch is 5 fresh traces of
 * 20 spans (a coordinator, three sub-agents with four GenAI chat calls each, the coordinator's own three calls
 * and a tool call; every sub-agent also carries its aggregate usage, so claims are reconciled), with new trace
 * ids per request, so nothing is a duplicate. After the run the `day` rollup is checked: it must count exactly
 * the leaf calls of the accepted batches (15 per trace: the tool span carries no usage, the sub-agent aggregates are claimed), i.e. the rollups kept up with ingest.
 *
 * On a shared machine one long measurement per format follows whoever else is busy at that moment. So the
 * formats are measured in rounds of two back-to-back slices (`--slice` seconds each; the order alternates
 * J,P / P,J / …), each round gives a paired ratio protobuf ÷ JSON, and the verdict is the median of those
 * ratios with their spread; server CPU per request (from /proc, disturbed less by load) is paired the same way.
 * Before each slice the server finishes what the previous one left in flight, so no slice pays for another's.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { ExportTraceServiceRequest } from '../src/costs/otlp-proto.js';
import { cannon, flag, fmt, REDIS_URL, spawnServer } from './lib.js';

const rounds = Number(flag('rounds', '16'));
const slice = Number(flag('slice', '3'));
const connections = Number(flag('connections', '16'));
const TRACES_PER_BATCH = 5;
const LEAVES_PER_TRACE = 15;

const kv = (key: string, v: string | number) => ({ key, value: typeof v === 'number' ? { intValue: v } : { stringValue: v } });

/** One batch as a string template; `@T<k>@` is replaced by the k-th trace id of the request. */
function template(): string {
  const spans: object[] = [];
  const now = BigInt(Date.now()) * 1_000_000n;
  const t = (ms: number) => String(now + BigInt(ms) * 1_000_000n);
  for (let k = 0; k < TRACES_PER_BATCH; k++) {
    const traceId = `@T${k}@`;
    let n = 0;
    const id = () => `${k.toString(16)}${(n++).toString(16).padStart(15, '0')}`;
    const span = (spanId: string, parent: string | undefined, name: string, attrs: object[]) =>
      spans.push({ traceId, spanId, ...(parent ? { parentSpanId: parent } : {}), name, kind: 1, startTimeUnixNano: t(n), endTimeUnixNano: t(n + 50), attributes: attrs, status: { code: 0 } });
    const root = id();
    span(root, undefined, 'invoke_agent coordinator', [kv('gen_ai.operation.name', 'invoke_agent'), kv('gen_ai.agent.name', 'coordinator'), kv('session.id', `${traceId}-session`), kv('user.id', `customer-${k}`)]);
    for (const agent of ['researcher', 'writer', 'critic']) {
      const a = id();
      span(a, root, `invoke_agent ${agent}`, [kv('gen_ai.operation.name', 'invoke_agent'), kv('gen_ai.agent.name', agent), kv('gen_ai.request.model', 'gpt-4o-mini'), kv('gen_ai.usage.input_tokens', 4 * 1200), kv('gen_ai.usage.output_tokens', 4 * 150)]);
      for (let c = 0; c < 4; c++) {
        span(id(), a, 'chat gpt-4o-mini', [kv('gen_ai.operation.name', 'chat'), kv('gen_ai.provider.name', 'openai'), kv('gen_ai.request.model', 'gpt-4o-mini'), kv('gen_ai.usage.input_tokens', 1200), kv('gen_ai.usage.output_tokens', 150), kv('gen_ai.usage.cache_read.input_tokens', 400)]);
      }
    }
    for (let c = 0; c < 3; c++) {
      span(id(), root, 'chat gpt-4o', [kv('gen_ai.operation.name', 'chat'), kv('gen_ai.provider.name', 'openai'), kv('gen_ai.request.model', 'gpt-4o'), kv('gen_ai.usage.input_tokens', 3000 + c), kv('gen_ai.usage.output_tokens', 500)]);
    }
    span(id(), root, 'execute_tool search', [kv('gen_ai.operation.name', 'execute_tool')]);
  }
  return JSON.stringify({ resourceSpans: [{ resource: { attributes: [kv('service.name', 'bench')] }, scopeSpans: [{ scope: { name: 'bench' }, spans }] }] });
}

function childCpuSec(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(parts[11]) + Number(parts[12])) / 100;
}

/**
 * Waits until the server has finished the requests a slice left in flight (the load generator stops at the slice's
 * end, the server still completes what it received): its CPU time stops advancing. Otherwise that work would be
 * charged to the next slice, always the other format's.
 */
async function settle(pid: number): Promise<void> {
  let last = childCpuSec(pid);
  for (let i = 0, still = 0; i < 50 && still < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = childCpuSec(pid);
    still = now - last < 0.015 ? still + 1 : 0;
    last = now;
  }
}

/** The k-th trace id of request `seq` of run `run` (32 hex digits), the same for both wire formats. */
const traceHex = (run: string, seq: number, k: number) => `${run}${seq.toString(16).padStart(8, '0')}${String(k).padStart(4, '0')}`.padStart(32, '0').slice(-32);

function jsonBodies(run: string): () => string {
  const parts = template().split(/@T(\d)@/);
  let seq = 0;
  return () => {
    const n = seq++;
    let s = '';
    for (let i = 0; i < parts.length; i++) s += i % 2 === 0 ? parts[i] : traceHex(run, n, Number(parts[i]));
    return s;
  };
}

/**
 * The JSON template encoded once as protobuf with marker trace ids (bytes) and session ids (their hex, as text);
 * each request copies it and writes its own ids over the markers.
 */
function protobufBodies(run: string): () => Buffer {
  const marker = (k: number) => `e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7${k.toString(16).padStart(2, '0')}`;
  const json = JSON.parse(template().replace(/@T(\d)@/g, (_, k: string) => marker(Number(k)))) as { resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
  for (const rs of json.resourceSpans) for (const ss of rs.scopeSpans) for (const sp of ss.spans) for (const f of ['traceId', 'spanId', 'parentSpanId']) if (typeof sp[f] === 'string') sp[f] = Buffer.from(sp[f] as string, 'hex');
  const encoded = Buffer.from(ExportTraceServiceRequest.encode(ExportTraceServiceRequest.fromObject(json)).finish());
  const at: { offset: number; k: number; text: boolean }[] = [];
  for (let k = 0; k < TRACES_PER_BATCH; k++) {
    for (const [needle, text] of [[Buffer.from(marker(k), 'hex'), false], [Buffer.from(marker(k), 'latin1'), true]] as const) {
      for (let i = encoded.indexOf(needle); i >= 0; i = encoded.indexOf(needle, i + 1)) at.push({ offset: i, k, text });
    }
  }
  let seq = 0;
  return () => {
    const n = seq++;
    const body = Buffer.from(encoded);
    for (const { offset, k, text } of at) body.write(traceHex(run, n, k), offset, text ? 'latin1' : 'hex');
    return body;
  };
}

async function ingest(
  url: string,
  key: string,
  seconds: number,
  run: string,
  wire: 'json' | 'protobuf',
): Promise<{ ok: number; rps: number; p50: number; p99: number; non2xx: number; errors: number }> {
  const body = wire === 'json' ? jsonBodies(run) : protobufBodies(run);
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/v1/traces',
        headers: { 'content-type': wire === 'json' ? 'application/json' : 'application/x-protobuf', authorization: `Bearer ${key}` },
        setupRequest: (req: autocannon.Request) => ({ ...req, body: body() }),
      },
    ],
  });
  return { ok: result['2xx'], rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, errors: result.errors };
}

const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
function quantile(xs: readonly number[], q: number): number {
  const s = sorted(xs);
  const i = (s.length - 1) * q;
  return s[Math.floor(i)]! + (s[Math.ceil(i)]! - s[Math.floor(i)]!) * (i - Math.floor(i));
}
const spread = (xs: readonly number[], digits = 3) =>
  `median ${quantile(xs, 0.5).toFixed(digits)}, IQR ${quantile(xs, 0.25).toFixed(digits)}–${quantile(xs, 0.75).toFixed(digits)}, range ${sorted(xs)[0]!.toFixed(digits)}–${sorted(xs).at(-1)!.toFixed(digits)}`;

async function main(): Promise<void> {
  console.log(`bench/spans: ${connections} connections, ${rounds} rounds of one ${slice} s slice per format (order alternating), batches of ${TRACES_PER_BATCH * 20} spans`);
  // BENCH_PROF=DIR: the server writes a CPU profile there, and windows.json the measured slices (CLOCK_MONOTONIC µs,
  // the profile's clock), so the profile's samples can be split by wire format.
  const profDir = process.env.BENCH_PROF;
  const server = await spawnServer({}, profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []);
  const windows: { wire: string; from: number; to: number; ok: number }[] = [];
  const redis = new Redis(REDIS_URL);
  try {
    await cannon({ url: server.url, path: '/bench/noop', body: {}, key: server.clientKey, connections, durationSec: 2 });
    const noop = await cannon({ url: server.url, path: '/bench/noop', body: {}, key: server.clientKey, connections, durationSec: slice * 2 });
    console.log(`noop route        ${fmt(noop)}`);
    let runs = 0;
    // Every slice its own trace-id run (hex), so no request repeats a trace of an earlier one.
    const nextRun = () => (++runs).toString(16).padStart(3, '0');
    await ingest(server.url, server.clientKey, 2, nextRun(), 'json'); // warm-up: JIT, price cache, connection pools
    await ingest(server.url, server.clientKey, 2, nextRun(), 'protobuf');
    type Slice = { rps: number; ok: number; cpuPerRequest: number; p50: number; p99: number; non2xx: number; errors: number };
    const slices: Record<'json' | 'protobuf', Slice[]> = { json: [], protobuf: [] };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (['json', 'protobuf'] as const) : (['protobuf', 'json'] as const);
      const line: string[] = [];
      for (const wire of order) {
        await settle(server.child.pid!);
        const s0 = childCpuSec(server.child.pid!);
        const from = Number(process.hrtime.bigint() / 1000n);
        const res = await ingest(server.url, server.clientKey, slice, nextRun(), wire);
        windows.push({ wire, from, to: Number(process.hrtime.bigint() / 1000n), ok: res.ok });
        // The server's CPU for this slice includes finishing the requests it left in flight.
        await settle(server.child.pid!);
        const serverCpu = childCpuSec(server.child.pid!) - s0;
        const sl = { rps: res.ok / slice, ok: res.ok, cpuPerRequest: (1000 * serverCpu) / Math.max(1, res.ok), p50: res.p50, p99: res.p99, non2xx: res.non2xx, errors: res.errors };
        slices[wire].push(sl);
        line.push(`${wire} ${sl.rps.toFixed(1)} req/s, server CPU ${sl.cpuPerRequest.toFixed(2)} ms/req`);
      }
      const j = slices.json[round]!;
      const p = slices.protobuf[round]!;
      console.log(`  round ${round + 1}: ${line.join('; ')}  → protobuf ÷ JSON ${(p.rps / j.rps).toFixed(3)}`);
    }
    for (const wire of ['json', 'protobuf'] as const) {
      const ss = slices[wire];
      const ok = ss.reduce((a, x) => a + x.ok, 0);
      console.log(
        `OTLP ${wire.padEnd(8)} ingest req/s ${spread(ss.map((x) => x.rps), 1)}; ${((ok * TRACES_PER_BATCH * 20) / (rounds * slice)).toFixed(0)} spans/s overall; p50 ${quantile(ss.map((x) => x.p50), 0.5).toFixed(0)} ms, p99 ${quantile(ss.map((x) => x.p99), 0.5).toFixed(0)} ms (medians of slices); errors ${ss.reduce((a, x) => a + x.errors, 0)}, non-2xx ${ss.reduce((a, x) => a + x.non2xx, 0)}`,
      );
    }
    const throughput = slices.json.map((j, i) => slices.protobuf[i]!.rps / j.rps);
    const cpu = slices.json.map((j, i) => j.cpuPerRequest / slices.protobuf[i]!.cpuPerRequest);
    console.log(`ratio JSON ingest req/s ÷ noop req/s = ${(quantile(slices.json.map((x) => x.rps), 0.5) / noop.rps).toFixed(3)}  (each ingest request carries 100 spans)`);
    console.log(`ratio protobuf ingest ÷ JSON ingest (req/s, paired by round): ${spread(throughput)}; ≥ 1 in ${throughput.filter((r) => r >= 1).length} of ${rounds} rounds  (target: median ≥ 1)`);
    console.log(`server CPU per request, JSON ÷ protobuf (paired by round): ${spread(cpu)}; JSON ${quantile(slices.json.map((x) => x.cpuPerRequest), 0.5).toFixed(2)} ms, protobuf ${quantile(slices.protobuf.map((x) => x.cpuPerRequest), 0.5).toFixed(2)} ms (medians)  (≥ 1: protobuf is cheaper)`);
    if (profDir) {
      mkdirSync(profDir, { recursive: true });
      writeFileSync(`${profDir}/windows.json`, JSON.stringify(windows));
    }
    console.log(`target protobuf ≥ JSON ingest throughput: ${quantile(throughput, 0.5) >= 1 ? 'met' : 'NOT met'} (median of ${rounds} paired rounds)`);
    // Rollups kept up: the day rollup counts every leaf call of every stored trace (warm-up included). Requests
    // still in flight when the load generator stopped are let finish first (both numbers stop moving).
    const day = new Date().toISOString().slice(0, 10);
    const read = async () => {
      const rep = (await (await fetch(`${server.url}/v1/reports/costs?groupBy=day&from=${day}&to=${day}`, { headers: { authorization: `Bearer ${server.adminKey}` } })).json()) as { total: { calls: number; costUsd: number } };
      const stored = Number(await redis.eval(`return #redis.call('KEYS', ARGV[1])`, 0, `${server.prefix}:{trace:*}:spans`));
      return { calls: rep.total.calls, costUsd: rep.total.costUsd, stored };
    };
    let last = await read();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const next = await read();
      const same = next.calls === last.calls && next.stored === last.stored;
      last = next;
      if (same) break;
    }
    const expectedCalls = last.stored * LEAVES_PER_TRACE;
    console.log(`rollup check: ${last.stored} traces stored, day rollup counts ${last.calls} calls (expected ${expectedCalls}) → ${last.calls === expectedCalls ? 'OK' : 'MISMATCH'}; $${last.costUsd.toFixed(2)}`);
  } finally {
    redis.disconnect();
    await server.close();
  }
}

await main();
