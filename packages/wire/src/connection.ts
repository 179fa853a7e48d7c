import { channel } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import type { BufferPool, SlabTenant, WriteSlab } from './buffer-pool.js';
import { INSUFFICIENT_BUFFER, type Codec, type Decoded, type Incomplete } from './codec.js';
import {
  WireConnectionClosedError,
  WireError,
  WireFrameTooLargeError,
  WireHandlerError,
  WireIdleTimeoutError,
  WireInvalidArgumentError,
  WireOutboxOverflowError,
  WireProtocolError,
  WireTransportError,
  WireTruncatedFrameError,
} from './errors.js';
import type { ResolvedEngineOptions } from './options.js';
import type { Transport, TransportSink } from './transport.js';

/** Reacts to what happens on the engine's connections. Only `onFrame` is required. */
export interface Handler<F, T = unknown> {
  /** The connection is set up (connected or accepted); `send` may be called. */
  onReady?(conn: Connection<F, T>): void;
  /** A decoded frame. A frame that is a view (the `lengthPrefixed` default) aliases the read
   *  buffer and is valid only during this call: copy what you keep. */
  onFrame(conn: Connection<F, T>, frame: F): void;
  /** A timer set with `conn.setTimeout` fired. */
  onTimeout?(conn: Connection<F, T>, token: T): void;
  /** A timer set with `engine.setTimeout` fired (mai's global timeout). */
  onEngineTimeout?(token: T): void;
  /** The outbox fell to the low-water mark after `send` returned false. */
  onDrain?(conn: Connection<F, T>): void;
  /** The connection failed; `onClosed` follows with the same error. */
  onError?(conn: Connection<F, T>, error: WireError): void;
  /** The connection is closed and released; `error` when it ended by failure. */
  onClosed?(conn: Connection<F, T>, error?: WireError): void;
}

/** A timer handle from `setTimeout`. */
export type TimerId = number;

/** One managed byte stream. */
export interface Connection<F, T = unknown> {
  readonly id: number;
  readonly remoteAddress: string;
  readonly localAddress: string;
  /** Queue a frame; it leaves with everything else sent this turn of the event loop. Returns
   *  false when the outbox is over its high-water mark (the frame is still queued) or the
   *  connection is closing or closed (the frame is dropped). Throws `WireFrameTooLargeError`
   *  for a frame over `maxFrameSize`. */
  send(frame: F): boolean;
  /** Resolves when the outbox is at or under the low-water mark; rejects with
   *  `WireConnectionClosedError` if the connection closes first. */
  readonly writable: Promise<void>;
  /** True until `send` returns false for a full outbox, again after the drain. */
  readonly isWritable: boolean;
  /** Bytes queued or in flight. */
  readonly outboxSize: number;
  /** Stop reading: no `onFrame` until `resume()`; the peer sees backpressure. */
  pause(): void;
  resume(): void;
  readonly isPaused: boolean;
  /** `handler.onTimeout(conn, token)` in `ms`; cleared when the connection closes. */
  setTimeout(ms: number, token: T): TimerId;
  clearTimeout(id: TimerId): void;
  /** Graceful: flush the outbox, end the stream, resolve once the peer has closed too (or
   *  destroy after closeTimeoutMs). A paused connection stays paused: resume() it to read the
   *  peer's last frames and end of stream. */
  close(): Promise<void>;
  /** Close at once, dropping the outbox; `error` is reported to `onError`/`onClosed`. */
  destroy(error?: Error): void;
  readonly closed: boolean;
  [Symbol.asyncDispose](): Promise<void>;
}

/** What a connection needs from its engine (kept narrow so the engine stays the owner). */
export interface EngineContext<F, T> {
  readonly pool: BufferPool;
  readonly slab: WriteSlab;
  readonly options: ResolvedEngineOptions;
  readonly handler: Handler<F, T>;
  scheduleFlush(conn: ConnectionImpl<F, T>): void;
  removed(conn: ConnectionImpl<F, T>): void;
}

const openChannel = channel('switchyard:wire:open');
const closeChannel = channel('switchyard:wire:close');
const errorChannel = channel('switchyard:wire:error');

const OPEN = 0;
const CLOSING = 1;
const CLOSED = 2;

const noop = (): void => {};

/**
 * The engine's connection. Invariants: `#stash` holds bytes received but not yet decoded —
 * the prefix of one incomplete frame, or (after `pause()` inside `onFrame`) the undelivered
 * rest of a chunk; it is null when empty, so an idle connection holds no read buffer.
 * `#wbuf` is the write region being filled (see WriteSlab); `#pending` the sealed regions
 * waiting; `#inflight` those handed to the transport. All three are empty when idle.
 */
export class ConnectionImpl<F, T> implements Connection<F, T>, SlabTenant {
  readonly id: number;
  readonly remoteAddress: string;
  readonly localAddress: string;
  readonly #transport: Transport;
  readonly #codec: Codec<F>;
  readonly #ctx: EngineContext<F, T>;
  readonly #handler: Handler<F, T>;
  readonly #pool: BufferPool;
  readonly #maxFrameSize: number;
  readonly #hwm: number;
  readonly #lwm: number;

  #state = OPEN;
  // Reading is allowed: open (or closing) and not paused. Checked once per frame.
  #reading = true;
  #paused = false;
  #inRead = false;
  #peerEnded = false;

  #stash: Uint8Array | null = null;
  #stashStart = 0;
  #stashEnd = 0;
  // Total size of the stashed frame when the codec said so, else 0.
  #need = 0;

  // The write region: #wbuf[#wstart, #wpos), a claimed part of the engine's slab or a private
  // buffer for a large frame.
  #wbuf: Uint8Array | null = null;
  #wstart = 0;
  #wpos = 0;
  #pending: Uint8Array[] = [];
  #pendingStarts: number[] = [];
  #pendingLens: number[] = [];
  #inflight: Uint8Array[] = [];
  #inflightBytes = 0;
  #writing = false;
  #outbox = 0;
  #writableFlag = true;
  #drain: { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } | null = null;
  flushQueued = false;

  #timers: Map<number, NodeJS.Timeout> | null = null;
  #nextTimer = 0;
  #idleTimer: NodeJS.Timeout | null = null;
  #lastActivity = 0;
  #closeTimer: NodeJS.Timeout | null = null;
  #closedPromise: Promise<void> | null = null;
  #resolveClosed: () => void = noop;
  readonly #onWritten: (error?: Error | null) => void;
  readonly #sink: TransportSink;

  constructor(id: number, transport: Transport, codec: Codec<F>, ctx: EngineContext<F, T>) {
    this.id = id;
    this.#transport = transport;
    this.#codec = codec;
    this.#ctx = ctx;
    this.#handler = ctx.handler;
    this.#pool = ctx.pool;
    const o = ctx.options;
    this.#maxFrameSize = o.maxFrameSize;
    this.#hwm = o.highWaterMark;
    this.#lwm = o.lowWaterMark;
    this.remoteAddress = transport.remoteAddress;
    this.localAddress = transport.localAddress;
    this.#onWritten = (error) => this.#written(error);
    this.#sink = {
      data: (chunk) => this.#onData(chunk),
      end: () => this.#onEnd(),
      closed: (error) => this.#onClosed(error),
    };
    if (o.idleTimeoutMs > 0) {
      this.#lastActivity = performance.now();
      this.#idleTimer = setTimeout(() => this.#checkIdle(), o.idleTimeoutMs);
      this.#idleTimer.unref();
    }
  }

  /** Called by the engine once the connection is registered. */
  start(): void {
    if (openChannel.hasSubscribers) openChannel.publish({ connection: this });
    if (this.#handler.onReady !== undefined) {
      try {
        this.#handler.onReady(this);
      } catch (error) {
        this.#fail(new WireHandlerError('onReady threw', { cause: error }));
      }
    }
    if (this.#state !== CLOSED) this.#transport.start(this.#sink);
  }

  get closed(): boolean {
    return this.#state === CLOSED;
  }

  get isPaused(): boolean {
    return this.#paused;
  }

  get isWritable(): boolean {
    return this.#writableFlag && this.#state === OPEN;
  }

  get outboxSize(): number {
    return this.#outbox;
  }

  // ---------------------------------------------------------------- reading

  /** TransportSink: bytes arrived. The hot path: a tight decode loop over the chunk. */
  #onData(chunk: Uint8Array): void {
    if (this.#state === CLOSED) return;
    if (this.#idleTimer !== null) this.#lastActivity = performance.now();
    if (this.#paused) {
      // A transport may deliver a chunk already on its way when pause() was called: keep it
      // for resume(), and pause the transport again so this cannot repeat without bound.
      this.#stashRest(chunk, 0, chunk.length, 0);
      this.#transport.pause();
      return;
    }
    this.#inRead = true;
    let inHandler = false;
    try {
      let pos = 0;
      const end = chunk.length;
      if (this.#stash !== null) {
        pos = this.#completeStashed(chunk);
        if (pos < 0) return;
      }
      // The tight loop: decode in place, hand each frame to onFrame.
      const codec = this.#codec;
      const handler = this.#handler;
      const maxFrameSize = this.#maxFrameSize;
      const fast = codec.decodeAt !== undefined;
      while (pos < end && this.#reading) {
        const r = fast
          ? (codec as Required<Codec<F>>).decodeAt(chunk, pos, end)
          : codec.decode(pos === 0 ? chunk : chunk.subarray(pos, end));
        if ((r as Incomplete).incomplete === true) {
          this.#stashRest(chunk, pos, end, (r as Incomplete).bytesNeeded ?? 0);
          return;
        }
        const n = (r as Decoded<F>).bytesRead;
        if (!(n > 0 && n <= end - pos)) throw new WireProtocolError(`codec returned bytesRead ${n}`);
        if (n > maxFrameSize) throw tooLarge(n, maxFrameSize);
        pos += n;
        inHandler = true;
        handler.onFrame(this, (r as Decoded<F>).frame);
        inHandler = false;
      }
      if (pos < end && this.#state !== CLOSED) this.#stashRest(chunk, pos, end, 0);
    } catch (error) {
      this.#readFailed(error, inHandler);
    } finally {
      this.#inRead = false;
      if (this.#state === CLOSED) this.#releaseStash();
    }
  }

  #readFailed(error: unknown, inHandler: boolean): void {
    if (inHandler) this.#fail(new WireHandlerError('onFrame threw', { cause: error }));
    else if (error instanceof WireError) this.#fail(error);
    else this.#fail(new WireProtocolError('the codec failed to decode', { cause: error }));
  }

  /** Keeps `chunk[pos, end)` (an incomplete frame, or the rest after a pause) in the stash. */
  #stashRest(chunk: Uint8Array, pos: number, end: number, bytesNeeded: number): void {
    const rest = end - pos;
    const need = bytesNeeded > rest ? bytesNeeded : 0;
    if (need > this.#maxFrameSize) throw tooLarge(need, this.#maxFrameSize);
    if (this.#reading && need === 0 && rest > this.#maxFrameSize) throw tooLarge(rest, this.#maxFrameSize);
    let stash = this.#stash;
    if (stash === null) {
      stash = this.#pool.acquire(need > rest ? need : rest);
      this.#stash = stash;
      this.#stashStart = 0;
      this.#stashEnd = 0;
    } else if (this.#stashEnd + rest > stash.length) {
      stash = this.#growStash(this.#stashEnd - this.#stashStart + rest);
    }
    stash.set(chunk.subarray(pos, end), this.#stashEnd);
    this.#stashEnd += rest;
    this.#need = need;
  }

  #growStash(minSize: number): Uint8Array {
    const old = this.#stash as Uint8Array;
    const bigger = this.#pool.acquire(minSize);
    bigger.set(old.subarray(this.#stashStart, this.#stashEnd), 0);
    this.#stashEnd -= this.#stashStart;
    this.#stashStart = 0;
    this.#pool.release(old);
    this.#stash = bigger;
    return bigger;
  }

  #releaseStash(): void {
    if (this.#stash !== null) {
      this.#pool.release(this.#stash);
      this.#stash = null;
      this.#stashStart = this.#stashEnd = this.#need = 0;
    }
  }

  /**
   * A chunk arrived while the stash holds the prefix of one frame: copy from the chunk only
   * what that frame needs (all of it when the codec said its size, else in doubling steps),
   * decode it from the stash, release the stash, and return where the chunk continues; -1
   * when the chunk was used up (or the connection closed or paused).
   */
  #completeStashed(chunk: Uint8Array): number {
    const end = chunk.length;
    let cpos = 0;
    const codec = this.#codec;
    for (;;) {
      let stash = this.#stash as Uint8Array;
      const have = this.#stashEnd - this.#stashStart;
      let want: number;
      if (this.#need > have) {
        want = this.#need - have;
      } else {
        if (have >= this.#maxFrameSize) throw tooLarge(have + 1, this.#maxFrameSize);
        want = have < 1024 ? 1024 : have;
      }
      const take = Math.min(want, end - cpos);
      if (this.#stashEnd + take > stash.length) {
        stash = this.#growStash(have + take);
      }
      stash.set(chunk.subarray(cpos, cpos + take), this.#stashEnd);
      this.#stashEnd += take;
      cpos += take;
      const total = have + take;
      if (this.#need > total) return -1; // still short; the chunk is used up
      const r =
        codec.decodeAt !== undefined
          ? codec.decodeAt(stash, this.#stashStart, this.#stashEnd)
          : codec.decode(stash.subarray(this.#stashStart, this.#stashEnd));
      if ((r as Incomplete).incomplete === true) {
        const needed = (r as Incomplete).bytesNeeded ?? 0;
        this.#need = needed > total ? needed : 0;
        if (this.#need > this.#maxFrameSize) throw tooLarge(this.#need, this.#maxFrameSize);
        if (cpos === end) return -1;
        continue;
      }
      const n = (r as Decoded<F>).bytesRead;
      // A consistent codec needs more than the bytes it called incomplete before.
      if (!(n > have && n <= total)) throw new WireProtocolError(`codec returned bytesRead ${n}`);
      if (n > this.#maxFrameSize) throw tooLarge(n, this.#maxFrameSize);
      // The frame used all of the old stash (it was incomplete without the chunk), so the
      // rest of the stash is chunk bytes: continue in the chunk itself.
      const back = total - n;
      cpos -= back;
      try {
        this.#handler.onFrame(this, (r as Decoded<F>).frame);
      } catch (error) {
        throw new WireHandlerError('onFrame threw', { cause: error });
      } finally {
        this.#releaseStash();
      }
      if (this.#state === CLOSED) return -1;
      if (!this.#reading) {
        if (cpos < end) this.#stashRest(chunk, cpos, end, 0);
        return -1;
      }
      return cpos;
    }
  }

  /** TransportSink: the peer ended its side. */
  #onEnd(): void {
    this.#peerEnded = true;
    if (this.#state === CLOSED) return;
    if (this.#stash !== null && !this.#paused) {
      this.#fail(new WireTruncatedFrameError('the peer ended the stream inside a frame'));
      return;
    }
    // No half-open connections: flush what is queued, then end our side too.
    if (this.#state === OPEN) void this.close();
  }

  /** TransportSink: the transport is gone. */
  #onClosed(error?: Error): void {
    if (this.#state === CLOSED) return;
    if (error !== undefined)
      this.#finish(new WireTransportError(`transport failed: ${error.message}`, { cause: error }));
    else if (this.#stash !== null)
      this.#finish(new WireTruncatedFrameError('the stream closed inside a frame'));
    else this.#finish(undefined);
  }

  pause(): void {
    if (this.#paused || this.#state === CLOSED) return;
    this.#paused = true;
    this.#reading = false;
    this.#transport.pause();
  }

  resume(): void {
    if (!this.#paused || this.#state === CLOSED) return;
    this.#paused = false;
    this.#reading = true;
    if (this.#stash !== null) {
      // Deliver what was stashed before new bytes, on a later turn, so resume() called from
      // inside onFrame does not recurse.
      setImmediate(() => this.#drainStash());
    } else {
      this.#transport.resume();
    }
  }

  #drainStash(): void {
    if (this.#state === CLOSED || this.#paused) return;
    const stash = this.#stash;
    if (stash === null) {
      this.#transport.resume();
      return;
    }
    // Take the stash: decode it like a chunk (stashing an incomplete tail anew).
    this.#stash = null;
    const start = this.#stashStart;
    const end = this.#stashEnd;
    this.#stashStart = this.#stashEnd = this.#need = 0;
    try {
      this.#onData(start === 0 ? stash.subarray(0, end) : stash.subarray(start, end));
    } finally {
      this.#pool.release(stash);
    }
    if (this.#state !== CLOSED && !this.#paused) {
      if (this.#peerEnded) this.#onEnd();
      else this.#transport.resume();
    }
  }

  // ---------------------------------------------------------------- writing

  send(frame: F): boolean {
    if (this.#state !== OPEN) return false;
    let buf = this.#wbuf;
    if (buf === null) buf = this.#claim();
    const codec = this.#codec;
    const at = this.#wpos;
    let n =
      codec.encodeAt !== undefined
        ? codec.encodeAt(frame, buf, at)
        : codec.encode(frame, at === 0 ? buf : buf.subarray(at));
    if (n === INSUFFICIENT_BUFFER) n = this.#encodeSlow(frame);
    else if (!(n >= 0 && n <= buf.length - at)) {
      throw new WireInvalidArgumentError(`codec.encode returned ${String(n)}`);
    } else if (n > this.#maxFrameSize) {
      throw tooLarge(n, this.#maxFrameSize);
    } else {
      this.#wpos = at + n;
    }
    this.#outbox += n;
    if (!this.flushQueued) this.#ctx.scheduleFlush(this);
    if (this.#outbox >= this.#hwm) {
      this.#writableFlag = false;
      if (this.#outbox > this.#ctx.options.maxOutboxSize) {
        this.destroy(
          new WireOutboxOverflowError(
            `outbox of ${this.#outbox} bytes passed maxOutboxSize ${this.#ctx.options.maxOutboxSize}`,
          ),
        );
      }
      return false;
    }
    return this.#writableFlag;
  }

  /** Takes the tail of the engine's write slab as this connection's write region. */
  #claim(): Uint8Array {
    const slab = this.#ctx.slab;
    const buf = slab.claim(this);
    this.#wbuf = buf;
    this.#wstart = this.#wpos = slab.position;
    return buf;
  }

  /** SlabTenant: stop writing into the current region; queue what was written in it. */
  sealWrite(): void {
    const buf = this.#wbuf;
    if (buf === null) return;
    const start = this.#wstart;
    const end = this.#wpos;
    const len = end - start;
    this.#wbuf = null;
    this.#wstart = this.#wpos = 0;
    this.#ctx.slab.sealed(this, buf, end);
    if (len > 0) {
      this.#pending.push(buf);
      this.#pendingStarts.push(start);
      this.#pendingLens.push(len);
    } else {
      this.#ctx.slab.unref(buf);
    }
  }

  /** The frame did not fit the rest of the region: try a fresh slab, then a private buffer
   *  growing (by doubling) up to maxFrameSize. Returns the bytes written. */
  #encodeSlow(frame: F): number {
    const slab = this.#ctx.slab;
    const codec = this.#codec;
    const hint = codec.encodedSize !== undefined ? codec.encodedSize(frame) : 0;
    if (hint > this.#maxFrameSize) throw tooLarge(hint, this.#maxFrameSize);
    this.sealWrite();
    slab.retire(); // its tail is too short for this frame: the next claim takes a fresh slab
    if (hint <= this.#pool.bufferSize) {
      const fresh = this.#claim();
      const n = this.#encodeChecked(frame, fresh, 0);
      if (n !== INSUFFICIENT_BUFFER) {
        this.#wpos = n;
        return n;
      }
      this.sealWrite();
    }
    let size = hint > 0 ? hint : this.#pool.bufferSize * 2;
    for (;;) {
      const buf = slab.acquirePrivate(size);
      const m = this.#encodeChecked(frame, buf, 0, () => slab.unref(buf));
      if (m !== INSUFFICIENT_BUFFER) {
        this.#wbuf = buf;
        this.#wstart = 0;
        this.#wpos = m;
        return m;
      }
      slab.unref(buf);
      if (buf.length >= this.#maxFrameSize) {
        throw new WireFrameTooLargeError(
          `the frame does not encode into maxFrameSize ${this.#maxFrameSize} bytes`,
        );
      }
      size = Math.min(buf.length * 2, this.#maxFrameSize);
    }
  }

  #encodeChecked(
    frame: F,
    buf: Uint8Array,
    at: number,
    onThrow?: () => void,
  ): number | typeof INSUFFICIENT_BUFFER {
    const codec = this.#codec;
    const n =
      codec.encodeAt !== undefined
        ? codec.encodeAt(frame, buf, at)
        : codec.encode(frame, at === 0 ? buf : buf.subarray(at));
    if (n === INSUFFICIENT_BUFFER) return n;
    if (!(n >= 0 && n <= buf.length - at)) {
      onThrow?.();
      throw new WireInvalidArgumentError(`codec.encode returned ${String(n)}`);
    }
    if (n > this.#maxFrameSize) {
      onThrow?.();
      throw tooLarge(n, this.#maxFrameSize);
    }
    return n;
  }

  /** Called once per turn by the engine: hand everything queued to the transport in one write. */
  flush(): void {
    this.flushQueued = false;
    if (this.#writing || this.#state === CLOSED) return;
    this.sealWrite();
    const pending = this.#pending;
    const count = pending.length;
    if (count === 0) {
      if (this.#state === CLOSING) this.#endIfFlushed();
      return;
    }
    const starts = this.#pendingStarts;
    const lens = this.#pendingLens;
    const chunks: Uint8Array[] = new Array<Uint8Array>(count);
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const start = starts[i] as number;
      const len = lens[i] as number;
      chunks[i] = (pending[i] as Uint8Array).subarray(start, start + len);
      bytes += len;
    }
    this.#inflight = pending;
    this.#inflightBytes = bytes;
    this.#pending = [];
    this.#pendingStarts = [];
    this.#pendingLens = [];
    this.#writing = true;
    if (this.#idleTimer !== null) this.#lastActivity = performance.now();
    this.#transport.write(chunks, this.#onWritten);
  }

  #written(error?: Error | null): void {
    if (!this.#writing) return;
    this.#writing = false;
    const inflight = this.#inflight;
    this.#inflight = [];
    const slab = this.#ctx.slab;
    for (const b of inflight) slab.unref(b);
    if (this.#state === CLOSED) return;
    this.#outbox -= this.#inflightBytes;
    this.#inflightBytes = 0;
    if (this.#idleTimer !== null) this.#lastActivity = performance.now();
    if (error) {
      this.#fail(new WireTransportError(`write failed: ${error.message}`, { cause: error }));
      return;
    }
    // More was queued while this write was in flight: send it now, as one batch.
    if (this.#pending.length > 0 || this.#wpos > this.#wstart) this.flush();
    else if (this.#state === CLOSING) this.#endIfFlushed();
    if (!this.#writableFlag && this.#outbox <= this.#lwm) {
      this.#writableFlag = true;
      const drain = this.#drain;
      this.#drain = null;
      drain?.resolve();
      if (this.#handler.onDrain !== undefined && this.#state !== CLOSED) {
        try {
          this.#handler.onDrain(this);
        } catch (e) {
          this.#fail(new WireHandlerError('onDrain threw', { cause: e }));
        }
      }
    }
  }

  get writable(): Promise<void> {
    if (this.#state === CLOSED) {
      return Promise.reject(new WireConnectionClosedError('the connection is closed'));
    }
    if (this.#writableFlag) return Promise.resolve();
    if (this.#drain === null) {
      let resolve: () => void = noop;
      let reject: (e: Error) => void = noop;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#drain = { promise, resolve, reject };
    }
    return this.#drain.promise;
  }

  // ---------------------------------------------------------------- timers

  setTimeout(ms: number, token: T): TimerId {
    if (!(Number.isFinite(ms) && ms >= 0))
      throw new WireInvalidArgumentError(`timeout ms must be >= 0, got ${ms}`);
    if (this.#state === CLOSED) throw new WireConnectionClosedError('the connection is closed');
    const id = ++this.#nextTimer;
    const timers = (this.#timers ??= new Map());
    timers.set(
      id,
      setTimeout(() => {
        timers.delete(id);
        if (this.#state === CLOSED) return;
        if (this.#handler.onTimeout === undefined) return;
        try {
          this.#handler.onTimeout(this, token);
        } catch (error) {
          this.#fail(new WireHandlerError('onTimeout threw', { cause: error }));
        }
      }, ms),
    );
    return id;
  }

  clearTimeout(id: TimerId): void {
    const timer = this.#timers?.get(id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.#timers?.delete(id);
    }
  }

  #checkIdle(): void {
    if (this.#state === CLOSED) return;
    const idleMs = this.#ctx.options.idleTimeoutMs;
    const quiet = performance.now() - this.#lastActivity;
    // Activity only stamps a time (no timer work per chunk); the timer re-arms for the rest.
    if (quiet >= idleMs) {
      this.#idleTimer = null;
      this.#fail(new WireIdleTimeoutError(`no traffic for ${idleMs} ms`));
      return;
    }
    this.#idleTimer = setTimeout(() => this.#checkIdle(), Math.max(1, idleMs - quiet));
    this.#idleTimer.unref();
  }

  // ---------------------------------------------------------------- closing

  close(): Promise<void> {
    if (this.#state === OPEN) {
      this.#state = CLOSING;
      this.#closeTimer = setTimeout(() => {
        this.#closeTimer = null;
        this.#finishTransport(new WireConnectionClosedError('the peer did not close within closeTimeoutMs'));
      }, this.#ctx.options.closeTimeoutMs);
      this.#endIfFlushed();
    }
    return this.#whenClosed();
  }

  #whenClosed(): Promise<void> {
    if (this.#state === CLOSED) return Promise.resolve();
    this.#closedPromise ??= new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    return this.#closedPromise;
  }

  #endIfFlushed(): void {
    if (this.#writing || this.#pending.length > 0 || this.#wpos > this.#wstart) {
      if (!this.flushQueued) this.#ctx.scheduleFlush(this);
      return;
    }
    this.#transport.end();
  }

  destroy(error?: Error): void {
    if (this.#state === CLOSED) return;
    const wireError =
      error === undefined
        ? undefined
        : error instanceof WireError
          ? error
          : new WireConnectionClosedError(`destroyed: ${error.message}`, { cause: error });
    this.#finishTransport(wireError);
  }

  #fail(error: WireError): void {
    this.#finishTransport(error);
  }

  #finishTransport(error: WireError | undefined): void {
    if (this.#state === CLOSED) return;
    this.#finish(error);
    this.#transport.destroy(error);
  }

  /** Releases everything and tells the handler. Runs once. */
  #finish(error: WireError | undefined): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    this.#reading = false;
    if (this.#timers !== null) {
      for (const t of this.#timers.values()) clearTimeout(t);
      this.#timers = null;
    }
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    if (this.#closeTimer !== null) clearTimeout(this.#closeTimer);
    this.#idleTimer = this.#closeTimer = null;
    if (!this.#inRead) this.#releaseStash();
    const slab = this.#ctx.slab;
    this.sealWrite();
    for (const b of this.#pending) slab.unref(b);
    this.#pending = [];
    this.#pendingStarts = [];
    this.#pendingLens = [];
    // Buffers in flight may still be read by the transport: forget them, never reuse them.
    if (this.#writing) {
      for (const b of this.#inflight) {
        slab.poison(b);
        slab.unref(b);
      }
      this.#inflight = [];
      this.#writing = false;
    }
    this.#outbox = 0;
    const drain = this.#drain;
    this.#drain = null;
    if (drain !== null) {
      drain.reject(
        new WireConnectionClosedError('the connection closed before it drained', { cause: error }),
      );
    }
    this.#ctx.removed(this);
    const handler = this.#handler;
    if (error !== undefined) {
      if (errorChannel.hasSubscribers) errorChannel.publish({ connection: this, error });
      if (handler.onError !== undefined) {
        try {
          handler.onError(this, error);
        } catch (e) {
          if (errorChannel.hasSubscribers)
            errorChannel.publish({ connection: this, error: e, in: 'onError' });
        }
      }
    }
    if (closeChannel.hasSubscribers) closeChannel.publish({ connection: this, error });
    if (handler.onClosed !== undefined) {
      try {
        handler.onClosed(this, error);
      } catch (e) {
        if (errorChannel.hasSubscribers) errorChannel.publish({ connection: this, error: e, in: 'onClosed' });
      }
    }
    this.#resolveClosed();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function tooLarge(size: number, max: number): WireFrameTooLargeError {
  return new WireFrameTooLargeError(`a frame of ${size} bytes is over maxFrameSize ${max}`);
}
