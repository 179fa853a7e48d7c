/**
 * The embedded SQLite store (better-sqlite3, WAL). One process owns the database (it holds the
 * exclusive lock of `<path>-lock` while open); every batch of the broker's group commit is one
 * transaction, run synchronously on prepared statements, so nothing else can interleave with
 * it. WAL checkpoints run on a worker thread's connection (sqlite-checkpointer.ts), never in a
 * commit, unless `checkpoint: 'commit'`.
 *
 * Durability: with `synchronous: 'full'` (default) `apply` resolves only after the WAL holding
 * its transaction was fsynced, so a send or ack that resolved survives `kill -9` and power loss.
 * The fsync does not block the event loop: SQLite runs with `synchronous=NORMAL` (the WAL is
 * written at commit and synced at checkpoints, the database file after them — exactly FULL's
 * checkpoint behaviour) and the store itself calls `fdatasync` on the WAL file on the libuv
 * thread pool after each commit. Commits made while one fdatasync runs are covered by the next
 * one, so batches pipeline: the broker applies batch n+1 (its statements and the WAL write)
 * while batch n's flush is in progress, and results are released strictly in commit order.
 * A failed fdatasync poisons the store (every later call fails): after a failed flush the page
 * cache can no longer be trusted to reach the disk. `'normal'` skips the flush: still safe
 * against a killed process, but a power cut can lose the last commits. Each open also starts a new fencing epoch (token =
 * epoch * 2^32 + counter), committed before any lease is granted, so tokens keep growing across
 * restarts without a write per lease.
 *
 * Indexes: a partial index (mailbox, due, seq) over queued rows makes "the oldest due message
 * of a mailbox" one O(log n) seek; partial indexes over leased rows (by leasedUntil) and
 * confirmed rows (by expiresAt) make the sweeps seeks too.
 *
 * Blob keys indexed in bulk (schema 2): a blob key is a content hash, so a B-tree index on it
 * puts every insert on a random page, and each commit writes every page it touched to the WAL —
 * with 100 sends per commit and 50 000 rows that index alone was ~5 of the ~6 KiB of WAL per send
 * and half a send's cost. (A mid begins with its clientTime, so its index grows at its end and
 * costs little.) So `blob_keys` (key → id) covers the blobs up to a watermark kept in `meta`;
 * keys of newer blobs are in an in-memory map, rebuilt at open from the rows after the watermark
 * (blob ids are AUTOINCREMENT, so they only grow). When the map holds `mergeKeysAt` keys they go
 * into the table in one sorted pass (each index page written once per merge instead of once per
 * insert). A lookup asks the map, then the table. A database of schema 1 (blob key UNIQUE in
 * `blobs`, bodies joined by key) is migrated at open, in one transaction.
 */
// Type-only: the native module loads in `open`, so importing the package (e.g. for the HTTP
// client) never loads better-sqlite3.
import type Database from 'better-sqlite3';
import { closeSync, fdatasync, openSync } from 'node:fs';
import {
  MailboxClosedError,
  MailboxError,
  MailboxInvalidArgumentError,
  MailboxStoreError,
  MailboxStoreLockedError,
} from './errors.js';
import type { Message } from './message.js';
import type { MessageRow } from './message-row.js';
import { checkRowLease, headerOfRow, leasedMessage } from './message-row.js';
import type { ClaimColumns } from './message-row.js';
import {
  MAX_HISTORY_CHARS,
  MessageStatus,
  type MessageStatusValue,
  RandomIds,
  decodeBody,
  formatAttempt,
  parseAttempts,
} from './message.js';
import type {
  BlobStore,
  HeadersPosition,
  NewMessage,
  HeadersRows,
  MailboxInfo,
  MailboxSettings,
  MessageStore,
  StoreOp,
  StoreResult,
  StoreStats,
} from './store.js';
import { afterAttempt, newMessage } from './store.js';
import { Checkpointer } from './sqlite-checkpointer.js';
import type { CheckpointerOptions, CheckpointerStats } from './sqlite-checkpointer.js';

export interface SqliteStoreOptions {
  /** 'full' (default): fsync before a send or ack resolves. 'normal': safe against process crashes only. */
  readonly synchronous?: 'full' | 'normal';
  /** How long to wait for another process's lock at open (default 2000 ms). */
  readonly busyTimeoutMs?: number;
  /** SQLite page cache in KiB (default 32768). */
  readonly cacheKiB?: number;
  /**
   * `Broker.open` only: run the store on a worker thread of its own (`SqliteThreadStore`), so
   * statements and checkpoints never run on the broker's event loop (default false). It costs
   * ~20 µs of CPU a message in copies and thread hand-offs and gives up the staged commit
   * (leases at commit): on this 2-core machine the in-thread store is faster; a broker with
   * spare cores and heavy statements (large backlogs, big bodies) may gain from it.
   */
  readonly worker?: boolean;
  /**
   * Blob keys kept in memory before they are merged into their index in one sorted pass
   * (default 16 384; see the header). Larger: fewer, bigger merges and more memory
   * (~150 bytes a key). Tests set it small to exercise merges.
   */
  readonly mergeKeysAt?: number;
  /**
   * Where WAL checkpoints run (file databases): `'thread'` (default), PASSIVE checkpoints on a
   * worker thread's own connection, concurrent with the commits (see sqlite-checkpointer.ts);
   * `'commit'`, SQLite's automatic checkpoint inside the commit that fills ~1 000 pages, on the
   * event loop, with the database opened in `locking_mode=EXCLUSIVE` (the behaviour before).
   */
  readonly checkpoint?: 'thread' | 'commit';
  /** Tuning of the checkpoint thread (tests make the WAL restart early). */
  readonly checkpointer?: CheckpointerOptions;
}

const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailboxes (
  name TEXT PRIMARY KEY, max_deliveries INTEGER NOT NULL, retry_delay_ms INTEGER NOT NULL,
  retention_ms INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, refs INTEGER NOT NULL, data NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_unreferenced ON blobs(id) WHERE refs <= 0;
CREATE TABLE IF NOT EXISTS blob_keys (key TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY, mid TEXT NOT NULL UNIQUE, mailbox TEXT NOT NULL, sender TEXT NOT NULL,
  receiver TEXT NOT NULL, client_time INTEGER NOT NULL, received_at INTEGER NOT NULL, delay_ms INTEGER NOT NULL,
  state INTEGER NOT NULL, status INTEGER NOT NULL, due INTEGER, delivery_count INTEGER NOT NULL DEFAULT 0,
  lid TEXT, fence INTEGER, leased_until INTEGER, fetch_time INTEGER, consumer TEXT,
  blob TEXT NOT NULL, blob_id INTEGER NOT NULL, body_bytes INTEGER NOT NULL, expires_at INTEGER,
  history TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS messages_ready ON messages(mailbox, due, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS messages_leased ON messages(leased_until) WHERE state = 1;
CREATE INDEX IF NOT EXISTS messages_expiring ON messages(expires_at) WHERE state = 2;
`;

/** Schema 1 (blob key UNIQUE in `blobs`, no blob_id) to schema 2, inside the open's transaction. */
const MIGRATE_1_TO_2 = `
DROP INDEX IF EXISTS blobs_zero; DROP INDEX IF EXISTS messages_pending;
ALTER TABLE blobs RENAME TO blobs_v1;
${SCHEMA}
INSERT INTO blobs (id, key, refs, data) SELECT id, key, refs, data FROM blobs_v1;
INSERT INTO blob_keys (key, id) SELECT key, id FROM blobs_v1;
ALTER TABLE messages ADD COLUMN blob_id INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET blob_id = coalesce((SELECT id FROM blobs_v1 WHERE key = messages.blob), 0);
INSERT INTO meta (k, v) VALUES ('keys_upto', (SELECT coalesce(max(id), 0) FROM blobs_v1))
  ON CONFLICT(k) DO UPDATE SET v = excluded.v;
DROP TABLE blobs_v1;
`;

/** Keys kept in memory (per map) before they are merged into their index in one sorted pass. */
const DEFAULT_MERGE_AT = 16_384;
/**
 * Batches that may have committed and still wait for their flush (`concurrentBatches`). Their
 * statements run one batch at a time; a flush covers every commit made before it started, so
 * batches that commit while one runs share the next. Beyond two the broker starts one only when
 * the oldest flush is slow (broker.ts, PIPELINE_AFTER_MS): with two at most, at 1 000 msg/s a
 * send that came in while an ack's fdatasync was slow (p99.9 ~4 ms on this VM's disk, p50 0.23)
 * waited for it, and so did its push — most of the sends that took over 2 ms to arrive.
 */
const PIPELINED_BATCHES = 8;

const COLS = `m.seq, m.mid, m.mailbox, m.sender, m.receiver, m.client_time, m.received_at, m.delay_ms, m.state,
  m.status, m.due, m.delivery_count, m.lid, m.fence, m.leased_until, m.fetch_time, m.consumer, m.blob,
  m.blob_id, m.body_bytes, m.history`;

/** "Comes after the position (@at, @seq) in the (received_at, seq) order" (a `headers` page start). */
const AFTER_POSITION = '(m.received_at > @at OR (m.received_at = @at AND m.seq > @seq))';

interface Row extends MessageRow {
  blob_id: number;
  /** A body stored by a send is TEXT (its canonical encoding is ASCII); a raw BlobStore.put of bytes is a BLOB. */
  data?: string | Buffer | null;
}

const FENCE_SPAN = 2 ** 32;

/** Where a claim's row holds the fields `leasedMessage` reads (see ClaimRow). */
const CLAIM_AT: ClaimColumns = {
  mid: 1,
  mailbox: 2,
  sender: 3,
  receiver: 4,
  clientTime: 5,
  receivedAt: 6,
  delayMs: 7,
  status: 8,
  blobKey: 10,
  bodyBytes: 11,
};

/** A claim's row: seq, mid, mailbox, sender, receiver, client_time, received_at, delay_ms, status, delivery_count, blob, body_bytes, data. */
type ClaimRow = [
  number,
  string,
  string,
  string,
  string,
  number,
  number,
  number,
  MessageStatusValue,
  number,
  string,
  number,
  string | Buffer | null,
];

/**
 * fdatasync of the WAL file on the thread pool, coalesced: a flush asked for while one runs
 * waits for the next one (which starts after the running one ends, so it covers every write
 * made before it was asked for). At most two flushes exist at a time.
 */
class WalFlusher {
  readonly #fd: number;
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #failure: Error | undefined;

  constructor(fd: number) {
    this.#fd = fd;
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Resolves once every write made before this call is on disk. */
  flush(): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#running === undefined) return (this.#running = this.#start());
    return (this.#next ??= this.#running.then(
      () => {
        this.#next = undefined;
        return this.flush();
      },
      (error: unknown) => {
        this.#next = undefined;
        throw error;
      },
    ));
  }

  #start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      fdatasync(this.#fd, (error) => {
        this.#running = undefined;
        if (error === null) resolve();
        else {
          this.#failure = new MailboxStoreError('fdatasync of the SQLite WAL failed', { cause: error });
          reject(this.#failure);
        }
      });
    });
  }

  /** Resolves when the flushes in progress (if any) succeeded: nothing new to write. */
  settled(): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return this.#next ?? this.#running ?? Promise.resolve();
  }

  /** Waits for the flushes in progress (their failures are the callers'). */
  async idle(): Promise<void> {
    await Promise.allSettled([this.#running, this.#next]);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

function message(r: Row): Message {
  const data = r.data;
  return {
    ...headerOfRow(r),
    body: decodeBody(typeof data === 'string' ? data : (data?.toString('utf8') ?? '')),
  };
}

type Statement = Database.Statement<unknown[], unknown>;

/** The statements, prepared once. */
class Statements {
  readonly insertMsg: Statement;
  readonly maxSeq: Statement;
  readonly midExists: Statement;
  readonly insertBlob: Statement;
  readonly blobById: Statement;
  readonly addRefById: Statement;
  readonly unreferenced: Statement;
  readonly deleteBlob: Statement;
  readonly blobStats: Statement;
  readonly keyId: Statement;
  readonly insertKey: Statement;
  readonly deleteKey: Statement;
  readonly setMeta: Statement;
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
  readonly totalChanges: Statement;

  constructor(db: Database.Database) {
    this.totalChanges = db.prepare('SELECT total_changes()').pluck();
    // seq: null takes the next rowid (max + 1); a batch that leases its own sends at insert
    // gives every row of its the seq it reserved at its send (see HandOff). A row inserted
    // leased is the row a claim would have left (state 1, no due time, no history yet).
    this.insertMsg = db.prepare(
      `INSERT INTO messages (seq, mid, mailbox, sender, receiver, client_time, received_at, delay_ms, state, status, due,
       delivery_count, lid, fence, leased_until, fetch_time, consumer, blob, blob_id, body_bytes)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 8, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.maxSeq = db.prepare('SELECT max(seq) FROM messages').pluck();
    this.midExists = db.prepare('SELECT 1 FROM messages WHERE mid = ?').pluck();
    this.insertBlob = db.prepare('INSERT INTO blobs (key, refs, data) VALUES (?, 1, ?)');
    this.blobById = db.prepare('SELECT key, refs, data FROM blobs WHERE id = ?');
    this.addRefById = db.prepare('UPDATE blobs SET refs = refs + ? WHERE id = ?');
    this.unreferenced = db.prepare(
      'SELECT id, key FROM blobs WHERE refs <= 0 ORDER BY id LIMIT CAST(? AS INTEGER)',
    );
    this.deleteBlob = db.prepare('DELETE FROM blobs WHERE id = ?');
    this.blobStats = db.prepare(
      'SELECT count(*) AS count, coalesce(sum(length(CAST(data AS BLOB))), 0) AS bytes FROM blobs',
    );
    this.keyId = db.prepare('SELECT id FROM blob_keys WHERE key = ?').pluck();
    this.insertKey = db.prepare('INSERT OR REPLACE INTO blob_keys (key, id) VALUES (?, ?)');
    this.deleteKey = db.prepare('DELETE FROM blob_keys WHERE key = ?');
    this.setMeta = db.prepare(
      'INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v',
    );
    this.byMid = db.prepare(
      `SELECT ${COLS}, b.data FROM messages m LEFT JOIN blobs b ON b.id = m.blob_id WHERE m.mid = ?`,
    );
    // LIMIT takes a bound value through CAST: with a bare `LIMIT ?`, this build of SQLite
    // (STAT4 on) re-prepares the statement at every run — 5 µs of a 0.5 µs empty claim.
    // Only the columns a claim keeps (what it overwrites and the attempt record are not read),
    // as arrays: materialising rows was most of a claim's cost. Order: see CLAIM_COLUMNS.
    this.claimSelect = db
      .prepare(
        `SELECT m.seq, m.mid, m.mailbox, m.sender, m.receiver, m.client_time, m.received_at, m.delay_ms,
         m.status, m.delivery_count, m.blob, m.body_bytes, b.data FROM messages m LEFT JOIN blobs b ON b.id = m.blob_id
         WHERE m.mailbox = ? AND m.state = 0 AND m.due <= ? ORDER BY m.due, m.seq LIMIT CAST(? AS INTEGER)`,
      )
      .raw();
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
      `SELECT ${COLS} FROM messages m WHERE m.state = 1 AND m.leased_until <= ? ORDER BY m.leased_until, m.seq LIMIT CAST(? AS INTEGER)`,
    );
    this.expiring = db.prepare(
      'SELECT seq, blob_id FROM messages WHERE state = 2 AND expires_at <= ? ORDER BY expires_at LIMIT CAST(? AS INTEGER)',
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
      `SELECT * FROM (SELECT ${COLS} FROM messages m WHERE m.mailbox = @mailbox AND m.state = 0 AND ${AFTER_POSITION}
       UNION ALL SELECT ${COLS} FROM messages m WHERE m.state = 1 AND m.mailbox = @mailbox AND ${AFTER_POSITION})
       ORDER BY received_at, seq LIMIT CAST(@limit AS INTEGER)`,
    );
    this.counts = db.prepare(
      `SELECT mailbox, sum(state = 0 AND due <= ?) AS ready, sum(state = 0 AND due > ?) AS delayed,
       sum(state = 1) AS inFlight, sum(state = 2) AS confirmed FROM messages GROUP BY mailbox`,
    );
    this.redrive = db.prepare(
      `UPDATE messages SET mailbox = @target, status = 8, delivery_count = 0, due = @now
       WHERE seq IN (SELECT seq FROM messages WHERE mailbox = @mailbox AND state = 0 ORDER BY due, seq LIMIT CAST(@limit AS INTEGER))`,
    );
    this.queuedOf = db.prepare(
      'SELECT seq, blob_id FROM messages WHERE mailbox = ? AND state = 0 ORDER BY due, seq LIMIT CAST(? AS INTEGER)',
    );
    this.totals = db.prepare(
      `SELECT count(*) AS messages, coalesce(sum(state = 0), 0) AS queued, coalesce(sum(state = 1), 0) AS leased,
       coalesce(sum(state = 2), 0) AS confirmed FROM messages`,
    );
  }
}

/**
 * The blob key index, kept in two parts: a table covering the blobs up to `upto`, and an
 * in-memory map of the keys of the blobs after it (see the header). Changes to the map made inside a
 * transaction are journaled, so a rollback undoes them.
 */
class KeyIndex {
  readonly recent = new Map<string, number>();
  upto: number;
  readonly #lookup: Statement;
  readonly #insert: Statement;
  readonly #delete: Statement;
  readonly #metaKey: string;
  readonly #setMeta: Statement;
  /** Undo steps of the running transaction (null outside one). */
  undo: (() => void)[] | null = null;

  constructor(
    metaKey: string,
    upto: number,
    statements: { lookup: Statement; insert: Statement; delete: Statement; setMeta: Statement },
  ) {
    this.#metaKey = metaKey;
    this.upto = upto;
    this.#lookup = statements.lookup;
    this.#insert = statements.insert;
    this.#delete = statements.delete;
    this.#setMeta = statements.setMeta;
  }

  get(key: string): number | undefined {
    return this.recent.get(key) ?? (this.#lookup.get(key) as number | undefined);
  }

  add(key: string, id: number): void {
    this.recent.set(key, id);
    this.undo?.push(() => this.recent.delete(key));
  }

  /** Forgets `key` (its row `id` is being deleted). */
  remove(key: string, id: number): void {
    if (this.recent.get(key) === id) {
      this.recent.delete(key);
      this.undo?.push(() => this.recent.set(key, id));
    } else this.#delete.run(key);
  }

  /** Writes the map into the table in key order and moves the watermark to `upto`; call in a transaction. */
  merge(upto: number): void {
    const keys = [...this.recent.keys()].sort();
    for (const key of keys) this.#insert.run(key, this.recent.get(key));
    this.#setMeta.run(this.#metaKey, upto);
  }

  /** After the merge's transaction committed. */
  merged(upto: number): void {
    this.recent.clear();
    this.upto = upto;
  }
}

class SqliteBlobStore implements BlobStore {
  readonly #internals: StoreInternals;
  constructor(internals: StoreInternals) {
    this.#internals = internals;
  }
  async put(key: string, data: Uint8Array | string): Promise<void> {
    // Strings stay TEXT (no Buffer copy going in or coming out on the hot path); bytes are a BLOB.
    this.#internals.write(() =>
      this.#internals.putBlob(key, typeof data === 'string' ? data : Buffer.from(data)),
    );
    await this.#internals.flushed();
  }
  async get(key: string): Promise<Buffer | null> {
    const row = this.#internals.read((st, keys) => {
      const id = keys.get(key);
      return id === undefined ? undefined : (st.blobById.get(id) as { data: string | Buffer } | undefined);
    });
    if (row === undefined) return null;
    return typeof row.data === 'string' ? Buffer.from(row.data, 'utf8') : row.data;
  }
  async refCount(key: string): Promise<number | null> {
    return this.#internals.read((st, keys) => {
      const id = keys.get(key);
      if (id === undefined) return null;
      return (st.blobById.get(id) as { refs: number } | undefined)?.refs ?? null;
    });
  }
  async updateRefCounts(deltas: ReadonlyMap<string, number>): Promise<void> {
    this.#internals.write((st, keys) => {
      for (const [key, delta] of deltas) {
        const id = keys.get(key);
        if (id !== undefined) st.addRefById.run(delta, id);
      }
    });
    await this.#internals.flushed();
  }
  async collect(limit: number): Promise<number> {
    const n = this.#internals.write((st, keys) => {
      const rows = st.unreferenced.all(limit) as { id: number; key: string }[];
      for (const r of rows) {
        st.deleteBlob.run(r.id);
        keys.remove(r.key, r.id);
      }
      return rows.length;
    });
    // The sweeper collects every second: a pass that deleted nothing has nothing to flush.
    if (n > 0) await this.#internals.flushed();
    return n;
  }
  async stats(): Promise<{ count: number; bytes: number }> {
    return this.#internals.read((st) => st.blobStats.get() as { count: number; bytes: number });
  }
}

/** What the blob store needs of its message store. */
interface StoreInternals {
  read<T>(fn: (st: Statements, keys: KeyIndex) => T): T;
  /** Runs `fn` in a transaction (the key map journaled). */
  write<T>(fn: (st: Statements, keys: KeyIndex) => T): T;
  /** Resolves when what was written so far is flushed (at once without a flusher). */
  flushed(): Promise<void>;
  /** Stores a new blob or counts one more reference to it. */
  putBlob(key: string, data: string | Buffer): number;
}

/** A send held back from its insert until a claim of its batch takes it (or the batch ends). */
interface Held {
  readonly m: NewMessage;
  /** The seq its row would have had, reserved at its send. */
  readonly seq: number;
  readonly blobId: number;
}

/** The state of a batch whose claims take its own sends (`SqliteStore.#applyAll`). */
interface HandOff {
  /** The position of each mailbox's last claim in the batch: a send before it may be held. */
  readonly lastClaim: ReadonlyMap<string, number>;
  /** The position of the op being applied. */
  index: number;
  /** The seq of the batch's next insert (each send reserves one, held or not, in send order). */
  next: number;
  /** Held sends per mailbox in send order; `head`: the first no claim took yet. */
  readonly held: Map<string, { readonly items: Held[]; head: number }>;
  /** The held sends by mid. */
  readonly heldMids: Map<string, NewMessage>;
  /** False once the held sends were inserted early (an ack or extend named one): the batch holds no more. */
  on: boolean;
}

/**
 * The last claim of each mailbox in `ops` when a due send comes before a claim of its mailbox;
 * undefined otherwise, or when an op could find the queued rows of a mailbox otherwise than a
 * claim does (purge and redrive take queued rows, held ones included; expire deletes rows,
 * which may free the seq a held send reserved): then nothing is held.
 */
function handOffPlan(ops: readonly StoreOp[]): Map<string, number> | undefined {
  let lastClaim: Map<string, number> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'claim') (lastClaim ??= new Map()).set(op.mailbox, i);
    else if (op.kind === 'purge' || op.kind === 'redrive' || op.kind === 'expire') return undefined;
  }
  if (lastClaim === undefined) return undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'send' && op.message.delayMs <= 0 && (lastClaim.get(op.message.receiver) ?? -1) > i)
      return lastClaim;
  }
  return undefined;
}

/** The message a claim leased from a held send: what its row would have given (body decoded anew, as from the row). */
function heldMessage(m: NewMessage, now: number, lid: string, fence: number, leasedUntil: number): Message {
  const row: ClaimRow = [
    0,
    m.mid,
    m.receiver,
    m.sender,
    m.receiver,
    m.clientTimeMs,
    now,
    m.delayMs,
    MessageStatus.NotDelivered,
    0,
    m.blobKey,
    m.bodyBytes,
    null,
  ];
  return leasedMessage(row, CLAIM_AT, 1, lid, fence, leasedUntil, now, decodeBody(m.body));
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
  /** Blob key → blob id (see the header). */
  readonly #keys: KeyIndex;
  /** The largest blob id so far (AUTOINCREMENT: ids only grow). */
  #maxBlobId = 0;
  /** The WAL flusher when `synchronous: 'full'` on a file database. */
  readonly #flusher: WalFlusher | undefined;
  readonly #mergeAt: number;
  /** The connection holding `<path>-lock` exclusively while the store is open (file databases). */
  readonly #owner: Database.Database | undefined;
  /** The WAL checkpoint thread (`checkpoint: 'thread'`, file databases in WAL mode). */
  readonly #checkpointer: Checkpointer | undefined;
  /**
   * Runs its argument in one transaction. Made once: better-sqlite3 builds a wrapper (and its
   * variants) on every `db.transaction()` call, a few µs that a one-op batch felt.
   */
  readonly #inTransaction: (fn: () => unknown) => unknown;
  #fenceCounter = 0;
  #closed = false;
  /**
   * Batches whose transaction committed while an earlier one still waits for its flush: the
   * broker may apply this many at once (statements run one batch at a time, the flushes overlap).
   */
  readonly concurrentBatches: number;
  readonly splitBacklog = false;

  private constructor(
    path: string,
    db: Database.Database,
    parts: {
      flusher: WalFlusher | undefined;
      mergeAt: number;
      owner: Database.Database | undefined;
      checkpointer: Checkpointer | undefined;
    },
  ) {
    const { flusher } = parts;
    this.path = path;
    this.#db = db;
    this.#flusher = flusher;
    this.#mergeAt = parts.mergeAt;
    this.#owner = parts.owner;
    this.#checkpointer = parts.checkpointer;
    this.#inTransaction = db.transaction((fn: () => unknown) => fn());
    this.concurrentBatches = flusher === undefined ? 1 : PIPELINED_BATCHES;
    this.#st = new Statements(db);
    const st = this.#st;
    const meta = (k: string): number =>
      (db.prepare('SELECT v FROM meta WHERE k = ?').pluck().get(k) as number | undefined) ?? 0;
    this.#keys = new KeyIndex('keys_upto', meta('keys_upto'), {
      lookup: st.keyId,
      insert: st.insertKey,
      delete: st.deleteKey,
      setMeta: st.setMeta,
    });
    // The rows after the watermarks: their keys go back into the maps.
    for (const r of db
      .prepare('SELECT key, id FROM blobs WHERE id > ?')
      .iterate(this.#keys.upto) as Iterable<{ key: string; id: number }>)
      this.#keys.recent.set(r.key, r.id);
    this.#maxBlobId =
      (db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'blobs'`).pluck().get() as
        number | undefined) ?? 0;
    const internals: StoreInternals = {
      read: (fn) => this.#run((s) => fn(s, this.#keys)),
      write: (fn) => this.#run((s) => this.#transaction(() => fn(s, this.#keys), [])),
      flushed: async () => {
        await this.#flusher?.flush();
      },
      putBlob: (key, data) => this.#putBlob(key, data),
    };
    this.blobs = new SqliteBlobStore(internals);
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
    let walFd: number | undefined;
    const mergeAt = options.mergeKeysAt ?? DEFAULT_MERGE_AT;
    if (!Number.isInteger(mergeAt) || mergeAt < 1 || mergeAt > 10_000_000)
      throw new MailboxInvalidArgumentError('mergeKeysAt must be an integer from 1 to 10 000 000');
    const mode = options.checkpoint ?? 'thread';
    if (mode !== 'thread' && mode !== 'commit')
      throw new MailboxInvalidArgumentError("checkpoint must be 'thread' or 'commit'");
    const tuning = options.checkpointer ?? {};
    if (typeof tuning !== 'object' || tuning === null)
      throw new MailboxInvalidArgumentError('checkpointer must be an object');
    for (const [name, max] of [
      ['idleMs', 60_000],
      ['restartFrames', 10_000_000],
      ['catchUpFrames', 10_000_000],
      ['maxFrames', 10_000_000],
    ] as const) {
      const v = tuning[name];
      if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > max))
        throw new MailboxInvalidArgumentError(`checkpointer.${name} must be an integer from 1 to ${max}`);
    }
    let owner: Database.Database | undefined;
    let checkpointer: Checkpointer | undefined;
    try {
      const { default: Sqlite } = await import('better-sqlite3');
      const timeout = options.busyTimeoutMs ?? 2000;
      const onDisk = path !== ':memory:' && path !== '';
      // One process owns a database file: it holds the exclusive lock of `<path>-lock` while open.
      if (onDisk) owner = lockOwner(Sqlite, path, timeout);
      db = new Sqlite(path, { timeout });
      if (mode === 'commit' || !onDisk) db.pragma('locking_mode = EXCLUSIVE');
      const wal = (db.pragma('journal_mode = WAL', { simple: true }) as string).toLowerCase() === 'wal';
      const full = (options.synchronous ?? 'full') === 'full';
      // With a WAL file the store flushes it itself (off the event loop); SQLite's NORMAL then
      // syncs only at checkpoints. Without one (':memory:'), FULL is SQLite's own.
      db.pragma(`synchronous = ${full && !wal ? 'FULL' : 'NORMAL'}`);
      db.pragma(`cache_size = -${options.cacheKiB ?? 32768}`);
      db.pragma('temp_store = MEMORY');
      // A WAL that grew (a burst, a slow checkpoint) is cut back to 64 MiB when it restarts.
      db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
      migrate(db);
      // The WAL file exists once the schema transaction committed, as long as this connection is open.
      if (full && wal) walFd = openSync(`${db.name}-wal`, 'r+');
      if (wal && onDisk && mode === 'thread')
        checkpointer = new Checkpointer(db, db.name, options.checkpointer);
      const store = new SqliteStore(path, db, {
        flusher: walFd === undefined ? undefined : new WalFlusher(walFd),
        mergeAt,
        owner,
        checkpointer,
      });
      walFd = undefined;
      return store;
    } catch (error) {
      if (walFd !== undefined) closeSync(walFd);
      await checkpointer?.close();
      db?.close();
      owner?.close();
      const code = (error as { code?: unknown }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
        throw new MailboxStoreLockedError(`the database ${path} is owned by another process`, {
          cause: error,
        });
      if (error instanceof MailboxError) throw error;
      throw new MailboxStoreError(`cannot open the database ${path}`, { cause: error });
    }
  }

  /** Runs `fn` on the statements; maps failures to typed errors. */
  #run<T>(fn: (st: Statements) => T): T {
    if (this.#closed) throw new MailboxClosedError('the SQLite store is closed');
    try {
      return fn(this.#st);
    } catch (error) {
      if (error instanceof MailboxError) throw error;
      throw new MailboxStoreError('the SQLite store failed', { cause: error });
    }
  }

  /**
   * Runs `fn` in one transaction; on a rollback, undoes the key maps' changes and forgets the
   * mailboxes the transaction added to the settings cache. Merges a full key map first (its own
   * transaction: the batch's flush covers it).
   */
  #transaction<T>(fn: () => T, added: string[]): T {
    this.#mergeFull();
    const undo: (() => void)[] = [];
    this.#keys.undo = undo;
    const maxBlobId = this.#maxBlobId;
    try {
      return this.#inTransaction(fn) as T;
    } catch (error) {
      for (let i = undo.length - 1; i >= 0; i--) undo[i]!();
      for (const name of added) this.#mailboxes.delete(name);
      this.#maxBlobId = maxBlobId;
      throw error;
    } finally {
      this.#keys.undo = null;
    }
  }

  #mergeFull(): void {
    if (this.#keys.recent.size < this.#mergeAt) return;
    const upto = this.#maxBlobId;
    this.#inTransaction(() => this.#keys.merge(upto));
    this.#keys.merged(upto);
  }

  async apply(ops: readonly StoreOp[], nowMs: number): Promise<StoreResult[]> {
    const { results, flushed } = this.applyStaged(ops, nowMs);
    await flushed;
    return results;
  }

  applyStaged(
    ops: readonly StoreOp[],
    nowMs: number,
  ): { readonly results: StoreResult[]; readonly flushed: Promise<void> } {
    if (this.#closed) throw new MailboxClosedError('the SQLite store is closed');
    const flusher = this.#flusher;
    if (flusher?.failure !== undefined) throw flusher.failure;
    // Mailbox settings are cached; undo cache changes if the transaction rolls back.
    const added: string[] = [];
    let results: StoreResult[];
    const changesBefore = this.#st.totalChanges.get() as number;
    try {
      results = this.#transaction(() => this.#applyAll(ops, nowMs, added), added);
    } catch (error) {
      throw new MailboxStoreError('the SQLite store failed to commit a batch', { cause: error });
    }
    // A batch that changed no row (an empty claim of a long poll, a refused ack) wrote nothing
    // to flush; it still waits for the flushes in progress, so answers keep their commit order.
    const wrote = (this.#st.totalChanges.get() as number) !== changesBefore;
    if (flusher === undefined) return { results, flushed: Promise.resolve() };
    return { results, flushed: wrote ? flusher.flush() : flusher.settled() };
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

  /** Stores a new blob or counts one more reference to it; returns its id. Inside a transaction. */
  #putBlob(key: string, data: string | Buffer): number {
    const id = this.#keys.get(key);
    if (id !== undefined) {
      this.#st.addRefById.run(1, id);
      return id;
    }
    const created = Number(this.#st.insertBlob.run(key, data).lastInsertRowid);
    this.#maxBlobId = created;
    this.#keys.add(key, created);
    return created;
  }

  /** Deletes the message row `seq` and drops its blob reference. */
  #deleteMessage(seq: number, blobId: number): void {
    this.#st.deleteMsg.run(seq);
    this.#st.addRefById.run(-1, blobId);
  }

  /**
   * Applies a batch's ops in order. A batch in which a claim follows a send to its mailbox (the
   * broker appends the claims of the long polls waiting on the mailboxes it sends to) hands
   * those sends to the claims instead (see `HandOff`): a due new message that a later claim of
   * the batch would take is held back from its send, and inserted already leased by that claim
   * — one insert instead of an insert, a select (with its body) and an update, and no
   * messages_ready entry added and removed. A claim takes the due rows there before it (its
   * select), then the held sends in send order, as it would have found them; held sends it
   * leaves are inserted queued at the end of the batch. Every row keeps the seq it would have
   * had (the batch reserves them in send order), so the outcome is the ops' in order, exactly.
   */
  #applyAll(ops: readonly StoreOp[], now: number, added: string[]): StoreResult[] {
    const lastClaim = handOffPlan(ops);
    const results = new Array<StoreResult>(ops.length);
    if (lastClaim === undefined) {
      for (let i = 0; i < ops.length; i++) results[i] = this.#applyOne(ops[i]!, now, added, undefined);
      return results;
    }
    const h: HandOff = {
      lastClaim,
      index: 0,
      next: ((this.#st.maxSeq.get() as number | null) ?? 0) + 1,
      held: new Map(),
      heldMids: new Map(),
      on: true,
    };
    for (let i = 0; i < ops.length; i++) {
      h.index = i;
      results[i] = this.#applyOne(ops[i]!, now, added, h);
    }
    this.#release(h, now);
    return results;
  }

  /** Inserts the held sends no claim took, queued (each at its reserved seq); holds no more. */
  #release(h: HandOff, now: number): void {
    h.on = false;
    for (const held of h.held.values())
      for (let k = held.head; k < held.items.length; k++) {
        const { m, seq, blobId } = held.items[k]!;
        this.#insertRow(m, seq, blobId, now);
      }
    h.held.clear();
    h.heldMids.clear();
  }

  /** Inserts the row of new message `m`: queued (due after its delay), or leased by `lease`. */
  #insertRow(
    m: NewMessage,
    seq: number | null,
    blobId: number,
    now: number,
    lease?: { lid: string; fence: number; leasedUntil: number; consumer: string | null },
  ): void {
    this.#st.insertMsg.run(
      seq,
      m.mid,
      m.receiver,
      m.sender,
      m.receiver,
      m.clientTimeMs,
      now,
      m.delayMs,
      lease === undefined ? 0 : 1,
      lease === undefined ? now + m.delayMs : null,
      lease === undefined ? 0 : 1,
      lease?.lid ?? null,
      lease?.fence ?? null,
      lease?.leasedUntil ?? null,
      lease === undefined ? null : now,
      lease?.consumer ?? null,
      m.blobKey,
      blobId,
      m.bodyBytes,
    );
  }

  #applyOne(op: StoreOp, now: number, added: string[], h: HandOff | undefined): StoreResult {
    const st = this.#st;
    // An ack or extend naming a held send's mid must find its row: the batch holds no more.
    if (
      h?.on === true &&
      h.heldMids.size > 0 &&
      (op.kind === 'ack' || op.kind === 'extend') &&
      h.heldMids.has(op.mid)
    )
      this.#release(h, now);
    switch (op.kind) {
      case 'send': {
        const m = op.message;
        // A resend of a held send: the message as its row would read, queued and new.
        const first = h?.heldMids.get(m.mid);
        if (first !== undefined)
          return {
            kind: 'send',
            message: { ...newMessage(first, now), body: decodeBody(first.body) },
            created: false,
          };
        // A fresh mid (a nonce in it) cannot be stored yet: one index probe a send saved.
        if (m.fresh !== true && st.midExists.get(m.mid) !== undefined)
          return { kind: 'send', message: message(st.byMid.get(m.mid) as Row), created: false };
        this.#ensureMailbox(m.receiver, op.defaults, now, added);
        const blobId = this.#putBlob(m.blobKey, m.body);
        if (h === undefined) this.#insertRow(m, null, blobId, now);
        else {
          const seq = h.next++;
          if (h.on && m.delayMs <= 0 && (h.lastClaim.get(m.receiver) ?? -1) > h.index) {
            let held = h.held.get(m.receiver);
            if (held === undefined) h.held.set(m.receiver, (held = { items: [], head: 0 }));
            held.items.push({ m, seq, blobId });
            h.heldMids.set(m.mid, m);
          } else this.#insertRow(m, seq, blobId, now);
        }
        return { kind: 'send', created: true, message: newMessage(m, now) };
      }
      case 'claim': {
        const rows = st.claimSelect.all(op.mailbox, now, op.max) as ClaimRow[];
        const messages: Message[] = [];
        const leasedUntil = now + op.leaseMs;
        for (const r of rows) {
          const deliveryCount = r[9] + 1;
          const lid = this.#ids.next();
          const fence = this.#nextFence();
          st.claimUpdate.run(deliveryCount, lid, fence, leasedUntil, now, op.consumer, r[0]);
          const data = r[12];
          const body = decodeBody(typeof data === 'string' ? data : (data?.toString('utf8') ?? ''));
          messages.push(leasedMessage(r, CLAIM_AT, deliveryCount, lid, fence, leasedUntil, now, body));
        }
        // Then the batch's own held sends, in send order: they come after every row there was.
        const held = h?.held.get(op.mailbox);
        if (held !== undefined) {
          while (messages.length < op.max && held.head < held.items.length) {
            const { m, seq, blobId } = held.items[held.head++]!;
            h!.heldMids.delete(m.mid);
            const lid = this.#ids.next();
            const fence = this.#nextFence();
            this.#insertRow(m, seq, blobId, now, { lid, fence, leasedUntil, consumer: op.consumer });
            messages.push(heldMessage(m, now, lid, fence, leasedUntil));
          }
        }
        // Only an empty claim needs to know when to look again (the long poll sleeps until then).
        if (messages.length > 0) return { kind: 'claim', messages, nextDueMs: null };
        const next = st.nextDue.get(op.mailbox) as { due: number } | undefined;
        // Held sends left (a claim of max 0) are queued and due now, as their rows would say.
        if (held !== undefined && held.head < held.items.length)
          return { kind: 'claim', messages, nextDueMs: next === undefined ? now : Math.min(next.due, now) };
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
        const rows = st.expiring.all(now, op.limit) as { seq: number; blob_id: number }[];
        for (const r of rows) this.#deleteMessage(r.seq, r.blob_id);
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
        const rows = st.queuedOf.all(op.mailbox, op.limit) as { seq: number; blob_id: number }[];
        for (const r of rows) this.#deleteMessage(r.seq, r.blob_id);
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

  async headers(mailbox: string, after: HeadersPosition, limit: number): Promise<HeadersRows> {
    return this.#run((st) => {
      // One row more than asked tells whether another page follows.
      const rows = st.headers.all({
        mailbox,
        at: after.receivedAtMs,
        seq: after.seq,
        limit: limit + 1,
      }) as Row[];
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        headers: page.map(headerOfRow),
        next:
          rows.length > limit && last !== undefined
            ? { receivedAtMs: last.received_at, seq: last.seq }
            : null,
      };
    });
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
    await this.#flusher?.idle();
    // The thread's connection first: the owner's close, the last one, checkpoints what is left.
    await this.#checkpointer?.close();
    this.#db.close();
    this.#flusher?.close();
    this.#owner?.close();
  }

  /** How the WAL checkpoint thread fared (undefined without one). */
  get checkpointStats(): CheckpointerStats | undefined {
    return this.#checkpointer?.stats;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Takes the exclusive lock of `<path>-lock`, a small SQLite database of its own beside the
 * store, and keeps it while the returned connection is open (`locking_mode=EXCLUSIVE` holds
 * the lock of the first write until close). The store's own file cannot carry that lock:
 * the checkpoint thread needs a second connection to it. Busy: MAILBOX_ERR_STORE_LOCKED.
 */
export function lockOwner(Sqlite: typeof Database, path: string, timeoutMs: number): Database.Database {
  const lock = new Sqlite(`${path}-lock`, { timeout: timeoutMs });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.pragma('journal_mode = MEMORY');
    lock.exec('BEGIN EXCLUSIVE; COMMIT');
    return lock;
  } catch (error) {
    lock.close();
    throw error;
  }
}

/** Creates the schema, or migrates an older one, in one transaction. */
function migrate(db: Database.Database): void {
  db.transaction(() => {
    const hasMessages =
      db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'`).get() !==
      undefined;
    db.exec(`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`);
    const version =
      (db.prepare(`SELECT v FROM meta WHERE k = 'schema'`).pluck().get() as number | undefined) ?? 0;
    if (version > SCHEMA_VERSION)
      throw new MailboxStoreError(
        `the database has schema ${version}; this version of @switchyard/mailbox knows up to ${SCHEMA_VERSION}`,
      );
    if (hasMessages && version < 2) db.exec(MIGRATE_1_TO_2);
    else db.exec(SCHEMA);
    db.prepare(
      `INSERT INTO meta (k, v) VALUES ('schema', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`,
    ).run(SCHEMA_VERSION);
  })();
}
