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
    all.set(name, { lua, sha: createHash('sha1').update(lua).digest('hex'), numberOfKeys: keyCount(lua, file) });
  }
  loaded = all;
  return all;
}

/**
 * Runs a src/redis/lua script by name: EVALSHA, and EVAL once when Redis answers NOSCRIPT (after a restart or a
 * SCRIPT FLUSH). Scripts with `NUMKEYS: dynamic` take any number of keys (`dynamicKeys`); the others must get
 * exactly the count their header declares.
 *
 * Deliberately not ioredis's defineCommand: every auto-pipelined batch is a new ioredis Pipeline, which copies
 * each defined command onto itself (two properties per script), so with the 18 scripts each pipeline object was
 * ~4 KB in dictionary mode. bench/script-calls: this path makes 0.73× the young-generation collections per call
 * and takes 0.96× the time.
 */
export async function runScript<T = unknown>(
  redis: Redis,
  name: string,
  keys: readonly string[],
  args: readonly (string | number | Buffer)[],
  dynamicKeys = false,
): Promise<T> {
  const script = luaScripts().get(name);
  if (!script) throw new Error(`Lua script ${name} is not defined`);
  if (dynamicKeys !== (script.numberOfKeys < 0) || (!dynamicKeys && keys.length !== script.numberOfKeys)) {
    throw new Error(`Lua script ${name} takes ${script.numberOfKeys < 0 ? 'dynamic keys' : `${script.numberOfKeys} keys`}, called with ${keys.length}${dynamicKeys ? ' (dynamic)' : ''}`);
  }
  try {
    return (await redis.evalsha(script.sha, keys.length, ...keys, ...args)) as T;
  } catch (e) {
    if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
    return (await redis.eval(script.lua, keys.length, ...keys, ...args)) as T;
  }
}
