import { ApportionClient, ApportionHttpError } from '@apportion/sdk';
import { mulberry32 } from '../learner/rng.js';
import { applyRequests, readApplyFile } from '../seed.js';

/** Options of `apportion demo`. */
export interface DemoOptions {
  readonly url: string;
  readonly key?: string;
  /** Allocations (and outcomes) sent through the demo experiment. Default 600. */
  readonly requests: number;
  /** Seed of every random choice, so two runs against fresh servers send the same traffic. */
  readonly seed: number;
  /** Traffic is sent in this many rounds, with a retrain after each. Default 3. */
  readonly rounds?: number;
  /** Longest wait for each retrain to publish a model version. Default 120 000 ms. */
  readonly trainWaitMs?: number;
  readonly log?: (line: string) => void;
}

export const DEMO_EXPERIMENT = 'demo-static-vs-estimate';
export const DEMO_SESSIONS = ['demo-session-1', 'demo-session-2', 'demo-session-3', 'demo-session-4', 'demo-session-5', 'demo-session-6'] as const;
const PIPELINE = 'support-triage';
const TASKS = ['refund', 'technical', 'billing'] as const;
const USD = 100_000_000; // micro-cents per dollar


/** How much of its budget each agent of the example pipeline would like, for a request's features. */
function needs(task: string, messages: number, docTokens: number): Record<string, number> {
  return {
    orchestrator: 700 + 45 * messages,
    retriever: 300 + 0.2 * docTokens,
    reasoner: (1400 + 160 * messages + 0.3 * docTokens) * (task === 'technical' ? 1.7 : task === 'billing' ? 0.8 : 1),
    validator: 350 + 12 * messages,
    formatter: 220,
  };
}

const PRICE: Record<string, [number, number]> = {
  orchestrator: [3, 15],
  retriever: [0.15, 0.6],
  reasoner: [15, 75],
  validator: [0.15, 0.6],
  formatter: [0.15, 0.6],
};
const MODEL: Record<string, string> = {
  orchestrator: 'claude-sonnet-4-5',
  retriever: 'gpt-4o-mini',
  reasoner: 'claude-opus-4-1',
  validator: 'gpt-4o-mini',
  formatter: 'gpt-4o-mini',
};

/**
 * Asks for a retrain once the outcomes sent so far were applied, and waits (bounded) for a newer model version
 * to be trained. A new version is first a candidate of the activation gate (it serves only once it has cleared it),
 * so this waits for the newest trained version, not for the serving one. Returns it, or undefined if none
 * appeared in time (the demo goes on without it).
 *
 * While the newest version is the gate's pending candidate, a retrain first waits for the gate to judge it (a
 * candidate needs decisions that played its split; a shadow learner's candidate gets none), so no newer version can
 * appear: that case returns at once instead of waiting out the bound (it used to cost every round after the first
 * the whole `waitMs`).
 */
async function trainAndWait(client: ApportionClient, pipeline: string, waitMs: number): Promise<number | undefined> {
  const models = async () => {
    const doc = await client.request<{ versions: { version: number }[]; candidate?: number | null }>('GET', `/v1/models/${pipeline}`);
    return { newest: Math.max(0, ...doc.versions.map((v) => v.version)), candidate: doc.candidate ?? null };
  };
  const before = (await models()).newest;
  const deadline = Date.now() + waitMs;
  let asked = 0;
  while (Date.now() < deadline) {
    // Outcomes reach the training buffer asynchronously: ask again every few seconds until a version appears.
    if (Date.now() - asked > 5000) {
      await client.request('POST', `/v1/models/${pipeline}/train`).catch((e: unknown) => {
        if (!(e instanceof ApportionHttpError && e.statusCode < 500)) throw e;
      });
      asked = Date.now();
    }
    const now = await models();
    if (now.newest > before) return now.newest;
    if (before > 0 && now.candidate === before) return before;
    await new Promise((r) => setTimeout(r, 250));
  }
  return before || undefined;
}

async function ignoreConflict(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ApportionHttpError && e.statusCode === 409)) throw e;
  }
}

/**
 * Fills a running server with a little of everything the console shows: an experiment with traffic and
 * outcomes, a learned strategy trained by the simulator, budgets with spending, live reservations and alerts,
 * and cost traces for a few sessions. Every request goes through the public API.
 */
export async function runDemo(o: DemoOptions): Promise<void> {
  // Checked before any request: a count that is not a positive integer (NaN, negative) sent nothing for minutes.
  const count = (name: string, v: number | undefined, min: number) => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < min)) throw new RangeError(`demo: ${name} must be an integer of at least ${min}, got ${v}`);
  };
  count('requests', o.requests, 1);
  count('seed', o.seed, 0);
  count('rounds', o.rounds, 1);
  count('trainWaitMs', o.trainWaitMs, 0);
  const log = o.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  const client = new ApportionClient({ url: o.url, ...(o.key ? { key: o.key } : {}), timeoutMs: 30_000 });
  const rng = mulberry32(o.seed);

  // The example pipeline (loaded on a server's first start, unless seeding was switched off).
  const pipelines = await client.request<{ items: { id: string }[] }>('GET', '/v1/pipelines');
  if (!pipelines.items.some((p) => p.id === PIPELINE)) {
    const doc = readApplyFile(new URL('../../experiments/example-pipeline.json', import.meta.url).pathname);
    for (const r of applyRequests(doc)) await client.request(r.method, r.url, r.body);
    log(`loaded the example pipeline ${PIPELINE}`);
  }

  // Learner: the README's feature declaration and a learned strategy in shadow mode next to the served split.
  await client.request('PUT', `/v1/pipelines/${PIPELINE}/features`, {
    features: [
      { name: 'taskType', type: 'categorical', values: [...TASKS] },
      { name: 'messageCount', type: 'numeric', transform: 'log' },
      { name: 'document', type: 'tokens' },
    ],
  });
  await client.request('PUT', '/v1/strategies/support-learned', { pipeline: PIPELINE, kind: 'learned', params: { costWeight: 0.5, shadow: true, trainEvery: 200 } });

  // An experiment on the whole pipeline, ramped at 50 % then 100 %.
  const existing = await client.request<{ state?: string }>('GET', `/v1/experiments/${DEMO_EXPERIMENT}`).catch((e: unknown) => {
    if (e instanceof ApportionHttpError && e.statusCode === 404) return undefined;
    throw e;
  });
  if (!existing || existing.state === 'draft') {
    await client.request('PUT', `/v1/experiments/${DEMO_EXPERIMENT}`, {
      pipeline: PIPELINE,
      description: 'Demo: hand-tuned static shares against the estimate default on every task type.',
      variants: [
        { name: 'control', strategy: 'support-estimate', weight: 1 },
        { name: 'static', strategy: 'support-static', weight: 1 },
      ],
      control: 'control',
      coverage: 1,
      guardrails: [
        { metric: 'quality', maxRegression: 0.05, minSamples: 100 },
        { metric: 'ceilingHitRate', agent: 'reasoner', maxRegression: 0.5, minSamples: 100 },
      ],
      ramp: { steps: [{ share: 0.5, minSamples: 100 }, { share: 1 }] },
    });
  }
  if (!existing || existing.state === 'draft') await ignoreConflict(client.request('POST', `/v1/experiments/${DEMO_EXPERIMENT}/start`));
  log(`experiment ${DEMO_EXPERIMENT} running`);

  // Traffic: allocate, "run" the agents against their budgets, report the outcome, and send the cost spans.
  const now = Date.now();
  let sent = 0;
  const one = async (i: number) => {
    const task = TASKS[Math.floor(rng() * TASKS.length)]!;
    const messages = 2 + Math.floor(rng() * 20);
    const docTokens = Math.floor(rng() * 12_000);
    const a = await client.allocate({ pipeline: PIPELINE, unitKey: `user-${i % 400}`, features: { taskType: task, messageCount: messages, documentTokens: docTokens } });
    const need = needs(task, messages, docTokens);
    const usage: Record<string, { inputTokens: number; outputTokens: number; truncated: boolean }> = {};
    let quality = 0.35;
    let cost = 0;
    for (const [agent, { tokens }] of Object.entries(a.budgets)) {
      const want = need[agent] ?? tokens;
      const used = Math.min(tokens, Math.round(want * (0.8 + 0.3 * rng())));
      const truncated = used >= tokens * 0.97;
      quality += (agent === 'reasoner' ? 0.35 : agent === 'orchestrator' ? 0.15 : 0.04) * Math.min(1, used / want);
      const [pin, pout] = PRICE[agent] ?? [0, 0];
      const input = Math.round(used * 0.7);
      const output = used - input;
      cost += (input * pin + output * pout) / 1e6;
      usage[agent] = { inputTokens: input, outputTokens: output, truncated };
    }
    quality = Math.max(0, Math.min(1, quality + (rng() - 0.5) * 0.1));
    await client.reportOutcome({ decisionId: a.decisionId, quality: Number(quality.toFixed(4)), costUsd: Number(cost.toFixed(6)), usage });
    if (i % 10 === 0) {
      const t0 = now - (i % 7) * 86_400_000 - 60_000;
      // One structural root for the request, then each agent's call (the orchestrator's included) under it.
      const root = { traceId: `demo-pipe-${i}`, spanId: 'root', agent: 'orchestrator', kind: 'agent' as const, start: t0, end: t0 + 6000, decisionId: a.decisionId, customer: ['acme', 'globex', 'initech'][i % 3]!, team: i % 2 ? 'support' : 'sales' };
      const calls = Object.entries(usage).map(([agent, u], k) => ({
        traceId: `demo-pipe-${i}`,
        spanId: `s${k}`,
        parentSpanId: 'root',
        agent,
        model: MODEL[agent]!,
        kind: 'llm' as const,
        usage: { input: u.inputTokens, output: u.outputTokens },
        start: t0 + k * 1000,
        end: t0 + k * 1000 + 900,
        decisionId: a.decisionId,
      }));
      const spans = [root, ...calls];
      await client.request('POST', '/v1/spans', { spans });
    }
    sent++;
  };
  // In rounds, retraining the shadow learner after each, so its learning curve has a point per round.
  const rounds = Math.max(1, o.rounds ?? 3);
  for (let r = 0; r < rounds; r++) {
    const to = Math.round(((r + 1) * o.requests) / rounds);
    let next = Math.round((r * o.requests) / rounds);
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < to; i = next++) await one(i);
      }),
    );
    const version = await trainAndWait(client, PIPELINE, o.trainWaitMs ?? 120_000);
    log(`${sent} allocations and outcomes sent (support-triage)${version ? `; learner model v${version}` : '; the learner has not trained yet'}`);
  }

  // Cost trees: coordinator sessions with sub-agents, a failed attempt and its retry, across customers and days.
  const customers = ['acme', 'globex', 'initech'];
  for (const [n, session] of DEMO_SESSIONS.entries()) {
    const t0 = now - n * 86_400_000 - 3_600_000;
    const trace = `demo-trace-${n + 1}`;
    const at = (s: number) => t0 + s * 1000;
    const spans = [
      { traceId: trace, spanId: 'root', sessionId: session, customer: customers[n % 3], team: n % 2 ? 'research' : 'support', agent: 'coordinator', kind: 'agent', start: at(0), end: at(40) },
      { traceId: trace, spanId: 'plan', parentSpanId: 'root', agent: 'coordinator', model: 'gpt-4o', provider: 'openai', usage: { input: 2400 + 300 * n, output: 600 }, start: at(1), end: at(4) },
      { traceId: trace, spanId: 'research', parentSpanId: 'root', agent: 'researcher', kind: 'agent', start: at(4), end: at(25) },
      { traceId: trace, spanId: 'r1', parentSpanId: 'research', agent: 'researcher', model: 'claude-sonnet-4-5', provider: 'anthropic', attempt: 1, status: 'error', usage: { input: 5200, output: 120 }, start: at(5), end: at(9) },
      { traceId: trace, spanId: 'r2', parentSpanId: 'research', agent: 'researcher', model: 'claude-sonnet-4-5', provider: 'anthropic', attempt: 2, usage: { input: 5200 + 200 * n, output: 1400, cacheRead: 3000 }, start: at(10), end: at(18) },
      { traceId: trace, spanId: 'r3', parentSpanId: 'research', agent: 'researcher', model: 'gpt-4o-mini', provider: 'openai', usage: { input: 9000, output: 800 }, start: at(18), end: at(24) },
      { traceId: trace, spanId: 'write', parentSpanId: 'root', agent: 'writer', model: 'gpt-4o', provider: 'openai', usage: { input: 7000, output: 2200 + 100 * n }, start: at(26), end: at(36) },
      { traceId: trace, spanId: 'review', parentSpanId: 'root', agent: 'reviewer', model: 'gpt-4o-mini', provider: 'openai', usage: { input: 3000, output: 300 }, start: at(36), end: at(39) },
    ];
    await client.request('POST', '/v1/spans', { spans });
  }
  log(`${DEMO_SESSIONS.length} session cost trees (${DEMO_SESSIONS[0]} … ${DEMO_SESSIONS.at(-1)})`);

  // Budgets: a $50 workspace with three agent budgets, a token budget, spending, alerts and live reservations.
  const put = (scope: string, allocated: number, unit = 'USD_MICROCENTS', extra: object = {}) => client.request('PUT', '/v1/budgets', { scope, unit, allocated, ...extra });
  const ws = 'tenant:acme/workspace:alpha';
  await put('tenant:acme', 200 * USD);
  await put(ws, 50 * USD);
  await put(`${ws}/agent:planner`, 20 * USD, 'USD_MICROCENTS', { overagePolicy: 'ALLOW_IF_AVAILABLE' });
  await put(`${ws}/agent:executor`, 30 * USD);
  await put(`${ws}/agent:reviewer`, 10 * USD);
  await put(`${ws}/workflow:triage`, 2_000_000, 'TOKENS');
  const reserve = (scope: string, amount: number, key: string, ttlMs = 60_000, unit = 'USD_MICROCENTS') =>
    client.request<{ id: string }>('POST', '/v1/reservations', { scope, unit, amount, idempotencyKey: `demo-${o.seed}-${key}`, ttlMs });
  const spend = async (scope: string, dollars: number, key: string) => {
    const r = await reserve(scope, Math.round(dollars * 1.2 * USD), key);
    await ignoreConflict(client.request('POST', `/v1/reservations/${encodeURIComponent(r.id)}/commit`, { amount: Math.round(dollars * USD) }));
  };
  for (let k = 0; k < 6; k++) await spend(`${ws}/agent:planner`, 2.75, `planner-${k}`);
  for (let k = 0; k < 4; k++) await spend(`${ws}/agent:executor`, 3.1, `executor-${k}`);
  await spend(`${ws}/agent:reviewer`, 5.5, 'reviewer-0');
  await reserve(`${ws}/agent:executor`, 4 * USD, 'live-executor', 3_600_000);
  await reserve(`${ws}/agent:reviewer`, 1.5 * USD, 'live-reviewer', 3_600_000);
  await reserve(`${ws}/workflow:triage`, 250_000, 'live-tokens', 3_600_000, 'TOKENS');
  log(`budgets under ${ws}: spending, alerts and three live reservations`);
}
