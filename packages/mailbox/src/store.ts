/**
 * The storage seams. A `MessageStore` applies a batch of operations (the broker's group
 * commit) atomically and in order, so a send early in a batch is visible to a claim later in
 * the same batch; a `BlobStore` keeps bodies by content hash with reference counts. Both are
 * Promise-based so a networked store (PostgreSQL) implements them unchanged. Every rule of the
 * model that depends on stored state (leases, fencing, retries, dead letters, retention) is
 * applied inside the store's transaction; `afterAttempt()` below is the one statement of the
 * retry rule that every store shares.
 */
import type { Body, Message, MessageHeader } from './message.js';
import { MessageStatus, deadLetterName, isDeadLetterName } from './message.js';

/**
 * A place in a mailbox's (receivedAt, seq) order; `headers()` lists what comes strictly after
 * it. `{ receivedAtMs: t, seq: Number.MAX_SAFE_INTEGER }` is "received after t".
 */
export interface HeadersPosition {
  readonly receivedAtMs: number;
  readonly seq: number;
}

/** A page of `MessageStore.headers()`. */
export interface HeadersRows {
  readonly headers: MessageHeader[];
  /** Where the next page starts (the last header's position), or null when this page is the last. */
  readonly next: HeadersPosition | null;
}

/** Per-mailbox settings, fixed when the mailbox is created (first send or `configure`). */
export interface MailboxSettings {
  /** Deliveries before the message moves to `<name>.dead`. Ignored in a dead-letter mailbox. */
  readonly maxDeliveries: number;
  /** Delay before a rejected or timed-out message is due again. */
  readonly retryDelayMs: number;
  /** How long a confirmed message is kept (for history) before it and its body reference go. */
  readonly retentionMs: number;
}

export interface MailboxInfo {
  readonly name: string;
  readonly settings: MailboxSettings;
  readonly createdAt: Date;
  /** Queued and due now. */
  readonly ready: number;
  /** Queued, due later (delayed sends and retries waiting out their delay). */
  readonly delayed: number;
  /** Leased to a receiver. */
  readonly inFlight: number;
  /** Confirmed and still retained. */
  readonly confirmed: number;
}

export interface StoreStats {
  readonly messages: number;
  readonly queued: number;
  readonly leased: number;
  readonly confirmed: number;
  readonly mailboxes: number;
  readonly blobs: number;
  readonly blobBytes: number;
}

/** A message as the broker hands it to the store: validated, hashed, timestamps on the store's clock. */
export interface NewMessage {
  readonly mid: string;
  readonly sender: string;
  readonly receiver: string;
  readonly clientTimeMs: number;
  readonly delayMs: number;
  readonly blobKey: string;
  /** The canonical encoded body (see `encodeBody`). */
  readonly body: string;
  /** The body as `decodeBody(body)` returns it (the broker has it already; stores need not decode). */
  readonly decoded: Body;
  readonly bodyBytes: number;
  /**
   * The mid holds a random 128-bit nonce (a send without clientTime): no stored message can
   * have it, so a store may skip its duplicate lookup. Absent or false: look it up.
   */
  readonly fresh?: boolean;
}

export type StoreOp =
  /** Store the message unless its mid exists (idempotent); create the mailbox with `defaults` if new. */
  | { readonly kind: 'send'; readonly message: NewMessage; readonly defaults: MailboxSettings }
  /** Lease up to `max` of the oldest due messages of `mailbox`. */
  | {
      readonly kind: 'claim';
      readonly mailbox: string;
      readonly max: number;
      readonly leaseMs: number;
      readonly consumer: string;
    }
  /** End the lease `lid` of `mid` with Confirmed (1) or Rejected (2). */
  | { readonly kind: 'ack'; readonly mid: string; readonly lid: string; readonly status: 1 | 2 }
  /** Move the lease `lid` of `mid` to end `leaseMs` from now. */
  | { readonly kind: 'extend'; readonly mid: string; readonly lid: string; readonly leaseMs: number }
  /** End up to `limit` leases expired by `asOfMs` (at most the batch time; default it) as Timeout attempts. */
  | { readonly kind: 'reenqueue'; readonly limit: number; readonly asOfMs?: number }
  /** Delete up to `limit` confirmed messages past retention; their blob references go down. */
  | { readonly kind: 'expire'; readonly limit: number }
  /** Create a mailbox, or change its settings. */
  | { readonly kind: 'configure'; readonly name: string; readonly settings: MailboxSettings }
  /**
   * Move up to `limit` of the oldest queued messages of the dead-letter mailbox `mailbox` to
   * `target` (created with `defaults` if missing): due now, status NotDelivered (8), a fresh
   * count of deliveries (their attempt record stays).
   */
  | {
      readonly kind: 'redrive';
      readonly mailbox: string;
      readonly target: string;
      readonly limit: number;
      readonly defaults: MailboxSettings;
    }
  /** Delete up to `limit` of the oldest queued messages of `mailbox` (leased ones stay); blob references go down. */
  | { readonly kind: 'purge'; readonly mailbox: string; readonly limit: number };

export type LeaseOutcome = 'ok' | 'not-found' | 'lease-invalid';

export type StoreResult =
  | { readonly kind: 'send'; readonly message: Message; readonly created: boolean }
  /** `nextDueMs`: when the mailbox's next queued message comes due; required only when `messages` is empty. */
  | { readonly kind: 'claim'; readonly messages: Message[]; readonly nextDueMs: number | null }
  | { readonly kind: 'ack'; readonly outcome: LeaseOutcome; readonly wake: string | null }
  | { readonly kind: 'extend'; readonly outcome: LeaseOutcome; readonly message: Message | null }
  | { readonly kind: 'reenqueue'; readonly count: number; readonly wake: readonly string[] }
  | { readonly kind: 'expire'; readonly count: number }
  | { readonly kind: 'configure' }
  | { readonly kind: 'redrive'; readonly count: number; readonly target: string }
  | { readonly kind: 'purge'; readonly count: number };

export interface MessageStore {
  /** The blob store holding this store's bodies (sends put bodies into it in the same transaction). */
  readonly blobs: BlobStore;
  /**
   * Applies `ops` in order, atomically: either every op's effect commits or none does (the
   * promise rejects). An op that fails a rule (stale lid) is a result, not a rejection.
   * `nowMs` is the time of the whole batch.
   */
  apply(ops: readonly StoreOp[], nowMs: number): Promise<StoreResult[]>;
  /**
   * Optional, for a store whose commit and flush are two steps (SQLite with a WAL): applies
   * `ops` as `apply` does and returns once the transaction committed — durable against a killed
   * process, not yet against a power cut — with `flushed`, which resolves once it is on disk
   * (rejects if the flush failed; the store then refuses every later batch). The broker hands
   * leases out at commit and resolves sends, acks and everything else at `flushed`.
   */
  applyStaged?(
    ops: readonly StoreOp[],
    nowMs: number,
  ): { readonly results: StoreResult[]; readonly flushed: Promise<void> };
  /** One message with its body and attempt record, or null. */
  get(mid: string): Promise<Message | null>;
  /**
   * Up to `limit` pending (queued or leased) messages of `mailbox` that come after `after` in
   * the order (receivedAt, seq), oldest first; `next` is the position of the last one when more
   * follow (else null). `seq` is the store's insertion order: unique, and fixed for a message's
   * life, so a page boundary inside one millisecond neither skips nor repeats a message.
   */
  headers(mailbox: string, after: HeadersPosition, limit: number): Promise<HeadersRows>;
  mailboxes(nowMs: number): Promise<MailboxInfo[]>;
  stats(): Promise<StoreStats>;
  /**
   * Optional: calls `listener` when another process made messages due in some mailboxes (a
   * PostgreSQL store drives it from LISTEN/NOTIFY). Returns an unsubscribe function.
   */
  watch?(listener: (mailboxes: readonly string[]) => void): () => void;
  /**
   * Optional: how many batches the store can apply at once (a store on a connection pool); the
   * broker keeps up to that many transactions in flight. Default 1.
   */
  readonly concurrentBatches?: number;
  /**
   * Whether a backlog is split between concurrent batches (default true). A store whose batches
   * run their statements one after another and overlap only their flushes (SQLite) says false:
   * splitting would only add commits.
   */
  readonly splitBacklog?: boolean;
  close(): Promise<void>;
}

/** Content-addressed, reference-counted bodies (pandora's BlobStore). Keys are hex hashes. */
export interface BlobStore {
  /** Stores `data` under `key` unless present, and adds one reference. */
  put(key: string, data: Uint8Array | string): Promise<void>;
  /** The data, or null if absent (a blob at zero may still be returned until collected). */
  get(key: string): Promise<Buffer | null>;
  /** The reference count, or null if absent. */
  refCount(key: string): Promise<number | null>;
  /** Adds each delta (positive or negative) to the key's count. */
  updateRefCounts(deltas: ReadonlyMap<string, number>): Promise<void>;
  /** Frees up to `limit` blobs whose count is zero or less; returns how many. */
  collect(limit: number): Promise<number>;
  stats(): Promise<{ readonly count: number; readonly bytes: number }>;
}

/**
 * The retry rule: after a rejected or timed-out attempt that ended at `endedAtMs`, a message
 * with `deliveryCount` deliveries either moves to `<mailbox>.dead` (max deliveries reached,
 * and not already in a dead-letter mailbox) or becomes due after the retry delay.
 */
export function afterAttempt(
  settings: MailboxSettings,
  mailbox: string,
  deliveryCount: number,
  endedAtMs: number,
): { readonly dead: boolean; readonly mailbox: string; readonly dueMs: number } {
  if (!isDeadLetterName(mailbox) && deliveryCount >= settings.maxDeliveries)
    return { dead: true, mailbox: deadLetterName(mailbox), dueMs: endedAtMs };
  return { dead: false, mailbox, dueMs: endedAtMs + settings.retryDelayMs };
}

/** The message a send created, built from what the broker sent (no read back). */
export function newMessage(m: NewMessage, now: number): Message {
  const due = now + m.delayMs;
  return {
    mid: m.mid,
    sender: m.sender,
    receiver: m.receiver,
    mailbox: m.receiver,
    clientTime: new Date(m.clientTimeMs),
    receivedAt: new Date(now),
    sendWhen: new Date(due),
    delayMs: m.delayMs,
    state: 'queued',
    status: MessageStatus.NotDelivered,
    deliveryCount: 0,
    lid: null,
    fence: null,
    leasedUntil: null,
    fetchTime: null,
    dueAt: new Date(due),
    blobKey: m.blobKey,
    bodyBytes: m.bodyBytes,
    body: m.decoded,
  };
}
