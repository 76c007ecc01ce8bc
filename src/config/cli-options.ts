import { InvalidArgumentError } from 'commander';

/**
 * Parsers of the CLI's option values. A value out of its range is refused by commander with the option's name, the
 * value and the range (`error: option '--limit <n>' argument 'abc' is invalid. It must be an integer from 1 to …`),
 * exit status 1, like any other bad argument: never NaN, a negative count or 0 workers passed on to the command.
 */

const fmt = (n: number) => n.toLocaleString('en-US');

/** An integer from `min` to `max` (decimal digits, an optional sign; no fraction, exponent or unit). */
export function intArg(min: number, max: number): (value: string) => number {
  return (value) => {
    const v = value.trim();
    const n = /^[+-]?\d{1,16}$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`It must be an integer from ${fmt(min)} to ${fmt(max)}.`);
    return n;
  };
}

/**
 * A decimal number from `min` to `max` (`0.5`, `12`, `1e-3`; not `Infinity`, hex or an empty string). With
 * `exclusive`, both ends are out (a quantile in (0.5, 1)): the message then says "from 0.5 to 1, both excluded".
 */
export function numberArg(min: number, max: number, { exclusive = false }: { readonly exclusive?: boolean } = {}): (value: string) => number {
  return (value) => {
    const v = value.trim();
    const n = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v) ? Number(v) : Number.NaN;
    const out = exclusive ? n <= min || n >= max : n < min || n > max;
    if (!Number.isFinite(n) || out) throw new InvalidArgumentError(`It must be a number from ${fmt(min)} to ${fmt(max)}${exclusive ? ', both excluded' : ''}.`);
    return n;
  };
}

/** A JSON object (`--features '{"a":1}'`). */
export function jsonObjectArg(value: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch (e) {
    throw new InvalidArgumentError(`It must be a JSON object: ${(e as Error).message}.`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError('It must be a JSON object ({ "name": value, … }).');
  return v as Record<string, unknown>;
}

/** Seeds: any 32-bit unsigned integer (the simulations' PRNG takes 32 bits). */
export const seedArg = intArg(0, 2 ** 32 - 1);

/**
 * An ISO 8601 date-time with a time zone, as the API takes it (`2027-01-31T00:00:00Z`, `2027-01-31T09:30:00.5+02:00`, `+0200` too; `+02` alone is refused: the API could not read it as a time),
 * naming a real calendar day and time, in the future (`keys create --expires-at`).
 */
export function futureDateTimeArg(value: string): string {
  const v = value.trim();
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$/.exec(v);
  const example = 'It must be an ISO 8601 date-time with a time zone, e.g. 2027-01-31T00:00:00Z.';
  if (!m) throw new InvalidArgumentError(example);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) throw new InvalidArgumentError(`There is no such date or time. ${example}`);
  if (!(Date.parse(v.replace(' ', 'T')) > Date.now())) throw new InvalidArgumentError('It must be in the future.');
  return v;
}
