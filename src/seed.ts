import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Core } from './kernel/core.js';

/** A file of control-plane documents, as read by `apportion … apply` and the first-start seed. */
export interface ApplyFile {
  readonly pipelines?: readonly ({ id: string } & Record<string, unknown>)[];
  readonly strategies?: readonly ({ id: string } & Record<string, unknown>)[];
}

export const EXAMPLE_FILE = new URL('../experiments/example-pipeline.json', import.meta.url);

export function readApplyFile(path: string | URL): ApplyFile {
  return JSON.parse(readFileSync(path, 'utf8')) as ApplyFile;
}

/**
 * Orders the requests that apply a file: pipelines without their default strategy, then strategies,
 * then the pipelines again with their defaults (a default must name an existing strategy).
 */
export function applyRequests(file: ApplyFile): { method: 'PUT'; url: string; body: Record<string, unknown> }[] {
  const out: { method: 'PUT'; url: string; body: Record<string, unknown> }[] = [];
  const strip = ({ id: _id, ...rest }: { id: string } & Record<string, unknown>) => rest;
  for (const p of file.pipelines ?? []) {
    const { defaultStrategy: _d, ...body } = strip(p);
    out.push({ method: 'PUT', url: `/v1/pipelines/${encodeURIComponent(p.id)}`, body });
  }
  for (const s of file.strategies ?? []) out.push({ method: 'PUT', url: `/v1/strategies/${encodeURIComponent(s.id)}`, body: strip(s) });
  for (const p of file.pipelines ?? []) {
    if (p.defaultStrategy !== undefined) out.push({ method: 'PUT', url: `/v1/pipelines/${encodeURIComponent(p.id)}`, body: strip(p) });
  }
  return out;
}

/** Loads the example pipeline on first start (once per key prefix, guarded by a Redis flag). */
export async function seedExamples(core: Core, app: FastifyInstance): Promise<boolean> {
  const flag = `${core.keys.configKind('seeded')}`;
  const first = await core.redis.set(flag, String(Date.now()), 'NX');
  if (first !== 'OK') return false;
  const headers = core.config.adminKey ? { authorization: `Bearer ${core.config.adminKey}` } : {};
  for (const r of applyRequests(readApplyFile(EXAMPLE_FILE))) {
    const res = await app.inject({ method: r.method, url: r.url, payload: r.body, headers });
    if (res.statusCode >= 300) throw new Error(`seeding ${r.url} failed: ${res.statusCode} ${res.body}`);
  }
  core.log.info({ file: EXAMPLE_FILE.pathname }, 'loaded the example pipeline (first start)');
  return true;
}
