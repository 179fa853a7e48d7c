/**
 * `MailboxBinaryClient`: the broker over the binary API (`switchyard://host:port`, protocol.ts).
 * One `@switchyard/stream` connection carries every call. Sends, acks and extensions made in
 * the same turn of the event loop go out as one request (up to `maxBatch` items), so a
 * producer with many sends in flight costs the server one request per turn, and the broker
 * commits them together. `subscribe` is a push consumer: the server leases up to `prefetch`
 * messages ahead and streams them; each ack or reject (or a lease running out) is credit for
 * one more. `consume` runs handlers on top of it as `MailboxClient.consume` does over HTTP.
 */
import { StreamClient, StreamError, StreamRemoteError } from '@switchyard/stream';
import { MailboxError, MailboxHttpError, MailboxInvalidArgumentError } from '../errors.js';
import type { Message } from '../message.js';
import { decodeJson, encodeJson, fromWire, mailboxErrorOf } from './protocol.js';
import type { WireItemResult } from './protocol.js';
import { consumeSetup, runLeased } from '../client/consume.js';
import { checkTokenArg, parseUrlArg } from '../client/args.js';

export interface MailboxBinaryClientOptions {
  /** Bearer token (the HTTP server's tokens). */
  readonly token?: string;
  /** Most items per send / ack / extend request (default 1000; the server's `maxBatch` bounds it too). */
  readonly maxBatch?: number;
  /** Calls queued for the next request at most (default 100 000); beyond it a call fails with MAILBOX_ERR_OVERLOADED. */
  readonly maxQueued?: number;
  /** Connecting to the server (default 10 000 ms). */
  readonly dialTimeoutMs?: number;
}

export interface BinarySendInput {
  readonly sender: string;
  readonly receiver: string;
  readonly body: Record<string, string | string[]>;
  readonly delayMs?: number;
  readonly clientTime?: Date;
}

export interface BinaryCallOptions {
  readonly signal?: AbortSignal;
}

export interface BinaryFetchOptions extends BinaryCallOptions {
  readonly leaseMs?: number;
  readonly waitMs?: number;
  readonly consumer?: string;
}

export interface SubscribeOptions extends BinaryCallOptions {
  /** Lease of each pushed message (default: the broker's `defaultLeaseMs`). */
  readonly leaseMs?: number;
  /** Messages leased to this consumer and not yet acked, at most (default 100): the credit. */
  readonly prefetch?: number;
  /** Recorded in the attempt history. */
  readonly consumer?: string;
}

export interface BinaryConsumeContext {
  /** Aborts when the lease is lost (an extension failed) or consume stops. */
  readonly signal: AbortSignal;
}

export interface BinaryConsumeOptions extends BinaryCallOptions {
  /** Handlers running at once, and the subscription's prefetch (default 1, at most 1000). */
  readonly concurrency?: number;
  /** Lease of each message (default 30 000 ms); extended every `leaseMs / 3` while its handler runs. */
  readonly leaseMs?: number;
  readonly consumer?: string;
  /** Called with errors that do not stop consuming (a failed ack or extension, a lost subscription). */
  readonly onError?: (error: unknown, message?: Message) => void;
  /** Pause before subscribing again after the subscription failed (default 1000 ms). */
  readonly retryDelayMs?: number;
}

interface Queued<T> {
  readonly item: unknown;
  readonly resolve: (value: T) => void;
  readonly reject: (error: unknown) => void;
}

/** Turns what a stream call threw into a MailboxError (the signal's reason passes through). */
function toMailboxError(error: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted === true) return signal.reason;
  if (error instanceof MailboxError) return error;
  if (error instanceof StreamRemoteError) return mailboxErrorOf(error.remoteCode, error.message, error);
  if (error instanceof StreamError)
    return new MailboxHttpError(`binary API: ${error.message} (${error.code})`, 0, { cause: error });
  return error;
}

/** A batching queue: items pushed in one turn go out together (at most `max` per request). */
class Batcher<T> {
  #queue: Queued<T>[] = [];
  #scheduled = false;
  readonly #max: number;
  readonly #maxQueued: number;
  readonly #send: (items: unknown[]) => Promise<WireItemResult<unknown>[]>;
  readonly #map: (ok: unknown, item: unknown) => T;

  constructor(
    max: number,
    maxQueued: number,
    send: (items: unknown[]) => Promise<WireItemResult<unknown>[]>,
    map: (ok: unknown, item: unknown) => T,
  ) {
    this.#max = max;
    this.#maxQueued = maxQueued;
    this.#send = send;
    this.#map = map;
  }

  push(item: unknown): Promise<T> {
    if (this.#queue.length >= this.#maxQueued)
      return Promise.reject(
        new MailboxError(
          'MAILBOX_ERR_OVERLOADED',
          `maxQueued (${this.#maxQueued}) calls are waiting to be sent`,
        ),
      );
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // setImmediate, not a microtask: every call made in this turn of the event loop joins
        // the batch — the continuations of the previous batch's answers, and the acks of a
        // consumer iterating over a chunk of pushed messages (a `for await` loop runs each
        // iteration in its own microtask, so a microtask flush sent one ack per request). It
        // runs in this loop iteration's check phase: no timer, no added wait for I/O.
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#max);
      this.#send(batch.map((q) => q.item)).then(
        (results) => {
          batch.forEach((q, i) => {
            const r = results[i];
            if (r === undefined) q.reject(new MailboxHttpError('binary API: an answer is missing items', 0));
            else if ('ok' in r) q.resolve(this.#map(r.ok, q.item));
            else q.reject(mailboxErrorOf(r.error.code, r.error.message));
          });
        },
        (error: unknown) => {
          for (const q of batch) q.reject(error);
        },
      );
    }
  }
}

export class MailboxBinaryClient {
  /** `switchyard://host:port`. */
  readonly url: string;
  readonly #endpoint: string;
  readonly #stream: StreamClient;
  readonly #tags: Readonly<Record<string, string>>;
  readonly #sends: Batcher<Message>;
  readonly #acks: Batcher<void>;
  readonly #extends: Batcher<Message>;
  #closed = false;

  constructor(url: string, options: MailboxBinaryClientOptions = {}) {
    const u = parseUrlArg(url);
    if (u.protocol !== 'switchyard:' || u.hostname === '' || u.port === '')
      throw new MailboxInvalidArgumentError('url must be switchyard://host:port');
    this.url = `switchyard://${u.host}`;
    this.#endpoint = `tcp://${u.host}`;
    checkTokenArg(options.token);
    this.#tags = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` };
    const maxBatch = options.maxBatch ?? 1000;
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > 100_000)
      throw new MailboxInvalidArgumentError('maxBatch must be an integer from 1 to 100000');
    const maxQueued = options.maxQueued ?? 100_000;
    if (!Number.isInteger(maxQueued) || maxQueued < 1)
      throw new MailboxInvalidArgumentError('maxQueued must be a positive integer');
    const dialTimeoutMs = options.dialTimeoutMs ?? 10_000;
    if (!Number.isInteger(dialTimeoutMs) || dialTimeoutMs < 1)
      throw new MailboxInvalidArgumentError('dialTimeoutMs must be a positive integer');
    this.#stream = new StreamClient({ dialTimeoutMs, deadEndpointRetryMs: 100 });
    const revive = (ok: unknown): Message => fromWire(ok);
    // A send's answer leaves the body out: the message takes the body its item carried.
    this.#sends = new Batcher(
      maxBatch,
      maxQueued,
      (items) => this.#batch('send', 'messages', items),
      (ok, item) => fromWire(ok, (item as { body: Message['body'] }).body),
    );
    this.#acks = new Batcher<void>(
      maxBatch,
      maxQueued,
      (items) => this.#batch('ack', 'acks', items),
      () => undefined,
    );
    this.#extends = new Batcher(
      maxBatch,
      maxQueued,
      (items) => this.#batch('extend', 'items', items),
      revive,
    );
  }

  /** One request answered by one JSON frame. */
  async #call(body: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> {
    if (this.#closed) throw new MailboxError('MAILBOX_ERR_CLOSED', 'the client is closed');
    let answer: Uint8Array | undefined;
    try {
      // Read to the end rather than `return` at the first frame: the server ends the source
      // right after it, and leaving early would send a CANCEL for nothing.
      for await (const source of this.#stream.post(this.#endpoint, encodeJson(body), {
        tags: this.#tags,
        ...(signal === undefined ? {} : { signal }),
      }))
        for await (const frame of source.frames) answer ??= frame;
    } catch (error) {
      throw toMailboxError(error, signal);
    }
    if (answer === undefined) throw new MailboxHttpError('binary API: the server answered nothing', 0);
    return decodeJson(answer, 'the answer');
  }

  async #batch(op: string, field: string, items: unknown[]): Promise<WireItemResult<unknown>[]> {
    const r = (await this.#call({ op, [field]: items })) as { results?: WireItemResult<unknown>[] };
    if (!Array.isArray(r.results)) throw new MailboxHttpError('binary API: an answer without results', 0);
    return r.results;
  }

  /** Stores a message; resolves after the broker committed it (sends of one turn share a request). */
  send(m: BinarySendInput, options: BinaryCallOptions = {}): Promise<Message> {
    options.signal?.throwIfAborted();
    if (typeof m !== 'object' || m === null)
      return Promise.reject(new MailboxInvalidArgumentError('message must be an object'));
    let item: Record<string, unknown>;
    try {
      item = sendJson(m);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.#sends.push(item);
  }

  /** Sends many messages; each resolves (or fails) on its own, in order. */
  async sendMany(messages: readonly BinarySendInput[], options: BinaryCallOptions = {}): Promise<Message[]> {
    options.signal?.throwIfAborted();
    if (!Array.isArray(messages)) throw new MailboxInvalidArgumentError('messages must be an array');
    return Promise.all((messages as readonly BinarySendInput[]).map((m) => this.send(m)));
  }

  async fetch(receiver: string, options: BinaryFetchOptions = {}): Promise<Message | null> {
    const [m] = await this.fetchMany(receiver, { ...options, max: 1 });
    return m ?? null;
  }

  async fetchMany(receiver: string, options: BinaryFetchOptions & { max: number }): Promise<Message[]> {
    const body: Record<string, unknown> = { op: 'fetch', receiver, max: options.max };
    if (options.leaseMs !== undefined) body.leaseMs = options.leaseMs;
    if (options.waitMs !== undefined) body.waitMs = options.waitMs;
    if (options.consumer !== undefined) body.consumer = options.consumer;
    const r = (await this.#call(body, options.signal)) as { messages: unknown[] };
    return r.messages.map((m) => fromWire(m));
  }

  /** Confirms (1) or rejects (2) the message under lease `lid`; acks of one turn share a request. */
  ack(mid: string, lid: string, status: 1 | 2, options: BinaryCallOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    return this.#acks.push({ mid, lid, status });
  }

  extend(mid: string, lid: string, leaseMs: number, options: BinaryCallOptions = {}): Promise<Message> {
    options.signal?.throwIfAborted();
    return this.#extends.push({ mid, lid, leaseMs });
  }

  /**
   * A push subscription to `receiver`: leased messages as they come due, at most `prefetch`
   * unacknowledged at once. Ack or reject each (`ack`); one not acked comes back to the
   * mailbox when its lease runs out. `break` (or the signal) ends the subscription.
   */
  async *subscribe(
    receiver: string,
    options: SubscribeOptions = {},
  ): AsyncGenerator<Message, void, undefined> {
    const body: Record<string, unknown> = { op: 'subscribe', receiver, prefetch: options.prefetch ?? 100 };
    if (options.leaseMs !== undefined) body.leaseMs = options.leaseMs;
    if (options.consumer !== undefined) body.consumer = options.consumer;
    if (this.#closed) throw new MailboxError('MAILBOX_ERR_CLOSED', 'the client is closed');
    const signal = options.signal;
    try {
      for await (const source of this.#stream.post(this.#endpoint, encodeJson(body), {
        tags: this.#tags,
        ...(signal === undefined ? {} : { signal }),
      })) {
        for await (const batch of source.frames.batches())
          for (const frame of batch) yield fromWire(decodeJson(frame, 'a pushed message'));
        return;
      }
    } catch (error) {
      throw toMailboxError(error, signal);
    }
  }

  /**
   * Consumes `receiver` until `options.signal` aborts, through a push subscription with
   * `prefetch = concurrency`: each message runs `handler` while its lease is extended, then is
   * confirmed (the handler resolved) or rejected (it threw). Resolves once the subscription
   * ended and in-flight handlers finished.
   */
  async consume(
    receiver: string,
    handler: (message: Message, context: BinaryConsumeContext) => unknown,
    options: BinaryConsumeOptions = {},
  ): Promise<void> {
    const { concurrency, leaseMs, retryDelayMs, stop, report } = consumeSetup(receiver, handler, options);
    const running = new Set<Promise<void>>();
    let slotFreed: (() => void) | undefined;

    const runOne = (m: Message): Promise<void> => runLeased(this, m, handler, stop, leaseMs, report);

    while (!stop.aborted && !this.#closed) {
      try {
        for await (const m of this.subscribe(receiver, {
          leaseMs,
          prefetch: concurrency,
          signal: stop,
          ...(options.consumer === undefined ? {} : { consumer: options.consumer }),
        })) {
          const p = runOne(m).finally(() => {
            running.delete(p);
            const f = slotFreed;
            slotFreed = undefined;
            f?.();
          });
          running.add(p);
          // The server pushes at most `concurrency` ahead; wait for a slot before taking the next.
          while (running.size >= concurrency && !stop.aborted)
            await new Promise<void>((resolve) => (slotFreed = resolve));
        }
      } catch (error) {
        if (stop.aborted) break;
        report(error);
      }
      if (stop.aborted || this.#closed) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, retryDelayMs);
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        stop.addEventListener('abort', done, { once: true });
      });
    }
    await Promise.all([...running]);
  }

  /** Cancels open calls and subscriptions and closes the connection; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stream.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function sendJson(m: BinarySendInput): Record<string, unknown> {
  const out: Record<string, unknown> = { sender: m.sender, receiver: m.receiver, body: m.body };
  if (m.delayMs !== undefined) out.delayMs = m.delayMs;
  if (m.clientTime !== undefined) {
    if (!(m.clientTime instanceof Date)) throw new MailboxInvalidArgumentError('clientTime must be a Date');
    out.clientTime = m.clientTime.getTime();
  }
  return out;
}
