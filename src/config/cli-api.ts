import { Option, type Command } from 'commander';
import { ApportionClient } from '@apportion/sdk';

/**
 * What every CLI command that talks to a running server shares: `--url` (APPORTION_URL, default the local server),
 * `--key` (APPORTION_KEY; the description says which role the command needs), the client built from them, and
 * JSON output.
 */
export interface ApiConn {
  url: string;
  key?: string;
}

export const urlOption = () => new Option('--url <url>', 'API base URL').env('APPORTION_URL').default('http://127.0.0.1:3000');
export const keyOption = (description = 'admin bearer key') => new Option('--key <key>', description).env('APPORTION_KEY');

/** Adds `--url` and `--key` to a command. */
export const withConnection = (c: Command, keyDescription?: string): Command => c.addOption(urlOption()).addOption(keyOption(keyDescription));

export const apiClient = (o: ApiConn, timeoutMs?: number): ApportionClient =>
  new ApportionClient({ url: o.url, ...(o.key ? { key: o.key } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) });

/** A server answer, as indented JSON on stdout. */
export const printJson = (v: unknown): void => {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
};
