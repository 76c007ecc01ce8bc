import type { World } from './world.js';

/**
 * A degraded copy of a world (pure), for testing the runtime guard: `agent` becomes critical on every request
 * (weight 0.9) and needs `factor` (default 4) times as many tokens. Applied to the agent a model starves most, it makes that
 * model worse than the uniform split, a change a frozen model cannot follow. The drift block is dropped.
 */
export function degradeWorld(world: World, agent: string, factor = 4): World {
  const t = world.truth[agent];
  if (!t) throw new Error(`world ${world.name} has no agent ${agent}`);
  const { weightByTask: _dropped, ...rest } = t;
  const scaled = { ...rest, base: t.base * factor, ...(t.perMessage !== undefined ? { perMessage: t.perMessage * factor } : {}), ...(t.perDocToken !== undefined ? { perDocToken: t.perDocToken * factor } : {}), weight: 0.9 };
  const { drift: _drift, ...base } = world;
  return { ...base, name: `${world.name}-degraded`, truth: { ...world.truth, [agent]: scaled } };
}

/** The agent whose mean served budget is lowest relative to the uniform split's (pipeline order budgets). */
export function mostStarved(world: World, served: readonly (readonly number[])[], uniform: readonly number[]): string {
  const ratio = world.agents.map((_, j) => served.reduce((s, b) => s + b[j]! / Math.max(1, uniform[j]!), 0) / Math.max(1, served.length));
  return world.agents[ratio.indexOf(Math.min(...ratio))]!.name;
}
