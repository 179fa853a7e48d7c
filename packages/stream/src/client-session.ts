/**
 * The client end of one connection: opens requests on odd stream ids, receives sources and
 * their records, returns credit as the application consumes, cancels on break, abort and
 * timeouts. Plain TypeScript over a `FrameLink`; sockets live elsewhere.
 */
import { Buffer } from 'node:buffer';
import { decompressRecord } from './compression.js';
import {
  StreamCancelledError,
  StreamClosedError,
  StreamConnectionLostError,
  StreamError,
  StreamGoawayError,
  StreamKeepaliveTimeoutError,
  StreamProtocolError,
  StreamRefusedError,
  StreamRemoteError,
  StreamTimeoutError,
} from './errors.js';
import {
  FrameType,
  MAX_STREAM_ID,
  PAYLOAD_ALLOWANCE,
  RECORD_LENGTH_MASK,
  RECORD_LZ4,
  type Frame,
  type RequestFrame,
} from './frames.js';
import { Keepalive } from './internal/keepalive.js';
import { type FrameLink, Waiter, deadline } from './internal/link.js';
import { publish } from './internal/diagnostics.js';
import type { ResolvedClientOptions } from './options.js';

/** The frames of one source: one at a time, or a batch (every frame already arrived) at a time. */
export interface Frames extends AsyncIterable<Uint8Array> {
  /**
   * Batches of frames, as they arrived: whole DATA frames, as many as are buffered up to the
   * client's `frameBufferSize` frames (one DATA frame of more is handed over whole). One
   * `await` per batch instead of per frame: the fast way to read small frames. The arrays
   * belong to the caller.
   */
  batches(): AsyncIterable<Uint8Array[]>;
}

/** A source announced by the server: its header, where it came from, and its frames. */
export interface Source {
  readonly header: Uint8Array;
  readonly meta: { readonly remoteAddress: string };
  readonly frames: Frames;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });

/** The first StreamError in `error`'s cause chain. */
export function streamCause(error: unknown): StreamError | undefined {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e instanceof StreamError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Maps an ERROR frame to the typed error the application sees. */
function remoteError(code: string, message: string): StreamError {
  switch (code) {
    case 'STREAM_ERR_REFUSED':
      return new StreamRefusedError(message);
    case 'STREAM_ERR_GOAWAY':
      return new StreamGoawayError(message);
    case 'STREAM_ERR_TIMEOUT': {
      const match = /^(\w+Ms)\b/.exec(message);
      return new StreamTimeoutError(match?.[1] ?? 'server', message);
    }
    default:
      return new StreamRemoteError(code, message);
  }
}

/**
 * A record handed to the application: a view that is a `Buffer` for every purpose (`instanceof
 * Buffer`, `Buffer.isBuffer`, every Buffer method, `subarray` gives the same kind) but is made
 * by a plain typed-array constructor, ~20 ns instead of `Buffer.from(arrayBuffer, offset,
 * length)`'s ~40–70 ns and `subarray`'s ~75 ns: at 64 B this is the client's largest cost per
 * frame. Its prototype is not `Buffer.prototype` itself, so only a strict deep equality
 * against a `Buffer` tells them apart (compare bytes, e.g. `Buffer.compare`, instead).
 */
class RecordView extends Uint8Array {}
Object.setPrototypeOf(RecordView.prototype, Buffer.prototype as object);

/** A DATA payload copied out of the read buffer (reused after onFrame); the records will view it. */
function copyPayload(payload: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafe(payload.length);
  copy.set(payload);
  return copy;
}

/** Does any record of this (validated) payload carry the LZ4 flag? */
function hasLz4(payload: Uint8Array, count: number): boolean {
  let p = 0;
  for (let i = 0; i < count; i++) {
    if ((payload[p]! & 0x80) !== 0) return true;
    p +=
      4 + (((payload[p]! & 0x7f) << 24) | (payload[p + 1]! << 16) | (payload[p + 2]! << 8) | payload[p + 3]!);
  }
  return false;
}

/**
 * The records of a copied DATA payload (validated by the decoder) as views into it: the
 * application owns what it is given.
 */
function splitRecords(copy: Buffer, count: number): Uint8Array[] {
  // allocUnsafe never hands out a SharedArrayBuffer.
  const ab = copy.buffer as ArrayBuffer;
  const base = copy.byteOffset;
  const records: Uint8Array[] = new Array<Uint8Array>(count);
  let p = 0;
  for (let i = 0; i < count; i++) {
    const h = ((copy[p]! << 24) | (copy[p + 1]! << 16) | (copy[p + 2]! << 8) | copy[p + 3]!) >>> 0;
    const n = h & RECORD_LENGTH_MASK;
    const view = new RecordView(ab, base + p + 4, n);
    records[i] = (h & RECORD_LZ4) !== 0 ? decompressRecord(view) : view;
    p += 4 + n;
  }
  return records;
}

/**
 * One DATA frame's records, kept as the payload copy until the application takes them: what
 * a source buffers is bytes (bounded by the byte window), and only the frames being handed
 * over exist as objects (chanserv's frame channel, `frameBufferSize`).
 */
interface Chunk {
  payload: Buffer | null;
  records: Uint8Array[] | null;
  readonly count: number;
  pos: number;
  readonly stored: number;
}

function recordsOf(chunk: Chunk): Uint8Array[] {
  let records = chunk.records;
  if (records === null) {
    records = splitRecords(chunk.payload!, chunk.count);
    chunk.records = records;
    chunk.payload = null;
  }
  return records;
}

class ClientSource implements Source, Frames {
  readonly id: number;
  readonly header: Uint8Array;
  readonly meta: { readonly remoteAddress: string };
  readonly #session: ClientSession;
  readonly #request: ClientRequest;
  readonly #chunks: Chunk[] = [];
  #head = 0;
  // Frames and stored bytes received and not yet returned as credit.
  #outstandingFrames = 0;
  #outstandingBytes = 0;
  #consumedFrames = 0;
  #consumedBytes = 0;
  /** END or ERROR arrived, or we cancelled: nothing more comes from the server. */
  finished = false;
  #error: Error | null = null;
  #errorThrown = false;
  #iterated = false;
  readonly #waiter = new Waiter();

  constructor(id: number, request: ClientRequest, header: Uint8Array, session: ClientSession) {
    this.id = id;
    this.#request = request;
    this.header = header;
    this.meta = Object.freeze({ remoteAddress: session.remoteAddress });
    this.#session = session;
  }

  get frames(): Frames {
    return this;
  }

  // --- from the wire ---

  /** A DATA payload (validated, aliasing the read buffer) of `count` records, `stored` bytes. */
  push(payload: Uint8Array, count: number, stored: number): void {
    this.#outstandingFrames += count;
    this.#outstandingBytes += stored;
    const r = this.#request;
    if (
      this.#outstandingFrames > r.frameWindow ||
      this.#outstandingBytes > r.byteWindow + this.#session.options.maxFrameSize + PAYLOAD_ALLOWANCE
    ) {
      throw new StreamProtocolError(`server overran the credit of source ${this.id}`);
    }
    const copy = copyPayload(payload);
    // LZ4 records are decompressed on receipt: a bad block is the connection's protocol
    // error, found before any of it is handed out, as without compression.
    const records = hasLz4(copy, count) ? splitRecords(copy, count) : null;
    this.#chunks.push({ payload: records === null ? copy : null, records, count, pos: 0, stored });
    this.#waiter.wake();
  }

  end(): void {
    this.finished = true;
    this.#waiter.wake();
    this.#request.sourceFinished(this);
  }

  fail(error: Error): void {
    if (this.#error === null && !(this.finished && this.#chunks.length === this.#head)) this.#error = error;
    this.finished = true;
    this.#waiter.wake();
    this.#request.sourceFinished(this);
  }

  /** Cancel on the wire (break, abort, timeout); what is buffered is dropped. */
  cancel(reason: string, error: Error | null): void {
    if (!this.finished) {
      this.#session.cancelStream(this.id, reason);
      this.finished = true;
      this.#request.sourceFinished(this);
    }
    if (error !== null && this.#error === null) this.#error = error;
    this.#chunks.length = 0;
    this.#head = 0;
    this.#waiter.wake();
  }

  // --- to the application ---

  #afterConsume(frames: number, bytes: number): void {
    this.#consumedFrames += frames;
    this.#consumedBytes += bytes;
    if (this.finished) return;
    const r = this.#request;
    if (this.#consumedFrames >= r.frameCreditBatch || this.#consumedBytes >= r.byteCreditBatch) {
      this.#outstandingFrames -= this.#consumedFrames;
      this.#outstandingBytes -= this.#consumedBytes;
      this.#session.sendCredit(this.id, this.#consumedFrames, this.#consumedBytes);
      this.#consumedFrames = 0;
      this.#consumedBytes = 0;
    }
  }

  #takeOne(): Uint8Array | undefined {
    const chunk = this.#chunks[this.#head];
    if (chunk === undefined) return undefined;
    const record = recordsOf(chunk)[chunk.pos++]!;
    let bytes = 0;
    if (chunk.pos === chunk.count) {
      this.#chunks[this.#head++] = undefined as never;
      if (this.#head === this.#chunks.length) {
        this.#chunks.length = 0;
        this.#head = 0;
      }
      bytes = chunk.stored;
    }
    this.#afterConsume(1, bytes);
    return record;
  }

  /**
   * What has arrived, in one array: whole DATA frames up to `frameBufferSize` frames (at
   * least one), so a consumer that fell behind needs fewer awaits and the objects handed
   * over stay bounded.
   */
  #takeBatch(): Uint8Array[] | undefined {
    const chunks = this.#chunks;
    let head = this.#head;
    const chunk = chunks[head];
    if (chunk === undefined) return undefined;
    const records = recordsOf(chunk);
    let out = chunk.pos === 0 ? records : records.slice(chunk.pos);
    let bytes = chunk.stored;
    chunks[head++] = undefined as never;
    const limit = this.#session.options.frameBufferSize;
    for (
      let next = chunks[head];
      next !== undefined && out.length + next.count <= limit;
      next = chunks[head]
    ) {
      if (out === records) out = records.slice();
      for (const r of recordsOf(next)) out.push(r);
      bytes += next.stored;
      chunks[head++] = undefined as never;
    }
    if (head === chunks.length) {
      chunks.length = 0;
      head = 0;
    }
    this.#head = head;
    this.#afterConsume(out.length, bytes);
    return out;
  }

  async #wait(): Promise<void> {
    const timeoutMs = this.#session.options.frameReadTimeoutMs;
    if (timeoutMs === 0) return this.#waiter.wait();
    const timer = deadline(timeoutMs, () => {
      this.cancel(
        'frameReadTimeoutMs',
        new StreamTimeoutError(
          'frameReadTimeoutMs',
          `frameReadTimeoutMs: no frame on source ${this.id} within ${timeoutMs} ms`,
        ),
      );
    });
    try {
      await this.#waiter.wait();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Throws the pending error once, then reports done. */
  #endOrThrow(): IteratorReturnResult<undefined> {
    if (this.#error !== null && !this.#errorThrown) {
      this.#errorThrown = true;
      throw this.#error;
    }
    return DONE;
  }

  async #slowNext<T>(take: () => T | undefined): Promise<IteratorResult<T>> {
    for (;;) {
      const value = take();
      if (value !== undefined) return { value, done: false };
      if (this.finished) return this.#endOrThrow();
      await this.#wait();
    }
  }

  #iterator<T>(take: () => T | undefined): AsyncIterator<T> {
    if (this.#iterated) throw new StreamClosedError('the frames of a source can be iterated once');
    this.#iterated = true;
    return {
      next: (): Promise<IteratorResult<T>> => {
        // Fast path: no async function frame when the frame is already here.
        const value = take();
        if (value !== undefined) return Promise.resolve({ value, done: false });
        return this.#slowNext(take);
      },
      return: (): Promise<IteratorResult<T>> => {
        this.cancel('consumer stopped', null);
        return Promise.resolve(DONE);
      },
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.#iterator(() => this.#takeOne());
  }

  batches(): AsyncIterable<Uint8Array[]> {
    return { [Symbol.asyncIterator]: () => this.#iterator(() => this.#takeBatch()) };
  }
}

/** One posted request: an async iterator of its sources. */
export class ClientRequest implements AsyncIterator<Source> {
  readonly id: number;
  readonly frameWindow: number;
  readonly byteWindow: number;
  readonly sourceWindow: number;
  readonly frameCreditBatch: number;
  readonly byteCreditBatch: number;
  readonly #session: ClientSession;
  readonly #queue: ClientSource[] = [];
  #head = 0;
  readonly #live = new Set<ClientSource>();
  #taken = 0;
  /** END or ERROR arrived for the request, or we cancelled it. */
  #finished = false;
  #error: Error | null = null;
  #errorThrown = false;
  readonly #waiter = new Waiter();
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort: (() => void) | undefined;

  constructor(id: number, session: ClientSession, signal: AbortSignal | undefined) {
    const o = session.options;
    this.id = id;
    this.#session = session;
    this.frameWindow = o.streamWindowFrames;
    this.byteWindow = o.streamWindowBytes;
    this.sourceWindow = o.sourceBufferSize;
    this.frameCreditBatch = Math.max(1, this.frameWindow >>> 1);
    this.byteCreditBatch = Math.max(1, this.byteWindow >>> 1);
    this.#signal = signal;
    if (signal !== undefined) {
      this.#onAbort = () => this.abort(signal.reason as Error);
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  get finished(): boolean {
    return this.#finished;
  }

  // --- from the wire ---

  addSource(source: ClientSource): void {
    if (this.#queue.length - this.#head >= this.sourceWindow) {
      throw new StreamProtocolError(`server overran the source credit of request ${this.id}`);
    }
    this.#queue.push(source);
    this.#live.add(source);
    this.#waiter.wake();
  }

  end(): void {
    this.#finished = true;
    this.#waiter.wake();
    this.#maybeRelease();
  }

  fail(error: Error): void {
    if (this.#error === null) this.#error = error;
    this.#finished = true;
    this.#waiter.wake();
    this.#maybeRelease();
  }

  sourceFinished(source: ClientSource): void {
    this.#live.delete(source);
    this.#session.forgetSource(source.id);
    this.#maybeRelease();
  }

  /** Every stream of the request closed: stop listening to the signal, free the slot. */
  #maybeRelease(): void {
    if (!this.#finished || this.#live.size > 0) return;
    if (this.#onAbort !== undefined) this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#session.forgetRequest(this.id);
  }

  /** Connection gone: the request and every source of it fail. */
  failAll(error: Error): void {
    for (const s of [...this.#live]) s.fail(error);
    if (!this.#finished) this.fail(error);
  }

  /** Abort (signal or timeout): the request and every source of it are cancelled with `error`. */
  abort(error: Error): void {
    if (!this.#finished) {
      this.#session.cancelStream(this.id, 'aborted');
      this.#finished = true;
      this.#error = error;
    }
    for (const s of [...this.#live]) s.cancel('aborted', error);
    this.#queue.length = 0;
    this.#head = 0;
    this.#waiter.wake();
    this.#maybeRelease();
  }

  // --- to the application ---

  async #wait(): Promise<void> {
    const timeoutMs = this.#session.options.masterReadTimeoutMs;
    if (timeoutMs === 0) return this.#waiter.wait();
    const timer = deadline(timeoutMs, () => {
      this.abort(
        new StreamTimeoutError(
          'masterReadTimeoutMs',
          `masterReadTimeoutMs: no source announced on request ${this.id} within ${timeoutMs} ms`,
        ),
      );
    });
    try {
      await this.#waiter.wait();
    } finally {
      clearTimeout(timer);
    }
  }

  async next(): Promise<IteratorResult<Source>> {
    for (;;) {
      const source = this.#queue[this.#head];
      if (source !== undefined) {
        this.#queue[this.#head++] = undefined as never;
        if (this.#head === this.#queue.length) {
          this.#queue.length = 0;
          this.#head = 0;
        }
        this.#creditSource();
        return { value: source, done: false };
      }
      if (this.#finished) {
        if (this.#error !== null && !this.#errorThrown) {
          this.#errorThrown = true;
          throw this.#error;
        }
        return DONE;
      }
      await this.#wait();
    }
  }

  #creditSource(): void {
    this.#taken++;
    if (this.#finished) return;
    if (this.#taken >= Math.max(1, this.sourceWindow >>> 1)) {
      this.#session.sendCredit(this.id, this.#taken, 0);
      this.#taken = 0;
    }
  }

  /**
   * `break` out of the sources: stop the source function and cancel every source of the
   * request that is still open (a taken one being read elsewhere fails with
   * STREAM_ERR_CANCELLED), so no producer is left behind.
   */
  return(): Promise<IteratorResult<Source>> {
    if (!this.#finished) {
      this.#session.cancelStream(this.id, 'consumer stopped');
      this.#finished = true;
    }
    const untaken = new Set(this.#queue.slice(this.#head));
    const cancelled = new StreamCancelledError('the request was cancelled: its sources loop was left');
    for (const s of [...this.#live]) s.cancel('consumer stopped', untaken.has(s) ? null : cancelled);
    this.#queue.length = 0;
    this.#head = 0;
    this.#waiter.wake();
    this.#maybeRelease();
    return Promise.resolve(DONE);
  }
}

export interface ClientSessionHooks {
  /** The session can take no new request (GOAWAY, closing or closed). */
  unusable(session: ClientSession): void;
  error(error: Error): void;
}

/** The client end of one connection. */
export class ClientSession {
  readonly options: ResolvedClientOptions;
  readonly remoteAddress: string;
  readonly #link: FrameLink;
  readonly #hooks: ClientSessionHooks;
  readonly #requests = new Map<number, ClientRequest>();
  readonly #sources = new Map<number, ClientSource>();
  #nextId = 1;
  #lastSourceId = 0;
  #goawayLast = -1;
  #closed: Error | null = null;
  #connCredit = 0;
  readonly #connCreditBatch: number;
  readonly #keepalive: Keepalive;

  constructor(link: FrameLink, options: ResolvedClientOptions, hooks: ClientSessionHooks) {
    this.#link = link;
    this.options = options;
    this.remoteAddress = link.remoteAddress;
    this.#hooks = hooks;
    this.#connCreditBatch = Math.max(1, options.connectionWindowBytes >>> 1);
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
    this.#send({ type: FrameType.PREFACE, version: 1, windowBytes: options.connectionWindowBytes });
  }

  /** True while new requests may be opened here. */
  get usable(): boolean {
    return this.#closed === null && this.#goawayLast < 0 && this.#nextId <= MAX_STREAM_ID;
  }

  /** Requests open (not yet forgotten). */
  get openRequests(): number {
    return this.#requests.size;
  }

  #send(frame: Frame): boolean {
    if (this.#closed !== null) return true;
    return this.#link.send(frame);
  }

  /** Opens a request: the REQUEST frame goes out in this turn, no round trip. */
  open(body: Uint8Array, tags: ReadonlyMap<string, string>, signal?: AbortSignal): ClientRequest {
    if (!this.usable) throw this.#closed ?? new StreamGoawayError('the connection is going away');
    const id = this.#nextId;
    this.#nextId += 2;
    const request = new ClientRequest(id, this, signal);
    this.#requests.set(id, request);
    const frame: RequestFrame = {
      type: FrameType.REQUEST,
      streamId: id,
      sourceWindow: request.sourceWindow,
      frameWindow: request.frameWindow,
      byteWindow: request.byteWindow,
      tags,
      body,
    };
    const fits = this.#send(frame);
    const writeMs = this.options.masterWriteTimeoutMs;
    if (!fits && writeMs > 0) {
      const timer = deadline(writeMs, () =>
        request.abort(
          new StreamTimeoutError(
            'masterWriteTimeoutMs',
            `masterWriteTimeoutMs: request not written in ${writeMs} ms`,
          ),
        ),
      );
      void this.#link.writable.then(
        () => clearTimeout(timer),
        () => clearTimeout(timer),
      );
    }
    if (this.#nextId > MAX_STREAM_ID) this.#hooks.unusable(this);
    publish('request', { remoteAddress: this.remoteAddress, requestId: id, side: 'client' });
    return request;
  }

  sendCredit(streamId: number, frames: number, bytes: number): void {
    this.#send({ type: FrameType.CREDIT, streamId, frames, bytes });
  }

  cancelStream(streamId: number, reason: string): void {
    this.#send({ type: FrameType.CANCEL, streamId, reason });
  }

  forgetSource(id: number): void {
    this.#sources.delete(id);
  }

  forgetRequest(id: number): void {
    this.#requests.delete(id);
    this.#maybeFinishGoaway();
  }

  #returnConnCredit(bytes: number): void {
    this.#connCredit += bytes;
    if (this.#connCredit >= this.#connCreditBatch) {
      this.sendCredit(0, 0, this.#connCredit);
      this.#connCredit = 0;
    }
  }

  /** Called by the engine for every decoded frame; byte views alias the read buffer. */
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
        return;
      case FrameType.SOURCE: {
        if (frame.streamId <= this.#lastSourceId) {
          throw new StreamProtocolError(`SOURCE id ${frame.streamId} not above ${this.#lastSourceId}`);
        }
        this.#lastSourceId = frame.streamId;
        const request = this.#requests.get(frame.requestId);
        if (request === undefined || request.finished) {
          // The request was cancelled while this source was on its way: cancel it too.
          if (frame.requestId >= this.#nextId)
            throw new StreamProtocolError('SOURCE for a request never opened');
          this.cancelStream(frame.streamId, 'request cancelled');
          return;
        }
        const source = new ClientSource(frame.streamId, request, Buffer.from(frame.header), this);
        this.#sources.set(frame.streamId, source);
        request.addSource(source);
        return;
      }
      case FrameType.DATA: {
        const payload = frame.payload!;
        const stored = payload.length - 4 * frame.count;
        this.#returnConnCredit(stored);
        const source = this.#sources.get(frame.streamId);
        if (source === undefined) {
          if (frame.streamId > this.#lastSourceId)
            throw new StreamProtocolError('DATA on a stream never opened');
          return;
        }
        source.push(payload, frame.count, stored);
        return;
      }
      case FrameType.END: {
        const source = this.#sources.get(frame.streamId);
        if (source !== undefined) return source.end();
        const request = this.#requests.get(frame.streamId);
        if (request !== undefined && !request.finished) request.end();
        return;
      }
      case FrameType.ERROR: {
        const error = remoteError(frame.code, frame.message);
        const source = this.#sources.get(frame.streamId);
        if (source !== undefined) return source.fail(error);
        const request = this.#requests.get(frame.streamId);
        if (request !== undefined && !request.finished) request.fail(error);
        return;
      }
      case FrameType.PING:
        if (!frame.ack)
          this.#send({ type: FrameType.PING, streamId: 0, ack: true, data: Buffer.from(frame.data) });
        return;
      case FrameType.GOAWAY: {
        this.#goawayLast = frame.lastRequestId;
        for (const [id, request] of this.#requests) {
          if (id > frame.lastRequestId) {
            request.failAll(new StreamGoawayError(`server going away (${frame.code}): ${frame.message}`));
          }
        }
        this.#hooks.unusable(this);
        this.#maybeFinishGoaway();
        return;
      }
      default:
        throw new StreamProtocolError(`a client does not accept frame type ${frame.type}`);
    }
  }

  #maybeFinishGoaway(): void {
    if (this.#goawayLast >= 0 && this.#requests.size === 0 && this.#closed === null) {
      this.#closed = new StreamGoawayError('the server went away');
      this.#keepalive.stop();
      void this.#link.close().catch(() => undefined);
    }
  }

  #destroy(error: Error): void {
    if (this.#closed === null) this.#link.destroy(error);
    this.onClosed(error);
  }

  /** The connection ended: every open request and source fails. */
  onClosed(error?: Error): void {
    const first = this.#closed === null;
    // A codec error reaches us wrapped by the engine (WIRE_ERR_PROTOCOL with our error as cause).
    const reason =
      streamCause(error) ??
      new StreamConnectionLostError(`connection to ${this.remoteAddress} lost`, { cause: error });
    if (first) this.#closed = reason;
    this.#keepalive.stop();
    for (const request of [...this.#requests.values()]) request.failAll(reason);
    this.#requests.clear();
    this.#sources.clear();
    if (first) {
      this.#hooks.unusable(this);
      if (error !== undefined) this.#hooks.error(reason);
    }
  }

  /** Close: cancel every open request, then end the connection gracefully. */
  async close(): Promise<void> {
    if (this.#closed !== null) return;
    const error = new StreamClosedError('the client was closed');
    for (const request of [...this.#requests.values()]) request.abort(error);
    this.#closed = error;
    this.#keepalive.stop();
    this.#hooks.unusable(this);
    await this.#link.close().catch(() => undefined);
  }
}
