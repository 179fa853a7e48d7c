/**
 * The database clock: the local monotonic clock plus the offset to PostgreSQL's
 * `clock_timestamp()`, measured at open and re-measured every `resyncMs` (the midpoint of the
 * round trip, so the error is at most half of it). Every broker on one database that uses it
 * stamps leases, due times and retries on the same timeline, whatever the skew of the machines'
 * wall clocks. It never goes backwards: a new offset that would move time back is absorbed.
 */
import type { CancelTimer, Clock } from '../clock.js';

export interface OffsetSource {
  /** The database's time, in ms since the epoch. */
  dbNow(): Promise<number>;
}

export class DatabaseClock implements Clock {
  #offset = 0;
  #last = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #source: OffsetSource;

  private constructor(source: OffsetSource) {
    this.#source = source;
  }

  /** Measures the offset once, then keeps it fresh every `resyncMs` (0: never). */
  static async start(source: OffsetSource, resyncMs: number): Promise<DatabaseClock> {
    const clock = new DatabaseClock(source);
    await clock.resync();
    if (resyncMs > 0) {
      clock.#timer = setInterval(() => {
        clock.resync().catch(() => {});
      }, resyncMs);
      clock.#timer.unref();
    }
    return clock;
  }

  /** Re-measures the offset to the database clock. */
  async resync(): Promise<void> {
    const t0 = performance.timeOrigin + performance.now();
    const db = await this.#source.dbNow();
    const t1 = performance.timeOrigin + performance.now();
    this.#offset = db - (t0 + t1) / 2;
  }

  /** The estimated offset of the database clock from the local one, in ms. */
  get offsetMs(): number {
    return this.#offset;
  }

  now(): number {
    const t = Math.round(performance.timeOrigin + performance.now() + this.#offset);
    if (t > this.#last) this.#last = t;
    return this.#last;
  }

  setTimer(delayMs: number, fn: () => void, keepAlive = true): CancelTimer {
    const handle = setTimeout(fn, Math.min(Math.max(0, delayMs), 2_147_483_647));
    if (!keepAlive) handle.unref();
    return () => clearTimeout(handle);
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
