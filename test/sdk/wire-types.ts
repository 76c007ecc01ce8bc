/**
 * Compile-time check (type-checked by `npm run lint`, nothing runs): the SDK's copies of the reservation routes'
 * response shapes stay in agreement with the server's TypeBox schemas. If a server response gains a required
 * field or changes a type, the assignments below stop compiling.
 */
import type { BalanceRow, BudgetUnit, Commit, Draw, Reservation } from '@apportion/sdk';
import type { Balance, Committed, DrawGranted, ReservationGranted, Unit } from '../../src/budgets/schema.js';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const check = <T extends true>(): T => true as T;

export const wireTypesAgree = [
  check<Same<Unit, BudgetUnit>>(),
  check<ReservationGranted extends Reservation ? true : false>(),
  check<DrawGranted extends Draw ? true : false>(),
  check<Committed extends Commit ? true : false>(),
  check<Balance extends BalanceRow ? true : false>(),
  // And the other way round: nothing the SDK promises is missing from the server's answer.
  check<Same<keyof Reservation, keyof ReservationGranted>>(),
  check<Same<keyof Draw, keyof DrawGranted>>(),
  check<Same<keyof Commit, keyof Committed>>(),
  check<Same<keyof BalanceRow, keyof Balance>>(),
] as const;
