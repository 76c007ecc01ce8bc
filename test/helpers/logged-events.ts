import type { LoggedEvent } from '../../src/learner/events.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { contextFeatures, expectedQuality, sampleContext, type World } from '../../src/learner/sim/world.js';

/**
 * `n` logged events of a hand-written world as ingest pushes them (JSON, for LPUSH onto a learner buffer): each a
 * random split of the world's total (shares 0.2 + U(0, 1), normalised) rewarded with its expected quality. Seeded.
 */
export function randomSplitEvents(world: World, n: number, seed: number, strategy: string): string[] {
  const rng = mulberry32(seed);
  const names = world.agents.map((a) => a.name);
  const items: string[] = [];
  for (let i = 0; i < n; i++) {
    const x = sampleContext(world, rng);
    const w = names.map(() => 0.2 + rng());
    const sum = w.reduce((a, b) => a + b, 0);
    const split = w.map((v) => Math.floor((v / sum) * world.totalTokens));
    const b: Record<string, number> = {};
    names.forEach((a, j) => (b[a] = split[j]!));
    const ev: LoggedEvent = { id: `ev-${i}`, t: Date.now(), s: strategy, f: contextFeatures(x), T: world.totalTokens, b, q: expectedQuality(world, 0, x, split), c: null };
    items.push(JSON.stringify(ev));
  }
  return items;
}
