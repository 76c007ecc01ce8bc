/**
 * Scenario for bench/allocate: the example pipeline with three running experiments — two sharing a
 * layer (disjoint halves), each with targeting; one outside the layer with partial coverage and a
 * holdout of 5 % — so every allocation pays for the holdout hash, targeting checks, the layer hash,
 * inclusion and variant hashes, and the experiment fields in the decision record.
 */
import type { ApportionClient } from '@apportion/sdk';

const TASKS = ['refund', 'technical', 'billing', 'other'];
const P = 'support-triage';

const experiments: [string, Record<string, unknown>][] = [
  [
    'bench-static',
    {
      pipeline: P,
      variants: [
        { name: 'control', strategy: 'support-estimate', weight: 1 },
        { name: 'static', strategy: 'support-static', weight: 1 },
      ],
      layer: { id: 'bench-layer', range: [0, 0.5] },
      targeting: { all: [{ attribute: 'taskType', op: 'in', values: ['refund', 'technical', 'billing'] }] },
      guardrails: [{ metric: 'quality', maxRegression: 0.02 }],
    },
  ],
  [
    'bench-pool',
    {
      pipeline: P,
      variants: [
        { name: 'control', strategy: 'support-estimate', weight: 1 },
        { name: 'pool', strategy: 'support-priority-pool', weight: 1 },
      ],
      layer: { id: 'bench-layer', range: [0.5, 1] },
      targeting: { all: [{ attribute: 'messageCount', op: 'gte', value: 5 }] },
    },
  ],
  [
    'bench-uniform',
    {
      pipeline: P,
      coverage: 0.5,
      variants: [
        { name: 'control', strategy: 'support-estimate', weight: 3 },
        { name: 'uniform', strategy: 'support-uniform', weight: 1 },
      ],
      targeting: { all: [{ attribute: 'documentTokens', op: 'lt', value: 30_000 }], invert: false },
    },
  ],
  ['bench-holdout', { pipeline: P, type: 'holdout', coverage: 0.05 }],
];

/** Pauses or resumes every experiment of the scenario, so bench/allocate can alternate with and without them. */
export async function toggle(client: ApportionClient, on: boolean): Promise<void> {
  for (const [id] of experiments) await client.request('POST', `/v1/experiments/${id}/${on ? 'resume' : 'pause'}`);
}

export async function setup(client: ApportionClient): Promise<{ path: string; bodies: object[] }> {
  for (const [id, body] of experiments) {
    await client.request('PUT', `/v1/experiments/${id}`, body);
    await client.request('POST', `/v1/experiments/${id}/start`);
  }
  const bodies = Array.from({ length: 512 }, (_, i) => ({
    pipeline: P,
    unitKey: `user-${i}`,
    features: { messageCount: 1 + ((i * 7) % 60), documentTokens: (i * 997) % 40_000, taskType: TASKS[i % TASKS.length]! },
  }));
  // Sanity: the scenario really routes through experiments.
  const seen = new Set<string>();
  for (const b of bodies.slice(0, 64)) {
    const a = await client.request<{ reason: string; experiment?: string }>('POST', '/v1/allocations', b);
    seen.add(a.experiment ?? a.reason);
  }
  if (seen.size < 4) throw new Error(`experiments scenario routes too little: ${[...seen].join(', ')}`);
  return { path: '/v1/allocations', bodies };
}
