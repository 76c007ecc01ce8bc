import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root: the CLI runs from it as `node bin/apportion.mjs …`. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the CLI's entry point as a child process, as a user does. `env` is the whole environment (callers spread
 * process.env into it when they want it). A child killed by its time limit or a signal reports exit code 1 and says
 * so on stderr, so a failure names its cause rather than showing an empty stderr.
 */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 300_000): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/apportion.mjs', ...args], { cwd: ROOT, env, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const e = err as { code?: unknown; signal?: NodeJS.Signals | null; killed?: boolean };
      const code = typeof e.code === 'number' ? e.code : 1;
      const why = e.signal ? `\n[test helper: the CLI was killed by ${e.signal}${e.killed ? ` after the ${timeoutMs} ms limit` : ''}]` : typeof e.code === 'string' ? `\n[test helper: ${e.code}]` : '';
      resolve({ code, stdout, stderr: stderr + why });
    });
  });
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * How to run the repository's TypeScript entry point `file` (relative to ROOT) in a child process: its compiled
 * form (an absolute path) when this file runs from the test runner's compiled mirror (scripts/build-tests.mjs puts x.js beside x.ts),
 * else through tsx. The child does what it would in the repository; it only skips the TypeScript loader.
 */
export function nodeEntry(file: string): string[] {
  const js = file.replace(/\.ts$/, '.js');
  return js !== file && existsSync(path.join(ROOT, js)) ? [path.join(ROOT, js)] : ['--import', 'tsx', file];
}
