import { realpathSync } from 'node:fs';
import { channel } from 'node:diagnostics_channel';
import {
  ShmChannelFullError,
  ShmClosedError,
  ShmInvalidArgumentError,
  ShmRecordTooLargeError,
} from './errors.js';
import {
  FIXED_HEADER_BYTES,
  I64_HEARTBEAT,
  I64_POSITION,
  I_FUTEX_SEQ,
  I_FUTEX_WAITERS,
  I_PARKED,
  I_STATE,
  I_WRITER_PID,
  KIND_DATA,
  KIND_END,
  KIND_HEARTBEAT,
  OFF_FUTEX_SEQ,
  RECORD_HEADER_BYTES,
  SLOT_BYTES,
  STATE_CLOSED,
  STATE_OPEN,
  headerBytes,
  writeHeader,
} from './journal-format.js';
import { ringSlot } from './journal-slots.js';
import { closeRinger, createMapping, futexWake, msync, unmapFile, type Mapping } from './native.js';
import { resolveJournalOptions, type JournalOptions } from './options.js';

const onCreate = channel('switchyard:shm:journal-create');
const onClose = channel('switchyard:shm:journal-close');

/**
 * The one writer of a journal. `write` copies a record into the mapping and publishes its
 * length last; nothing in it allocates. Readers parked on a doorbell or a futex are woken
 * only when the header's parked count is non-zero, so an unobserved writer makes no system
 * call at all.
 */
export class JournalWriter {
  readonly path: string;
  readonly #mapping: Mapping;
  readonly #bytes: Uint8Array;
  readonly #i32: Int32Array;
  readonly #i64: BigInt64Array;
  readonly #dataOffset: number;
  readonly #maxMessageLength: number;
  readonly #capacity: number;
  /** Last byte a record may reach: 8 bytes stay free for the end-of-channel mark. */
  readonly #limit: number;
  readonly #slots: number;
  /** The FIFO paths are derived from the real path, which every reader computes alike. */
  readonly #realPath: string;
  /** Per slot: the generation whose FIFO `#ringers` holds open (-1 none). */
  readonly #ringerGeneration: Int32Array;
  readonly #ringers: Int32Array;
  #position = 0;
  #closed = false;

  /** @internal Use `createJournal`. */
  constructor(path: string, options: JournalOptions) {
    const resolved = resolveJournalOptions(options);
    if (typeof path !== 'string' || path === '' || path.includes('\0')) {
      throw new ShmInvalidArgumentError('journal path must be a non-empty string without NUL');
    }
    const dataOffset = headerBytes(resolved.readerSlots);
    this.#mapping = createMapping(path, dataOffset + resolved.capacity, resolved.prefault);
    this.path = path;
    this.#bytes = this.#mapping.bytes;
    this.#i32 = new Int32Array(this.#mapping.buffer);
    this.#i64 = new BigInt64Array(this.#mapping.buffer, 0, FIXED_HEADER_BYTES >> 3);
    this.#dataOffset = dataOffset;
    this.#capacity = resolved.capacity;
    this.#maxMessageLength = resolved.maxMessageLength;
    this.#limit = resolved.capacity - RECORD_HEADER_BYTES;
    this.#slots = resolved.readerSlots;
    this.#ringers = new Int32Array(resolved.readerSlots).fill(-1);
    this.#ringerGeneration = new Int32Array(resolved.readerSlots).fill(-1);
    this.#realPath = realpathSync(path);
    const now = Date.now();
    writeHeader(this.#bytes, { ...resolved, createdAtMs: now });
    Atomics.store(this.#i64, I64_HEARTBEAT, BigInt(now));
    Atomics.store(this.#i32, I_WRITER_PID, process.pid);
    // Published last: a reader that sees OPEN sees every field above.
    Atomics.store(this.#i32, I_STATE, STATE_OPEN);
    if (onCreate.hasSubscribers) onCreate.publish({ path, capacity: resolved.capacity });
  }

  /** Bytes of the data area used so far (the offset of the next record). */
  get position(): number {
    return this.#position;
  }

  /** Data area bytes. */
  get capacity(): number {
    return this.#capacity;
  }

  get maxMessageLength(): number {
    return this.#maxMessageLength;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Appends `data` as one record and returns the bytes used (8 bytes of record header, the
   * payload and padding to a multiple of 8). Throws `ShmRecordTooLargeError` above
   * maxMessageLength and `ShmChannelFullError` when it does not fit (a smaller one may).
   */
  write(data: Uint8Array): number {
    if (this.#closed) throw new ShmClosedError('the journal writer is closed');
    if (!(data instanceof Uint8Array))
      throw new ShmInvalidArgumentError('write(data): data must be a Uint8Array');
    const length = data.length;
    if (length > this.#maxMessageLength) {
      throw new ShmRecordTooLargeError(
        `a ${length}-byte record exceeds maxMessageLength ${this.#maxMessageLength}`,
      );
    }
    const used = (length + 15) & ~7;
    const position = this.#position;
    if (position + used > this.#limit) {
      throw new ShmChannelFullError(
        `a ${length}-byte record needs ${used} bytes; ${Math.max(0, this.#limit - position)} are left`,
      );
    }
    const offset = this.#dataOffset + position;
    // TypedArray#set is a memmove here, faster than a byte loop even for 64 bytes.
    this.#bytes.set(data, offset + RECORD_HEADER_BYTES);
    // The commit word last, with a sequentially consistent store: the record is whole
    // before any reader can see its length.
    Atomics.store(this.#i32, offset >> 2, (length << 2) | KIND_DATA);
    this.#position = position + used;
    if (Atomics.load(this.#i32, I_PARKED) !== 0) this.#wake();
    return used;
  }

  /**
   * Writes a heartbeat record and stamps the header's heartbeat time, so readers know the
   * writer lives. Call at least once per `timeout` while idle. Returns the bytes used (8).
   */
  heartbeat(): number {
    if (this.#closed) throw new ShmClosedError('the journal writer is closed');
    const position = this.#position;
    if (position + RECORD_HEADER_BYTES > this.#limit) {
      throw new ShmChannelFullError('no room left for a heartbeat: the journal is at its end');
    }
    Atomics.store(this.#i64, I64_HEARTBEAT, BigInt(Date.now()));
    Atomics.store(this.#i32, (this.#dataOffset + position) >> 2, KIND_HEARTBEAT);
    this.#position = position + RECORD_HEADER_BYTES;
    Atomics.store(this.#i64, I64_POSITION, BigInt(this.#position));
    if (Atomics.load(this.#i32, I_PARKED) !== 0) this.#wake();
    return RECORD_HEADER_BYTES;
  }

  /** Writes the mapped pages written so far to the file (msync, synchronous). */
  flush(): void {
    if (this.#closed) throw new ShmClosedError('the journal writer is closed');
    Atomics.store(this.#i64, I64_POSITION, BigInt(this.#position));
    msync(this.#mapping, 0, this.#dataOffset + this.#position + RECORD_HEADER_BYTES, true);
  }

  /** Writes the end-of-channel mark, wakes every parked reader and unmaps. Idempotent. */
  close(): void {
    if (this.#closed) return;
    Atomics.store(this.#i32, (this.#dataOffset + this.#position) >> 2, KIND_END);
    this.#position += RECORD_HEADER_BYTES;
    Atomics.store(this.#i64, I64_POSITION, BigInt(this.#position));
    Atomics.store(this.#i32, I_STATE, STATE_CLOSED);
    this.#wake();
    this.#closed = true;
    for (let slot = 0; slot < this.#slots; slot++) {
      const fd = this.#ringers[slot] as number;
      if (fd >= 0) closeRinger(fd);
    }
    unmapFile(this.#mapping);
    if (onClose.hasSubscribers) onClose.publish({ path: this.path, position: this.#position });
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** Wakes futex waiters and rings the doorbell of every parked reader slot. */
  #wake(): void {
    const i32 = this.#i32;
    if (Atomics.load(i32, I_FUTEX_WAITERS) !== 0) {
      Atomics.add(i32, I_FUTEX_SEQ, 1);
      futexWake(this.#mapping, OFF_FUTEX_SEQ);
    }
    const base = FIXED_HEADER_BYTES >> 2;
    for (let slot = 0; slot < this.#slots; slot++) {
      const s = base + slot * (SLOT_BYTES >> 2);
      if (Atomics.load(i32, s + 1) !== 1) continue;
      // Whoever moves a slot from parked to not parked takes it off the parked count: here
      // the writer, which then rings; if the reader got there first it has done both.
      if (Atomics.compareExchange(i32, s + 1, 1, 0) !== 1) continue;
      Atomics.sub(i32, I_PARKED, 1);
      this.#ring(slot, s);
    }
  }

  #ring(slot: number, s: number): void {
    ringSlot(this.#ringers, this.#ringerGeneration, this.#realPath, slot, Atomics.load(this.#i32, s + 3));
  }
}

/**
 * Creates a journal at `path` (exclusively, mode 0600, every block reserved up front) and
 * returns its writer. `path` may be on /dev/shm (memory) or any file system (persistent).
 */
export function createJournal(path: string, options: JournalOptions): JournalWriter {
  return new JournalWriter(path, options);
}
