import {
  INCOMPLETE,
  INSUFFICIENT_BUFFER,
  incomplete,
  type Codec,
  type Decoded,
  type Incomplete,
} from '../codec.js';
import { WireFrameTooLargeError, WireInvalidArgumentError, WireProtocolError } from '../errors.js';
import { checkInteger } from '../options.js';

export type LengthHeader = 'u32be' | 'u16be' | 'varint';

export interface LengthPrefixedOptions {
  /** Header before each payload: a big-endian u32, a big-endian u16 or an unsigned LEB128 varint
   *  (at most 5 bytes). Default 'u32be'. */
  header?: LengthHeader;
  /** Largest payload in bytes (the header not counted). Default 16 MiB - 8 (u16be: 65 535). */
  maxFrameSize?: number;
  /** Hand out copies instead of views of the read buffer. Default false: frames are views,
   *  valid only during `onFrame` (copying is the caller's choice). */
  copy?: boolean;
  /** `'window'`: frames are one reused `FrameWindow` per codec (buffer, offset, length) instead
   *  of a `Uint8Array` each — no allocation per frame, for the hottest paths. Default
   *  `'bytes'`. */
  frames?: 'bytes' | 'window';
}

/**
 * A payload in place: `buffer[offset, offset + length)`. With `frames: 'window'` the codec hands
 * the same object to every `onFrame` call, pointing into the read buffer: valid only during
 * the call. `send()` takes one too (any `{ buffer, offset, length }`).
 */
export interface FrameWindow {
  readonly buffer: Uint8Array;
  readonly offset: number;
  readonly length: number;
}

/** The reused window of a `frames: 'window'` codec. */
class Window implements FrameWindow {
  buffer: Uint8Array = new Uint8Array(0);
  offset = 0;
  length = 0;
}

const SMALL_COPY = 8;
const EMPTY = new ArrayBuffer(0);
// Incomplete headers, shared by every codec (frozen): a header cut by a chunk boundary
// allocates nothing.
const SHORT: readonly Incomplete[] = Object.freeze(
  [INCOMPLETE, incomplete(1), incomplete(2), incomplete(3), incomplete(4), incomplete(5)].map((r) =>
    Object.freeze(r),
  ),
);
// eslint-disable-next-line @typescript-eslint/unbound-method
const copyBytes = Uint8Array.prototype.slice;

/** Varint header length of a payload length. */
function varintLength(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/**
 * Length-prefixed byte frames. The codec is stateless (one instance may serve every
 * connection) and returns the same `Decoded` object each call, so decoding allocates only
 * the frame view itself.
 */
class LengthPrefixedCodec<F extends Uint8Array | FrameWindow> implements Codec<F> {
  readonly #header: LengthHeader;
  readonly #max: number;
  readonly #copy: boolean;
  readonly #window: Window | null;
  readonly #result: { frame: F; bytesRead: number } = { frame: undefined as unknown as F, bytesRead: 0 };
  #lastBuf: Uint8Array | null = null;
  #lastArrayBuffer: ArrayBufferLike = EMPTY;
  #lastBase = 0;

  constructor(header: LengthHeader, max: number, copy: boolean, window: boolean) {
    this.#header = header;
    this.#max = max;
    this.#copy = copy;
    this.#window = window ? new Window() : null;
  }

  encode(frame: F, buf: Uint8Array): number | typeof INSUFFICIENT_BUFFER {
    return this.encodeAt(frame, buf, 0);
  }

  decode(buf: Uint8Array): Decoded<F> | Incomplete {
    return this.decodeAt(buf, 0, buf.length);
  }

  encodedSize(frame: F): number {
    const len = this.#window === null ? (frame as Uint8Array).length : (frame as FrameWindow).length;
    const hdr = this.#header === 'u32be' ? 4 : this.#header === 'u16be' ? 2 : varintLength(len);
    return hdr + len;
  }

  encodeAt(frame: F, buf: Uint8Array, offset: number): number | typeof INSUFFICIENT_BUFFER {
    let src: Uint8Array;
    if (this.#window === null) src = frame as Uint8Array;
    else {
      const w = frame as FrameWindow;
      src = w.buffer.subarray(w.offset, w.offset + w.length);
    }
    const len = src.length;
    if (len > this.#max) {
      throw new WireFrameTooLargeError(`payload of ${len} bytes is over maxFrameSize ${this.#max}`);
    }
    let p = offset;
    switch (this.#header) {
      case 'u32be':
        if (p + 4 + len > buf.length) return INSUFFICIENT_BUFFER;
        buf[p] = len >>> 24;
        buf[p + 1] = (len >>> 16) & 0xff;
        buf[p + 2] = (len >>> 8) & 0xff;
        buf[p + 3] = len & 0xff;
        p += 4;
        break;
      case 'u16be':
        if (p + 2 + len > buf.length) return INSUFFICIENT_BUFFER;
        buf[p] = len >>> 8;
        buf[p + 1] = len & 0xff;
        p += 2;
        break;
      default: {
        if (p + varintLength(len) + len > buf.length) return INSUFFICIENT_BUFFER;
        let v = len;
        while (v >= 0x80) {
          buf[p++] = (v & 0x7f) | 0x80;
          v >>>= 7;
        }
        buf[p++] = v;
      }
    }
    // TypedArray.set has a fixed cost per call (~10 ns); a byte loop only wins for a few bytes
    // (for 64 bytes the loop is 5x slower).
    if (len <= SMALL_COPY) {
      for (let i = 0; i < len; i++) buf[p + i] = src[i] as number;
    } else {
      buf.set(src, p);
    }
    return p + len - offset;
  }

  decodeAt(buf: Uint8Array, start: number, end: number): Decoded<F> | Incomplete {
    const avail = end - start;
    let len: number;
    let hdr: number;
    switch (this.#header) {
      case 'u32be':
        if (avail < 4) return this.#short(4);
        len =
          (buf[start] as number) * 0x1000000 +
          (((buf[start + 1] as number) << 16) |
            ((buf[start + 2] as number) << 8) |
            (buf[start + 3] as number));
        hdr = 4;
        break;
      case 'u16be':
        if (avail < 2) return this.#short(2);
        len = ((buf[start] as number) << 8) | (buf[start + 1] as number);
        hdr = 2;
        break;
      default: {
        len = 0;
        hdr = 0;
        let shift = 0;
        for (;;) {
          if (hdr === avail) return this.#short(0);
          const b = buf[start + hdr] as number;
          hdr++;
          len += (b & 0x7f) * 2 ** shift;
          if (b < 0x80) break;
          shift += 7;
          if (hdr === 5) throw new WireProtocolError('varint length header longer than 5 bytes');
        }
      }
    }
    if (len > this.#max) {
      throw new WireFrameTooLargeError(`declared payload of ${len} bytes is over maxFrameSize ${this.#max}`);
    }
    const total = hdr + len;
    if (avail < total) {
      this.#forget();
      return incomplete(total);
    }
    const r = this.#result;
    const window = this.#window;
    if (window !== null) {
      window.buffer = buf;
      window.offset = start + hdr;
      window.length = len;
      r.frame = window as F;
      r.bytesRead = total;
      return r;
    }
    if (!this.#copy && buf !== this.#lastBuf) {
      // The buffer and byteOffset getters cost more than the view itself: read them once per
      // chunk, not once per frame.
      this.#lastBuf = buf;
      this.#lastArrayBuffer = buf.buffer;
      this.#lastBase = buf.byteOffset;
    }
    // Uint8Array's slice copies (Buffer's own slice would be a view).
    r.frame = (
      this.#copy
        ? copyBytes.call(buf, start + hdr, start + total)
        : // The constructor makes a view about twice as fast as subarray() (no species lookup).
          new Uint8Array(this.#lastArrayBuffer, this.#lastBase + start + hdr, len)
    ) as F;
    r.bytesRead = total;
    // The chunk is used up: do not keep it alive from an idle connection's codec.
    if (avail === total) this.#forget();
    return r;
  }

  #short(needed: number): Incomplete {
    this.#forget();
    return SHORT[needed] as Incomplete;
  }

  #forget(): void {
    this.#lastBuf = null;
    this.#lastArrayBuffer = EMPTY;
  }
}

/** Length-prefixed `Uint8Array` frames (or, with `frames: 'window'`, one reused `FrameWindow`). */
export function lengthPrefixed(options: LengthPrefixedOptions & { frames: 'window' }): Codec<FrameWindow>;
export function lengthPrefixed(options?: LengthPrefixedOptions & { frames?: 'bytes' }): Codec<Uint8Array>;
export function lengthPrefixed(options: LengthPrefixedOptions = {}): Codec<Uint8Array> | Codec<FrameWindow> {
  const header = options.header ?? 'u32be';
  if (header !== 'u32be' && header !== 'u16be' && header !== 'varint') {
    throw new WireInvalidArgumentError(
      `option "header" must be 'u32be', 'u16be' or 'varint', got ${String(header)}`,
    );
  }
  const limit = header === 'u16be' ? 0xffff : 16 * 1024 * 1024 - 8;
  const max = checkInteger(
    'maxFrameSize',
    options.maxFrameSize ?? limit,
    0,
    header === 'u16be' ? 0xffff : 2 ** 32 - 1,
  );
  const copy = options.copy ?? false;
  if (typeof copy !== 'boolean') throw new WireInvalidArgumentError('option "copy" must be a boolean');
  const frames = options.frames ?? 'bytes';
  if (frames !== 'bytes' && frames !== 'window') {
    throw new WireInvalidArgumentError(`option "frames" must be 'bytes' or 'window', got ${String(frames)}`);
  }
  if (frames === 'window') return new LengthPrefixedCodec<FrameWindow>(header, max, false, true);
  return new LengthPrefixedCodec<Uint8Array>(header, max, copy, false);
}
