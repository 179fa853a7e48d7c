import { abortableSleep } from './abortable-sleep.js';
import { ShmError, ShmInvalidArgumentError, ShmTimeoutError } from './errors.js';
import { resolvePubSubConfig, type PubSubConfig, type ResolvedPubSubConfig } from './options.js';
import { Loan, Publisher, type PublisherStats } from './pubsub-publisher.js';
import { Subscriber, type RecvOptions, type RecvSyncOptions, type Sample } from './pubsub-subscriber.js';

/** Options of `ShmChannel.listen` and `connect` beyond the spec's three arguments. */
export interface ChannelOptions {
  signal?: AbortSignal;
  /** Subscriber options of the receiving side. */
  wait?: RecvOptions['wait'];
  spinMicros?: number;
}

/**
 * A bidirectional channel: two pub/sub regions, `{name}-srv` (written by the server) and
 * `{name}-cli` (written by the client). Each endpoint publishes on its own region and
 * subscribes to the other's; after construction both have the same capabilities.
 */
export class ShmChannel {
  readonly name: string;
  readonly role: 'server' | 'client';
  readonly #publisher: Publisher;
  readonly #subscriber: Subscriber;
  #closed = false;

  private constructor(name: string, role: 'server' | 'client', publisher: Publisher, subscriber: Subscriber) {
    this.name = name;
    this.role = role;
    this.#publisher = publisher;
    this.#subscriber = subscriber;
  }

  /**
   * The server side: creates `{name}-srv` at once, then waits up to `timeoutMs` (default
   * 30 s) for a client to create `{name}-cli`. Rejects with `SHM_ERR_TIMEOUT`.
   */
  static async listen(
    name: string,
    config?: PubSubConfig,
    timeoutMs = 30_000,
    options: ChannelOptions = {},
  ): Promise<ShmChannel> {
    return ShmChannel.#open(name, 'server', config, timeoutMs, options);
  }

  /**
   * The client side: creates `{name}-cli` at once, then opens the server's `{name}-srv`,
   * retrying for up to `timeoutMs` (default 5 s) if the server has not started yet.
   */
  static async connect(
    name: string,
    config?: PubSubConfig,
    timeoutMs = 5_000,
    options: ChannelOptions = {},
  ): Promise<ShmChannel> {
    return ShmChannel.#open(name, 'client', config, timeoutMs, options);
  }

  static async #open(
    name: string,
    role: 'server' | 'client',
    config: PubSubConfig | undefined,
    timeoutMs: number,
    options: ChannelOptions,
  ): Promise<ShmChannel> {
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
      throw new ShmInvalidArgumentError(`timeoutMs must be a non-negative integer, got ${timeoutMs}`);
    }
    const { signal } = options;
    signal?.throwIfAborted();
    const resolved: ResolvedPubSubConfig = resolvePubSubConfig(config);
    const mine = role === 'server' ? `${name}-srv` : `${name}-cli`;
    const theirs = role === 'server' ? `${name}-cli` : `${name}-srv`;
    const publisher = Publisher.create(mine, resolved);
    try {
      const subscriber = await openWhenLive(theirs, resolved, timeoutMs, options);
      return new ShmChannel(name, role, publisher, subscriber);
    } catch (error) {
      publisher.close();
      throw error;
    }
  }

  /** Copies `data` into a block and sends it to the other endpoint. */
  send(data: Uint8Array): void {
    this.#publisher.send(data);
  }

  /** A block to write in place; `publish(length)` sends it. */
  loan(): Loan {
    return this.#publisher.loan();
  }

  tryRecv(): Sample | null {
    return this.#subscriber.tryRecv();
  }

  recv(options?: RecvOptions): Promise<Sample> {
    return this.#subscriber.recv(options);
  }

  recvSync(options?: RecvSyncOptions): Sample {
    return this.#subscriber.recvSync(options);
  }

  /** True when `send` would not throw `SHM_ERR_POOL_EXHAUSTED`/`SHM_ERR_WOULD_BLOCK` now. */
  get isWritable(): boolean {
    return this.#publisher.isWritable;
  }

  writable(options?: { signal?: AbortSignal }): Promise<void> {
    return this.#publisher.writable(options);
  }

  get stats(): PublisherStats {
    return this.#publisher.stats;
  }

  /** Messages the receiving side missed (overwritten before they were read). */
  get missed(): number {
    return this.#subscriber.missed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Closes the sending side only (half-close): the peer reads what was sent, then gets
   * `SHM_ERR_CLOSED`; this side can still receive. Idempotent.
   */
  end(): void {
    this.#publisher.close();
  }

  /** Closes both regions' ends: the peer drains what was sent, then gets `SHM_ERR_CLOSED`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#publisher.close();
    this.#subscriber.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/** Opens region `name` once a live publisher has it, polling (1–20 ms) until `timeoutMs`. */
async function openWhenLive(
  name: string,
  config: ResolvedPubSubConfig,
  timeoutMs: number,
  options: ChannelOptions,
): Promise<Subscriber> {
  const deadline = Date.now() + timeoutMs;
  const { signal } = options;
  let delay = 1;
  let last: unknown;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const subscriber = Subscriber.tryOpen(name, {
        dir: config.dir,
        from: 'oldest',
        ...(options.wait === undefined ? {} : { wait: options.wait }),
        ...(options.spinMicros === undefined ? {} : { spinMicros: options.spinMicros }),
      });
      // A region left by a dead or closed peer is not a peer: wait for a new one.
      if (subscriber.publisherAlive) return subscriber;
      subscriber.close();
    } catch (error) {
      if (!(error instanceof ShmError) || !['SHM_ERR_SYSTEM', 'SHM_ERR_NOT_READY'].includes(error.code))
        throw error;
      last = error;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new ShmTimeoutError(`no live peer created region ${name} within ${timeoutMs} ms`, {
        cause: last,
      });
    }
    await abortableSleep(Math.min(delay, left), signal);
    delay = Math.min(20, delay * 2);
  }
}
