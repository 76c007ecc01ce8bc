import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.js';
import { callScript } from '../redis/scripts.js';
import type { RawControlState, Versioned } from '@apportion/sdk/engine';
import { CONTROL_KINDS, type ControlKind } from './kinds.js';

export type { RawControlState, Versioned } from '@apportion/sdk/engine';

/** A document a write's checks read, at the version they read it (0: it did not exist). */
export interface ExpectedDoc {
  readonly kind: ControlKind;
  readonly id: string;
  readonly version: number;
}

/**
 * The state a write was computed from: the write applies only if it still holds, else it throws ControlConflict
 * and changes nothing. `global`: the control plane's global version (any change at all moves it); `docs`: the
 * documents the write's checks read. Deleted documents keep their version, so a document deleted and re-created
 * never matches a version read before.
 */
export interface Expectation {
  readonly global?: number;
  readonly docs?: readonly ExpectedDoc[];
}

/** The state a conditional write was computed from changed before it applied; nothing was written. */
export class ControlConflict extends Error {
  constructor(what: string) {
    super(`${what}: the control plane changed since it was read`);
  }
}

/** The version `view` holds of a document (0 when it holds none): what an Expectation names. */
export function versionIn(state: RawControlState, kind: ControlKind, id: string): ExpectedDoc {
  return { kind, id, version: state.kinds[kind].get(id)?.version ?? 0 };
}

/**
 * `state` with one document as a write stored it: what the write's answer is made from, so the answer shows what
 * this request wrote even when another writer changed or deleted the document before the snapshot reloaded.
 */
export function withDoc(state: RawControlState, kind: ControlKind, id: string, version: number, doc: unknown): RawControlState {
  const docs = new Map(state.kinds[kind]);
  docs.set(id, { id, version, doc });
  return { ...state, kinds: { ...state.kinds, [kind]: docs } };
}

/** Options of ControlStore.put. */
export interface PutOptions {
  readonly requires?: { readonly kind: ControlKind; readonly id: string };
  readonly expect?: Expectation;
  readonly owner?: string;
}

/** The id is recorded for another owner (a pipeline id another tenant created, even if since deleted). */
export class IdOwnedError extends Error {
  constructor(
    readonly kind: ControlKind,
    readonly id: string,
  ) {
    super(`${kind} ${id} belongs to another owner`);
  }
}

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

  /**
   * Writes a document; returns its new version. `requires`: a document that must exist; `expect`: the state the
   * write was computed from (ControlConflict when it no longer holds); `owner`: the id's owner, recorded on first
   * write and kept after a delete (IdOwnedError when the id is recorded for another owner).
   */
  async put(kind: ControlKind, id: string, doc: unknown, opts: PutOptions = {}): Promise<number> {
    const { requires, expect, owner } = opts;
    const docs = expect?.docs ?? [];
    const v = await callScript(
      this.redis,
      'configPut',
      [
        this.keys.configKind(kind),
        this.keys.configVersions(kind),
        this.keys.configVersion(),
        requires ? this.keys.configKind(requires.kind) : this.keys.configKind(kind),
        owner !== undefined ? this.keys.configOwners(kind) : this.keys.configKind(kind),
        ...docs.flatMap((d) => [this.keys.configKind(d.kind), this.keys.configVersions(d.kind)]),
      ],
      [id, JSON.stringify(doc), requires?.id ?? '', this.keys.configChannel(), expect?.global ?? '', docs.length, owner ?? '', ...docs.flatMap((d) => [d.id, d.version])],
    );
    if (v === -2) throw new ControlConflict(`${kind} ${id}`);
    if (v === -3) throw new IdOwnedError(kind, id);
    if (v === -1 && requires) throw new RequirementMissingError(requires.kind, requires.id);
    return v;
  }

  /** The version a document has in Redis now (0 when it does not exist): what an Expectation of it would need. */
  async versionOf(kind: ControlKind, id: string): Promise<number> {
    const [exists, version] = await this.redis.multi().hexists(this.keys.configKind(kind), id).hget(this.keys.configVersions(kind), id).exec().then((r) => (r ?? []).map((e) => e[1]));
    return Number(exists) === 1 ? Number(version ?? 1) : 0;
  }

  /** Records `owner` for an id of `kind` unless one is recorded (documents written before owners were recorded). */
  async recordOwner(kind: ControlKind, id: string, owner: string): Promise<void> {
    await this.redis.hsetnx(this.keys.configOwners(kind), id, owner);
  }

  /** The owner recorded for an id of `kind` (kept after the document is deleted), or undefined. */
  async ownerOf(kind: ControlKind, id: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.configOwners(kind), id)) ?? undefined;
  }

  /**
   * Deletes documents in one atomic step; returns how many existed. `expect` as for put. `journal`: an entry of the
   * deleted-objects journal (`configDeleted`) written in the same step when a document was deleted.
   */
  async delete(entries: readonly { kind: ControlKind; id: string }[], expect?: Expectation, journal?: { readonly field: string; readonly value: string }): Promise<number> {
    if (entries.length === 0) return 0;
    const docs = expect?.docs ?? [];
    const n = await callScript(
      this.redis,
      'configDelete',
      [
        this.keys.configVersion(),
        ...entries.map((e) => this.keys.configKind(e.kind)),
        ...docs.flatMap((d) => [this.keys.configKind(d.kind), this.keys.configVersions(d.kind)]),
        ...(journal ? [this.keys.configDeleted()] : []),
      ],
      [
        this.keys.configChannel(),
        expect?.global ?? '',
        entries.length,
        docs.length,
        ...entries.map((e) => e.id),
        ...docs.flatMap((d) => [d.id, d.version]),
        ...(journal ? [journal.field, journal.value] : []),
      ],
    );
    if (n === -2) throw new ControlConflict(entries.map((e) => `${e.kind} ${e.id}`).join(', '));
    return n;
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
