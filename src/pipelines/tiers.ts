import { calcPrice, findProvider } from '@pydantic/genai-prices';
import type { ModelTier } from '@apportion/sdk/engine';
import type { ControlView } from '../control/view.js';
import { AppError } from '../errors/app-error.js';
import { overridesOf, type ModelOverride } from '../kernel/price-overrides.js';
import type { PipelineBody } from './schema.js';

/**
 * Prices of a pipeline's candidate models (`agents[].models`), resolved when the pipeline is written and stored
 * with it, so the server and the SDK's local mode price a version identically without the price table: the
 * tenant's price override for the model when there is one (as the cost reports price spans), else the bundled
 * @pydantic/genai-prices catalog at the time of writing (its base tier: the price of the first thousand tokens).
 * A model neither knows is refused (UNKNOWN_MODEL). Writing the pipeline again picks up changed prices.
 */

const K = 1000;

function providerId(name: string | undefined): string | undefined {
  if (!name) return undefined;
  try {
    return findProvider({ providerId: name === 'x_ai' ? 'x-ai' : name })?.id;
  } catch {
    return undefined;
  }
}

/**
 * USD per million tokens from the catalog, or undefined when it does not know the model (for that provider). A routed
 * model id (`openai/gpt-4o`: AI SDK gateway, OpenRouter and LiteLLM-style ids) the catalog does not know as given is
 * priced as the cost reports price it (src/costs/pricing.ts): the part after the first `/` at the list price of the
 * provider before it (a prefix the catalog does not know as a provider leaves the model name to decide).
 */
export function catalogPrice(model: string, provider: string | undefined, at = Date.now()): { inputPerMTokUsd: number; outputPerMTokUsd: number } | undefined {
  if (provider && !providerId(provider)) return undefined;
  const direct = catalogPriceAs(model, providerId(provider), at);
  if (direct) return direct;
  const slash = model.indexOf('/');
  return slash > 0 && slash < model.length - 1 ? catalogPriceAs(model.slice(slash + 1), providerId(model.slice(0, slash)), at) : undefined;
}

function catalogPriceAs(model: string, pid: string | undefined, at: number): { inputPerMTokUsd: number; outputPerMTokUsd: number } | undefined {
  const total = (input: number, output: number): number | undefined => {
    try {
      return calcPrice({ input_tokens: input, output_tokens: output }, model, { timestamp: new Date(at), ...(pid ? { providerId: pid } : {}) })?.total_price;
    } catch {
      return undefined;
    }
  };
  const fixed = total(0, 0);
  const input = total(K, 0);
  const output = total(0, K);
  if (fixed === undefined || input === undefined || output === undefined) return undefined;
  const round = (v: number) => Math.round(v * 1e9) / 1e9;
  return { inputPerMTokUsd: round(((input - fixed) * 1e6) / K), outputPerMTokUsd: round(((output - fixed) * 1e6) / K) };
}

function overridePrice(model: string, provider: string | undefined, overrides: readonly ModelOverride[] | undefined) {
  const o = overrides?.find((x) => x.model.toLowerCase() === model.toLowerCase() && (!x.provider || !provider || x.provider === provider));
  return o ? { inputPerMTokUsd: o.inputMTok, outputPerMTokUsd: o.outputMTok } : undefined;
}

/**
 * A model's price in force for a tenant's overrides: the override for it, else the catalog at `at` (epoch ms);
 * undefined when neither prices it. What pipelines store for their models when written, and what an outcome of a
 * decision made on an earlier pipeline version is priced at (src/feedback/outcome-cost.ts).
 */
export function modelPriceInForce(model: string, provider: string | undefined, overrides: readonly ModelOverride[] | undefined, at = Date.now()) {
  return overridePrice(model, provider, overrides) ?? catalogPrice(model, provider, at);
}

/**
 * Checks every agent's `models` and returns the body with their prices filled in (the stored document). `tenant`
 * is the pipeline's owner: its price overrides (else the `*` overrides) apply before the catalog.
 */
export function resolveModelPrices(body: PipelineBody, view: ControlView, tenant: string): PipelineBody {
  if (!body.agents.some((a) => a.models !== undefined)) return body;
  const overrides = overridesOf(view)(tenant);
  const agents = body.agents.map((a, i) => {
    if (a.models === undefined) return a;
    const seen = new Set<string>();
    const models: ModelTier[] = a.models.map((m, j) => {
      const field = `body/agents/${i}/models/${j}/model`;
      // Answers, decisions and the learner name a model by its name alone: one name once per agent, whatever the provider.
      const key = m.model.toLowerCase();
      if (seen.has(key)) throw new AppError('DUPLICATE_MODEL', `${field}: model "${m.model}" appears twice for agent "${a.name}" (a model is named by its name alone, whatever its provider)`);
      seen.add(key);
      const price = modelPriceInForce(m.model, m.provider, overrides);
      if (!price) {
        throw new AppError('UNKNOWN_MODEL', `${field}: "${m.model}"${m.provider ? ` (provider ${m.provider})` : ''} is not in the price table and tenant "${tenant}" has no price override for it`);
      }
      return { model: m.model, ...(m.provider !== undefined ? { provider: m.provider } : {}), price };
    });
    if (a.model !== undefined && a.model !== models[0]!.model) {
      throw new AppError('UNKNOWN_MODEL', `body/agents/${i}/model: "${a.model}" must be the first of body/agents/${i}/models ("${models[0]!.model}") when both are given`);
    }
    return { ...a, models };
  });
  return { ...body, agents };
}
