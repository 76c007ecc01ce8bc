import { readFileSync } from 'node:fs';

/**
 * The JSON files the CLI applies (`pipelines apply`, `strategies apply`, `experiments apply`). A file that cannot
 * be read or parsed is refused with its name (`x.json: not valid JSON: Unexpected token …`); an entry the server
 * refuses is named by its kind and id (`x.json: pipelines/research: 400 VALIDATION_FAILED: …`).
 */

/** Reads and parses a JSON file; the error names the file. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${file}: cannot read it (${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory' : ((e as Error).message ?? String(e))})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`${file}: not valid JSON: ${(e as Error).message}`);
  }
}

/** An entry of an applied file that failed (refused by the server, or unreachable): `cause` is the original error. */
export class EntryError extends Error {
  constructor(file: string, entry: string, cause: unknown) {
    super(`${file}: ${entry}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'EntryError';
  }
}
