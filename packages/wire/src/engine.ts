import { unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { BufferPool, WriteSlab, type BufferPoolStats } from './buffer-pool.js';
import type { Codec } from './codec.js';
import {
  ConnectionImpl,
  type Connection,
  type EngineContext,
  type Handler,
  type TimerId,
} from './connection.js';
import {
  WireConnectError,
  WireEngineClosedError,
  WireInvalidArgumentError,
  WireListenError,
} from './errors.js';
import { resolveOptions, type EngineOptions, type ResolvedEngineOptions } from './options.js';
import { SocketTransport } from './socket-transport.js';
import type { Transport } from './transport.js';

/** A protocol: the codec (or a factory making one per connection) and the handler. */
export interface Protocol<F, T = unknown> {
  codec: Codec<F> | (() => Codec<F>);
  handler: Handler<F, T>;
}

/** Where to listen: `tcp://127.0.0.1:0` or `unix:/path/to.sock`, with options. */
export interface ListenOptions {
  address: string;
  /** Pending-connection queue of the socket. Default 511. */
  backlog?: number;
  signal?: AbortSignal;
}

/** An accepting socket. Closing it stops accepting; accepted connections stay. */
export interface Listener {
  /** The bound address, with the real port: `tcp://127.0.0.1:41234`, `unix:/tmp/x.sock`. */
  readonly address: string;
  /** The TCP port (0 for a Unix socket). */
  readonly port: number;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A parsed address. */
export type Address = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** Parses `tcp://host:port` (IPv6 as `tcp://[::1]:port`) or `unix:/path` / `unix:///path`. */
export function parseAddress(address: string): Address {
  if (typeof address !== 'string') throw new WireInvalidArgumentError('address must be a string');
  if (address.startsWith('unix:')) {
    let path = address.slice(5);
    if (path.startsWith('//')) path = path.slice(2);
    if (path.length === 0) throw new WireInvalidArgumentError(`address "${address}" has no path`);
    return { kind: 'unix', path };
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(address);
  if (m === null) {
    throw new WireInvalidArgumentError(
      `address "${address}" must look like tcp://127.0.0.1:4000 or unix:/path`,
    );
  }
  const port = Number(m[2]);
  if (port > 65535) throw new WireInvalidArgumentError(`address "${address}" has port over 65535`);
  const host = (m[1] as string).replace(/^\[|\]$/g, '');
  return { kind: 'tcp', host, port };
}

const ENGINE_CLOSED = 'the engine is closed';

/**
 * mai's ProtocolEngine: drives many connections with one codec per connection and one
 * handler. It owns the buffer pool, coalesces every connection's writes once per turn of the
 * event loop (one `setImmediate` for all of them), accepts connections, and runs timers.
 */
export class ProtocolEngine<F, T = unknown> {
  readonly options: ResolvedEngineOptions;
  readonly #makeCodec: () => Codec<F>;
  readonly #handler: Handler<F, T>;
  readonly #pool: BufferPool;
  readonly #connections = new Set<ConnectionImpl<F, T>>();
  readonly #listeners = new Set<Listener>();
  readonly #timers = new Map<number, NodeJS.Timeout>();
  readonly #ctx: EngineContext<F, T>;
  #nextId = 0;
  #nextTimer = 0;
  #dirty: ConnectionImpl<F, T>[] = [];
  #flushScheduled = false;
  #closed = false;
  readonly #flushAll = (): void => this.#flush();

  constructor(protocol: Protocol<F, T>, options?: EngineOptions) {
    if (typeof protocol !== 'object' || protocol === null) {
      throw new WireInvalidArgumentError('protocol must be an object { codec, handler }');
    }
    const { codec, handler } = protocol;
    if (typeof codec === 'function') this.#makeCodec = codec;
    else if (typeof codec === 'object' && codec !== null && typeof codec.decode === 'function') {
      this.#makeCodec = () => codec;
    } else throw new WireInvalidArgumentError('protocol.codec must be a Codec or a function returning one');
    if (typeof handler !== 'object' || handler === null || typeof handler.onFrame !== 'function') {
      throw new WireInvalidArgumentError('protocol.handler must be an object with an onFrame method');
    }
    this.#handler = handler;
    this.options = resolveOptions(options);
    const o = this.options;
    this.#pool = new BufferPool(o.initialBufferSize, o.initialBufferPoolSize, o.maxBufferPoolSize);
    this.#ctx = {
      pool: this.#pool,
      slab: new WriteSlab(this.#pool),
      options: this.options,
      handler,
      scheduleFlush: (conn) => {
        conn.flushQueued = true;
        this.#dirty.push(conn);
        if (!this.#flushScheduled) {
          this.#flushScheduled = true;
          setImmediate(this.#flushAll);
        }
      },
      removed: (conn) => {
        this.#connections.delete(conn);
      },
    };
  }

  #flush(): void {
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = [];
    for (let i = 0; i < dirty.length; i++) (dirty[i] as ConnectionImpl<F, T>).flush();
    // The turn is over: the next turn's sends start a fresh slab, and an idle engine holds none.
    this.#ctx.slab.retire();
  }

  /** The connections open now. */
  get connections(): ReadonlySet<Connection<F, T>> {
    return this.#connections;
  }

  /** The buffer pool's figures (idle connections hold no buffer: `leased` counts only active ones). */
  poolStats(): BufferPoolStats {
    return this.#pool.stats();
  }

  /** Drives a connected transport (mai's `manage(stream)`); `onReady` runs before it returns. */
  manage(transport: Transport): Connection<F, T> {
    if (this.#closed) {
      transport.destroy();
      throw new WireEngineClosedError(ENGINE_CLOSED);
    }
    if (this.#connections.size >= this.options.maxConnections) {
      transport.destroy();
      throw new WireInvalidArgumentError(`maxConnections ${this.options.maxConnections} reached`);
    }
    const conn = new ConnectionImpl<F, T>(++this.#nextId, transport, this.#makeCodec(), this.#ctx);
    this.#connections.add(conn);
    conn.start();
    return conn;
  }

  #manageSocket(socket: Socket, names: { remoteAddress?: string; localAddress?: string }): Connection<F, T> {
    socket.setNoDelay(this.options.noDelay);
    return this.manage(new SocketTransport(socket, names));
  }

  /** Accepts connections on `tcp://host:port` or `unix:/path`; each one is managed. */
  async listen(address: string | ListenOptions): Promise<Listener> {
    const opts: ListenOptions = typeof address === 'string' ? { address } : address;
    const addr = parseAddress(opts.address);
    opts.signal?.throwIfAborted();
    if (this.#closed) throw new WireEngineClosedError(ENGINE_CLOSED);
    const unixName = addr.kind === 'unix' ? `unix:${addr.path}` : undefined;
    const server = createServer({ noDelay: this.options.noDelay }, (socket) => {
      if (this.#closed || this.#connections.size >= this.options.maxConnections) {
        socket.destroy();
        return;
      }
      const names = unixName === undefined ? {} : { remoteAddress: unixName, localAddress: unixName };
      this.#manageSocket(socket, names);
    });
    const backlog = opts.backlog ?? 511;
    const bind = (): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          server.close();
          reject(opts.signal?.reason as Error);
        };
        server.once('error', (error) => {
          opts.signal?.removeEventListener('abort', onAbort);
          reject(new WireListenError(`cannot listen on ${opts.address}: ${error.message}`, { cause: error }));
        });
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        const done = (): void => {
          opts.signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        if (addr.kind === 'tcp') server.listen({ host: addr.host, port: addr.port, backlog }, done);
        else server.listen({ path: addr.path, backlog }, done);
      });
    try {
      await bind();
    } catch (error) {
      // A Unix socket file left by a process that died (SIGKILL) refuses connections: remove
      // it and bind again. A live server keeps its socket (EADDRINUSE stands).
      if (addr.kind !== 'unix' || !isAddressInUse(error) || !(await isStaleSocket(addr.path))) throw error;
      server.removeAllListeners('error');
      await unlink(addr.path).catch(() => {});
      await bind();
    }
    server.on('error', () => {}); // after listening, errors surface on the connections
    const bound = server.address();
    const port = typeof bound === 'object' && bound !== null ? bound.port : 0;
    const boundAddress =
      addr.kind === 'tcp'
        ? `tcp://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`
        : `unix:${addr.path}`;
    const listener = makeListener(server, boundAddress, port, () => this.#listeners.delete(listener));
    this.#listeners.add(listener);
    return listener;
  }

  /** Opens a connection and manages it; resolves after `onReady`. */
  async connect(address: string, options: { signal?: AbortSignal } = {}): Promise<Connection<F, T>> {
    const addr = parseAddress(address);
    const signal = options.signal;
    signal?.throwIfAborted();
    if (this.#closed) throw new WireEngineClosedError(ENGINE_CLOSED);
    const socket =
      addr.kind === 'tcp'
        ? createConnection({ host: addr.host, port: addr.port, noDelay: this.options.noDelay })
        : createConnection({ path: addr.path });
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        socket.off('connect', onConnect);
        socket.off('error', onError);
        signal?.removeEventListener('abort', onAbort);
      };
      const onConnect = (): void => {
        cleanup();
        resolve();
      };
      const onError = (error: Error): void => {
        cleanup();
        socket.destroy();
        reject(new WireConnectError(`cannot connect to ${address}: ${error.message}`, { cause: error }));
      };
      const onAbort = (): void => {
        cleanup();
        socket.destroy();
        reject(signal?.reason as Error);
      };
      socket.once('connect', onConnect);
      socket.once('error', onError);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    if (this.#closed) {
      socket.destroy();
      throw new WireEngineClosedError(ENGINE_CLOSED);
    }
    const names = addr.kind === 'unix' ? { remoteAddress: `unix:${addr.path}`, localAddress: 'unix' } : {};
    return this.#manageSocket(socket, names);
  }

  /** Sends `frame` on every open connection (each encodes it with its own codec). */
  broadcast(frame: F): void {
    for (const conn of this.#connections) {
      if (!conn.closed) conn.send(frame);
    }
  }

  /** `handler.onEngineTimeout(token)` in `ms` (mai's global timeout). */
  setTimeout(ms: number, token: T): TimerId {
    if (!(Number.isFinite(ms) && ms >= 0))
      throw new WireInvalidArgumentError(`timeout ms must be >= 0, got ${ms}`);
    if (this.#closed) throw new WireEngineClosedError(ENGINE_CLOSED);
    const id = ++this.#nextTimer;
    this.#timers.set(
      id,
      setTimeout(() => {
        this.#timers.delete(id);
        try {
          this.#handler.onEngineTimeout?.(token);
        } catch {
          // An engine timer has no connection to fail; the handler's error is its own.
        }
      }, ms),
    );
    return id;
  }

  clearTimeout(id: TimerId): void {
    const timer = this.#timers.get(id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.#timers.delete(id);
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Stops accepting, closes every connection gracefully (flushing), clears timers. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const t of this.#timers.values()) clearTimeout(t);
      this.#timers.clear();
    }
    await Promise.all([
      ...[...this.#listeners].map((l) => l.close()),
      ...[...this.#connections].map((c) => c.close()),
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function isAddressInUse(error: unknown): boolean {
  return (error as { cause?: { code?: unknown } }).cause?.code === 'EADDRINUSE';
}

/** True when nothing accepts on the Unix socket at `path` (connection refused). */
function isStaleSocket(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => {
      resolve(error.code === 'ECONNREFUSED');
    });
  });
}

function makeListener(server: Server, address: string, port: number, onClose: () => void): Listener {
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      onClose();
      // server.close() stops accepting now; its callback waits for accepted sockets, which
      // the engine owns, so do not wait for it.
      server.close();
      setImmediate(resolve);
    });
    return closing;
  };
  return { address, port, close, [Symbol.asyncDispose]: close };
}
