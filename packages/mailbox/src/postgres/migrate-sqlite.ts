/**
 * Moves the data of a SQLite store into a PostgreSQL store: mailboxes with their settings,
 * messages with their state, lease (lid, fence, leasedUntil), delivery count and attempt
 * record, and blobs with their reference counts. The copy is one PostgreSQL transaction: it
 * lands whole or not at all. The fencing sequence starts above the largest SQLite token, so
 * tokens keep growing, and a lease granted by the SQLite broker can still be acked or extended
 * on PostgreSQL until it ends.
 *
 * The SQLite file must not be open in a broker (the broker holds its `-lock` file); the target
 * schema must be empty (no mailboxes, messages or blobs).
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import pg from 'pg';
import { MailboxInvalidArgumentError, MailboxStoreError, MailboxStoreLockedError } from '../errors.js';
import { lockOwner } from '../sqlite-store.js';
import { quoteIdent } from './migrations.js';
import { PostgresStore, parsePostgresUrl, type PostgresStoreOptions } from './store.js';

export interface MigrateOptions {
  /** Rows per INSERT (default 1000). */
  readonly batchSize?: number;
  /** Options of the target store (schema, …); the URL's `?schema=` works too. */
  readonly postgres?: PostgresStoreOptions;
  /** Called after each batch with the counts so far. */
  readonly onProgress?: (done: MigrateReport) => void;
  readonly signal?: AbortSignal;
}

export interface MigrateReport {
  readonly mailboxes: number;
  readonly messages: number;
  readonly blobs: number;
  readonly blobBytes: number;
  /** The largest fencing token copied (the sequence continues above it). */
  readonly maxFence: number;
}

const MESSAGE_COLS = [
  'mid',
  'mailbox',
  'sender',
  'receiver',
  'client_time',
  'received_at',
  'delay_ms',
  'state',
  'status',
  'due',
  'delivery_count',
  'lid',
  'fence',
  'leased_until',
  'fetch_time',
  'consumer',
  'blob',
  'body_bytes',
  'expires_at',
  'history',
] as const;

const PG_TYPES: Record<(typeof MESSAGE_COLS)[number], string> = {
  mid: 'text',
  mailbox: 'text',
  sender: 'text',
  receiver: 'text',
  client_time: 'bigint',
  received_at: 'bigint',
  delay_ms: 'bigint',
  state: 'smallint',
  status: 'smallint',
  due: 'bigint',
  delivery_count: 'integer',
  lid: 'text',
  fence: 'bigint',
  leased_until: 'bigint',
  fetch_time: 'bigint',
  consumer: 'text',
  blob: 'text',
  body_bytes: 'integer',
  expires_at: 'bigint',
  history: 'text',
};

/** The source database, read-only, and the broker's lock on it (held during the copy). */
interface Source {
  readonly db: Database.Database;
  close(): void;
}

function openSqlite(path: string): Source {
  let db: Database.Database | undefined;
  let lock: Database.Database | undefined;
  try {
    // A broker holds `<path>-lock` while it runs; holding it here keeps one from starting
    // during the copy. (A store no broker of this version opened has no lock file yet.)
    if (existsSync(`${path}-lock`)) lock = lockOwner(Database, path, 1000);
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 1000 });
    // Reading proves the file is a database and nobody holds it exclusively.
    const tables = db
      .prepare(
        `SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('messages', 'mailboxes', 'blobs')`,
      )
      .all() as { name: string }[];
    if (tables.length !== 3)
      throw new MailboxInvalidArgumentError(`${path} is not a Switchyard mailbox SQLite store`);
    const opened = db;
    return {
      db: opened,
      close: () => {
        opened.close();
        lock?.close();
      },
    };
  } catch (error) {
    db?.close();
    lock?.close();
    if (error instanceof MailboxInvalidArgumentError) throw error;
    const code = (error as { code?: unknown }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
      throw new MailboxStoreLockedError(`the SQLite store ${path} is open in a broker: stop it first`, {
        cause: error,
      });
    throw new MailboxStoreError(`cannot read the SQLite store ${path}`, { cause: error });
  }
}

/** Copies the SQLite store at `sqlitePath` into the (empty) PostgreSQL store at `postgresUrl`. */
export async function migrateSqliteToPostgres(
  sqlitePath: string,
  postgresUrl: string,
  options: MigrateOptions = {},
): Promise<MigrateReport> {
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000)
    throw new MailboxInvalidArgumentError('batchSize must be an integer from 1 to 100000');
  options.signal?.throwIfAborted();
  const source = openSqlite(sqlitePath);
  const db = source.db;
  try {
    // Creates or migrates the target schema, then closes: the copy runs on its own connection.
    const store = await PostgresStore.open(postgresUrl, options.postgres ?? {});
    const schema = store.schema;
    await store.close();
    const client = new pg.Client({ connectionString: parsePostgresUrl(postgresUrl).connectionString });
    try {
      await client.connect();
    } catch (error) {
      throw new MailboxStoreError('cannot connect to PostgreSQL', { cause: error });
    }
    try {
      await client.query(`SET search_path TO ${quoteIdent(schema)}`);
      await client.query('BEGIN');
      const report = await copy(db, client, batchSize, options);
      await client.query('COMMIT');
      return report;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if (error instanceof MailboxInvalidArgumentError || error instanceof MailboxStoreError) throw error;
      if (options.signal?.aborted === true) throw error;
      throw new MailboxStoreError(
        `the migration failed and was rolled back: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    } finally {
      await client.end().catch(() => {});
    }
  } finally {
    source.close();
  }
}

async function copy(
  db: Database.Database,
  client: pg.Client,
  batchSize: number,
  options: MigrateOptions,
): Promise<MigrateReport> {
  const busy = await client.query<{ n: string }>(
    `SELECT ((SELECT count(*) FROM mailboxes) + (SELECT count(*) FROM messages) + (SELECT count(*) FROM blobs))::text AS n`,
  );
  if (busy.rows[0]!.n !== '0')
    throw new MailboxInvalidArgumentError(
      'the target PostgreSQL schema already holds mailboxes, messages or blobs: migrate into an empty schema',
    );
  const report = { mailboxes: 0, messages: 0, blobs: 0, blobBytes: 0, maxFence: 0 };
  const progress = (): void => options.onProgress?.({ ...report });

  const mailboxes = db.prepare('SELECT * FROM mailboxes ORDER BY name').all() as {
    name: string;
    max_deliveries: number;
    retry_delay_ms: number;
    retention_ms: number;
    created_at: number;
  }[];
  for (let i = 0; i < mailboxes.length; i += batchSize) {
    const chunk = mailboxes.slice(i, i + batchSize);
    await client.query(
      `INSERT INTO mailboxes (name, max_deliveries, retry_delay_ms, retention_ms, created_at)
       SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::bigint[], $5::bigint[])`,
      [
        chunk.map((m) => m.name),
        chunk.map((m) => m.max_deliveries),
        chunk.map((m) => m.retry_delay_ms),
        chunk.map((m) => m.retention_ms),
        chunk.map((m) => m.created_at),
      ],
    );
    report.mailboxes += chunk.length;
  }
  progress();

  const blobs = db.prepare('SELECT id, key, refs, data FROM blobs WHERE id > ? ORDER BY id LIMIT ?');
  for (let last = -Infinity; ;) {
    options.signal?.throwIfAborted();
    const rows = blobs.all(last, batchSize) as { id: number; key: string; refs: number; data: Buffer }[];
    if (rows.length === 0) break;
    await client.query(
      'INSERT INTO blobs (key, refs, data) SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])',
      [rows.map((r) => r.key), rows.map((r) => r.refs), rows.map((r) => r.data)],
    );
    report.blobs += rows.length;
    for (const r of rows) report.blobBytes += r.data.length;
    last = rows[rows.length - 1]!.id;
    progress();
  }

  const messages = db.prepare(
    `SELECT seq, ${MESSAGE_COLS.join(', ')} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?`,
  );
  const columns = MESSAGE_COLS.join(', ');
  const arrays = MESSAGE_COLS.map((c, i) => `$${i + 1}::${PG_TYPES[c]}[]`).join(', ');
  for (let last = -Infinity; ;) {
    options.signal?.throwIfAborted();
    const rows = messages.all(last, batchSize) as (Record<(typeof MESSAGE_COLS)[number], unknown> & {
      seq: number;
    })[];
    if (rows.length === 0) break;
    // Inserted in seq order, so the new seqs keep the old order (ties in due time break the same way).
    await client.query(
      `INSERT INTO messages (${columns}) SELECT * FROM unnest(${arrays})`,
      MESSAGE_COLS.map((c) => rows.map((r) => r[c])),
    );
    for (const r of rows)
      if (typeof r.fence === 'number' && r.fence > report.maxFence) report.maxFence = r.fence;
    report.messages += rows.length;
    last = rows[rows.length - 1]!.seq;
    progress();
  }
  if (report.maxFence > 0) await client.query(`SELECT setval('fence_seq', $1::bigint)`, [report.maxFence]);
  return report;
}
