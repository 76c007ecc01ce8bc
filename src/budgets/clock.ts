/** Calendar period keys (UTC), cached until the next day boundary: the hot path formats no dates. */
export interface PeriodKeys {
  readonly day: string;
  readonly month: string;
}

let cached: PeriodKeys = { day: '', month: '' };
let validUntil = 0;

export function periodKeys(now: number): PeriodKeys {
  if (now < validUntil && now >= validUntil - 86_400_000) return cached;
  const iso = new Date(now).toISOString();
  cached = { day: iso.slice(0, 10), month: iso.slice(0, 7) };
  validUntil = Math.floor(now / 86_400_000) * 86_400_000 + 86_400_000;
  return cached;
}
