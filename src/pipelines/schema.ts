import { Type, type Static } from '@sinclair/typebox';

/** The longest id of a pipeline, strategy or experiment. */
export const MAX_ID_LENGTH = 128;
/** The pattern of every id: letters, digits, _ . -, not starting with a punctuation mark, at most MAX_ID_LENGTH. */
export const ID_PATTERN = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,${MAX_ID_LENGTH - 1}}$`;
export const Id = Type.String({ pattern: ID_PATTERN, description: `Identifier: letters, digits, _ . - (max ${MAX_ID_LENGTH}).` });
export const AgentName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' });
export const Priority = Type.Union([Type.Literal('critical'), Type.Literal('standard'), Type.Literal('background')]);
export type Priority = Static<typeof Priority>;

const Tokens = Type.Integer({ minimum: 0, maximum: 100_000_000 });

/** A model id: no leading or trailing whitespace (it would never match a price, a span's model or a reported one). */
const ModelName = Type.String({ minLength: 1, maxLength: 200, pattern: '^\\S(.*\\S)?$', description: 'Model id as the price table, price overrides and spans name it; no leading or trailing whitespace.' });
const ProviderName = Type.String({ minLength: 1, maxLength: 64 });
const MTokPrice = Type.Object(
  { inputPerMTokUsd: Type.Number({ minimum: 0 }), outputPerMTokUsd: Type.Number({ minimum: 0 }) },
  { additionalProperties: false },
);

/** A candidate model of an agent as written: the price comes from the tenant's override or the price table. */
export const ModelEntry = Type.Object({ model: ModelName, provider: Type.Optional(ProviderName) }, { additionalProperties: false });
/** A candidate model as stored and answered: with the price the pipeline version uses (USD per million tokens). */
export const ModelEntryView = Type.Object({ model: ModelName, provider: Type.Optional(ProviderName), price: MTokPrice });
const Models = Type.Array(ModelEntry, {
  minItems: 1,
  maxItems: 8,
  description: 'Candidate models, the first being the default. Each must be in the price table (@pydantic/genai-prices) or have a price override for the tenant.',
});

export const AgentSchema = Type.Object(
  {
    name: AgentName,
    model: Type.Optional(ModelName),
    priority: Type.Optional(Priority),
    minTokens: Type.Optional(Tokens),
    maxTokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000_000 })),
    price: Type.Optional(
      Type.Object(
        {
          inputPerMTokUsd: Type.Number({ minimum: 0 }),
          outputPerMTokUsd: Type.Number({ minimum: 0 }),
        },
        { additionalProperties: false, description: 'USD per million tokens, used when an outcome carries no cost.' },
      ),
    ),
    models: Type.Optional(Models),
  },
  { additionalProperties: false },
);
export type AgentInput = Static<typeof AgentSchema>;

/** An agent as answered: its models carry their resolved prices. */
export const AgentView = Type.Composite([Type.Omit(AgentSchema, ['models']), Type.Object({ models: Type.Optional(Type.Array(ModelEntryView)) })]);

export const PipelineBody = Type.Object(
  {
    agents: Type.Array(AgentSchema, { minItems: 1, maxItems: 64 }),
    defaultTotalTokens: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
    defaultStrategy: Type.Optional(Id),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
);
export type PipelineBody = Static<typeof PipelineBody>;

/** An agent with defaults applied, and a pipeline (the engine's types: local mode reads the same objects). */
export type { Agent, Pipeline } from '@apportion/sdk/engine';

export const PipelineResponse = Type.Object({
  id: Type.String(),
  version: Type.Integer(),
  agents: Type.Array(AgentView),
  defaultTotalTokens: Type.Integer(),
  defaultStrategy: Type.Optional(Type.String()),
  description: Type.Optional(Type.String()),
});

export const PipelineParams = Type.Object({ id: Id });
