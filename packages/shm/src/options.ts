/** Options of @switchyard/shm: types, frozen defaults and validating resolvers. */
import { ShmInvalidArgumentError } from './errors.js';
import {
  MAX_READER_SLOTS,
  MAX_RECORD_LENGTH,
  MIN_CAPACITY,
  RECORD_HEADER_BYTES,
  TICK_UNITS,
  recordBytes,
  type TickUnit,
} from './journal-format.js';
import { MAX_MAPPING_BYTES } from './native.js';

/**
 * How a reader waits for the next record.
 * - `spin`: poll in a tight loop (bounded slices, yielding to the event loop between them);
 *   lowest latency, burns a core.
 * - `yield`: poll once per event-loop turn (setImmediate).
 * - `backoff`: poll with timers growing to `maxBackoffMs`.
 * - `adaptive` (default): spin for up to `spinMicros`, then park on the doorbell; the writer
 *   rings it only while the reader is parked.
 * - `block`: spin, then sleep on a futex, blocking the thread (worker threads only).
 */
export type WaitStrategy = 'spin' | 'yield' | 'backoff' | 'adaptive' | 'block';
export const WAIT_STRATEGIES: readonly WaitStrategy[] = ['spin', 'yield', 'backoff', 'adaptive', 'block'];

/** Options of `createJournal`. */
export interface JournalOptions {
  /** Who writes (recorded in the header). */
  writerId: bigint | number;
  /** Which channel (recorded in the header). */
  channelId: bigint | number;
  /** Data area bytes: a multiple of 8, at least 16. */
  capacity: number;
  /** Largest record payload accepted by `write`. */
  maxMessageLength: number;
  /** Silence after which readers report the writer dead, in `tickUnit`s. */
  timeout: number;
  /** Unit of `timeout`. Default `'ms'`. */
  tickUnit?: TickUnit;
  /** Reader slots: how many readers may park on a doorbell at once. Default 32. */
  readerSlots?: number;
  /**
   * Map every page at create (MAP_POPULATE), so `write` never takes a page fault: about
   * 0.1 s per GiB once, instead of a fault per 4 KiB page while writing. Default true.
   */
  prefault?: boolean;
}

export interface ResolvedJournalOptions {
  readonly writerId: bigint;
  readonly channelId: bigint;
  readonly capacity: number;
  readonly maxMessageLength: number;
  readonly timeout: number;
  readonly tickUnit: TickUnit;
  readonly readerSlots: number;
  readonly prefault: boolean;
}

export const JOURNAL_DEFAULTS: {
  readonly tickUnit: TickUnit;
  readonly readerSlots: number;
  readonly prefault: boolean;
} = Object.freeze({
  tickUnit: 'ms',
  readerSlots: 32,
  prefault: true,
});

function u64(name: string, value: unknown): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ShmInvalidArgumentError(`option "${name}" must be a non-negative integer, got ${value}`);
    }
    return BigInt(value);
  }
  if (typeof value === 'bigint') {
    if (value < 0n || value >= 2n ** 64n) {
      throw new ShmInvalidArgumentError(`option "${name}" must fit in 64 unsigned bits`);
    }
    return value;
  }
  throw new ShmInvalidArgumentError(`option "${name}" must be a bigint or a number`);
}

function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ShmInvalidArgumentError(
      `option "${name}" must be an integer in ${min}..${max}, got ${String(value)}`,
    );
  }
  return value;
}

/** Validates `createJournal`'s options; every message names the option. */
export function resolveJournalOptions(options: JournalOptions): ResolvedJournalOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ShmInvalidArgumentError('createJournal options must be an object');
  }
  const readerSlots = integer(
    'readerSlots',
    options.readerSlots ?? JOURNAL_DEFAULTS.readerSlots,
    0,
    MAX_READER_SLOTS,
  );
  const capacity = integer('capacity', options.capacity, MIN_CAPACITY, MAX_MAPPING_BYTES - 65536);
  if (capacity % 8 !== 0)
    throw new ShmInvalidArgumentError(`option "capacity" must be a multiple of 8, got ${capacity}`);
  const maxMessageLength = integer('maxMessageLength', options.maxMessageLength, 0, MAX_RECORD_LENGTH);
  if (recordBytes(maxMessageLength) + RECORD_HEADER_BYTES > capacity) {
    throw new ShmInvalidArgumentError(
      `option "maxMessageLength" (${maxMessageLength}) does not fit in "capacity" (${capacity}) with the end mark`,
    );
  }
  const prefault = options.prefault ?? JOURNAL_DEFAULTS.prefault;
  if (typeof prefault !== 'boolean') throw new ShmInvalidArgumentError('option "prefault" must be a boolean');
  const tickUnit = options.tickUnit ?? JOURNAL_DEFAULTS.tickUnit;
  if (!TICK_UNITS.includes(tickUnit)) {
    throw new ShmInvalidArgumentError(`option "tickUnit" must be one of ${TICK_UNITS.join(', ')}`);
  }
  return Object.freeze({
    writerId: u64('writerId', options.writerId),
    channelId: u64('channelId', options.channelId),
    capacity,
    maxMessageLength,
    timeout: integer('timeout', options.timeout, 0, Number.MAX_SAFE_INTEGER),
    tickUnit,
    readerSlots,
    prefault,
  });
}

/** Options of `openJournal`. */
export interface OpenJournalOptions {
  /** Wait up to this long for a writer still creating the file (ENOENT or not ready). Default 0. */
  waitForMs?: number;
  /** Default wait strategy of `read` and async iteration. Default `'adaptive'`. */
  wait?: WaitStrategy;
  /** How long `adaptive` and `block` spin before parking, in µs. Default 20. */
  spinMicros?: number;
  /** Longest sleep of `backoff`, in ms. Default 4. */
  maxBackoffMs?: number;
}

export interface ResolvedOpenJournalOptions {
  readonly waitForMs: number;
  readonly wait: WaitStrategy;
  readonly spinMicros: number;
  readonly maxBackoffMs: number;
}

export const OPEN_JOURNAL_DEFAULTS: ResolvedOpenJournalOptions = Object.freeze({
  waitForMs: 0,
  wait: 'adaptive',
  spinMicros: 20,
  maxBackoffMs: 4,
});

export function checkWait(value: unknown, name = 'wait'): WaitStrategy {
  if (!WAIT_STRATEGIES.includes(value as WaitStrategy)) {
    throw new ShmInvalidArgumentError(`option "${name}" must be one of ${WAIT_STRATEGIES.join(', ')}`);
  }
  return value as WaitStrategy;
}

/** Validates `openJournal`'s options. */
export function resolveOpenJournalOptions(options: OpenJournalOptions = {}): ResolvedOpenJournalOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ShmInvalidArgumentError('openJournal options must be an object');
  }
  const d = OPEN_JOURNAL_DEFAULTS;
  return Object.freeze({
    waitForMs: integer('waitForMs', options.waitForMs ?? d.waitForMs, 0, 2 ** 31 - 1),
    wait: checkWait(options.wait ?? d.wait),
    spinMicros: integer('spinMicros', options.spinMicros ?? d.spinMicros, 0, 1_000_000),
    maxBackoffMs: integer('maxBackoffMs', options.maxBackoffMs ?? d.maxBackoffMs, 1, 60_000),
  });
}
