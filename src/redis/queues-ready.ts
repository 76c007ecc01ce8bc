/**
 * BullMQ checks a queue's Redis once, when the queue is made (`INFO` for the server's version). If that one check
 * fails — Redis stalled past the command timeout just then, or the connection dropped — the queue keeps the failure
 * and refuses every later `add` until the process restarts: an API would answer every outcome 503 while Redis is
 * healthy again. So start-up waits for every queue's check and fails, naming the queues, when one did not pass; a
 * supervisor's restart then makes fresh queues.
 */
export interface CheckedQueue {
  readonly name: string;
  waitUntilReady(): Promise<unknown>;
}

export async function queuesReady(queues: readonly CheckedQueue[]): Promise<void> {
  const results = await Promise.allSettled(queues.map((q) => q.waitUntilReady()));
  const failed = queues.flatMap((q, i) => {
    const r = results[i]!;
    return r.status === 'rejected' ? [`${q.name} (${r.reason instanceof Error ? r.reason.message : String(r.reason)})`] : [];
  });
  if (failed.length > 0) {
    throw new Error(
      `the job queue${failed.length > 1 ? 's' : ''} ${failed.join(', ')} could not check Redis at start-up (Redis unreachable, or stalled past APPORTION_REDIS_COMMAND_TIMEOUT_MS); BullMQ keeps such a failure, so this process stops instead of refusing every job: start it again once Redis answers`,
    );
  }
}
