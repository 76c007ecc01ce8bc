import type { Versioned } from '../control/store.js';
import { BUILTIN_UNIFORM_ID } from '@apportion/sdk/engine';
import { DEFAULT_TENANT } from '../http/tenancy.js';

/**
 * What another domain may know of a stored pipeline document, read from a fresh control-plane read (not the
 * snapshot). The pipelines domain owns the document's shape: rollout asks this, never the raw document.
 */
export interface PipelineRef {
  readonly id: string;
  readonly version: number;
  /** The tenant that owns it (its document's `tenant`; `default` for documents from before tenants). */
  readonly owner: string;
  /** Names of its agents, in order. */
  readonly agents: readonly string[];
  /** Its default strategy, or the built-in uniform when it sets none. */
  readonly defaultStrategy: string;
  /** The stored document with `strategy` as its default (no default for the built-in uniform), to write back. */
  withDefaultStrategy(strategy: string): Record<string, unknown>;
}

/** Reads a stored pipeline document (as the pipelines routes wrote it). */
export function pipelineRef(v: Versioned<Record<string, unknown>>): PipelineRef {
  const doc = v.doc;
  const agents = Array.isArray(doc.agents) ? (doc.agents as readonly { name: string }[]).map((a) => a.name) : [];
  return {
    id: v.id,
    version: v.version,
    owner: typeof doc.tenant === 'string' ? doc.tenant : DEFAULT_TENANT,
    agents,
    defaultStrategy: typeof doc.defaultStrategy === 'string' ? doc.defaultStrategy : BUILTIN_UNIFORM_ID,
    withDefaultStrategy(strategy) {
      const { defaultStrategy: _old, ...rest } = doc;
      return strategy === BUILTIN_UNIFORM_ID ? rest : { ...rest, defaultStrategy: strategy };
    },
  };
}
