import type { LoggedEvent } from './events.js';
import { rewardOf } from './events.js';

/**
 * One logged decision as a line of Vowpal Wabbit's decision-service JSON (DSJSON, the format of
 * `vw --dsjson --cb_explore_adf`): shared context features in `c`, one `_multi` entry per candidate action
 * (its budget shares per agent), `a` the action ids (1-based) with the chosen one first, `p` their
 * probabilities in the same order, and the label as a cost (−reward) with the chosen action's probability.
 * A decision by a deterministic strategy has a single action with probability 1.
 */
export function toDsjson(e: LoggedEvent, agents: readonly string[], costWeight = 0): string {
  const served = agents.map((a) => e.b[a] ?? 0);
  const C = e.C && e.P && e.k !== undefined ? e.C : [served];
  const P = e.C && e.P && e.k !== undefined ? e.P : [1];
  const k = e.C && e.P && e.k !== undefined ? e.k : 0;
  const total = Math.max(1, e.T);
  const multi = C.map((c) => ({ share: Object.fromEntries(agents.map((a, i) => [a, Number((c[i]! / total).toFixed(6))])) }));
  const order = [k, ...C.map((_, i) => i).filter((i) => i !== k)];
  const context: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(e.f)) if (v !== null) context[name] = v;
  const reward = rewardOf(e, costWeight);
  return JSON.stringify({
    _label_cost: -reward,
    _label_probability: P[k],
    _label_Action: k + 1,
    _labelIndex: k,
    o: [{ v: reward, EventId: e.id, ActionTaken: false }],
    Timestamp: new Date(e.t).toISOString(),
    Version: '1',
    EventId: e.id,
    a: order.map((i) => i + 1),
    c: { ...context, _multi: multi },
    p: order.map((i) => P[i]!),
    VWState: { m: `${e.s}/${e.m ?? 0}` },
    ...(e.d ? { _defaultReward: true } : {}),
  });
}
