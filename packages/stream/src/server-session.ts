/**
 * The server end of one connection: runs the source function per request, pumps every
 * source's frame generator while it has credit (frames AND bytes, per source and per
 * connection), batches the records of one turn into one DATA frame, and finishes the
 * generators (`return()`) on cancel, timeout, error and close. No producer outlives its
 * stream.
 */
import { streamCause } from './client-session.js';
import { compressRecord } from './compression.js';
import {
  StreamCancelledError,
  StreamClosedError,
  StreamConnectionLostError,
  StreamError,
  StreamFrameTooLargeError,
  StreamGoawayError,
  StreamInvalidArgumentError,
  StreamKeepaliveTimeoutError,
  StreamProtocolError,
  StreamRefusedError,
  StreamTimeoutError,
} from './errors.js';
import { FrameType, MAX_CREDIT, MAX_STREAM_ID, type Frame, type RequestFrame } from './frames.js';
import { publish } from './internal/diagnostics.js';
import { Keepalive } from './internal/keepalive.js';
import { type FrameLink, Waiter, deadline } from './internal/link.js';
import type { ResolvedServerOptions } from './options.js';

/** What a source function receives about the request. */
export interface Request {
  readonly body: Uint8Array;
  readonly tags: ReadonlyMap<string, string>;
  readonly remoteAddress: string;
  /** Aborts when the client cancels, a timeout expires or the connection closes. */
  readonly signal: AbortSignal;
}

/** One source a source function announces: an optional header and its frames. */
export interface SourceInit {
  header?: Uint8Array;
  frames: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** Per-request context handed to the source function. */
export interface ServeContext {
  /** Same as `request.signal`. */
  readonly signal: AbortSignal;
  /** The connection's remote address. */
  readonly remoteAddress: string;
}

/** chanserv's SourceFunc: a request in, a stream of sources out. */
export type SourceFunc = (request: Request, ctx: ServeContext) => AsyncIterable<SourceInit>;

/** Server-wide state the sessions share: the error mass and its back-off. */
export class ErrorMass {
  readonly #options: ResolvedServerOptions;
  #count = 0;
  #level = 0;
  #backoffUntil = 0;

  constructor(options: ResolvedServerOptions) {
    this.#options = options;
  }

  /** Sequential serving errors so far. */
  get count(): number {
    return this.#count;
  }

  success(): void {
    this.#count = 0;
    this.#level = 0;
  }

  failure(error: Error): void {
    this.#count++;
    const o = this.#options;
    if (this.#count < o.maxErrorMass) return;
    // Bounded exponential: base, 2×base, 4×base … up to errorBackoffMaxMs.
    const delay = Math.min(o.errorBackoffMaxMs, o.errorBackoffBaseMs * 2 ** Math.min(this.#level, 30));
    this.#level++;
    this.#backoffUntil = Date.now() + delay;
    publish('backoff', { mass: this.#count, delayMs: delay, error });
    try {
      o.onMaxErrorMass?.(this.#count, error, delay);
    } catch {
      // A failing hook must not break serving.
    }
  }

  /** Milliseconds a new request must wait before its source function is called. */
  get delayMs(): number {
    return Math.max(0, this.#backoffUntil - Date.now());
  }
}

const BATCH_BYTES = 64 * 1024;
const BATCH_FRAMES = 4096;

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

function errorCode(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.length > 0 ? code : 'ERROR';
}

/**
 * The context a source function gets, and the base of its request. `signal` is a getter: Node
 * makes an AbortController's signal on first access, and that costs more than the rest of a
 * small request; most source functions never read it. Classes, frozen where they are made, not
 * frozen object literals with `get signal()`: such a literal is a dictionary-mode object, and V8
 * gives each one it freezes a hidden class of its own, linked from a shared one by a weak
 * transition that scavenges keep — so every request and all it referenced (through the getter's
 * closure) was promoted and lived until the next mark-compact: ~0.8 MB a scavenge and a
 * mark-compact every ~1.5 s in the mailbox broker at 1 000 msg/s.
 */
class RequestContext implements ServeContext {
  readonly remoteAddress: string;
  readonly #abort: AbortController;

  constructor(remoteAddress: string, abort: AbortController) {
    this.remoteAddress = remoteAddress;
    this.#abort = abort;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }
}

/** The request a source function gets: its body and tags beside the context's fields. */
class IncomingRequest extends RequestContext implements Request {
  readonly body: Uint8Array;
  readonly tags: ReadonlyMap<string, string>;

  constructor(
    body: Uint8Array,
    tags: ReadonlyMap<string, string>,
    remoteAddress: string,
    abort: AbortController,
  ) {
    super(remoteAddress, abort);
    this.body = body;
    this.tags = tags;
  }
}

class ServerRequest {
  readonly id: number;
  readonly frameWindow: number;
  readonly byteWindow: number;
  sourceCredit: number;
  readonly abort = new AbortController();
  readonly waiter = new Waiter();
  readonly sources = new Set<ServerSource>();
  iterator: AsyncIterator<SourceInit> | null = null;
  /** The source function finished, failed or was cancelled. */
  closed = false;
  timer: NodeJS.Timeout | null = null;

  constructor(frame: RequestFrame) {
    this.id = frame.streamId;
    this.frameWindow = frame.frameWindow;
    this.byteWindow = frame.byteWindow;
    this.sourceCredit = frame.sourceWindow;
  }
}

class ServerSource {
  readonly id: number;
  readonly request: ServerRequest;
  frameCredit: number;
  byteCredit: number;
  closed = false;
  readonly waiter = new Waiter();
  iterator: Iterator<Uint8Array> | AsyncIterator<Uint8Array> | null = null;
  /**
   * Records waiting to go out in one DATA frame (stored form): the first `batchCount` entries.
   * The array is reused from frame to frame (a DATA frame is encoded when it is sent): a fresh
   * array per frame, grown by push, cost ~15 ns per record, the largest cost after the
   * producer itself at 64 B.
   */
  batch: Uint8Array[] = [];
  batchCount = 0;
  lz4: boolean[] | null = null;
  batchBytes = 0;
  flushQueued = false;
  /**
   * Records (and stored bytes) per DATA frame: at most half the source's window, so the
   * client takes one half, and sends its credit back, while the other half is on its way
   * (one DATA frame per window would leave one side idle while the other works: measured
   * +30–50 % at 64 B with the default 1024-frame window on an idle machine).
   */
  readonly batchFrames: number;
  readonly batchBytesMax: number;

  constructor(id: number, request: ServerRequest) {
    this.id = id;
    this.request = request;
    this.frameCredit = request.frameWindow;
    this.byteCredit = request.byteWindow;
    this.batchFrames = Math.max(1, Math.min(BATCH_FRAMES, request.frameWindow >>> 1));
    this.batchBytesMax = Math.max(1, Math.min(BATCH_BYTES, request.byteWindow >>> 1));
  }
}

export interface ServerSessionHooks {
  readonly source: SourceFunc;
  readonly errorMass: ErrorMass;
  closed(session: ServerSession): void;
}

/** The server end of one connection. */
export class ServerSession {
  readonly remoteAddress: string;
  readonly #link: FrameLink;
  readonly #options: ResolvedServerOptions;
  readonly #hooks: ServerSessionHooks;
  readonly #requests = new Map<number, ServerRequest>();
  readonly #sources = new Map<number, ServerSource>();
  #nextSourceId = 2;
  #lastRequestId = 0;
  #connCredit = 0;
  readonly #connWaiters = new Set<Waiter>();
  #goaway = false;
  #closed: Error | null = null;
  readonly #keepalive: Keepalive;
  #firstRequestTimer: NodeJS.Timeout | null = null;
  readonly #flushQueue: ServerSource[] = [];
  #flushScheduled = false;
  #drained: (() => void) | null = null;
  #congested = false;
  readonly #writableWaiters = new Set<Waiter>();

  constructor(link: FrameLink, options: ResolvedServerOptions, hooks: ServerSessionHooks) {
    this.#link = link;
    this.#options = options;
    this.#hooks = hooks;
    this.remoteAddress = link.remoteAddress;
    this.#keepalive = new Keepalive(
      options.keepaliveIntervalMs,
      options.keepaliveTimeoutMs,
      () => this.#send({ type: FrameType.PING, streamId: 0, ack: false, data: new Uint8Array(8) }),
      () =>
        this.#destroy(
          new StreamKeepaliveTimeoutError(
            `no answer from ${this.remoteAddress} within keepaliveTimeoutMs (${options.keepaliveTimeoutMs} ms)`,
          ),
        ),
    );
    if (options.masterReadTimeoutMs > 0) {
      this.#firstRequestTimer = deadline(options.masterReadTimeoutMs, () =>
        this.#destroy(
          new StreamTimeoutError(
            'masterReadTimeoutMs',
            `masterReadTimeoutMs: no request from ${this.remoteAddress} within ${options.masterReadTimeoutMs} ms`,
          ),
        ),
      );
    }
    this.#send({ type: FrameType.PREFACE, version: 1, windowBytes: options.connectionWindowBytes });
    publish('connection', { remoteAddress: this.remoteAddress, side: 'server', state: 'open' });
  }

  /** Requests whose source function runs, plus sources still producing. */
  get activeStreams(): number {
    return this.#requests.size + this.#sources.size;
  }

  #send(frame: Frame): boolean {
    if (this.#closed !== null) return true;
    const fits = this.#link.send(frame);
    if (!fits && !this.#congested) {
      // Every pump checks this before pulling more, so the outbox stays near its
      // high-water mark however many sources run (the engine destroys a connection whose
      // outbox passes maxOutboxSize).
      this.#congested = true;
      this.#link.writable.then(
        () => {
          this.#congested = false;
          for (const w of this.#writableWaiters) w.wake();
          this.#writableWaiters.clear();
        },
        () => undefined,
      );
    }
    return fits;
  }

  onFrame(frame: Frame): void {
    this.#keepalive.touch();
    try {
      this.#dispatch(frame);
    } catch (error) {
      this.#destroy(
        error instanceof StreamError ? error : new StreamProtocolError('bad frame', { cause: error }),
      );
    }
  }

  #dispatch(frame: Frame): void {
    switch (frame.type) {
      case FrameType.PREFACE:
        this.#connCredit = frame.windowBytes;
        return;
      case FrameType.REQUEST:
        return this.#onRequest(frame);
      case FrameType.CANCEL: {
        const source = this.#sources.get(frame.streamId);
        if (source !== undefined) {
          this.#closeSource(source);
          return;
        }
        const request = this.#requests.get(frame.streamId);
        if (request !== undefined)
          this.#closeRequest(request, new StreamCancelledError(`cancelled: ${frame.reason}`));
        return;
      }
      case FrameType.CREDIT: {
        if (frame.streamId === 0) {
          if (this.#connCredit + frame.bytes > MAX_CREDIT)
            throw new StreamProtocolError('connection credit overflow');
          this.#connCredit += frame.bytes;
          for (const w of this.#connWaiters) w.wake();
          this.#connWaiters.clear();
          return;
        }
        const source = this.#sources.get(frame.streamId);
        if (source !== undefined) {
          source.frameCredit += frame.frames;
          source.byteCredit += frame.bytes;
          if (source.frameCredit > MAX_CREDIT || source.byteCredit > MAX_CREDIT) {
            throw new StreamProtocolError(`credit overflow on source ${source.id}`);
          }
          source.waiter.wake();
          return;
        }
        const request = this.#requests.get(frame.streamId);
        if (request !== undefined) {
          request.sourceCredit += frame.frames;
          if (request.sourceCredit > MAX_CREDIT) throw new StreamProtocolError('source credit overflow');
          request.waiter.wake();
        }
        return;
      }
      case FrameType.PING:
        if (!frame.ack)
          this.#send({ type: FrameType.PING, streamId: 0, ack: true, data: Buffer.from(frame.data) });
        return;
      case FrameType.GOAWAY:
        // The client is leaving; it cancels its own streams.
        return;
      default:
        throw new StreamProtocolError(`a server does not accept frame type ${frame.type}`);
    }
  }

  #onRequest(frame: RequestFrame): void {
    if (frame.streamId <= this.#lastRequestId) {
      throw new StreamProtocolError(`REQUEST id ${frame.streamId} not above ${this.#lastRequestId}`);
    }
    if (this.#firstRequestTimer !== null) {
      clearTimeout(this.#firstRequestTimer);
      this.#firstRequestTimer = null;
    }
    if (this.#goaway) {
      this.#sendError(frame.streamId, new StreamGoawayError('the server is going away'));
      return;
    }
    this.#lastRequestId = frame.streamId;
    if (this.#requests.size >= this.#options.maxConcurrentRequests) {
      this.#sendError(
        frame.streamId,
        new StreamRefusedError(`maxConcurrentRequests (${this.#options.maxConcurrentRequests}) reached`),
      );
      return;
    }
    const request = new ServerRequest(frame);
    this.#requests.set(request.id, request);
    // The body and tags alias the read buffer: copy before the first await.
    const body = Buffer.from(frame.body);
    publish('request', { remoteAddress: this.remoteAddress, requestId: request.id, side: 'server' });
    void this.#serve(request, body, frame.tags);
  }

  #sendError(streamId: number, error: Error): void {
    this.#send({ type: FrameType.ERROR, streamId, code: errorCode(error), message: error.message });
  }

  #startTimers(request: ServerRequest): void {
    const o = this.#options;
    const limits: [string, number][] = [];
    if (o.servingTimeoutMs > 0) limits.push(['servingTimeoutMs', o.servingTimeoutMs]);
    if (o.sourcingTimeoutMs > 0) limits.push(['sourcingTimeoutMs', o.sourcingTimeoutMs]);
    if (limits.length === 0) return;
    limits.sort((a, b) => a[1] - b[1]);
    const [name, ms] = limits[0]!;
    request.timer = deadline(ms, () => {
      const error = new StreamTimeoutError(name, `${name}: request ${request.id} not served within ${ms} ms`);
      this.#failRequest(request, error);
      if (name === 'servingTimeoutMs') {
        for (const s of [...request.sources]) this.#failSource(s, error);
      } else if (o.servingTimeoutMs > 0) {
        const rest = o.servingTimeoutMs - ms;
        request.timer = deadline(rest, () => {
          const e = new StreamTimeoutError(
            'servingTimeoutMs',
            `servingTimeoutMs: request ${request.id} not served within ${o.servingTimeoutMs} ms`,
          );
          for (const s of [...request.sources]) this.#failSource(s, e);
        });
      }
    });
  }

  async #serve(request: ServerRequest, body: Uint8Array, tags: ReadonlyMap<string, string>): Promise<void> {
    const o = this.#options;
    this.#startTimers(request);
    const delay = this.#hooks.errorMass.delayMs;
    if (delay > 0) {
      await new Promise<void>((resolve) => {
        const t = deadline(delay, resolve);
        request.abort.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
      if (request.closed) return;
    }
    const req = Object.freeze(new IncomingRequest(body, tags, this.remoteAddress, request.abort));
    let completed = false;
    try {
      const iterable = this.#hooks.source(
        req,
        Object.freeze(new RequestContext(this.remoteAddress, request.abort)),
      );
      if (iterable === null || typeof iterable !== 'object' || !(Symbol.asyncIterator in iterable)) {
        throw new StreamInvalidArgumentError('the source function must return an AsyncIterable of sources');
      }
      const it = iterable[Symbol.asyncIterator]();
      request.iterator = it;
      for (;;) {
        if (request.closed) return;
        if (request.sourceCredit < 1) {
          await this.#waitSourceCredit(request);
          continue;
        }
        const r = await it.next();
        if (r.done === true) {
          completed = true;
          break;
        }
        if (request.closed) {
          // Announced after a cancel or a timeout: its generator must still be finished.
          await this.#finishFrames(r.value);
          return;
        }
        this.#announce(request, r.value);
        // Announcements wait for a congested outbox like frames do (bounded by masterWriteTimeoutMs).
        if (this.#congested) await this.#waitAnnounced(request);
      }
      if (!request.closed) {
        request.closed = true;
        this.#send({ type: FrameType.END, streamId: request.id });
        this.#hooks.errorMass.success();
      }
    } catch (thrown) {
      const error = toError(thrown);
      if (!request.closed) {
        request.closed = true;
        this.#sendError(request.id, error);
        publish('error', { remoteAddress: this.remoteAddress, streamId: request.id, error });
        try {
          o.onError?.(error);
        } catch {
          // A failing hook must not break serving.
        }
        this.#hooks.errorMass.failure(error);
      }
    } finally {
      this.#releaseRequest(request);
      if (!completed && request.iterator !== null) {
        await Promise.resolve(request.iterator.return?.()).catch(() => undefined);
      }
    }
  }

  async #finishFrames(init: SourceInit): Promise<void> {
    const frames = init.frames as Partial<AsyncIterable<Uint8Array> & Iterable<Uint8Array>>;
    try {
      const asyncFn = frames[Symbol.asyncIterator];
      const syncFn = frames[Symbol.iterator];
      if (typeof asyncFn === 'function') await asyncFn.call(frames).return?.();
      else if (typeof syncFn === 'function') syncFn.call(frames).return?.();
    } catch {
      // Finishing a generator that was never started cannot fail in a way we can report.
    }
  }

  async #waitAnnounced(request: ServerRequest): Promise<void> {
    const ms = this.#options.masterWriteTimeoutMs;
    const timer =
      ms > 0
        ? deadline(ms, () =>
            this.#failRequest(
              request,
              new StreamTimeoutError(
                'masterWriteTimeoutMs',
                `masterWriteTimeoutMs: source announcement not written within ${ms} ms`,
              ),
            ),
          )
        : null;
    this.#writableWaiters.add(request.waiter);
    try {
      while (this.#congested && !request.closed) await request.waiter.wait();
    } finally {
      if (timer !== null) clearTimeout(timer);
      this.#writableWaiters.delete(request.waiter);
    }
  }

  async #waitSourceCredit(request: ServerRequest): Promise<void> {
    const ms = this.#options.chanAcceptTimeoutMs;
    const timer =
      ms > 0
        ? deadline(ms, () =>
            this.#failRequest(
              request,
              new StreamTimeoutError(
                'chanAcceptTimeoutMs',
                `chanAcceptTimeoutMs: announced sources not accepted within ${ms} ms`,
              ),
            ),
          )
        : null;
    try {
      await request.waiter.wait();
    } finally {
      if (timer !== null) clearTimeout(timer);
    }
  }

  #announce(request: ServerRequest, init: SourceInit): void {
    if (
      init === null ||
      typeof init !== 'object' ||
      init.frames === null ||
      typeof init.frames !== 'object'
    ) {
      throw new StreamInvalidArgumentError('a source must be an object with frames');
    }
    const header = init.header ?? new Uint8Array(0);
    if (!(header instanceof Uint8Array))
      throw new StreamInvalidArgumentError('a source header must be a Uint8Array');
    if (header.length > this.#options.maxFrameSize) {
      throw new StreamFrameTooLargeError(`source header of ${header.length} bytes exceeds maxFrameSize`);
    }
    const id = this.#nextSourceId;
    if (id > MAX_STREAM_ID) {
      // Out of ids: no new request here; the client opens a new connection (wire-format §4).
      this.#sendGoaway('stream ids exhausted');
      throw new StreamRefusedError('stream ids exhausted on this connection');
    }
    this.#nextSourceId += 2;
    const source = new ServerSource(id, request);
    this.#sources.set(id, source);
    request.sources.add(source);
    request.sourceCredit--;
    this.#send({ type: FrameType.SOURCE, streamId: id, requestId: request.id, header });
    publish('source', { remoteAddress: this.remoteAddress, requestId: request.id, sourceId: id });
    void this.#pump(source, init.frames);
  }

  /** Can a record go out on `source` now? */
  #hasCredit(source: ServerSource): boolean {
    return source.frameCredit >= 1 && source.byteCredit > 0 && this.#connCredit > 0;
  }

  async #waitCredit(source: ServerSource): Promise<void> {
    const ms = this.#options.frameWriteTimeoutMs;
    let connWaiter: Waiter | null = null;
    if (this.#connCredit <= 0) {
      connWaiter = source.waiter;
      this.#connWaiters.add(connWaiter);
    }
    const timer =
      ms > 0
        ? deadline(ms, () =>
            this.#failSource(
              source,
              new StreamTimeoutError('frameWriteTimeoutMs', `frameWriteTimeoutMs: no credit within ${ms} ms`),
            ),
          )
        : null;
    try {
      await source.waiter.wait();
    } finally {
      if (timer !== null) clearTimeout(timer);
      if (connWaiter !== null) this.#connWaiters.delete(connWaiter);
    }
  }

  /** Waits until the outbox drains (or the source is closed). */
  async #waitWritable(source: ServerSource): Promise<void> {
    if (!this.#congested) return;
    const ms = this.#options.frameWriteTimeoutMs;
    this.#writableWaiters.add(source.waiter);
    const timer =
      ms > 0
        ? deadline(ms, () =>
            this.#failSource(
              source,
              new StreamTimeoutError(
                'frameWriteTimeoutMs',
                `frameWriteTimeoutMs: frames not written within ${ms} ms`,
              ),
            ),
          )
        : null;
    try {
      await source.waiter.wait();
    } finally {
      if (timer !== null) clearTimeout(timer);
      this.#writableWaiters.delete(source.waiter);
    }
  }

  /** Adds one application frame to the source's batch, taking its credit. */
  #add(source: ServerSource, frame: Uint8Array): void {
    if (!(frame instanceof Uint8Array)) throw new StreamInvalidArgumentError('a frame must be a Uint8Array');
    if (frame.length > this.#options.maxFrameSize) {
      throw new StreamFrameTooLargeError(
        `frame of ${frame.length} bytes exceeds maxFrameSize ${this.#options.maxFrameSize}`,
      );
    }
    let stored = frame;
    if (this.#options.useCompression && frame.length >= this.#options.compressionMinBytes) {
      const packed = compressRecord(frame);
      if (packed !== null) {
        stored = packed;
        if (source.lz4 === null) source.lz4 = new Array<boolean>(source.batchCount).fill(false);
        source.lz4.push(true);
      } else if (source.lz4 !== null) source.lz4.push(false);
    } else if (source.lz4 !== null) source.lz4.push(false);
    source.batch[source.batchCount++] = stored;
    source.batchBytes += stored.length;
    source.frameCredit--;
    source.byteCredit -= stored.length;
    this.#connCredit -= stored.length;
  }

  /**
   * Fills the source's batch from a sync iterator while credit (frames, source bytes,
   * connection bytes) and the batch limits last; true when the iterator is done. The same
   * checks as `#add` per frame, hoisted: this loop is the 64-byte hot path.
   */
  #pullSync(source: ServerSource, it: Iterator<Uint8Array>): boolean {
    if (this.#options.useCompression) {
      while (
        this.#hasCredit(source) &&
        source.batchBytes < source.batchBytesMax &&
        source.batchCount < source.batchFrames
      ) {
        const r = it.next();
        if (r.done === true) return true;
        this.#add(source, r.value);
      }
      return false;
    }
    const maxFrameSize = this.#options.maxFrameSize;
    const batch = source.batch;
    const lz4 = source.lz4;
    const start = source.batchCount;
    let k = start;
    const limit = Math.min(source.batchFrames - start, source.frameCredit);
    const maxBytes = source.batchBytesMax;
    let bytes = source.batchBytes;
    let byteCredit = source.byteCredit;
    let connCredit = this.#connCredit;
    let done = false;
    try {
      for (let i = 0; i < limit && byteCredit > 0 && connCredit > 0 && bytes < maxBytes; i++) {
        const r = it.next();
        if (r.done === true) {
          done = true;
          break;
        }
        const frame = r.value;
        if (!(frame instanceof Uint8Array))
          throw new StreamInvalidArgumentError('a frame must be a Uint8Array');
        const n = frame.length;
        if (n > maxFrameSize) {
          throw new StreamFrameTooLargeError(`frame of ${n} bytes exceeds maxFrameSize ${maxFrameSize}`);
        }
        batch[k++] = frame;
        if (lz4 !== null) lz4.push(false);
        bytes += n;
        byteCredit -= n;
        connCredit -= n;
      }
    } finally {
      // Also on a throw: the records already taken go out before the ERROR, as with `#add`.
      source.frameCredit -= k - start;
      source.batchCount = k;
      source.batchBytes = bytes;
      source.byteCredit = byteCredit;
      this.#connCredit = connCredit;
    }
    return done;
  }

  /** Sends the source's batch as one DATA frame; false when the outbox is over its mark. */
  #flush(source: ServerSource): boolean {
    const count = source.batchCount;
    if (count === 0 || source.closed) return true;
    const lz4 = source.lz4;
    const bytes = source.batchBytes;
    source.batchCount = 0;
    source.lz4 = null;
    source.batchBytes = 0;
    return this.#send({
      type: FrameType.DATA,
      streamId: source.id,
      records: source.batch,
      lz4,
      payload: null,
      count,
      bytes,
    });
  }

  /** Flush at the end of the turn: async generators that yield fast fill one DATA frame. */
  #queueFlush(source: ServerSource): void {
    if (source.flushQueued) return;
    source.flushQueued = true;
    this.#flushQueue.push(source);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      for (const s of this.#flushQueue.splice(0)) {
        s.flushQueued = false;
        this.#flush(s);
      }
    });
  }

  async #pump(source: ServerSource, frames: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    let finished = false;
    try {
      const asyncFn = (frames as Partial<AsyncIterable<Uint8Array>>)[Symbol.asyncIterator];
      const syncFn = (frames as Partial<Iterable<Uint8Array>>)[Symbol.iterator];
      if (typeof asyncFn === 'function') {
        const it = asyncFn.call(frames);
        source.iterator = it;
        for (;;) {
          if (source.closed) return;
          if (this.#congested) {
            this.#flush(source);
            await this.#waitWritable(source);
            continue;
          }
          if (!this.#hasCredit(source)) {
            this.#flush(source);
            if (!this.#congested) await this.#waitCredit(source);
            continue;
          }
          const r = await it.next();
          if (source.closed) return;
          if (r.done === true) {
            finished = true;
            break;
          }
          this.#add(source, r.value);
          if (source.batchBytes >= source.batchBytesMax || source.batchCount >= source.batchFrames)
            this.#flush(source);
          else this.#queueFlush(source);
        }
      } else if (typeof syncFn === 'function') {
        const it = syncFn.call(frames);
        source.iterator = it;
        outer: for (;;) {
          if (source.closed) return;
          if (this.#congested) {
            await this.#waitWritable(source);
            continue;
          }
          if (!this.#hasCredit(source)) {
            await this.#waitCredit(source);
            continue;
          }
          // Pull synchronously while credit lasts: one DATA frame per batch, no await per frame.
          if (this.#pullSync(source, it)) {
            finished = true;
            break outer;
          }
          // Yield the turn so the engine writes what this turn queued and other sources run;
          // out of credit, the wait for it yields anyway (one event-loop turn less per window).
          if (this.#flush(source) && this.#hasCredit(source)) {
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        }
      } else {
        throw new StreamInvalidArgumentError('frames must be an Iterable or AsyncIterable of Uint8Array');
      }
      this.#flush(source);
      if (!source.closed) {
        this.#send({ type: FrameType.END, streamId: source.id });
        this.#releaseSource(source);
      }
    } catch (thrown) {
      const error = toError(thrown);
      if (!source.closed) {
        this.#flush(source);
        this.#sendError(source.id, error);
        this.#releaseSource(source);
        publish('error', { remoteAddress: this.remoteAddress, streamId: source.id, error });
        try {
          this.#options.onChanError?.(error);
        } catch {
          // A failing hook must not break serving.
        }
        this.#hooks.errorMass.failure(error);
      }
    } finally {
      if (!finished) await this.#returnIterator(source);
    }
  }

  async #returnIterator(source: ServerSource): Promise<void> {
    const it = source.iterator;
    source.iterator = null;
    if (it === null) return;
    try {
      await it.return?.();
    } catch {
      // The generator's own finally threw; the stream is already closed.
    }
  }

  #releaseSource(source: ServerSource): void {
    source.closed = true;
    source.batch = [];
    source.batchCount = 0;
    source.waiter.wake();
    this.#sources.delete(source.id);
    source.request.sources.delete(source);
    if (source.request.sources.size === 0 && source.request.closed && source.request.timer !== null) {
      clearTimeout(source.request.timer);
    }
    this.#maybeDrained();
  }

  /** Cancelled by the client (or the connection): no frame goes out, the generator is finished. */
  #closeSource(source: ServerSource): void {
    if (source.closed) return;
    this.#releaseSource(source);
    // Finish now: a generator parked at `yield` runs its finally at once.
    void this.#returnIterator(source);
  }

  #failSource(source: ServerSource, error: Error): void {
    if (source.closed) return;
    this.#sendError(source.id, error);
    this.#closeSource(source);
  }

  #releaseRequest(request: ServerRequest): void {
    request.closed = true;
    request.waiter.wake();
    if (this.#requests.get(request.id) === request) this.#requests.delete(request.id);
    if (request.sources.size === 0 && request.timer !== null) clearTimeout(request.timer);
    this.#maybeDrained();
  }

  /** Cancel (client or connection): stop the source function, abort its signal. */
  #closeRequest(request: ServerRequest, reason: Error): void {
    if (!request.abort.signal.aborted) request.abort.abort(reason);
    if (request.closed) return;
    this.#releaseRequest(request);
    const it = request.iterator;
    if (it !== null) void Promise.resolve(it.return?.()).catch(() => undefined);
  }

  #failRequest(request: ServerRequest, error: Error): void {
    if (request.closed) return;
    this.#sendError(request.id, error);
    this.#closeRequest(request, error);
  }

  #maybeDrained(): void {
    if (this.#drained !== null && this.#requests.size === 0 && this.#sources.size === 0) {
      const resolve = this.#drained;
      this.#drained = null;
      resolve();
    }
  }

  #destroy(error: Error): void {
    if (this.#closed === null) this.#link.destroy(error);
    this.onClosed(error);
  }

  /** The connection ended: every request and source is cancelled, every generator finished. */
  onClosed(error?: Error): void {
    const first = this.#closed === null;
    if (first) {
      this.#closed = streamCause(error) ?? new StreamConnectionLostError('connection lost', { cause: error });
    }
    this.#keepalive.stop();
    if (this.#firstRequestTimer !== null) clearTimeout(this.#firstRequestTimer);
    const reason = this.#closed ?? new StreamClosedError('closed');
    for (const request of [...this.#requests.values()]) this.#closeRequest(request, reason);
    for (const source of [...this.#sources.values()]) this.#closeSource(source);
    for (const w of this.#connWaiters) w.wake();
    this.#connWaiters.clear();
    for (const w of this.#writableWaiters) w.wake();
    this.#writableWaiters.clear();
    if (first) {
      publish('connection', { remoteAddress: this.remoteAddress, side: 'server', state: 'closed' });
      this.#hooks.closed(this);
    }
  }

  #sendGoaway(message: string): void {
    if (this.#goaway) return;
    this.#goaway = true;
    this.#send({
      type: FrameType.GOAWAY,
      streamId: 0,
      lastRequestId: this.#lastRequestId,
      code: 'STREAM_ERR_CLOSED',
      message,
    });
  }

  /** GOAWAY, let in-flight streams finish (up to closeTimeoutMs), then close the connection. */
  async close(): Promise<void> {
    if (this.#closed !== null) return;
    this.#sendGoaway('the server is closing');
    if (this.#requests.size > 0 || this.#sources.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = deadline(this.#options.closeTimeoutMs, resolve);
      });
      clearTimeout(timer);
    }
    const error = new StreamClosedError('the server was closed');
    for (const request of [...this.#requests.values()]) this.#failRequest(request, error);
    for (const source of [...this.#sources.values()]) this.#failSource(source, error);
    await this.#link.close().catch(() => undefined);
    this.onClosed(error);
  }
}
