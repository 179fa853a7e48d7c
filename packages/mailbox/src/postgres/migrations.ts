/**
 * The versioned schema of the PostgreSQL store. Each migration runs once, in order, inside one
 * transaction that holds an advisory lock on the schema, so brokers starting together never
 * race; `schema_migrations` records what ran. Never edit a released migration: add one.
 */
import type { PoolClient } from 'pg';
import { MailboxStoreError } from '../errors.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: 'mailboxes, messages, blobs, fencing sequence',
    sql: `
CREATE TABLE mailboxes (
  name text PRIMARY KEY, max_deliveries integer NOT NULL, retry_delay_ms bigint NOT NULL,
  retention_ms bigint NOT NULL, created_at bigint NOT NULL);
CREATE TABLE blobs (key text PRIMARY KEY, refs bigint NOT NULL, data bytea NOT NULL);
CREATE INDEX blobs_zero ON blobs (key) WHERE refs <= 0;
CREATE SEQUENCE fence_seq;
CREATE TABLE messages (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, mid text NOT NULL UNIQUE, mailbox text NOT NULL,
  sender text NOT NULL, receiver text NOT NULL, client_time bigint NOT NULL, received_at bigint NOT NULL,
  delay_ms bigint NOT NULL, state smallint NOT NULL, status smallint NOT NULL, due bigint,
  delivery_count integer NOT NULL DEFAULT 0, lid text, fence bigint, leased_until bigint, fetch_time bigint,
  consumer text, blob text NOT NULL, body_bytes integer NOT NULL, expires_at bigint,
  history text NOT NULL DEFAULT '');
CREATE INDEX messages_ready ON messages (mailbox, due, seq) WHERE state = 0;
CREATE INDEX messages_leased ON messages (leased_until, seq) WHERE state = 1;
CREATE INDEX messages_expiring ON messages (expires_at) WHERE state = 2;
`,
  },
  {
    version: 2,
    name: 'messages addressed by mid alone; keys and names compared bytewise',
    // A claim and a confirm each write a new version of the message row, with an entry in every
    // index of the table: the primary key on seq was one more B-tree write per version, for a
    // key the store no longer looks rows up by (mid is unique and not null; seq still orders
    // queued messages inside messages_ready). Keys and names are ASCII identifiers, compared
    // bytewise (COLLATE "C") instead of through the locale. Both rebuild indexes: the time
    // this migration takes grows with the table.
    sql: `
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages ALTER COLUMN mid TYPE text COLLATE "C", ALTER COLUMN mailbox TYPE text COLLATE "C",
  ALTER COLUMN receiver TYPE text COLLATE "C", ALTER COLUMN blob TYPE text COLLATE "C";
ALTER TABLE blobs ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE mailboxes ALTER COLUMN name TYPE text COLLATE "C";
`,
  },
  {
    version: 3,
    name: 'message pages keep room for the versions a claim and a confirm write',
    // A claim and a confirm each write a new version of the message row (never a HOT update:
    // they change `state`, which every partial index's predicate reads). On a full page the
    // new version goes to another page — two buffers locked, a free-space-map lookup, and the
    // whole tuple in the WAL. With half of each page left free at insert, the new version
    // usually stays on the row's page, and the WAL then carries only the bytes that changed
    // (PostgreSQL logs a same-page update's new tuple without the prefix and suffix it shares
    // with the old one). Only pages filled from now on keep the room: no rewrite, instant.
    sql: `
ALTER TABLE messages SET (fillfactor = 50);
`,
  },
]);

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Creates `schema` if needed and applies the pending migrations. Returns the version the
 * schema is at afterwards. Refuses a schema newer than this package knows.
 */
export async function migrate(client: PoolClient, schema: string): Promise<number> {
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`switchyard-mailbox:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
    const current = r.rows[0]?.v ?? 0;
    if (current > latest)
      throw new MailboxStoreError(
        `the schema ${schema} is at version ${current}; this package knows versions up to ${latest}`,
      );
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ]);
    }
    await client.query('COMMIT');
    return latest;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
