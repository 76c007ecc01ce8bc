/** A call that did not answer within its bound. */
export class DeadlineError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer from Redis within ${ms} ms`);
    this.name = 'DeadlineError';
  }
}

/**
 * Rejects with DeadlineError when `p` has not settled within `ms` (p itself keeps running: use it for reads, or
 * for writes whose late arrival is harmless). The bound is measured from the caller's side: on an auto-pipelined
 * connection a command waits for the batch before it (a stalled batch holds it up to the command timeout) before
 * its own timer starts, so a caller chaining on the command timeout alone could wait twice as long.
 *
 * Like the connection's command timeout, it fails from the check phase (setImmediate), after the poll phase has
 * read the replies that arrived, so a busy event loop is not mistaken for a stalled Redis.
 */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (done) return;
          done = true;
          reject(new DeadlineError(what, ms));
        }),
      ms,
    );
    p.then(
      (v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
