import { Option, type Command } from 'commander';
import { apiClient as client, printJson as out, withConnection, type ApiConn as Conn } from '../config/cli-api.js';
import { futureDateTimeArg, intArg } from '../config/cli-options.js';

const conn = (c: Command) => withConnection(c, 'admin bearer key (the env admin key, or an admin key of the tenant)');

/** `apportion keys create|list|revoke`: API keys of tenants, over the API. */
export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('API keys: each bound to a tenant and a role (admin, analyst, client)');
  conn(
    keys
      .command('create')
      .description('create a key; it is printed once and never shown again')
      .requiredOption('--tenant <tenant>', 'the tenant the key belongs to')
      .addOption(new Option('--role <role>', 'client = data plane, analyst = read, admin = everything of the tenant').choices(['admin', 'analyst', 'client']).makeOptionMandatory())
      .requiredOption('--name <name>', 'what the key is for')
      .option('--expires-at <iso>', 'ISO 8601 date-time with a time zone, in the future, after which the key stops working (e.g. 2027-01-31T00:00:00Z)', futureDateTimeArg)
      .option('--rate-limit <n>', 'requests per rate-limit window for this key (1 to 100,000,000, the range of APPORTION_RATE_LIMIT_MAX)', intArg(1, 100_000_000)),
  ).action(async (o: Conn & { tenant: string; role: string; name: string; expiresAt?: string; rateLimit?: number }) => {
    out(
      await client(o).request('POST', '/v1/keys', {
        tenant: o.tenant,
        role: o.role,
        name: o.name,
        ...(o.expiresAt ? { expiresAt: o.expiresAt } : {}),
        ...(o.rateLimit !== undefined ? { rateLimit: o.rateLimit } : {}),
      }),
    );
  });
  conn(keys.command('list').description('list keys (no secrets)').option('--tenant <tenant>', 'only this tenant (operator key)')).action(
    async (o: Conn & { tenant?: string }) => out(await client(o).request('GET', `/v1/keys${o.tenant ? `?tenant=${encodeURIComponent(o.tenant)}` : ''}`)),
  );
  conn(keys.command('revoke <id>').description('revoke a key: every API process refuses it within a second, and its browser sessions end')).action(
    async (id: string, o: Conn) => out(await client(o).request('DELETE', `/v1/keys/${encodeURIComponent(id)}`)),
  );
}
