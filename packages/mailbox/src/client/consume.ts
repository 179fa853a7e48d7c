/**
 * What the HTTP client's and the binary client's `consume()` share: the validation of their
 * options, the error report, and the run of one message (handler under a lease extended every
 * `leaseMs / 3`, then confirm or reject). Internal: not exported from the package index. The
 * two differ only in how messages arrive (long-poll workers, a push subscription).
 */
import { setMaxListeners } from 'node:events';
import { channel } from 'node:diagnostics_channel';
import { MailboxInvalidArgumentError } from '../errors.js';
import type { Message } from '../message.js';

const consumeChannel = channel('switchyard:mailbox:consume');

export type ConsumeHandler = (message: Message, context: { readonly signal: AbortSignal }) => unknown;

interface ConsumeOptionsCommon {
  readonly concurrency?: number;
  readonly leaseMs?: number;
  readonly retryDelayMs?: number;
  readonly signal?: AbortSignal;
  readonly onError?: (error: unknown, message?: Message) => void;
}

export interface ConsumeSetup {
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly retryDelayMs: number;
  readonly stop: AbortSignal;
  /** Publishes on `switchyard:mailbox:consume` and calls `onError`; never throws. */
  readonly report: (error: unknown, m?: Message) => void;
}

/** Validates `consume()`'s arguments and applies the defaults; throws MailboxInvalidArgumentError. */
export function consumeSetup(
  receiver: string,
  handler: unknown,
  options: ConsumeOptionsCommon,
): ConsumeSetup {
  if (typeof handler !== 'function') throw new MailboxInvalidArgumentError('handler must be a function');
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000)
    throw new MailboxInvalidArgumentError('concurrency must be an integer from 1 to 1000');
  const leaseMs = options.leaseMs ?? 30_000;
  if (!Number.isInteger(leaseMs) || leaseMs < 3)
    throw new MailboxInvalidArgumentError('leaseMs must be an integer ≥ 3');
  const retryDelayMs = options.retryDelayMs ?? 1000;
  // Every worker's call and handler listens to the stop signal: an internal one follows the
  // caller's, with room for that many listeners (no MaxListenersExceededWarning at 50 workers)
  // and without changing the caller's signal.
  const inner = new AbortController();
  setMaxListeners(4 * concurrency + 16, inner.signal);
  const outer = options.signal;
  if (outer !== undefined) {
    if (outer.aborted) inner.abort(outer.reason);
    else outer.addEventListener('abort', () => inner.abort(outer.reason), { once: true });
  }
  const stop = inner.signal;
  const onError = options.onError ?? (() => {});
  const report = (error: unknown, m?: Message): void => {
    if (consumeChannel.hasSubscribers) consumeChannel.publish({ receiver, error, mid: m?.mid });
    try {
      onError(error, m);
    } catch {
      // a throwing onError must not stop consuming
    }
  };
  return { concurrency, leaseMs, retryDelayMs, stop, report };
}

/** The two calls of a client that `runLeased` makes on a message. */
export interface LeaseCalls {
  extend(mid: string, lid: string, leaseMs: number): Promise<unknown>;
  ack(mid: string, lid: string, status: 1 | 2): Promise<void>;
}

/**
 * Runs `handler` on a leased message while extending its lease every `leaseMs / 3`; a failed
 * extension aborts the handler's signal (the lease is lost). Then confirms (resolved) or
 * rejects (threw), after the last extension settled so the ack carries the newest lease.
 * Every error goes to `report`; this never rejects.
 */
export async function runLeased(
  calls: LeaseCalls,
  m: Message,
  handler: ConsumeHandler,
  stop: AbortSignal,
  leaseMs: number,
  report: (error: unknown, m?: Message) => void,
): Promise<void> {
  const lease = new AbortController();
  const handlerSignal = AbortSignal.any([lease.signal, stop]);
  let extending: Promise<void> = Promise.resolve();
  const timer = setInterval(
    () => {
      extending = calls.extend(m.mid, m.lid!, leaseMs).then(
        () => {},
        (error: unknown) => {
          clearInterval(timer);
          lease.abort(error);
          report(error, m);
        },
      );
    },
    Math.max(1, Math.floor(leaseMs / 3)),
  );
  let ok: boolean;
  try {
    await handler(m, { signal: handlerSignal });
    ok = true;
  } catch (error) {
    ok = false;
    report(error, m);
  } finally {
    clearInterval(timer);
  }
  await extending;
  try {
    await calls.ack(m.mid, m.lid!, ok ? 1 : 2);
  } catch (error) {
    report(error, m);
  }
}
