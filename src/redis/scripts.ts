import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';

const LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));

/** Parses `-- KEYS: n` from a script's header (every script documents its KEYS, ARGV and returns). */
function keyCount(source: string, name: string): number {
  const m = /^--\s*NUMKEYS:\s*(\d+|dynamic)/m.exec(source);
  if (!m) throw new Error(`Lua script ${name} lacks a "-- NUMKEYS:" header`);
  return m[1] === 'dynamic' ? -1 : Number(m[1]);
}

/**
 * Redis Lua has no modules: a script that says `-- INCLUDE: name` gets src/redis/lua/lib/<name>.lua prepended,
 * so helpers shared by several scripts (e.g. returning a reservation's hold) are written once.
 */
export function withIncludes(source: string): string {
  const libs = [...source.matchAll(/^--\s*INCLUDE:\s*([a-z0-9-]+)\s*$/gm)].map((m) => readFileSync(`${LUA_DIR}lib/${m[1]}.lua`, 'utf8'));
  return libs.length ? `${libs.join('\n')}\n${source}` : source;
}

export interface LuaScript {
  readonly lua: string;
  readonly sha: string;
  /** Declared key count; -1 for `NUMKEYS: dynamic`. */
  readonly numberOfKeys: number;
}

let loaded: ReadonlyMap<string, LuaScript> | undefined;

/** Every src/redis/lua/*.lua script (includes resolved), by camel-cased name; read once per process. */
export function luaScripts(): ReadonlyMap<string, LuaScript> {
  if (loaded) return loaded;
  const all = new Map<string, LuaScript>();
  for (const file of readdirSync(LUA_DIR)) {
    if (!file.endsWith('.lua')) continue;
    const name = file.slice(0, -4).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const lua = withIncludes(readFileSync(LUA_DIR + file, 'utf8'));
    if (!(name in SCRIPT_REPLIES)) throw new Error(`Lua script ${file} has no reply decoder in SCRIPT_REPLIES (src/redis/scripts.ts)`);
    all.set(name, { lua, sha: createHash('sha1').update(lua).digest('hex'), numberOfKeys: keyCount(lua, file) });
  }
  loaded = all;
  return all;
}

/** Checks a script's reply and gives it its type. A reply of another shape is a bug in the script or its caller: it throws. */
export type ReplyDecoder<T> = (reply: unknown, script: string) => T;

const unexpected = (script: string, what: string, reply: unknown): never => {
  throw new Error(`Lua script ${script} answered ${JSON.stringify(reply)?.slice(0, 200)}, not ${what}`);
};
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

/** The reply shapes the scripts answer (a Lua number is an integer reply; a table an array). */
export const replies = {
  integer: (r: unknown, s: string): number => (isInt(r) ? r : unexpected(s, 'an integer', r)),
  string: (r: unknown, s: string): string => (isStr(r) ? r : unexpected(s, 'a string', r)),
  integers: (r: unknown, s: string): number[] => (Array.isArray(r) && r.every(isInt) ? r : unexpected(s, 'an array of integers', r)),
  strings: (r: unknown, s: string): string[] => (Array.isArray(r) && r.every(isStr) ? r : unexpected(s, 'an array of strings', r)),
  /** `{ a, b }`: two integers. */
  pair: (r: unknown, s: string): [number, number] => (Array.isArray(r) && r.length === 2 && isInt(r[0]) && isInt(r[1]) ? [r[0], r[1]] : unexpected(s, 'two integers', r)),
  /** `{ version, statuses, line… }` (span-ingest.lua). */
  versionedLines: (r: unknown, s: string): { version: number; statuses: string; lines: string[] } => {
    if (!Array.isArray(r) || r.length < 2 || !isInt(r[0]) || !r.slice(1).every(isStr)) return unexpected(s, '{ version, statuses, line… }', r);
    const [version, statuses, ...lines] = r as [number, string, ...string[]];
    return { version, statuses, lines };
  },
  /** 1 applied, 0 already applied, 2 past the marker deadline, 3 the decision's pipeline deleted since (apply-outcome.lua). */
  applied: (r: unknown, s: string): 'applied' | 'duplicate' | 'expired' | 'deleted' =>
    r === 1 ? 'applied' : r === 0 ? 'duplicate' : r === 2 ? 'expired' : r === 3 ? 'deleted' : unexpected(s, '0, 1, 2 or 3', r),
  /** `{ moved, dropped, left, { tickets… } }` (learner-ingest.lua). */
  ingest: (r: unknown, s: string): [number, number, number, string[]] =>
    Array.isArray(r) && r.length === 4 && r.slice(0, 3).every(isInt) && Array.isArray(r[3]) && r[3].every(isStr)
      ? [r[0], r[1], r[2], r[3]]
      : unexpected(s, '{ moved, dropped, left, { tickets } }', r),
} satisfies Record<string, ReplyDecoder<unknown>>;

/**
 * Every script of src/redis/lua with the shape of its reply: the one place a reply is checked and typed (each
 * script's header says what it returns). What a reply means (a version, an answer string "G|…") is read by the
 * domain that calls it. A script without an entry here fails at load (luaScripts).
 */
export const SCRIPT_REPLIES = {
  applyOutcome: replies.applied,
  budgetBalances: replies.strings,
  budgetDelete: replies.integers,
  budgetOp: replies.strings,
  budgetPut: replies.integers,
  configDelete: replies.integer,
  configPut: replies.integer,
  costRollup: replies.integers,
  decisionClaim: replies.strings,
  decisionDictClaim: replies.integer,
  decisionDictPrune: replies.integer,
  decisionsPut: replies.integer,
  decisionsPutNx: replies.integers,
  hashCas: replies.integer,
  learnerDefault: replies.pair,
  learnerIngest: replies.ingest,
  learnerRegister: replies.integer,
  learnerTrainLock: replies.integer,
  outcomeReceipt: replies.strings,
  reservationCommit: replies.strings,
  reservationDraw: replies.string,
  reservationExpire: replies.pair,
  reservationExtend: replies.string,
  reservationRelease: replies.string,
  reservationReserve: replies.string,
  rolloutWrite: replies.integer,
  spanIngest: replies.versionedLines,
  spanUnstore: replies.integer,
  tombstoneRaise: replies.integer,
} satisfies Record<string, ReplyDecoder<unknown>>;

export type ScriptName = keyof typeof SCRIPT_REPLIES;
/** The type of a script's reply: what its decoder in SCRIPT_REPLIES returns. */
export type ScriptReply<N extends ScriptName> = ReturnType<(typeof SCRIPT_REPLIES)[N]>;

/**
 * SCRIPT_REPLIES seen as one decoder per name whose result type is that name's reply type, so that
 * `DECODERS[name]` for a generic `name: N` is a `ReplyDecoder<ScriptReply<N>>` (no cast at the call).
 */
const DECODERS: { readonly [N in ScriptName]: ReplyDecoder<ScriptReply<N>> } = SCRIPT_REPLIES;

/**
 * Runs a script and returns its reply decoded by its entry in SCRIPT_REPLIES, typed by that decoder: the only way
 * the domains call Lua, so every reply is checked in one place and a use of it as another type does not compile.
 * Keys: exactly the count the script's header declares, or any number for `NUMKEYS: dynamic`.
 */
export async function callScript<N extends ScriptName>(redis: Redis, name: N, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<ScriptReply<N>> {
  const script = luaScripts().get(name);
  const reply = await runScript(redis, name, keys, args, script !== undefined && script.numberOfKeys < 0);
  const decode: ReplyDecoder<ScriptReply<N>> = DECODERS[name];
  return decode(reply, name);
}

/**
 * Runs a src/redis/lua script by name, its reply undecoded (`unknown`: callScript decodes it; bench/script-calls
 * and the loader's own test call this directly): EVALSHA, and EVAL once when Redis answers NOSCRIPT (after a
 * restart or a SCRIPT FLUSH). Scripts with `NUMKEYS: dynamic` take any number of keys (`dynamicKeys`); the others
 * must get exactly the count their header declares.
 *
 * Deliberately not ioredis's defineCommand: every auto-pipelined batch is a new ioredis Pipeline, which copies
 * each defined command onto itself (two properties per script), so with the 18 scripts each pipeline object was
 * ~4 KB in dictionary mode. bench/script-calls: this path makes 0.73× the young-generation collections per call
 * and takes 0.96× the time.
 */
export async function runScript(
  redis: Redis,
  name: string,
  keys: readonly string[],
  args: readonly (string | number | Buffer)[],
  dynamicKeys = false,
): Promise<unknown> {
  const script = luaScripts().get(name);
  if (!script) throw new Error(`Lua script ${name} is not defined`);
  if (dynamicKeys !== (script.numberOfKeys < 0) || (!dynamicKeys && keys.length !== script.numberOfKeys)) {
    throw new Error(`Lua script ${name} takes ${script.numberOfKeys < 0 ? 'dynamic keys' : `${script.numberOfKeys} keys`}, called with ${keys.length}${dynamicKeys ? ' (dynamic)' : ''}`);
  }
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (e) {
    if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
    return await redis.eval(script.lua, keys.length, ...keys, ...args);
  }
}
