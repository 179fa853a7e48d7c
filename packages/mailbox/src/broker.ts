/**
 * The broker: validates every call, then queues it for the group commit. Operations that
 * arrive in the same tick, or while a transaction is in flight, are applied by the store in
 * one transaction (one fsync for a whole batch of sends, claims and acks); each call resolves
 * only after its batch committed. Long polls wait on a per-mailbox notifier woken by commits
 * (and by `MessageStore.watch` for changes made by other processes) and by clock timers for
 * messages that come due later.
 */
import { channel } from 'node:diagnostics_channel';
import type { Clock, CancelTimer } from './clock.js';
import {
  MailboxClosedError,
  MailboxInvalidArgumentError,
  MailboxLeaseInvalidError,
  MailboxMessageTooLargeError,
  MailboxNotFoundError,
  MailboxOverloadedError,
  MailboxStoreError,
  MailboxError,
} from './errors.js';
import { decodeHeadersCursor, encodeHeadersCursor } from './headers-cursor.js';
import { MemoryStore } from './memory-store.js';
import type { Body, Message, MessageHeader } from './message.js';
import {
  RandomIds,
  blobKeyOf,
  computeMid,
  encodeBodyParts,
  isDeadLetterName,
  validateMailboxName,
} from './message.js';
import type { BrokerOptions, ResolvedBrokerOptions } from './options.js';
import { checkInt, resolveMailboxSettings, resolveOptions } from './options.js';
import { SqliteStore } from './sqlite-store.js';
import { SqliteThreadStore } from './sqlite-thread.js';
import type {
  HeadersPosition,
  MailboxInfo,
  MailboxSettings,
  MessageStore,
  StoreOp,
  StoreResult,
  StoreStats,
} from './store.js';

/** What `send` takes. */
export interface SendInput {
  readonly sender: string;
  readonly receiver: string;
  readonly body: Body;
  /** Delivery delay from the server's receive time (default 0). */
  readonly delayMs?: number;
  /**
   * The client's time. With it the send is idempotent: the same sender, receiver, clientTime
   * and body give the same mid and are stored once. Without it the broker's clock is used and
   * a random nonce joins the mid, so two such sends are two messages.
   */
  readonly clientTime?: Date;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
}

export interface FetchOptions extends CallOptions {
  /** Lease length (default `defaultLeaseMs`). */
  readonly leaseMs?: number;
  /** Long poll: wait up to this long for a message (default 0: answer at once). */
  readonly waitMs?: number;
  /** Who fetches, recorded in the attempt history (default ''). */
  readonly consumer?: string;
}

export interface FetchManyOptions extends FetchOptions {
  readonly max: number;
}

export interface HeadersOptions extends CallOptions {
  /** Only messages received after this time (exclusive, in ms). Not with `cursor`. */
  readonly after?: Date;
  /**
   * Continue after the last message of an earlier page: its `next` (from `headersPage`).
   * Stable where `after` is not: messages received in one millisecond are neither skipped
   * nor repeated across the page boundary. Not with `after`.
   */
  readonly cursor?: string;
  /** Most headers returned (default 100, at most 1000). */
  readonly limit?: number;
}

/** One page of a mailbox's pending messages, in (receivedAt, send order) order. */
export interface HeadersPage {
  readonly messages: MessageHeader[];
  /** Pass as `cursor` for the page after this one; null when this page is the last. */
  readonly next: string | null;
}

export interface LimitOptions extends CallOptions {
  /** Most messages affected (default: all). */
  readonly limit?: number;
}

export interface BrokerStats {
  readonly store: StoreStats;
  readonly sends: number;
  readonly duplicateSends: number;
  readonly delivered: number;
  readonly confirmed: number;
  readonly rejected: number;
  readonly timedOut: number;
  readonly batches: number;
  readonly batchedOps: number;
  readonly largestBatch: number;
  readonly pendingOps: number;
  readonly waiters: number;
}

type ClaimOp = Extract<StoreOp, { kind: 'claim' }>;
type ClaimResult = Extract<StoreResult, { kind: 'claim' }>;

/**
 * A long poll asleep on a mailbox: `wake` makes it claim again, `fail` ends it, and `handOff`
 * detaches it and returns its claim as a pending op, so a batch that sends to its mailbox can
 * claim for it in the same transaction (the receiver gets the message one commit earlier).
 */
interface Waiter {
  readonly op: ClaimOp;
  readonly wake: () => void;
  readonly fail: (error: Error) => void;
  /** Detaches the waiter; its claim joins `batch` (appended: after the batch's sends). */
  readonly handOff: (batch: Pending[]) => Pending | undefined;
}

/**
 * A long poll's view of its mailbox between claims. `dirty`: a commit that may have made a
 * message due was notified since the poll last submitted a claim — not counting the batch its
 * claim was handed into (`claimBatch`: that batch's sends were applied before the claim).
 * `drained`: the last claim came back with fewer messages than it asked for, so nothing else
 * was due then; `nextDueMs`: when the next queued message comes due (null: none).
 */
interface PollState {
  readonly mailbox: string;
  dirty: boolean;
  claimBatch: Pending[] | undefined;
  drained: boolean;
  nextDueMs: number | null;
}

/** A long poll kept open across fetches (`Broker.openPoll`). */
export interface MailboxPoll {
  /**
   * As `Broker.fetchMany` on the poll's mailbox. After a fetch that came back with fewer
   * messages than asked, and with nothing committed to the mailbox since, it waits before it
   * claims, so the first send's batch can carry its claim (one transaction, not two). One
   * fetch at a time: two at once share what the poll knows and may wait longer than needed.
   */
  fetch(options: FetchManyOptions): Promise<Message[]>;
  /** Ends the poll; a fetch in progress finishes on its own. */
  close(): void;
}

interface Pending {
  readonly op: StoreOp;
  readonly resolve: (r: StoreResult) => void;
  readonly reject: (e: unknown) => void;
}

const batchChannel = channel('switchyard:mailbox:batch');
const errorChannel = channel('switchyard:mailbox:error');

const HEX_RE = /^[0-9a-f]+$/;
/** The smallest part a backlog is split into for a store with `concurrentBatches` > 1. */
const SPLIT_OPS = 64;
/**
 * A staged store (leases out at commit, answers at the flush) may have up to its
 * `concurrentBatches` batches committed and not yet flushed, but beyond the first two (one
 * flushing, one riding the next flush) a batch starts only once the oldest of them has waited
 * this long for its flush. Under load the ops then gather into large batches while a flush runs
 * (the throughput), and at a low rate a send that came in during a slow flush (a p99.9 fsync on
 * this VM's disk takes ~4 ms) still commits and is pushed within a millisecond (the latency).
 */
const EAGER_BATCHES = 2;
const PIPELINE_AFTER_MS = 1;

function asStoreError(error: unknown): MailboxError {
  return error instanceof MailboxError
    ? error
    : new MailboxStoreError('the store failed to apply a batch', { cause: error });
}

function checkSignal(signal: AbortSignal | undefined): void {
  if (signal === undefined) return;
  if (!(signal instanceof AbortSignal))
    throw new MailboxInvalidArgumentError('signal must be an AbortSignal');
  signal.throwIfAborted();
}

/** What a poll learns from its claim's result: whether it drained the mailbox, what comes due next. */
function noteClaim(poll: PollState, op: ClaimOp, r: ClaimResult): void {
  poll.drained = r.messages.length < op.max;
  poll.nextDueMs = r.nextDueMs;
}

/** An options object (not null) whose signal, if any, has not fired. */
function checkCallOptions(options: CallOptions): void {
  if (typeof options !== 'object' || options === null)
    throw new MailboxInvalidArgumentError('options must be an object');
  checkSignal(options.signal);
}

function checkHexId(name: string, value: unknown, lengths: readonly number[]): string {
  if (typeof value !== 'string' || !lengths.includes(value.length) || !HEX_RE.test(value))
    throw new MailboxInvalidArgumentError(
      `${name} must be a ${lengths.join(' or ')}-digit lowercase hex string`,
    );
  return value;
}

/** Opens the store a URL names. */
async function openStore(url: string, o: ResolvedBrokerOptions): Promise<MessageStore> {
  if (url === 'memory:') return new MemoryStore();
  if (url.startsWith('sqlite:') && url.length > 'sqlite:'.length) {
    const path = url.slice('sqlite:'.length);
    return o.sqlite.worker === true
      ? SqliteThreadStore.open(path, o.sqlite)
      : SqliteStore.open(path, o.sqlite);
  }
  if (url.startsWith('postgres:') || url.startsWith('postgresql:')) {
    // Loaded on demand: memory and SQLite users never load the pg driver.
    const { PostgresStore } = await import('./postgres/store.js');
    return PostgresStore.open(url);
  }
  throw new MailboxInvalidArgumentError(
    `store must be 'memory:', 'sqlite:<path>' or a MessageStore, got ${url}`,
  );
}

export class Broker {
  readonly #store: MessageStore;
  readonly #ownsStore: boolean;
  readonly #o: ResolvedBrokerOptions;
  readonly #clock: Clock;
  readonly #ids = new RandomIds();
  #pending: Pending[] = [];
  #scheduled = false;
  /** Batches being applied; up to the store's `concurrentBatches` (1 unless it is pooled). */
  #inFlight = 0;
  readonly #maxInFlight: number;
  readonly #splitBacklog: boolean;
  /** Commit times (performance.now()) of staged batches waiting for their flush, oldest first. */
  readonly #unflushed: number[] = [];
  /** Set while a batch waits for PIPELINE_AFTER_MS (see there). */
  #pipelineTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #waiters = new Map<string, Set<Waiter>>();
  #waiterCount = 0;
  /**
   * Per mailbox, the long polls in progress (a `fetchMany` with `waitMs`, or an open
   * `MailboxPoll`), marked dirty by every notification so that a poll that saw an empty claim
   * can tell whether a commit since made something due. Entries live only while such a poll
   * does, so the map is bounded by the polls, not by the mailboxes.
   */
  readonly #polls = new Map<string, Set<PollState>>();
  #sweepTimer: CancelTimer | undefined;
  #sweeping: Promise<void> | undefined;
  readonly #unwatch: (() => void) | undefined;
  readonly #counters = {
    sends: 0,
    duplicateSends: 0,
    delivered: 0,
    confirmed: 0,
    rejected: 0,
    timedOut: 0,
    batches: 0,
    batchedOps: 0,
    largestBatch: 0,
  };
  readonly #flushBound = (): void => {
    void this.#flush();
  };

  private constructor(store: MessageStore, ownsStore: boolean, o: ResolvedBrokerOptions) {
    this.#store = store;
    this.#ownsStore = ownsStore;
    this.#o = o;
    this.#clock = o.clock;
    this.#maxInFlight = Math.max(1, Math.floor(store.concurrentBatches ?? 1));
    this.#splitBacklog = store.splitBacklog ?? true;
    this.#unwatch = store.watch?.((mailboxes) => {
      for (const m of mailboxes) this.#notify(m, Infinity);
    });
    this.#scheduleSweep();
  }

  /** Opens a broker on the store `options.store` names (or is). */
  static async open(options: BrokerOptions & CallOptions): Promise<Broker> {
    const o = resolveOptions(options);
    checkSignal(options.signal);
    const owns = typeof o.store === 'string';
    const store = typeof o.store === 'string' ? await openStore(o.store, o) : o.store;
    // A store that keeps its own time (PostgreSQL: the database clock) supplies the clock
    // unless one is given, so brokers sharing it agree on leases and due times.
    const storeClock = (store as { clock?: Clock }).clock;
    if (options.clock === undefined && storeClock !== undefined)
      return new Broker(store, owns, { ...o, clock: storeClock });
    return new Broker(store, owns, o);
  }

  /** The store under this broker (its `blobs` is the BlobStore). */
  get store(): MessageStore {
    return this.#store;
  }

  // ---- group commit -------------------------------------------------------------------

  #submit(op: StoreOp): Promise<StoreResult> {
    if (this.#closed) return Promise.reject(new MailboxClosedError('the broker is closed'));
    if (this.#pending.length >= this.#o.maxPendingOps)
      return Promise.reject(
        new MailboxOverloadedError(
          `maxPendingOps (${this.#o.maxPendingOps}) operations are waiting for a commit`,
        ),
      );
    return new Promise<StoreResult>((resolve, reject) => {
      this.#pending.push({ op, resolve, reject });
      if (!this.#scheduled && this.#inFlight < this.#maxInFlight) {
        this.#scheduled = true;
        setImmediate(this.#flushBound);
      }
    });
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    if (this.#inFlight >= this.#maxInFlight || this.#pending.length === 0) return;
    if (this.#unflushed.length >= EAGER_BATCHES) {
      const waited = performance.now() - this.#unflushed[0]!;
      if (waited < PIPELINE_AFTER_MS) {
        this.#pipelineTimer ??= setTimeout(() => {
          this.#pipelineTimer = undefined;
          void this.#flush();
        }, PIPELINE_AFTER_MS - waited);
        return;
      }
    }
    // A store that applies batches concurrently gets a large backlog split between its free
    // slots (each part still a big batch), so its connections work in parallel.
    const free = this.#maxInFlight - this.#inFlight;
    const share =
      this.#splitBacklog && this.#pending.length >= SPLIT_OPS * free
        ? Math.ceil(this.#pending.length / free)
        : Infinity;
    const max = Math.min(this.#o.maxBatchOps, share);
    this.#inFlight++;
    let batch: Pending[];
    if (this.#pending.length <= max) {
      batch = this.#pending;
      this.#pending = [];
    } else {
      batch = this.#pending.splice(0, max);
      if (this.#inFlight < this.#maxInFlight && !this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flushBound);
      }
    }
    const handedOff = this.#waiterCount > 0 ? this.#handOff(batch) : undefined;
    const started = performance.now();
    let results: StoreResult[] | undefined;
    let failure: unknown;
    /** Set for a staged store: claims are answered at commit, the rest once this resolves. */
    let flushed: Promise<void> | undefined;
    try {
      const ops = batch.map((p) => p.op);
      if (this.#store.applyStaged !== undefined) {
        const staged = this.#store.applyStaged(ops, this.#clock.now());
        results = staged.results;
        flushed = staged.flushed;
      } else results = await this.#store.apply(ops, this.#clock.now());
    } catch (error) {
      failure = asStoreError(error);
    }
    if (flushed !== undefined && results !== undefined) {
      this.#settleStaged(batch, results, flushed, handedOff, started);
      return;
    }
    this.#batchDone(batch.length, started, failure);
    if (results === undefined) {
      for (const p of batch) p.reject(failure);
      return;
    }
    this.#account(batch, results, handedOff, (p, r) => p.resolve(r));
  }

  /** A batch left the store (applied and flushed, or failed): its slot is free, the next may start. */
  #batchDone(ops: number, started: number, failure: unknown): void {
    this.#inFlight--;
    // Ops that arrived meanwhile (async stores) or continuations of this batch form the next one.
    if (this.#pending.length > 0 && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushBound);
    }
    if (batchChannel.hasSubscribers)
      batchChannel.publish({ ops, durationMs: performance.now() - started, error: failure });
    if (failure !== undefined && errorChannel.hasSubscribers) errorChannel.publish({ error: failure });
  }

  /**
   * A staged batch committed: leases go out now (a killed process cannot lose them), every
   * other answer — send and ack confirmations above all — once the batch is flushed to disk.
   */
  #settleStaged(
    batch: Pending[],
    results: StoreResult[],
    flushed: Promise<void>,
    handedOff: Map<string, number> | undefined,
    started: number,
  ): void {
    const late: number[] = [];
    this.#unflushed.push(performance.now());
    this.#account(batch, results, handedOff, (p, r, i) => {
      if (r.kind === 'claim') p.resolve(r);
      else late.push(i);
    });
    const done = (failure?: unknown): void => {
      // Flushes end in commit order: this batch's entry is the oldest.
      this.#unflushed.shift();
      this.#batchDone(batch.length, started, failure);
      for (const i of late)
        if (failure === undefined) batch[i]!.resolve(results[i]!);
        else batch[i]!.reject(failure);
    };
    flushed.then(
      () => done(),
      (error: unknown) => done(asStoreError(error)),
    );
  }

  /** Counts a committed batch's results, answers its ops through `settle` and wakes long polls. */
  #account(
    batch: Pending[],
    results: StoreResult[],
    handedOff: Map<string, number> | undefined,
    settle: (p: Pending, r: StoreResult, i: number) => void,
  ): void {
    this.#counters.batches++;
    this.#counters.batchedOps += batch.length;
    if (batch.length > this.#counters.largestBatch) this.#counters.largestBatch = batch.length;
    const woken = new Map<string, number>();
    const wake = (mailbox: string, n: number): void => {
      woken.set(mailbox, (woken.get(mailbox) ?? 0) + n);
    };
    for (let i = 0; i < batch.length; i++) {
      const r = results[i]!;
      switch (r.kind) {
        case 'send':
          if (r.created) {
            this.#counters.sends++;
            wake(r.message.mailbox, 1);
          } else this.#counters.duplicateSends++;
          break;
        case 'claim':
          this.#counters.delivered += r.messages.length;
          break;
        case 'ack':
          if (r.outcome === 'ok') {
            if (r.wake === null) this.#counters.confirmed++;
            else {
              this.#counters.rejected++;
              wake(r.wake, 1);
            }
          }
          break;
        case 'reenqueue':
          this.#counters.timedOut += r.count;
          for (const m of r.wake) wake(m, Infinity);
          break;
        case 'redrive':
          if (r.count > 0) wake(r.target, Infinity);
          break;
        default:
          break;
      }
      settle(batch[i]!, r, i);
    }
    // Waiters whose claims rode in this batch already had their chance at these sends.
    for (const [mailbox, n] of woken) this.#notify(mailbox, n - (handedOff?.get(mailbox) ?? 0), batch);
  }

  /**
   * Appends to `batch` the claims of long polls waiting on mailboxes that `batch` sends to, up
   * to as many messages as it sends there. Returns how many messages' worth was handed off per mailbox.
   */
  #handOff(batch: Pending[]): Map<string, number> | undefined {
    let sends: Map<string, number> | undefined;
    for (const p of batch) {
      if (p.op.kind !== 'send') continue;
      const mailbox = p.op.message.receiver;
      if (this.#waiters.has(mailbox)) (sends ??= new Map()).set(mailbox, (sends.get(mailbox) ?? 0) + 1);
    }
    if (sends === undefined) return undefined;
    const handed = new Map<string, number>();
    for (const [mailbox, n] of sends) {
      let left = n;
      for (const waiter of [...(this.#waiters.get(mailbox) ?? [])]) {
        if (left <= 0) break;
        const pending = waiter.handOff(batch);
        if (pending === undefined) continue;
        batch.push(pending);
        left -= waiter.op.max;
      }
      handed.set(mailbox, n - Math.max(0, left));
    }
    return handed;
  }

  // ---- long-poll notifier -------------------------------------------------------------

  /** Records that `mailbox` may have due messages, and wakes up to `n` of its waiters. */
  #notify(mailbox: string, n: number, origin?: Pending[]): void {
    const polls = this.#polls.get(mailbox);
    if (polls !== undefined)
      for (const p of polls) if (origin === undefined || p.claimBatch !== origin) p.dirty = true;
    const set = this.#waiters.get(mailbox);
    if (set === undefined) return;
    for (const waiter of set) {
      if (n-- <= 0) break;
      waiter.wake();
    }
  }

  /**
   * Waits until `op.mailbox` is notified (null), a batch claimed for this waiter (the result),
   * `ms` passes on the clock (null), the signal aborts or the broker closes (rejects).
   */
  #wait(
    op: ClaimOp,
    ms: number,
    signal: AbortSignal | undefined,
    poll: PollState,
  ): Promise<ClaimResult | null> {
    const mailbox = op.mailbox;
    if (this.#waiterCount >= this.#o.maxWaiters)
      return Promise.reject(
        new MailboxOverloadedError(`maxWaiters (${this.#o.maxWaiters}) long polls are waiting`),
      );
    return new Promise<ClaimResult | null>((resolve, reject) => {
      let set = this.#waiters.get(mailbox);
      if (set === undefined) this.#waiters.set(mailbox, (set = new Set()));
      const s = set;
      const detach = (): boolean => {
        if (!s.delete(waiter)) return false;
        this.#waiterCount--;
        if (s.size === 0) this.#waiters.delete(mailbox);
        cancelTimer();
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const done = (error?: Error): void => {
        if (!detach()) return;
        if (error === undefined) resolve(null);
        else reject(error);
      };
      const waiter: Waiter = {
        op,
        wake: () => done(),
        fail: done,
        handOff: (batch) => {
          if (!detach()) return undefined;
          // The claim rides in `batch`, after its sends: only other batches' commits are news.
          poll.dirty = false;
          poll.claimBatch = batch;
          return { op, resolve: (r) => resolve(r as ClaimResult), reject };
        },
      };
      // Rejects with the signal's reason, as every abortable call does.
      const onAbort = (): void => done(signal!.reason as Error);
      s.add(waiter);
      this.#waiterCount++;
      const cancelTimer = this.#clock.setTimer(ms, waiter.wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- sweeps -------------------------------------------------------------------------

  /**
   * Sweeps every `sweepIntervalMs`; a sweep that hit `sweepLimit` anywhere runs again at once,
   * so expiry keeps up with any confirm rate instead of falling behind by the limit per interval.
   */
  #scheduleSweep(again = false): void {
    if (this.#o.sweepIntervalMs === 0 || this.#closed) return;
    const run = (): void => {
      let more = false;
      this.#sweeping = this.#sweepOnce()
        .then((m) => {
          more = m;
        })
        .catch((error: unknown) => {
          if (errorChannel.hasSubscribers) errorChannel.publish({ error });
        })
        .finally(() => {
          this.#sweeping = undefined;
          this.#scheduleSweep(more);
        });
    };
    if (again) {
      // More is waiting now: no need to wait for the clock (a ManualClock would never move).
      const immediate = setImmediate(run);
      this.#sweepTimer = () => clearImmediate(immediate);
    } else {
      this.#sweepTimer = this.#clock.setTimer(this.#o.sweepIntervalMs, run, false);
    }
  }

  /** One sweep step; true if some part hit `sweepLimit` (more may be waiting). */
  async #sweepOnce(): Promise<boolean> {
    if (this.#closed) return false;
    const limit = this.#o.sweepLimit;
    const r = (await this.#submit({ kind: 'reenqueue', limit })) as Extract<
      StoreResult,
      { kind: 'reenqueue' }
    >;
    const e = (await this.#submit({ kind: 'expire', limit })) as Extract<StoreResult, { kind: 'expire' }>;
    const blobs = await this.#store.blobs.collect(limit);
    return r.count >= limit || e.count >= limit || blobs >= limit;
  }

  // ---- the API ------------------------------------------------------------------------

  #validateSend(m: SendInput): StoreOp {
    if (typeof m !== 'object' || m === null)
      throw new MailboxInvalidArgumentError('message must be an object');
    const sender = validateMailboxName(m.sender, 'sender');
    const receiver = validateMailboxName(m.receiver, 'receiver');
    const delayMs = m.delayMs === undefined ? 0 : checkInt('delayMs', m.delayMs, 0, this.#o.maxDelayMs);
    let clientTimeMs: number;
    let nonce = '';
    if (m.clientTime === undefined) {
      clientTimeMs = this.#clock.now();
      nonce = this.#ids.next();
    } else {
      if (!(m.clientTime instanceof Date) || Number.isNaN(m.clientTime.getTime()))
        throw new MailboxInvalidArgumentError('clientTime must be a valid Date');
      clientTimeMs = m.clientTime.getTime();
    }
    const { encoded: body, decoded } = encodeBodyParts(m.body);
    // The encoding is ASCII (percent-encoded), so its length is its byte size.
    const bodyBytes = body.length;
    if (bodyBytes > this.#o.maxMessageBytes)
      throw new MailboxMessageTooLargeError(
        `the encoded body is ${bodyBytes} bytes; maxMessageBytes is ${this.#o.maxMessageBytes}`,
      );
    const hash = this.#o.hash;
    return {
      kind: 'send',
      defaults: this.#o.mailboxDefaults,
      message: {
        mid: computeMid(hash, sender, receiver, clientTimeMs, body, nonce),
        sender,
        receiver,
        clientTimeMs,
        delayMs,
        blobKey: blobKeyOf(hash, body),
        body,
        decoded,
        bodyBytes,
        fresh: nonce !== '',
      },
    };
  }

  /** Stores a message; resolves after its transaction committed. An identical send returns the stored one. */
  async send(m: SendInput, options: CallOptions = {}): Promise<Message> {
    checkSignal(options.signal);
    const r = await this.#submit(this.#validateSend(m));
    return (r as Extract<StoreResult, { kind: 'send' }>).message;
  }

  /** Sends many messages; all are validated before any is queued, and they share commits. */
  async sendMany(messages: readonly SendInput[], options: CallOptions = {}): Promise<Message[]> {
    checkSignal(options.signal);
    if (!Array.isArray(messages)) throw new MailboxInvalidArgumentError('messages must be an array');
    if (this.#pending.length + messages.length > this.#o.maxPendingOps)
      throw new MailboxOverloadedError(`maxPendingOps (${this.#o.maxPendingOps}) would be exceeded`);
    const ops = (messages as readonly SendInput[]).map((m) => this.#validateSend(m));
    const results = await Promise.all(ops.map((op) => this.#submit(op)));
    return results.map((r) => (r as Extract<StoreResult, { kind: 'send' }>).message);
  }

  /** Leases the oldest due message of `receiver`, or null (after waiting up to `waitMs`). */
  async fetch(receiver: string, options: FetchOptions = {}): Promise<Message | null> {
    const [m] = await this.fetchMany(receiver, { ...options, max: 1 });
    return m ?? null;
  }

  /** Leases up to `max` of the oldest due messages of `receiver`; waits up to `waitMs` for the first. */
  async fetchMany(receiver: string, options: FetchManyOptions): Promise<Message[]> {
    checkCallOptions(options);
    const { op, waitMs } = this.#claim(validateMailboxName(receiver, 'receiver'), options);
    if (waitMs === 0) return ((await this.#submit(op)) as ClaimResult).messages;
    const poll = this.#addPoll(op.mailbox);
    try {
      return await this.#longPoll(op, waitMs, options.signal, poll);
    } finally {
      this.#removePoll(poll);
    }
  }

  /**
   * A long poll on `receiver` kept across fetches (the binary API's push subscriptions use one):
   * see `MailboxPoll`. Close it when done; an open poll costs an entry per mailbox.
   */
  openPoll(receiver: string): MailboxPoll {
    if (this.#closed) throw new MailboxClosedError('the broker is closed');
    const mailbox = validateMailboxName(receiver, 'receiver');
    const poll = this.#addPoll(mailbox);
    let open = true;
    return {
      fetch: async (options) => {
        if (!open) throw new MailboxClosedError('the poll is closed');
        checkCallOptions(options);
        const { op, waitMs } = this.#claim(mailbox, options);
        return this.#longPoll(op, waitMs, options.signal, poll);
      },
      close: () => {
        if (!open) return;
        open = false;
        this.#removePoll(poll);
      },
    };
  }

  /** A fetch's claim on `mailbox` (validated) and how long it may wait, from checked options. */
  #claim(mailbox: string, options: FetchManyOptions): { op: ClaimOp; waitMs: number } {
    const max = checkInt('max', options.max, 1, this.#o.maxFetch);
    const leaseMs = checkInt('leaseMs', options.leaseMs ?? this.#o.defaultLeaseMs, 1, this.#o.maxLeaseMs);
    const waitMs = checkInt('waitMs', options.waitMs ?? 0, 0, this.#o.maxWaitMs);
    const consumer = options.consumer ?? '';
    if (typeof consumer !== 'string' || consumer.length > 200)
      throw new MailboxInvalidArgumentError('consumer must be a string of at most 200 characters');
    return { op: { kind: 'claim', mailbox, max, leaseMs, consumer }, waitMs };
  }

  #addPoll(mailbox: string): PollState {
    const poll: PollState = { mailbox, dirty: false, claimBatch: undefined, drained: false, nextDueMs: null };
    let set = this.#polls.get(mailbox);
    if (set === undefined) this.#polls.set(mailbox, (set = new Set()));
    set.add(poll);
    return poll;
  }

  #removePoll(poll: PollState): void {
    const set = this.#polls.get(poll.mailbox);
    if (set?.delete(poll) === true && set.size === 0) this.#polls.delete(poll.mailbox);
  }

  /** Claims for `poll` until messages come or `waitMs` passes (`waitMs` 0: one claim). */
  async #longPoll(
    op: ClaimOp,
    waitMs: number,
    signal: AbortSignal | undefined,
    poll: PollState,
  ): Promise<Message[]> {
    const deadline = this.#clock.now() + waitMs;
    // Nothing was due after the last claim and nothing was committed since: wait first.
    let waitFirst =
      waitMs > 0 &&
      poll.drained &&
      !poll.dirty &&
      (poll.nextDueMs === null || poll.nextDueMs > this.#clock.now());
    for (;;) {
      if (!waitFirst) {
        poll.dirty = false;
        poll.claimBatch = undefined;
        const r = (await this.#submit(op)) as ClaimResult;
        noteClaim(poll, op, r);
        if (r.messages.length > 0) return r.messages;
        if (this.#clock.now() >= deadline) return [];
        // A commit after our claim was submitted may have made a message due: look again.
        if (poll.dirty) continue;
      }
      waitFirst = false;
      const now = this.#clock.now();
      if (now >= deadline) return [];
      const until = poll.nextDueMs === null ? deadline : Math.min(deadline, poll.nextDueMs);
      const claimed = await this.#wait(op, until - now, signal, poll);
      // Messages claimed for us are leased to us: hand them over even if the signal fired since.
      if (claimed !== null && claimed.messages.length > 0) {
        noteClaim(poll, op, claimed);
        return claimed.messages;
      }
      checkSignal(signal);
    }
  }

  async #lease(
    kind: 'ack' | 'extend',
    op: StoreOp,
    mid: string,
  ): Promise<Extract<StoreResult, { kind: 'ack' | 'extend' }>> {
    const r = (await this.#submit(op)) as Extract<StoreResult, { kind: 'ack' | 'extend' }>;
    if (r.outcome === 'not-found') throw new MailboxNotFoundError(`no message has mid ${mid}`);
    if (r.outcome === 'lease-invalid')
      throw new MailboxLeaseInvalidError(
        `unable to change status: the lid is not the current valid lease of ${mid} (${kind})`,
      );
    return r;
  }

  #checkMid(mid: unknown): string {
    return checkHexId('mid', mid, this.#o.hash === 'sha1' ? [40] : [64]);
  }

  /** Confirms (1) or rejects (2) the message under lease `lid`. */
  async ack(mid: string, lid: string, status: 1 | 2, options: CallOptions = {}): Promise<void> {
    checkSignal(options.signal);
    this.#checkMid(mid);
    checkHexId('lid', lid, [32]);
    if (status !== 1 && status !== 2)
      throw new MailboxInvalidArgumentError(
        `status must be 1 (Confirmed) or 2 (Rejected), got ${String(status)}`,
      );
    await this.#lease('ack', { kind: 'ack', mid, lid, status }, mid);
  }

  /** Moves the end of lease `lid` to `leaseMs` from now (the lease must still be valid). */
  async extend(mid: string, lid: string, leaseMs: number, options: CallOptions = {}): Promise<Message> {
    checkSignal(options.signal);
    this.#checkMid(mid);
    checkHexId('lid', lid, [32]);
    checkInt('leaseMs', leaseMs, 1, this.#o.maxLeaseMs);
    const r = await this.#lease('extend', { kind: 'extend', mid, lid, leaseMs }, mid);
    return (r as Extract<StoreResult, { kind: 'extend' }>).message!;
  }

  /**
   * Pending (queued or leased) messages of `receiver`, without bodies, oldest first (received
   * in the same millisecond: in send order). `headersPage` also says where the next page starts.
   */
  async headers(receiver: string, options: HeadersOptions = {}): Promise<MessageHeader[]> {
    return (await this.headersPage(receiver, options)).messages;
  }

  /**
   * A page of `headers` with `next`, the cursor of the page after it: pass it back as `cursor`
   * to list a mailbox page by page without skipping or repeating a message.
   */
  async headersPage(receiver: string, options: HeadersOptions = {}): Promise<HeadersPage> {
    checkSignal(options.signal);
    const mailbox = validateMailboxName(receiver, 'receiver');
    const limit = checkInt('limit', options.limit ?? 100, 1, 1000);
    // "After t" is every message past (t, the largest seq): received at t or before is out.
    let from: HeadersPosition = { receivedAtMs: -1, seq: Number.MAX_SAFE_INTEGER };
    if (options.after !== undefined && options.cursor !== undefined)
      throw new MailboxInvalidArgumentError('after and cursor exclude each other');
    if (options.after !== undefined) {
      if (!(options.after instanceof Date) || Number.isNaN(options.after.getTime()))
        throw new MailboxInvalidArgumentError('after must be a valid Date');
      from = { receivedAtMs: options.after.getTime(), seq: Number.MAX_SAFE_INTEGER };
    }
    if (options.cursor !== undefined) from = decodeHeadersCursor(options.cursor);
    this.#checkOpen();
    const page = await this.#store.headers(mailbox, from, limit);
    return { messages: page.headers, next: page.next === null ? null : encodeHeadersCursor(page.next) };
  }

  /** One message with its body and the record of every attempt, or null. */
  async get(mid: string, options: CallOptions = {}): Promise<Message | null> {
    checkSignal(options.signal);
    this.#checkMid(mid);
    this.#checkOpen();
    return this.#store.get(mid);
  }

  /**
   * Ends every lease that expired by `now` (default: the clock) as a Timeout attempt (retry
   * after the delay, or dead-letter); returns how many. `now` may not be later than the clock:
   * that would end leases that are still valid.
   */
  async reenqueue(now?: Date, options: CallOptions = {}): Promise<number> {
    checkSignal(options.signal);
    if (now !== undefined) {
      if (!(now instanceof Date) || Number.isNaN(now.getTime()))
        throw new MailboxInvalidArgumentError('now must be a valid Date');
      if (now.getTime() > this.#clock.now())
        throw new MailboxInvalidArgumentError('now must not be later than the broker clock');
    }
    const op: StoreOp =
      now === undefined
        ? { kind: 'reenqueue', limit: this.#o.sweepLimit }
        : { kind: 'reenqueue', limit: this.#o.sweepLimit, asOfMs: now.getTime() };
    let total = 0;
    for (;;) {
      const r = (await this.#submit(op)) as Extract<StoreResult, { kind: 'reenqueue' }>;
      total += r.count;
      if (r.count < this.#o.sweepLimit) return total;
    }
  }

  /** Deletes confirmed messages past retention (their blob references go down) and frees blobs at zero. */
  async collect(options: CallOptions = {}): Promise<{ messages: number; blobs: number }> {
    checkSignal(options.signal);
    let messages = 0;
    for (;;) {
      const r = (await this.#submit({ kind: 'expire', limit: this.#o.sweepLimit })) as Extract<
        StoreResult,
        { kind: 'expire' }
      >;
      messages += r.count;
      if (r.count < this.#o.sweepLimit) break;
    }
    let blobs = 0;
    for (;;) {
      this.#checkOpen();
      const n = await this.#store.blobs.collect(this.#o.sweepLimit);
      blobs += n;
      if (n < this.#o.sweepLimit) break;
    }
    return { messages, blobs };
  }

  /** Creates a mailbox or changes its settings (missing settings come from `mailboxDefaults`). */
  async configure(
    name: string,
    settings: Partial<MailboxSettings> = {},
    options: CallOptions = {},
  ): Promise<void> {
    checkSignal(options.signal);
    const mailbox = validateMailboxName(name, 'name');
    const s = resolveMailboxSettings(settings, this.#o.mailboxDefaults, 'settings');
    await this.#submit({ kind: 'configure', name: mailbox, settings: s });
  }

  /**
   * Moves the queued messages of a dead-letter mailbox (`<name>.dead`) back to `<name>`: due
   * now, with a fresh count of deliveries (the attempt record stays). Returns how many moved.
   */
  async redrive(deadMailbox: string, options: LimitOptions = {}): Promise<number> {
    checkSignal(options.signal);
    const mailbox = validateMailboxName(deadMailbox, 'mailbox');
    if (!isDeadLetterName(mailbox))
      throw new MailboxInvalidArgumentError(`mailbox ${mailbox} is not a dead-letter mailbox (<name>.dead)`);
    const target = mailbox.slice(0, -'.dead'.length);
    return this.#chunked(options, (limit) => ({
      kind: 'redrive',
      mailbox,
      target,
      limit,
      defaults: this.#o.mailboxDefaults,
    }));
  }

  /** Deletes the queued messages of `mailbox` (leased ones stay); returns how many went. */
  async purge(name: string, options: LimitOptions = {}): Promise<number> {
    checkSignal(options.signal);
    const mailbox = validateMailboxName(name, 'mailbox');
    return this.#chunked(options, (limit) => ({ kind: 'purge', mailbox, limit }));
  }

  async #chunked(options: LimitOptions, op: (limit: number) => StoreOp): Promise<number> {
    const max = options.limit === undefined ? Infinity : checkInt('limit', options.limit, 1, 2 ** 31);
    let total = 0;
    while (total < max) {
      const limit = Math.min(this.#o.sweepLimit, max - total);
      const r = (await this.#submit(op(limit))) as Extract<StoreResult, { kind: 'redrive' | 'purge' }>;
      total += r.count;
      if (r.count < limit) break;
    }
    return total;
  }

  async mailboxes(options: CallOptions = {}): Promise<MailboxInfo[]> {
    checkSignal(options.signal);
    this.#checkOpen();
    return this.#store.mailboxes(this.#clock.now());
  }

  async stats(options: CallOptions = {}): Promise<BrokerStats> {
    checkSignal(options.signal);
    this.#checkOpen();
    return {
      store: await this.#store.stats(),
      ...this.#counters,
      pendingOps: this.#pending.length,
      waiters: this.#waiterCount,
    };
  }

  #checkOpen(): void {
    if (this.#closed) throw new MailboxClosedError('the broker is closed');
  }

  /**
   * Stops taking calls, ends long polls with MAILBOX_ERR_CLOSED, commits what is queued, and
   * closes the store if the broker opened it.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#sweepTimer?.();
    // Not needed to finish: every flush that ends schedules the next batch.
    clearTimeout(this.#pipelineTimer);
    this.#pipelineTimer = undefined;
    this.#unwatch?.();
    const closed = new MailboxClosedError('the broker closed during a long poll');
    for (const set of [...this.#waiters.values()]) for (const waiter of [...set]) waiter.fail(closed);
    while (this.#pending.length > 0 || this.#inFlight > 0 || this.#scheduled)
      await new Promise<void>((resolve) => setImmediate(resolve));
    await this.#sweeping;
    if (this.#ownsStore) await this.#store.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
