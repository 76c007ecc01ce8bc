import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import type { Running } from '../../src/server.js';
import { eventually } from '../helpers/env.js';

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

export function client(rt: () => Running) {
  const call = (method: Method, url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
    rt().app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });
  const ok = async (method: Method, url: string, payload?: unknown): Promise<any> => {
    const r = await call(method, url, payload);
    assert.ok(r.statusCode < 300, `${method} ${url} → ${r.statusCode} ${r.body}`);
    return r.statusCode === 204 ? undefined : r.json();
  };
  return { call, ok };
}

export interface Driven {
  readonly byVariant: Map<string, number>;
  readonly reported: number;
}

/**
 * Allocates for `units` unit keys and reports one outcome each whose quality (and cost) depends on the
 * response; then waits until the outcome worker has applied every reported outcome to the experiment.
 */
export async function drive(
  api: ReturnType<typeof client>,
  opts: {
    pipeline: string;
    experiment: string;
    units: readonly string[];
    features?: Record<string, string | number | boolean>;
    outcome: (alloc: any, i: number) => { quality: number; costUsd?: number; usage?: Record<string, { inputTokens?: number; outputTokens?: number; truncated?: boolean }> } | undefined;
  },
): Promise<Driven> {
  const byVariant = new Map<string, number>();
  let reported = 0;
  const before = await totalOutcomes(api, opts.experiment);
  let i = 0;
  for (const u of opts.units) {
    const a = await api.ok('POST', '/v1/allocations', { pipeline: opts.pipeline, unitKey: u, ...(opts.features ? { features: opts.features } : {}) });
    if (a.experiment === opts.experiment && a.variant) byVariant.set(a.variant, (byVariant.get(a.variant) ?? 0) + 1);
    const o = opts.outcome(a, i++);
    if (o && a.experiment === opts.experiment && a.variant) {
      await api.ok('POST', '/v1/outcomes', { decisionId: a.decisionId, ...o });
      reported++;
    }
  }
  await eventually(async () => (await totalOutcomes(api, opts.experiment)) >= before + reported, 20_000);
  return { byVariant, reported };
}

export async function totalOutcomes(api: ReturnType<typeof client>, experiment: string): Promise<number> {
  const r = await api.call('GET', `/v1/experiments/${experiment}/results`);
  if (r.statusCode !== 200) return 0;
  const res = r.json() as { phases: { variants: { n: number }[] }[] };
  return res.phases.reduce((s, p) => s + p.variants.reduce((t, v) => t + v.n, 0), 0);
}

export const unitKeys = (n: number, salt: string): string[] => Array.from({ length: n }, (_, i) => `${salt}-${i}`);
