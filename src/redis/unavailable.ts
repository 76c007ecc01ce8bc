/** A server reply about the server's (or cluster's) state rather than the command. */
const SERVER_STATE = /^(LOADING|READONLY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|BUSY|NOREPLICAS|MISCONF|OOM|MOVED|ASK)\b/;

/**
 * Whether an error means Redis could not be reached or could not serve the command now (a 503 and a retry, not a
 * bug): ioredis's bounded command timing out (connection.ts), a closed connection or one with no offline queue,
 * retries exhausted, a cluster with no reachable node or one still redirecting after ioredis's last retry, a socket error, or a server reply that is about the server's
 * state rather than the command (loading its data, a read-only replica, a cluster slot down or migrating, a script
 * busy, persistence or memory refusing writes), a group-committed write not confirmed in time. A script's own error or a CROSSSLOT refusal is a bug and stays a 500.
 */
export function isRedisUnavailable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const msg = e.message ?? '';
  // MOVED and ASK are followed by the cluster client; one that still reaches the code (a redirection inside a
  // pipeline or MULTI while slots move) is the cluster's state, like TRYAGAIN.
  if (e.name === 'ReplyError') return SERVER_STATE.test(msg);
  if (e.name === 'MaxRetriesPerRequestError' || e.name === 'ClusterAllFailedError') return true;
  // A group-committed write not confirmed within its caller's wait, or a decision record that reached Redis after its
  // pending deadline (written nothing): Redis was slow, not wrong; the callers that surface these retry idempotently
  // (POST /v1/decisions/batch writes each record only if its id is free).
  if (e.name === 'CommitTimeoutError' || e.name === 'RecordDeadlineError') return true;
  // ioredis's Cluster gives up on a command after `maxRedirections` retries (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a
  // closed connection: a failover in progress) and rejects it with a plain Error wrapping the last one as text. The
  // retries before it were all the cluster's state; only a last error that is a server reply about the command
  // itself (a script's error reached after the redirections) stays a 500.
  const wrapped = /^Too many Cluster redirections\. Last error: (.*)$/s.exec(msg);
  if (wrapped) {
    const reply = /^ReplyError: (.*)$/s.exec(wrapped[1]!);
    return reply ? SERVER_STATE.test(reply[1]!) : true;
  }
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(code)) return true;
  return /^(Command timed out|Connection is closed|Cluster isn't ready and enableOfflineQueue options is false|Stream isn't writeable|None of startup nodes is available|Failed to refresh slots cache|All keys in the pipeline should belong to the same slots allocation group)/.test(msg);
}

/**
 * Whether a failed write certainly did not reach Redis, so nothing of it was written: it was refused before it was
 * sent (no connection and no offline queue; a group-committed item still waiting for its write slot when its wait
 * ran out), or Redis answered it with an error (a refused command or script writes nothing before its error). Any
 * other failure (a command timeout, a connection closed while the command was in flight) leaves its fate unknown: it
 * may have been written.
 */
export function certainlyUnwritten(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === 'NotSentError' || e.name === 'RecordDeadlineError') return true;
  if (e.name === 'CommitTimeoutError') return (e as Error & { sent?: unknown }).sent === false;
  if (e.name === 'ReplyError') return true;
  return /enableOfflineQueue options is false/.test(e.message ?? '');
}

/** A write refused before it was sent, because its connection was not ready: nothing of it reached Redis. */
export class NotSentError extends Error {
  constructor(what: string, status: string) {
    super(`${what} not sent: its connection is ${status}`);
    this.name = 'NotSentError';
  }
}
