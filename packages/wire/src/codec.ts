/** Returned by `Codec.encode` when the buffer is too small for the frame. */
export const INSUFFICIENT_BUFFER: unique symbol = Symbol('switchyard.wire.insufficientBuffer');

/** A decoded frame and how many bytes it took. A codec may return the same object every call:
 *  the engine reads both fields before it calls `decode` again. */
export interface Decoded<F> {
  readonly frame: F;
  readonly bytesRead: number;
}

/** More bytes must arrive. `bytesNeeded`, when known, is the total size of the frame counted
 *  from the start of the buffer handed to `decode` (header included). */
export interface Incomplete {
  readonly incomplete: true;
  readonly bytesNeeded?: number;
}

/** "More bytes must arrive", size unknown. */
export const INCOMPLETE: Incomplete = Object.freeze({ incomplete: true });

/** "More bytes must arrive": the frame is `bytesNeeded` bytes long in total. */
export function incomplete(bytesNeeded: number): Incomplete {
  return { incomplete: true, bytesNeeded };
}

/**
 * Encodes frames into bytes and decodes them out. The engine makes one per connection from
 * the protocol's `codec` factory, so a codec may keep per-connection state.
 *
 * `encodeAt` / `decodeAt` are optional fast paths working at an offset, so the engine never
 * creates a subarray per frame; when present the engine uses them instead of `encode` /
 * `decode`, and they must behave exactly like them on `buf.subarray(offset)`.
 */
export interface Codec<F> {
  /** Encode frame into buf starting at 0. Return bytes written, or INSUFFICIENT_BUFFER when buf
   *  is too small (the engine retries with a larger pooled buffer, up to maxFrameSize). */
  encode(frame: F, buf: Uint8Array): number | typeof INSUFFICIENT_BUFFER;
  /** Decode one frame from the start of buf. Return `{ frame, bytesRead }`, or an Incomplete
   *  value when more bytes must arrive. Throw a `WireProtocolError` for malformed input.
   *  A frame may alias `buf` (valid only until the handler's `onFrame` returns). */
  decode(buf: Uint8Array): Decoded<F> | Incomplete;
  /** `encode` into `buf` from `offset`. */
  encodeAt?(frame: F, buf: Uint8Array, offset: number): number | typeof INSUFFICIENT_BUFFER;
  /** `decode` from `buf[start, end)`. `bytesNeeded` counts from `start`. */
  decodeAt?(buf: Uint8Array, start: number, end: number): Decoded<F> | Incomplete;
  /** The encoded size of `frame`, when cheap to know: a frame larger than a pooled buffer then
   *  gets a buffer of the right size at once instead of doubling attempts. */
  encodedSize?(frame: F): number;
}

/** A codec, or a factory making one per connection. */
export type CodecFactory<F> = () => Codec<F>;
