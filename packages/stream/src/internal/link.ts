import type { Frame } from '../frames.js';

/**
 * What a session needs from a connection: a `@switchyard/wire` `Connection<Frame>` fits.
 * `send` queues the frame (the engine coalesces every frame of one turn into one write)
 * and returns false once the outbox is over its high-water mark.
 */
export interface FrameLink {
  send(frame: Frame): boolean;
  readonly writable: Promise<void>;
  readonly remoteAddress: string;
  close(): Promise<void>;
  destroy(error?: Error): void;
}

/** A one-shot wake-up for a single waiter, without allocating when nobody waits. */
export class Waiter {
  #resolve: (() => void) | null = null;

  wait(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#resolve = resolve;
    });
  }

  wake(): void {
    const resolve = this.#resolve;
    if (resolve !== null) {
      this.#resolve = null;
      resolve();
    }
  }
}

/**
 * A timer for a deadline somebody waits on. It is not unref'd: a consumer awaiting a
 * timeout must keep the process alive until it fires. Every caller clears it.
 */
export function deadline(ms: number, fn: () => void): NodeJS.Timeout {
  return setTimeout(fn, ms);
}
