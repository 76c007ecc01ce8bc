import { decide, viewOf, BUILTIN_ENGINE_KINDS } from '@apportion/sdk/engine';
const doc = { defaultTotalTokens: 30000, agents: [
 { name: 'planner', priority: 'critical', minTokens: 500, models: [{ model: 'o', price: {inputPerMTokUsd:15,outputPerMTokUsd:75}}, { model: 'h', price: {inputPerMTokUsd:1,outputPerMTokUsd:5}}] },
 { name: 'writer', minTokens: 500, models: [{ model: 'o', price: {inputPerMTokUsd:15,outputPerMTokUsd:75}}] } ] };
const kinds = ['pipelines','strategies','experiments','priceOverrides','features','models'];
const raw = { version: 1, kinds: Object.fromEntries(kinds.map(k => [k, new Map()])) } as any;
raw.kinds.pipelines.set('p', { id: 'p', version: 1, doc });
const view = viewOf(raw);
const d = decide({ kinds: { get: (k: string) => (BUILTIN_ENGINE_KINDS as any)[k] }, routers: [], onStrategyError: (id, e) => console.log(id, e) }, view, { pipeline: 'p' }, 'x');
console.log(d.budgets, d.tiers);
