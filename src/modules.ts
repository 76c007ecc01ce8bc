import { allocationModule } from './allocation/module.js';
import { budgetsModule } from './budgets/module.js';
import { consoleModule } from './console/module.js';
import { costsModule } from './costs/module.js';
import { feedbackModule } from './feedback/module.js';
import { learnerModule } from './learner/module.js';
import { pipelinesModule } from './pipelines/routes.js';
import { rolloutModule } from './rollout/module.js';
import type { Core, ModuleParts } from './kernel/core.js';
import { strategiesModule } from './strategies/routes.js';
import { syncModule } from './sync/module.js';

/**
 * Wires every domain module in one place. Order matters only for routers (consulted in order) and for
 * modules that take another module's service.
 */
export async function createModules(core: Core): Promise<ModuleParts[]> {
  const modules: ModuleParts[] = [];
  const all = () => modules;
  const allocation = allocationModule(core, all);
  modules.push(pipelinesModule(core), strategiesModule(core), allocation, feedbackModule(core, all, allocation));
  modules.push(budgetsModule(core));
  modules.push(rolloutModule(core));
  modules.push(costsModule(core));
  modules.push(learnerModule(core));
  modules.push(consoleModule(core));
  modules.push(syncModule(core, () => allocation.decisions, all));
  for (const m of modules) for (const k of m.strategyKinds ?? []) core.kinds.register(k);
  return modules;
}
