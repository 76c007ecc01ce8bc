/**
 * Budget amounts as people write them. Money is stored as integer micro-cents ($1 = 100,000,000); on the
 * command line it is dollars (`50`, `$12.5`, `0.0004`), with raw micro-cents as an option. Pure.
 */
export const MICROCENTS_PER_USD = 100_000_000n;

/** CLI units: USD (dollars, stored as USD_MICROCENTS), USD_MICROCENTS (raw integers) and TOKENS. */
export type CliUnit = 'USD' | 'USD_MICROCENTS' | 'TOKENS';
export const CLI_UNITS: readonly CliUnit[] = ['USD', 'USD_MICROCENTS', 'TOKENS'];

/** The server's unit for a CLI unit. */
export const serverUnit = (u: CliUnit): 'USD_MICROCENTS' | 'TOKENS' => (u === 'TOKENS' ? 'TOKENS' : 'USD_MICROCENTS');

/**
 * Parses an amount in the CLI unit into the server's integer: dollars to micro-cents, others as integers. A value
 * it refuses throws an Error whose message says what the value must be, in the words of the CLI's other range
 * checks (`It must be …`, src/config/cli-options.ts); the CLI puts the option or argument and the value before it.
 */
export function parseAmount(text: string, unit: CliUnit): number {
  const t = text.trim().replace(/_/g, '').replace(/,/g, '');
  if (/^-\$?\d*\.?\d/.test(t)) throw new Error('It must not be negative.');
  if (unit !== 'USD') {
    if (!/^\d+$/.test(t)) throw new Error(`It must be a non-negative integer (${unit === 'TOKENS' ? 'tokens' : 'micro-cents'}).`);
    return checkSafe(BigInt(t), unit);
  }
  const m = /^\$?(\d+)(?:\.(\d*))?$/.exec(t);
  if (!m || (m[1] === '' && !m[2])) throw new Error('It must be a dollar amount (e.g. 50, $12.50, 0.0004).');
  const frac = m[2] ?? '';
  if (frac.length > 8) throw new Error('It must have at most 8 decimals ($0.00000001 is one micro-cent).');
  return checkSafe(BigInt(m[1]!) * MICROCENTS_PER_USD + BigInt(frac.padEnd(8, '0') || '0'), unit);
}

function checkSafe(v: bigint, unit: CliUnit): number {
  const max = Number.MAX_SAFE_INTEGER;
  if (v > BigInt(max)) throw new Error(`It must be at most ${unit === 'USD' ? formatUsd(max) : `${max.toLocaleString('en-US')} (${unit === 'TOKENS' ? 'tokens' : 'micro-cents'})`}.`);
  return Number(v);
}

/** Micro-cents as dollars: at least two decimals, more only when the amount has them (exact, no float). */
export function formatUsd(microcents: number): string {
  const neg = microcents < 0;
  const v = BigInt(Math.abs(Math.trunc(microcents)));
  const whole = (v / MICROCENTS_PER_USD).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  let frac = (v % MICROCENTS_PER_USD).toString().padStart(8, '0').replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return `${neg ? '-' : ''}$${whole}.${frac}`;
}

/** An amount of a server unit for display: dollars for money unless raw micro-cents were asked for. */
export function formatAmount(value: number, unit: string, rawMicrocents = false): string {
  if (unit === 'USD_MICROCENTS' && !rawMicrocents) return formatUsd(value);
  return value.toLocaleString('en-US');
}

const AMOUNT_FIELDS = new Set(['allocated', 'remaining', 'reserved', 'spent', 'debt', 'overdraftLimit', 'amount', 'charged', 'drawn', 'used', 'released']);

/** A server answer with every amount of a USD_MICROCENTS object shown in dollars (for the CLI's JSON output). */
export function inDollars(value: unknown, unit?: string): unknown {
  if (Array.isArray(value)) return value.map((v) => inDollars(v, unit));
  if (value === null || typeof value !== 'object') return value;
  const o = value as Record<string, unknown>;
  const u = typeof o.unit === 'string' ? o.unit : unit;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = u === 'USD_MICROCENTS' && AMOUNT_FIELDS.has(k) && typeof v === 'number' ? formatUsd(v) : inDollars(v, u);
  return out;
}
