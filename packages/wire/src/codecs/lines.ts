import { INCOMPLETE, INSUFFICIENT_BUFFER, type Codec, type Decoded, type Incomplete } from '../codec.js';
import { WireFrameTooLargeError, WireInvalidArgumentError, WireProtocolError } from '../errors.js';
import { checkInteger } from '../options.js';

export interface LinesOptions {
  /** Longest line in bytes, the line break not counted. Default 64 KiB. */
  maxLineLength?: number;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Text lines: a frame is a string; encoding appends `\n`, decoding splits at `\n` and drops
 * a `\r` before it (so `nc`, `socat` and CRLF peers interoperate). Lines must be UTF-8;
 * invalid UTF-8 is a `WireProtocolError`. Strings may not contain `\n` (a `WireInvalidArgumentError`).
 */
class LinesCodec implements Codec<string> {
  readonly #max: number;
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  readonly #result: { frame: string; bytesRead: number } = { frame: '', bytesRead: 0 };

  constructor(max: number) {
    this.#max = max;
  }

  encode(frame: string, buf: Uint8Array): number | typeof INSUFFICIENT_BUFFER {
    return this.encodeAt(frame, buf, 0);
  }

  decode(buf: Uint8Array): Decoded<string> | Incomplete {
    return this.decodeAt(buf, 0, buf.length);
  }

  encodeAt(frame: string, buf: Uint8Array, offset: number): number | typeof INSUFFICIENT_BUFFER {
    if (typeof frame !== 'string') throw new WireInvalidArgumentError('a lines frame must be a string');
    if (frame.includes('\n')) throw new WireInvalidArgumentError('a lines frame must not contain "\\n"');
    // Worst case 3 bytes per UTF-16 unit; skip the encode when it cannot fit.
    if (frame.length > buf.length - offset - 1) return INSUFFICIENT_BUFFER;
    const { read, written } = this.#encoder.encodeInto(frame, buf.subarray(offset, buf.length - 1));
    if (read < frame.length) return INSUFFICIENT_BUFFER;
    if (written > this.#max) {
      throw new WireFrameTooLargeError(`line of ${written} bytes is over maxLineLength ${this.#max}`);
    }
    buf[offset + written] = LF;
    return written + 1;
  }

  decodeAt(buf: Uint8Array, start: number, end: number): Decoded<string> | Incomplete {
    const limit = Math.min(end, start + this.#max + 2);
    let i = buf.indexOf(LF, start);
    if (i >= limit || (i !== -1 && i >= end)) i = -1;
    if (i === -1) {
      if (end - start > this.#max + 1) {
        throw new WireFrameTooLargeError(`line longer than maxLineLength ${this.#max}`);
      }
      return INCOMPLETE;
    }
    let stop = i;
    if (stop > start && buf[stop - 1] === CR) stop--;
    if (stop - start > this.#max)
      throw new WireFrameTooLargeError(`line longer than maxLineLength ${this.#max}`);
    let text: string;
    try {
      text = this.#decoder.decode(buf.subarray(start, stop));
    } catch (error) {
      throw new WireProtocolError('line is not valid UTF-8', { cause: error });
    }
    const r = this.#result;
    r.frame = text;
    r.bytesRead = i + 1 - start;
    return r;
  }
}

/** Newline-delimited UTF-8 text frames. */
export function lines(options: LinesOptions = {}): Codec<string> {
  const max = checkInteger('maxLineLength', options.maxLineLength ?? 64 * 1024, 1, 2 ** 30);
  return new LinesCodec(max);
}
