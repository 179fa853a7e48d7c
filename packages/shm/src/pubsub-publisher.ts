import { channel } from 'node:diagnostics_channel';
import { lstatSync, realpathSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { abortableSleep } from './abortable-sleep.js';
import {
  ShmClosedError,
  ShmDataTooLargeError,
  ShmError,
  ShmExistsError,
  ShmInvalidArgumentError,
  ShmPoolExhaustedError,
  ShmWouldBlockError,
} from './errors.js';
import {
  FIXED_HEADER_BYTES,
  I64_HEARTBEAT,
  I_FUTEX_SEQ,
  I_FUTEX_WAITERS,
  I_PARKED,
  I_STATE,
  I_WRITER_PID,
  OFF_FUTEX_SEQ,
  SLOT_BYTES,
  STATE_CLOSED,
  STATE_OPEN,
} from './journal-format.js';
import { bellPath, processAlive, releaseSlot, ringSlot } from './journal-slots.js';
import { releaseHeld, VIEW_CACHE_BLOCKS } from './pubsub-subscriber.js';
import { closeRinger, createMapping, futexWake, unmapFile, type Mapping } from './native.js';
import { resolvePubSubConfig, type PubSubConfig, type ResolvedPubSubConfig } from './options.js';
import {
  FLAG_ATTACHED,
  I_FLAGS,
  CURSOR_HEAD_HI,
  CURSOR_HEAD_LO,
  CURSOR_TAIL_HI,
  CURSOR_TAIL_LO,
  INLINE_BLOCK,
  INLINE_HEADER_BYTES,
  LOAN_BIT,
  POSITION_BYTES,
  regionLayout,
  regionPath,
  writeRegionHeader,
  type RegionLayout,
  TABLE_WORDS,
} from './pubsub-format.js';
import { inspectRegionFile } from './pubsub-inspect.js';

const onCreate = channel('switchyard:shm:pubsub-create');
const onClose = channel('switchyard:shm:pubsub-close');
const onExhausted = channel('switchyard:shm:pubsub-pool-exhausted');

/** 2^-32: `Math.floor(n * PER_HI)` is the high word of n, exactly (a multiplication by a power of
 * two, cheaper than a division by 2^32). */
const PER_HI = 2 ** -32;

/** See #afterPublish: where the commit store is a full fence. */
const PLAIN_PARKED_LOAD = process.arch === 'x64';

/** Counters of a publisher (all since create). */
export interface PublisherStats {
  /** Messages published. */
  readonly published: number;
  /** Wake-ups that made a system call (a futex wake or a doorbell ring): someone was parked. */
  readonly wakeSyscalls: number;
  /** Publishes that found nobody parked and made no system call. */
  readonly wakesSkipped: number;
  /** Ring entries released early to free a block (`overwrite`), or after every subscriber read them. */
  readonly evicted: number;
}

/**
 * A block loaned by the publisher: write the message into `bytes` in place, then
 * `publish(length)` (no copy) or `discard()`. A loan holds one block of the pool until then.
 */
export class Loan {
  readonly bytes: Uint8Array;
  readonly #publisher: Publisher;
  readonly #block: number;
  #done = false;

  /** @internal */
  constructor(publisher: Publisher, block: number, bytes: Uint8Array) {
    this.#publisher = publisher;
    this.#block = block;
    this.bytes = bytes;
  }

  /** The block number (for diagnostics). */
  get block(): number {
    return this.#block;
  }

  /** Publishes the first `length` bytes of `bytes` as one message. */
  publish(length: number): void {
    if (this.#done) throw new ShmClosedError('this loan was already published or discarded');
    if (!Number.isInteger(length) || length < 0 || length > this.bytes.length) {
      throw new ShmInvalidArgumentError(
        `publish(length): length must be an integer in 0..${this.bytes.length}`,
      );
    }
    this.#publisher.publishBlock(this.#block, length);
    this.#done = true;
  }

  /** Gives the block back unpublished. Idempotent. */
  discard(): void {
    if (this.#done) return;
    this.#done = true;
    this.#publisher.discardBlock(this.#block);
  }

  [Symbol.dispose](): void {
    this.discard();
  }
}

/**
 * The one publisher of a pub/sub region. `send` copies into a block of the pool; `loan`
 * hands out a block to write in place. Each message gets the next sequence number and a
 * ring entry; subscribers take it in place. Nothing here allocates per message except the
 * `Loan` object, and nothing makes a system call unless a subscriber is parked.
 */
export class Publisher {
  readonly name: string;
  readonly path: string;
  readonly config: ResolvedPubSubConfig;
  readonly #mapping: Mapping;
  readonly #bytes: Uint8Array;
  readonly #i32: Int32Array;
  readonly #i64: BigInt64Array;
  readonly #layout: RegionLayout;
  readonly #mask: number;
  readonly #ringIndex: number;
  /** Int32 words per ring entry. */
  readonly #ringWords: number;
  /** Largest message `send` carries inline, or -1 (none). */
  readonly #inlineMax: number;
  readonly #tableIndex: number;
  readonly #posIndex: number;
  /** Int32 index of the cursors line (head, tail). */
  readonly #cursors: number;
  readonly #overwrite: boolean;
  readonly #realPath: string;
  readonly #ino: number;
  readonly #ringers: Int32Array;
  readonly #ringerGeneration: Int32Array;
  readonly #heartbeat: NodeJS.Timeout;
  // Per subscriber slot: the pid last checked, when, and whether it lived.
  readonly #livePid: Int32Array;
  readonly #liveAt: Float64Array;
  readonly #liveOk: Uint8Array;
  /** The view of each block that loans hand out (regions of at most VIEW_CACHE_BLOCKS blocks). */
  readonly #loanViews: (Uint8Array | undefined)[] | undefined;
  /** Blocks this publisher has loaned and not yet published or discarded. */
  #loaned = 0;
  /** Ring entries in [tail, head) that hold a block (not inline): none of those blocks is free. */
  #ringBlocks = 0;
  /** The block word this publisher last wrote in each ring entry (a private copy). */
  readonly #entryBlocks: Int32Array;
  /**
   * Per block, 1 once the ring entry that named it was evicted: the ring's reference (1 in
   * the state word) is then stale, and dropped only when #findFree takes the block again
   * (a compare-exchange 1 → LOAN_BIT), not by the eviction. So an eviction writes no table
   * line — the line a subscriber just released the block on — and the block is taken with
   * one locked instruction on a line last touched a pool ago.
   */
  readonly #staleRef: Uint8Array;
  #head = 0;
  #tail = 0;
  #cursor = 0;
  #closed = false;
  #published = 0;
  #wakeSyscalls = 0;
  #evicted = 0;
  #sinceStamp = 0;
  /** An eviction limit seen (see #canEvict): every sequence below it may be released. */
  #limitSeen = 0;
  /** Ring entries one eviction releases at most (see #evict): ringDepth / 64, 1 to 64. */
  readonly #evictBatch: number;
  #stampedAt = 0;

  private constructor(name: string, path: string, config: ResolvedPubSubConfig) {
    this.name = name;
    this.path = path;
    this.config = config;
    const layout = regionLayout(
      config.blockCount,
      config.blockSize,
      config.ringDepth,
      config.subscriberSlots,
      config.inlineMaxBytes,
    );
    this.#layout = layout;
    this.#mapping = createMappingTakingOver(path, layout.totalBytes, config.prefault);
    this.#bytes = this.#mapping.bytes;
    this.#i32 = new Int32Array(this.#mapping.buffer);
    this.#i64 = new BigInt64Array(this.#mapping.buffer, 0, FIXED_HEADER_BYTES >> 3);
    this.#mask = layout.ringDepth - 1;
    this.#entryBlocks = new Int32Array(layout.ringDepth).fill(INLINE_BLOCK);
    this.#staleRef = new Uint8Array(layout.blockCount);
    this.#ringIndex = layout.ringOffset >> 2;
    this.#ringWords = layout.ringEntryBytes >> 2;
    this.#inlineMax = layout.inlineMaxBytes > 0 ? layout.inlineMaxBytes : -1;
    this.#tableIndex = layout.tableOffset >> 2;
    this.#posIndex = layout.positionsOffset >> 2;
    this.#loanViews =
      layout.blockCount <= VIEW_CACHE_BLOCKS
        ? new Array<Uint8Array | undefined>(layout.blockCount).fill(undefined)
        : undefined;
    this.#cursors = layout.cursorsOffset >> 2;
    this.#overwrite = config.slowSubscriber === 'overwrite';
    this.#evictBatch = Math.max(1, Math.min(64, layout.ringDepth >> 6));
    this.#realPath = realpathSync(path);
    this.#ino = statSync(path).ino;
    this.#ringers = new Int32Array(config.subscriberSlots).fill(-1);
    this.#ringerGeneration = new Int32Array(config.subscriberSlots).fill(-1);
    this.#livePid = new Int32Array(config.subscriberSlots);
    this.#liveAt = new Float64Array(config.subscriberSlots);
    this.#liveOk = new Uint8Array(config.subscriberSlots);
    const i32 = this.#i32;
    // No ring entry and no block holds a sequence yet: -1 in both words is none.
    for (let e = 0; e < layout.ringDepth; e++) {
      i32[this.#ringIndex + e * this.#ringWords] = -1;
      i32[this.#ringIndex + e * this.#ringWords + 1] = -1;
    }
    for (let b = 0; b < layout.blockCount; b++) {
      i32[this.#tableIndex + b * TABLE_WORDS + 1] = -1;
      i32[this.#tableIndex + b * TABLE_WORDS + 2] = -1;
    }
    const now = Date.now();
    writeRegionHeader(this.#bytes, {
      layout,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      staleTimeoutMs: config.staleTimeoutMs,
      slowSubscriber: config.slowSubscriber,
      createdAtMs: now,
    });
    Atomics.store(this.#i64, I64_HEARTBEAT, BigInt(now));
    Atomics.store(i32, I_WRITER_PID, process.pid);
    // Published last: a subscriber that sees OPEN sees every field above.
    Atomics.store(i32, I_STATE, STATE_OPEN);
    // The heartbeat timer does not keep the process alive; a busy publisher also stamps
    // from `send` (see publishBlock), so a busy event loop does not look like death.
    this.#heartbeat = setInterval(() => {
      this.#stamp();
      this.#sweep();
    }, config.heartbeatIntervalMs).unref();
    if (onCreate.hasSubscribers) onCreate.publish({ name, path, bytes: layout.totalBytes });
  }

  /** Creates region `name` (in `config.dir`, default /dev/shm; mode 0600). A region left by a dead publisher is taken over. */
  static create(name: string, config?: PubSubConfig): Publisher {
    const resolved = resolvePubSubConfig(config);
    return new Publisher(name, regionPath(resolved.dir, name), resolved);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sequence number the next message gets. */
  get sequence(): bigint {
    return BigInt(this.#head);
  }

  get stats(): PublisherStats {
    return {
      published: this.#published,
      wakeSyscalls: this.#wakeSyscalls,
      wakesSkipped: this.#published - this.#wakeSyscalls,
      evicted: this.#evicted,
    };
  }

  /** Live subscribers attached now. */
  get subscribers(): number {
    let n = 0;
    for (let slot = 0; slot < this.config.subscriberSlots; slot++) {
      const s = (FIXED_HEADER_BYTES >> 2) + slot * (SLOT_BYTES >> 2);
      if (Atomics.load(this.#i32, s) === 1 && processAlive(Atomics.load(this.#i32, s + 2))) n++;
    }
    return n;
  }

  /**
   * Copies `data` into the ring entry (at most `inlineMaxBytes`) or a block, and publishes
   * it. Throws `SHM_ERR_DATA_TOO_LARGE`, `SHM_ERR_POOL_EXHAUSTED`, `SHM_ERR_WOULD_BLOCK`.
   */
  send(data: Uint8Array): void {
    this.#send(data, false);
  }

  /**
   * `send`, but false instead of `SHM_ERR_WOULD_BLOCK` or `SHM_ERR_POOL_EXHAUSTED`: the
   * message was not published (the ring is full of what a subscriber has not read, or every
   * block is out); try again later (`writable()` waits for room). One call per message where
   * a loop would ask `isWritable` first, and no exception to catch when the ring fills.
   * Still throws for a bad argument, `SHM_ERR_DATA_TOO_LARGE` and `SHM_ERR_CLOSED`.
   */
  trySend(data: Uint8Array): boolean {
    return this.#send(data, true);
  }

  /** `quiet`: report a full ring or pool by returning false rather than throwing. */
  #send(data: Uint8Array, quiet: boolean): boolean {
    if (!(data instanceof Uint8Array))
      throw new ShmInvalidArgumentError('send(data): data must be a Uint8Array');
    const length = data.length;
    if (length <= this.#inlineMax) return this.#sendInline(data, length, quiet);
    if (length > this.#layout.blockSize) {
      throw new ShmDataTooLargeError(`a ${length}-byte message exceeds blockSize ${this.#layout.blockSize}`);
    }
    const block = this.#take(quiet);
    if (block < 0) return false;
    this.#bytes.set(data, this.#layout.blocksOffset + block * this.#layout.blockSize);
    return this.#publish(block, length, quiet);
  }

  /** Loans a block to write in place (no copy). Throws `SHM_ERR_POOL_EXHAUSTED`, `SHM_ERR_WOULD_BLOCK`. */
  loan(): Loan {
    return this.#loan(this.#take(false));
  }

  /**
   * `loan`, but null instead of `SHM_ERR_WOULD_BLOCK` or `SHM_ERR_POOL_EXHAUSTED` (nothing is
   * loaned): one call per message where a loop would ask `isWritable` first. Still throws
   * `SHM_ERR_CLOSED`.
   */
  tryLoan(): Loan | null {
    const block = this.#take(true);
    return block < 0 ? null : this.#loan(block);
  }

  #loan(block: number): Loan {
    const offset = this.#layout.blocksOffset + block * this.#layout.blockSize;
    // One view per block, made on its first loan: a loan always spans the whole block, and a
    // block is loaned to one Loan at a time.
    let bytes = this.#loanViews?.[block];
    if (bytes === undefined) {
      bytes = new Uint8Array(this.#mapping.buffer, offset, this.#layout.blockSize);
      if (this.#loanViews !== undefined) this.#loanViews[block] = bytes;
    }
    return new Loan(this, block, bytes);
  }

  /**
   * True when a message can be published now: a block is free (or can be freed) and, with
   * `slowSubscriber: 'block'`, the ring has room.
   */
  get isWritable(): boolean {
    if (this.#closed) return false;
    const ringFull = this.#head - this.#tail >= this.#layout.ringDepth;
    if (ringFull && !this.#canEvict()) return false;
    const i32 = this.#i32;
    const count = this.#layout.blockCount;
    // Plain reads from the cursor: a hint (loan() checks again), and blocks come back in
    // about the order they went out, so the first look usually finds one. No look at all
    // when the ring and the loans hold every block.
    const looks = this.#ringBlocks + this.#loaned >= count ? 0 : count;
    for (let n = 0, b = this.#cursor; n < looks; n++, b = b + 1 === count ? 0 : b + 1) {
      const state = i32[this.#tableIndex + b * TABLE_WORDS];
      if (state === 0 || (state === 1 && this.#staleRef[b] === 1)) return true;
    }
    // No free block: one would come free only by releasing a ring entry no guard shares.
    const limit = this.#evictLimit(true);
    for (let seq = this.#tail; seq < limit; seq++) {
      const block = Atomics.load(i32, this.#ringIndex + (seq & this.#mask) * this.#ringWords + 2);
      if (block >= 0 && Atomics.load(i32, this.#tableIndex + block * TABLE_WORDS) === 1) return true;
    }
    return false;
  }

  /**
   * Resolves once `isWritable` (polling with a backoff of up to `maxBackoffMs`; subscribers
   * do not ring the publisher). Rejects with `signal.reason`, or `SHM_ERR_CLOSED`.
   */
  async writable(options: { signal?: AbortSignal; maxBackoffMs?: number } = {}): Promise<void> {
    const { signal } = options;
    const max = options.maxBackoffMs ?? 2;
    let delay = 0;
    for (;;) {
      signal?.throwIfAborted();
      if (this.#closed) throw new ShmClosedError('the publisher is closed');
      if (this.isWritable) return;
      await abortableSleep(delay, signal);
      delay = delay === 0 ? 1 : Math.min(max, delay * 2);
    }
  }

  /**
   * Takes a free block for a loan or a send (LOAN_BIT set), making room in the ring first;
   * when there is none, -1 if `quiet`, else the error.
   */
  #take(quiet: boolean): number {
    if (this.#closed) throw new ShmClosedError('the publisher is closed');
    // With 'block', fail before handing out a block if the ring entry this message will take
    // cannot be freed. Nothing is evicted here: the entry is given up at publish, so a
    // subscriber can still read it while the loan is being written.
    if (!this.#overwrite && this.#head - this.#tail >= this.#layout.ringDepth && !this.#canEvict()) {
      if (quiet) return -1;
      throw new ShmWouldBlockError(
        `a subscriber has not read message ${this.#tail} yet, and the ring holds ${this.#layout.ringDepth}`,
      );
    }
    for (;;) {
      const block = this.#findFree();
      if (block >= 0) {
        this.#loaned++;
        return block;
      }
      if (!this.#evict()) break;
    }
    if (onExhausted.hasSubscribers) onExhausted.publish({ name: this.name });
    if (quiet) return -1;
    if (!this.#overwrite && this.#head > this.#tail && !this.#canEvict()) {
      throw new ShmWouldBlockError('every free block waits in the ring for a subscriber to read it');
    }
    throw new ShmPoolExhaustedError(
      `all ${this.#layout.blockCount} blocks are out (${this.#head - this.#tail} in the ring, ${this.#loaned} loaned, the rest held by samples)`,
    );
  }

  /**
   * A free block, claimed with LOAN_BIT, or -1. Round-robin: blocks come back roughly in
   * order, so the block at the cursor is usually free. When the ring entries and the loans
   * hold every block (`blockCount` = `ringDepth` and the ring full), none can be free: -1
   * without a look, and the caller frees the oldest entry's block, which is then at the
   * cursor. A scan of the table happens only while samples hold blocks out of order.
   */
  #findFree(): number {
    const i32 = this.#i32;
    const count = this.#layout.blockCount;
    if (this.#ringBlocks + this.#loaned >= count) return -1;
    const stale = this.#staleRef;
    let b = this.#cursor;
    for (let n = 0; n < count; n++) {
      const s = this.#tableIndex + b * TABLE_WORDS;
      // A plain read to find a candidate (Atomics calls cost 15-30 ns on Node 20), an atomic
      // operation to take it: it orders our writes after the last reader's release.
      const state = i32[s] as number;
      let taken = false;
      if (state === 1 && stale[b] === 1) {
        // Evicted, and no guard holds it: drop the ring's stale reference and loan it in one
        // step. A subscriber taking a reference meanwhile (the block still holds the message
        // its old entry named) makes the exchange fail: the block stays out until released.
        if (Atomics.compareExchange(i32, s, 1, LOAN_BIT) === 1) {
          stale[b] = 0;
          taken = true;
        }
      } else if (state === 0 && Atomics.load(i32, s) === 0) {
        // Never published (or discarded): only the publisher moves a block away from 0
        // (readers take a reference only from a published block), so a plain store claims it.
        i32[s] = LOAN_BIT;
        taken = true;
      }
      if (taken) {
        // The old sequence is invalidated before anything is written into the block.
        i32[s + 1] = -1;
        i32[s + 2] = -1;
        this.#cursor = b + 1 === count ? 0 : b + 1;
        return b;
      }
      b = b + 1 === count ? 0 : b + 1;
    }
    return -1;
  }

  /** True when the oldest ring entry may be released now. */
  #canEvict(): boolean {
    // The limit only grows while subscribers read: scan their positions again only once the
    // tail has reached the last limit seen (a scan touches every subscriber's cache line).
    // Liveness costs a system call per subscriber: only when a subscriber holds us back.
    if (this.#tail < this.#limitSeen) return true;
    this.#limitSeen = this.#evictLimit(false);
    if (this.#tail < this.#limitSeen) return true;
    this.#limitSeen = this.#evictLimit(true);
    return this.#tail < this.#limitSeen;
  }

  /**
   * The first sequence whose ring entry must stay: the head with `overwrite`; with `block`,
   * the oldest position of a live subscriber (the tail while none has attached yet).
   */
  #evictLimit(checkLiveness: boolean): number {
    const tail = this.#tail;
    const head = this.#head;
    if (this.#overwrite || tail >= head) return head;
    const i32 = this.#i32;
    if ((Atomics.load(i32, I_FLAGS) & FLAG_ATTACHED) === 0) return tail;
    // Positions hold the low 32 bits of each subscriber's next sequence; it lies within
    // [tail, head], so its distance from the tail, taken in 32 bits, is exact.
    let limit = head;
    for (let slot = 0; slot < this.config.subscriberSlots; slot++) {
      const s = (FIXED_HEADER_BYTES >> 2) + slot * (SLOT_BYTES >> 2);
      if (Atomics.load(i32, s) !== 1) continue;
      const ahead = (Atomics.load(i32, this.#posIndex + slot * (POSITION_BYTES >> 2)) - (tail | 0)) | 0;
      if (ahead >= limit - tail) continue;
      if (checkLiveness && !this.#alive(slot, Atomics.load(i32, s + 2))) continue;
      limit = tail + Math.max(0, ahead);
    }
    return limit;
  }

  /** Whether subscriber `pid` in `slot` lives; asked of the kernel at most every 100 ms per slot. */
  #alive(slot: number, pid: number): boolean {
    const now = Date.now();
    if (this.#livePid[slot] === pid && now - (this.#liveAt[slot] as number) < 100)
      return this.#liveOk[slot] === 1;
    const alive = processAlive(pid);
    this.#livePid[slot] = pid;
    this.#liveAt[slot] = now;
    this.#liveOk[slot] = alive ? 1 : 0;
    return alive;
  }

  /**
   * Evicts the oldest entries (from the tail); false when not allowed. Up to `#evictBatch`
   * entries go at once (never past the eviction limit): the tail is published with one
   * sequentially consistent store per batch, before any entry it frees is rewritten, which
   * is what lets a subscriber check an inline copy (see Subscriber#copiesWhole) without a
   * second store per message. The blocks the entries named keep the ring's reference until
   * #findFree takes them again (see #staleRef).
   */
  #evict(): boolean {
    if (!this.#canEvict()) return false;
    const tail = this.#tail;
    const end = Math.min(this.#limitSeen, tail + this.#evictBatch);
    // Advance the tail before any block is taken again: a reader that then fails to take one
    // (or finds it reused) reads the tail and knows how many it missed. The high word first,
    // plainly: the atomic store of the low word publishes it (see CURSOR_TAIL_LO).
    this.#tail = end;
    const i32 = this.#i32;
    i32[this.#cursors + CURSOR_TAIL_HI] = Math.floor(end * PER_HI);
    Atomics.store(i32, this.#cursors + CURSOR_TAIL_LO, end | 0);
    for (let seq = tail; seq < end; seq++) {
      // Our own record of the entry's block, not the entry: reading the shared line here
      // would fetch it from a subscriber's cache, and writing it right after would fetch it
      // again. An inline message holds no block: its entry is simply overwritten next.
      const block = this.#entryBlocks[seq & this.#mask] as number;
      // A block's reference is left to #findFree (see #staleRef).
      if (block !== INLINE_BLOCK) {
        this.#ringBlocks--;
        this.#staleRef[block] = 1;
      }
    }
    this.#evicted += end - tail;
    return true;
  }

  /** @internal Publishes loaned block `block` with `length` bytes. */
  publishBlock(block: number, length: number): void {
    this.#publish(block, length, false);
  }

  /** Publishes loaned block `block`; when the ring has no room, gives it back: false if `quiet`, else throws. */
  #publish(block: number, length: number, quiet: boolean): boolean {
    if (this.#closed) throw new ShmClosedError('the publisher is closed');
    const i32 = this.#i32;
    const seq = this.#head;
    const lo = seq | 0;
    const hi = Math.floor(seq * PER_HI);
    if (seq - this.#tail >= this.#layout.ringDepth && !this.#evict()) {
      // Only when another loan took the last ring entry first: give the block back.
      this.discardBlock(block);
      if (quiet) return false;
      throw new ShmWouldBlockError(`a subscriber has not read message ${this.#tail} yet`);
    }
    const t = this.#tableIndex + block * TABLE_WORDS;
    // One sequentially consistent store per message (a locked instruction on x86): the
    // entry's commit below. Every word before it is a plain store it publishes.
    i32[t + 3] = length;
    i32[t + 2] = hi;
    i32[t + 1] = lo;
    // From loaned to published, held by the ring entry: one reference. A plain store, like
    // the claim in #findFree: while LOAN_BIT is set no reader writes the word (a compare-
    // exchange never starts from a loaned state), and a reader that takes a reference before
    // the commit (it read an old entry naming this block) finds other sequence words and
    // gives it back. A reader of this message synchronizes with the commit, which orders
    // this store before it.
    i32[t] = 1;
    const e = this.#ringIndex + (seq & this.#mask) * this.#ringWords;
    i32[e + 2] = block;
    // The length in the entry too (version 4): a 'block' subscriber draining in place reads
    // the entry and the block, and not the table line, which so stays in this core's cache.
    i32[e + 3] = length;
    this.#entryBlocks[seq & this.#mask] = block;
    i32[e + 1] = hi;
    // The entry's low sequence word last: a reader that sees it sees the rest. Being a
    // full fence, it also orders the parked-count load below after the entry (a subscriber
    // that parks sets the count, then looks at the entry).
    Atomics.store(i32, e, lo);
    this.#loaned--;
    this.#ringBlocks++;
    this.#afterPublish(seq);
    return true;
  }

  /**
   * Publishes `data` inline in its ring entry: no block, no reference count, one
   * sequentially consistent store (the commit of the sequence word). A reader that copied
   * the entry's old message while it was overwritten finds out afterwards (see
   * Subscriber#copiesWhole): the entry was evicted (the tail, stored atomically, moved past
   * it) and the message before this one was committed before the first byte was written.
   */
  #sendInline(data: Uint8Array, length: number, quiet: boolean): boolean {
    if (this.#closed) throw new ShmClosedError('the publisher is closed');
    const seq = this.#head;
    if (seq - this.#tail >= this.#layout.ringDepth && !this.#evict()) {
      if (quiet) return false;
      throw new ShmWouldBlockError(
        `a subscriber has not read message ${this.#tail} yet, and the ring holds ${this.#layout.ringDepth}`,
      );
    }
    const i32 = this.#i32;
    const e = this.#ringIndex + (seq & this.#mask) * this.#ringWords;
    i32[e + 1] = Math.floor(seq * PER_HI);
    i32[e + 2] = INLINE_BLOCK;
    this.#entryBlocks[seq & this.#mask] = INLINE_BLOCK;
    i32[e + 3] = length;
    this.#bytes.set(data, (e << 2) + INLINE_HEADER_BYTES);
    Atomics.store(i32, e, seq | 0);
    this.#afterPublish(seq);
    return true;
  }

  /** After message `seq` is in the ring: the head hint, counters, wake-ups, heartbeat. */
  #afterPublish(seq: number): void {
    const i32 = this.#i32;
    this.#head = seq + 1;
    // The head is a hint for subscribers that attach (they read it with a retry loop);
    // readers tell "not yet" from "lapped" by the entry's sequence alone.
    i32[this.#cursors + CURSOR_HEAD_HI] = Math.floor(this.#head * PER_HI);
    i32[this.#cursors + CURSOR_HEAD_LO] = this.#head | 0;
    this.#published++;
    // The parked count, after the commit (a subscriber that parks counts itself, then looks
    // at the entry): on x86-64 a plain load, since the commit (a locked exchange) is a full
    // fence and V8 does not move a load across it; elsewhere an atomic load, which a release
    // store may not pass (7 ns a message saved on the hot path where it is safe).
    if ((PLAIN_PARKED_LOAD ? i32[I_PARKED] : Atomics.load(i32, I_PARKED)) !== 0) this.#wake();
    // A publisher whose event loop is busy (a synchronous send loop) cannot run its
    // heartbeat timer: every 64 messages, stamp if the interval has passed.
    if (++this.#sinceStamp === 64) {
      this.#sinceStamp = 0;
      const now = Date.now();
      if (now - this.#stampedAt >= this.config.heartbeatIntervalMs) this.#stamp(now);
    }
  }

  /** @internal Returns a loaned block to the pool. */
  discardBlock(block: number): void {
    if (this.#closed) return;
    Atomics.store(this.#i32, this.#tableIndex + block * TABLE_WORDS, 0);
    this.#loaned--;
  }

  #stamp(now = Date.now()): void {
    this.#stampedAt = now;
    if (!this.#closed) Atomics.store(this.#i64, I64_HEARTBEAT, BigInt(now));
  }

  /**
   * Cleans up after subscribers whose process is gone: releases the samples they held (their
   * guard counts are in the region), clears their parked flag and frees their slot. Runs with
   * the heartbeat; `sweep()` runs it now and returns how many slots it freed.
   */
  #sweep(): number {
    if (this.#closed) return 0;
    const i32 = this.#i32;
    const layout = this.#layout;
    let freed = 0;
    for (let slot = 0; slot < layout.subscriberSlots; slot++) {
      const s = (FIXED_HEADER_BYTES >> 2) + slot * (SLOT_BYTES >> 2);
      if (Atomics.load(i32, s) !== 1) continue;
      const pid = Atomics.load(i32, s + 2);
      if (pid <= 0 || processAlive(pid)) continue;
      // Take the slot over with our own (live) pid, so a subscriber opening now does not
      // claim it while we clean it.
      if (Atomics.compareExchange(i32, s + 2, pid, process.pid) !== pid) continue;
      const held = new Int32Array(
        this.#mapping.buffer,
        layout.heldOffset + slot * layout.blockCount * 4,
        layout.blockCount,
      );
      releaseHeld(i32, held, this.#tableIndex);
      releaseSlot(i32, slot, bellPath(this.#realPath, slot));
      this.#livePid[slot] = 0;
      freed++;
    }
    return freed;
  }

  /** Frees the slots and samples of subscribers whose process died (also done every heartbeat). */
  sweep(): number {
    return this.#sweep();
  }

  /** Wakes futex waiters and rings each parked subscriber's doorbell. */
  #wake(): void {
    const i32 = this.#i32;
    if (Atomics.load(i32, I_FUTEX_WAITERS) !== 0) {
      Atomics.add(i32, I_FUTEX_SEQ, 1);
      futexWake(this.#mapping, OFF_FUTEX_SEQ);
      this.#wakeSyscalls++;
    }
    const base = FIXED_HEADER_BYTES >> 2;
    for (let slot = 0; slot < this.config.subscriberSlots; slot++) {
      const s = base + slot * (SLOT_BYTES >> 2);
      if (Atomics.load(i32, s + 1) !== 1) continue;
      // Whoever moves a slot from parked to not parked takes it off the parked count.
      if (Atomics.compareExchange(i32, s + 1, 1, 0) !== 1) continue;
      Atomics.sub(i32, I_PARKED, 1);
      this.#ring(slot, s);
      this.#wakeSyscalls++;
    }
  }

  #ring(slot: number, s: number): void {
    ringSlot(this.#ringers, this.#ringerGeneration, this.#realPath, slot, Atomics.load(this.#i32, s + 3));
  }

  /**
   * Marks the region closed (subscribers drain what is there, then get `SHM_ERR_CLOSED`),
   * wakes every parked subscriber, unmaps and removes the file (subscribers keep their
   * mappings). Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    clearInterval(this.#heartbeat);
    Atomics.store(this.#i32, I_STATE, STATE_CLOSED);
    this.#wake();
    this.#closed = true;
    for (const fd of this.#ringers) if (fd >= 0) closeRinger(fd);
    try {
      // Only our own file: a publisher that took the name over since must keep it.
      if (statSync(this.path).ino === this.#ino) unlinkSync(this.path);
    } catch {
      // Removed already (switchyard shm rm).
    }
    unmapFile(this.#mapping);
    if (onClose.hasSubscribers) onClose.publish({ name: this.name, published: this.#published });
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/**
 * Creates the region file; if one exists whose publisher is dead (or closed), removes it
 * and its doorbells first. A live publisher's region is never touched: `SHM_ERR_EXISTS`.
 */
function createMappingTakingOver(path: string, size: number, populate: boolean): Mapping {
  try {
    return createMapping(path, size, populate);
  } catch (error) {
    if (!(error instanceof ShmExistsError)) throw error;
    let stale: boolean;
    try {
      const info = inspectRegionFile(path);
      stale = !info.publisherAlive || info.state !== 'open';
    } catch (inner) {
      // A header never published: a publisher that died while creating it, if the file has
      // not changed for a second. Anything that is not a region at all is left alone.
      if (!(inner instanceof ShmError) || inner.code !== 'SHM_ERR_NOT_READY') {
        throw new ShmExistsError(`${path} exists and is not a pub/sub region`, { cause: inner });
      }
      stale = Date.now() - lstatSync(path).mtimeMs > 1000;
    }
    if (!stale) throw new ShmExistsError(`${path} belongs to a live publisher`, { cause: error });
    removeRegionFiles(path);
    return createMapping(path, size, populate);
  }
}

/** Removes a region file and its subscribers' doorbell FIFOs. */
export function removeRegionFiles(path: string): void {
  let slots: number;
  try {
    slots = inspectRegionFile(path).subscriberSlots;
  } catch {
    slots = 0;
  }
  try {
    unlinkSync(path);
  } catch {
    // Gone already.
  }
  let real: string;
  try {
    real = join(realpathSync(dirname(path)), basename(path));
  } catch {
    real = path;
  }
  for (let slot = 0; slot < Math.max(slots, 1024); slot++) {
    const bell = bellPath(real, slot);
    try {
      if (lstatSync(bell).isFIFO()) unlinkSync(bell);
    } catch {
      if (slot >= slots) break;
    }
  }
}
