import { channel } from 'node:diagnostics_channel';
import { realpathSync, statSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { abortableSleep } from './abortable-sleep.js';
import {
  ShmClosedError,
  ShmCorruptError,
  ShmError,
  ShmInvalidArgumentError,
  ShmNotReadyError,
  ShmSystemError,
  ShmWriterTimeoutError,
} from './errors.js';
import {
  FIXED_HEADER_BYTES,
  I64_HEARTBEAT,
  I_FUTEX_SEQ,
  I_FUTEX_WAITERS,
  I_PARKED,
  KIND_DATA,
  KIND_END,
  KIND_HEARTBEAT,
  OFF_FUTEX_SEQ,
  RECORD_HEADER_BYTES,
  decodeRecord,
  readHeader,
  type JournalHeader,
} from './journal-format.js';
import { bellPath, claimSlot, releaseSlot, slotIndex } from './journal-slots.js';
import { DoorbellPark } from './doorbell-park.js';
import { Doorbell, futexWait, openMapping, unmapFile, type Mapping } from './native.js';
import {
  checkWait,
  resolveOpenJournalOptions,
  type OpenJournalOptions,
  type ResolvedOpenJournalOptions,
  type WaitStrategy,
} from './options.js';

const onTimeout = channel('switchyard:shm:journal-writer-timeout');

/** Options of `JournalReader.read`. */
export interface ReadOptions {
  signal?: AbortSignal;
  wait?: WaitStrategy;
}

// Longest single futex sleep of the `block` strategy: bounds how late an abort is noticed.
const FUTEX_SLICE_MS = 50;

/**
 * A reader of a journal, at its own position. Records are returned as views into the
 * mapping (no copy); a view stays valid until the reader is closed, when it becomes empty.
 */
export class JournalReader {
  readonly path: string;
  readonly header: JournalHeader;
  readonly #options: ResolvedOpenJournalOptions;
  readonly #mapping: Mapping;
  readonly #buffer: ArrayBufferLike;
  readonly #i32: Int32Array;
  readonly #i64: BigInt64Array;
  readonly #dataOffset: number;
  readonly #capacity: number;
  readonly #maxMessageLength: number;
  readonly #timeoutMs: number;
  #position = 0;
  #ended = false;
  #closed = false;
  // Writer-timeout bookkeeping: when this reader last saw the position move.
  #seenPosition = -1;
  #seenAtMs = 0;
  // Doorbell parking: a slot in the header and a FIFO, taken on the first park.
  #slot = -1;
  #bell: Doorbell | undefined;
  #noBell = false;
  readonly #parker = new DoorbellPark();

  /** @internal Use `openJournal`. */
  constructor(path: string, mapping: Mapping, header: JournalHeader, options: ResolvedOpenJournalOptions) {
    this.path = path;
    this.header = header;
    this.#options = options;
    this.#mapping = mapping;
    this.#buffer = mapping.buffer;
    this.#i32 = new Int32Array(mapping.buffer);
    this.#i64 = new BigInt64Array(mapping.buffer, 0, FIXED_HEADER_BYTES >> 3);
    this.#dataOffset = header.headerBytes;
    this.#capacity = header.capacity;
    this.#maxMessageLength = header.maxMessageLength;
    this.#timeoutMs = header.timeoutMs;
  }

  /** Data position of the next record. */
  get position(): number {
    return this.#position;
  }

  /** True once the end-of-channel mark was read. */
  get ended(): boolean {
    return this.#ended;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The next record as a view, or `null` when none is there yet (or the channel ended: see
   * `ended`). Throws `ShmWriterTimeoutError` when nothing is there and the writer has been
   * silent for longer than the journal timeout, `ShmCorruptError` for a damaged record.
   */
  tryRead(): Uint8Array | null {
    if (this.#closed) throw new ShmClosedError('the journal reader is closed');
    const record = this.#poll();
    if (record === null && !this.#ended) this.#checkTimeout();
    return record;
  }

  /** The next record without a timeout check (hot path). */
  #poll(): Uint8Array | null {
    if (this.#ended) return null;
    const i32 = this.#i32;
    for (;;) {
      const position = this.#position;
      const offset = this.#dataOffset + position;
      if (position + RECORD_HEADER_BYTES > this.#capacity) {
        throw new ShmCorruptError(`${this.path}: no end-of-channel mark before the end of the data area`);
      }
      const word = Atomics.load(i32, offset >> 2);
      if (word === 0) return null;
      const kind = word & 3;
      const length = word >>> 2;
      if (kind === KIND_DATA) {
        const used = (length + 15) & ~7;
        if (length > this.#maxMessageLength || position + used + RECORD_HEADER_BYTES > this.#capacity) {
          throw new ShmCorruptError(`${this.path}: record at ${position}: bad length ${length}`);
        }
        this.#position = position + used;
        return new Uint8Array(this.#buffer, offset + RECORD_HEADER_BYTES, length);
      }
      if (length !== 0) {
        throw new ShmCorruptError(`${this.path}: record at ${position}: bad commit word ${word >>> 0}`);
      }
      if (kind === KIND_HEARTBEAT) {
        this.#position = position + RECORD_HEADER_BYTES;
        continue;
      }
      if (kind === KIND_END) {
        this.#ended = true;
        return null;
      }
      throw new ShmCorruptError(`${this.path}: record at ${position}: bad commit word ${word >>> 0}`);
    }
  }

  #checkTimeout(): void {
    const now = Date.now();
    if (this.#seenPosition !== this.#position) {
      this.#seenPosition = this.#position;
      this.#seenAtMs = now;
      return;
    }
    // Cheap check first: spinning readers come here on every empty poll, and reading the
    // 64-bit heartbeat word allocates a BigInt.
    if (now - this.#seenAtMs <= this.#timeoutMs) return;
    const heartbeat = Number(Atomics.load(this.#i64, I64_HEARTBEAT));
    if (heartbeat > this.#seenAtMs) {
      this.#seenAtMs = heartbeat;
      if (now - heartbeat <= this.#timeoutMs) return;
    }
    if (onTimeout.hasSubscribers) onTimeout.publish({ path: this.path, position: this.#position });
    throw new ShmWriterTimeoutError(
      `${this.path}: no record or heartbeat for ${now - this.#seenAtMs} ms (timeout ${this.#timeoutMs} ms)`,
    );
  }

  /** Milliseconds until the writer would count as timed out (at least 1). */
  #timeoutLeftMs(): number {
    const heartbeat = Number(Atomics.load(this.#i64, I64_HEARTBEAT));
    const last = Math.max(this.#seenAtMs, heartbeat);
    return Math.max(1, Math.min(2 ** 31 - 1, last + this.#timeoutMs - Date.now() + 1));
  }

  /**
   * The next record, waiting for it with `wait` (default: the reader's, `adaptive`);
   * `null` once the channel ended. Rejects with `signal.reason` on abort, with
   * `ShmWriterTimeoutError` when the writer goes silent, `ShmClosedError` on close.
   */
  async read(options: ReadOptions = {}): Promise<Uint8Array | null> {
    const first = this.tryRead();
    if (first !== null || this.#ended) return first;
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new ShmInvalidArgumentError('option "signal" must be an AbortSignal');
    }
    const wait = options.wait === undefined ? this.#options.wait : checkWait(options.wait);
    signal?.throwIfAborted();
    switch (wait) {
      case 'spin':
        return this.#readSpinning(signal);
      case 'yield':
        return this.#readPolling(signal, 0);
      case 'backoff':
        return this.#readPolling(signal, this.#options.maxBackoffMs);
      case 'block':
        return this.#readBlocking(signal);
      case 'adaptive':
        return this.#readAdaptive(signal);
    }
  }

  /** Polls for up to `micros` µs; the record, or `null` if none came (or the channel ended). */
  #spin(micros: number): Uint8Array | null {
    if (micros <= 0) return this.#poll();
    const deadline = performance.now() + micros / 1000;
    for (;;) {
      for (let i = 0; i < 64; i++) {
        const record = this.#poll();
        if (record !== null || this.#ended) return record;
      }
      if (performance.now() >= deadline) return null;
    }
  }

  #afterWait(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new ShmClosedError('the journal reader was closed while reading');
    signal?.throwIfAborted();
  }

  async #readSpinning(signal: AbortSignal | undefined): Promise<Uint8Array | null> {
    for (;;) {
      // Slices of 1 ms, then one event-loop turn: aborts and timers still get through.
      const record = this.#spin(1000);
      if (record !== null || this.#ended) return record;
      this.#checkTimeout();
      await nextTurn();
      this.#afterWait(signal);
    }
  }

  async #readPolling(signal: AbortSignal | undefined, maxBackoffMs: number): Promise<Uint8Array | null> {
    let delay = 0;
    for (;;) {
      if (maxBackoffMs === 0) await nextTurn();
      else {
        await abortableSleep(delay, signal);
        delay = delay === 0 ? 1 : Math.min(maxBackoffMs, delay * 2);
      }
      this.#afterWait(signal);
      const record = this.tryRead();
      if (record !== null || this.#ended) return record;
    }
  }

  async #readBlocking(signal: AbortSignal | undefined): Promise<Uint8Array | null> {
    const i32 = this.#i32;
    for (;;) {
      const spun = this.#spin(this.#options.spinMicros);
      if (spun !== null || this.#ended) return spun;
      this.#checkTimeout();
      // Announce the waiter before the last look: the writer that commits after that look
      // sees the count and bumps the sequence, so the futex wait cannot miss it.
      const sequence = Atomics.load(i32, I_FUTEX_SEQ);
      Atomics.add(i32, I_PARKED, 1);
      Atomics.add(i32, I_FUTEX_WAITERS, 1);
      let record: Uint8Array | null;
      try {
        record = this.#poll();
        if (record === null && !this.#ended) {
          futexWait(this.#mapping, OFF_FUTEX_SEQ, sequence, Math.min(FUTEX_SLICE_MS, this.#timeoutLeftMs()));
        }
      } finally {
        Atomics.sub(i32, I_FUTEX_WAITERS, 1);
        Atomics.sub(i32, I_PARKED, 1);
      }
      if (record !== null || this.#ended) return record;
      signal?.throwIfAborted();
      // A blocking wait: no event-loop turn here unless aborted or timed out.
      const next = this.tryRead();
      if (next !== null || this.#ended) return next;
    }
  }

  async #readAdaptive(signal: AbortSignal | undefined): Promise<Uint8Array | null> {
    for (;;) {
      const spun = this.#spin(this.#options.spinMicros);
      if (spun !== null || this.#ended) return spun;
      this.#checkTimeout();
      if (!this.#ensureBell()) return this.#readPolling(signal, this.#options.maxBackoffMs);
      const record = await this.#parker.park(
        this.#i32,
        this.#slot,
        this.#bell as Doorbell,
        () => this.#poll(),
        () => this.#ended,
        () => this.#timeoutLeftMs(),
        signal,
      );
      if (record !== null || this.#ended) return record;
      this.#afterWait(signal);
      const next = this.tryRead();
      if (next !== null || this.#ended) return next;
    }
  }

  /** Takes a reader slot and creates its FIFO; false when every slot is taken. */
  #ensureBell(): boolean {
    if (this.#bell !== undefined) return true;
    if (this.#noBell) return false;
    const slots = this.header.readerSlots;
    const slot = claimSlot(this.#i32, slots);
    if (slot < 0) return false;
    const path = bellPath(realpathSync(this.path), slot);
    let bell: Doorbell;
    try {
      try {
        bell = Doorbell.fifo(path);
      } catch (error) {
        if (!(error instanceof ShmError) || error.code !== 'SHM_ERR_EXISTS') throw error;
        // Left behind by a reader that died: ours now.
        releaseSlot(this.#i32, slot, path);
        const again = claimSlot(this.#i32, slots);
        if (again !== slot) {
          if (again >= 0) releaseSlot(this.#i32, again, undefined);
          return false;
        }
        bell = Doorbell.fifo(path);
      }
    } catch (error) {
      releaseSlot(this.#i32, slot, undefined);
      // No FIFO here (a read-only directory, say): this reader polls with backoff instead.
      if (error instanceof ShmSystemError || (error instanceof ShmError && error.code === 'SHM_ERR_EXISTS')) {
        this.#noBell = true;
        return false;
      }
      throw error;
    }
    // A new generation tells the writer to reopen the FIFO rather than ring a stale one.
    Atomics.add(this.#i32, slotIndex(slot) + 3, 1);
    this.#slot = slot;
    this.#bell = bell;
    return true;
  }

  /**
   * Moves to data position `position`, which must be a record boundary not past the last
   * committed record (0 replays everything). Validates every record on the way.
   */
  seek(position: number): void {
    if (this.#closed) throw new ShmClosedError('the journal reader is closed');
    if (!Number.isSafeInteger(position) || position < 0 || position % 8 !== 0 || position > this.#capacity) {
      throw new ShmInvalidArgumentError(`seek position must be a multiple of 8 in 0..${this.#capacity}`);
    }
    let at = 0;
    while (at < position) {
      const record = decodeRecord(this.#i32, this.#dataOffset, at, this.#capacity, this.#maxMessageLength);
      if (record === null || record.kind === KIND_END) break;
      at += record.used;
    }
    if (at !== position) {
      throw new ShmInvalidArgumentError(`position ${position} is not a committed record boundary`);
    }
    const here = decodeRecord(this.#i32, this.#dataOffset, at, this.#capacity, this.#maxMessageLength);
    this.#position = position;
    this.#ended = here !== null && here.kind === KIND_END;
    this.#seenPosition = -1;
  }

  /** Records until the end-of-channel mark, waiting with the reader's default strategy. */
  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const record = await this.read();
      if (record === null) return;
      yield record;
    }
  }

  /** Releases the slot and FIFO, rejects a pending read, and unmaps. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#parker.close(new ShmClosedError('the journal reader was closed while reading'));
    if (this.#bell !== undefined) {
      const path = this.#bell.path;
      this.#bell.close();
      releaseSlot(this.#i32, this.#slot, path);
      this.#bell = undefined;
    }
    unmapFile(this.#mapping);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Opens the journal at `path` for reading from position 0. With `waitForMs`, waits (blocking
 * this thread, in 1–10 ms steps) for a writer still creating the file. Throws
 * `ShmNotReadyError`, `ShmForeignFileError`, `ShmUnsupportedVersionError`,
 * `ShmCorruptError` or `ShmSystemError` (e.g. `errno` ENOENT).
 */
export function openJournal(path: string, options: OpenJournalOptions = {}): JournalReader {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new ShmInvalidArgumentError('journal path must be a non-empty string without NUL');
  }
  const resolved = resolveOpenJournalOptions(options);
  const deadline = Date.now() + resolved.waitForMs;
  let step = 1;
  for (;;) {
    try {
      return tryOpen(path, resolved);
    } catch (error) {
      const retry =
        error instanceof ShmNotReadyError || (error instanceof ShmSystemError && error.errno === 'ENOENT');
      if (!retry || Date.now() >= deadline) throw error;
      sleepSync(step);
      step = Math.min(10, step * 2);
    }
  }
}

function tryOpen(path: string, options: ResolvedOpenJournalOptions): JournalReader {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new ShmInvalidArgumentError(`${path} is not a regular file`);
    size = stat.size;
  } catch (error) {
    if (error instanceof ShmError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    throw new ShmSystemError(`stat ${path} failed: ${code}`, code, 'stat', { cause: error });
  }
  if (size === 0) throw new ShmNotReadyError(`${path} is empty: the writer has not created it yet`);
  const mapping = openMapping(path);
  try {
    const header = readHeader(mapping.bytes, path);
    return new JournalReader(path, mapping, header, options);
  } catch (error) {
    unmapFile(mapping);
    throw error;
  }
}
