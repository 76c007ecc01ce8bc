import AjvCompiler from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import type { FastifyServerOptions } from 'fastify';

type Factories = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>;
type Required<T> = { [K in keyof T]-?: Exclude<T[K], undefined> };
type AnyFn = (this: unknown, ...args: unknown[]) => unknown;

/**
 * Fastify's own compilers (Ajv for request validation, fast-json-stringify for responses: the ones it uses by default,
 * with the same options), each route's function compiled on its first use instead of when the route is registered.
 * Compiling every route's schemas at start was over a second of a start-up (more on a busy machine), and most
 * routes are not called in the first seconds; the first call of a route compiles its own (milliseconds).
 *
 * What fastify reads of a validation function is kept: `errors` after a call (copied from the compiled function) and
 * `schemaEnv` (Ajv's; read before the call, so it compiles then), so a request is validated and answered as before.
 * A route with a `headers` schema is refused (src/app.ts): fastify lower-cases a header schema's names only for its
 * default compiler, not for one given as here.
 */
export function lazySchemaCompilers(): Required<Factories> {
  const validators = AjvCompiler();
  const serializers = SerializerSelector();
  const buildValidator = ((externalSchemas: unknown, options: unknown) => {
    const compile = (validators as unknown as (e: unknown, o: unknown) => (route: unknown) => AnyFn)(externalSchemas, options);
    return (route: unknown) => {
      let fn: (AnyFn & { errors?: unknown; schemaEnv?: unknown }) | undefined;
      const compiled = () => (fn ??= compile(route) as AnyFn & { errors?: unknown; schemaEnv?: unknown });
      const lazy = function (this: unknown, ...args: unknown[]) {
        const f = compiled();
        try {
          return f.apply(this, args);
        } finally {
          lazy.errors = f.errors;
        }
      } as AnyFn & { errors?: unknown };
      Object.defineProperty(lazy, 'schemaEnv', { get: () => compiled().schemaEnv });
      return lazy;
    };
  }) as unknown as Required<Factories>['buildValidator'];
  const buildSerializer = ((externalSchemas: unknown, options: unknown) => {
    const compile = (serializers as unknown as (e: unknown, o: unknown) => (route: unknown) => (data: unknown) => string)(externalSchemas, options);
    return (route: unknown) => {
      let fn: ((data: unknown) => string) | undefined;
      return (data: unknown) => (fn ??= compile(route))(data);
    };
  }) as unknown as Required<Factories>['buildSerializer'];
  return { buildValidator, buildSerializer };
}
