import {
  ProtocolEngine,
  type Connection,
  type EngineOptions,
  type Listener,
  type Transport,
} from '@switchyard/wire';
import { StreamClosedError, StreamError, StreamInvalidArgumentError } from './errors.js';
import { HEADER_SIZE, PAYLOAD_ALLOWANCE, createStreamCodec, type Frame } from './frames.js';
import { resolveServerOptions, type ResolvedServerOptions, type ServerOptions } from './options.js';
import { ErrorMass, ServerSession, type SourceFunc } from './server-session.js';

/** Engine options that fit the stream protocol's limits. */
export function engineOptionsFor(maxFrameSize: number): EngineOptions {
  const largest = Math.min(2 ** 31, maxFrameSize + PAYLOAD_ALLOWANCE + HEADER_SIZE);
  return {
    maxFrameSize: largest,
    maxOutboxSize: Math.max(64 * 1024 * 1024, 2 * largest),
  };
}

/**
 * Serves a source function (chanserv's ListenAndServe) on TCP or a Unix socket, or on any
 * already-connected `@switchyard/wire` transport (`accept`). Every request, source and frame
 * of a client rides its one connection.
 */
export class StreamServer {
  readonly #options: ResolvedServerOptions;
  readonly #errorMass: ErrorMass;
  readonly #engine: ProtocolEngine<Frame>;
  readonly #sessions = new Map<Connection<Frame>, ServerSession>();
  readonly #listeners: Listener[] = [];
  #source: SourceFunc | null = null;
  #pendingSource: SourceFunc | null = null;
  #closing: Promise<void> | null = null;

  constructor(options?: ServerOptions) {
    this.#options = resolveServerOptions(options);
    this.#errorMass = new ErrorMass(this.#options);
    const maxFrameSize = this.#options.maxFrameSize;
    this.#engine = new ProtocolEngine<Frame>(
      {
        codec: () => createStreamCodec({ maxFrameSize }),
        handler: {
          onReady: (conn) => this.#onReady(conn),
          onFrame: (conn, frame) => this.#sessions.get(conn)?.onFrame(frame),
          onClosed: (conn, error) => {
            const session = this.#sessions.get(conn);
            this.#sessions.delete(conn);
            session?.onClosed(error);
          },
        },
      },
      engineOptionsFor(maxFrameSize),
    );
  }

  #onReady(conn: Connection<Frame>): void {
    const source = this.#pendingSource ?? this.#source;
    if (source === null || this.#closing !== null) {
      conn.destroy(new StreamClosedError('the server is not serving'));
      return;
    }
    const session = new ServerSession(conn, this.#options, {
      source,
      errorMass: this.#errorMass,
      closed: () => undefined,
    });
    this.#sessions.set(conn, session);
  }

  /** The addresses bound by `listen`, with real ports (`tcp://127.0.0.1:41234`). */
  get addresses(): readonly string[] {
    return this.#listeners.map((l) => l.address);
  }

  /** The first bound address. */
  get address(): string {
    const first = this.#listeners[0];
    if (first === undefined) throw new StreamClosedError('the server is not listening');
    return first.address;
  }

  /** Sequential serving errors so far (reset by a request served without error). */
  get errorMass(): number {
    return this.#errorMass.count;
  }

  /** Connections served now. */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Listens on `tcp://127.0.0.1:<port>` or `unix:<path>` and serves `source` to every client. */
  async listen(address: string, source: SourceFunc, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (typeof source !== 'function') throw new StreamInvalidArgumentError('source must be a function');
    if (typeof address !== 'string') throw new StreamInvalidArgumentError('address must be a string');
    if (this.#closing !== null) throw new StreamClosedError('the server is closed');
    if (this.#source !== null && this.#source !== source) {
      throw new StreamInvalidArgumentError('a server serves one source function');
    }
    this.#source = source;
    try {
      const listener = await this.#engine.listen(
        options.signal === undefined ? { address } : { address, signal: options.signal },
      );
      this.#listeners.push(listener);
    } catch (error) {
      if (error instanceof StreamError || (error as { name?: string }).name === 'AbortError') throw error;
      throw new StreamInvalidArgumentError(`cannot listen on ${address}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /**
   * Serves an already-connected transport (one end of `memoryTransportPair()`, a shm duplex
   * channel, a socket accepted elsewhere).
   */
  accept(transport: Transport, source?: SourceFunc): void {
    if (this.#closing !== null) {
      transport.destroy();
      throw new StreamClosedError('the server is closed');
    }
    const fn = source ?? this.#source;
    if (typeof fn !== 'function') throw new StreamInvalidArgumentError('accept needs a source function');
    this.#pendingSource = fn;
    try {
      this.#engine.manage(transport);
    } finally {
      this.#pendingSource = null;
    }
  }

  /**
   * Graceful close: stop accepting, send GOAWAY on every connection, let in-flight streams
   * finish (at most `closeTimeoutMs`), then close the connections.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all(this.#listeners.map((l) => l.close()));
      await Promise.all([...this.#sessions.values()].map((s) => s.close()));
      await this.#engine.close();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
