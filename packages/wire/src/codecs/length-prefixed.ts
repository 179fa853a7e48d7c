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
}

const SMALL_COPY = 8;
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
class LengthPrefixedCodec implements Codec<Uint8Array> {
  readonly #header: LengthHeader;
  readonly #max: number;
  readonly #copy: boolean;
  readonly #result: { frame: Uint8Array; bytesRead: number } = { frame: new Uint8Array(0), bytesRead: 0 };
  readonly #need: Incomplete[];

  constructor(header: LengthHeader, max: number, copy: boolean) {
    this.#header = header;
    this.#max = max;
    this.#copy = copy;
    // Incomplete headers: preallocated, so a header cut by a chunk boundary allocates nothing.
    this.#need = [INCOMPLETE, incomplete(1), incomplete(2), incomplete(3), incomplete(4), incomplete(5)];
  }

  encode(frame: Uint8Array, buf: Uint8Array): number | typeof INSUFFICIENT_BUFFER {
    return this.encodeAt(frame, buf, 0);
  }

  decode(buf: Uint8Array): Decoded<Uint8Array> | Incomplete {
    return this.decodeAt(buf, 0, buf.length);
  }

  encodeAt(frame: Uint8Array, buf: Uint8Array, offset: number): number | typeof INSUFFICIENT_BUFFER {
    const len = frame.length;
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
      for (let i = 0; i < len; i++) buf[p + i] = frame[i] as number;
    } else {
      buf.set(frame, p);
    }
    return p + len - offset;
  }

  decodeAt(buf: Uint8Array, start: number, end: number): Decoded<Uint8Array> | Incomplete {
    const avail = end - start;
    let len: number;
    let hdr: number;
    switch (this.#header) {
      case 'u32be':
        if (avail < 4) return this.#need[4] as Incomplete;
        len =
          (buf[start] as number) * 0x1000000 +
          (((buf[start + 1] as number) << 16) |
            ((buf[start + 2] as number) << 8) |
            (buf[start + 3] as number));
        hdr = 4;
        break;
      case 'u16be':
        if (avail < 2) return this.#need[2] as Incomplete;
        len = ((buf[start] as number) << 8) | (buf[start + 1] as number);
        hdr = 2;
        break;
      default: {
        len = 0;
        hdr = 0;
        let shift = 0;
        for (;;) {
          if (hdr === avail) return this.#need[0] as Incomplete;
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
    if (avail < total) return incomplete(total);
    const r = this.#result;
    // Uint8Array's slice copies (Buffer's own slice would be a view).
    r.frame = this.#copy
      ? copyBytes.call(buf, start + hdr, start + total)
      : // The constructor makes a view about twice as fast as subarray() (no species lookup).
        new Uint8Array(buf.buffer, buf.byteOffset + start + hdr, len);
    r.bytesRead = total;
    return r;
  }
}

/** Length-prefixed `Uint8Array` frames. */
export function lengthPrefixed(options: LengthPrefixedOptions = {}): Codec<Uint8Array> {
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
  return new LengthPrefixedCodec(header, max, copy);
}
