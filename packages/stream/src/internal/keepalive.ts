/**
 * Liveness: after `intervalMs` without receiving anything, send a PING; if still nothing
 * arrives `timeoutMs` later, the peer is dead. Receiving sets a flag (no clock read per
 * frame); a coarse ticker does the arithmetic.
 */
export class Keepalive {
  #received = true;
  #idleMs = 0;
  #pingAtIdleMs = -1;
  readonly #timer: NodeJS.Timeout | null;

  constructor(intervalMs: number, timeoutMs: number, ping: () => void, dead: () => void) {
    if (intervalMs === 0) {
      this.#timer = null;
      return;
    }
    const tickMs = Math.max(5, Math.floor(Math.min(intervalMs, timeoutMs) / 4));
    this.#timer = setInterval(() => {
      if (this.#received) {
        this.#received = false;
        this.#idleMs = 0;
        this.#pingAtIdleMs = -1;
        return;
      }
      this.#idleMs += tickMs;
      if (this.#pingAtIdleMs < 0) {
        if (this.#idleMs >= intervalMs) {
          this.#pingAtIdleMs = this.#idleMs;
          ping();
        }
      } else if (this.#idleMs - this.#pingAtIdleMs >= timeoutMs) {
        this.stop();
        dead();
      }
    }, tickMs);
    this.#timer.unref();
  }

  touch(): void {
    this.#received = true;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
  }
}
