import type { AllocateParams, Allocation } from './client.js';

/** Options of local mode (see docs/sdk.md, "Local evaluation"). Kept apart from the engine so the main entry's types need nothing of it. */
export interface LocalOptions {
  readonly url: string;
  readonly key?: string;
  /** Per-request timeout of sync and ingest calls, in ms. Default 10000. */
  readonly timeoutMs?: number;
  /** Ship buffered decision records this often, in ms. Default 1000. */
  readonly flushIntervalMs?: number;
  /** Ship as soon as this many records are buffered; also the largest batch. Default 500. */
  readonly batchSize?: number;
  /** Most records kept while the server cannot take them; beyond it new records are dropped (counted). Default 100000. */
  readonly maxBuffer?: number;
  /** Safety-net poll of /v1/sync, in ms, besides the event stream. Default 30000. */
  readonly pollMs?: number;
  /** Whether to open the event stream. Default true. */
  readonly stream?: boolean;
  /** Longest allocate() waits for the first sync, in ms. Default 10000. */
  readonly readyTimeoutMs?: number;
  /** Called with errors of background work (sync, stream, shipping, rejected records). Default: ignored. */
  readonly onError?: (err: unknown) => void;
}

export interface LocalStats {
  /** The control state version evaluated against (-1 before the first sync). */
  readonly version: number;
  readonly syncs: number;
  readonly notModified: number;
  readonly buffered: number;
  readonly shipped: number;
  readonly duplicates: number;
  readonly rejected: number;
  readonly dropped: number;
  /**
   * Records dropped because they can never be shipped: one record whose encoding is over the batch byte limit, or
   * that the server refuses with 413 or keeps cutting off (a connection error) on its own while the records after it ship.
   */
  readonly oversized: number;
  /** Allocations local mode refused to serve (a strategy kind it does not implement) and asked the server for. */
  readonly served: number;
  readonly lastSyncAt: number | undefined;
}

/** What local mode offers (`await apportion.evaluator()`). */
export interface LocalEvaluatorApi {
  /** Fetches the control state unless unchanged (304). */
  sync(): Promise<void>;
  /** Resolves once a control state is held (waits for the first sync up to readyTimeoutMs). */
  whenReady(): Promise<void>;
  /** Allocates in process, synchronously (after whenReady). */
  allocateNow(params: AllocateParams & { readonly decisionId?: string }): Allocation;
  allocate(params: AllocateParams & { readonly decisionId?: string }): Promise<Allocation>;
  /** Whether a decision's record still waits to be shipped. */
  holds(decisionId: string): boolean;
  /** Ships every buffered record now. */
  flush(): Promise<void>;
  stats(): LocalStats;
  /** Stops syncing and ships what is buffered. */
  close(timeoutMs?: number): Promise<void>;
}
