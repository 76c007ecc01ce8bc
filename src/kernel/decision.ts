import { Type } from '@sinclair/typebox';
import type { EngineRecord as DecisionRecord } from '@apportion/sdk/engine';
import { jsonDecoder } from '../redis/decode.js';

/**
 * What was decided for one request: joined with its outcome later, and the log off-policy evaluation reads.
 * The engine's record type (`@apportion/sdk/engine`), which builds it for the server and for the SDK's local mode;
 * `routing` is the routing stage of the logging policy when it was random (see DecisionRouting there).
 */
export type { EngineRecord as DecisionRecord, DecisionRouting, RouteAlternative } from '@apportion/sdk/engine';

/** Reads stored decision records (the allocation domain's DecisionStore); for domains that need a record, not its keys. */
export interface DecisionReader {
  /** Many records (undefined where gone), in the order of `ids`. */
  readMany(ids: readonly string[]): Promise<(DecisionRecord | undefined)[]>;
  /**
   * The default-reward sweep's claim on due decisions, in the order of `ids` (undefined where the record is gone):
   * a decision without an outcome receipt is marked defaulted at once, so an outcome received afterwards is counted in
   * the statistics but not logged for the learner; `outcome` when an outcome was received first.
   */
  claimForDefault(ids: readonly string[]): Promise<(DefaultClaim | undefined)[]>;
}

/**
 * What the default-reward sweep found for a due decision: its record, and `outcome` when an outcome was received
 * before the claim (`learner`: that outcome is the decision's learner event, unless received after the wait window
or its job has not applied by the end of the grace (learner-default.lua: then the default reward is);
 * `receivedAt`: when intake received it, epoch ms by Redis's clock). Without `outcome` the decision is claimed for
 * the default reward.
 */
export interface DefaultClaim {
  readonly record: DecisionRecord;
  readonly outcome?: { readonly learner: boolean; readonly receivedAt: number };
}

/** A decision id as the API accepts it (ids made here are `<epoch second, base 36>-<UUID>`, src/allocation/decisions.ts). */
export const DECISION_ID_PATTERN = '^[A-Za-z0-9_-]{16,64}$';

const Num = Type.Number();
const Str = Type.String();
const Doc = Type.Record(Str, Type.Unknown());

/**
 * A decision record stored as JSON, parsed and checked against the record's shape (typed by DecisionRecord, so the
 * schema cannot let through what the type does not allow); undefined when the text is not JSON or not a record.
 */
export const decodeDecisionRecord: (text: string) => DecisionRecord | undefined = jsonDecoder(
  Type.Object({
    id: Str,
    pipeline: Str,
    pipelineVersion: Num,
    strategy: Str,
    strategyVersion: Num,
    strategyKind: Str,
    reason: Str,
    budgets: Type.Record(Str, Num),
    totalTokens: Num,
    features: Type.Record(Str, Type.Union([Str, Num, Type.Boolean(), Type.Null()])),
    unitKey: Type.Optional(Str),
    ts: Num,
    route: Type.Optional(Doc),
    meta: Type.Optional(Doc),
    shadow: Type.Optional(Doc),
    routing: Type.Optional(
      Type.Object({
        q: Num,
        alt: Type.Array(Type.Object({ s: Str, q: Num, b: Type.Array(Num), l: Type.Optional(Doc), m: Type.Optional(Type.Array(Type.Union([Str, Type.Null()]))) })),
      }),
    ),
    models: Type.Optional(Type.Record(Str, Str)),
    maxCostUsd: Type.Optional(Num),
  }),
);
