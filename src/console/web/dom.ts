/** Tiny DOM helpers: elements are built with `h`, text is always set as text (never parsed as HTML). */
type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | ((e: Event) => void) | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs | null = null, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'number' ? String(c) : c);
  return el;
}

export interface Column<T> {
  readonly title: string;
  readonly cell: (row: T) => Child | Child[];
  readonly num?: boolean;
}

export function table<T>(rows: readonly T[], cols: readonly Column<T>[], empty = 'Nothing yet.', attrs: Attrs = {}): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h(
    'table',
    attrs,
    h('thead', null, h('tr', null, ...cols.map((c) => h('th', c.num ? { class: 'num' } : null, c.title)))),
    h('tbody', null, ...rows.map((r) => h('tr', null, ...cols.map((c) => h('td', c.num ? { class: 'num' } : null, c.cell(r)))))),
  );
}

export const pill = (text: string, cls = text) => h('span', { class: `pill ${cls}` }, text);
export const card = (...children: (Child | Child[])[]) => h('div', { class: 'card' }, ...children);
export const kv = (pairs: [string, Child | Child[]][]) => h('dl', { class: 'kv' }, ...pairs.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));

export const num = (v: number | null | undefined, digits = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));
export const pct = (v: number | null | undefined, digits = 1) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(digits)} %`);
export const int = (v: number | null | undefined) => (v === null || v === undefined ? '–' : Math.round(v).toLocaleString('en-US'));
export const usd = (v: number | null | undefined) => {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const digits = Math.abs(v) >= 100 ? 2 : Math.abs(v) >= 1 ? 2 : Math.abs(v) >= 0.01 ? 4 : 6;
  const text = v.toLocaleString('en-US', { minimumFractionDigits: digits === 2 ? 2 : 0, maximumFractionDigits: digits });
  // A cost under a millionth of a dollar is not $0: it is shown to three significant digits.
  if (v !== 0 && Number(text.replace(/,/g, '')) === 0) return `$${v.toLocaleString('en-US', { maximumSignificantDigits: 3 })}`;
  return `$${text}`;
};
export const time = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '–');

/** Exact dollars of an integer microcent amount (integer arithmetic: the ledgers' amounts go up to 2^53 − 1). */
function dollarsOfMicrocents(v: number): string {
  if (!Number.isSafeInteger(v)) return `$${(v / 1e8).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 8 })}`;
  const per = BigInt(100_000_000);
  const m = BigInt(Math.abs(v));
  const fraction = (m % per).toString().padStart(8, '0').replace(/0+$/, '').padEnd(2, '0');
  return `${v < 0 ? '-' : ''}$${(m / per).toLocaleString('en-US')}.${fraction}`;
}

/**
 * An amount in a budget's unit: dollars for USD_MICROCENTS ($1 = 100,000,000), a token count for TOKENS. Dollars
 * are exact, to the microcent (cents at least): a budget's figures are what the API holds, never rounded to a cent
 * (a $0.004 reservation is not "$0.00").
 */
export function amount(v: number, unit: string): string {
  if (unit === 'USD_MICROCENTS') return dollarsOfMicrocents(v);
  return `${int(v)} tokens`;
}

export const errorBox = (e: unknown) => h('div', { class: 'error' }, e instanceof Error ? e.message : String(e));

/** In place of a value whose read failed: says so, with the error code (never a zero that looks like data). */
export const unavailable = (code: string) => h('span', { class: 'unavailable muted', 'data-testid': 'unavailable', title: code }, `unavailable (${code})`);

/** The notice of a page whose reads hit the rate limit: how many were not made and when to retry. */
export const rateLimitNotice = (r: { retryAfter?: number; skipped: number } | undefined) =>
  r
    ? h('div', { class: 'error', 'data-testid': 'rate-limited' }, `Rate limited (RATE_LIMITED): some figures on this page are unavailable${r.skipped ? ` (${r.skipped} reads not made)` : ''}. Retry${r.retryAfter !== undefined ? ` in ${r.retryAfter} s` : ' later'} by reloading.`)
    : null;
