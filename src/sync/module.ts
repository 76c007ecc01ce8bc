import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Type } from '@sinclair/typebox';
import { toWire, type ControlKind, type RawControlState, type Versioned, type WireControlState } from '@apportion/sdk/engine';
import type { FastifyRequest } from 'fastify';
import { decisionSecond, type DecisionRecord, type DecisionStore } from '../allocation/decisions.js';
import { MAX_FEATURES } from '../allocation/schema.js';
import { viewOf, type ControlView } from '../control/view.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { pipelineTenants, tenantOfCaller } from '../http/tenancy.js';
import type { ModuleParts, Services } from '../kernel/module.js';
import { ID_PATTERN } from '../pipelines/schema.js';
import { IngestBody, type IngestItem } from './schema.js';

/**
 * Local evaluation's server side (docs/sdk.md, "Local evaluation"):
 *   GET  /v1/sync          the control state an SDK evaluates against (pipelines, strategies, experiments, feature
 *                          declarations, models with their serving weights and scaling), versioned: ETag, and
 *                          If-None-Match → 304;
 *   GET  /v1/sync/stream   server-sent events: the current version on connect and every new one as the control
 *                          state (or the serving model, which lives in it) changes;
 *   POST /v1/decisions/batch  decision records made in process by SDKs, written through the decision store like the
 *                          server's own, so outcomes join them alike. Idempotent per decision id.
 * A tenant key sees only its tenant's pipelines and what belongs to them.
 */

/** Kinds an SDK needs to allocate (price overrides are cost-reporting data: not synced). */
const SYNCED: ReadonlySet<ControlKind> = new Set(['pipelines', 'strategies', 'experiments', 'features', 'models']);

/** Heartbeat comment on idle event streams (keeps proxies from closing them). */
const HEARTBEAT_MS = 15_000;

/** The pipeline a document of `kind` belongs to. */
function pipelineOfDoc(kind: ControlKind, v: Versioned<unknown>): string | undefined {
  if (kind === 'pipelines' || kind === 'features' || kind === 'models') return v.id;
  const p = (v.doc as { pipeline?: unknown } | null)?.pipeline;
  return typeof p === 'string' ? p : undefined;
}

/** The synced state as a tenant (or, with `null`, an operator) sees it. */
export function syncStateFor(raw: RawControlState, view: ControlView, tenant: string | null): WireControlState {
  const owners = pipelineTenants(view);
  return toWire(raw, (kind, v) => {
    if (!SYNCED.has(kind)) return false;
    if (tenant === null) return true;
    const p = pipelineOfDoc(kind, v);
    return p !== undefined && owners.get(p) === tenant;
  });
}

/**
 * A hash of what a caller is answered (settings and state). ETags are made of it rather than of versions alone: every
 * version restarts after Redis loses its data (docs/architecture.md, "When Redis loses its data"), so once the
 * re-applied configuration climbs back to the version an SDK holds, a version-only ETag would name different content
 * and the SDK would get 304 (and no refetch from the event stream) for good. A hash of the content cannot repeat for
 * different content; it also moves when the settings change across a restart.
 */
export const contentHash = (settings: Readonly<Record<string, unknown>>, state: WireControlState): string =>
  createHash('sha256').update(JSON.stringify({ settings, state })).digest('base64url').slice(0, 32);

/** The ETag of the operator's state (every tenant's documents): the global control-plane version (for people) and the content hash. */
export const operatorEtag = (version: number, hash: string): string => `"v${version}-${hash}"`;

/** What `GET /v1/sync` answers a caller: the state it sees, its version and ETag. */
export interface SyncedState {
  readonly version: number;
  readonly etag: string;
  readonly state: WireControlState;
}

/**
 * The synced state as the caller sees it, with its version and ETag. An operator (`null`) gets every tenant's documents
 * under the global control-plane version. A tenant gets only its own, and a version that depends on them alone,
 * so it does not move when another tenant changes anything: the sum of the versions of the documents
 * it sees (each document's version is bumped on every write of it: the sum grows with each change of the tenant's own
 * state, and drops when one of its documents is deleted). Either ETag is a hash of what the caller is answered (settings
 * included; contentHash): versions restart after a Redis data loss, the hash does not repeat. Computed once per
 * snapshot and tenant (the view's memo).
 */
export function syncedFor(raw: RawControlState, tenant: string | null, settings: Readonly<Record<string, unknown>>): SyncedState {
  const view = viewOf(raw);
  if (tenant === null) {
    return view.memo('sync:*', () => {
      const state = syncStateFor(raw, view, null);
      return { version: raw.version, etag: operatorEtag(raw.version, contentHash(settings, state)), state };
    });
  }
  return view.memo(`sync:t:${tenant}`, () => {
    const own = syncStateFor(raw, view, tenant);
    let version = 0;
    for (const docs of Object.values(own.kinds)) for (const v of docs ?? []) version += v.version;
    const state: WireControlState = { ...own, version };
    return { version, etag: `"t-${contentHash(settings, state)}"`, state };
  });
}

/** A strategy id (ID_PATTERN) or a built-in one (`@uniform`). */
const STRATEGY_ID = new RegExp(ID_PATTERN.replace('^', '^@?'));
/** A variant name as experiments declare it (src/rollout/schema.ts). */
const VARIANT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/**
 * What is wrong with an SDK record's route (the field and why), or undefined. The route names the experiment arms
 * its outcome counts toward, whose keys are built from its experiment ids and variant name: ids must be ids, and a
 * variant a variant name (the rollout domain's arms leave out a variant its experiment does not have).
 */
function badRoute(route: Record<string, unknown> | undefined): string | undefined {
  if (!route) return undefined;
  const id = new RegExp(ID_PATTERN);
  for (const f of ['experiment', 'holdout'] as const) {
    const v = route[f];
    if (v !== undefined && (typeof v !== 'string' || !id.test(v))) return `${f}: not an experiment id`;
  }
  const v = route.variant;
  if (v !== undefined && (typeof v !== 'string' || !VARIANT_NAME.test(v))) return 'variant: not a variant name';
  return undefined;
}

export interface IngestResult {
  readonly accepted: number;
  readonly duplicates: number;
  readonly rejected: readonly { readonly index: number; readonly id: string; readonly code: string; readonly message: string }[];
}

/** What the sync module is given (src/modules.ts). */
export interface SyncDeps extends Services<'view' | 'snapshot' | 'metrics', 'rewardWindowSeconds' | 'textTokenizeMaxChars'> {
  /** The allocation domain's decision records: SDK records are read and written through it, like the server's own. */
  readonly decisions: DecisionStore;
  /** Every module, for their decision-ingested callbacks. */
  readonly all: () => readonly ModuleParts[];
}

export function syncModule(core: SyncDeps): ModuleParts {
  const { decisions, all } = core;
  const streams = new Set<ServerResponse>();
  const settings = { rewardWindowSeconds: core.config.rewardWindowSeconds, textTokenizeMaxChars: core.config.textTokenizeMaxChars };

  const ingest = async (req: FastifyRequest, items: readonly IngestItem[]): Promise<IngestResult> => {
    const view = core.view();
    const tenant = tenantOfCaller(req);
    const owners = pipelineTenants(view);
    const now = Date.now();
    const rejected: { index: number; id: string; code: string; message: string }[] = [];
    const fresh: { index: number; record: DecisionRecord }[] = [];
    items.forEach((item, index) => {
      const at = `body/decisions/${index}`;
      const reject = (code: string, message: string) => rejected.push({ index, id: item.id, code, message });
      const sec = decisionSecond(item.id);
      if (sec === undefined) return reject('VALIDATION_FAILED', `${at}/id: "${item.id}" is not a decision id made by an SDK (<epoch second base 36>-<uuid>)`);
      if (sec * 1000 < now - core.config.rewardWindowSeconds * 1000) return reject('DECISION_NOT_FOUND', `${at}/id: made more than the reward window (${core.config.rewardWindowSeconds} s) ago`);
      const nf = Object.keys(item.features).length;
      if (nf > MAX_FEATURES) return reject('VALIDATION_FAILED', `${at}/features: ${nf} features, more than ${MAX_FEATURES} (POST /v1/allocations refuses such a request)`);
      // Statistics keys are built from these names (`…:stats:strategy:<strategy>`, `…:<variant>:agents`): only names the
      // server itself gives, so that no record names a key of another strategy or arm.
      if (!STRATEGY_ID.test(item.strategy)) return reject('VALIDATION_FAILED', `${at}/strategy: "${item.strategy}" is not a strategy id (letters, digits, _ . -, or a built-in @id)`);
      const bad = badRoute(item.route);
      if (bad) return reject('VALIDATION_FAILED', `${at}/route/${bad}`);
      const owner = owners.get(item.pipeline);
      if (owner === undefined || (tenant !== null && owner !== tenant)) return reject('PIPELINE_NOT_FOUND', `${at}/pipeline: no pipeline "${item.pipeline}"`);
      fresh.push({ index, record: { ...item, ts: Math.min(item.ts, now) } as DecisionRecord });
    });
    // Idempotent: a record already stored (a retried batch after a lost answer or a server restart) is not
    // written again; one stored under the same id for another pipeline is refused, never overwritten. The read only
    // spares the writes of a retried batch: each record is written only if its id is free (decisions-put-nx.lua), so of
    // two batches racing with one id exactly one writes it, and the other finds it below.
    const stored = fresh.length > 0 ? await decisions.readMany(fresh.map((f) => f.record.id)) : [];
    let duplicates = 0;
    const taken = (index: number, record: DecisionRecord, prev: DecisionRecord | undefined) => {
      if (prev && prev.pipeline === record.pipeline && prev.strategy === record.strategy) duplicates++;
      else rejected.push({ index, id: record.id, code: 'ID_TAKEN', message: `body/decisions/${index}/id: "${record.id}" is already recorded for another decision` });
    };
    const tries: { index: number; record: DecisionRecord }[] = [];
    fresh.forEach(({ index, record }, i) => {
      const prev = stored[i];
      if (prev) taken(index, record, prev);
      else tries.push({ index, record });
    });
    const results = await Promise.all(tries.map((t) => decisions.write(t.record, { nx: true })));
    const written: DecisionRecord[] = [];
    const lost: { index: number; record: DecisionRecord }[] = [];
    tries.forEach((t, i) => (results[i] === 'written' ? written.push(t.record) : lost.push(t)));
    if (lost.length > 0) {
      const now = await decisions.readMany(lost.map((l) => l.record.id));
      lost.forEach((l, i) => taken(l.index, l.record, now[i]));
    }
    for (const record of written) for (const m of all()) m.onDecisionIngested?.(record);
    for (const r of written) core.metrics.allocations.inc({ strategy: r.strategy, reason: r.reason });
    return { accepted: written.length, duplicates, rejected };
  };

  return {
    name: 'sync',
    routes(app: ApiApp) {
      app.addHook('preClose', async () => {
        for (const s of streams) s.end();
        streams.clear();
      });

      app.get(
        '/v1/sync',
        {
          config: { access: 'client' },
          schema: {
            tags: ['local evaluation'],
            summary: 'The control state an SDK in local mode evaluates against (ETag / If-None-Match → 304)',
            response: { 200: Type.Object({ version: Type.Integer(), settings: Type.Record(Type.String(), Type.Unknown()), state: Type.Unknown() }), 304: Type.Null(), ...errorResponses },
          },
        },
        async (req, reply) => {
          const synced = syncedFor(core.snapshot.current(), tenantOfCaller(req), settings);
          void reply.header('etag', synced.etag).header('cache-control', 'no-cache');
          if (req.headers['if-none-match'] === synced.etag) return reply.code(304).send();
          return { version: synced.version, settings, state: synced.state };
        },
      );

      app.get(
        '/v1/sync/stream',
        {
          config: { access: 'client' },
          schema: {
            tags: ['local evaluation'],
            summary: 'Server-sent events: `event: version` with the control state version, on connect and on every change',
            querystring: Type.Object({ once: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'true: send the current version and end the stream (a check).' })) }, { additionalProperties: false }),
            response: errorResponses,
          },
        },
        async (req, reply) => {
          const tenant = tenantOfCaller(req);
          reply.hijack();
          const res = reply.raw;
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
          // An event only when what the caller sees changed (a tenant's stream stays quiet while other tenants change theirs).
          let last: string | undefined;
          const send = (s: RawControlState) => {
            const { version, etag } = syncedFor(s, tenant, settings);
            if (etag === last) return;
            last = etag;
            res.write(`event: version\nid: ${version}\ndata: ${JSON.stringify({ version, etag })}\n\n`);
          };
          send(core.snapshot.current());
          if (req.query.once === 'true') {
            res.end();
            return;
          }
          const off = core.snapshot.onChange(send);
          const beat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
          beat.unref();
          streams.add(res);
          const done = () => {
            off();
            clearInterval(beat);
            streams.delete(res);
          };
          res.on('close', done);
          req.raw.on('close', () => {
            done();
            res.end();
          });
        },
      );

      app.post(
        '/v1/decisions/batch',
        {
          config: { access: 'client' },
          bodyLimit: 16 * 1024 * 1024,
          schema: {
            tags: ['local evaluation'],
            summary: 'Decision records made in process by SDKs in local mode (idempotent per decision id)',
            body: IngestBody,
            response: {
              200: Type.Object({
                accepted: Type.Integer(),
                duplicates: Type.Integer(),
                rejected: Type.Array(Type.Object({ index: Type.Integer(), id: Type.String(), code: Type.String(), message: Type.String() })),
              }),
              ...errorResponses,
            },
          },
        },
        async (req) => ingest(req, req.body.decisions),
      );
    },
    async close() {
      for (const s of streams) s.end();
      streams.clear();
    },
  };
}
