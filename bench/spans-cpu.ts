/**
 * OTLP ingest CPU per request, JSON against protobuf, in process: the same 100-span batches (5 fresh traces per
 * request) posted with `inject` to POST /v1/traces, in alternating rounds, timing this process's CPU (parsing,
 * validation, mapping, the store's Redis client work; not Redis itself). CPU time is what a loaded, shared machine
 * disturbs least; bench/spans measures throughput over a socket.
 *
 *   node --import tsx bench/spans-cpu.ts [--rounds 8] [--requests 15]
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import pino from 'pino';
import { loadConfig } from '../src/config/env.js';
import { ExportTraceServiceRequest } from '../src/costs/otlp-proto.js';
import { start } from '../src/server.js';
import { dropPrefix, flag, REDIS_URL } from './lib.js';

const rounds = Number(flag('rounds', '8'));
const perRound_ = Number(flag('requests', '15'));
/** `--only json|protobuf`: one encoding alone; `--profile FILE`: a CPU profile of the measured rounds (not start-up). */
const only = flag('only', '');
const profile = flag('profile', '');
const kv = (key: string, v: string | number) => ({ key, value: typeof v === 'number' ? { intValue: v } : { stringValue: v } });

let seq = 0;
/** One batch in both encodings: 5 traces of 20 GenAI chat spans with fresh ids. */
function batch(): { json: string; protobuf: Buffer } {
  const spans: Record<string, unknown>[] = [];
  const now = BigInt(Date.now()) * 1_000_000n;
  const run = `${(seq++).toString(16).padStart(8, '0')}${randomBytes(4).toString('hex')}`;
  for (let k = 0; k < 5; k++) {
    for (let i = 0; i < 20; i++) {
      spans.push({
        traceId: `${run}${k}`.padStart(32, 'a'),
        spanId: (k * 100 + i + 1).toString(16).padStart(16, '0'),
        ...(i ? { parentSpanId: (k * 100 + 1).toString(16).padStart(16, '0') } : {}),
        name: 'chat gpt-4o-mini',
        kind: 1,
        startTimeUnixNano: String(now + BigInt(i)),
        endTimeUnixNano: String(now + BigInt(i) + 50_000_000n),
        attributes: [kv('gen_ai.operation.name', 'chat'), kv('gen_ai.provider.name', 'openai'), kv('gen_ai.request.model', 'gpt-4o-mini'), kv('gen_ai.usage.input_tokens', 1200), kv('gen_ai.usage.output_tokens', 150), kv('session.id', `s-${run}-${k}`)],
        status: { code: 0 },
      });
    }
  }
  const resource = { attributes: [kv('service.name', 'bench')] };
  const bytes = (s: Record<string, unknown>, f: string) => (typeof s[f] === 'string' ? Buffer.from(s[f] as string, 'hex') : undefined);
  const proto = { resourceSpans: [{ resource, scopeSpans: [{ spans: spans.map((s) => ({ ...s, traceId: bytes(s, 'traceId'), spanId: bytes(s, 'spanId'), parentSpanId: bytes(s, 'parentSpanId') })) }] }] };
  return {
    json: JSON.stringify({ resourceSpans: [{ resource, scopeSpans: [{ spans }] }] }),
    protobuf: Buffer.from(ExportTraceServiceRequest.encode(ExportTraceServiceRequest.fromObject(proto)).finish()),
  };
}

async function main(): Promise<void> {
  const prefix = `bench-${randomBytes(4).toString('hex')}`;
  const rt = await start(loadConfig({ ...process.env, REDIS_URL, APPORTION_KEY_PREFIX: prefix, PORT: '0', APPORTION_SEED_EXAMPLES: 'false', LOG_LEVEL: 'warn' }), pino({ level: 'warn' }), { api: true, workers: false, listen: false });
  try {
    const app = rt.app!;
    const cpu = { json: 0, protobuf: 0 };
    // Per round, CPU per request of each encoding: the rounds' paired ratios give the median and spread.
    const perRound: { json: number; protobuf: number }[] = [];
    const inspector = profile ? new Session() : undefined;
    for (let round = 0; round < rounds + 2; round++) {
      if (round === 2 && inspector) {
        inspector.connect();
        await inspector.post('Profiler.enable');
        await inspector.post('Profiler.setSamplingInterval', { interval: 200 });
        await inspector.post('Profiler.start');
      }
      for (const wire of ['json', 'protobuf'] as const) {
        if (only && wire !== only) continue;
        const bodies = Array.from({ length: perRound_ }, batch);
        const c0 = process.cpuUsage();
        for (const b of bodies) {
          const r = await app.inject({ method: 'POST', url: '/v1/traces', payload: b[wire], headers: { 'content-type': wire === 'json' ? 'application/json' : 'application/x-protobuf' } });
          if (r.statusCode !== 200) throw new Error(`${wire}: ${r.statusCode} ${r.body}`);
        }
        const c = process.cpuUsage(c0);
        if (round >= 2) {
          // two warm-up rounds
          cpu[wire] += (c.user + c.system) / 1000;
          (perRound[round - 2] ??= { json: 0, protobuf: 0 })[wire] = (c.user + c.system) / 1000 / perRound_;
        }
      }
    }
    if (inspector) {
      writeFileSync(profile, JSON.stringify((await inspector.post('Profiler.stop')).profile));
      inspector.disconnect();
    }
    const n = rounds * perRound_;
    console.log(`bench/spans-cpu: ${n} requests of 100 spans per encoding, alternating rounds`);
    console.log(`CPU per request: JSON ${(cpu.json / n).toFixed(2)} ms, protobuf ${(cpu.protobuf / n).toFixed(2)} ms`);
    console.log(`ratio JSON CPU ÷ protobuf CPU = ${(cpu.json / cpu.protobuf).toFixed(3)}  (≥ 1: protobuf ingest costs no more than JSON)`);
    if (!only) {
      const r = perRound.map((x) => x.json / x.protobuf).sort((a, b) => a - b);
      const q = (f: number) => r[Math.round((r.length - 1) * f)]!.toFixed(3);
      console.log(`paired by round: median ${q(0.5)}, IQR ${q(0.25)}–${q(0.75)}, range ${q(0)}–${q(1)}; ≥ 1 in ${r.filter((x) => x >= 1).length} of ${r.length} rounds`);
    }
  } finally {
    await rt.close();
    await dropPrefix(prefix);
  }
}

await main();
