/**
 * The one source of time of a broker. Every timestamp (receivedAt, sendWhen, leases, retry
 * delays, retention) and every timer (long-poll deadlines, sweeps) goes through a `Clock`, so
 * tests drive time with a `ManualClock` instead of sleeping.
 */

/** Cancels a timer; calling it twice is harmless. */
export type CancelTimer = () => void;

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Calls `fn` once, `delayMs` from now on this clock. `keepAlive` (default true) says whether
   * the timer keeps the process alive: a long poll does, a background sweep does not.
   */
  setTimer(delayMs: number, fn: () => void, keepAlive?: boolean): CancelTimer;
}

/** Wall-clock time and unref'd `setTimeout` timers. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimer(delayMs: number, fn: () => void, keepAlive = true): CancelTimer {
    // setTimeout caps at 2^31-1 ms; longer waits are bounded by options anyway.
    const handle = setTimeout(fn, Math.min(Math.max(0, delayMs), 2_147_483_647));
    if (!keepAlive) handle.unref();
    return () => clearTimeout(handle);
  },
});

interface ManualTimer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that moves only when told to. `advance()` and `set()` fire the timers that came due,
 * in due order, synchronously.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: ManualTimer[] = [];

  constructor(startMs: number = Date.UTC(2026, 0, 1)) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimer(delayMs: number, fn: () => void): CancelTimer {
    const timer: ManualTimer = {
      at: this.#now + Math.max(0, delayMs),
      seq: this.#seq++,
      fn,
      cancelled: false,
    };
    this.#timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }

  /** Moves the clock forward by `ms` and fires the timers due by then. */
  advance(ms: number): void {
    this.set(this.#now + ms);
  }

  /** Sets the time (never backwards) and fires the timers due by then. */
  set(ms: number): void {
    if (ms < this.#now) throw new RangeError('a ManualClock never goes backwards');
    for (;;) {
      this.#timers = this.#timers.filter((t) => !t.cancelled);
      let next: ManualTimer | undefined;
      for (const t of this.#timers) if (t.at <= ms && (next === undefined || t.at < next.at)) next = t;
      if (next === undefined) break;
      this.#now = Math.max(this.#now, next.at);
      next.cancelled = true;
      next.fn();
    }
    this.#now = ms;
  }

  /** How many timers are waiting (for tests). */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
}
