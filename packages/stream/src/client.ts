import { ProtocolEngine, type Connection } from '@switchyard/wire';
import { ClientSession, type ClientRequest, type Source } from './client-session.js';
import {
  StreamClosedError,
  StreamError,
  StreamInvalidArgumentError,
  StreamNoEndpointError,
  StreamTimeoutError,
} from './errors.js';
import { createStreamCodec, type Frame } from './frames.js';
import {
  resolveClientOptions,
  type ClientOptions,
  type Directory,
  type ResolvedClientOptions,
} from './options.js';
import { engineOptionsFor } from './server.js';

/** A directory with a fixed map of service names to endpoints. */
export class StaticDirectory implements Directory {
  readonly #map: ReadonlyMap<string, readonly string[]>;

  constructor(entries: Readonly<Record<string, readonly string[]>> | ReadonlyMap<string, readonly string[]>) {
    const map = new Map<string, readonly string[]>();
    const pairs: [string, unknown][] =
      entries instanceof Map
        ? [...(entries as ReadonlyMap<string, unknown>)]
        : Object.entries(entries as Readonly<Record<string, unknown>>);
    for (const [name, endpoints] of pairs) {
      if (!Array.isArray(endpoints) || endpoints.some((e: unknown) => typeof e !== 'string')) {
        throw new StreamInvalidArgumentError(
          `directory entry "${name}" must be an array of endpoint strings`,
        );
      }
      map.set(name, Object.freeze([...(endpoints as string[])]));
    }
    this.#map = map;
  }

  resolve(service: string): readonly string[] {
    return this.#map.get(service) ?? [];
  }
}

/** A 32-bit hash with good avalanche (FNV-1a, then murmur3's finaliser). */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Rendezvous (highest random weight) order of `endpoints` for `key`: the first is the
 * key's home. Removing an endpoint moves only the keys whose home it was.
 */
export function rendezvousOrder(key: string, endpoints: readonly string[]): string[] {
  return endpoints
    .map((endpoint) => ({ endpoint, score: hash32(`${endpoint}\u0000${key}`) }))
    .sort((a, b) => b.score - a.score || (a.endpoint < b.endpoint ? -1 : 1))
    .map((e) => e.endpoint);
}

const LITERAL = /^(tcp:\/\/|unix:|memory:|shm:)/;

/** Options of one `post`. */
export interface PostOptions {
  /** Request tags; `bucket` routes by rendezvous hashing among the service's endpoints. */
  tags?: Readonly<Record<string, string>>;
  signal?: AbortSignal;
}

/**
 * Posts requests and reads their sources (chanserv's LookupAndPost). One connection per
 * endpoint carries every request; a dead endpoint is skipped for `deadEndpointRetryMs`.
 */
export class StreamClient {
  readonly #options: ResolvedClientOptions;
  readonly #engine: ProtocolEngine<Frame>;
  readonly #sessions = new Map<Connection<Frame>, ClientSession>();
  readonly #byEndpoint = new Map<string, ClientSession[]>();
  readonly #dialing = new Map<string, Promise<ClientSession>>();
  readonly #roundRobin = new Map<string, number>();
  readonly #deadUntil = new Map<string, number>();
  #closed = false;

  constructor(options?: ClientOptions) {
    this.#options = resolveClientOptions(options);
    const o = this.#options;
    this.#engine = new ProtocolEngine<Frame>(
      {
        codec: () => createStreamCodec({ maxFrameSize: o.maxFrameSize }),
        handler: {
          onReady: (conn) => {
            const session = new ClientSession(conn, o, {
              unusable: (s) => this.#dropSession(s),
              error: (e) => o.onError?.(e),
            });
            this.#sessions.set(conn, session);
          },
          onFrame: (conn, frame) => this.#sessions.get(conn)?.onFrame(frame),
          onClosed: (conn, error) => {
            const session = this.#sessions.get(conn);
            this.#sessions.delete(conn);
            session?.onClosed(error);
          },
        },
      },
      engineOptionsFor(o.maxFrameSize),
    );
  }

  #dropSession(session: ClientSession): void {
    for (const [endpoint, list] of this.#byEndpoint) {
      const i = list.indexOf(session);
      if (i >= 0) {
        list.splice(i, 1);
        if (list.length === 0) this.#byEndpoint.delete(endpoint);
      }
    }
  }

  /**
   * Posts `body` to `address` (a service name resolved by the directory, or a literal
   * `tcp://…`, `unix:…`, `memory:…`, `shm:…`) and yields the sources as they are announced.
   * Nothing is sent until the iteration starts. `break` cancels the request and the sources
   * not taken; `signal` cancels the request and every source of it.
   */
  post(address: string, body: Uint8Array, options: PostOptions = {}): AsyncIterable<Source> {
    if (typeof address !== 'string' || address.length === 0) {
      throw new StreamInvalidArgumentError('address must be a non-empty string');
    }
    if (!(body instanceof Uint8Array)) throw new StreamInvalidArgumentError('body must be a Uint8Array');
    if (body.length > this.#options.maxFrameSize) {
      throw new StreamInvalidArgumentError(`body of ${body.length} bytes exceeds maxFrameSize`);
    }
    const tags = new Map<string, string>();
    for (const [k, v] of Object.entries(options.tags ?? {})) {
      if (typeof v !== 'string') throw new StreamInvalidArgumentError(`tag "${k}" must be a string`);
      if (Buffer.byteLength(k) > 0xffff || Buffer.byteLength(v) > 0xffff) {
        throw new StreamInvalidArgumentError(`tag "${k}" is longer than 65535 bytes`);
      }
      tags.set(k, v);
    }
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new StreamInvalidArgumentError('signal must be an AbortSignal');
    }
    let used = false;
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<Source> => {
        if (used) throw new StreamInvalidArgumentError('the result of post() can be iterated once');
        used = true;
        return this.#iterate(address, body, tags, signal);
      },
    };
  }

  #iterate(
    address: string,
    body: Uint8Array,
    tags: ReadonlyMap<string, string>,
    signal: AbortSignal | undefined,
  ): AsyncIterator<Source> {
    let request: ClientRequest | null = null;
    let opening: Promise<ClientRequest> | null = null;
    let stopped = false;
    const open = async (): Promise<ClientRequest> => {
      signal?.throwIfAborted();
      const session = await this.#pick(address, tags.get('bucket'), signal);
      signal?.throwIfAborted();
      if (stopped) throw new StreamClosedError('the iteration was stopped');
      request = session.open(body, tags, signal);
      return request;
    };
    return {
      next: async (): Promise<IteratorResult<Source>> => {
        if (request !== null) return request.next();
        if (stopped) return { value: undefined, done: true };
        opening ??= open();
        return (await opening).next();
      },
      return: async (): Promise<IteratorResult<Source>> => {
        stopped = true;
        if (request !== null) return request.return();
        return { value: undefined, done: true };
      },
    };
  }

  async #endpoints(address: string, signal: AbortSignal | undefined): Promise<readonly string[]> {
    if (LITERAL.test(address)) return [address];
    const directory = this.#options.directory;
    if (directory === undefined) {
      throw new StreamNoEndpointError(`"${address}" is not an address and no directory is configured`);
    }
    let endpoints: readonly string[];
    try {
      endpoints = await directory.resolve(address, signal);
    } catch (error) {
      signal?.throwIfAborted();
      throw new StreamNoEndpointError(`the directory failed to resolve "${address}"`, { cause: error });
    }
    const list: unknown = endpoints;
    if (!Array.isArray(list)) {
      throw new StreamNoEndpointError(`the directory returned no endpoint list for "${address}"`);
    }
    if (endpoints.length === 0)
      throw new StreamNoEndpointError(`the directory has no endpoint for "${address}"`);
    return endpoints;
  }

  /** Orders the endpoints (bucket: rendezvous; else round robin), dead ones skipped, and connects. */
  async #pick(
    address: string,
    bucket: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ClientSession> {
    if (this.#closed) throw new StreamClosedError('the client is closed');
    const endpoints = await this.#endpoints(address, signal);
    let ordered: string[];
    if (bucket !== undefined) ordered = rendezvousOrder(bucket, endpoints);
    else {
      const n = this.#roundRobin.get(address) ?? 0;
      this.#roundRobin.set(address, (n + 1) % 0x40000000);
      const start = n % endpoints.length;
      ordered = [...endpoints.slice(start), ...endpoints.slice(0, start)];
    }
    const now = Date.now();
    const live = ordered.filter((e) => (this.#deadUntil.get(e) ?? 0) <= now);
    const errors: Error[] = [];
    for (const endpoint of live) {
      try {
        return await this.#session(endpoint, signal);
      } catch (error) {
        signal?.throwIfAborted();
        if (this.#closed) throw error;
        errors.push(error as Error);
        this.#deadUntil.set(endpoint, Date.now() + this.#options.deadEndpointRetryMs);
      }
    }
    // One endpoint tried: its own error (a dial timeout, a refused connection) says most.
    if (errors.length === 1 && ordered.length === 1) throw errors[0]!;
    throw new StreamNoEndpointError(
      live.length === 0
        ? `every endpoint of "${address}" is marked dead`
        : `no endpoint of "${address}" could be reached: ${errors.map((e) => e.message).join('; ')}`,
      { cause: errors.length === 1 ? errors[0] : new AggregateError(errors) },
    );
  }

  /** A usable session to `endpoint` with a free request slot, dialling one if needed. */
  async #session(endpoint: string, signal: AbortSignal | undefined): Promise<ClientSession> {
    for (const s of this.#byEndpoint.get(endpoint) ?? []) {
      if (s.usable && s.openRequests < this.#options.maxConcurrentRequests) return s;
    }
    let dialing = this.#dialing.get(endpoint);
    if (dialing === undefined) {
      dialing = this.#connect(endpoint, signal).finally(() => this.#dialing.delete(endpoint));
      this.#dialing.set(endpoint, dialing);
    }
    return dialing;
  }

  async #connect(endpoint: string, signal: AbortSignal | undefined): Promise<ClientSession> {
    const ms = this.#options.dialTimeoutMs;
    // Not AbortSignal.timeout(): its timer is unref'd, and a caller awaiting the dial must
    // keep the process alive until the deadline.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new Error('dial timeout')), ms);
    const combined = signal === undefined ? timeout.signal : AbortSignal.any([signal, timeout.signal]);
    let conn: Connection<Frame>;
    try {
      const dial = this.#options.dial;
      if (/^(tcp:\/\/|unix:)/.test(endpoint) || dial === undefined) {
        conn = await this.#engine.connect(endpoint, { signal: combined });
      } else {
        conn = this.#engine.manage(await dial(endpoint, combined));
      }
    } catch (error) {
      if (signal?.aborted === true) throw signal.reason;
      if (timeout.signal.aborted) {
        throw new StreamTimeoutError(
          'dialTimeoutMs',
          `dialTimeoutMs: ${endpoint} not reached within ${ms} ms`,
          {
            cause: error,
          },
        );
      }
      throw error instanceof StreamError
        ? error
        : new StreamNoEndpointError(`cannot connect to ${endpoint}: ${(error as Error).message}`, {
            cause: error,
          });
    } finally {
      clearTimeout(timer);
    }
    const session = this.#sessions.get(conn);
    if (session === undefined) throw new StreamNoEndpointError(`connection to ${endpoint} closed at once`);
    if (this.#closed) {
      await session.close();
      throw new StreamClosedError('the client is closed');
    }
    const list = this.#byEndpoint.get(endpoint);
    if (list === undefined) this.#byEndpoint.set(endpoint, [session]);
    else list.push(session);
    this.#deadUntil.delete(endpoint);
    return session;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Cancels every open request and closes every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#sessions.values()].map((s) => s.close()));
    await this.#engine.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
