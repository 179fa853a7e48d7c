/**
 * The journal file layout (normative description: docs/journal-format.md). All integers are
 * little-endian (the platform's order: the file is shared only by processes on one host).
 *
 *   0   u8[8]  signature "SWYDJRNL"
 *   8   u32    format version (1)
 *   12  u32    header bytes (= data offset; fixed part + reader slots, 64-aligned)
 *   16  u64    writer id
 *   24  u64    channel id
 *   32  u64    capacity (data area bytes, multiple of 8)
 *   40  u32    max message length
 *   44  u32    tick unit (0 ns, 1 us, 2 ms, 3 s)
 *   48  u64    timeout, in tick units
 *   56  u64    creation time, ms since the Unix epoch
 *   64  u32    reader slots
 *   68  u32    FNV-1a 32 checksum of bytes 0..67
 *   --- mutable words (read with Atomics) ---
 *   72  i32    state (0 initializing, 1 open, 2 closed)
 *   76  i32    parked readers (all kinds)
 *   80  i32    futex sequence (the word futex waiters sleep on)
 *   84  i32    futex waiters
 *   88  i64    last heartbeat, ms since the Unix epoch
 *   96  i64    write position hint (updated by heartbeat, flush and close)
 *   104 i32    writer pid
 *   108..127   reserved (zero)
 *   128 slots  16 bytes each: i32 state (0 free, 1 taken), i32 parked (0, 1 doorbell),
 *              i32 pid, i32 generation
 *
 * Data area at `header bytes`: records, each 8-byte aligned:
 *   i32 commit word = (payload length << 2) | kind   (0: not written yet)
 *   u32 reserved (0)
 *   payload, zero padding to the next multiple of 8
 * kind 1 data, 2 heartbeat, 3 end of channel. The commit word is stored last, with
 * Atomics.store (sequentially consistent, so also a release), after the payload: a reader
 * that sees it non-zero sees the whole record. The writer always keeps 8 bytes free for the
 * end-of-channel mark.
 */
import {
  ShmCorruptError,
  ShmForeignFileError,
  ShmNotReadyError,
  ShmUnsupportedVersionError,
} from './errors.js';

export const SIGNATURE = 'SWYDJRNL';
export const SIGNATURE_LO = 0x44595753; // "SWYD" as a little-endian u32
export const SIGNATURE_HI = 0x4c4e524a; // "JRNL"
export const FORMAT_VERSION = 1;

export const OFF_VERSION = 8;
export const OFF_HEADER_BYTES = 12;
export const OFF_WRITER_ID = 16;
export const OFF_CHANNEL_ID = 24;
export const OFF_CAPACITY = 32;
export const OFF_MAX_MESSAGE = 40;
export const OFF_TICK_UNIT = 44;
export const OFF_TIMEOUT = 48;
export const OFF_CREATED = 56;
export const OFF_READER_SLOTS = 64;
export const OFF_CHECKSUM = 68;
export const CHECKSUMMED_BYTES = 68;

// Int32 indexes of the mutable words.
export const I_STATE = 72 >> 2;
export const I_PARKED = 76 >> 2;
export const I_FUTEX_SEQ = 80 >> 2;
export const OFF_FUTEX_SEQ = 80;
export const I_FUTEX_WAITERS = 84 >> 2;
export const I64_HEARTBEAT = 88 >> 3;
export const I64_POSITION = 96 >> 3;
export const I_WRITER_PID = 104 >> 2;

export const FIXED_HEADER_BYTES = 128;
export const SLOT_BYTES = 16;
export const MAX_READER_SLOTS = 1024;

export const STATE_INITIALIZING = 0;
export const STATE_OPEN = 1;
export const STATE_CLOSED = 2;

export const KIND_DATA = 1;
export const KIND_HEARTBEAT = 2;
export const KIND_END = 3;
export const RECORD_HEADER_BYTES = 8;
/** The largest payload a commit word can describe. */
export const MAX_RECORD_LENGTH = 2 ** 29 - 1;
/** Smallest data area: one empty record and the end mark. */
export const MIN_CAPACITY = 16;

export type TickUnit = 'ns' | 'us' | 'ms' | 's';
export const TICK_UNITS: readonly TickUnit[] = ['ns', 'us', 'ms', 's'];
/** Milliseconds per tick, by unit. */
export const TICK_MS: Readonly<Record<TickUnit, number>> = Object.freeze({
  ns: 1e-6,
  us: 1e-3,
  ms: 1,
  s: 1000,
});

/** Bytes a record with `length` payload bytes takes, header and padding included. */
export function recordBytes(length: number): number {
  return (length + RECORD_HEADER_BYTES + 7) & ~7;
}

/** Header bytes (the data offset) for `slots` reader slots. */
export function headerBytes(slots: number): number {
  return (FIXED_HEADER_BYTES + slots * SLOT_BYTES + 63) & ~63;
}

/** FNV-1a, 32 bit: cheap, and enough to tell a damaged header from a good one. */
export function fnv1a(bytes: Uint8Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    hash ^= bytes[i] ?? 0;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The header as the journal's reader sees it. */
export interface JournalHeader {
  readonly version: number;
  readonly writerId: bigint;
  readonly channelId: bigint;
  /** Data area bytes. */
  readonly capacity: number;
  readonly maxMessageLength: number;
  /** In `tickUnit`s. */
  readonly timeout: number;
  readonly tickUnit: TickUnit;
  /** `timeout` in milliseconds. */
  readonly timeoutMs: number;
  /** Creation time, ms since the Unix epoch. */
  readonly createdAtMs: number;
  readonly readerSlots: number;
  /** Offset of the data area in the file. */
  readonly headerBytes: number;
}

export interface HeaderFields {
  writerId: bigint;
  channelId: bigint;
  capacity: number;
  maxMessageLength: number;
  timeout: number;
  tickUnit: TickUnit;
  createdAtMs: number;
  readerSlots: number;
}

/** Writes the immutable header and its checksum (the writer then publishes the state). */
export function writeHeader(bytes: Uint8Array, fields: HeaderFields): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, FIXED_HEADER_BYTES);
  view.setUint32(OFF_VERSION, FORMAT_VERSION, true);
  view.setUint32(OFF_HEADER_BYTES, headerBytes(fields.readerSlots), true);
  view.setBigUint64(OFF_WRITER_ID, fields.writerId, true);
  view.setBigUint64(OFF_CHANNEL_ID, fields.channelId, true);
  view.setBigUint64(OFF_CAPACITY, BigInt(fields.capacity), true);
  view.setUint32(OFF_MAX_MESSAGE, fields.maxMessageLength, true);
  view.setUint32(OFF_TICK_UNIT, TICK_UNITS.indexOf(fields.tickUnit), true);
  view.setBigUint64(OFF_TIMEOUT, BigInt(fields.timeout), true);
  view.setBigUint64(OFF_CREATED, BigInt(fields.createdAtMs), true);
  view.setUint32(OFF_READER_SLOTS, fields.readerSlots, true);
  view.setUint32(0, SIGNATURE_LO, true);
  view.setUint32(4, SIGNATURE_HI, true);
  view.setUint32(OFF_CHECKSUM, fnv1a(bytes, 0, CHECKSUMMED_BYTES), true);
}

/**
 * Validates every header field against the file's size and returns the header. Throws
 * `ShmNotReadyError` (nothing published yet), `ShmForeignFileError`,
 * `ShmUnsupportedVersionError` or `ShmCorruptError`; never reads outside `bytes`.
 */
export function readHeader(bytes: Uint8Array, path: string): JournalHeader {
  const size = bytes.byteLength;
  if (size < FIXED_HEADER_BYTES) {
    if (bytes.every((b) => b === 0)) throw new ShmNotReadyError(`${path}: the header is not written yet`);
    throw new ShmCorruptError(
      `${path}: truncated (${size} bytes, the header alone is ${FIXED_HEADER_BYTES})`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, FIXED_HEADER_BYTES);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const state = Atomics.load(
    new Int32Array(bytes.buffer, bytes.byteOffset, FIXED_HEADER_BYTES >> 2),
    I_STATE,
  );
  if (lo === 0 && hi === 0) throw new ShmNotReadyError(`${path}: the header is not written yet`);
  if (lo !== SIGNATURE_LO || hi !== SIGNATURE_HI) {
    throw new ShmForeignFileError(`${path} is not a Switchyard journal (bad signature)`);
  }
  const version = view.getUint32(OFF_VERSION, true);
  if (version !== FORMAT_VERSION) {
    throw new ShmUnsupportedVersionError(
      `${path}: format version ${version}; this package reads ${FORMAT_VERSION}`,
    );
  }
  if (state === STATE_INITIALIZING)
    throw new ShmNotReadyError(`${path}: the writer has not published the header yet`);
  if (state !== STATE_OPEN && state !== STATE_CLOSED)
    throw new ShmCorruptError(`${path}: bad state word ${state}`);
  const checksum = view.getUint32(OFF_CHECKSUM, true);
  if (checksum !== fnv1a(bytes, 0, CHECKSUMMED_BYTES)) {
    throw new ShmCorruptError(`${path}: header checksum mismatch`);
  }
  const readerSlots = view.getUint32(OFF_READER_SLOTS, true);
  if (readerSlots > MAX_READER_SLOTS) throw new ShmCorruptError(`${path}: ${readerSlots} reader slots`);
  const dataOffset = view.getUint32(OFF_HEADER_BYTES, true);
  if (dataOffset !== headerBytes(readerSlots)) {
    throw new ShmCorruptError(`${path}: header bytes ${dataOffset} do not match ${readerSlots} reader slots`);
  }
  const capacity64 = view.getBigUint64(OFF_CAPACITY, true);
  if (capacity64 < BigInt(MIN_CAPACITY) || capacity64 % 8n !== 0n || capacity64 > BigInt(2 ** 31)) {
    throw new ShmCorruptError(`${path}: bad capacity ${capacity64}`);
  }
  const capacity = Number(capacity64);
  if (dataOffset + capacity !== size) {
    throw new ShmCorruptError(
      `${path}: truncated or resized: ${size} bytes, the header says ${dataOffset + capacity}`,
    );
  }
  const maxMessageLength = view.getUint32(OFF_MAX_MESSAGE, true);
  if (
    maxMessageLength > MAX_RECORD_LENGTH ||
    recordBytes(maxMessageLength) + RECORD_HEADER_BYTES > capacity
  ) {
    throw new ShmCorruptError(`${path}: bad max message length ${maxMessageLength}`);
  }
  const unitIndex = view.getUint32(OFF_TICK_UNIT, true);
  const tickUnit = TICK_UNITS[unitIndex];
  if (tickUnit === undefined) throw new ShmCorruptError(`${path}: bad tick unit ${unitIndex}`);
  const timeout64 = view.getBigUint64(OFF_TIMEOUT, true);
  if (timeout64 > BigInt(Number.MAX_SAFE_INTEGER))
    throw new ShmCorruptError(`${path}: bad timeout ${timeout64}`);
  const created64 = view.getBigUint64(OFF_CREATED, true);
  if (created64 > BigInt(Number.MAX_SAFE_INTEGER)) throw new ShmCorruptError(`${path}: bad creation time`);
  const timeout = Number(timeout64);
  return Object.freeze({
    version,
    writerId: view.getBigUint64(OFF_WRITER_ID, true),
    channelId: view.getBigUint64(OFF_CHANNEL_ID, true),
    capacity,
    maxMessageLength,
    timeout,
    tickUnit,
    timeoutMs: timeout * TICK_MS[tickUnit],
    createdAtMs: Number(created64),
    readerSlots,
    headerBytes: dataOffset,
  });
}

/** A record decoded at a position: kind, payload length, and the bytes it occupies. */
export interface DecodedRecord {
  kind: number;
  length: number;
  used: number;
}

/**
 * Decodes the commit word at data position `position`; `null` when nothing is committed
 * there yet. Throws `ShmCorruptError` for a word no writer writes or a record that would
 * run past the data area; never reads outside the mapping.
 */
export function decodeRecord(
  i32: Int32Array,
  dataOffset: number,
  position: number,
  capacity: number,
  maxMessageLength: number,
): DecodedRecord | null {
  if (position + RECORD_HEADER_BYTES > capacity) {
    throw new ShmCorruptError(
      `no end-of-channel mark before the end of the data area (position ${position})`,
    );
  }
  const word = Atomics.load(i32, (dataOffset + position) >> 2);
  if (word === 0) return null;
  const kind = word & 3;
  const length = word >>> 2;
  if (kind === KIND_DATA) {
    const used = recordBytes(length);
    if (length > maxMessageLength || position + used + RECORD_HEADER_BYTES > capacity) {
      throw new ShmCorruptError(`record at ${position}: bad length ${length}`);
    }
    return { kind, length, used };
  }
  if ((kind === KIND_HEARTBEAT || kind === KIND_END) && length === 0) {
    return { kind, length: 0, used: RECORD_HEADER_BYTES };
  }
  throw new ShmCorruptError(`record at ${position}: bad commit word 0x${(word >>> 0).toString(16)}`);
}
