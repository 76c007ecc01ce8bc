import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/**
 * A reader of one stored JSON shape: parses the text and checks it against a TypeBox schema (compiled once).
 * Undefined when the text is not JSON or not of that shape: what Redis holds is data, never trusted as a type.
 */
export function jsonDecoder<S extends TSchema>(schema: S): (text: string) => Static<S> | undefined {
  const check = TypeCompiler.Compile(schema);
  return (text) => {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return undefined;
    }
    return check.Check(v) ? v : undefined;
  };
}
