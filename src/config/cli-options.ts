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
