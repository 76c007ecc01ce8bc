import type { Redis } from 'ioredis';
import { AppError } from '../errors/app-error.js';
import type { ErrorCode } from '../errors/catalog.js';
import { parseAlerts, type AlertHandler } from './alerts.js';
import { periodKeys } from './clock.js';
import type { BudgetKeys } from './keys.js';
import { LEDGER_MAX, type Balance, type BudgetDeleteQuery, type BudgetOp, type DeletedBalance, type BudgetOpBody, type BudgetPutBody, type OveragePolicy, type Unit } from './schema.js';
import { resolveScope } from './reservations.js';
import { run, storeFailure } from './store.js';

const POLICY_CODE: Record<OveragePolicy, string> = { REJECT: 'R', ALLOW_IF_AVAILABLE: 'A', ALLOW_WITH_OVERDRAFT: 'O' };
const POLICY_NAME: Record<string, OveragePolicy> = { R: 'REJECT', A: 'ALLOW_IF_AVAILABLE', O: 'ALLOW_WITH_OVERDRAFT' };

export interface LedgerOptions {
  readonly redis: Redis;
  readonly keys: BudgetKeys;
  readonly idempotencyTtlMs: number;
  readonly now?: () => number;
  readonly onAlerts?: AlertHandler;
}

/** Budget documents and administrative ledger operations (create/update, fund, debit, reset, freeze). */
export class BudgetLedger {
  private readonly now: () => number;
  constructor(private readonly o: LedgerOptions) {
    this.now = o.now ?? Date.now;
  }

  /**
   * Deletes a scope's budget, refused while active reservations hold amounts at it. Its children keep their
   * own budgets; reservations made afterwards skip the level. Answers the last balance.
   */
  async delete(q: BudgetDeleteQuery): Promise<DeletedBalance> {
    const scope = resolveScope({ scope: q.scope }, 'querystring');
    const t = scope.tenant;
    const { keys } = this.o;
    const r = await run(this.o.redis, 'budgetDelete', [keys.budget(t, q.unit, scope.path), keys.index(t), keys.deadlines(t), keys.alerts(t), keys.overruns(t)], [`${q.unit}:${scope.path}`]);
    if (r[0] === 0) throw new AppError('BUDGET_NOT_FOUND', `querystring/scope: no ${q.unit} budget at "${scope.path}"`, { scope: scope.path, unit: q.unit });
    if (r[0] === -1) {
      throw new AppError('BUDGET_HAS_RESERVATIONS', `querystring/scope: active reservations hold ${r[1]} at "${scope.path}"; commit, release or let them expire first`, {
        scope: scope.path,
        unit: q.unit,
        reserved: r[1],
      });
    }
    if (r[6] === 1) await this.forgetTenant(t).catch(storeFailure);
    return { scope: scope.path, unit: q.unit, allocated: r[1]!, remaining: r[2]!, reserved: r[3]!, spent: r[4]!, debt: r[5]! };
  }

  /**
   * Takes a tenant whose last budget was deleted off the budget-tenants index (a key of its own slot, so not in the
   * delete's script). A budget created for the tenant meanwhile puts it back: its PUT adds the tenant before and
   * after its script, and this checks the tenant's index after removing it, so whichever order the two run in, a tenant with
   * a budget stays listed (the sweeper visits it).
   */
  private async forgetTenant(t: string): Promise<void> {
    const { redis, keys } = this.o;
    await redis.srem(keys.tenants(), t);
    if ((await redis.scard(keys.index(t))) > 0) await redis.sadd(keys.tenants(), t);
  }

  async put(body: BudgetPutBody): Promise<Balance & { created: boolean }> {
    const scope = resolveScope({ scope: body.scope });
    const policy = body.overagePolicy ?? 'REJECT';
    if (body.overdraftLimit !== undefined && policy !== 'ALLOW_WITH_OVERDRAFT') {
      throw new AppError('VALIDATION_FAILED', 'body/overdraftLimit: only allowed with overagePolicy ALLOW_WITH_OVERDRAFT');
    }
    const t = scope.tenant;
    const pk = periodKeys(this.now());
    // The tenant goes on the budget-tenants index (another slot) BEFORE the script, sent together with it: a put
    // whose script runs although its caller got no answer (a store stall answered 503, a process that died
    // right after sending) still leaves its tenant listed, so the sweeper visits its reservations. An entry
    // without a budget (the script never ran) is harmless: the sweeper finds no reservations there and the
    // overview skips tenants without budgets.
    const listed = this.o.redis.sadd(this.o.keys.tenants(), t);
    const script = run(
      this.o.redis,
      'budgetPut',
      [this.o.keys.budget(t, body.unit, scope.path), this.o.keys.index(t)],
      [`${body.unit}:${scope.path}`, body.allocated, POLICY_CODE[policy], body.overdraftLimit ?? 0, body.period ?? '', pk.day, pk.month],
    );
    const [added, done] = await Promise.allSettled([listed, script]);
    if (done.status === 'rejected') throw done.reason;
    if (added.status === 'rejected') storeFailure(added.reason);
    const r = done.value;
    if (r[0] === -1) {
      throw new AppError('ALLOCATION_BELOW_USAGE', `body/allocated: ${body.allocated} is below the ${r[1]} already reserved and spent at "${scope.path}"`, {
        scope: scope.path,
        used: r[1],
      });
    }
    if (r[0] === -2) {
      throw new AppError(
        'OVERDRAFT_BELOW_DEBT',
        `body/overdraftLimit: "${scope.path}" owes ${r[1]} beyond its allocation (not counting recorded overruns), more than the new settings' overdraft limit ${policy === 'ALLOW_WITH_OVERDRAFT' ? (body.overdraftLimit ?? 0) : 0} allows; fund or reset the scope, or raise allocated, first`,
        { scope: scope.path, debt: r[1] },
      );
    }
    // Added again after the script: a concurrent delete of the tenant's last budget may have taken it off between
    // the first add and the script (see forgetTenant).
    await this.o.redis.sadd(this.o.keys.tenants(), t).catch(storeFailure);
    return {
      created: r[0] === 1,
      scope: scope.path,
      unit: body.unit,
      allocated: r[1]!,
      remaining: r[2]!,
      reserved: r[3]!,
      spent: r[4]!,
      debt: r[5]!,
      frozen: r[6] === 1,
      overagePolicy: policy,
      overdraftLimit: body.overdraftLimit ?? 0,
      ...(body.period ? { period: body.period } : {}),
    };
  }

  async op(op: BudgetOp, body: BudgetOpBody): Promise<{ op: BudgetOp; scopes: string[]; replayed?: boolean }> {
    const scope = resolveScope({ scope: body.scope });
    if ((op === 'fund' || op === 'debit') && body.amount === undefined) throw new AppError('VALIDATION_FAILED', `body/amount is required for ${op}`);
    if (op !== 'fund' && op !== 'debit' && body.amount !== undefined) throw new AppError('VALIDATION_FAILED', `body/amount is not allowed for ${op}`);
    const t = scope.tenant;
    const { keys } = this.o;
    const now = this.now();
    const pk = periodKeys(now);
    const targets = op === 'debit' ? scope.chain : [scope.path];
    const ks = [keys.idempotency(t, body.idempotencyKey), keys.alerts(t), ...targets.map((s) => keys.budget(t, body.unit, s))];
    const fp = `B|${op}|${scope.path}|${body.unit}|${body.amount ?? ''}`;
    const out = await run(this.o.redis, 'budgetOp', ks, [op, fp, this.o.idempotencyTtlMs, body.amount ?? 0, pk.day, pk.month, now]);
    if (out.length > 1 && this.o.onAlerts) this.o.onAlerts(parseAlerts(out, 1, keys.budgetPrefix(t), t, now));
    const answer = out[0]!;
    const replayed = answer.startsWith('ROK');
    const parts = (replayed ? answer.slice(1) : answer).split('|');
    if (parts[0] === 'OK') {
      const mask = parts[1]!;
      const scopes = targets.filter((_, i) => mask[i] === '1');
      return replayed ? { op, scopes, replayed } : { op, scopes };
    }
    if (parts[0] === 'M') throw new AppError('IDEMPOTENCY_KEY_REUSED', `body/idempotencyKey: "${body.idempotencyKey}" was used for a different request`);
    const code = parts[1] as ErrorCode;
    if (code === 'BUDGET_NOT_FOUND') {
      throw new AppError(code, `body/scope: no ${body.unit} budget at "${scope.path}"${op === 'debit' ? ' or any of its ancestors' : ''}`, { scope: scope.path });
    }
    const at = targets[Number(parts[2])]!;
    if (code === 'LEDGER_LIMIT_EXCEEDED') {
      const field = op === 'fund' ? 'allocated' : 'spent + debt';
      const current = Number(parts[3]);
      throw new AppError(code, `body/amount: ${body.amount} would take ${field} at scope "${at}" (now ${current}) past ${LEDGER_MAX}, the largest amount a budget holds`, {
        scope: at,
        requested: body.amount,
        [op === 'fund' ? 'allocated' : 'used']: current,
        limit: LEDGER_MAX,
      });
    }
    const remaining = Number(parts[3]);
    if (code === 'OVERDRAFT_LIMIT_EXCEEDED' && parts.length >= 6) {
      // What the scope could still take is the remaining plus the overdraft not yet used as debt.
      const overdraft = Number(parts[4]);
      const debt = Number(parts[5]);
      const left = Math.max(0, overdraft - debt);
      throw new AppError(code, `body/amount: ${body.amount} exceeds the remaining ${remaining} plus the ${left} of overdraft left (limit ${overdraft}, debt ${debt}) at scope "${at}"`, {
        scope: at,
        requested: body.amount,
        remaining,
        overdraftLimit: overdraft,
        debt,
      });
    }
    throw new AppError(code, code === 'BUDGET_FROZEN' ? `body/scope: scope "${at}" is frozen` : `body/amount: ${body.amount} exceeds the remaining ${remaining} at scope "${at}"`, {
      scope: at,
      requested: body.amount,
      remaining,
    });
  }

  /** Balances of a scope and every budgeted scope below it (calendar resets applied first). */
  async balances(scopeText: string, unit?: Unit): Promise<Balance[]> {
    const scope = resolveScope({ scope: scopeText }, 'querystring');
    const t = scope.tenant;
    const pk = periodKeys(this.now());
    // The budgets of the scope and its descendants, picked from the tenant's index here so that the script
    // declares every key it reads (Redis Cluster).
    let members: string[];
    try {
      members = await this.o.redis.smembers(this.o.keys.index(t));
    } catch (e) {
      return storeFailure(e);
    }
    const child = `${scope.path}/`;
    const picked = members.filter((m) => {
      const c = m.indexOf(':');
      const sc = m.slice(c + 1);
      return (unit === undefined || m.slice(0, c) === unit) && (sc === scope.path || sc.startsWith(child));
    });
    if (picked.length === 0) return [];
    const prefix = this.o.keys.budgetPrefix(t);
    const flat = await run(this.o.redis, 'budgetBalances', picked.map((m) => prefix + m), [pk.day, pk.month, ...picked]);
    const out: Balance[] = [];
    for (let i = 0; i < flat.length; i += 11) {
      const m = flat[i]!;
      const c = m.indexOf(':');
      const per = flat[i + 9];
      out.push({
        scope: m.slice(c + 1),
        unit: m.slice(0, c) as Unit,
        allocated: Number(flat[i + 1]),
        remaining: Number(flat[i + 2]),
        reserved: Number(flat[i + 3]),
        spent: Number(flat[i + 4]),
        debt: Number(flat[i + 5] || 0),
        frozen: flat[i + 6] === '1',
        overagePolicy: POLICY_NAME[flat[i + 7]!] ?? 'REJECT',
        overdraftLimit: Number(flat[i + 8] || 0),
        ...(per === 'day' || per === 'month' ? { period: per } : {}),
        overrun: Number(flat[i + 10] || 0),
      });
    }
    out.sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : a.unit < b.unit ? -1 : 1));
    return out;
  }
}
