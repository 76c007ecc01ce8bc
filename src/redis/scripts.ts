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

/**
 * Defines every src/redis/lua/*.lua script as an ioredis command (EVALSHA, falling back to EVAL on
 * NOSCRIPT). Scripts with `NUMKEYS: dynamic` take the key count as their first argument.
 */
export function defineScripts(redis: Redis): void {
  for (const file of readdirSync(LUA_DIR)) {
    if (!file.endsWith('.lua')) continue;
    const name = file.slice(0, -4).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (typeof (redis as unknown as Record<string, unknown>)[name] === 'function') continue;
    const lua = withIncludes(readFileSync(LUA_DIR + file, 'utf8'));
    const n = keyCount(lua, file);
    redis.defineCommand(name, n >= 0 ? { lua, numberOfKeys: n } : { lua });
  }
}

/** Calls a script defined by defineScripts. */
export function runScript<T = unknown>(
  redis: Redis,
  name: string,
  keys: readonly string[],
  args: readonly (string | number)[],
  dynamicKeys = false,
): Promise<T> {
  const fn = (redis as unknown as Record<string, (...a: unknown[]) => Promise<T>>)[name];
  if (typeof fn !== 'function') throw new Error(`Lua script ${name} is not defined`);
  return dynamicKeys ? fn.call(redis, keys.length, ...keys, ...args) : fn.call(redis, ...keys, ...args);
}
