/**
 * The memory store: the reference implementation of the seams, for tests and for brokers that
 * need no durability. `MemoryStoreData` can outlive a store, so a test can "reopen" the same
 * contents. Each mailbox's queued messages sit in a binary heap ordered by (due, seq) with lazy
 * deletion, so a claim costs O(log n).
 */
import { MailboxClosedError } from './errors.js';
import type { Attempt, Message, MessageHeader, MessageStatusValue } from './message.js';
import {
  MAX_HISTORY_CHARS,
  MessageStatus,
  RandomIds,
  decodeBody,
  formatAttempt,
  parseAttempts,
} from './message.js';
import type {
  BlobStore,
  HeadersPosition,
  HeadersRows,
  MailboxInfo,
  MailboxSettings,
  MessageStore,
  NewMessage,
  StoreOp,
  StoreResult,
  StoreStats,
} from './store.js';
import { afterAttempt } from './store.js';
import { STATE_NAMES } from './message-row.js';

const QUEUED = 0;
const LEASED = 1;
const CONFIRMED = 2;

interface Rec {
  readonly seq: number;
  readonly m: NewMessage;
  readonly receivedAt: number;
  mailbox: string;
  state: 0 | 1 | 2;
  status: MessageStatusValue;
  due: number | null;
  deliveryCount: number;
  lid: string | null;
  fence: number | null;
  leasedUntil: number | null;
  fetchTime: number | null;
  consumer: string | null;
  expiresAt: number | null;
  history: string;
}

interface HeapEntry {
  readonly due: number;
  readonly seq: number;
  readonly rec: Rec;
}

class Heap {
  readonly items: HeapEntry[] = [];
  static less(a: HeapEntry, b: HeapEntry): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }
  push(e: HeapEntry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!Heap.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  peek(): HeapEntry | undefined {
    return this.items[0];
  }
  pop(): HeapEntry | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && Heap.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && Heap.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** The contents of a memory store; pass the same object to a new `MemoryStore` to reopen it. */
export class MemoryStoreData {
  readonly messages = new Map<string, Rec>();
  readonly mailboxes = new Map<string, { settings: MailboxSettings; createdAt: number }>();
  readonly ready = new Map<string, Heap>();
  readonly blobs = new Map<string, { data: Buffer; refs: number }>();
  seq = 0;
  fence = 0;
}

class MemoryBlobStore implements BlobStore {
  readonly #data: MemoryStoreData;
  readonly #open: () => void;
  constructor(data: MemoryStoreData, open: () => void) {
    this.#data = data;
    this.#open = open;
  }
  putSync(key: string, data: Uint8Array | string): void {
    const blob = this.#data.blobs.get(key);
    if (blob !== undefined) blob.refs++;
    else this.#data.blobs.set(key, { data: Buffer.from(data), refs: 1 });
  }
  addRef(key: string, delta: number): void {
    const blob = this.#data.blobs.get(key);
    if (blob !== undefined) blob.refs += delta;
  }
  async put(key: string, data: Uint8Array | string): Promise<void> {
    this.#open();
    this.putSync(key, data);
  }
  async get(key: string): Promise<Buffer | null> {
    this.#open();
    return this.#data.blobs.get(key)?.data ?? null;
  }
  async refCount(key: string): Promise<number | null> {
    this.#open();
    return this.#data.blobs.get(key)?.refs ?? null;
  }
  async updateRefCounts(deltas: ReadonlyMap<string, number>): Promise<void> {
    this.#open();
    for (const [key, delta] of deltas) this.addRef(key, delta);
  }
  async collect(limit: number): Promise<number> {
    this.#open();
    let n = 0;
    for (const [key, blob] of this.#data.blobs) {
      if (n >= limit) break;
      if (blob.refs <= 0) {
        this.#data.blobs.delete(key);
        n++;
      }
    }
    return n;
  }
  async stats(): Promise<{ count: number; bytes: number }> {
    this.#open();
    let bytes = 0;
    for (const b of this.#data.blobs.values()) bytes += b.data.length;
    return { count: this.#data.blobs.size, bytes };
  }
}

/** A `MessageStore` in memory. Not durable; every rule of the model holds. */
export class MemoryStore implements MessageStore {
  readonly blobs: MemoryBlobStore;
  readonly #d: MemoryStoreData;
  readonly #ids = new RandomIds();
  #closed = false;

  constructor(data: MemoryStoreData = new MemoryStoreData()) {
    this.#d = data;
    this.blobs = new MemoryBlobStore(data, () => this.#check());
  }

  #check(): void {
    if (this.#closed) throw new MailboxClosedError('the memory store is closed');
  }

  async apply(ops: readonly StoreOp[], nowMs: number): Promise<StoreResult[]> {
    this.#check();
    const results: StoreResult[] = [];
    for (const op of ops) results.push(this.#applyOne(op, nowMs));
    return results;
  }

  #applyOne(op: StoreOp, now: number): StoreResult {
    const d = this.#d;
    switch (op.kind) {
      case 'send': {
        const existing = d.messages.get(op.message.mid);
        if (existing !== undefined) return { kind: 'send', message: this.#message(existing), created: false };
        if (!d.mailboxes.has(op.message.receiver))
          d.mailboxes.set(op.message.receiver, { settings: op.defaults, createdAt: now });
        const rec: Rec = {
          seq: ++d.seq,
          m: op.message,
          receivedAt: now,
          mailbox: op.message.receiver,
          state: QUEUED,
          status: MessageStatus.NotDelivered,
          due: now + op.message.delayMs,
          deliveryCount: 0,
          lid: null,
          fence: null,
          leasedUntil: null,
          fetchTime: null,
          consumer: null,
          expiresAt: null,
          history: '',
        };
        d.messages.set(rec.m.mid, rec);
        this.blobs.putSync(rec.m.blobKey, rec.m.body);
        this.#enqueue(rec);
        return { kind: 'send', message: this.#message(rec), created: true };
      }
      case 'claim': {
        const heap = d.ready.get(op.mailbox);
        const messages: Message[] = [];
        while (heap !== undefined && messages.length < op.max) {
          const top = heap.peek();
          if (top === undefined) break;
          const rec = top.rec;
          if (
            rec.state !== QUEUED ||
            rec.due !== top.due ||
            rec.mailbox !== op.mailbox ||
            !d.messages.has(rec.m.mid)
          ) {
            heap.pop();
            continue;
          }
          if (top.due > now) break;
          heap.pop();
          rec.state = LEASED;
          rec.due = null;
          rec.deliveryCount++;
          rec.lid = this.#ids.next();
          rec.fence = ++d.fence;
          rec.leasedUntil = now + op.leaseMs;
          rec.fetchTime = now;
          rec.consumer = op.consumer;
          messages.push(this.#message(rec));
        }
        // Like the SQL stores: only an empty claim says when to look again (the long poll's sleep).
        return {
          kind: 'claim',
          messages,
          nextDueMs: messages.length > 0 ? null : this.#nextDue(op.mailbox),
        };
      }
      case 'ack': {
        const rec = d.messages.get(op.mid);
        if (rec === undefined) return { kind: 'ack', outcome: 'not-found', wake: null };
        if (rec.state !== LEASED || rec.lid !== op.lid || rec.leasedUntil === null || rec.leasedUntil <= now)
          return { kind: 'ack', outcome: 'lease-invalid', wake: null };
        this.#endAttempt(rec, now, op.status);
        return { kind: 'ack', outcome: 'ok', wake: op.status === 1 ? null : rec.mailbox };
      }
      case 'extend': {
        const rec = d.messages.get(op.mid);
        if (rec === undefined) return { kind: 'extend', outcome: 'not-found', message: null };
        if (rec.state !== LEASED || rec.lid !== op.lid || rec.leasedUntil === null || rec.leasedUntil <= now)
          return { kind: 'extend', outcome: 'lease-invalid', message: null };
        rec.leasedUntil = now + op.leaseMs;
        return { kind: 'extend', outcome: 'ok', message: this.#message(rec) };
      }
      case 'reenqueue': {
        const expired: Rec[] = [];
        for (const rec of d.messages.values())
          if (
            rec.state === LEASED &&
            rec.leasedUntil !== null &&
            rec.leasedUntil <= Math.min(now, op.asOfMs ?? now)
          )
            expired.push(rec);
        expired.sort((a, b) => a.leasedUntil! - b.leasedUntil! || a.seq - b.seq);
        const wake = new Set<string>();
        for (const rec of expired.slice(0, op.limit)) {
          this.#endAttempt(rec, rec.leasedUntil!, 4);
          wake.add(rec.mailbox);
        }
        return { kind: 'reenqueue', count: Math.min(expired.length, op.limit), wake: [...wake] };
      }
      case 'expire': {
        let count = 0;
        for (const rec of d.messages.values()) {
          if (count >= op.limit) break;
          if (rec.state === CONFIRMED && rec.expiresAt !== null && rec.expiresAt <= now) {
            d.messages.delete(rec.m.mid);
            this.blobs.addRef(rec.m.blobKey, -1);
            count++;
          }
        }
        return { kind: 'expire', count };
      }
      case 'configure': {
        const prev = d.mailboxes.get(op.name);
        d.mailboxes.set(op.name, { settings: op.settings, createdAt: prev?.createdAt ?? now });
        return { kind: 'configure' };
      }
      case 'redrive': {
        if (!d.mailboxes.has(op.target))
          d.mailboxes.set(op.target, { settings: op.defaults, createdAt: now });
        const recs = this.#queuedOf(op.mailbox, op.limit);
        for (const rec of recs) {
          rec.mailbox = op.target;
          rec.status = MessageStatus.NotDelivered;
          rec.deliveryCount = 0;
          rec.due = now;
          this.#enqueue(rec);
        }
        return { kind: 'redrive', count: recs.length, target: op.target };
      }
      case 'purge': {
        const recs = this.#queuedOf(op.mailbox, op.limit);
        for (const rec of recs) {
          d.messages.delete(rec.m.mid);
          this.blobs.addRef(rec.m.blobKey, -1);
        }
        return { kind: 'purge', count: recs.length };
      }
    }
  }

  /** Up to `limit` of the oldest queued messages of `mailbox` (by due time, then arrival). */
  #queuedOf(mailbox: string, limit: number): Rec[] {
    const recs: Rec[] = [];
    for (const rec of this.#d.messages.values())
      if (rec.mailbox === mailbox && rec.state === QUEUED) recs.push(rec);
    recs.sort((a, b) => a.due! - b.due! || a.seq - b.seq);
    return recs.slice(0, limit);
  }

  /** Ends the current lease of `rec` as `outcome` at `endedAt` and applies the retry rule. */
  #endAttempt(rec: Rec, endedAt: number, outcome: 1 | 2 | 4): void {
    const d = this.#d;
    if (rec.history.length < MAX_HISTORY_CHARS)
      rec.history += formatAttempt(
        rec.deliveryCount,
        rec.consumer ?? '',
        rec.fetchTime ?? endedAt,
        endedAt,
        outcome,
      );
    rec.leasedUntil = null;
    if (outcome === 1) {
      rec.state = CONFIRMED;
      rec.status = MessageStatus.Confirmed;
      const settings = d.mailboxes.get(rec.mailbox)?.settings;
      rec.expiresAt = endedAt + (settings?.retentionMs ?? 0);
      return;
    }
    const settings = this.#settings(rec.mailbox);
    const next = afterAttempt(settings, rec.mailbox, rec.deliveryCount, endedAt);
    rec.state = QUEUED;
    rec.status = next.dead ? MessageStatus.Dead : outcome;
    if (next.dead && !d.mailboxes.has(next.mailbox))
      d.mailboxes.set(next.mailbox, { settings, createdAt: endedAt });
    rec.mailbox = next.mailbox;
    rec.due = next.dueMs;
    this.#enqueue(rec);
  }

  #settings(name: string): MailboxSettings {
    const s = this.#d.mailboxes.get(name)?.settings;
    if (s === undefined) throw new Error(`mailbox ${name} has no settings`);
    return s;
  }

  #enqueue(rec: Rec): void {
    let heap = this.#d.ready.get(rec.mailbox);
    if (heap === undefined) this.#d.ready.set(rec.mailbox, (heap = new Heap()));
    heap.push({ due: rec.due!, seq: rec.seq, rec });
  }

  #nextDue(mailbox: string): number | null {
    const heap = this.#d.ready.get(mailbox);
    while (heap !== undefined) {
      const top = heap.peek();
      if (top === undefined) return null;
      const rec = top.rec;
      if (
        rec.state === QUEUED &&
        rec.due === top.due &&
        rec.mailbox === mailbox &&
        this.#d.messages.has(rec.m.mid)
      )
        return top.due;
      heap.pop();
    }
    return null;
  }

  #header(rec: Rec, attempts?: Attempt[]): MessageHeader {
    const m = rec.m;
    const header: MessageHeader = {
      mid: m.mid,
      sender: m.sender,
      receiver: m.receiver,
      mailbox: rec.mailbox,
      clientTime: new Date(m.clientTimeMs),
      receivedAt: new Date(rec.receivedAt),
      sendWhen: new Date(rec.receivedAt + m.delayMs),
      delayMs: m.delayMs,
      state: STATE_NAMES[rec.state]!,
      status: rec.status,
      deliveryCount: rec.deliveryCount,
      lid: rec.lid,
      fence: rec.fence,
      leasedUntil: rec.leasedUntil === null ? null : new Date(rec.leasedUntil),
      fetchTime: rec.fetchTime === null ? null : new Date(rec.fetchTime),
      dueAt: rec.due === null ? null : new Date(rec.due),
      blobKey: m.blobKey,
      bodyBytes: m.bodyBytes,
    };
    return attempts === undefined ? header : { ...header, attempts };
  }

  #message(rec: Rec, attempts?: Attempt[]): Message {
    const blob = this.#d.blobs.get(rec.m.blobKey);
    return { ...this.#header(rec, attempts), body: decodeBody(blob?.data.toString('utf8') ?? rec.m.body) };
  }

  async get(mid: string): Promise<Message | null> {
    this.#check();
    const rec = this.#d.messages.get(mid);
    return rec === undefined ? null : this.#message(rec, parseAttempts(rec.history));
  }

  async headers(mailbox: string, after: HeadersPosition, limit: number): Promise<HeadersRows> {
    this.#check();
    const { receivedAtMs: at, seq } = after;
    const out: Rec[] = [];
    for (const rec of this.#d.messages.values())
      if (
        rec.mailbox === mailbox &&
        rec.state !== CONFIRMED &&
        (rec.receivedAt > at || (rec.receivedAt === at && rec.seq > seq))
      )
        out.push(rec);
    out.sort((a, b) => a.receivedAt - b.receivedAt || a.seq - b.seq);
    const page = out.slice(0, limit);
    const last = page.at(-1);
    return {
      headers: page.map((r) => this.#header(r)),
      next:
        out.length > limit && last !== undefined ? { receivedAtMs: last.receivedAt, seq: last.seq } : null,
    };
  }

  async mailboxes(nowMs: number): Promise<MailboxInfo[]> {
    this.#check();
    const counts = new Map<string, { ready: number; delayed: number; inFlight: number; confirmed: number }>();
    for (const name of this.#d.mailboxes.keys())
      counts.set(name, { ready: 0, delayed: 0, inFlight: 0, confirmed: 0 });
    for (const rec of this.#d.messages.values()) {
      const c = counts.get(rec.mailbox);
      if (c === undefined) continue;
      if (rec.state === LEASED) c.inFlight++;
      else if (rec.state === CONFIRMED) c.confirmed++;
      else if (rec.due! <= nowMs) c.ready++;
      else c.delayed++;
    }
    return [...this.#d.mailboxes]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, mb]) => ({
        name,
        settings: mb.settings,
        createdAt: new Date(mb.createdAt),
        ...counts.get(name)!,
      }));
  }

  async stats(): Promise<StoreStats> {
    this.#check();
    let queued = 0;
    let leased = 0;
    let confirmed = 0;
    for (const rec of this.#d.messages.values()) {
      if (rec.state === QUEUED) queued++;
      else if (rec.state === LEASED) leased++;
      else confirmed++;
    }
    const blobs = await this.blobs.stats();
    return {
      messages: this.#d.messages.size,
      queued,
      leased,
      confirmed,
      mailboxes: this.#d.mailboxes.size,
      blobs: blobs.count,
      blobBytes: blobs.bytes,
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
