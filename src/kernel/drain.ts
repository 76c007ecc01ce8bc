import { Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { Closeable } from './module.js';

/** How a worker stopped: its active jobs finished, or the bound passed and it was closed without them. */
export type DrainResult = 'drained' | 'forced';

/**
 * Stops a worker within `ms`: it takes no new job at once, its active jobs get until the bound to finish, and past
 * the bound it is closed without waiting for them. A job left so is not lost: its lock is no longer renewed, so it
 * expires and the job is picked up again by another worker (or by this one's successor) as a stalled job. The jobs
 * of this product are idempotent (outcomes by their markers, retrains and ticks by design), so a job that did part
 * of its work before the stop counts once.
 *
 * Why bounded: a job that never finishes (a retrain on a starved CPU, a Redis call that waits on a stalled server)
 * kept `close()` pending, and with it the process, past any orchestrator's grace period.
 */
export async function closeBounded(w: Closeable, ms: number): Promise<DrainResult> {
  if (w instanceof Worker) {
    // Not close(): it would wait for the active jobs unboundedly, and a later close(true) returns that same pending
    // promise. Not pause() either: it waits for them too, and when they end it reconnects the worker's blocking
    // client — also after a close(true) in the meantime, which left a Redis socket open for good and the process
    // unable to exit (test/integration/worker-drain.test.ts). So: pause without waiting (stops fetching at once),
    // then wait for the active jobs without reconnecting (BullMQ's own whenCurrentJobsFinished(false), what close()
    // runs), bounded. Then close(true) either way: the jobs have ended or been given up, and close(false) would run
    // that wait again — disconnecting the blocking client a second time, which on a Redis Cluster waits for an 'end'
    // event that never comes (a workers runtime closed after its jobs ended hung for good there).
    const wait = (w as unknown as { whenCurrentJobsFinished?: (reconnect?: boolean) => Promise<void> }).whenCurrentJobsFinished;
    let drained: boolean;
    if (typeof wait === 'function') {
      await w.pause(true);
      drained = await within(wait.call(w, false), ms);
      await w.close(true);
    } else {
      drained = await within(w.pause(), ms);
      await w.close(!drained);
    }
    return drained ? 'drained' : 'forced';
  }
  return (await within(w.close(), ms)) ? 'drained' : 'forced';
}

/** Closes every worker within the bound (concurrently) and logs those that had to be closed without their jobs. */
export async function closeWorkers(workers: readonly Closeable[], ms: number, log: Logger): Promise<DrainResult[]> {
  const results = await Promise.all(
    workers.map((w) =>
      closeBounded(w, ms).catch((err: unknown) => {
        log.warn({ err }, 'a worker failed to close');
        return 'forced' as const;
      }),
    ),
  );
  const forced = workers.filter((_, i) => results[i] === 'forced').map((w) => (w instanceof Worker ? w.name : 'worker'));
  if (forced.length > 0) log.warn({ ms, workers: forced }, 'workers did not finish their active jobs in time; closed without them (the jobs are retried as stalled)');
  return results;
}

async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
