import assert from 'node:assert/strict';

/**
 * One agent session written through a real OpenTelemetry tracer, and what its cost tree must hold. Shared by the
 * tests of the 2.x SDK (test/costs/otel.test.ts) and the 3.x SDK (test/compat/otel3), so it names no type of either
 * API version: the tracer and the span are structural, and `childOf` makes the parent context with the caller's API.
 */
export interface SessionSpan {
  end(): void;
  setStatus(status: { code: number; message?: string }): unknown;
}
export interface SessionTracer<S extends SessionSpan, C> {
  startSpan(name: string, options: { attributes: Record<string, string | number> }, context?: C): S;
}

/** SpanStatusCode.ERROR in every API version. */
const ERROR = 2;

/** A coordinator with one call, a researcher sub-agent with two calls (current and deprecated names), an OpenInference call. */
export function runSession<S extends SessionSpan, C>(tracer: SessionTracer<S, C>, childOf: (parent: S) => C, session: string): void {
  const child = (parent: S, name: string, attrs: Record<string, string | number>) => tracer.startSpan(name, { attributes: attrs }, childOf(parent));
  const root = tracer.startSpan('invoke_agent coordinator', {
    attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'coordinator', 'session.id': session, 'user.id': `${session}-customer` },
  });
  child(root, 'chat gpt-4o', {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': 'openai',
    'gen_ai.request.model': 'gpt-4o',
    'gen_ai.usage.input_tokens': 1000,
    'gen_ai.usage.output_tokens': 200,
    'gen_ai.usage.cache_read.input_tokens': 400,
  }).end();
  const researcher = child(root, 'invoke_agent researcher', { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'researcher' });
  child(researcher, 'chat', { 'gen_ai.system': 'openai', 'gen_ai.response.model': 'gpt-4o-mini', 'gen_ai.usage.prompt_tokens': 500, 'gen_ai.usage.completion_tokens': 50 }).end();
  const failing = child(researcher, 'llm', { 'openinference.span.kind': 'LLM', 'llm.model_name': 'gpt-4o-mini', 'llm.provider': 'openai', 'llm.token_count.prompt': '300', 'llm.token_count.completion': '30' });
  failing.setStatus({ code: ERROR, message: 'rate limited' });
  failing.end();
  researcher.end();
  root.end();
}

/**
 * The cost tree of one runSession: five spans, three priced calls, the failed one attributed to the researcher.
 * `customer`: who every span is attributed to (the session's `user.id`; under a tenant's key, the tenant).
 */
export function checkTree(t: any, session: string, customer = `${session}-customer`): void {
  assert.equal(t.pending.length, 0);
  assert.equal(t.nodes.length, 5, `${session}: all five spans stored`);
  assert.equal(t.total.calls, 3);
  assert.equal(t.total.tokens.input, 1800);
  assert.equal(t.total.tokens.output, 280);
  assert.equal(t.total.tokens.cacheRead, 400);
  assert.equal(t.total.unpricedCalls, 0);
  assert.ok(t.total.costNano > 0);
  const agents = Object.fromEntries(t.byAgent.map((b: any) => [b.key, b.tokens.total]));
  assert.deepEqual(agents, { coordinator: 1200, researcher: 880 });
  for (const n of t.nodes) assert.equal(n.customer, customer);
  const failed = t.nodes.find((n: any) => n.status === 'error');
  assert.equal(failed.agent, 'researcher');
  assert.equal(t.wastedOnRetries.calls, 1);
  assert.deepEqual(
    t.byLevel.map((b: any) => b.key),
    ['0', '1'],
  );
}
