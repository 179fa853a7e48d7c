/**
 * `MailboxBinaryServer`: the broker's binary API on `@switchyard/stream` (see protocol.ts).
 *
 * Sends of one request are queued together, so they ride the same group commit; each item
 * answers after its transaction committed. A subscription is a push consumer: the server
 * leases up to `prefetch` messages for it (long-polling the broker while it has room) and
 * streams them as frames; acks and rejects of those messages — on any request of the same
 * connection — give the room back, and so does a lease that runs out unacknowledged. A
 * consumer that stops reading stops the generator at its next frame (stream credit), and with
 * `prefetch` leased and unacknowledged the server leases nothing more: what is in flight is
 * bounded by the consumer's credit both ways. A closed connection ends its subscriptions; what
 * they held comes back when the leases run out (at-least-once).
 */
import { channel } from 'node:diagnostics_channel';
import { StreamServer } from '@switchyard/stream';
import type { Request, SourceInit } from '@switchyard/stream';
import type { Broker, SendInput } from '../broker.js';
import { MailboxClosedError, MailboxError, MailboxInvalidArgumentError } from '../errors.js';
import { TokenTable, isLoopback, requireMailbox, requireScope } from '../http/auth.js';
import type { Principal, TokenSpec } from '../http/auth.js';
import type { Message } from '../message.js';
import {
  DEFAULT_BINARY_PORT,
  decodeJson,
  encodeJson,
  encodeMessage,
  itemError,
  wireMessage,
} from './protocol.js';
import type { WireAck, WireExtend, WireItemResult, WireSend } from './protocol.js';

export interface MailboxBinaryServerOptions {
  /** Interface to bind (default 127.0.0.1). */
  readonly host?: string;
  /** TCP port (default 7421; 0 picks one). */
  readonly port?: number;
  /** Bearer tokens, as for the HTTP server. */
  readonly tokens?: readonly (TokenSpec | string)[];
  /** Require a token (default: on unless `host` is loopback). */
  readonly auth?: boolean;
  /** Most items in one send / ack / extend request (default 1000). */
  readonly maxBatch?: number;
  /** Most messages one subscription may hold leased and unacknowledged (default 1000). */
  readonly maxPrefetch?: number;
  /** Open subscriptions on the server (default 10 000). */
  readonly maxSubscriptions?: number;
  /** How long one broker long poll of a subscription lasts before it polls again (default 5 000 ms). */
  readonly pollWaitMs?: number;
}

export const DEFAULT_BINARY_SERVER_OPTIONS = Object.freeze({
  host: '127.0.0.1',
  port: DEFAULT_BINARY_PORT,
  maxBatch: 1000,
  maxPrefetch: 1000,
  maxSubscriptions: 10_000,
  pollWaitMs: 5000,
});

const subscribeChannel = channel('switchyard:mailbox:subscribe');

function intOption(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw new MailboxInvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
  return value;
}

/** A subscription's leased, unacknowledged messages and a way to wait for room. */
class Subscription {
  readonly id: number;
  readonly receiver: string;
  readonly prefetch: number;
  /** mid → lease end (ms since the epoch). */
  readonly held = new Map<string, number>();
  #wake: (() => void) | undefined;
  /** No held lease ends before this (ms since the epoch). */
  #nextExpiry = Infinity;
  pushed = 0;

  readonly #step: number;

  readonly #onExpired: (mid: string) => void;

  constructor(id: number, receiver: string, prefetch: number, onExpired: (mid: string) => void) {
    this.#onExpired = onExpired;
    this.id = id;
    this.receiver = receiver;
    this.prefetch = prefetch;
    this.#step = Math.max(1, Math.floor(prefetch / 4));
  }

  release(mid: string): void {
    if (this.held.delete(mid)) this.wake();
  }

  wake(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Records that this subscription holds `mid` until `until` (ms since the epoch). */
  hold(mid: string, until: number): void {
    this.held.set(mid, until);
    if (until < this.#nextExpiry) this.#nextExpiry = until;
  }

  /** Forgets leases that ran out; resolves when room appears, the earliest lease ends or the signal aborts. */
  async room(signal: AbortSignal): Promise<number> {
    for (;;) {
      const now = Date.now();
      // The held leases are scanned only once the earliest of them may have run out (not on
      // every ack): `#nextExpiry` is a lower bound of the lease ends.
      if (now >= this.#nextExpiry) {
        let earliest = Infinity;
        for (const [mid, until] of this.held)
          if (until <= now) {
            this.held.delete(mid);
            this.#onExpired(mid);
          } else if (until < earliest) earliest = until;
        this.#nextExpiry = earliest;
      }
      const earliest = this.#nextExpiry;
      const room = this.prefetch - this.held.size;
      // Refill in steps of a quarter of the credit (at least one): under load one claim then
      // leases many messages instead of one per ack, and the consumer still holds at least
      // three quarters of its credit meanwhile.
      if (room >= this.#step || (room > 0 && this.held.size === 0) || signal.aborted) return room;
      await new Promise<void>((resolve) => {
        // Held leases always end (a finite time); the guard keeps an Infinity from becoming 1 ms.
        const t = Number.isFinite(earliest) ? setTimeout(done, earliest - now + 1) : undefined;
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        this.#wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}

export class MailboxBinaryServer {
  readonly #broker: Broker;
  readonly #stream = new StreamServer({ keepaliveIntervalMs: 10_000 });
  readonly #host: string;
  readonly #port: number;
  readonly #tokens: TokenTable;
  readonly #auth: boolean;
  readonly #maxBatch: number;
  readonly #maxPrefetch: number;
  readonly #maxSubscriptions: number;
  readonly #pollWaitMs: number;
  /** mid → the subscription holding its lease (the way an ack returns credit). */
  readonly #holders = new Map<string, Subscription>();
  readonly #subscriptions = new Set<Subscription>();
  #nextId = 1;
  #closing: Promise<void> | undefined;
  readonly #closed = new AbortController();
  #address: string | undefined;

  constructor(broker: Broker, options: MailboxBinaryServerOptions = {}) {
    if (typeof options !== 'object' || options === null)
      throw new MailboxInvalidArgumentError('options must be an object');
    this.#broker = broker;
    const d = DEFAULT_BINARY_SERVER_OPTIONS;
    this.#host = options.host ?? d.host;
    if (typeof this.#host !== 'string' || this.#host.length === 0)
      throw new MailboxInvalidArgumentError('host must be a non-empty string');
    this.#port = intOption('port', options.port, d.port, 0, 65535);
    this.#maxBatch = intOption('maxBatch', options.maxBatch, d.maxBatch, 1, 100_000);
    this.#maxPrefetch = intOption('maxPrefetch', options.maxPrefetch, d.maxPrefetch, 1, 100_000);
    this.#maxSubscriptions = intOption(
      'maxSubscriptions',
      options.maxSubscriptions,
      d.maxSubscriptions,
      1,
      1_000_000,
    );
    this.#pollWaitMs = intOption('pollWaitMs', options.pollWaitMs, d.pollWaitMs, 1, 60_000);
    this.#tokens = new TokenTable(
      (options.tokens ?? []).map((t) => (typeof t === 'string' ? { token: t } : t)),
    );
    this.#auth = options.auth ?? !isLoopback(this.#host);
    if (this.#auth && this.#tokens.size === 0)
      throw new MailboxInvalidArgumentError(
        'auth is on but no tokens are configured (give tokens, or auth: false on a loopback host)',
      );
  }

  /** Starts listening; resolves to the `switchyard://host:port` address clients use. */
  async listen(options: { signal?: AbortSignal } = {}): Promise<string> {
    await this.#stream.listen(
      `tcp://${this.#host}:${this.#port}`,
      (request) => this.#serve(request),
      options.signal === undefined ? {} : { signal: options.signal },
    );
    const bound = this.#stream.address ?? '';
    this.#address = bound.replace(/^tcp:\/\//, 'switchyard://');
    return this.#address;
  }

  /** `switchyard://host:port` once listening. */
  get address(): string | undefined {
    return this.#address;
  }

  /** Open client connections. */
  get connections(): number {
    return this.#stream.connections;
  }

  /** Open subscriptions and the messages they hold leased. */
  get subscriptions(): { count: number; held: number; pushed: number } {
    let held = 0;
    let pushed = 0;
    for (const s of this.#subscriptions) {
      held += s.held.size;
      pushed += s.pushed;
    }
    return { count: this.#subscriptions.size, held, pushed };
  }

  #principal(request: Request): Principal | null {
    if (!this.#auth) return null;
    return this.#tokens.authenticate(request.tags.get('authorization'));
  }

  async *#serve(request: Request): AsyncIterable<SourceInit> {
    if (this.#closing !== undefined) throw new MailboxClosedError('the server is closing');
    const principal = this.#principal(request);
    const req = decodeJson(request.body, 'the request body') as Record<string, unknown> | null;
    if (typeof req !== 'object' || req === null || typeof req.op !== 'string')
      throw new MailboxInvalidArgumentError('the request must be a JSON object with an op');
    switch (req.op) {
      case 'send':
        yield this.#answer(await this.#send(principal, this.#items(req.messages, 'messages')));
        return;
      case 'ack':
        yield this.#answer(await this.#ack(principal, this.#items(req.acks, 'acks')));
        return;
      case 'extend':
        yield this.#answer(await this.#extend(principal, this.#items(req.items, 'items')));
        return;
      case 'fetch': {
        requireScope(principal, 'receive');
        const receiver = String(req.receiver);
        requireMailbox(principal, receiver);
        const messages = await this.#broker.fetchMany(receiver, {
          max: req.max as number,
          ...(req.leaseMs === undefined ? {} : { leaseMs: req.leaseMs as number }),
          ...(req.waitMs === undefined ? {} : { waitMs: req.waitMs as number }),
          ...(typeof req.consumer === 'string' ? { consumer: req.consumer } : {}),
          signal: request.signal,
        });
        yield this.#answer({ messages: messages.map((m) => wireMessage(m)) });
        return;
      }
      case 'subscribe':
        yield this.#subscribe(principal, req, AbortSignal.any([request.signal, this.#closed.signal]));
        return;
      default:
        throw new MailboxInvalidArgumentError(`unknown op ${JSON.stringify(String(req.op).slice(0, 40))}`);
    }
  }

  #answer(value: unknown): SourceInit {
    return { frames: [encodeJson(value)] };
  }

  #items(value: unknown, name: string): unknown[] {
    if (!Array.isArray(value) || value.length === 0 || value.length > this.#maxBatch)
      throw new MailboxInvalidArgumentError(`${name} must be an array of 1 to ${this.#maxBatch} items`);
    return value;
  }

  async #send(
    principal: Principal | null,
    items: unknown[],
  ): Promise<{ results: WireItemResult<unknown[]>[] }> {
    requireScope(principal, 'send');
    const settled = await Promise.allSettled(
      items.map((raw) => {
        const w = raw as WireSend;
        if (typeof w !== 'object' || w === null)
          return Promise.reject(new MailboxInvalidArgumentError('message must be an object'));
        if (typeof w.receiver === 'string') requireMailbox(principal, w.receiver);
        // One object shape for every send (no spreads: a send item is the hot path).
        const input: { -readonly [K in keyof SendInput]: SendInput[K] } = {
          sender: w.sender,
          receiver: w.receiver,
          body: w.body as SendInput['body'],
        };
        if (w.delayMs !== undefined) input.delayMs = w.delayMs;
        if (w.clientTime !== undefined) input.clientTime = new Date(w.clientTime);
        return this.#broker.send(input);
      }),
    );
    return {
      // The sender has the body: answers leave it out (the client puts it back), which halves
      // what a send costs to encode and decode.
      results: settled.map((s) => {
        return s.status === 'fulfilled'
          ? { ok: wireMessage(s.value, false) }
          : { error: itemError(s.reason) };
      }),
    };
  }

  /**
   * A token limited to mailboxes may ack or extend only a message in one of them. An unknown
   * mid passes: the broker's own call then answers not-found. Callers test the principal first,
   * so an unrestricted token costs no extra await on the ack path.
   */
  async #requireMessageMailbox(principal: Principal, mid: string): Promise<void> {
    const m = await this.#broker.get(mid);
    if (m !== null) requireMailbox(principal, m.mailbox);
  }

  async #ack(principal: Principal | null, items: unknown[]): Promise<{ results: WireItemResult<null>[] }> {
    requireScope(principal, 'receive');
    const settled = await Promise.allSettled(
      items.map((raw) => {
        const a = raw as WireAck;
        if (typeof a !== 'object' || a === null)
          return Promise.reject(new MailboxInvalidArgumentError('ack must be an object'));
        // An unrestricted token (the common case) goes straight to the broker: no extra await.
        if (principal !== null && !principal.everyMailbox)
          return this.#requireMessageMailbox(principal, a.mid).then(() =>
            this.#broker.ack(a.mid, a.lid, a.status),
          );
        return this.#broker.ack(a.mid, a.lid, a.status);
      }),
    );
    return {
      results: settled.map((s, i) => {
        if (
          s.status === 'fulfilled' ||
          (s.reason instanceof MailboxError && s.reason.code === 'MAILBOX_ERR_LEASE_INVALID')
        ) {
          // Confirmed, rejected, or no longer this lease: the subscription's room comes back.
          const mid = (items[i] as WireAck | null)?.mid;
          if (typeof mid === 'string') this.#release(mid);
        }
        return s.status === 'fulfilled' ? { ok: null } : { error: itemError(s.reason) };
      }),
    };
  }

  async #extend(
    principal: Principal | null,
    items: unknown[],
  ): Promise<{ results: WireItemResult<unknown[]>[] }> {
    requireScope(principal, 'receive');
    const settled = await Promise.allSettled(
      items.map(async (raw) => {
        const e = raw as WireExtend;
        if (typeof e !== 'object' || e === null)
          throw new MailboxInvalidArgumentError('item must be an object');
        if (principal !== null && !principal.everyMailbox)
          await this.#requireMessageMailbox(principal, e.mid);
        const m = await this.#broker.extend(e.mid, e.lid, e.leaseMs);
        const holder = this.#holders.get(e.mid);
        if (holder !== undefined && m.leasedUntil !== null && holder.held.has(e.mid))
          holder.hold(e.mid, m.leasedUntil.getTime());
        return m;
      }),
    );
    return {
      results: settled.map((s) =>
        s.status === 'fulfilled' ? { ok: wireMessage(s.value) } : { error: itemError(s.reason) },
      ),
    };
  }

  #release(mid: string): void {
    const sub = this.#holders.get(mid);
    if (sub === undefined) return;
    this.#holders.delete(mid);
    sub.release(mid);
  }

  #subscribe(principal: Principal | null, req: Record<string, unknown>, signal: AbortSignal): SourceInit {
    requireScope(principal, 'receive');
    if (typeof req.receiver !== 'string') throw new MailboxInvalidArgumentError('receiver must be a string');
    const receiver = req.receiver;
    requireMailbox(principal, receiver);
    const prefetch = intOption('prefetch', req.prefetch, 100, 1, this.#maxPrefetch);
    const leaseMs = req.leaseMs === undefined ? undefined : (req.leaseMs as number);
    const consumer = typeof req.consumer === 'string' ? req.consumer : undefined;
    if (this.#subscriptions.size >= this.#maxSubscriptions)
      throw new MailboxError(
        'MAILBOX_ERR_OVERLOADED',
        `maxSubscriptions (${this.#maxSubscriptions}) are open`,
      );
    // A lease that ran out is no longer this subscription's: forget who held it (bounded map).
    const sub: Subscription = new Subscription(this.#nextId++, receiver, prefetch, (mid) => {
      if (this.#holders.get(mid) === sub) this.#holders.delete(mid);
    });
    // The stream calls `return()` on cancel while the generator may be parked in a long poll;
    // an async generator would queue that return behind the await, so `return()` aborts the
    // poll first.
    const cancel = new AbortController();
    const gen = this.#push(sub, leaseMs, consumer, AbortSignal.any([signal, cancel.signal]));
    const frames: AsyncIterableIterator<Uint8Array> = {
      next: () => gen.next(),
      return: (value?: unknown) => {
        cancel.abort(new MailboxClosedError('the subscription was cancelled'));
        return gen.return(value);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return { header: encodeJson({ subscription: sub.id, prefetch }), frames };
  }

  async *#push(
    sub: Subscription,
    leaseMs: number | undefined,
    consumer: string | undefined,
    signal: AbortSignal,
  ): AsyncGenerator<Uint8Array> {
    // One long poll for the subscription's life: after a claim that drained the mailbox it waits
    // for the next send, whose batch then carries its claim (one transaction a message, not a
    // send and then a claim: on PostgreSQL each is a round trip).
    const poll = this.#broker.openPoll(sub.receiver);
    this.#subscriptions.add(sub);
    if (subscribeChannel.hasSubscribers)
      subscribeChannel.publish({ event: 'open', receiver: sub.receiver, id: sub.id });
    try {
      while (!signal.aborted && this.#closing === undefined) {
        const room = await sub.room(signal);
        if (room <= 0) continue;
        let messages: Message[];
        try {
          messages = await poll.fetch({
            max: room,
            waitMs: this.#pollWaitMs,
            signal,
            ...(leaseMs === undefined ? {} : { leaseMs }),
            ...(consumer === undefined ? {} : { consumer }),
          });
        } catch (error) {
          if (signal.aborted || this.#closing !== undefined) return;
          throw error;
        }
        for (const m of messages) {
          sub.hold(m.mid, m.leasedUntil?.getTime() ?? Infinity);
          this.#holders.set(m.mid, sub);
        }
        // Each message is its own frame: stream credit counts messages. A consumer that stops
        // reading leaves the generator parked here; the leases it holds run out and come back.
        for (const m of messages) {
          sub.pushed++;
          yield encodeMessage(m);
        }
      }
    } finally {
      poll.close();
      this.#subscriptions.delete(sub);
      for (const mid of sub.held.keys()) if (this.#holders.get(mid) === sub) this.#holders.delete(mid);
      if (subscribeChannel.hasSubscribers)
        subscribeChannel.publish({ event: 'close', receiver: sub.receiver, id: sub.id, pushed: sub.pushed });
    }
  }

  /** Stops taking requests, ends subscriptions and closes connections (the broker stays open). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed.abort(new MailboxClosedError('the server closed'));
      await this.#stream.close();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
