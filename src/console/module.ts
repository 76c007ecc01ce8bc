import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Type } from '@sinclair/typebox';
import type { BudgetOverview } from '../budgets/overview.js';
import type { SessionList } from '../costs/session-list.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { tenantOfCaller } from '../http/tenancy.js';
import type { ModuleParts, Services } from '../kernel/module.js';

/**
 * Where the built console lives: `dist/web/` at the package root, whether this file runs from `src/console/`
 * (tsx) or from `dist/console/` (compiled). `npm run build:console` writes it; `npm start` builds it first.
 */
export function consoleAssetsDir(): string | undefined {
  for (const rel of ['../../dist/web/', '../web/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}index.html`)) return dir;
  }
  return undefined;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.map': 'application/json',
};

interface Asset {
  readonly body: Buffer;
  readonly type: string;
}

/** Loads the built files once; the index refers to each asset by content hash so they can be cached forever. */
function loadAssets(dir: string): { index: string; assets: Map<string, Asset> } {
  const assets = new Map<string, Asset>();
  const hashes = new Map<string, string>();
  for (const name of readdirSync(dir)) {
    if (name === 'index.html' || name.startsWith('.')) continue;
    const body = readFileSync(`${dir}${name}`);
    const ext = name.slice(name.lastIndexOf('.'));
    assets.set(name, { body, type: TYPES[ext] ?? 'application/octet-stream' });
    hashes.set(name, createHash('sha256').update(body).digest('hex').slice(0, 12));
  }
  const index = readFileSync(`${dir}index.html`, 'utf8').replace(/\/console\/assets\/([\w.-]+)/g, (m, name: string) => (hashes.has(name) ? `${m}?v=${hashes.get(name)}` : m));
  return { index, assets };
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Apportion console</title>
<body style="font-family: system-ui, sans-serif; margin: 40px"><h1>Apportion</h1>
<p>The console is not built. Run <code>npm run build:console</code> (or start with <code>npm start</code>, which builds it), then reload.</p>
<p>The API itself is up: see <a href="/docs">/docs</a>.</p></body>`;

const Listing = { tags: ['console'], response: { ...errorResponses } };
/** Query strings are not coerced (see src/app.ts), so a count arrives as digits. */
const LimitQuery = Type.Object({ limit: Type.Optional(Type.String({ pattern: '^(?:[1-9][0-9]{0,2}|1000)$', description: '1–1000' })) }, { additionalProperties: false });
const limitOf = (q: unknown, dflt: number) => Number((q as { limit?: string }).limit ?? dflt);

/** What the console module is given (src/modules.ts): it reads other domains' data through their services only. */
export interface ConsoleDeps extends Services<'log'> {
  /** The budgets domain's overview (BudgetsModule.overview). */
  readonly budgets: { overview(limit: number, tenant?: string): Promise<BudgetOverview> };
  /** The costs domain's session listing (CostsModule.sessions). */
  readonly costs: { sessions(limit: number, tenant?: string): Promise<SessionList> };
}

/** The web console at `/` (static, public: it holds no data) and the read-only listings it uses. */
export function consoleModule(core: ConsoleDeps): ModuleParts {
  return {
    name: 'console',
    routes(app: ApiApp) {
      const dir = consoleAssetsDir();
      const built = dir ? loadAssets(dir) : undefined;
      if (!built) core.log.warn('console assets not found (dist/web): GET / explains how to build them');
      const page = { config: { access: 'public' as const }, schema: { hide: true } };
      app.get('/', page, async (_req, reply) =>
        reply
          .type('text/html; charset=utf-8')
          .header('cache-control', 'no-cache')
          .header('x-frame-options', 'DENY')
          .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
          .send(built?.index ?? NOT_BUILT),
      );
      app.get('/console/assets/:name', { ...page, schema: { hide: true, params: Type.Object({ name: Type.String({ pattern: '^[\\w.-]{1,100}$' }) }) } }, async (req, reply) => {
        const a = built?.assets.get(req.params.name);
        if (!a) return reply.status(404).type('text/plain').send('not found');
        return reply.type(a.type).header('cache-control', 'public, max-age=31536000, immutable').send(a.body);
      });

      app.get(
        '/v1/console/budgets',
        {
          // Read keys: a tenant key lists its own tenant only, an operator key every tenant.
          config: { access: 'read' },
          schema: {
            ...Listing,
            summary: 'Console listing: tenants with budgets (a tenant key: its own), their live (ACTIVE) reservations, newest threshold alerts and, apart, newest overrun events',
            querystring: LimitQuery,
          },
        },
        async (req) => core.budgets.overview(limitOf(req.query, 100), tenantOfCaller(req) ?? undefined),
      );
      app.get(
        '/v1/console/sessions',
        {
          // Read keys: a tenant key lists its own sessions (by the ids it sent), an operator key every session.
          config: { access: 'read' },
          schema: {
            ...Listing,
            summary: 'Console listing: session ids that have cost trees (a tenant key: its own; named sessions first, each newest first)',
            querystring: LimitQuery,
          },
        },
        async (req) => core.costs.sessions(limitOf(req.query, 200), tenantOfCaller(req) ?? undefined),
      );
    },
  };
}
