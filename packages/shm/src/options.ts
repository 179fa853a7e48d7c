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
import {
  MAX_BLOCK_COUNT,
  MAX_INLINE_BYTES,
  MAX_SUBSCRIBER_SLOTS,
  MIN_BLOCK_SIZE,
  SLOW_POLICIES,
  regionLayout,
  type SlowSubscriberPolicy,
} from './pubsub-format.js';

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

/** Configuration of a pub/sub region (`Publisher.create`, `ShmChannel.listen/connect`). */
export interface PubSubConfig {
  /** Blocks in the pool. Default 256. */
  blockCount?: number;
  /** Bytes per block: the largest message. A multiple of 64. Default 64 KiB. */
  blockSize?: number;
  /** Descriptor ring entries: a power of two, at most `blockCount`. Default 128. */
  ringDepth?: number;
  /** How often the publisher stamps its heartbeat, ms. Default 100. */
  heartbeatIntervalMs?: number;
  /** Heartbeat age after which subscribers report `SHM_ERR_PUBLISHER_DEAD`, ms. Default 5000. */
  staleTimeoutMs?: number;
  /**
   * `'overwrite'` (default): the publisher never waits; a subscriber that falls more than
   * `ringDepth` behind loses the oldest messages and is told how many (a full ring evicts
   * `ringDepth / 64` entries at a time, 1 to 64: up to that many − 1 may go a little early).
   * `'block'`: the publisher never overwrites a message a live subscriber has not read
   * (`send` throws `SHM_ERR_WOULD_BLOCK`; `writable()` waits for room).
   */
  slowSubscriber?: SlowSubscriberPolicy;
  /** Subscribers that can attach at once. Default 8. */
  subscriberSlots?: number;
  /** Directory of the region files. Default `/dev/shm`. */
  dir?: string;
  /** Prefault every page at create (MAP_POPULATE). Default true. */
  prefault?: boolean;
  /**
   * `send` carries messages of at most this many bytes inline, in the ring entry: no block,
   * no reference count (a subscriber gets a private copy). Default 64 (0 when `ringDepth`
   * is 1); 0: every message takes a block. At most `blockSize` and 4080; needs `ringDepth`
   * ≥ 2. Each ring entry then takes `align16(16 + inlineMaxBytes)` bytes (80 by default).
   * `loan()` always hands out a block.
   */
  inlineMaxBytes?: number;
}

export interface ResolvedPubSubConfig {
  readonly blockCount: number;
  readonly blockSize: number;
  readonly ringDepth: number;
  readonly heartbeatIntervalMs: number;
  readonly staleTimeoutMs: number;
  readonly slowSubscriber: SlowSubscriberPolicy;
  readonly subscriberSlots: number;
  readonly dir: string;
  readonly prefault: boolean;
  readonly inlineMaxBytes: number;
}

export const PUBSUB_DEFAULTS: ResolvedPubSubConfig = Object.freeze({
  blockCount: 256,
  blockSize: 64 * 1024,
  ringDepth: 128,
  heartbeatIntervalMs: 100,
  staleTimeoutMs: 5000,
  slowSubscriber: 'overwrite',
  subscriberSlots: 8,
  dir: '/dev/shm',
  prefault: true,
  inlineMaxBytes: 64,
});

/** Validates a `PubSubConfig`; every message names the option. */
export function resolvePubSubConfig(config: PubSubConfig = {}): ResolvedPubSubConfig {
  if (typeof config !== 'object' || config === null) {
    throw new ShmInvalidArgumentError('PubSubConfig must be an object');
  }
  const d = PUBSUB_DEFAULTS;
  const blockCount = integer('blockCount', config.blockCount ?? d.blockCount, 1, MAX_BLOCK_COUNT);
  const blockSize = integer('blockSize', config.blockSize ?? d.blockSize, MIN_BLOCK_SIZE, 2 ** 30);
  if (blockSize % 64 !== 0) {
    throw new ShmInvalidArgumentError(`option "blockSize" must be a multiple of 64, got ${blockSize}`);
  }
  const ringDepth = integer(
    'ringDepth',
    config.ringDepth ?? Math.min(d.ringDepth, blockCount),
    1,
    blockCount,
  );
  if ((ringDepth & (ringDepth - 1)) !== 0) {
    throw new ShmInvalidArgumentError(`option "ringDepth" must be a power of two, got ${ringDepth}`);
  }
  const heartbeatIntervalMs = integer(
    'heartbeatIntervalMs',
    config.heartbeatIntervalMs ?? d.heartbeatIntervalMs,
    1,
    2 ** 31 - 1,
  );
  const staleTimeoutMs = integer('staleTimeoutMs', config.staleTimeoutMs ?? d.staleTimeoutMs, 2, 2 ** 31 - 1);
  if (staleTimeoutMs <= heartbeatIntervalMs) {
    throw new ShmInvalidArgumentError(
      `option "staleTimeoutMs" (${staleTimeoutMs}) must exceed "heartbeatIntervalMs" (${heartbeatIntervalMs})`,
    );
  }
  const slowSubscriber = config.slowSubscriber ?? d.slowSubscriber;
  if (!SLOW_POLICIES.includes(slowSubscriber)) {
    throw new ShmInvalidArgumentError(`option "slowSubscriber" must be one of ${SLOW_POLICIES.join(', ')}`);
  }
  const subscriberSlots = integer(
    'subscriberSlots',
    config.subscriberSlots ?? d.subscriberSlots,
    1,
    MAX_SUBSCRIBER_SLOTS,
  );
  const dir = config.dir ?? d.dir;
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) {
    throw new ShmInvalidArgumentError('option "dir" must be a non-empty path without NUL');
  }
  const prefault = config.prefault ?? d.prefault;
  if (typeof prefault !== 'boolean') throw new ShmInvalidArgumentError('option "prefault" must be a boolean');
  // The default carries small messages inline wherever the ring allows it (ringDepth ≥ 2).
  const inlineMaxBytes = integer(
    'inlineMaxBytes',
    config.inlineMaxBytes ?? (ringDepth >= 2 ? d.inlineMaxBytes : 0),
    0,
    Math.min(MAX_INLINE_BYTES, blockSize),
  );
  if (inlineMaxBytes > 0 && ringDepth < 2) {
    throw new ShmInvalidArgumentError('option "inlineMaxBytes" needs "ringDepth" of at least 2');
  }
  if (
    regionLayout(blockCount, blockSize, ringDepth, subscriberSlots, inlineMaxBytes).totalBytes >
    MAX_MAPPING_BYTES
  ) {
    throw new ShmInvalidArgumentError(
      `options "blockCount" × "blockSize" (${blockCount} × ${blockSize}) exceed the ${MAX_MAPPING_BYTES}-byte mapping limit`,
    );
  }
  return Object.freeze({
    blockCount,
    blockSize,
    ringDepth,
    heartbeatIntervalMs,
    staleTimeoutMs,
    slowSubscriber,
    subscriberSlots,
    dir,
    prefault,
    inlineMaxBytes,
  });
}

/** Options of `Subscriber.open`. */
export interface SubscriberOptions {
  /** Wait up to this long for the region to appear (blocking the thread). Default 0. */
  timeoutMs?: number;
  /** Directory of the region files. Default `/dev/shm`. */
  dir?: string;
  /**
   * `'next'` (default): the first message published after the subscriber attached;
   * `'oldest'`: the oldest message the ring still holds.
   */
  from?: 'next' | 'oldest';
  /** Default wait strategy of `recv`. Default `'adaptive'`. */
  wait?: WaitStrategy;
  /** How long `adaptive` and `block` spin before parking, µs. Default 20. */
  spinMicros?: number;
  /** Longest sleep of `backoff`, ms. Default 4. */
  maxBackoffMs?: number;
}

export interface ResolvedSubscriberOptions {
  readonly timeoutMs: number;
  readonly dir: string;
  readonly from: 'next' | 'oldest';
  readonly wait: WaitStrategy;
  readonly spinMicros: number;
  readonly maxBackoffMs: number;
}

export const SUBSCRIBER_DEFAULTS: ResolvedSubscriberOptions = Object.freeze({
  timeoutMs: 0,
  dir: '/dev/shm',
  from: 'next',
  wait: 'adaptive',
  spinMicros: 20,
  maxBackoffMs: 4,
});

export function resolveSubscriberOptions(options: SubscriberOptions = {}): ResolvedSubscriberOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ShmInvalidArgumentError('Subscriber options must be an object');
  }
  const d = SUBSCRIBER_DEFAULTS;
  const from = options.from ?? d.from;
  if (from !== 'next' && from !== 'oldest')
    throw new ShmInvalidArgumentError('option "from" must be "next" or "oldest"');
  const dir = options.dir ?? d.dir;
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) {
    throw new ShmInvalidArgumentError('option "dir" must be a non-empty path without NUL');
  }
  return Object.freeze({
    timeoutMs: integer('timeoutMs', options.timeoutMs ?? d.timeoutMs, 0, 2 ** 31 - 1),
    dir,
    from,
    wait: checkWait(options.wait ?? d.wait),
    spinMicros: integer('spinMicros', options.spinMicros ?? d.spinMicros, 0, 1_000_000),
    maxBackoffMs: integer('maxBackoffMs', options.maxBackoffMs ?? d.maxBackoffMs, 1, 60_000),
  });
}
