import { ApportionClient, type AllocateParams, type Allocation, type OutcomeReport } from './client.js';
import type { LocalEvaluatorApi, LocalOptions, LocalStats } from './local-types.js';

export interface ApportionOptions extends Omit<LocalOptions, 'url'> {
  /** Base URL of the Apportion API. Default http://127.0.0.1:3000. */
  readonly url?: string;
  /**
   * `remote` (default): every allocation is a call to the server. `local`: allocations are computed in process
   * from the synced control state, with the server's own engine; decision records are shipped in batches.
   */
  readonly mode?: 'remote' | 'local';
}

/**
 * The entry point: `new Apportion({ url, key, mode: 'local' })`. Allocates remotely or in process (the local
 * engine is loaded on first use, so remote users never load it), and reports outcomes.
 */
export class Apportion {
  readonly client: ApportionClient;
  readonly mode: 'remote' | 'local';
  private local: Promise<LocalEvaluatorApi> | undefined;

  constructor(private readonly opts: ApportionOptions = {}) {
    this.mode = opts.mode ?? 'remote';
    this.client = new ApportionClient({ ...(opts.url !== undefined ? { url: opts.url } : {}), ...(opts.key !== undefined ? { key: opts.key } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
    // Local mode starts syncing at once, so the first allocation rarely waits.
    if (this.mode === 'local') void this.evaluator().catch(() => undefined);
  }

  /** The local evaluator (local mode only). */
  evaluator(): Promise<LocalEvaluatorApi> {
    if (this.mode !== 'local') return Promise.reject(new Error('evaluator() is for mode: "local"'));
    return (this.local ??= import('./local.js').then((m) => new m.LocalEvaluator({ ...this.opts, url: this.opts.url ?? 'http://127.0.0.1:3000' })));
  }

  /** Resolves once local mode holds a control state (immediately in remote mode). */
  async ready(): Promise<void> {
    if (this.mode === 'local') await (await this.evaluator()).whenReady();
  }

  async allocate(params: AllocateParams & { readonly decisionId?: string }): Promise<Allocation> {
    if (this.mode === 'local') return (await this.evaluator()).allocate(params);
    return this.client.allocate(params);
  }

  /** Reports an outcome; in local mode the decision's record is shipped first when it is still buffered. */
  async reportOutcome(report: OutcomeReport): Promise<{ accepted: true; decisionId: string }> {
    if (this.mode === 'local' && this.local) {
      const ev = await this.local;
      if (ev.holds(report.decisionId)) await ev.flush();
    }
    return this.client.reportOutcome(report);
  }

  /** Local mode: sync and shipping counters. */
  async stats(): Promise<LocalStats | undefined> {
    return this.mode === 'local' ? (await this.evaluator()).stats() : undefined;
  }

  /** Ships buffered decision records now (local mode). */
  async flush(): Promise<void> {
    if (this.mode === 'local' && this.local) await (await this.local).flush();
  }

  /** Stops syncing and ships what is buffered (local mode). */
  async close(): Promise<void> {
    if (this.local) await (await this.local).close();
  }
}
