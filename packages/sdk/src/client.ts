/** Options of the HTTP client. */
export interface ClientOptions {
  /** Base URL of the Apportion API. Default http://127.0.0.1:3000. */
  readonly url?: string;
  /** Bearer key (admin for control-plane calls, client for allocations and outcomes). */
  readonly key?: string;
  /** Per-request timeout in ms. Default 5000. */
  readonly timeoutMs?: number;
  /**
   * How long `reportOutcome` keeps retrying an outcome the server answers `503`: `DECISION_PENDING` (a decision seconds
   * old whose record may still be being written: an allocation answered `recorded: false` on a loaded store),
   * `OUTCOME_UNCONFIRMED` (its enqueue was not confirmed: a retry is queued again and counted once), `QUEUE_UNAVAILABLE`, `REDIS_UNAVAILABLE`; in ms.
   * Retries back off from 50 ms to 1 s; once the record lands the outcome is accepted, once the server's window has
   * passed without it the answer is `404 DECISION_NOT_FOUND` (thrown). 0: no retry. Default 10000.
   */
  readonly pendingRetryMs?: number;
}

export class ApportionHttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly body: unknown,
  ) {
    super(`${statusCode} ${code}: ${message}`);
    this.name = 'ApportionHttpError';
  }
}

/** The API could not be reached (refused, unknown host, no answer in time): the message names the URL. */
export class ApportionConnectionError extends Error {
  constructor(
    readonly url: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ApportionConnectionError';
  }
}

function connectionError(base: string, method: string, path: string, e: unknown, timeoutMs: number): ApportionConnectionError {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  const why =
    err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err.cause?.message ?? err.cause?.code ?? err.message ?? String(e));
  return new ApportionConnectionError(
    base,
    `cannot reach the Apportion API at ${base} (${method} ${path.split('?')[0]}: ${why}). Is the server running (\`npm start\` or \`apportion serve\`)? Use --url or APPORTION_URL for another address.`,
    { cause: e },
  );
}

/**
 * Whether a request failed because its connection was closed before any answer came: undici's "other side closed"
 * (`UND_ERR_SOCKET`) or `ECONNRESET` — what a kept-alive socket the server closed while idle gives the next request
 * sent on it. Not a timeout, a refused connection or an unknown host (those are not a reuse race).
 */
function droppedBeforeResponse(e: unknown): boolean {
  const err = e as { name?: string; code?: string; cause?: { code?: string } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return false;
  const code = err?.cause?.code ?? err?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET';
}

/**
 * Whether a request may be sent a second time after its connection dropped before any answer (the server may or may
 * not have received the first). Yes when a second delivery changes nothing more than the first:
 * - GET, HEAD, OPTIONS (reads), PUT (replaces the whole resource) and DELETE (a second one finds it gone);
 * - `POST /v1/outcomes`: the same report for a decision is counted once (a retry is answered 202 like the first);
 * - `POST /v1/allocations` with the caller's own `decisionId`: a decision id is recorded once, never overwritten (if
 *   the first delivery was recorded, the retry answers `409 ID_TAKEN`); without one, every POST is a new decision;
 * - `POST /v1/decisions/batch` (records are written once per id) and `POST /v1/spans` (stored once per trace and span id);
 * - `POST /v1/reservations/:id/commit` and `…/release`: idempotent by the reservation's state (a replay answers the same);
 * - any other POST whose JSON body carries an `idempotencyKey` (reserve, draws, extend, budget fund/debit/reset/
 *   freeze/unfreeze): the server answers a replay with the first answer.
 * Not retried: every other POST — experiment start/pause/resume/stop/rollback/promote, SRM acknowledgement, key
 * creation, an allocation without `decisionId`, an extend without `idempotencyKey`, … — where a second delivery would
 * act twice or answer a conflict for the caller's own first request.
 */
function retriesDroppedConnection(method: string, path: string, body?: unknown): boolean {
  const m = method.toUpperCase();
  if (m === 'GET' || m === 'HEAD' || m === 'OPTIONS' || m === 'PUT' || m === 'DELETE') return true;
  if (m !== 'POST') return false;
  const route = path.split('?')[0]!;
  const b = (body !== null && typeof body === 'object' ? body : {}) as { decisionId?: unknown; idempotencyKey?: unknown };
  if (route === '/v1/outcomes' || route === '/v1/decisions/batch' || route === '/v1/spans') return true;
  if (route === '/v1/allocations') return typeof b.decisionId === 'string';
  if (/^\/v1\/reservations\/[^/]+\/(commit|release)$/.test(route)) return true;
  return typeof b.idempotencyKey === 'string' && b.idempotencyKey !== '';
}

export interface Allocation {
  readonly decisionId: string;
  readonly pipeline: string;
  readonly pipelineVersion: number;
  readonly strategy: string;
  readonly strategyVersion: number;
  /** Tokens per agent, and the model to run it on when the pipeline declares candidate models. */
  readonly budgets: Readonly<Record<string, { readonly tokens: number; readonly model?: string }>>;
  readonly totalTokens: number;
  readonly unallocatedTokens: number;
  /** The request's cost ceiling and the planned cost of the budgets on the served models (when priced). */
  readonly maxCostUsd?: number;
  readonly costUsd?: number;
  readonly reason: string;
  readonly recorded: boolean;
  readonly route?: Readonly<Record<string, unknown>>;
  readonly [extra: string]: unknown;
}

export interface AllocateParams {
  readonly pipeline: string;
  readonly unitKey?: string;
  readonly features?: Readonly<Record<string, string | number | boolean | null>>;
  readonly totalTokens?: number;
  /** Cost ceiling in USD, with or instead of totalTokens. */
  readonly maxCostUsd?: number;
  readonly strategy?: string;
}

export interface OutcomeReport {
  readonly decisionId: string;
  readonly quality: number;
  readonly usage?: Readonly<Record<string, { inputTokens?: number; outputTokens?: number; truncated?: boolean }>>;
  readonly costUsd?: number;
}

/** A small fetch-based client for orchestrators and the CLI. */
export class ApportionClient {
  private readonly base: string;
  constructor(private readonly opts: ClientOptions = {}) {
    this.base = (opts.url ?? 'http://127.0.0.1:3000').replace(/\/$/, '');
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.opts.key) headers.authorization = `Bearer ${this.opts.key}`;
    const timeoutMs = this.opts.timeoutMs ?? 5000;
    const send = () =>
      fetch(this.base + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    let res: Response;
    try {
      try {
        res = await send();
      } catch (e) {
        // A kept-alive socket the server closed (idle timeout) as the request went out: no answer at all. Sent again,
        // on a new connection, once — only when a second delivery cannot do anything twice (see retriesDroppedConnection).
        if (!droppedBeforeResponse(e) || !retriesDroppedConnection(method, path, body)) throw e;
        res = await send();
      }
    } catch (e) {
      throw connectionError(this.base, method, path, e, timeoutMs);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      // The body broke off (connection reset, timeout while reading): as if the server had not been reached.
      throw connectionError(this.base, method, path, e, timeoutMs);
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON: an error page of a proxy or load balancer in front of the API (say, nginx's 503 text/html). An
      // error status stays that status (a 503 is retried like the API's own); a success without JSON is not ours.
      if (res.ok) throw new ApportionHttpError(502, 'INVALID_RESPONSE', `${method} ${path} answered ${res.status} with a body that is not JSON`, text);
      parsed = text;
    }
    if (!res.ok) {
      const e = (parsed !== null && typeof parsed === 'object' ? parsed : {}) as { code?: string; message?: string };
      throw new ApportionHttpError(res.status, e.code ?? 'HTTP_ERROR', e.message ?? res.statusText, parsed);
    }
    return parsed as T;
  }

  allocate(params: AllocateParams): Promise<Allocation> {
    return this.request('POST', '/v1/allocations', params);
  }

  /**
   * Reports an outcome; retries a `503` for up to `pendingRetryMs`: `DECISION_PENDING` (the record is still being
   * written), `OUTCOME_UNCONFIRMED` (the outcome may have been accepted: the retry is queued again and counted once), `QUEUE_UNAVAILABLE`
   * and `REDIS_UNAVAILABLE` (nothing was accepted). The same report is counted once however often it arrives, so a retry
   * never counts twice; a 4xx is thrown at once.
   */
  async reportOutcome(report: OutcomeReport): Promise<{ accepted: true; decisionId: string }> {
    const until = Date.now() + (this.opts.pendingRetryMs ?? 10_000);
    for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
      try {
        return await this.request('POST', '/v1/outcomes', report);
      } catch (e) {
        if (!(e instanceof ApportionHttpError && e.statusCode === 503) || Date.now() + wait > until) throw e;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  strategyStats(id: string, pipeline?: string): Promise<unknown> {
    const q = pipeline ? `?pipeline=${encodeURIComponent(pipeline)}` : '';
    return this.request('GET', `/v1/strategies/${encodeURIComponent(id)}/stats${q}`);
  }
}
