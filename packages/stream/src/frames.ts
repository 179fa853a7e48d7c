/**
 * The protocol frames of docs/wire-format.md and their codec, in the shape of a
 * `@switchyard/wire` `Codec`. One codec per connection: it remembers whether the peer's
 * preface has arrived. Decoding never allocates for a payload: a decoded frame's byte
 * fields are views of the engine's read buffer, valid only until `onFrame` returns.
 */
import { StreamFrameTooLargeError, StreamProtocolError } from './errors.js';
import {
  INCOMPLETE,
  INSUFFICIENT_BUFFER,
  incomplete,
  type Codec,
  type Decoded,
  type Incomplete,
} from '@switchyard/wire';

export const FrameType = Object.freeze({
  PREFACE: 0,
  REQUEST: 1,
  SOURCE: 2,
  DATA: 3,
  END: 4,
  ERROR: 5,
  CANCEL: 6,
  CREDIT: 7,
  PING: 8,
  GOAWAY: 9,
} as const);

/** ASCII "SWYS". */
export const PREFACE_MAGIC = 0x53575953;
export const PROTOCOL_VERSION = 1;
export const PREFACE_SIZE = 12;
export const HEADER_SIZE = 10;
/** What a frame payload may carry beyond `maxFrameSize` (tags, record headers, ids). */
export const PAYLOAD_ALLOWANCE = 65_536;
/** Bit 31 of a record header: the stored bytes are LZ4-compressed. */
export const RECORD_LZ4 = 0x80000000;
export const RECORD_LENGTH_MASK = 0x7fffffff;
export const PING_ACK = 0x01;
export const MAX_STREAM_ID = 0x7fffffff;
export const MAX_CREDIT = 0x7fffffff;
const MAX_CODE_BYTES = 255;

export interface PrefaceFrame {
  readonly type: 0;
  readonly version: number;
  readonly windowBytes: number;
}
export interface RequestFrame {
  readonly type: 1;
  readonly streamId: number;
  readonly sourceWindow: number;
  readonly frameWindow: number;
  readonly byteWindow: number;
  readonly tags: ReadonlyMap<string, string>;
  readonly body: Uint8Array;
}
export interface SourceFrame {
  readonly type: 2;
  readonly streamId: number;
  readonly requestId: number;
  readonly header: Uint8Array;
}
/**
 * Outgoing: `records` (stored form; the first `count` entries, the array may be longer) with
 * `lz4` marks, or null marks when none is compressed. The frame is encoded when it is sent, so
 * a sender may reuse the array afterwards.
 * Incoming: `payload`, the records back to back (validated by the decoder), `records` null.
 */
export interface DataFrame {
  readonly type: 3;
  readonly streamId: number;
  readonly records: readonly Uint8Array[] | null;
  readonly lz4: readonly boolean[] | null;
  readonly payload: Uint8Array | null;
  /** Records in the frame. */
  readonly count: number;
  /**
   * Outgoing, optional: the sum of the records' lengths, when the sender knows it; the frame's
   * size is then known without a pass over the records (it is asked for more than once per
   * frame: to check the fit, and by the engine for a frame larger than its slab).
   */
  readonly bytes?: number;
}
export interface EndFrame {
  readonly type: 4;
  readonly streamId: number;
}
export interface ErrorFrame {
  readonly type: 5;
  readonly streamId: number;
  readonly code: string;
  readonly message: string;
}
export interface CancelFrame {
  readonly type: 6;
  readonly streamId: number;
  readonly reason: string;
}
export interface CreditFrame {
  readonly type: 7;
  readonly streamId: number;
  readonly frames: number;
  readonly bytes: number;
}
export interface PingFrame {
  readonly type: 8;
  readonly streamId: 0;
  readonly ack: boolean;
  readonly data: Uint8Array;
}
export interface GoawayFrame {
  readonly type: 9;
  readonly streamId: 0;
  readonly lastRequestId: number;
  readonly code: string;
  readonly message: string;
}
export type Frame =
  | PrefaceFrame
  | RequestFrame
  | SourceFrame
  | DataFrame
  | EndFrame
  | ErrorFrame
  | CancelFrame
  | CreditFrame
  | PingFrame
  | GoawayFrame;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

function writeU32(buf: Uint8Array, pos: number, v: number): void {
  buf[pos] = v >>> 24;
  buf[pos + 1] = (v >>> 16) & 0xff;
  buf[pos + 2] = (v >>> 8) & 0xff;
  buf[pos + 3] = v & 0xff;
}
function writeU16(buf: Uint8Array, pos: number, v: number): void {
  buf[pos] = (v >>> 8) & 0xff;
  buf[pos + 1] = v & 0xff;
}
function readU32(buf: Uint8Array, pos: number): number {
  return ((buf[pos]! << 24) | (buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!) >>> 0;
}
function readU16(buf: Uint8Array, pos: number): number {
  return (buf[pos]! << 8) | buf[pos + 1]!;
}
/** Little-endian u32: the uncompressed length in front of an LZ4 block. */
export function readU32LE(buf: Uint8Array, pos: number): number {
  return (buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16) | (buf[pos + 3]! << 24)) >>> 0;
}

function writeString(buf: Uint8Array, pos: number, s: string): number {
  return utf8.encodeInto(s, buf.subarray(pos)).written;
}

function decodeString(buf: Uint8Array, start: number, end: number, what: string): string {
  if (start === end) return '';
  try {
    return utf8Strict.decode(buf.subarray(start, end));
  } catch (cause) {
    throw new StreamProtocolError(`${what} is not valid UTF-8`, { cause });
  }
}

function truncatedCode(code: string): string {
  // Codes are ASCII by contract; anything else is replaced so the length check holds.
  const ascii = code.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length > MAX_CODE_BYTES ? ascii.slice(0, MAX_CODE_BYTES) : ascii;
}

/** Bytes `frame` takes on the wire, header included. */
export function encodedSize(frame: Frame): number {
  switch (frame.type) {
    case FrameType.PREFACE:
      return PREFACE_SIZE;
    case FrameType.REQUEST: {
      let n = HEADER_SIZE + 14 + frame.body.length;
      for (const [k, v] of frame.tags) n += 4 + byteLength(k) + byteLength(v);
      return n;
    }
    case FrameType.SOURCE:
      return HEADER_SIZE + 4 + frame.header.length;
    case FrameType.DATA: {
      if (frame.payload !== null) return HEADER_SIZE + frame.payload.length;
      if (frame.bytes !== undefined) return HEADER_SIZE + 4 * frame.count + frame.bytes;
      let n = HEADER_SIZE;
      const records = frame.records ?? [];
      for (let i = 0; i < frame.count && i < records.length; i++) n += 4 + records[i]!.length;
      return n;
    }
    case FrameType.END:
      return HEADER_SIZE;
    case FrameType.ERROR:
      return HEADER_SIZE + 2 + truncatedCode(frame.code).length + byteLength(frame.message);
    case FrameType.CANCEL:
      return HEADER_SIZE + byteLength(frame.reason);
    case FrameType.CREDIT:
      return HEADER_SIZE + 8;
    case FrameType.PING:
      return HEADER_SIZE + 8;
    case FrameType.GOAWAY:
      return HEADER_SIZE + 6 + truncatedCode(frame.code).length + byteLength(frame.message);
  }
}

/** Encodes `frame` at `offset`; returns the bytes written or INSUFFICIENT_BUFFER. */
export function encodeFrame(
  frame: Frame,
  buf: Uint8Array,
  offset: number,
): number | typeof INSUFFICIENT_BUFFER {
  const size = encodedSize(frame);
  if (size > buf.length - offset) return INSUFFICIENT_BUFFER;
  if (frame.type === FrameType.PREFACE) {
    writeU32(buf, offset, PREFACE_MAGIC);
    buf[offset + 4] = frame.version;
    buf[offset + 5] = 0;
    writeU16(buf, offset + 6, 0);
    writeU32(buf, offset + 8, frame.windowBytes);
    return size;
  }
  writeU32(buf, offset, size - HEADER_SIZE);
  buf[offset + 4] = frame.type;
  buf[offset + 5] = frame.type === FrameType.PING && frame.ack ? PING_ACK : 0;
  writeU32(buf, offset + 6, frame.streamId);
  let p = offset + HEADER_SIZE;
  switch (frame.type) {
    case FrameType.REQUEST:
      writeU32(buf, p, frame.sourceWindow);
      writeU32(buf, p + 4, frame.frameWindow);
      writeU32(buf, p + 8, frame.byteWindow);
      writeU16(buf, p + 12, frame.tags.size);
      p += 14;
      for (const [k, v] of frame.tags) {
        const kn = writeString(buf, p + 2, k);
        writeU16(buf, p, kn);
        p += 2 + kn;
        const vn = writeString(buf, p + 2, v);
        writeU16(buf, p, vn);
        p += 2 + vn;
      }
      buf.set(frame.body, p);
      break;
    case FrameType.SOURCE:
      writeU32(buf, p, frame.requestId);
      buf.set(frame.header, p + 4);
      break;
    case FrameType.DATA:
      if (frame.payload !== null) {
        buf.set(frame.payload, p);
        break;
      }
      if (frame.records !== null) {
        const records = frame.records;
        const lz4 = frame.lz4;
        const n = Math.min(frame.count, records.length);
        for (let i = 0; i < n; i++) {
          const r = records[i]!;
          writeU32(buf, p, lz4 !== null && lz4[i] === true ? (r.length | RECORD_LZ4) >>> 0 : r.length);
          buf.set(r, p + 4);
          p += 4 + r.length;
        }
      }
      break;
    case FrameType.END:
      break;
    case FrameType.ERROR:
    case FrameType.GOAWAY: {
      if (frame.type === FrameType.GOAWAY) {
        writeU32(buf, p, frame.lastRequestId);
        p += 4;
      }
      const code = truncatedCode(frame.code);
      writeU16(buf, p, code.length);
      p += 2 + writeString(buf, p + 2, code);
      writeString(buf, p, frame.message);
      break;
    }
    case FrameType.CANCEL:
      writeString(buf, p, frame.reason);
      break;
    case FrameType.CREDIT:
      writeU32(buf, p, frame.frames);
      writeU32(buf, p + 4, frame.bytes);
      break;
    case FrameType.PING:
      buf.set(frame.data.subarray(0, 8), p);
      break;
  }
  return size;
}

/**
 * Walks the records of a DATA payload and checks every length against the payload and
 * `maxFrameSize` (an LZ4 record's declared uncompressed length included). Returns the count.
 */
export function checkRecords(payload: Uint8Array, maxFrameSize: number): number {
  let p = 0;
  let count = 0;
  const end = payload.length;
  if (end === 0) throw new StreamProtocolError('DATA frame without a record');
  while (p < end) {
    if (end - p < 4) throw new StreamProtocolError('DATA record header cut short');
    const h = readU32(payload, p);
    const stored = h & RECORD_LENGTH_MASK;
    p += 4;
    if (stored > end - p) throw new StreamProtocolError('DATA record longer than its frame');
    if ((h & RECORD_LZ4) !== 0) {
      if (stored < 4) throw new StreamProtocolError('LZ4 record without its length');
      const raw = readU32LE(payload, p);
      if (raw > maxFrameSize) {
        throw new StreamFrameTooLargeError(`LZ4 record of ${raw} bytes exceeds maxFrameSize ${maxFrameSize}`);
      }
    } else if (stored > maxFrameSize) {
      throw new StreamFrameTooLargeError(`record of ${stored} bytes exceeds maxFrameSize ${maxFrameSize}`);
    }
    p += stored;
    count++;
  }
  return count;
}

function expectLength(length: number, want: number, type: string): void {
  if (length !== want) throw new StreamProtocolError(`${type} payload must be ${want} bytes, got ${length}`);
}
function expectStream(id: number, type: string, rule: 'zero' | 'odd' | 'even' | 'nonzero' | 'any'): void {
  const ok =
    rule === 'any' ||
    (rule === 'zero' && id === 0) ||
    (rule === 'nonzero' && id !== 0 && id <= MAX_STREAM_ID) ||
    (rule === 'odd' && id % 2 === 1 && id <= MAX_STREAM_ID) ||
    (rule === 'even' && id !== 0 && id % 2 === 0 && id <= MAX_STREAM_ID);
  if (!ok) throw new StreamProtocolError(`${type} on stream ${id} breaks the stream id rules`);
}

/** Decodes the payload of a frame whose header is already checked. */
function decodePayload(
  type: number,
  flags: number,
  streamId: number,
  buf: Uint8Array,
  p: number,
  end: number,
  maxFrameSize: number,
): Frame {
  const length = end - p;
  switch (type) {
    case FrameType.REQUEST: {
      expectStream(streamId, 'REQUEST', 'odd');
      if (length < 14) throw new StreamProtocolError('REQUEST payload cut short');
      const sourceWindow = readU32(buf, p);
      const frameWindow = readU32(buf, p + 4);
      const byteWindow = readU32(buf, p + 8);
      if (sourceWindow === 0 || frameWindow === 0 || byteWindow === 0) {
        throw new StreamProtocolError('REQUEST with a zero window');
      }
      if (sourceWindow > MAX_CREDIT || frameWindow > MAX_CREDIT || byteWindow > MAX_CREDIT) {
        throw new StreamProtocolError('REQUEST window above 2^31-1');
      }
      const count = readU16(buf, p + 12);
      let q = p + 14;
      const tags = new Map<string, string>();
      for (let i = 0; i < count; i++) {
        if (end - q < 2) throw new StreamProtocolError('REQUEST tag cut short');
        const kn = readU16(buf, q);
        if (end - q - 2 < kn + 2) throw new StreamProtocolError('REQUEST tag cut short');
        const key = decodeString(buf, q + 2, q + 2 + kn, 'tag key');
        q += 2 + kn;
        const vn = readU16(buf, q);
        if (end - q - 2 < vn) throw new StreamProtocolError('REQUEST tag cut short');
        const value = decodeString(buf, q + 2, q + 2 + vn, 'tag value');
        q += 2 + vn;
        if (tags.has(key)) throw new StreamProtocolError(`REQUEST tag "${key}" given twice`);
        tags.set(key, value);
      }
      if (end - q > maxFrameSize) throw new StreamFrameTooLargeError('request body exceeds maxFrameSize');
      return {
        type: FrameType.REQUEST,
        streamId,
        sourceWindow,
        frameWindow,
        byteWindow,
        tags,
        body: buf.subarray(q, end),
      };
    }
    case FrameType.SOURCE: {
      expectStream(streamId, 'SOURCE', 'even');
      if (length < 4) throw new StreamProtocolError('SOURCE payload cut short');
      const requestId = readU32(buf, p);
      expectStream(requestId, 'SOURCE request id', 'odd');
      if (length - 4 > maxFrameSize) throw new StreamFrameTooLargeError('source header exceeds maxFrameSize');
      return { type: FrameType.SOURCE, streamId, requestId, header: buf.subarray(p + 4, end) };
    }
    case FrameType.DATA: {
      expectStream(streamId, 'DATA', 'even');
      const payload = buf.subarray(p, end);
      const count = checkRecords(payload, maxFrameSize);
      return { type: FrameType.DATA, streamId, records: null, lz4: null, payload, count };
    }
    case FrameType.END:
      expectStream(streamId, 'END', 'nonzero');
      expectLength(length, 0, 'END');
      return { type: FrameType.END, streamId };
    case FrameType.ERROR:
    case FrameType.GOAWAY: {
      let q = p;
      let lastRequestId = 0;
      if (type === FrameType.GOAWAY) {
        expectStream(streamId, 'GOAWAY', 'zero');
        if (length < 6) throw new StreamProtocolError('GOAWAY payload cut short');
        lastRequestId = readU32(buf, q);
        q += 4;
      } else {
        expectStream(streamId, 'ERROR', 'nonzero');
        if (length < 2) throw new StreamProtocolError('ERROR payload cut short');
      }
      const codeLength = readU16(buf, q);
      if (codeLength > end - q - 2) throw new StreamProtocolError('error code longer than its frame');
      const code = decodeString(buf, q + 2, q + 2 + codeLength, 'error code');
      const message = decodeString(buf, q + 2 + codeLength, end, 'error message');
      return type === FrameType.GOAWAY
        ? { type: FrameType.GOAWAY, streamId: 0, lastRequestId, code, message }
        : { type: FrameType.ERROR, streamId, code, message };
    }
    case FrameType.CANCEL:
      expectStream(streamId, 'CANCEL', 'nonzero');
      return { type: FrameType.CANCEL, streamId, reason: decodeString(buf, p, end, 'cancel reason') };
    case FrameType.CREDIT: {
      expectStream(streamId, 'CREDIT', 'any');
      expectLength(length, 8, 'CREDIT');
      const frames = readU32(buf, p);
      const bytes = readU32(buf, p + 4);
      if (frames > MAX_CREDIT || bytes > MAX_CREDIT) throw new StreamProtocolError('CREDIT above 2^31-1');
      return { type: FrameType.CREDIT, streamId, frames, bytes };
    }
    case FrameType.PING:
      expectStream(streamId, 'PING', 'zero');
      expectLength(length, 8, 'PING');
      return { type: FrameType.PING, streamId: 0, ack: (flags & PING_ACK) !== 0, data: buf.subarray(p, end) };
    default:
      throw new StreamProtocolError(`unknown frame type ${type}`);
  }
}

export interface StreamCodecOptions {
  /** Largest record, header or body; frames above it plus PAYLOAD_ALLOWANCE are refused. */
  readonly maxFrameSize: number;
}

/**
 * A codec for one connection. The first thing decoded must be the peer's preface; after
 * it, protocol frames. Frames over the limit are refused from their 10-byte header, before
 * the engine is asked to hold the payload.
 */
export function createStreamCodec(options: StreamCodecOptions): Codec<Frame> {
  const maxFrameSize = options.maxFrameSize;
  const maxPayload = maxFrameSize + PAYLOAD_ALLOWANCE;
  let prefaceSeen = false;
  // The engine reads both fields before calling decode again, so one object serves all.
  const decoded = { frame: undefined as unknown as Frame, bytesRead: 0 };

  function decodeAt(buf: Uint8Array, start: number, end: number): Decoded<Frame> | Incomplete {
    const available = end - start;
    if (!prefaceSeen) {
      if (available < PREFACE_SIZE) return incomplete(PREFACE_SIZE);
      if (readU32(buf, start) !== PREFACE_MAGIC) throw new StreamProtocolError('bad preface magic');
      const version = buf[start + 4]!;
      if (version !== PROTOCOL_VERSION)
        throw new StreamProtocolError(`unsupported protocol version ${version}`);
      const windowBytes = readU32(buf, start + 8);
      if (windowBytes === 0 || windowBytes > MAX_CREDIT) {
        throw new StreamProtocolError('preface connection window out of range');
      }
      prefaceSeen = true;
      decoded.frame = { type: FrameType.PREFACE, version, windowBytes };
      decoded.bytesRead = PREFACE_SIZE;
      return decoded;
    }
    if (available < HEADER_SIZE) return INCOMPLETE;
    const length = readU32(buf, start);
    if (length > maxPayload) {
      throw new StreamFrameTooLargeError(`frame payload of ${length} bytes exceeds the limit ${maxPayload}`);
    }
    const total = HEADER_SIZE + length;
    if (available < total) return incomplete(total);
    const type = buf[start + 4]!;
    const flags = buf[start + 5]!;
    const streamId = readU32(buf, start + 6);
    decoded.frame = decodePayload(
      type,
      flags,
      streamId,
      buf,
      start + HEADER_SIZE,
      start + total,
      maxFrameSize,
    );
    decoded.bytesRead = total;
    return decoded;
  }

  return {
    encode: (frame, buf) => encodeFrame(frame, buf, 0),
    encodeAt: (frame, buf, offset) => encodeFrame(frame, buf, offset),
    decode: (buf) => decodeAt(buf, 0, buf.length),
    decodeAt,
    // Asked by the engine only when a frame did not fit: a large DATA frame gets its buffer at once.
    encodedSize,
  };
}
