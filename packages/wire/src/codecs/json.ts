import { INSUFFICIENT_BUFFER, type Codec, type Decoded, type Incomplete } from '../codec.js';
import { WireInvalidArgumentError, WireProtocolError } from '../errors.js';
import { lines } from './lines.js';

const encoder = new TextEncoder();

/**
 * JSON values over an inner framing codec: `json()` is newline-delimited JSON (`lines`),
 * `json(lengthPrefixed())` puts each JSON text in a length-prefixed frame. Values that
 * `JSON.stringify` cannot encode are a `WireInvalidArgumentError`; text that does not parse is
 * a `WireProtocolError`.
 */
class JsonCodec<V> implements Codec<V> {
  readonly #inner: Codec<string> | Codec<Uint8Array>;
  readonly #bytes: boolean;
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  readonly #result: { frame: V; bytesRead: number } = { frame: undefined as V, bytesRead: 0 };

  constructor(inner: Codec<string> | Codec<Uint8Array>, bytes: boolean) {
    this.#inner = inner;
    this.#bytes = bytes;
  }

  encode(frame: V, buf: Uint8Array): number | typeof INSUFFICIENT_BUFFER {
    const text = JSON.stringify(frame);
    if (typeof text !== 'string') throw new WireInvalidArgumentError('the value has no JSON form');
    if (this.#bytes) return (this.#inner as Codec<Uint8Array>).encode(encoder.encode(text), buf);
    return (this.#inner as Codec<string>).encode(text, buf);
  }

  decode(buf: Uint8Array): Decoded<V> | Incomplete {
    const r = this.#inner.decode(buf);
    if ((r as Incomplete).incomplete === true) return r as Incomplete;
    const d = r as Decoded<string | Uint8Array>;
    const raw = d.frame;
    let value: V;
    try {
      const text = typeof raw === 'string' ? raw : this.#decoder.decode(raw);
      value = JSON.parse(text) as V;
    } catch (error) {
      throw new WireProtocolError('frame is not valid JSON', { cause: error });
    }
    const out = this.#result;
    out.frame = value;
    out.bytesRead = d.bytesRead;
    return out;
  }
}

/** JSON values framed by `inner` (default `lines()`). Pass `{ bytes: true }` when `inner`
 *  yields `Uint8Array` frames (e.g. `lengthPrefixed()`). */
export function json<V = unknown>(inner?: Codec<string>): Codec<V>;
export function json<V = unknown>(inner: Codec<Uint8Array>, options: { bytes: true }): Codec<V>;
export function json<V = unknown>(
  inner: Codec<string> | Codec<Uint8Array> = lines(),
  options: { bytes?: boolean } = {},
): Codec<V> {
  if (typeof inner !== 'object' || inner === null || typeof inner.decode !== 'function') {
    throw new WireInvalidArgumentError('json(inner): inner must be a Codec');
  }
  return new JsonCodec<V>(inner, options.bytes === true);
}
