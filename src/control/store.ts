import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.js';
import { callScript } from '../redis/scripts.js';
import type { RawControlState, Versioned } from '@apportion/sdk/engine';
import { CONTROL_KINDS, type ControlKind } from './kinds.js';

export type { RawControlState, Versioned } from '@apportion/sdk/engine';

export class RequirementMissingError extends Error {
  constructor(
    readonly kind: ControlKind,
    readonly id: string,
  ) {
    super(`${kind} ${id} does not exist`);
  }
}

/** Control-plane documents in Redis: writes through Lua (version bump + announcement), reads whole. */
export class ControlStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** Writes a document; returns its new version. `requires` names a document that must exist. */
  async put(kind: ControlKind, id: string, doc: unknown, requires?: { kind: ControlKind; id: string }): Promise<number> {
    const v = await callScript(
      this.redis,
      'configPut',
      [
        this.keys.configKind(kind),
        this.keys.configVersions(kind),
        this.keys.configVersion(),
        requires ? this.keys.configKind(requires.kind) : this.keys.configKind(kind),
      ],
      [id, JSON.stringify(doc), requires?.id ?? '', this.keys.configChannel()],
    );
    if (v === -1 && requires) throw new RequirementMissingError(requires.kind, requires.id);
    return v;
  }

  /** Deletes documents in one atomic step; returns how many existed. */
  async delete(entries: readonly { kind: ControlKind; id: string }[]): Promise<number> {
    if (entries.length === 0) return 0;
    return callScript(
      this.redis,
      'configDelete',
      [this.keys.configVersion(), ...entries.map((e) => this.keys.configKind(e.kind))],
      [this.keys.configChannel(), ...entries.map((e) => e.id)],
    );
  }

  async version(): Promise<number> {
    return Number((await this.redis.get(this.keys.configVersion())) ?? 0);
  }

  /** Reads every kind in one MULTI (one slot), so the result is a consistent state. */
  async loadAll(): Promise<RawControlState> {
    const m = this.redis.multi();
    m.get(this.keys.configVersion());
    for (const kind of CONTROL_KINDS) {
      m.hgetall(this.keys.configKind(kind));
      m.hgetall(this.keys.configVersions(kind));
    }
    const res = await m.exec();
    if (!res) throw new Error('control-plane load aborted');
    const value = (i: number): unknown => {
      const entry = res[i];
      if (!entry) throw new Error('control-plane load: missing reply');
      if (entry[0]) throw entry[0];
      return entry[1];
    };
    const kinds = {} as Record<ControlKind, Map<string, Versioned<unknown>>>;
    CONTROL_KINDS.forEach((kind, k) => {
      const docs = value(1 + 2 * k) as Record<string, string>;
      const versions = value(2 + 2 * k) as Record<string, string>;
      const map = new Map<string, Versioned<unknown>>();
      for (const [id, json] of Object.entries(docs)) {
        map.set(id, { id, version: Number(versions[id] ?? 1), doc: JSON.parse(json) as unknown });
      }
      kinds[kind] = map;
    });
    return { version: Number(value(0) ?? 0), kinds };
  }
}
