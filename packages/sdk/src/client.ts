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
   * `OUTCOME_UNCONFIRMED` (its enqueue was not confirmed: a retry is absorbed), `QUEUE_UNAVAILABLE`, `REDIS_UNAVAILABLE`; in ms.
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
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
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
   * written), `OUTCOME_UNCONFIRMED` (the outcome may have been accepted: the retry is absorbed), `QUEUE_UNAVAILABLE`
   * and `REDIS_UNAVAILABLE` (nothing was accepted). The same report is absorbed however often it arrives, so a retry
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
