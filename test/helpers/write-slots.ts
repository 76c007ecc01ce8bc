import type { Redis } from 'ioredis';
import { newDecisionId, type DecisionRecord } from '../../src/allocation/decisions.js';
import { masters } from '../../src/redis/connection.js';

/** A uniform decision record with `id` (the decision store's tests). */
export const sampleRecord = (id: string): DecisionRecord => ({
  id,
  pipeline: 'p',
  pipelineVersion: 1,
  strategy: 's',
  strategyVersion: 1,
  strategyKind: 'uniform',
  reason: 'default',
  budgets: { a: 100, b: 200 },
  totalTokens: 300,
  features: {},
  ts: Date.now(),
});

/** Holds every command the connection sends until the returned function is called (in order). */
export async function holdConnection(conn: Redis): Promise<() => void> {
  const nodes = masters(conn);
  await Promise.all(nodes.map((n) => n.ping()));
  const streams = nodes.map((n) => (n as unknown as { stream: { cork(): void; uncork(): void } }).stream);
  for (const s of streams) s.cork();
  return () => {
    for (const s of streams) s.uncork();
  };
}

/**
 * With the store's connection held: `slots` writes in flight (the store's write slots, one record each, each sent in a
 * turn of its own), then `queued` more that wait for a slot and whose writers stop waiting. Returns their ids, the
 * in-flight writes (settling to their result or error) and the queued writers' settled results.
 */
export async function fillWriteSlots(write: (r: DecisionRecord) => Promise<unknown>, slots = 4, queued = 10) {
  const inFlight: string[] = [];
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < slots; i++) {
    const id = newDecisionId();
    inFlight.push(id);
    writes.push(write(sampleRecord(id)).catch((e: unknown) => e));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
  const ids = Array.from({ length: queued }, () => newDecisionId());
  const waits = await Promise.allSettled(ids.map((id) => write(sampleRecord(id))));
  return { inFlight, queued: ids, writes, waits };
}
