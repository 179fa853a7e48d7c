/**
 * Broker options: their types, frozen defaults, and `resolveOptions()`, which validates every
 * option and names it in the error.
 */
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import { MailboxInvalidArgumentError } from './errors.js';
import type { HashAlgorithm } from './message.js';
import type { SqliteStoreOptions } from './sqlite-store.js';
import type { MailboxSettings, MessageStore } from './store.js';

export interface BrokerOptions {
  /** 'memory:', 'sqlite:<path>' (or 'sqlite::memory:'), or a `MessageStore` you opened (and close). */
  readonly store: string | MessageStore;
  /** The one source of time (default: the system clock). */
  readonly clock?: Clock;
  /** Options of the SQLite store when `store` is 'sqlite:…'. */
  readonly sqlite?: SqliteStoreOptions;
  /** Settings of mailboxes created by their first send. */
  readonly mailboxDefaults?: Partial<MailboxSettings>;
  /** Largest encoded body accepted (default 256 KiB). */
  readonly maxMessageBytes?: number;
  /** Lease of a fetch that names none (default 5 min, pandora's DefaultLeaseTime). */
  readonly defaultLeaseMs?: number;
  /** Longest lease or extension (default 12 h). */
  readonly maxLeaseMs?: number;
  /** Longest delay of a send (default 365 days). */
  readonly maxDelayMs?: number;
  /** Longest long poll (default 60 s). */
  readonly maxWaitMs?: number;
  /** Most messages one fetchMany may return (default 1000). */
  readonly maxFetch?: number;
  /** Operations waiting for a commit before new ones fail with MAILBOX_ERR_OVERLOADED (default 100 000). */
  readonly maxPendingOps?: number;
  /** Most operations in one store transaction (default 2048). */
  readonly maxBatchOps?: number;
  /** Concurrent long polls before new ones fail with MAILBOX_ERR_OVERLOADED (default 10 000). */
  readonly maxWaiters?: number;
  /** How often expired leases, retention and blobs at zero are swept (default 1000 ms; 0 = never). */
  readonly sweepIntervalMs?: number;
  /** Most rows one sweep step handles (default 1000). */
  readonly sweepLimit?: number;
  /** Hash of mids and blob keys (default 'sha1', pandora's printed keys). */
  readonly hash?: HashAlgorithm;
}

export const DEFAULT_MAILBOX_SETTINGS: MailboxSettings = Object.freeze({
  maxDeliveries: 5,
  retryDelayMs: 1000,
  retentionMs: 24 * 60 * 60 * 1000,
});

export const DEFAULT_BROKER_OPTIONS = Object.freeze({
  maxMessageBytes: 256 * 1024,
  defaultLeaseMs: 5 * 60 * 1000,
  maxLeaseMs: 12 * 60 * 60 * 1000,
  maxDelayMs: 365 * 24 * 60 * 60 * 1000,
  maxWaitMs: 60_000,
  maxFetch: 1000,
  maxPendingOps: 100_000,
  maxBatchOps: 2048,
  maxWaiters: 10_000,
  sweepIntervalMs: 1000,
  sweepLimit: 1000,
  hash: 'sha1',
});

export interface ResolvedBrokerOptions {
  readonly store: string | MessageStore;
  readonly clock: Clock;
  readonly sqlite: SqliteStoreOptions;
  readonly mailboxDefaults: MailboxSettings;
  readonly maxMessageBytes: number;
  readonly defaultLeaseMs: number;
  readonly maxLeaseMs: number;
  readonly maxDelayMs: number;
  readonly maxWaitMs: number;
  readonly maxFetch: number;
  readonly maxPendingOps: number;
  readonly maxBatchOps: number;
  readonly maxWaiters: number;
  readonly sweepIntervalMs: number;
  readonly sweepLimit: number;
  readonly hash: HashAlgorithm;
}

/** Checks that `value` is an integer in [min, max]; the message names the option. */
export function checkInt(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw new MailboxInvalidArgumentError(
      `${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  return value;
}

/** Validates mailbox settings, filling gaps from `base`. */
export function resolveMailboxSettings(
  input: unknown,
  base: MailboxSettings,
  name = 'mailboxDefaults',
): MailboxSettings {
  if (input === undefined) return base;
  if (typeof input !== 'object' || input === null)
    throw new MailboxInvalidArgumentError(`${name} must be an object`);
  const s = input as Partial<Record<keyof MailboxSettings, unknown>>;
  for (const key of Object.keys(s))
    if (!(key in DEFAULT_MAILBOX_SETTINGS))
      throw new MailboxInvalidArgumentError(`${name}.${key} is not a mailbox setting`);
  return Object.freeze({
    maxDeliveries: checkInt(`${name}.maxDeliveries`, s.maxDeliveries ?? base.maxDeliveries, 1, 1_000_000),
    retryDelayMs: checkInt(`${name}.retryDelayMs`, s.retryDelayMs ?? base.retryDelayMs, 0, 2 ** 40),
    retentionMs: checkInt(`${name}.retentionMs`, s.retentionMs ?? base.retentionMs, 0, 2 ** 45),
  });
}

export function resolveOptions(options: BrokerOptions): ResolvedBrokerOptions {
  if (typeof options !== 'object' || options === null)
    throw new MailboxInvalidArgumentError('options must be an object');
  const o = options as unknown as Record<string, unknown>;
  const d = DEFAULT_BROKER_OPTIONS;
  const store = o.store;
  if (typeof store !== 'string' && (typeof store !== 'object' || store === null))
    throw new MailboxInvalidArgumentError('store must be a URL string or a MessageStore');
  const clock = (o.clock ?? systemClock) as Clock;
  if (typeof clock.now !== 'function' || typeof clock.setTimer !== 'function')
    throw new MailboxInvalidArgumentError('clock must have now() and setTimer()');
  const sqlite = (o.sqlite ?? {}) as SqliteStoreOptions;
  if (typeof sqlite !== 'object') throw new MailboxInvalidArgumentError('sqlite must be an object');
  if (sqlite.synchronous !== undefined && sqlite.synchronous !== 'full' && sqlite.synchronous !== 'normal')
    throw new MailboxInvalidArgumentError('sqlite.synchronous must be "full" or "normal"');
  if (sqlite.busyTimeoutMs !== undefined) checkInt('sqlite.busyTimeoutMs', sqlite.busyTimeoutMs, 0, 600_000);
  if (sqlite.worker !== undefined && typeof sqlite.worker !== 'boolean')
    throw new MailboxInvalidArgumentError('sqlite.worker must be a boolean');
  if (sqlite.mergeKeysAt !== undefined) checkInt('sqlite.mergeKeysAt', sqlite.mergeKeysAt, 1, 10_000_000);
  if (sqlite.cacheKiB !== undefined) checkInt('sqlite.cacheKiB', sqlite.cacheKiB, 64, 16 * 1024 * 1024);
  const hash = o.hash ?? d.hash;
  if (hash !== 'sha1' && hash !== 'sha256')
    throw new MailboxInvalidArgumentError('hash must be "sha1" or "sha256"');
  const int = (name: keyof typeof d, min: number, max: number): number =>
    checkInt(name, o[name] ?? d[name], min, max);
  const maxLeaseMs = int('maxLeaseMs', 1, 2 ** 40);
  return Object.freeze({
    store: store as string | MessageStore,
    clock,
    sqlite,
    mailboxDefaults: resolveMailboxSettings(o.mailboxDefaults, DEFAULT_MAILBOX_SETTINGS),
    maxMessageBytes: int('maxMessageBytes', 1, 256 * 1024 * 1024),
    defaultLeaseMs: int('defaultLeaseMs', 1, maxLeaseMs),
    maxLeaseMs,
    maxDelayMs: int('maxDelayMs', 0, 2 ** 45),
    maxWaitMs: int('maxWaitMs', 0, 3_600_000),
    maxFetch: int('maxFetch', 1, 100_000),
    maxPendingOps: int('maxPendingOps', 1, 100_000_000),
    maxBatchOps: int('maxBatchOps', 1, 1_000_000),
    maxWaiters: int('maxWaiters', 0, 10_000_000),
    sweepIntervalMs: int('sweepIntervalMs', 0, 3_600_000),
    sweepLimit: int('sweepLimit', 1, 1_000_000),
    hash,
  });
}
