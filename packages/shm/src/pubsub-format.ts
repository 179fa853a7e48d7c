/**
 * The pub/sub region layout (normative description: docs/shm-pubsub-format.md). All
 * integers are little-endian. The fixed header shares its mutable words and its subscriber
 * slots with the journal's (same offsets), so both use one slot and doorbell protocol.
 *
 *   0   u8[8]  signature "SWYDPUBS"
 *   8   u32    format version (4)
 *   12  u32    header bytes (fixed part + slots + positions, 64-aligned)
 *   16  u32    block count
 *   20  u32    block size (a multiple of 64)
 *   24  u32    ring depth (a power of two, at most the block count)
 *   28  u32    subscriber slots
 *   32  u32    heartbeat interval, ms
 *   36  u32    stale timeout, ms
 *   40  u32    slow subscriber policy (0 overwrite, 1 block)
 *   44  u32    ring offset
 *   48  u32    block table offset
 *   52  u32    blocks offset
 *   56  u64    creation time, ms since the Unix epoch
 *   64  u32    inline max bytes (0: every message in a block)
 *   68  u32    FNV-1a 32 checksum of bytes 0..67
 *   --- mutable words (read with Atomics) ---
 *   72  i32    state (0 initializing, 1 open, 2 closed)
 *   76  i32    parked subscribers (all kinds)
 *   80  i32    futex sequence
 *   84  i32    futex waiters
 *   88  i64    publisher heartbeat, ms since the Unix epoch
 *   96  i32    reserved (0; head in version 1)
 *   100 i32    reserved (0)
 *   104 i32    publisher pid
 *   108 i32    reserved (0; tail in version 1)
 *   112 i32    reserved (0)
 *   116 i32    flags (bit 0: a subscriber has attached)
 *   120..127   reserved
 *   128 slots      16 bytes each: i32 state, i32 parked, i32 pid, i32 generation
 *   ... positions  8 bytes per slot: i32 next sequence (low word), i32 reserved
 *   ... cursors    128 bytes, 64-aligned: i32 head low, i32 head high (the sequence the next
 *                  message gets), 56 reserved; at +64, i32 tail low, i32 tail high (the
 *                  oldest the ring may hold), 56 reserved
 *   ring           ring entry bytes per entry (align16(16 + inline max): 16 without inline
 *                  messages, 80 for 64 bytes): i32 seq low,
 *                  i32 seq high, i32 block (-1: inline), i32 length (since version 4 also
 *                  for a block: a lossless drain reads no table line), inline payload
 *   block table    64 bytes per block: i32 state, i32 seq low, i32 seq high, i32 length, 48 reserved
 *   held counts    slots × block count i32: guards each subscriber slot holds on each block
 *   blocks         block count × block size
 *
 * Block state: 0 free; LOAN_BIT set: loaned to the publisher (no reader may take it);
 * otherwise the number of references: one held by the ring entry that names it, one per
 * live sample guard. Readers take a reference only from a published block (count > 0, no
 * LOAN_BIT) and then check that the block still holds the sequence they wanted: a block
 * freed and reused in between fails that check and is released again unread.
 *
 * Inline messages (at most `inline max bytes`, format version 2) live in the ring entry
 * itself: no block, no reference count. The publisher writes the payload, then stores the
 * sequence word (one sequentially consistent store). It rewrites entry `s mod depth` for
 * message s only after it committed s − 1 (in the entry before) and evicted s − depth (the
 * tail, stored atomically, moved past it). A reader copies the payload out and keeps the copy
 * only if, read after the copy, the entry before does not yet hold s − 1 + depth, or the tail
 * is still at or below s (version 2 used a seqlock instead: a second store per message).
 * Version 3 also packs ring entries at 16-byte strides (16 bytes without inline messages,
 * 80 with 64-byte ones; 64 and 128 in version 2): fewer cache lines move between the cores.
 * Version 4 writes a block message's length in its ring entry too, so a `slowSubscriber:
 * 'block'` subscriber draining in place reads the entry and the block and never the table
 * line (which then stays in the publisher's cache); a version 3 entry holds no length there.
 */
import { resolve, sep } from 'node:path';
import {
  ShmCorruptError,
  ShmForeignFileError,
  ShmInvalidArgumentError,
  ShmNotReadyError,
  ShmUnsupportedVersionError,
} from './errors.js';
import { FIXED_HEADER_BYTES, SLOT_BYTES, fnv1a } from './journal-format.js';

export const PS_SIGNATURE_LO = 0x44595753; // "SWYD"
export const PS_SIGNATURE_HI = 0x53425550; // "PUBS"
export const PS_FORMAT_VERSION = 4;

export const PS_OFF_VERSION = 8;
export const PS_OFF_HEADER_BYTES = 12;
export const PS_OFF_BLOCK_COUNT = 16;
export const PS_OFF_BLOCK_SIZE = 20;
export const PS_OFF_RING_DEPTH = 24;
export const PS_OFF_SLOTS = 28;
export const PS_OFF_HEARTBEAT_INTERVAL = 32;
export const PS_OFF_STALE_TIMEOUT = 36;
export const PS_OFF_SLOW = 40;
export const PS_OFF_RING = 44;
export const PS_OFF_TABLE = 48;
export const PS_OFF_BLOCKS = 52;
export const PS_OFF_CREATED = 56;
export const PS_OFF_INLINE_MAX = 64;
export const PS_OFF_CHECKSUM = 68;
export const PS_CHECKSUMMED_BYTES = 68;

// Int32 indexes of the mutable words (state, parked, futex words, heartbeat and pid sit
// where the journal keeps them).
// Head and tail live on cache lines of their own (the cursors, after the positions): the
// publisher writes the head with every message, and spinning subscribers read the state word
// on every empty poll — on one line, every message would bounce it between the cores. The
// tail, stored once per eviction, has its own line too (format 3): a subscriber reads it to
// check its copies when the ring is full, which must not take the line the head is written to.
/** Int32 offsets of the head within the cursors (on their first line; the tail on the second). */
export const CURSOR_HEAD_LO = 0;
export const CURSOR_HEAD_HI = 1;
/**
 * The tail, on the second line: the high word stored plainly, then the low word with
 * `Atomics.store`. A reader that knows a sequence near the tail (its own position) reads
 * only the low word and takes the 32-bit modular distance (no torn pair: a pair read while
 * the low word wraps can be 2^32 off); at attach it reads the pair and checks it against
 * the head (see Subscriber#readCursors).
 */
export const CURSOR_TAIL_LO = 16;
export const CURSOR_TAIL_HI = 17;
export const CURSORS_BYTES = 128;
export const I_FLAGS = 116 >> 2;
export const FLAG_ATTACHED = 1;

// One cache line per block-table entry: the publisher claims and publishes the next block
// while subscribers take and release references on the previous one (both write the state
// word); sharing a line would bounce it between the cores on every message. Ring entries are
// packed instead (see ringEntryBytesFor): only the publisher writes them.
export const BLOCK_ENTRY_BYTES = 64;
/** Ring entry bytes before an inline payload: seq low, seq high, block (-1), length. */
export const INLINE_HEADER_BYTES = 16;
/** The largest `inlineMaxBytes`: a ring entry of at most 4 KiB. */
export const MAX_INLINE_BYTES = 4096 - INLINE_HEADER_BYTES;
/** The block word of a ring entry whose message is inline. */
export const INLINE_BLOCK = -1;
export const TABLE_WORDS = BLOCK_ENTRY_BYTES >> 2;
export const POSITION_BYTES = 8;
export const LOAN_BIT = 0x40000000;

export const MAX_SUBSCRIBER_SLOTS = 1024;
export const MAX_BLOCK_COUNT = 1 << 20;
export const MIN_BLOCK_SIZE = 64;

export type SlowSubscriberPolicy = 'overwrite' | 'block';
export const SLOW_POLICIES: readonly SlowSubscriberPolicy[] = ['overwrite', 'block'];

/** Where things are, derived from the sizes alone (so a reader recomputes and compares). */
export interface RegionLayout {
  readonly blockCount: number;
  readonly blockSize: number;
  readonly ringDepth: number;
  readonly subscriberSlots: number;
  /** Messages up to this many bytes travel inline in the ring entry (0: none). */
  readonly inlineMaxBytes: number;
  /** Bytes per ring entry: `align16(16 + inlineMaxBytes)`. */
  readonly ringEntryBytes: number;
  readonly headerBytes: number;
  readonly positionsOffset: number;
  /** The publisher's cursors (head, tail): a cache line each, written by the publisher only. */
  readonly cursorsOffset: number;
  readonly ringOffset: number;
  readonly tableOffset: number;
  /** Guards held, per subscriber slot and block (i32 each): released for a dead subscriber. */
  readonly heldOffset: number;
  readonly blocksOffset: number;
  readonly totalBytes: number;
}

const align = (n: number, to: number): number => Math.ceil(n / to) * to;

export function regionLayout(
  blockCount: number,
  blockSize: number,
  ringDepth: number,
  subscriberSlots: number,
  inlineMaxBytes = 0,
): RegionLayout {
  const ringEntryBytes = ringEntryBytesFor(inlineMaxBytes);
  const positionsOffset = FIXED_HEADER_BYTES + subscriberSlots * SLOT_BYTES;
  const cursorsOffset = align(positionsOffset + subscriberSlots * POSITION_BYTES, 64);
  const headerBytes = cursorsOffset + CURSORS_BYTES;
  const ringOffset = headerBytes;
  const tableOffset = align(ringOffset + ringDepth * ringEntryBytes, 64);
  // Page-aligned blocks: a 4 KiB-multiple block never straddles more pages than it must.
  const heldOffset = align(tableOffset + blockCount * BLOCK_ENTRY_BYTES, 64);
  const blocksOffset = align(heldOffset + subscriberSlots * blockCount * 4, 4096);
  return {
    blockCount,
    blockSize,
    ringDepth,
    subscriberSlots,
    inlineMaxBytes,
    ringEntryBytes,
    headerBytes,
    positionsOffset,
    cursorsOffset,
    ringOffset,
    tableOffset,
    heldOffset,
    blocksOffset,
    totalBytes: blocksOffset + blockCount * blockSize,
  };
}

/**
 * Bytes per ring entry for an inline limit: the 16-byte header and the payload area rounded
 * up to 16 bytes — 16 without inline messages (four entries a cache line), 80 for a 64-byte
 * limit (version 2 gave every entry whole cache lines: 64, and 128 for 64 bytes). Only the
 * publisher writes entries, once per lap, and a subscriber reads each once: packed, a
 * stream of messages moves fewer lines from the publisher's core to the subscriber's.
 */
export function ringEntryBytesFor(inlineMaxBytes: number): number {
  return align(INLINE_HEADER_BYTES + inlineMaxBytes, 16);
}

/** The header as a subscriber (or `switchyard shm ls`) sees it. */
export interface RegionHeader extends RegionLayout {
  readonly version: number;
  readonly heartbeatIntervalMs: number;
  readonly staleTimeoutMs: number;
  readonly slowSubscriber: SlowSubscriberPolicy;
  readonly createdAtMs: number;
}

export interface RegionFields {
  readonly layout: RegionLayout;
  readonly heartbeatIntervalMs: number;
  readonly staleTimeoutMs: number;
  readonly slowSubscriber: SlowSubscriberPolicy;
  readonly createdAtMs: number;
}

/** Writes the immutable header and checksum (the publisher then publishes the state). */
export function writeRegionHeader(bytes: Uint8Array, fields: RegionFields): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, FIXED_HEADER_BYTES);
  const l = fields.layout;
  view.setUint32(PS_OFF_VERSION, PS_FORMAT_VERSION, true);
  view.setUint32(PS_OFF_HEADER_BYTES, l.headerBytes, true);
  view.setUint32(PS_OFF_BLOCK_COUNT, l.blockCount, true);
  view.setUint32(PS_OFF_BLOCK_SIZE, l.blockSize, true);
  view.setUint32(PS_OFF_RING_DEPTH, l.ringDepth, true);
  view.setUint32(PS_OFF_SLOTS, l.subscriberSlots, true);
  view.setUint32(PS_OFF_HEARTBEAT_INTERVAL, fields.heartbeatIntervalMs, true);
  view.setUint32(PS_OFF_STALE_TIMEOUT, fields.staleTimeoutMs, true);
  view.setUint32(PS_OFF_SLOW, SLOW_POLICIES.indexOf(fields.slowSubscriber), true);
  view.setUint32(PS_OFF_RING, l.ringOffset, true);
  view.setUint32(PS_OFF_TABLE, l.tableOffset, true);
  view.setUint32(PS_OFF_BLOCKS, l.blocksOffset, true);
  view.setBigUint64(PS_OFF_CREATED, BigInt(fields.createdAtMs), true);
  view.setUint32(PS_OFF_INLINE_MAX, l.inlineMaxBytes, true);
  view.setUint32(0, PS_SIGNATURE_LO, true);
  view.setUint32(4, PS_SIGNATURE_HI, true);
  view.setUint32(PS_OFF_CHECKSUM, fnv1a(bytes, 0, PS_CHECKSUMMED_BYTES), true);
}

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/**
 * Validates every header field against the file's size and returns the header. Throws
 * `ShmNotReadyError`, `ShmForeignFileError`, `ShmUnsupportedVersionError` or
 * `ShmCorruptError`; never reads outside `bytes`.
 */
export function readRegionHeader(bytes: Uint8Array, path: string): RegionHeader {
  const size = bytes.byteLength;
  if (size < FIXED_HEADER_BYTES) {
    if (bytes.every((b) => b === 0)) throw new ShmNotReadyError(`${path}: the header is not written yet`);
    throw new ShmCorruptError(`${path}: truncated (${size} bytes)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, FIXED_HEADER_BYTES);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const state = Atomics.load(
    new Int32Array(bytes.buffer, bytes.byteOffset, FIXED_HEADER_BYTES >> 2),
    72 >> 2,
  );
  if (lo === 0 && hi === 0) throw new ShmNotReadyError(`${path}: the header is not written yet`);
  if (lo !== PS_SIGNATURE_LO || hi !== PS_SIGNATURE_HI) {
    throw new ShmForeignFileError(`${path} is not a Switchyard pub/sub region (bad signature)`);
  }
  const version = view.getUint32(PS_OFF_VERSION, true);
  if (version !== PS_FORMAT_VERSION) {
    throw new ShmUnsupportedVersionError(
      `${path}: format version ${version}; this package reads ${PS_FORMAT_VERSION}`,
    );
  }
  if (state === 0) throw new ShmNotReadyError(`${path}: the publisher has not published the header yet`);
  if (state !== 1 && state !== 2) throw new ShmCorruptError(`${path}: bad state word ${state}`);
  if (view.getUint32(PS_OFF_CHECKSUM, true) !== fnv1a(bytes, 0, PS_CHECKSUMMED_BYTES)) {
    throw new ShmCorruptError(`${path}: header checksum mismatch`);
  }
  const blockCount = view.getUint32(PS_OFF_BLOCK_COUNT, true);
  const blockSize = view.getUint32(PS_OFF_BLOCK_SIZE, true);
  const ringDepth = view.getUint32(PS_OFF_RING_DEPTH, true);
  const slots = view.getUint32(PS_OFF_SLOTS, true);
  if (blockCount < 1 || blockCount > MAX_BLOCK_COUNT)
    throw new ShmCorruptError(`${path}: bad block count ${blockCount}`);
  if (blockSize < MIN_BLOCK_SIZE || blockSize % 64 !== 0 || blockSize > 2 ** 30) {
    throw new ShmCorruptError(`${path}: bad block size ${blockSize}`);
  }
  if (!isPowerOfTwo(ringDepth) || ringDepth > blockCount)
    throw new ShmCorruptError(`${path}: bad ring depth ${ringDepth}`);
  if (slots < 1 || slots > MAX_SUBSCRIBER_SLOTS)
    throw new ShmCorruptError(`${path}: bad subscriber slots ${slots}`);
  const inlineMaxBytes = view.getUint32(PS_OFF_INLINE_MAX, true);
  if (inlineMaxBytes > Math.min(MAX_INLINE_BYTES, blockSize) || (inlineMaxBytes > 0 && ringDepth < 2)) {
    throw new ShmCorruptError(`${path}: bad inline max bytes ${inlineMaxBytes}`);
  }
  const layout = regionLayout(blockCount, blockSize, ringDepth, slots, inlineMaxBytes);
  if (
    view.getUint32(PS_OFF_HEADER_BYTES, true) !== layout.headerBytes ||
    view.getUint32(PS_OFF_RING, true) !== layout.ringOffset ||
    view.getUint32(PS_OFF_TABLE, true) !== layout.tableOffset ||
    view.getUint32(PS_OFF_BLOCKS, true) !== layout.blocksOffset
  ) {
    throw new ShmCorruptError(`${path}: offsets do not match the sizes`);
  }
  if (layout.totalBytes !== size) {
    throw new ShmCorruptError(
      `${path}: truncated or resized: ${size} bytes, the header says ${layout.totalBytes}`,
    );
  }
  const heartbeatIntervalMs = view.getUint32(PS_OFF_HEARTBEAT_INTERVAL, true);
  const staleTimeoutMs = view.getUint32(PS_OFF_STALE_TIMEOUT, true);
  if (heartbeatIntervalMs < 1 || staleTimeoutMs <= heartbeatIntervalMs) {
    throw new ShmCorruptError(`${path}: bad heartbeat interval or stale timeout`);
  }
  const slowSubscriber = SLOW_POLICIES[view.getUint32(PS_OFF_SLOW, true)];
  if (slowSubscriber === undefined) throw new ShmCorruptError(`${path}: bad slow-subscriber policy`);
  const created = view.getBigUint64(PS_OFF_CREATED, true);
  if (created > BigInt(Number.MAX_SAFE_INTEGER)) throw new ShmCorruptError(`${path}: bad creation time`);
  return Object.freeze({
    ...layout,
    version,
    heartbeatIntervalMs,
    staleTimeoutMs,
    slowSubscriber,
    createdAtMs: Number(created),
  });
}

/** File names of regions start with this, so `switchyard shm ls` can find them. */
export const REGION_PREFIX = 'switchyard-ps-';
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/**
 * The file of region `name` in `dir`. Names are 1–200 characters of letters, digits and
 * `. _ -`, not starting with a dot or a dash: nothing can name a file outside `dir`.
 */
export function regionPath(dir: string, name: string): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new ShmInvalidArgumentError(
      `region name must be 1-200 of [A-Za-z0-9._-], not starting with "." or "-", got ${JSON.stringify(name)}`,
    );
  }
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) {
    throw new ShmInvalidArgumentError('option "dir" must be a non-empty path without NUL');
  }
  const base = resolve(dir);
  const path = resolve(base, REGION_PREFIX + name);
  // Belt and braces: the pattern already rules out separators and "..".
  if (!path.startsWith(base + sep)) throw new ShmInvalidArgumentError(`region name ${name} escapes ${dir}`);
  return path;
}
