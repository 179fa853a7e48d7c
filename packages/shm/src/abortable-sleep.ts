import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Waits `ms`; an abort rejects with `signal.reason` (timers/promises rejects with its own
 * AbortError instead). The backoff of every polling wait in this package.
 */
export async function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, signal === undefined ? {} : { signal });
  } catch (error) {
    signal?.throwIfAborted();
    throw error;
  }
}
