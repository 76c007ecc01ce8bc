import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type { Config } from './config/env.js';

/**
 * JSON lines (one object per line, for log shippers), or pino-pretty's readable lines when stdout is a terminal
 * (`npm start` in a shell). Pretty printing runs in-process and synchronously: it is meant for a person watching.
 */
export function createLogger(config: Pick<Config, 'logLevel'>, opts: { pretty?: boolean } = {}): Logger {
  const options = { level: config.logLevel, base: { service: 'apportion' } };
  if (opts.pretty ?? process.stdout.isTTY === true) return pino(options, prettyStream());
  return pino(options);
}

function prettyStream(): pino.DestinationStream {
  // Loaded only for a terminal: production processes (stdout not a TTY) never import it.
  const require = createRequire(import.meta.url);
  const pretty = require('pino-pretty') as (o: Record<string, unknown>) => pino.DestinationStream;
  return pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service', singleLine: true, sync: true });
}
