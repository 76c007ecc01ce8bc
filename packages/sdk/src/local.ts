import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ApportionConnectionError, ApportionHttpError, type AllocateParams, type Allocation } from './client.js';
import type { LocalEvaluatorApi, LocalOptions, LocalStats } from './local-types.js';
import {
  allocationResultOf,
  BUILTIN_ENGINE_KINDS,
  compileLearned,
  decide,
  decisionRecordOf,
  defaultSplitOf,
  allocationRequestProblem,
  EngineError,
  experimentRouter,
  fromWire,
  hasTextFeature,
  hasTokenEncoder,
  learnedShadow,
  newDecisionId,
  probeCutEngineKind,
  UnknownKindError,
  setTokenEncoder,
  setTokenizeMaxChars,
  viewOf,
  type CompiledStrategy,
  type ControlView,
  type EngineRecord,
  type KindLookup,
  type LearnedServingParams,
  type Pipeline,
  type WireControlState,
} from './engine/index.js';

/** The HTTP status the server answers for each engine error (src/errors/catalog.ts). */
const ENGINE_STATUS: Record<EngineError['code'], number> = {
  PIPELINE_NOT_FOUND: 404,
  STRATEGY_NOT_FOUND: 404,
  STRATEGY_PIPELINE_MISMATCH: 400,
  INFEASIBLE_TOTAL: 400,
  INFEASIBLE_COST: 400,
  UNPRICED_AGENT: 400,
  INTERNAL: 500,
};

/**
 * Local evaluation (docs/sdk.md, "Local evaluation"): the control state is kept in process from GET /v1/sync
 * (ETag / If-None-Match), refreshed when GET /v1/sync/stream (server-sent events) announces a new version and by
 * a slow poll as a safety net; requests are allocated in process by the server's own engine
 * (`@apportion/sdk/engine`); decision records are shipped to POST /v1/decisions/batch in batches.
 */

/**
 * The byte size a shipped batch's body is cut at: half of POST /v1/decisions/batch's 16 MiB body limit
 * (src/sync/module.ts), so a batch of large features is cut into several.
 */
export const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** A record larger than MAX_BATCH_BYTES ships alone up to this size (1 MiB under the route's limit); over it, never. */
export const MAX_RECORD_BYTES = 15 * 1024 * 1024;

/** The shape of a GET /v1/sync answer (checked before it replaces the held state), or what is wrong with it. */
function syncDocProblem(doc: unknown): string | undefined {
  if (doc === null || typeof doc !== 'object') return 'the body is not an object';
  const d = doc as Partial<Record<keyof SyncDoc, unknown>>;
  if (typeof d.version !== 'number' || !Number.isFinite(d.version)) return '/version is not a number';
  const settings = d.settings as { rewardWindowSeconds?: unknown; textTokenizeMaxChars?: unknown } | null | undefined;
  if (settings === null || typeof settings !== 'object' || typeof settings.rewardWindowSeconds !== 'number') return '/settings/rewardWindowSeconds is not a number';
  if (settings.textTokenizeMaxChars !== undefined && typeof settings.textTokenizeMaxChars !== 'number') return '/settings/textTokenizeMaxChars is not a number';
  const state = d.state as { version?: unknown; kinds?: unknown } | null | undefined;
  if (state === null || typeof state !== 'object' || typeof state.version !== 'number') return '/state/version is not a number';
  if (state.kinds === null || typeof state.kinds !== 'object') return '/state/kinds is not an object';
  const kinds = state.kinds as Record<string, unknown>;
  // The server answers every kind (an empty list when it has none): a state without its pipelines is not one.
  for (const k of ['pipelines', 'strategies']) if (!Array.isArray(kinds[k])) return `/state/kinds/${k} is not a list`;
  for (const [k, list] of Object.entries(kinds)) {
    if (!Array.isArray(list)) return `/state/kinds/${k} is not a list`;
    for (let i = 0; i < list.length; i++) {
      const v = list[i] as { id?: unknown; version?: unknown; doc?: unknown } | null;
      if (v === null || typeof v !== 'object' || typeof v.id !== 'string' || typeof v.version !== 'number' || v.doc === null || typeof v.doc !== 'object') {
        return `/state/kinds/${k}/${i} is not a versioned document`;
      }
    }
  }
  return undefined;
}

interface SyncDoc {
  readonly version: number;
  readonly settings: { readonly rewardWindowSeconds: number; readonly textTokenizeMaxChars?: number };
  readonly state: WireControlState;
}

export class LocalEvaluator implements LocalEvaluatorApi {
  private view: ControlView | undefined;
  private etag: string | undefined;
  private retention = 86_400;
  private readonly base: string;
  private readonly buffer: EngineRecord[] = [];
  private readonly kinds: KindLookup;
  private readonly routers = [experimentRouter];
  /** What the engine needs of this evaluator (one object, not one per allocation). */
  private readonly deps: { readonly kinds: KindLookup; readonly routers: readonly (typeof experimentRouter)[]; readonly onStrategyError: (id: string, e: unknown) => void };
  private ready: Promise<void>;
  private flushing: Promise<void> | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private closed = false;
  private backoffMs = 0;
  private nextShipAt = 0;
  private readonly onExit = () => void this.flush();
  private readonly counters = { syncs: 0, notModified: 0, shipped: 0, duplicates: 0, rejected: 0, dropped: 0, oversized: 0, served: 0, lastSyncAt: undefined as number | undefined };
  /** Sync requests are numbered as they are sent; an answer is applied only if no later-sent one was applied before it. */
  private syncSent = 0;
  private syncApplied = 0;
  /** A strategy of a kind this process does not implement failed during the decision being made (see allocateNow). */
  private unknownKind: UnknownKindError | undefined;
  /**
   * A record that failed alone with a connection error, set aside while the records after it are tried: if they
   * ship, the server is up and this record is what it cuts off (dropped); if they fail too, it is an outage (put back).
   */
  private suspect: EngineRecord | undefined;
  /** The most records the next batch may hold: halved after a 413 or a connection error, reset after a success. */
  private cap: number | undefined;

  constructor(private readonly opts: LocalOptions) {
    this.base = opts.url.replace(/\/$/, '');
    const learned = {
      compile: (params: unknown, ctx: { readonly pipeline: Pipeline }): CompiledStrategy =>
        compileLearned(params as LearnedServingParams, ctx.pipeline, {
          view: () => this.current(),
          retentionSeconds: this.retention,
          defaultSplit: defaultSplitOf({ view: () => this.current(), kinds: this.kinds }),
          kinds: () => this.kinds,
        }),
    };
    const table: Readonly<Record<string, ReturnType<KindLookup['get']>>> = { ...BUILTIN_ENGINE_KINDS, learned, 'probe-cut': probeCutEngineKind(() => this.kinds) };
    this.kinds = { get: (kind) => (Object.hasOwn(table, kind) ? table[kind] : undefined) };
    this.deps = {
      kinds: this.kinds,
      routers: this.routers,
      onStrategyError: (_id, e) => {
        if (e instanceof UnknownKindError) this.unknownKind ??= e;
      },
    };
    this.ready = this.sync();
    this.ready.catch((e: unknown) => this.opts.onError?.(e));
    if (opts.stream !== false) void this.streamLoop();
    this.pollTimer = setInterval(() => void this.sync().catch((e: unknown) => this.opts.onError?.(e)), opts.pollMs ?? 30_000);
    this.pollTimer.unref();
    this.flushTimer = setInterval(() => void this.flushDue().catch((e: unknown) => this.opts.onError?.(e)), opts.flushIntervalMs ?? 1000);
    this.flushTimer.unref();
    process.once('beforeExit', this.onExit);
  }

  private current(): ControlView {
    if (!this.view) throw new Error('no control state synced yet');
    return this.view;
  }

  private headers(): Record<string, string> {
    return this.opts.key ? { authorization: `Bearer ${this.opts.key}` } : {};
  }

  private async call(method: string, path: string, init: { body?: unknown; rawBody?: string; headers?: Record<string, string> } = {}): Promise<Response> {
    const timeoutMs = this.opts.timeoutMs ?? 10_000;
    const body = init.rawBody ?? (init.body !== undefined ? JSON.stringify(init.body) : undefined);
    try {
      return await fetch(this.base + path, {
        method,
        headers: { ...this.headers(), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), this.abort.signal]),
      });
    } catch (e) {
      throw new ApportionConnectionError(this.base, `cannot reach the Apportion API at ${this.base} (${method} ${path}: ${(e as Error).message})`, { cause: e });
    }
  }

  private static async httpError(res: Response): Promise<ApportionHttpError> {
    const text = await res.text();
    let body: { code?: string; message?: string } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // not JSON
    }
    return new ApportionHttpError(res.status, body.code ?? 'HTTP_ERROR', body.message ?? res.statusText, body);
  }

  /** Fetches the control state unless it is unchanged (304). Keeps the last state on any failure. */
  async sync(): Promise<void> {
    const seq = ++this.syncSent;
    const res = await this.call('GET', '/v1/sync', { headers: this.etag ? { 'if-none-match': this.etag } : {} });
    if (res.status === 304) {
      await res.arrayBuffer().catch(() => undefined);
      // The held state was current when this request was served: an answer to an earlier request is not newer.
      this.syncApplied = Math.max(this.syncApplied, seq);
      this.counters.notModified++;
      this.counters.lastSyncAt = Date.now();
      return;
    }
    if (!res.ok) throw await LocalEvaluator.httpError(res);
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw new ApportionConnectionError(this.base, `GET /v1/sync: the answer broke off (${(e as Error).message})`, { cause: e });
    }
    const invalid = (why: string) => new ApportionHttpError(502, 'INVALID_RESPONSE', `GET /v1/sync answered ${res.status} with ${why}; the last good state is kept`, text.slice(0, 200));
    if (!/^application\/json\b/i.test(res.headers.get('content-type') ?? '')) throw invalid(`content-type ${JSON.stringify(res.headers.get('content-type'))}, not JSON`);
    let doc: SyncDoc;
    try {
      doc = JSON.parse(text) as SyncDoc;
    } catch {
      throw invalid('a body that is not JSON');
    }
    const problem = syncDocProblem(doc);
    if (problem !== undefined) throw invalid(`a body that is not a control state (${problem})`);
    // Never step back to an older state: an answer to a request sent before the one whose answer is held (a slow
    // answer overtaken by a newer one) is dropped. Versions are not compared: a tenant's version drops when one of
    // its documents is deleted, and the operator's restarts after the server's Redis lost its data.
    if (seq < this.syncApplied) return;
    this.syncApplied = seq;
    this.retention = doc.settings.rewardWindowSeconds;
    if (doc.settings.textTokenizeMaxChars !== undefined) setTokenizeMaxChars(doc.settings.textTokenizeMaxChars);
    this.view = viewOf(fromWire(doc.state));
    this.etag = res.headers.get('etag') ?? undefined;
    this.counters.syncs++;
    this.counters.lastSyncAt = Date.now();
  }

  /**
   * Follows the event stream; reconnects with backoff (1 s doubling to 30 s) while open. The stream's socket is
   * unref'd: an open stream never keeps the process alive (so it can exit, and flush, on its own).
   */
  private async streamLoop(): Promise<void> {
    let wait = 1000;
    while (!this.closed) {
      try {
        await this.openStream(() => (wait = 1000));
      } catch (e) {
        if (this.closed) return;
        this.opts.onError?.(e);
      }
      if (this.closed) return;
      await new Promise((r) => setTimeout(r, wait).unref());
      wait = Math.min(30_000, wait * 2);
      // The stream was down: catch up at once.
      await this.sync().catch((e: unknown) => this.opts.onError?.(e));
    }
  }

  /** One connection of the event stream: resolves when the server ends it, rejects on an error. */
  private openStream(connected: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const url = new URL(`${this.base}/v1/sync/stream`);
      const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = request(url, { headers: { ...this.headers(), accept: 'text/event-stream' }, signal: this.abort.signal }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new ApportionHttpError(res.statusCode ?? 0, 'HTTP_ERROR', `GET /v1/sync/stream answered ${res.statusCode}`, undefined));
          return;
        }
        connected();
        res.setEncoding('utf8');
        let pending = '';
        res.on('data', (chunk: string) => {
          pending += chunk;
          let end: number;
          while ((end = pending.indexOf('\n\n')) >= 0) {
            const event = pending.slice(0, end);
            pending = pending.slice(end + 2);
            const data = event.split('\n').find((l) => l.startsWith('data: '));
            if (!data) continue;
            try {
              const { version, etag } = JSON.parse(data.slice(6)) as { version: number; etag?: string };
              if (etag !== this.etag || version !== this.view?.version) void this.sync().catch((e: unknown) => this.opts.onError?.(e));
            } catch (e) {
              this.opts.onError?.(e);
            }
          }
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      });
      req.on('socket', (socket) => socket.unref());
      req.on('error', reject);
      req.end();
    });
  }

  /** Resolves once a control state is held (waits for the first sync, retrying it, up to readyTimeoutMs). */
  async whenReady(): Promise<void> {
    if (this.view) return;
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 10_000);
    for (;;) {
      try {
        await this.ready;
        if (this.view) return;
      } catch (e) {
        if (Date.now() >= deadline) throw e;
      }
      if (this.view) return;
      if (Date.now() >= deadline) throw new ApportionConnectionError(this.base, `no control state from ${this.base} within ${this.opts.readyTimeoutMs ?? 10_000} ms`);
      await new Promise((r) => setTimeout(r, 200));
      this.ready = this.sync();
    }
  }

  /**
   * Allocates in process (synchronously; the state must be synced: see whenReady). `decisionId` (optional) is
   * the id to record under; a learned strategy draws from it.
   */
  allocateNow(params: AllocateParams & { readonly decisionId?: string }): Allocation {
    // What the server's schema refuses is refused here (400), before anything is decided or recorded.
    const problem = allocationRequestProblem(params);
    if (problem !== undefined) throw new ApportionHttpError(400, 'VALIDATION_FAILED', problem, { code: 'VALIDATION_FAILED', message: problem });
    const view = this.current();
    const id = params.decisionId ?? newDecisionId();
    let d;
    this.unknownKind = undefined;
    try {
      d = decide(this.deps, view, params, id);
    } catch (e) {
      if (e instanceof EngineError) throw new ApportionHttpError(ENGINE_STATUS[e.code], e.code, e.message, { code: e.code, message: e.message });
      throw e;
    }
    // Fail closed: a strategy this process cannot run (its kind is the server's alone) would be replaced by a
    // fallback here while the server serves it, and the record would carry the route (e.g. an experiment's variant)
    // it did not serve. Nothing is recorded; allocate() asks the server instead.
    const unknownKind = this.unknownKind as UnknownKindError | undefined; // set by deps.onStrategyError during decide
    if (unknownKind !== undefined) {
      const message = `local evaluation cannot serve this request: ${unknownKind.message} (allocate() asks the server)`;
      throw new ApportionHttpError(501, 'LOCAL_UNSUPPORTED', message, { code: 'LOCAL_UNSUPPORTED', message, kind: unknownKind.kind });
    }
    // Shadow mode, as the server's shadow hook logs it (a failure leaves the shadow out, as the server does).
    let shadow: Record<string, unknown> | undefined;
    try {
      shadow = learnedShadow(
        this.deps.kinds,
        view,
        d.pipeline,
        { features: d.features, totalTokens: d.totalTokens, ...(d.maxCostUsd !== undefined ? { maxCostUsd: d.maxCostUsd } : {}) },
        { strategy: d.def.id, budgets: d.budgets, ...(d.tiers?.models ? { models: d.tiers.models } : {}) },
      );
    } catch (e) {
      this.opts.onError?.(e);
    }
    const record = decisionRecordOf(id, d, params.unitKey, Date.now(), shadow ? { learner: shadow } : undefined);
    let recorded = true;
    if (this.buffer.length >= (this.opts.maxBuffer ?? 100_000)) {
      this.counters.dropped++;
      recorded = false;
    } else {
      this.buffer.push(record);
      if (this.buffer.length >= (this.opts.batchSize ?? 500) && !this.flushing) void this.flushDue().catch((e: unknown) => this.opts.onError?.(e));
    }
    return allocationResultOf(id, d, recorded) as unknown as Allocation;
  }

  /** Allocates in process once the state is synced (loading the tokenizer first for `<x>Text` features). */
  async allocate(params: AllocateParams & { readonly decisionId?: string }): Promise<Allocation> {
    await this.whenReady();
    if (params.features && hasTextFeature(params.features) && !hasTokenEncoder()) await loadTokenizer();
    try {
      return this.allocateNow(params);
    } catch (e) {
      if (!(e instanceof ApportionHttpError && e.code === 'LOCAL_UNSUPPORTED')) throw e;
    }
    // A strategy kind local mode does not implement: the server allocates (and records) this one.
    const body = { ...params, decisionId: params.decisionId ?? newDecisionId() };
    const res = await this.call('POST', '/v1/allocations', { body });
    if (!res.ok) throw await LocalEvaluator.httpError(res);
    let out: Allocation;
    try {
      out = (await res.json()) as Allocation;
    } catch (e) {
      throw new ApportionHttpError(502, 'INVALID_RESPONSE', `POST /v1/allocations answered ${res.status} with a body that is not JSON (${(e as Error).message})`, undefined);
    }
    this.counters.served++;
    return out;
  }

  /** Whether a decision's record is still waiting to be shipped. */
  holds(decisionId: string): boolean {
    return this.suspect?.id === decisionId || this.buffer.some((r) => r.id === decisionId);
  }

  /**
   * Ships every buffered record, in batches of at most batchSize records and MAX_BATCH_BYTES of body. A failed
   * batch stays at the head of the buffer and is retried with backoff (0.5 s doubling to 30 s): the server stores
   * each decision id once, so a batch whose answer was lost is not doubled. A batch refused as too large (413) or
   * cut off (a connection error) is halved; a single record that can never ship is dropped alone (see `oversized`).
   */
  flush(): Promise<void> {
    // Asked for explicitly (an outcome for a buffered decision, close, the caller): no backoff wait.
    this.nextShipAt = 0;
    return this.flushDue();
  }

  /** The periodic flush: ships unless a failed attempt's backoff is still running. */
  private flushDue(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => ((this.buffer.length > 0 || this.suspect) && Date.now() >= this.nextShipAt ? this.flushDue() : undefined));
    if (this.buffer.length === 0 && !this.suspect) return Promise.resolve();
    this.flushing = (async () => {
      // Yield first: the body must not finish before `flushing` is assigned (its finally clears it).
      await null;
      try {
        for (;;) {
          if (this.buffer.length === 0) {
            // Only the set-aside record is left: it is tried on its own again (nothing waits behind it).
            if (!this.suspect) return;
            this.buffer.push(this.suspect);
            this.suspect = undefined;
          }
          if (Date.now() < this.nextShipAt) return;
          const { batch, body } = this.nextBatch(this.cap ?? this.opts.batchSize ?? 500);
          if (batch.length === 0) continue; // the head record was over the byte limit and dropped
          let res: Response;
          try {
            res = await this.call('POST', '/v1/decisions/batch', { rawBody: body });
          } catch (e) {
            const hadSuspect = this.suspect !== undefined;
            this.shipFailed();
            if (batch.length > 1) {
              // Possibly cut off for its size: try a smaller batch next (after the backoff).
              this.cap = Math.max(1, Math.ceil(batch.length / 2));
            } else if (!hadSuspect && this.buffer.length > 1) {
              // One record alone cut off: set it aside and try the ones after it (see `suspect`).
              this.suspect = this.buffer.shift();
              this.nextShipAt = 0;
              continue;
            }
            throw e;
          }
          if (res.status === 413) {
            await res.arrayBuffer().catch(() => undefined);
            if (batch.length > 1) {
              this.cap = Math.max(1, Math.ceil(batch.length / 2));
              continue;
            }
            this.dropOversized(`its batch of one was refused as too large (413) by POST /v1/decisions/batch`);
            continue;
          }
          if (res.status >= 500 || res.status === 429) {
            const err = await LocalEvaluator.httpError(res);
            this.shipFailed();
            throw err;
          }
          this.buffer.splice(0, batch.length);
          this.backoffMs = 0;
          this.nextShipAt = 0;
          this.cap = undefined;
          if (this.suspect) {
            // The records after it shipped: the server is up, and cuts off this one record. It is dropped.
            const r = this.suspect;
            this.suspect = undefined;
            this.counters.oversized++;
            this.opts.onError?.(new ApportionConnectionError(this.base, `decision record ${r.id} dropped: POST /v1/decisions/batch cut it off alone while the records after it shipped`));
          }
          if (!res.ok) {
            // The whole batch was refused (a 4xx): retrying cannot help.
            this.counters.rejected += batch.length;
            this.opts.onError?.(await LocalEvaluator.httpError(res));
            continue;
          }
          const out = (await res.json()) as { accepted: number; duplicates: number; rejected: { id: string; code: string; message: string }[] };
          this.counters.shipped += out.accepted;
          this.counters.duplicates += out.duplicates;
          this.counters.rejected += out.rejected.length;
          for (const r of out.rejected) this.opts.onError?.(new ApportionHttpError(400, r.code, r.message, r));
        }
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  /**
   * The next batch from the head of the buffer: at most `cap` records and MAX_BATCH_BYTES of encoded body (a head
   * record larger than that alone). A head record over MAX_RECORD_BYTES is dropped here (an empty batch is returned).
   */
  private nextBatch(cap: number): { batch: EngineRecord[]; body: string } {
    const parts: string[] = [];
    let bytes = '{"decisions":[]}'.length;
    for (let i = 0; i < this.buffer.length && parts.length < cap; i++) {
      const part = JSON.stringify(this.buffer[i]);
      const size = Buffer.byteLength(part) + (parts.length > 0 ? 1 : 0);
      if (bytes + size > MAX_BATCH_BYTES) {
        if (parts.length > 0) break;
        if (bytes + size > MAX_RECORD_BYTES) {
          this.dropOversized(`its encoding (${size} bytes) is over the ${MAX_RECORD_BYTES} bytes a record can be shipped with`);
          return { batch: [], body: '' };
        }
        parts.push(part); // a large record ships alone
        break;
      }
      parts.push(part);
      bytes += size;
    }
    return { batch: this.buffer.slice(0, parts.length), body: `{"decisions":[${parts.join(',')}]}` };
  }

  /** Drops the head record, which can never be shipped (counted in `oversized`, reported to onError). */
  private dropOversized(why: string): void {
    const r = this.buffer.shift()!;
    this.counters.oversized++;
    this.opts.onError?.(new ApportionHttpError(413, 'RECORD_TOO_LARGE', `decision record ${r.id} dropped: ${why}`, { id: r.id }));
  }

  /** A batch failed for a reason that may pass (an outage): the set-aside record goes back to the head; backoff. */
  private shipFailed(): void {
    if (this.suspect) {
      this.buffer.unshift(this.suspect);
      this.suspect = undefined;
    }
    this.backoff();
  }

  private backoff(): void {
    this.backoffMs = Math.min(30_000, this.backoffMs === 0 ? 500 : this.backoffMs * 2);
    this.nextShipAt = Date.now() + this.backoffMs;
  }

  stats(): LocalStats {
    return { version: this.view?.version ?? -1, buffered: this.buffer.length + (this.suspect ? 1 : 0), ...this.counters };
  }

  /** Stops syncing and ships what is buffered (trying until `timeoutMs`, default 10 s). */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closed = true;
    process.off('beforeExit', this.onExit);
    clearInterval(this.flushTimer);
    clearInterval(this.pollTimer);
    const deadline = Date.now() + timeoutMs;
    while ((this.buffer.length > 0 || this.suspect) && Date.now() < deadline) {
      this.nextShipAt = 0;
      try {
        await this.flush();
      } catch (e) {
        this.opts.onError?.(e);
        await new Promise((r) => setTimeout(r, Math.min(this.backoffMs, Math.max(0, deadline - Date.now()))));
      }
    }
    this.abort.abort();
  }
}

/** Loads js-tiktoken's o200k_base encoder (an optional peer dependency) for `<x>Text` features. */
async function loadTokenizer(): Promise<void> {
  let lite: { Tiktoken: new (ranks: unknown) => { encode(text: string, allowedSpecial?: string[], disallowedSpecial?: string[]): number[] } };
  let ranks: { default: { pat_str: string } };
  try {
    lite = (await import('js-tiktoken/lite' as string)) as typeof lite;
    ranks = (await import('js-tiktoken/ranks/o200k_base' as string)) as typeof ranks;
  } catch (e) {
    throw new Error('a `<x>Text` feature in local mode needs the optional dependency js-tiktoken (npm install js-tiktoken), or send `<x>Tokens` instead', { cause: e });
  }
  const enc = new lite.Tiktoken(ranks.default);
  // A special token's spelling in user text (`<|endoftext|>`) is counted as text, as the server counts it.
  setTokenEncoder((text) => enc.encode(text, [], []).length, ranks.default.pat_str);
}
