import { I_PARKED } from './journal-format.js';
import { slotIndex } from './journal-slots.js';
import type { Doorbell } from './native.js';

/**
 * The parked wait of a journal reader or a pub/sub subscriber on its slot's doorbell FIFO:
 * both headers keep the parked count at `I_PARKED` and the slot's parked flag at word 1 of
 * the slot, and the writer (publisher) checks the count after each commit.
 */
export class DoorbellPark {
  #cancelWait: ((error: Error) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #onTimer: (() => void) | undefined;

  /**
   * Parks in slot `slot` on `bell` until it rings, the liveness check is due (`checkDueMs`,
   * read when the timer is first made), the signal aborts or `close()`. Resolves to what
   * `look` found on the last look before sleeping (without sleeping when that is not null or
   * `done()` says so), else to null once woken.
   */
  park<T>(
    i32: Int32Array,
    slot: number,
    bell: Doorbell,
    look: () => T | null,
    done: () => boolean,
    checkDueMs: () => number,
    signal: AbortSignal | undefined,
  ): Promise<T | null> {
    const s = slotIndex(slot);
    // Count first, then flag, then look: the writer checks the count after each commit.
    Atomics.add(i32, I_PARKED, 1);
    Atomics.store(i32, s + 1, 1);
    const unpark = (): void => {
      if (Atomics.compareExchange(i32, s + 1, 1, 0) === 1) Atomics.sub(i32, I_PARKED, 1);
    };
    let found: T | null;
    try {
      found = look();
    } catch (error) {
      unpark();
      throw error;
    }
    if (found !== null || done()) {
      unpark();
      return Promise.resolve(found);
    }
    return new Promise<T | null>((resolve, reject) => {
      const finish = (): void => {
        this.#timer?.unref();
        this.#onTimer = undefined;
        signal?.removeEventListener('abort', onAbort);
        bell.disarm();
        this.#cancelWait = undefined;
        unpark();
      };
      const onAbort = (): void => {
        finish();
        reject(signal?.reason as Error);
      };
      // One timer per reader, re-armed per park (no allocation): it wakes the wait when the
      // liveness check is due, in case the writer died without a word.
      this.#onTimer = () => {
        finish();
        resolve(null);
      };
      if (this.#timer === undefined) this.#timer = setTimeout(() => this.#onTimer?.(), checkDueMs());
      else this.#timer.refresh().ref();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#cancelWait = (error) => {
        finish();
        reject(error);
      };
      bell.arm(() => {
        finish();
        resolve(null);
      });
    });
  }

  /** Rejects a pending park with `error` and drops the timer. */
  close(error: Error): void {
    this.#cancelWait?.(error);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }
}
