/**
 * The shm duplex as a `@switchyard/wire` `Transport`: a byte stream over an `ShmChannel`
 * whose regions never drop data (`slowSubscriber: 'block'`). Writes are copied into loaned
 * blocks, coalescing every queued batch into as few blocks as fit; a block is delivered to
 * the sink in place (a view into shared memory, valid during the `data` call) and released
 * after it. Where the native addon cannot load, `listenShmTransport`/`connectShmTransport`
 * fall back to a Unix socket with the same framing (the codec's, on top).
 */
import { once } from 'node:events';
import { unlinkSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { socketTransport, type Transport, type TransportSink } from '@switchyard/wire';
import { ShmClosedError, ShmError, ShmInvalidArgumentError, ShmTimeoutError } from './errors.js';
import { isSupported } from './native.js';
import type { PubSubConfig } from './options.js';
import { regionPath } from './pubsub-format.js';
import { ShmChannel } from './pubsub-channel.js';
import type { Sample } from './pubsub-subscriber.js';

interface Batch {
  readonly chunks: readonly Uint8Array[];
  readonly done: (error?: Error | null) => void;
  index: number;
  offset: number;
}

/** One end of the shm duplex, over a connected `ShmChannel` (which it owns from `start`). */
export class ShmTransport implements Transport {
  readonly remoteAddress: string;
  readonly localAddress: string;
  readonly #channel: ShmChannel;
  #sink: TransportSink | undefined;
  readonly #queue: Batch[] = [];
  #held: Sample | undefined;
  #paused = false;
  #reading = false;
  #waitingWritable = false;
  #ending = false;
  #ended = false;
  #peerEnded = false;
  #closed = false;
  readonly #abort = new AbortController();

  constructor(channel: ShmChannel) {
    this.#channel = channel;
    const other = channel.role === 'server' ? 'cli' : 'srv';
    const mine = channel.role === 'server' ? 'srv' : 'cli';
    this.localAddress = `shm:${channel.name}-${mine}`;
    this.remoteAddress = `shm:${channel.name}-${other}`;
  }

  /** The channel underneath (for its stats). */
  get channel(): ShmChannel {
    return this.#channel;
  }

  start(sink: TransportSink): void {
    this.#sink = sink;
    void this.#read();
  }

  /** Delivers blocks until paused, closed or the peer ends; awaits only when nothing is there. */
  async #read(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      while (!this.#paused && !this.#closed && !this.#peerEnded) {
        let sample = this.#held;
        this.#held = undefined;
        if (sample === undefined) {
          try {
            sample = this.#channel.tryRecv() ?? (await this.#channel.recv({ signal: this.#abort.signal }));
          } catch (error) {
            this.#readFailed(error);
            return;
          }
        }
        if (this.#closed) {
          sample.release();
          return;
        }
        if (this.#paused) {
          // Paused while waiting: keep it for resume().
          this.#held = sample;
          return;
        }
        try {
          this.#sink?.data(sample.bytes);
        } finally {
          sample.release();
        }
      }
    } finally {
      this.#reading = false;
    }
  }

  #readFailed(error: unknown): void {
    if (this.#closed) return;
    if (error instanceof ShmClosedError) {
      // The peer closed its sending side and everything it sent was read: end of stream.
      this.#peerEnded = true;
      this.#sink?.end();
      this.#maybeClose();
      return;
    }
    this.#close(error instanceof Error ? error : new Error(String(error)));
  }

  write(chunks: readonly Uint8Array[], done: (error?: Error | null) => void): void {
    if (this.#closed || this.#ending) {
      queueMicrotask(() => done(new ShmClosedError('write after end or close')));
      return;
    }
    this.#queue.push({ chunks, done, index: 0, offset: 0 });
    this.#pump();
  }

  /** Copies queued batches into blocks while the region has room; waits for room otherwise. */
  #pump(): void {
    const channel = this.#channel;
    while (this.#queue.length > 0 && !this.#closed) {
      if (!channel.isWritable) {
        this.#waitWritable();
        return;
      }
      let loan;
      try {
        loan = channel.loan();
      } catch (error) {
        if (
          error instanceof ShmError &&
          (error.code === 'SHM_ERR_WOULD_BLOCK' || error.code === 'SHM_ERR_POOL_EXHAUSTED')
        ) {
          // A subscriber took the block we counted on: try again after a timer, not in a
          // microtask loop.
          this.#waitWritable(1);
          return;
        }
        this.#close(error as Error);
        return;
      }
      const block = loan.bytes;
      let used = 0;
      const finished: Batch[] = [];
      while (used < block.length && this.#queue.length > 0) {
        const batch = this.#queue[0] as Batch;
        const chunk = batch.chunks[batch.index];
        if (chunk === undefined) {
          this.#queue.shift();
          finished.push(batch);
          continue;
        }
        const n = Math.min(chunk.length - batch.offset, block.length - used);
        block.set(n === chunk.length ? chunk : chunk.subarray(batch.offset, batch.offset + n), used);
        used += n;
        batch.offset += n;
        if (batch.offset === chunk.length) {
          batch.index++;
          batch.offset = 0;
        }
      }
      // A batch whose last chunk just filled the block is finished too.
      const head = this.#queue[0];
      if (head !== undefined && head.index === head.chunks.length) {
        this.#queue.shift();
        finished.push(head);
      }
      if (used === 0) loan.discard();
      else {
        try {
          loan.publish(used);
        } catch (error) {
          this.#close(error as Error);
          return;
        }
      }
      for (const batch of finished) batch.done();
    }
    if (this.#queue.length === 0 && this.#ending && !this.#ended) {
      this.#ended = true;
      this.#channel.end();
      this.#maybeClose();
    }
  }

  #waitWritable(delayMs = 0): void {
    if (this.#waitingWritable) return;
    this.#waitingWritable = true;
    const signal = this.#abort.signal;
    const ready =
      delayMs > 0
        ? sleep(delayMs, undefined, { signal }).then(() => this.#channel.writable({ signal }))
        : this.#channel.writable({ signal });
    ready.then(
      () => {
        this.#waitingWritable = false;
        this.#pump();
      },
      (error: unknown) => {
        this.#waitingWritable = false;
        if (!this.#closed) this.#close(error as Error);
      },
    );
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#sink !== undefined) void this.#read();
  }

  end(): void {
    if (this.#ending || this.#closed) return;
    this.#ending = true;
    this.#pump();
  }

  #maybeClose(): void {
    if (this.#ended && this.#peerEnded) this.#close(undefined);
  }

  #close(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort(new ShmClosedError('the transport closed'));
    this.#held?.release();
    this.#held = undefined;
    this.#channel.close();
    for (const batch of this.#queue.splice(0))
      batch.done(error ?? new ShmClosedError('the transport closed'));
    const sink = this.#sink;
    if (sink !== undefined) queueMicrotask(() => sink.closed(error));
  }

  destroy(error?: Error): void {
    this.#close(error);
  }
}

/** Options of `listenShmTransport` and `connectShmTransport`. */
export interface ShmTransportOptions {
  /** Region configuration; `slowSubscriber` is always `'block'` (a byte stream loses nothing). */
  config?: Omit<PubSubConfig, 'slowSubscriber'>;
  /** How long to wait for the other side. Default 30 s (listen), 5 s (connect). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * `'auto'` (default): a Unix socket only where the addon cannot load; `'always'`: a Unix
   * socket (tests, or to compare); `'never'`: throw `SHM_ERR_UNSUPPORTED` instead.
   */
  fallback?: 'auto' | 'always' | 'never';
  /** Directory of the fallback's socket file. Default `os.tmpdir()`. */
  socketDir?: string;
}

function useSocket(options: ShmTransportOptions): boolean {
  const fallback = options.fallback ?? 'auto';
  if (!['auto', 'always', 'never'].includes(fallback)) {
    throw new ShmInvalidArgumentError('option "fallback" must be "auto", "always" or "never"');
  }
  return fallback === 'always' || (fallback === 'auto' && !isSupported());
}

function socketPath(name: string, options: ShmTransportOptions): string {
  return regionPath(options.socketDir ?? tmpdir(), name) + '.sock';
}

/**
 * The server end of a duplex named `name`: an `ShmTransport` once a client connected, or
 * (fallback) a Unix socket transport on `{socketDir}/switchyard-ps-{name}.sock`.
 */
export async function listenShmTransport(
  name: string,
  options: ShmTransportOptions = {},
): Promise<Transport> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (useSocket(options)) {
    const path = socketPath(name, options);
    try {
      unlinkSync(path);
    } catch {
      // No stale socket.
    }
    const server = createServer();
    server.listen(path);
    await once(server, 'listening');
    try {
      const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
      const [socket] = (await once(server, 'connection', { signal: AbortSignal.any(signals) }).catch(
        (error: unknown) => {
          options.signal?.throwIfAborted();
          throw new ShmTimeoutError(`no client connected to ${path} within ${timeoutMs} ms`, {
            cause: error,
          });
        },
      )) as [Socket];
      return socketTransport(socket);
    } finally {
      server.close();
    }
  }
  const channel = await ShmChannel.listen(name, { ...options.config, slowSubscriber: 'block' }, timeoutMs, {
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return new ShmTransport(channel);
}

/** The client end of a duplex named `name` (see `listenShmTransport`). */
export async function connectShmTransport(
  name: string,
  options: ShmTransportOptions = {},
): Promise<Transport> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  if (useSocket(options)) {
    const path = socketPath(name, options);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      options.signal?.throwIfAborted();
      const socket = createConnection({ path });
      try {
        await once(socket, 'connect');
        return socketTransport(socket);
      } catch (error) {
        socket.destroy();
        if (Date.now() >= deadline) {
          throw new ShmTimeoutError(`no server listened on ${path} within ${timeoutMs} ms`, { cause: error });
        }
        await sleep(10);
      }
    }
  }
  const channel = await ShmChannel.connect(name, { ...options.config, slowSubscriber: 'block' }, timeoutMs, {
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return new ShmTransport(channel);
}
