/**
 * The embedded SQLite store (better-sqlite3, WAL). One process owns the database
 * (`locking_mode=EXCLUSIVE`); every batch of the broker's group commit is one transaction,
 * run synchronously on prepared statements, so nothing else can interleave with it.
 *
 * Durability: with `synchronous: 'full'` (default) a commit fsyncs the WAL before `apply`
 * returns, so a send or ack that resolved survives `kill -9` and power loss. `'normal'` skips
 * that fsync (the WAL is synced at checkpoints): still safe against a killed process, but a
 * power cut can lose the last commits. Each open also starts a new fencing epoch (token =
 * epoch * 2^32 + counter), committed before any lease is granted, so tokens keep growing across
 * restarts without a write per lease.
 *
 * Indexes: a partial index (mailbox, due, seq) over queued rows makes "the oldest due message
 * of a mailbox" one O(log n) seek; partial indexes over leased rows (by leasedUntil) and
 * confirmed rows (by expiresAt) make the sweeps seeks too.
 */
// Type-only: the native module loads in `open`, so importing the package (e.g. for the HTTP
// client) never loads better-sqlite3.
import type Database from 'better-sqlite3';
import { MailboxClosedError, MailboxStoreError, MailboxStoreLockedError } from './errors.js';
import type { Message, MessageHeader } from './message.js';
import type { MessageRow } from './message-row.js';
import { checkRowLease, headerOfRow } from './message-row.js';
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
  MailboxInfo,
  MailboxSettings,
  MessageStore,
  StoreOp,
  StoreResult,
  StoreStats,
} from './store.js';
import { afterAttempt, newMessage } from './store.js';

export interface SqliteStoreOptions {
  /** 'full' (default): fsync before a send or ack resolves. 'normal': safe against process crashes only. */
  readonly synchronous?: 'full' | 'normal';
  /** How long to wait for another process's lock at open (default 2000 ms). */
  readonly busyTimeoutMs?: number;
  /** SQLite page cache in KiB (default 32768). */
  readonly cacheKiB?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailboxes (
  name TEXT PRIMARY KEY, max_deliveries INTEGER NOT NULL, retry_delay_ms INTEGER NOT NULL,
  retention_ms INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, refs INTEGER NOT NULL, data NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_zero ON blobs(key) WHERE refs <= 0;
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY, mid TEXT NOT NULL UNIQUE, mailbox TEXT NOT NULL, sender TEXT NOT NULL,
  receiver TEXT NOT NULL, client_time INTEGER NOT NULL, received_at INTEGER NOT NULL, delay_ms INTEGER NOT NULL,
  state INTEGER NOT NULL, status INTEGER NOT NULL, due INTEGER, delivery_count INTEGER NOT NULL DEFAULT 0,
  lid TEXT, fence INTEGER, leased_until INTEGER, fetch_time INTEGER, consumer TEXT,
  blob TEXT NOT NULL, body_bytes INTEGER NOT NULL, expires_at INTEGER, history TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS messages_ready ON messages(mailbox, due, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS messages_leased ON messages(leased_until) WHERE state = 1;
CREATE INDEX IF NOT EXISTS messages_expiring ON messages(expires_at) WHERE state = 2;
DROP INDEX IF EXISTS messages_pending;
`;

const COLS = `m.seq, m.mid, m.mailbox, m.sender, m.receiver, m.client_time, m.received_at, m.delay_ms, m.state,
  m.status, m.due, m.delivery_count, m.lid, m.fence, m.leased_until, m.fetch_time, m.consumer, m.blob,
  m.body_bytes, m.history`;

interface Row extends MessageRow {
  /** A body stored by a send is TEXT (its canonical encoding is ASCII); a raw BlobStore.put of bytes is a BLOB. */
  data?: string | Buffer | null;
}

const FENCE_SPAN = 2 ** 32;

function message(r: Row): Message {
  const data = r.data;
  return {
    ...headerOfRow(r),
    body: decodeBody(typeof data === 'string' ? data : (data?.toString('utf8') ?? '')),
  };
}

type Statement = Database.Statement<unknown[], unknown>;

interface StatementRunner {
  run<T>(fn: (st: Statements) => T): T;
  transaction<T>(fn: (st: Statements) => T): T;
}

class SqliteBlobStore implements BlobStore {
  readonly #s: StatementRunner;
  constructor(runner: StatementRunner) {
    this.#s = runner;
  }
  async put(key: string, data: Uint8Array | string): Promise<void> {
    // Strings stay TEXT (no Buffer copy going in or coming out on the hot path); bytes are a BLOB.
    this.#s.run((st) => st.upsertBlob.run(key, typeof data === 'string' ? data : Buffer.from(data)));
  }
  async get(key: string): Promise<Buffer | null> {
    const data = this.#s.run((st) => (st.getBlob.get(key) as { data: string | Buffer } | undefined)?.data);
    if (data === undefined) return null;
    return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  }
  async refCount(key: string): Promise<number | null> {
    return this.#s.run((st) => (st.refCount.get(key) as { refs: number } | undefined)?.refs ?? null);
  }
  async updateRefCounts(deltas: ReadonlyMap<string, number>): Promise<void> {
    this.#s.transaction((st) => {
      for (const [key, delta] of deltas) st.addRef.run(delta, key);
    });
  }
  async collect(limit: number): Promise<number> {
    return this.#s.run((st) => st.collect.run(limit).changes);
  }
  async stats(): Promise<{ count: number; bytes: number }> {
    return this.#s.run((st) => st.blobStats.get() as { count: number; bytes: number });
  }
}

/** The statements, prepared once. */
class Statements {
  readonly insertMsg: Statement;
  readonly upsertBlob: Statement;
  readonly getBlob: Statement;
  readonly refCount: Statement;
  readonly addRef: Statement;
  readonly collect: Statement;
  readonly blobStats: Statement;
  readonly byMid: Statement;
  readonly claimSelect: Statement;
  readonly claimUpdate: Statement;
  readonly nextDue: Statement;
  readonly leaseOf: Statement;
  readonly confirm: Statement;
  readonly confirmLease: Statement;
  readonly retry: Statement;
  readonly extend: Statement;
  readonly expired: Statement;
  readonly expiring: Statement;
  readonly deleteMsg: Statement;
  readonly upsertMailbox: Statement;
  readonly insertMailbox: Statement;
  readonly headers: Statement;
  readonly counts: Statement;
  readonly totals: Statement;
  readonly redrive: Statement;
  readonly queuedOf: Statement;

  constructor(db: Database.Database) {
    this.insertMsg = db.prepare(
      `INSERT INTO messages (mid, mailbox, sender, receiver, client_time, received_at, delay_ms, state, status, due, blob, body_bytes)
       VALUES (?, ?, ?, ?, ?, ?, ?, 0, 8, ?, ?, ?) ON CONFLICT(mid) DO NOTHING`,
    );
    this.upsertBlob = db.prepare(
      'INSERT INTO blobs (key, refs, data) VALUES (?, 1, ?) ON CONFLICT(key) DO UPDATE SET refs = refs + 1',
    );
    this.getBlob = db.prepare('SELECT data FROM blobs WHERE key = ?');
    this.refCount = db.prepare('SELECT refs FROM blobs WHERE key = ?');
    this.addRef = db.prepare('UPDATE blobs SET refs = refs + ? WHERE key = ?');
    this.collect = db.prepare(
      'DELETE FROM blobs WHERE key IN (SELECT key FROM blobs WHERE refs <= 0 LIMIT ?)',
    );
    this.blobStats = db.prepare(
      'SELECT count(*) AS count, coalesce(sum(length(CAST(data AS BLOB))), 0) AS bytes FROM blobs',
    );
    this.byMid = db.prepare(
      `SELECT ${COLS}, b.data FROM messages m LEFT JOIN blobs b ON b.key = m.blob WHERE m.mid = ?`,
    );
    this.claimSelect = db.prepare(
      `SELECT ${COLS}, b.data FROM messages m LEFT JOIN blobs b ON b.key = m.blob
       WHERE m.mailbox = ? AND m.state = 0 AND m.due <= ? ORDER BY m.due, m.seq LIMIT ?`,
    );
    this.claimUpdate = db.prepare(
      `UPDATE messages SET state = 1, due = NULL, delivery_count = ?, lid = ?, fence = ?, leased_until = ?,
       fetch_time = ?, consumer = ? WHERE seq = ?`,
    );
    this.nextDue = db.prepare(
      'SELECT due FROM messages WHERE mailbox = ? AND state = 0 ORDER BY due, seq LIMIT 1',
    );
    this.leaseOf = db.prepare(`SELECT ${COLS} FROM messages m WHERE m.mid = ?`);
    this.confirm = db.prepare(
      `UPDATE messages SET state = 2, status = 1, leased_until = NULL, expires_at = ?, history = CASE WHEN length(history) < ${MAX_HISTORY_CHARS} THEN history || ? ELSE history END
       WHERE seq = ?`,
    );
    // Confirm in one statement: the lease check, the retention of the mailbox and the attempt
    // record (same JSON as formatAttempt) all in SQL. Zero changes means the lease is not valid.
    this.confirmLease = db.prepare(
      `UPDATE messages SET state = 2, status = 1, leased_until = NULL,
       expires_at = @now + (SELECT retention_ms FROM mailboxes WHERE name = messages.mailbox),
       history = CASE WHEN length(history) < ${MAX_HISTORY_CHARS} THEN history || json_object('n', delivery_count, 'c', coalesce(consumer, ''), 'f', fetch_time, 'e', @now, 'o', 1) || char(10) ELSE history END
       WHERE mid = @mid AND lid = @lid AND state = 1 AND leased_until > @now`,
    );
    this.retry = db.prepare(
      `UPDATE messages SET state = 0, status = ?, mailbox = ?, due = ?, leased_until = NULL, history = CASE WHEN length(history) < ${MAX_HISTORY_CHARS} THEN history || ? ELSE history END
       WHERE seq = ?`,
    );
    this.extend = db.prepare('UPDATE messages SET leased_until = ? WHERE seq = ?');
    this.expired = db.prepare(
      `SELECT ${COLS} FROM messages m WHERE m.state = 1 AND m.leased_until <= ? ORDER BY m.leased_until, m.seq LIMIT ?`,
    );
    this.expiring = db.prepare(
      'SELECT seq, blob FROM messages WHERE state = 2 AND expires_at <= ? ORDER BY expires_at LIMIT ?',
    );
    this.deleteMsg = db.prepare('DELETE FROM messages WHERE seq = ?');
    this.upsertMailbox = db.prepare(
      `INSERT INTO mailboxes (name, max_deliveries, retry_delay_ms, retention_ms, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET max_deliveries = excluded.max_deliveries,
       retry_delay_ms = excluded.retry_delay_ms, retention_ms = excluded.retention_ms`,
    );
    this.insertMailbox = db.prepare(
      `INSERT INTO mailboxes (name, max_deliveries, retry_delay_ms, retention_ms, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(name) DO NOTHING`,
    );
    // No index of its own (it would cost every send, claim and ack): the queued rows of the
    // mailbox come from messages_ready, the leased ones from messages_leased.
    this.headers = db.prepare(
      `SELECT * FROM (SELECT ${COLS} FROM messages m WHERE m.mailbox = @mailbox AND m.state = 0 AND m.received_at > @after
       UNION ALL SELECT ${COLS} FROM messages m WHERE m.state = 1 AND m.mailbox = @mailbox AND m.received_at > @after)
       ORDER BY received_at, seq LIMIT @limit`,
    );
    this.counts = db.prepare(
      `SELECT mailbox, sum(state = 0 AND due <= ?) AS ready, sum(state = 0 AND due > ?) AS delayed,
       sum(state = 1) AS inFlight, sum(state = 2) AS confirmed FROM messages GROUP BY mailbox`,
    );
    this.redrive = db.prepare(
      `UPDATE messages SET mailbox = @target, status = 8, delivery_count = 0, due = @now
       WHERE seq IN (SELECT seq FROM messages WHERE mailbox = @mailbox AND state = 0 ORDER BY due, seq LIMIT @limit)`,
    );
    this.queuedOf = db.prepare(
      'SELECT seq, blob FROM messages WHERE mailbox = ? AND state = 0 ORDER BY due, seq LIMIT ?',
    );
    this.totals = db.prepare(
      `SELECT count(*) AS messages, coalesce(sum(state = 0), 0) AS queued, coalesce(sum(state = 1), 0) AS leased,
       coalesce(sum(state = 2), 0) AS confirmed FROM messages`,
    );
  }
}

/** A `MessageStore` (and its `BlobStore`) in one SQLite file. */
export class SqliteStore implements MessageStore {
  readonly blobs: BlobStore;
  readonly path: string;
  readonly #db: Database.Database;
  readonly #st: Statements;
  readonly #ids = new RandomIds();
  readonly #mailboxes = new Map<string, { settings: MailboxSettings; createdAt: number }>();
  readonly #epoch: number;
  #fenceCounter = 0;
  #closed = false;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#st = new Statements(db);
    this.blobs = new SqliteBlobStore({
      run: (fn) => this.#run(fn),
      transaction: (fn) => this.#run((st) => this.#db.transaction(() => fn(st))()),
    });
    const rows = db.prepare('SELECT * FROM mailboxes').all() as {
      name: string;
      max_deliveries: number;
      retry_delay_ms: number;
      retention_ms: number;
      created_at: number;
    }[];
    for (const r of rows)
      this.#mailboxes.set(r.name, {
        settings: {
          maxDeliveries: r.max_deliveries,
          retryDelayMs: r.retry_delay_ms,
          retentionMs: r.retention_ms,
        },
        createdAt: r.created_at,
      });
    // A new fencing epoch per open, committed before any lease is granted: every token handed
    // out by this process is greater than every token of any earlier process.
    const epoch = db
      .prepare(
        `INSERT INTO meta (k, v) VALUES ('fence_epoch', 1) ON CONFLICT(k) DO UPDATE SET v = v + 1 RETURNING v`,
      )
      .get() as { v: number };
    this.#epoch = epoch.v;
  }

  /** Opens (creating if needed) the database at `path` (':memory:' for a private in-memory one). */
  static async open(path: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    let db: Database.Database | undefined;
    try {
      const { default: Sqlite } = await import('better-sqlite3');
      db = new Sqlite(path, { timeout: options.busyTimeoutMs ?? 2000 });
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${(options.synchronous ?? 'full') === 'full' ? 'FULL' : 'NORMAL'}`);
      db.pragma(`cache_size = -${options.cacheKiB ?? 32768}`);
      db.pragma('temp_store = MEMORY');
      db.exec(SCHEMA);
      return new SqliteStore(path, db);
    } catch (error) {
      db?.close();
      const code = (error as { code?: unknown }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
        throw new MailboxStoreLockedError(`the database ${path} is owned by another process`, {
          cause: error,
        });
      throw new MailboxStoreError(`cannot open the database ${path}`, { cause: error });
    }
  }

  /** Runs `fn` on the statements; maps failures to typed errors. */
  #run<T>(fn: (st: Statements) => T): T {
    if (this.#closed) throw new MailboxClosedError('the SQLite store is closed');
    try {
      return fn(this.#st);
    } catch (error) {
      throw new MailboxStoreError('the SQLite store failed', { cause: error });
    }
  }

  async apply(ops: readonly StoreOp[], nowMs: number): Promise<StoreResult[]> {
    if (this.#closed) throw new MailboxClosedError('the SQLite store is closed');
    // Mailbox settings are cached; undo cache changes if the transaction rolls back.
    const added: string[] = [];
    try {
      return this.#db.transaction(() => ops.map((op) => this.#applyOne(op, nowMs, added)))();
    } catch (error) {
      for (const name of added) this.#mailboxes.delete(name);
      throw new MailboxStoreError('the SQLite store failed to commit a batch', { cause: error });
    }
  }

  #ensureMailbox(name: string, settings: MailboxSettings, now: number, added: string[]): void {
    if (this.#mailboxes.has(name)) return;
    this.#st.insertMailbox.run(
      name,
      settings.maxDeliveries,
      settings.retryDelayMs,
      settings.retentionMs,
      now,
    );
    this.#mailboxes.set(name, { settings, createdAt: now });
    added.push(name);
  }

  #applyOne(op: StoreOp, now: number, added: string[]): StoreResult {
    const st = this.#st;
    switch (op.kind) {
      case 'send': {
        const m = op.message;
        this.#ensureMailbox(m.receiver, op.defaults, now, added);
        const due = now + m.delayMs;
        const info = st.insertMsg.run(
          m.mid,
          m.receiver,
          m.sender,
          m.receiver,
          m.clientTimeMs,
          now,
          m.delayMs,
          due,
          m.blobKey,
          m.bodyBytes,
        );
        if (info.changes === 0) {
          const row = st.byMid.get(m.mid) as Row;
          return { kind: 'send', message: message(row), created: false };
        }
        st.upsertBlob.run(m.blobKey, m.body);
        return { kind: 'send', created: true, message: newMessage(m, now) };
      }
      case 'claim': {
        const rows = st.claimSelect.all(op.mailbox, now, op.max) as Row[];
        const messages: Message[] = [];
        for (const r of rows) {
          r.state = 1;
          r.due = null;
          r.delivery_count++;
          r.lid = this.#ids.next();
          r.fence = this.#nextFence();
          r.leased_until = now + op.leaseMs;
          r.fetch_time = now;
          r.consumer = op.consumer;
          st.claimUpdate.run(r.delivery_count, r.lid, r.fence, r.leased_until, now, op.consumer, r.seq);
          messages.push(message(r));
        }
        // Only an empty claim needs to know when to look again (the long poll sleeps until then).
        if (messages.length > 0) return { kind: 'claim', messages, nextDueMs: null };
        const next = st.nextDue.get(op.mailbox) as { due: number } | undefined;
        return { kind: 'claim', messages, nextDueMs: next?.due ?? null };
      }
      case 'ack': {
        if (op.status === 1 && st.confirmLease.run({ now, mid: op.mid, lid: op.lid }).changes === 1)
          return { kind: 'ack', outcome: 'ok', wake: null };
        const r = st.leaseOf.get(op.mid) as Row | undefined;
        const outcome = checkRowLease(r, op.lid, now);
        if (outcome !== 'ok') return { kind: 'ack', outcome, wake: null };
        const mailbox = this.#endAttempt(r!, now, op.status, added);
        return { kind: 'ack', outcome, wake: op.status === 1 ? null : mailbox };
      }
      case 'extend': {
        const r = st.leaseOf.get(op.mid) as Row | undefined;
        const outcome = checkRowLease(r, op.lid, now);
        if (outcome !== 'ok') return { kind: 'extend', outcome, message: null };
        st.extend.run(now + op.leaseMs, r!.seq);
        return { kind: 'extend', outcome, message: message(st.byMid.get(op.mid) as Row) };
      }
      case 'reenqueue': {
        const rows = st.expired.all(Math.min(now, op.asOfMs ?? now), op.limit) as Row[];
        const wake = new Set<string>();
        for (const r of rows) wake.add(this.#endAttempt(r, r.leased_until!, 4, added));
        return { kind: 'reenqueue', count: rows.length, wake: [...wake] };
      }
      case 'expire': {
        const rows = st.expiring.all(now, op.limit) as { seq: number; blob: string }[];
        for (const r of rows) {
          st.deleteMsg.run(r.seq);
          st.addRef.run(-1, r.blob);
        }
        return { kind: 'expire', count: rows.length };
      }
      case 'configure': {
        const s = op.settings;
        const prev = this.#mailboxes.get(op.name);
        st.upsertMailbox.run(op.name, s.maxDeliveries, s.retryDelayMs, s.retentionMs, now);
        this.#mailboxes.set(op.name, { settings: s, createdAt: prev?.createdAt ?? now });
        if (prev === undefined) added.push(op.name);
        return { kind: 'configure' };
      }
      case 'redrive': {
        this.#ensureMailbox(op.target, op.defaults, now, added);
        const { changes } = st.redrive.run({ target: op.target, now, mailbox: op.mailbox, limit: op.limit });
        return { kind: 'redrive', count: changes, target: op.target };
      }
      case 'purge': {
        const rows = st.queuedOf.all(op.mailbox, op.limit) as { seq: number; blob: string }[];
        for (const r of rows) {
          st.deleteMsg.run(r.seq);
          st.addRef.run(-1, r.blob);
        }
        return { kind: 'purge', count: rows.length };
      }
    }
  }

  #nextFence(): number {
    // Within one epoch the counter never wraps in practice (2^32 leases per process run);
    // if it did, tokens would still grow, only into the next epoch's range.
    return this.#epoch * FENCE_SPAN + ++this.#fenceCounter;
  }

  /** Ends the lease of row `r` as `outcome` at `endedAt`; returns the mailbox it is in afterwards. */
  #endAttempt(r: Row, endedAt: number, outcome: 1 | 2 | 4, added: string[]): string {
    const line = formatAttempt(r.delivery_count, r.consumer ?? '', r.fetch_time ?? endedAt, endedAt, outcome);
    const mb = this.#mailboxes.get(r.mailbox);
    if (mb === undefined) throw new Error(`mailbox ${r.mailbox} has no settings`);
    if (outcome === 1) {
      this.#st.confirm.run(endedAt + mb.settings.retentionMs, line, r.seq);
      return r.mailbox;
    }
    const next = afterAttempt(mb.settings, r.mailbox, r.delivery_count, endedAt);
    if (next.dead) this.#ensureMailbox(next.mailbox, mb.settings, endedAt, added);
    this.#st.retry.run(next.dead ? MessageStatus.Dead : outcome, next.mailbox, next.dueMs, line, r.seq);
    return next.mailbox;
  }

  async get(mid: string): Promise<Message | null> {
    return this.#run((st) => {
      const r = st.byMid.get(mid) as Row | undefined;
      return r === undefined ? null : { ...message(r), attempts: parseAttempts(r.history) };
    });
  }

  async headers(mailbox: string, afterMs: number, limit: number): Promise<MessageHeader[]> {
    return this.#run((st) => (st.headers.all({ mailbox, after: afterMs, limit }) as Row[]).map(headerOfRow));
  }

  async mailboxes(nowMs: number): Promise<MailboxInfo[]> {
    return this.#run((st) => {
      const counts = new Map<
        string,
        { ready: number; delayed: number; inFlight: number; confirmed: number }
      >();
      for (const c of st.counts.all(nowMs, nowMs) as {
        mailbox: string;
        ready: number;
        delayed: number;
        inFlight: number;
        confirmed: number;
      }[])
        counts.set(c.mailbox, {
          ready: c.ready,
          delayed: c.delayed,
          inFlight: c.inFlight,
          confirmed: c.confirmed,
        });
      return [...this.#mailboxes]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([name, mb]) => ({
          name,
          settings: mb.settings,
          createdAt: new Date(mb.createdAt),
          ...(counts.get(name) ?? { ready: 0, delayed: 0, inFlight: 0, confirmed: 0 }),
        }));
    });
  }

  async stats(): Promise<StoreStats> {
    const totals = this.#run(
      (st) => st.totals.get() as { messages: number; queued: number; leased: number; confirmed: number },
    );
    const blobs = await this.blobs.stats();
    return { ...totals, mailboxes: this.#mailboxes.size, blobs: blobs.count, blobBytes: blobs.bytes };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
