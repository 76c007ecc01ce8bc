import { Type, type Static } from '@sinclair/typebox';
import { NAME_PATTERN } from './scope.js';

/** Largest amount accepted anywhere: sums of a few stay exact in Lua's doubles (< 2^53). */
export const MAX_AMOUNT = 1_000_000_000_000_000;
/**
 * Largest value a budget's allocated, or its consumption (spent + debt), may reach: 2^53 − 1, the largest integer the
 * scripts' numbers (doubles) hold exactly (`LEDGER_MAX` in src/redis/lua/lib/ledger.lua). A fund, debit or commit that
 * would pass it is refused with LEDGER_LIMIT_EXCEEDED, nothing written.
 */
export const LEDGER_MAX = Number.MAX_SAFE_INTEGER;

export const Unit = Type.Union([Type.Literal('TOKENS'), Type.Literal('USD_MICROCENTS')], {
  description: 'TOKENS, or USD_MICROCENTS (1 USD = 100,000,000). Budgets of different units are separate ledgers.',
});
export type Unit = Static<typeof Unit>;
export const OveragePolicy = Type.Union([Type.Literal('REJECT'), Type.Literal('ALLOW_IF_AVAILABLE'), Type.Literal('ALLOW_WITH_OVERDRAFT')]);
export type OveragePolicy = Static<typeof OveragePolicy>;
export const Period = Type.Union([Type.Literal('day'), Type.Literal('month')]);

const Amount = Type.Integer({ minimum: 1, maximum: MAX_AMOUNT });
const Name = Type.String({ pattern: NAME_PATTERN });
export const ScopeText = Type.String({
  minLength: 1,
  maxLength: 600,
  description: 'tenant:<t>/workspace:<w>/workflow:<f>/agent:<a> (levels in this order; any but tenant may be skipped)',
});
export const SubjectSchema = Type.Object(
  { tenant: Name, workspace: Type.Optional(Name), workflow: Type.Optional(Name), agent: Type.Optional(Name) },
  { additionalProperties: false, description: 'Alternative to `scope`: the server derives the scope, skipping missing levels.' },
);
export const IdempotencyKey = Type.String({ pattern: '^[A-Za-z0-9_.:@-]{1,200}$', description: 'Client-chosen key; a replay returns the original answer.' });

export const BudgetPutBody = Type.Object(
  {
    scope: ScopeText,
    unit: Unit,
    allocated: Type.Integer({ minimum: 0, maximum: MAX_AMOUNT }),
    overagePolicy: Type.Optional(OveragePolicy),
    overdraftLimit: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_AMOUNT })),
    period: Type.Optional(Period),
  },
  { additionalProperties: false },
);
export type BudgetPutBody = Static<typeof BudgetPutBody>;

export const BudgetOpBody = Type.Object(
  {
    scope: ScopeText,
    unit: Unit,
    amount: Type.Optional(Amount),
    idempotencyKey: IdempotencyKey,
  },
  { additionalProperties: false },
);
export type BudgetOpBody = Static<typeof BudgetOpBody>;
export const BudgetOpParams = Type.Object({
  op: Type.Union([Type.Literal('fund'), Type.Literal('debit'), Type.Literal('reset'), Type.Literal('freeze'), Type.Literal('unfreeze')]),
});
export type BudgetOp = Static<typeof BudgetOpParams>['op'];

export const Balance = Type.Object({
  scope: Type.String(),
  unit: Unit,
  allocated: Type.Integer(),
  remaining: Type.Integer(),
  reserved: Type.Integer(),
  spent: Type.Integer(),
  debt: Type.Integer(),
  frozen: Type.Boolean(),
  overagePolicy: OveragePolicy,
  overdraftLimit: Type.Integer(),
  period: Type.Optional(Period),
  overrun: Type.Optional(Type.Integer({ description: 'Charged this period beyond what the overage policy allowed (commits are never refused for an overage).' })),
});
export type Balance = Static<typeof Balance>;

export const BudgetOpResponse = Type.Object({
  op: Type.String(),
  scopes: Type.Array(Type.String(), { description: 'Budgeted scopes the operation applied to.' }),
  replayed: Type.Optional(Type.Boolean()),
});

export const BudgetDeleteQuery = Type.Object({ scope: ScopeText, unit: Unit }, { additionalProperties: false });
export type BudgetDeleteQuery = Static<typeof BudgetDeleteQuery>;
/** A deleted budget's last amounts. */
export const DeletedBalance = Type.Pick(Balance, ['scope', 'unit', 'allocated', 'remaining', 'reserved', 'spent', 'debt']);
export type DeletedBalance = Static<typeof DeletedBalance>;

export const BalancesQuery = Type.Object(
  { scope: ScopeText, unit: Type.Optional(Unit) },
  { additionalProperties: false },
);
export const BalancesResponse = Type.Object({ scope: Type.String(), balances: Type.Array(Balance) });

export const ReserveBody = Type.Object(
  {
    scope: Type.Optional(ScopeText),
    subject: Type.Optional(SubjectSchema),
    unit: Unit,
    amount: Amount,
    ttlMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000, description: 'Default 60000.' })),
    idempotencyKey: IdempotencyKey,
    dryRun: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ReserveBody = Static<typeof ReserveBody>;

/** A draw takes its scope and unit from the parent reservation. */
export const DrawBody = Type.Omit(ReserveBody, ['scope', 'subject', 'unit'], { additionalProperties: false });
export type DrawBody = Static<typeof DrawBody>;

export const State = Type.Union([Type.Literal('ACTIVE'), Type.Literal('COMMITTED'), Type.Literal('RELEASED'), Type.Literal('EXPIRED')]);
export type State = Static<typeof State>;

export const ReservationGranted = Type.Object({
  id: Type.String(),
  state: Type.Literal('ACTIVE'),
  scope: Type.String(),
  unit: Unit,
  amount: Type.Integer(),
  scopes: Type.Array(Type.String(), { description: 'Budgeted scopes the amount is held at, root first.' }),
  expiresAt: Type.Integer({ description: 'Deadline, ms since the epoch.' }),
  replayed: Type.Optional(Type.Boolean()),
});
export const DrawGranted = Type.Object({
  id: Type.String(),
  state: Type.Literal('ACTIVE'),
  parent: Type.String({ description: 'The reservation this draw takes its amount from.' }),
  scope: Type.String(),
  unit: Unit,
  amount: Type.Integer(),
  expiresAt: Type.Integer({ description: 'Deadline, ms since the epoch; never after the parent’s.' }),
  replayed: Type.Optional(Type.Boolean()),
});
export const DrawDryRun = Type.Object({ dryRun: Type.Literal(true), allowed: Type.Literal(true), parent: Type.String(), amount: Type.Integer() });
export const DryRunAnswer = Type.Object({
  dryRun: Type.Literal(true),
  allowed: Type.Literal(true),
  scope: Type.String(),
  unit: Unit,
  amount: Type.Integer(),
  scopes: Type.Array(Type.String()),
});

export const ReservationParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_.@-]{1,128}~[A-Za-z0-9]{1,64}$' }) });
export const CommitBody = Type.Object(
  { amount: Type.Integer({ minimum: 0, maximum: MAX_AMOUNT }), idempotencyKey: Type.Optional(IdempotencyKey) },
  { additionalProperties: false },
);
export const ReleaseBody = Type.Object({ idempotencyKey: Type.Optional(IdempotencyKey) }, { additionalProperties: false });
export const ExtendBody = Type.Object(
  { ttlMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })), idempotencyKey: Type.Optional(IdempotencyKey) },
  { additionalProperties: false },
);

export const Committed = Type.Object({
  id: Type.String(),
  state: Type.Literal('COMMITTED'),
  reserved: Type.Integer(),
  charged: Type.Integer(),
  released: Type.Integer({ description: 'Reserved but not charged: returned to the scopes.' }),
  debt: Type.Integer({ description: 'Largest overdraft this commit added at any scope.' }),
  overrun: Type.Integer({ description: 'Largest part of the charge that a held scope’s overage policy did not allow (charged all the same, and alerted); 0 when none.' }),
  late: Type.Optional(Type.Literal(true, { description: 'The reservation had expired: its hold had gone back, so the whole amount was charged as new spend.' })),
  replayed: Type.Optional(Type.Boolean()),
});
export const Released = Type.Object({
  id: Type.String(),
  state: Type.Literal('RELEASED'),
  released: Type.Integer(),
  replayed: Type.Optional(Type.Boolean()),
});
export const Extended = Type.Object({
  id: Type.String(),
  state: Type.Literal('ACTIVE'),
  expiresAt: Type.Integer(),
  extensions: Type.Integer(),
  replayed: Type.Optional(Type.Boolean()),
});
export const ReservationView = Type.Object({
  id: Type.String(),
  state: State,
  scope: Type.String(),
  unit: Unit,
  amount: Type.Integer(),
  expiresAt: Type.Integer(),
  extensions: Type.Integer(),
  charged: Type.Optional(Type.Integer()),
  parent: Type.Optional(Type.String({ description: 'Set on a draw: the reservation it draws from.' })),
  drawn: Type.Optional(Type.Integer({ description: 'On a parent: the amount its active draws hold.' })),
});
export type BudgetOpParams = Static<typeof BudgetOpParams>;
export type CommitBody = Static<typeof CommitBody>;
export type ReleaseBody = Static<typeof ReleaseBody>;
export type ExtendBody = Static<typeof ExtendBody>;
export type ReservationGranted = Static<typeof ReservationGranted>;
export type DryRunAnswer = Static<typeof DryRunAnswer>;
export type DrawGranted = Static<typeof DrawGranted>;
export type DrawDryRun = Static<typeof DrawDryRun>;
export type Committed = Static<typeof Committed>;
export type Released = Static<typeof Released>;
export type Extended = Static<typeof Extended>;
export type ReservationView = Static<typeof ReservationView>;
