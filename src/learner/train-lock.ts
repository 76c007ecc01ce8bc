import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { callScript } from '../redis/scripts.js';

/**
 * One retrain of a pipeline at a time across every worker process: a Redis lock (SET NX PX with a random token),
 * renewed every third of its time to live while the retrain runs, released with a check of the token
 * (learner-train-lock.lua). A process that dies holding it frees it when the time to live runs out.
 */
export class TrainLock {
  private readonly token = randomBytes(12).toString('hex');
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly ttlMs: number,
    /** Called when a renewal found the lock gone or another's (the retrain ran past a stall longer than the time to live). */
    private readonly onLost: (err?: unknown) => void,
  ) {}

  /** Takes the lock if it is free; true when taken (then renewed until release). */
  async acquire(): Promise<boolean> {
    if ((await this.redis.set(this.key, this.token, 'PX', this.ttlMs, 'NX')) !== 'OK') return false;
    this.timer = setInterval(() => void this.renew(), Math.max(1, Math.floor(this.ttlMs / 3)));
    return true;
  }

  private async renew(): Promise<void> {
    try {
      if ((await callScript(this.redis, 'learnerTrainLock', [this.key], [this.token, 'renew', this.ttlMs])) === 0) this.onLost();
    } catch (err) {
      this.onLost(err);
    }
  }

  /** Stops renewing and frees the lock if it is still this holder's. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await callScript(this.redis, 'learnerTrainLock', [this.key], [this.token, 'release', 0]);
  }
}
