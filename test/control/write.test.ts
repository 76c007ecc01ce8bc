/**
 * writeFresh (src/control/write.ts) against a scripted process state: a conflict recomputes the write on a reloaded
 * snapshot; a refusal decided on a snapshot older than Redis is decided again, once; a refusal on the current state
 * is answered at once; a write that keeps conflicting ends in 409 CONCURRENT_MODIFICATION.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ControlConflict } from '../../src/control/store.js';
import type { ControlView } from '../../src/control/view.js';
import { WRITE_ATTEMPTS, writeFresh, type FreshState } from '../../src/control/write.js';
import { AppError } from '../../src/errors/app-error.js';

/** A process whose snapshot is at `local` while Redis is at `redis`; a reload brings the snapshot to Redis. */
function processAt(local: number, redis: number) {
  const st = { local, redis, reloads: 0 };
  const state: FreshState = {
    view: () => ({ version: st.local }) as ControlView,
    snapshot: {
      refresh: async () => {
        st.reloads++;
        st.local = st.redis;
      },
    },
    store: { version: async () => st.redis },
  };
  return { st, state };
}

const missing = () => new AppError('PIPELINE_NOT_FOUND', 'body/pipeline: no pipeline "p"');

describe('writeFresh', () => {
  it('recomputes a write that conflicted, on the reloaded snapshot', async () => {
    const { st, state } = processAt(5, 5);
    let calls = 0;
    const out = await writeFresh(state, 'x', async () => {
      calls++;
      if (calls < 3) {
        st.redis++; // another writer got in first
        throw new ControlConflict('strategies s');
      }
      return st.local;
    });
    assert.equal(calls, 3);
    assert.equal(out, 7, 'the last attempt read the state after both other writes');
    assert.equal(st.reloads, 2);
  });

  it('decides a refusal again when the snapshot had not seen a newer state, and answers it when it had', async () => {
    // The pipeline was created through another instance (Redis at 8); this snapshot (7) has not received it.
    const { st, state } = processAt(7, 8);
    const out = await writeFresh(state, 'x', async () => {
      if (st.local < 8) throw missing();
      return 'written';
    });
    assert.equal(out, 'written');
    assert.equal(st.reloads, 1);

    const current = processAt(8, 8);
    await assert.rejects(writeFresh(current.state, 'x', async () => Promise.reject(missing())), { code: 'PIPELINE_NOT_FOUND' });
    assert.equal(current.st.reloads, 0, 'no reload when the refusal was decided on the current state');
  });

  it('answers a refusal after one second decision even while the control plane keeps moving', async () => {
    const { st, state } = processAt(1, 2);
    let calls = 0;
    await assert.rejects(
      writeFresh(state, 'x', async () => {
        calls++;
        st.redis++; // a busy control plane: every read is already old
        throw missing();
      }),
      { code: 'PIPELINE_NOT_FOUND' },
    );
    assert.equal(calls, 2);
  });

  it('gives up with 409 CONCURRENT_MODIFICATION after WRITE_ATTEMPTS conflicts', async () => {
    const { state } = processAt(1, 1);
    let calls = 0;
    await assert.rejects(
      writeFresh(state, 'params/id: strategy "s"', async () => {
        calls++;
        throw new ControlConflict('strategies s');
      }),
      (e: unknown) => e instanceof AppError && e.code === 'CONCURRENT_MODIFICATION' && /params\/id: strategy "s"/.test(e.message),
    );
    assert.equal(calls, WRITE_ATTEMPTS);
  });
});
