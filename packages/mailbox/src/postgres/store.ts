/**
 * The PostgreSQL store (node-postgres): several brokers, on several machines, share one
 * database. Each batch of a broker's group commit is one transaction (one commit, one WAL
 * flush); consecutive sends of a batch are one INSERT … SELECT FROM unnest (mailboxes, messages
 * and blob references in one statement), consecutive confirms one UPDATE, so a batch costs a
 * few round trips whatever its size. Claims take `FOR UPDATE SKIP LOCKED` on the partial index
 * (mailbox, due, seq) over queued rows: "the oldest due messages of a mailbox" is one index
 * range, and two brokers claiming at once skip each other's rows instead of waiting or
 * double-leasing. Fencing tokens come from one sequence, so they grow across every broker.
 *
 * Time: the store applies the `nowMs` of each batch, like every store. A broker opened on a
 * `postgres://` URL without a `clock` uses the store's `clock` — the database clock
 * (`DatabaseClock`) — so every broker on the database stamps leases and due times on the
 * database's timeline. An injected clock (a `ManualClock` in tests) overrides it; brokers that
 * share a database must then share that clock's timeline themselves.
 *
 * Wake-ups: a commit that made messages due (sends, rejects, timeouts, redrives) sends one
 * NOTIFY, in the same round trip as its COMMIT, naming those mailboxes; every other store on
 * the database LISTENs and passes the names to `watch` listeners (the broker's long polls).
 *
 * Deadlocks and serialization failures roll the batch back and run it again (`maxRetries`).
 */
import { channel } from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { ClientConfig, Notification, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { MailboxClosedError, MailboxInvalidArgumentError, MailboxStoreError } from '../errors.js';
import type { Message, MessageStatusValue } from '../message.js';
import { MessageStatus, decodeBody, formatAttempt, parseAttempts } from '../message.js';
import type { MessageRow } from '../message-row.js';
import { checkRowLease, headerOfRow, leasedMessage } from '../message-row.js';
import type { ClaimColumns } from '../message-row.js';
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
} from '../store.js';
import { afterAttempt, newMessage } from '../store.js';
import { DatabaseClock } from './db-clock.js';
import { migrate, quoteIdent } from './migrations.js';

export interface PostgresStoreOptions {
  /** Schema holding the tables (default 'switchyard'; created if missing). URL: `?schema=`. */
  readonly schema?: string;
  /** Most connections of the pool (default 4; the LISTEN connection is extra). URL: `?poolSize=`. */
  readonly poolSize?: number;
  /** How often the database clock is re-measured (default 10 000 ms; 0: never). */
  readonly clockResyncMs?: number;
  /** Times a batch is run again after a deadlock or serialization failure (default 5). */
  readonly maxRetries?: number;
  /** Milliseconds to wait for a connection (default 5000). */
  readonly connectTimeoutMs?: number;
  /**
   * How often a store announces itself to the other stores of the schema (default 5000 ms).
   * A store NOTIFYs only while it knows of another (heard within 3 periods, or for 2 periods
   * after it opened), so a lone broker pays nothing for wake-ups.
   */
  readonly presenceMs?: number;
  /**
   * Batches a broker may apply at once, each a transaction on its own connection (default 2, at
   * most `poolSize`). URL: `?concurrentBatches=`.
   */
  readonly concurrentBatches?: number;
}

const errorChannel = channel('switchyard:mailbox:error');
const notifyChannel = channel('switchyard:mailbox:notify');

const SCHEMA_RE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const NOTIFY_BYTES = 7000;
const RETRYABLE = new Set(['40P01', '40001']);

const COLS = `m.seq, m.mid, m.mailbox, m.sender, m.receiver, m.client_time, m.received_at, m.delay_ms, m.state,
  m.status, m.due, m.delivery_count, m.lid, m.fence, m.leased_until, m.fetch_time, m.consumer, m.blob,
  m.body_bytes, m.history`;

/**
 * What a batch claim returns per leased row, in this order (rows come as arrays: `ClaimRow`):
 * only what the message needs that the claim does not already know (it knows the state, the
 * lease's end, the fetch time; the attempt record is for `get`). The body comes as bytea's
 * `escape` text (`unescapeBytea`): a canonical body is ASCII, so it arrives as the string
 * itself, not as hex twice its size to be decoded into a Buffer and then into a string.
 */
const CLAIM_COLS = `f.idx, f.rn, m.mid, m.mailbox, m.sender, m.receiver, m.client_time, m.received_at, m.delay_ms,
  m.status, m.delivery_count, m.lid, m.fence, m.blob, m.body_bytes,
  (SELECT encode(b.data, 'escape') FROM blobs b WHERE b.key = m.blob) AS data`;

/**
 * A row of a batch claim (`CLAIM_COLS`, then the mailbox and next due time of the row that
 * says when a mailbox's next message comes due, NULL in leased rows).
 */
type ClaimRow = [
  idx: number,
  rn: number,
  mid: string,
  mailbox: string,
  sender: string,
  receiver: string,
  clientTime: number,
  receivedAt: number,
  delayMs: number,
  status: MessageStatusValue,
  deliveryCount: number,
  lid: string,
  fence: number,
  blob: string,
  bodyBytes: number,
  data: string | null,
  ndMailbox: string | null,
  nextDue: number | null,
];

/** The sends of a batch: mailboxes created if new, messages inserted unless their mid exists, blob references. */
const SY_SEND_SQL = `WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::integer[], $8::text[])
           AS t(mid, sender, receiver, client_time, delay_ms, blob, body_bytes, body)),
       mb AS (
         INSERT INTO mailboxes (name, max_deliveries, retry_delay_ms, retention_ms, created_at)
         SELECT DISTINCT receiver, $9::integer, $10::bigint, $11::bigint, $12::bigint FROM input ORDER BY receiver
         ON CONFLICT (name) DO NOTHING),
       ins AS (
         INSERT INTO messages (mid, mailbox, sender, receiver, client_time, received_at, delay_ms, state, status, due, blob, body_bytes)
         SELECT mid, receiver, sender, receiver, client_time, $12::bigint, delay_ms, 0, 8, $12::bigint + delay_ms, blob, body_bytes
         FROM input ON CONFLICT (mid) DO NOTHING RETURNING mid, blob),
       bl AS (
         INSERT INTO blobs (key, refs, data)
         SELECT i.blob, count(*), convert_to(min(t.body), 'UTF8') FROM ins i JOIN input t ON t.mid = i.mid
         GROUP BY i.blob ORDER BY i.blob
         ON CONFLICT (key) DO UPDATE SET refs = blobs.refs + excluded.refs)
       SELECT mid FROM ins`;

/**
 * The common table expressions that lease, for a batch's claims, the oldest due rows of each
 * claimed mailbox: \`req\` (one row per claim, from the arrays \`$p\`…\`$p+4\`: mailbox, max,
 * lease, consumer, index), \`mbs\` (each claimed mailbox and how many its claims ask for), \`c\`
 * (those rows, locked, \`SKIP LOCKED\`), \`n\` (their rank in their mailbox), \`a\` (which claim
 * gets which rank), \`f\` (fences in claim order) and \`u\` (the update, returning \`CLAIM_COLS\`).
 * \`now\` is the SQL of the batch's time.
 */
function claimCtes(p: number, now: string, mbs: string): string {
  return `req AS MATERIALIZED (
         SELECT r.*, sum(r.max) OVER (PARTITION BY r.mailbox ORDER BY r.idx) - r.max AS lo,
           sum(r.max) OVER (PARTITION BY r.mailbox ORDER BY r.idx) AS hi
         FROM unnest($${p}::text[], $${p + 1}::integer[], $${p + 2}::bigint[], $${p + 3}::text[], $${p + 4}::integer[])
           AS r(mailbox, max, lease_ms, consumer, idx)),
       ${mbs} AS MATERIALIZED (SELECT mailbox, max(hi) AS total FROM req GROUP BY mailbox ORDER BY mailbox),
       c AS MATERIALIZED (
         SELECT l.tid, l.seq, l.due, ${mbs}.mailbox FROM ${mbs} CROSS JOIN LATERAL (
           SELECT ctid AS tid, seq, due FROM messages WHERE mailbox = ${mbs}.mailbox AND state = 0 AND due <= ${now}
           ORDER BY due, seq LIMIT ${mbs}.total FOR UPDATE SKIP LOCKED) l),
       n AS MATERIALIZED (SELECT tid, mailbox, row_number() OVER (PARTITION BY mailbox ORDER BY due, seq) AS rn FROM c),
       a AS MATERIALIZED (
         SELECT n.tid, n.rn, req.idx, req.lease_ms, req.consumer FROM n
         JOIN req ON req.mailbox = n.mailbox AND n.rn > req.lo AND n.rn <= req.hi),
       f AS MATERIALIZED (SELECT s.*, nextval('fence_seq') AS fence FROM (SELECT * FROM a ORDER BY idx, rn) s),
       u AS (
         UPDATE messages m SET state = 1, due = NULL, delivery_count = m.delivery_count + 1,
           lid = replace(gen_random_uuid()::text, '-', ''), fence = f.fence, leased_until = ${now} + f.lease_ms,
           fetch_time = ${now}, consumer = f.consumer
         FROM f WHERE m.ctid = f.tid
         RETURNING ${CLAIM_COLS})`;
}

/** The claims of a batch, and per mailbox when its next message comes due. */
const SY_CLAIMS_SQL = `WITH ${claimCtes(1, '$6::bigint', 'mb')}
       SELECT u.*, NULL::text AS nd_mailbox, NULL::bigint AS next_due FROM u
       UNION ALL
       -- When the next message of each mailbox comes due, for its claims that got nothing (rows
       -- due now that this statement did not take are another transaction's, being claimed).
       SELECT u.*, mb.mailbox, (SELECT due FROM messages WHERE mailbox = mb.mailbox AND state = 0 AND due > $6::bigint
         ORDER BY due, seq LIMIT 1)
       FROM mb LEFT JOIN u ON false`;

/**
 * Fast path: the sends, with the mids not created (NULL when all were: the common case costs
 * no text per send) and the rows of the mids that existed before (duplicate sends; only those
 * are looked up).
 */
const FAST_SEND_SQL = SY_SEND_SQL.replace(
  /SELECT mid FROM ins\s*$/,
  `SELECT ${COLS}, b.data, (SELECT array_agg(mid) FROM (SELECT mid FROM input EXCEPT SELECT mid FROM ins) x) AS not_created
   FROM (SELECT 1) one LEFT JOIN (messages m JOIN (SELECT mid FROM input EXCEPT SELECT mid FROM ins) t ON t.mid = m.mid
     LEFT JOIN blobs b ON b.key = m.blob) ON true`,
);

/**
 * Fast path, a batch with both sends and claims: one statement for both. The claims first take
 * the due rows that were there before the batch (as `SY_CLAIMS_SQL`: oldest first, `SKIP
 * LOCKED`); what they asked for beyond that goes to the batch's own new messages that are due
 * at once, in send order (they come after every older row). Those are inserted already leased:
 * one row version instead of an insert and then an update — no entry in `messages_ready`, no
 * second entry in the mid index, no row lock — for what is, with consumers waiting, nearly
 * every message. A new message whose mid exists already is not inserted, and its claim gets one
 * message fewer. Rows (`ClaimRow`, then `not_created` and `leased`): the claimed old rows; per
 * claimed mailbox when its next message comes due (delayed new messages included); and one row
 * with the mids not created and the new leased messages, as one text: idx, rn, the message's
 * position in the batch's sends, lid, fence, for each (the broker has the rest of them). One
 * text instead of a row per message: no row of 20 fields to send, parse and type for each.
 */
const SYF_SENDCLAIMS_SQL = `WITH input AS MATERIALIZED (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::integer[], $8::text[])
           WITH ORDINALITY AS t(mid, sender, receiver, client_time, delay_ms, blob, body_bytes, body, ord)),
       ${claimCtes(13, '$12::bigint', 'cmb')},
       taken AS MATERIALIZED (SELECT mailbox, count(*) AS k FROM c GROUP BY mailbox),
       nn AS MATERIALIZED (
         SELECT i.mid, i.ord, i.receiver AS mailbox,
           coalesce(t.k, 0) + row_number() OVER (PARTITION BY i.receiver ORDER BY i.ord) AS rn
         FROM input i JOIN cmb ON cmb.mailbox = i.receiver LEFT JOIN taken t ON t.mailbox = i.receiver
         WHERE i.delay_ms <= 0),
       na AS MATERIALIZED (
         SELECT s.*, nextval('fence_seq') AS fence, replace(gen_random_uuid()::text, '-', '') AS lid FROM (
           SELECT nn.mid, nn.ord, nn.rn, req.idx, req.lease_ms, req.consumer FROM nn
           JOIN req ON req.mailbox = nn.mailbox AND nn.rn > req.lo AND nn.rn <= req.hi ORDER BY req.idx, nn.rn) s),
       mb AS (
         INSERT INTO mailboxes (name, max_deliveries, retry_delay_ms, retention_ms, created_at)
         SELECT DISTINCT receiver, $9::integer, $10::bigint, $11::bigint, $12::bigint FROM input ORDER BY receiver
         ON CONFLICT (name) DO NOTHING),
       ins AS (
         INSERT INTO messages (mid, mailbox, sender, receiver, client_time, received_at, delay_ms, state, status, due,
           delivery_count, lid, fence, leased_until, fetch_time, consumer, blob, body_bytes)
         SELECT i.mid, i.receiver, i.sender, i.receiver, i.client_time, $12::bigint, i.delay_ms,
           CASE WHEN na.mid IS NULL THEN 0 ELSE 1 END, 8, CASE WHEN na.mid IS NULL THEN $12::bigint + i.delay_ms END,
           CASE WHEN na.mid IS NULL THEN 0 ELSE 1 END, na.lid, na.fence, $12::bigint + na.lease_ms,
           CASE WHEN na.mid IS NULL THEN NULL ELSE $12::bigint END, na.consumer, i.blob, i.body_bytes
         FROM input i LEFT JOIN na ON na.mid = i.mid ORDER BY i.ord
         ON CONFLICT (mid) DO NOTHING RETURNING mid, blob),
       bl AS (
         INSERT INTO blobs (key, refs, data)
         SELECT i.blob, count(*), convert_to(min(t.body), 'UTF8') FROM ins i JOIN input t ON t.mid = i.mid
         GROUP BY i.blob ORDER BY i.blob
         ON CONFLICT (key) DO UPDATE SET refs = blobs.refs + excluded.refs)
       SELECT u.*, NULL::text AS nd_mailbox, NULL::bigint AS next_due, NULL::text[] AS not_created, NULL::text AS leased
       FROM u
       UNION ALL
       SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, cmb.mailbox,
         least((SELECT due FROM messages WHERE mailbox = cmb.mailbox AND state = 0 AND due > $12::bigint
                ORDER BY due, seq LIMIT 1),
               (SELECT min($12::bigint + delay_ms) FROM input WHERE receiver = cmb.mailbox AND delay_ms > 0)), NULL, NULL
       FROM cmb
       UNION ALL
       SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         (SELECT array_agg(mid) FROM (SELECT mid FROM input EXCEPT SELECT mid FROM ins) x),
         (SELECT string_agg(concat_ws(',', na.idx, na.rn, na.ord, na.lid, na.fence), ',') FROM na JOIN ins ON ins.mid = na.mid)`;

/**
 * How every batch transaction starts. Plans come from prepared statements, and a cached generic
 * plan keeps the costs of the moment it was made: one planned while `messages` was small would
 * scan the whole table on every batch once it is large (there may be no statistics either, if
 * autovacuum is off). Every statement of a batch reaches its rows through an index, so a batch
 * forbids sequential scans, and uses generic plans (no planning per batch). No JIT either: a
 * batch's statements are short, and a plan that costs a forbidden scan would pass the JIT threshold.
 */
const BEGIN_SQL =
  'BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL jit = off';
/** Results of `BEGIN_SQL`. */
const BEGIN_RESULTS = 4;

/**
 * Fast path: confirms (of distinct mids); returns one row, the mids it did not confirm (NULL
 * when it confirmed them all: the common case costs no row per confirm). The rows are found
 * through the unique index on mid (`= ANY`), each (mid, lid) pair checked against the batch's
 * pairs. The lease test is written so that no index can serve it (a CASE): otherwise the
 * planner, with no statistics to say how many rows are leased, may scan `messages_leased` for
 * every row whose lease is still running — dead versions included until a VACUUM, so with 30 s
 * leases every claim of the last 30 s — on every batch.
 */
const FAST_CONFIRM_SQL = `WITH u AS (
    UPDATE messages m SET state = 2, status = 1, leased_until = NULL, expires_at = $3::bigint + mb.retention_ms,
      history = m.history || json_build_object('n', m.delivery_count, 'c', coalesce(m.consumer, ''),
        'f', m.fetch_time, 'e', $3::bigint, 'o', 1)::text || E'\\n'
    FROM mailboxes mb
    WHERE m.mid = ANY($1::text[]) AND (m.mid, m.lid) IN (SELECT * FROM unnest($1::text[], $2::text[]))
      AND CASE WHEN m.state = 1 THEN m.leased_until > $3::bigint ELSE false END AND mb.name = m.mailbox
    RETURNING m.mid)
  SELECT array_agg(a.mid) AS refused FROM unnest($1::text[]) AS a(mid) WHERE a.mid NOT IN (SELECT mid FROM u)`;

/** Which of the mids exist. */
const FOUND_SQL = 'SELECT mid FROM messages WHERE mid = ANY($1::text[])';

/**
 * One NOTIFY for the candidate mailboxes that still have due messages after the
 * batch's claims (or got messages due later: `sticky`). "Has a due message" is a probe of one
 * index entry per mailbox (LATERAL … LIMIT 1): an EXISTS could be planned, in a generic plan,
 * as a hash of every due message of the schema, built on every batch.
 */
const FAST_NOTIFY_SQL = `SELECT pg_notify($1, json_build_object('s', $2::text, 'm', array_agg(c.mb))::text)
  FROM unnest($3::text[], $4::boolean[]) AS c(mb, sticky)
  LEFT JOIN LATERAL (SELECT true AS due FROM messages WHERE mailbox = c.mb AND state = 0 AND due <= $5::bigint LIMIT 1) d
    ON true
  WHERE c.sticky OR d.due
  HAVING count(*) > 0`;

/**
 * A list of strings for a `text[]` parameter of the fast path, written as one string literal that
 * `string_to_array` splits at commas (`EXECUTE`'s arguments are evaluated once, then coerced to
 * the statement's parameter types), when no element holds a comma: mids, lids and blob keys are
 * hex, names have no comma, and a canonical body encodes one as %2C. Against an array literal:
 * no quotes and escapes per element to write in the broker, and PostgreSQL splits at a byte with
 * `memchr` instead of running `array_in`'s quote-aware parser over every character.
 */
class TextList {
  constructor(readonly items: readonly string[]) {}
}

/** The SQL for a `TextList`: `string_to_array('a,b,c', ',')`, or an array literal. */
function textListSql(xs: readonly string[]): string {
  // One element (possibly empty: string_to_array('') is an empty array) or a comma somewhere:
  // the array literal.
  if (xs.length < 2) return literal(xs);
  for (let i = 0; i < xs.length; i++) if (xs[i]!.includes(',')) return literal(xs);
  return `string_to_array(${literal(xs.join(','))}, ',')`;
}

/** A value as an SQL literal (strings, finite numbers, booleans, null, and one-dimensional arrays of them). */
function literal(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (v instanceof TextList) return textListSql(v.items);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new MailboxStoreError(`cannot inline the number ${v}`);
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return `'${v.includes("'") ? v.replaceAll("'", "''") : v}'`;
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'number' && Number.isFinite(x))) return `'{${v.join(',')}}'`;
    // One pass: each element quoted for the array literal and, at once, for the SQL string.
    let out = "'{";
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (i > 0) out += ',';
      if (x === null || x === undefined) out += 'NULL';
      else if (typeof x === 'string') out += `"${arrayText(x)}"`;
      else if ((typeof x === 'number' && Number.isFinite(x)) || typeof x === 'boolean') out += String(x);
      else throw new MailboxStoreError('cannot inline an array element');
    }
    return out + "}'";
  }
  throw new MailboxStoreError(`cannot inline a ${typeof v}`);
}

/** A string as an element of an array literal inside an SQL string literal (without the double quotes). */
function arrayText(x: string): string {
  let e = x;
  if (e.includes('\\')) e = e.replaceAll('\\', '\\\\');
  if (e.includes('"')) e = e.replaceAll('"', '\\"');
  if (e.includes("'")) e = e.replaceAll("'", "''");
  return e;
}

/**
 * The fast path's statements, prepared once per connection (SQL PREPARE, so the one simple
 * query of a batch can EXECUTE them and still use cached plans). Parameter types come from
 * the casts in the statements.
 */
const PREPARE_FAST = [
  `PREPARE syf_send AS ${FAST_SEND_SQL}`,
  `PREPARE syf_confirm AS ${FAST_CONFIRM_SQL}`,
  `PREPARE syf_claims AS ${SY_CLAIMS_SQL}`,
  `PREPARE syf_sendclaims AS ${SYF_SENDCLAIMS_SQL}`,
  `PREPARE syf_notify AS ${FAST_NOTIFY_SQL}`,
].join(';\n');

/** `EXECUTE name(literal, …)`. */
function execute(name: string, values: readonly unknown[]): string {
  return `EXECUTE ${name}(${values.map(literal).join(', ')})`;
}

interface Row extends MessageRow {
  data?: Buffer | null;
}

interface SettingsRow extends Row {
  max_deliveries: number;
  retry_delay_ms: number;
  retention_ms: number;
}

function message(r: Row): Message {
  return { ...headerOfRow(r), body: decodeBody(r.data?.toString('utf8') ?? '') };
}

function settingsOf(r: SettingsRow): MailboxSettings {
  return { maxDeliveries: r.max_deliveries, retryDelayMs: r.retry_delay_ms, retentionMs: r.retention_ms };
}

/** int8 and numeric as JS numbers (every value stored here is below 2^53). */
const types = {
  getTypeParser(oid: number, format?: string): (value: string) => unknown {
    if (oid === 20 || oid === 1700) return Number;
    return (pg.types.getTypeParser as (oid: number, format?: string) => (value: string) => unknown)(
      oid,
      format,
    );
  },
};

/** Splits a `postgres://` URL into the pg connection string and this store's own parameters. */
export function parsePostgresUrl(url: string): { connectionString: string; options: PostgresStoreOptions } {
  let u: URL;
  try {
    u = new URL(url);
  } catch (error) {
    throw new MailboxInvalidArgumentError(`store: ${url} is not a valid postgres:// URL`, { cause: error });
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:')
    throw new MailboxInvalidArgumentError(`store: ${url} is not a postgres:// URL`);
  const options: { schema?: string; poolSize?: number; concurrentBatches?: number } = {};
  const schema = u.searchParams.get('schema');
  if (schema !== null) options.schema = schema;
  const pool = u.searchParams.get('poolSize');
  if (pool !== null) options.poolSize = Number(pool);
  const batches = u.searchParams.get('concurrentBatches');
  if (batches !== null) options.concurrentBatches = Number(batches);
  u.searchParams.delete('concurrentBatches');
  u.searchParams.delete('schema');
  u.searchParams.delete('poolSize');
  return { connectionString: u.toString(), options };
}

function checkOptions(o: PostgresStoreOptions): Required<PostgresStoreOptions> {
  const schema = o.schema ?? 'switchyard';
  if (typeof schema !== 'string' || !SCHEMA_RE.test(schema))
    throw new MailboxInvalidArgumentError(
      'schema must be 1–63 letters, digits or _ (not starting with a digit)',
    );
  const int = (name: string, v: number | undefined, def: number, min: number, max: number): number => {
    const n = v ?? def;
    if (!Number.isInteger(n) || n < min || n > max)
      throw new MailboxInvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
  const poolSize = int('poolSize', o.poolSize, 4, 1, 100);
  return {
    schema,
    poolSize,
    concurrentBatches: int('concurrentBatches', o.concurrentBatches, Math.min(2, poolSize), 1, poolSize),
    clockResyncMs: int('clockResyncMs', o.clockResyncMs, 10_000, 0, 3_600_000),
    maxRetries: int('maxRetries', o.maxRetries, 5, 0, 100),
    connectTimeoutMs: int('connectTimeoutMs', o.connectTimeoutMs, 5000, 1, 600_000),
    presenceMs: int('presenceMs', o.presenceMs, 5000, 10, 600_000),
  };
}

function storeError(what: string, error: unknown): MailboxStoreError | MailboxClosedError {
  if (error instanceof MailboxStoreError || error instanceof MailboxClosedError) return error;
  return new MailboxStoreError(`${what}: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
}

type Query = <R extends QueryResultRow>(text: string, values?: unknown[]) => Promise<R[]>;

class PostgresBlobStore implements BlobStore {
  readonly #q: Query;
  constructor(q: Query) {
    this.#q = q;
  }
  async put(key: string, data: Uint8Array | string): Promise<void> {
    await this.#q(
      'INSERT INTO blobs (key, refs, data) VALUES ($1, 1, $2) ON CONFLICT (key) DO UPDATE SET refs = blobs.refs + 1',
      [key, Buffer.from(data)],
    );
  }
  async get(key: string): Promise<Buffer | null> {
    const rows = await this.#q<{ data: Buffer }>('SELECT data FROM blobs WHERE key = $1', [key]);
    return rows[0]?.data ?? null;
  }
  async refCount(key: string): Promise<number | null> {
    const rows = await this.#q<{ refs: number }>('SELECT refs FROM blobs WHERE key = $1', [key]);
    return rows[0]?.refs ?? null;
  }
  async updateRefCounts(deltas: ReadonlyMap<string, number>): Promise<void> {
    if (deltas.size === 0) return;
    const keys = [...deltas.keys()].sort();
    await this.#q(
      `UPDATE blobs b SET refs = b.refs + d.delta FROM unnest($1::text[], $2::bigint[]) AS d(key, delta)
       WHERE b.key = d.key`,
      [keys, keys.map((k) => deltas.get(k)!)],
    );
  }
  async collect(limit: number): Promise<number> {
    const rows = await this.#q<{ n: number }>(
      `WITH d AS (DELETE FROM blobs WHERE key IN
         (SELECT key FROM blobs WHERE refs <= 0 LIMIT $1 FOR UPDATE SKIP LOCKED) AND refs <= 0 RETURNING 1)
       SELECT count(*) AS n FROM d`,
      [limit],
    );
    return rows[0]!.n;
  }
  async stats(): Promise<{ count: number; bytes: number }> {
    const rows = await this.#q<{ count: number; bytes: number }>(
      'SELECT count(*) AS count, coalesce(sum(length(data)), 0)::bigint AS bytes FROM blobs',
    );
    return { count: rows[0]!.count, bytes: rows[0]!.bytes };
  }
}

/**
 * One batch in progress. `wake`: the mailboxes whose waiters other processes should wake;
 * true when that must happen whatever comes later in the batch (messages due later), false
 * when a later claim of the batch that drains the mailbox makes it unnecessary.
 */
interface BatchCtx {
  readonly client: PoolClient;
  readonly now: number;
  readonly wake: Map<string, boolean>;
}

/** A `MessageStore` (and its `BlobStore`) in one schema of a PostgreSQL database. */
export class PostgresStore implements MessageStore {
  readonly blobs: BlobStore;
  /** The database clock (a broker opened on a `postgres://` URL uses it unless given a clock). */
  readonly clock: DatabaseClock;
  readonly schema: string;
  readonly concurrentBatches: number;
  readonly #pool: pg.Pool;
  readonly #o: Required<PostgresStoreOptions>;
  readonly #id = randomBytes(8).toString('hex');
  readonly #channel: string;
  readonly #listeners = new Set<(mailboxes: readonly string[]) => void>();
  #listener: pg.Client | undefined;
  readonly #config: ClientConfig;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Other stores heard on the channel: id → until when they count as present. */
  readonly #peers = new Map<string, number>();
  #openedAt = 0;
  #presenceTimer: NodeJS.Timeout | undefined;
  /** Connections that have the fast path's statements prepared. */
  readonly #prepared = new WeakSet<PoolClient>();
  #reconnectTimer: NodeJS.Timeout | undefined;

  private constructor(
    pool: pg.Pool,
    config: ClientConfig,
    o: Required<PostgresStoreOptions>,
    clock: DatabaseClock,
  ) {
    this.#pool = pool;
    this.#config = config;
    this.#o = o;
    this.schema = o.schema;
    this.concurrentBatches = o.concurrentBatches;
    this.clock = clock;
    this.#channel = `switchyard_mailbox_${o.schema}`.slice(0, 63);
    this.blobs = new PostgresBlobStore((text, values) => this.#query(text, values));
  }

  /**
   * Connects to the database `url` names (`postgres://user@host:port/db?schema=…&poolSize=…`),
   * creates or migrates the schema, starts the database clock and LISTENs for wake-ups.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const parsed = parsePostgresUrl(url);
    const o = checkOptions({ ...parsed.options, ...options });
    const config: ClientConfig = {
      connectionString: parsed.connectionString,
      connectionTimeoutMillis: o.connectTimeoutMs,
      // Literals of the fast path assume standard strings (backslashes are not escapes).
      options: `-c search_path=${o.schema} -c standard_conforming_strings=on`,
      types,
    };
    const pool = new pg.Pool({ ...config, max: o.poolSize });
    pool.on('error', (error) => {
      // An idle connection died (server restart): the pool drops it; the next batch reconnects.
      if (errorChannel.hasSubscribers) errorChannel.publish({ error });
    });
    let store: PostgresStore | undefined;
    try {
      const client = await pool.connect();
      try {
        await migrate(client, o.schema);
      } finally {
        client.release();
      }
      const clock = await DatabaseClock.start(
        {
          dbNow: async () => {
            const r = await pool.query<{ t: number }>(
              'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS t',
            );
            return r.rows[0]!.t;
          },
        },
        o.clockResyncMs,
      );
      store = new PostgresStore(pool, config, o, clock);
      await store.#listen();
      store.#startPresence();
      return store;
    } catch (error) {
      if (store !== undefined) await store.close();
      else await pool.end().catch(() => {});
      throw storeError(`cannot open the PostgreSQL store (schema ${o.schema})`, error);
    }
  }

  async #query<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
    if (this.#closed) throw new MailboxClosedError('the PostgreSQL store is closed');
    try {
      return (await this.#pool.query<R>(text, values)).rows;
    } catch (error) {
      throw storeError('the PostgreSQL store failed', error);
    }
  }

  // ---- LISTEN / NOTIFY ----------------------------------------------------------------

  async #listen(): Promise<void> {
    const client = new pg.Client(this.#config);
    client.on('error', (error) => {
      if (errorChannel.hasSubscribers) errorChannel.publish({ error });
      this.#reconnect(client);
    });
    client.on('end', () => this.#reconnect(client));
    client.on('notification', (n) => this.#onNotification(n));
    await client.connect();
    await client.query(`LISTEN ${quoteIdent(this.#channel)}`);
    this.#listener = client;
  }

  /**
   * The LISTEN connection broke: reconnect every second until it works. Notifications sent
   * meanwhile are lost; a long poll waiting for one still ends at its deadline or its next due time.
   */
  #reconnect(client: pg.Client): void {
    if (this.#closed || this.#listener !== client) return;
    this.#listener = undefined;
    client.end().catch(() => {});
    this.#scheduleListen();
  }

  #scheduleListen(): void {
    if (this.#closed || this.#reconnectTimer !== undefined) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      this.#listen().catch((error: unknown) => {
        if (errorChannel.hasSubscribers) errorChannel.publish({ error });
        this.#scheduleListen();
      });
    }, 1000);
    this.#reconnectTimer.unref();
  }

  // ---- presence: who else listens --------------------------------------------------------

  /** Announces this store (asking the others to answer), then again every `presenceMs`. */
  #startPresence(): void {
    this.#openedAt = Date.now();
    this.#announce(true);
    this.#presenceTimer = setInterval(() => this.#announce(false), this.#o.presenceMs);
    this.#presenceTimer.unref();
  }

  #announce(hello: boolean): void {
    if (this.#closed) return;
    this.#pool
      .query('SELECT pg_notify($1, $2)', [this.#channel, JSON.stringify({ s: this.#id, p: hello ? 1 : 0 })])
      .catch((error: unknown) => {
        if (errorChannel.hasSubscribers) errorChannel.publish({ error });
      });
  }

  /** Whether another store may be listening: one was heard lately, or this one opened lately. */
  #hasPeers(): boolean {
    const now = Date.now();
    if (now - this.#openedAt < 2 * this.#o.presenceMs) return true;
    for (const [id, until] of this.#peers) {
      if (until > now) return true;
      this.#peers.delete(id);
    }
    return false;
  }

  #onNotification(n: Notification): void {
    if (n.payload === undefined) return;
    let parsed: { s?: unknown; m?: unknown; p?: unknown };
    try {
      parsed = JSON.parse(n.payload) as { s?: unknown; m?: unknown; p?: unknown };
    } catch {
      return;
    }
    if (typeof parsed.s !== 'string' || parsed.s === this.#id) return;
    this.#peers.set(parsed.s, Date.now() + 3 * this.#o.presenceMs);
    if (parsed.p === 1) this.#announce(false);
    if (!Array.isArray(parsed.m)) return;
    const mailboxes = parsed.m.filter((m): m is string => typeof m === 'string');
    if (notifyChannel.hasSubscribers) notifyChannel.publish({ received: mailboxes });
    for (const l of this.#listeners) l(mailboxes);
  }

  watch(listener: (mailboxes: readonly string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The NOTIFY of a batch, run just before its COMMIT (so it costs no commit of its own, and
   * is delivered only if the batch commits): one per commit, naming the mailboxes that still
   * have due messages once the batch's claims ran (a claim may have taken them all), or that
   * got messages due later (`sticky`: delays, retries). Undefined when there is nothing to say.
   */
  #notifySql(wake: ReadonlyMap<string, boolean>, now: number): string | undefined {
    if (wake.size === 0 || !this.#hasPeers()) return undefined;
    const names: string[] = [];
    const sticky: boolean[] = [];
    let bytes = 0;
    for (const [m, s] of wake) {
      // NOTIFY payloads are limited (8000 bytes): past that, the rest waits for the polls' deadlines.
      if (bytes + m.length + 3 > NOTIFY_BYTES) break;
      names.push(m);
      sticky.push(s);
      bytes += m.length + 3;
    }
    return execute('syf_notify', [this.#channel, this.#id, names, sticky, now]);
  }

  async #prepare(client: PoolClient): Promise<void> {
    if (this.#prepared.has(client)) return;
    await client.query(PREPARE_FAST);
    this.#prepared.add(client);
  }

  // ---- the batch ----------------------------------------------------------------------

  async apply(ops: readonly StoreOp[], nowMs: number): Promise<StoreResult[]> {
    if (this.#closed) throw new MailboxClosedError('the PostgreSQL store is closed');
    let client: PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw storeError('cannot connect to PostgreSQL', error);
    }
    let broken = false;
    try {
      for (let attempt = 0; ; attempt++) {
        const ctx: BatchCtx = { client, now: nowMs, wake: new Map() };
        try {
          const fast = this.#fastText(ops, nowMs);
          if (fast !== undefined) return await this.#fastApply(client, ops, nowMs, fast);
          await client.query(BEGIN_SQL);
          const results = await this.#applyAll(ctx, ops);
          const notify = this.#notifySql(ctx.wake, nowMs);
          if (notify !== undefined) await this.#prepare(client);
          await client.query(notify === undefined ? 'COMMIT' : `${notify};\nCOMMIT`);
          return results;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {
            broken = true;
          });
          const code = (error as { code?: unknown }).code;
          if (!broken && typeof code === 'string' && RETRYABLE.has(code) && attempt < this.#o.maxRetries)
            continue;
          throw storeError('the PostgreSQL store failed to commit a batch', error);
        }
      }
    } finally {
      client.release(broken);
    }
  }

  /**
   * The common batch — only sends, confirms (of distinct mids) and claims — as one simple query:
   * BEGIN; EXECUTE the sends; the confirms; the claims; the NOTIFY; COMMIT — one round trip, in
   * the order the regrouped slow path uses, on statements prepared once per connection (values
   * as literals: `execute`). Undefined when the batch has another shape.
   */
  #fastText(ops: readonly StoreOp[], now: number): FastPlan | undefined {
    const sends: Extract<StoreOp, { kind: 'send' }>[] = [];
    const confirms: Extract<StoreOp, { kind: 'ack' }>[] = [];
    const claims: Extract<StoreOp, { kind: 'claim' }>[] = [];
    const mids = new Set<string>();
    for (const op of ops) {
      if (op.kind === 'send') {
        if (sends.length > 0 && !sameSettings(sends[0]!.defaults, op.defaults)) return undefined;
        sends.push(op);
      } else if (op.kind === 'ack' && op.status === 1 && !mids.has(op.mid)) {
        mids.add(op.mid);
        confirms.push(op);
      } else if (op.kind === 'claim') claims.push(op);
      else return undefined;
    }
    const parts = [BEGIN_SQL];
    const combined = sends.length > 0 && claims.length > 0;
    const plan: FastPlan = { sql: '', sends, confirms, claims, first: [], combined, wake: new Map() };
    // Confirms first: they touch leased rows only, so they commute with the sends and claims.
    if (confirms.length > 0)
      parts.push(
        execute('syf_confirm', [
          new TextList(confirms.map((op) => op.mid)),
          new TextList(confirms.map((op) => op.lid)),
          now,
        ]),
      );
    let send: unknown[] | undefined;
    if (sends.length > 0) {
      const first = new Map<string, NewMessage>();
      for (const op of sends) if (!first.has(op.message.mid)) first.set(op.message.mid, op.message);
      const ms = [...first.values()];
      plan.first = ms;
      send = sendParams(ms, sends[0]!.defaults, now);
      // mids, senders, receivers, blob keys, bodies.
      for (const i of [0, 1, 2, 5, 7]) send[i] = new TextList(send[i] as string[]);
    }
    const claim =
      claims.length > 0
        ? [
            new TextList(claims.map((op) => op.mailbox)),
            claims.map((op) => op.max),
            claims.map((op) => op.leaseMs),
            claims.map((op) => pgText(op.consumer)),
            claims.map((_, i) => i),
          ]
        : undefined;
    if (send !== undefined && claim !== undefined) parts.push(execute('syf_sendclaims', [...send, ...claim]));
    else if (send !== undefined) parts.push(execute('syf_send', send));
    else if (claim !== undefined) parts.push(execute('syf_claims', [...claim, now]));
    for (const op of sends)
      plan.wake.set(
        op.message.receiver,
        (plan.wake.get(op.message.receiver) ?? false) || op.message.delayMs > 0,
      );
    const notify = this.#notifySql(plan.wake, now);
    if (notify !== undefined) parts.push(notify);
    parts.push('COMMIT');
    plan.sql = parts.join(';\n');
    return plan;
  }

  async #fastApply(
    client: PoolClient,
    ops: readonly StoreOp[],
    now: number,
    plan: FastPlan,
  ): Promise<StoreResult[]> {
    await this.#prepare(client);
    // Rows as arrays: the claims' rows are read by position (`ClaimRow`), without an object per row.
    const res = (await client.query({ text: plan.sql, rowMode: 'array' })) as unknown as QueryResult<
      unknown[]
    >[];
    let k = BEGIN_RESULTS;
    const out = new Map<StoreOp, StoreResult>();
    if (plan.confirms.length > 0) {
      const failed = (res[k++]!.rows as [refused: string[] | null][])[0]![0] ?? [];
      const refused = new Set(failed);
      // After the COMMIT: a row that existed then may be gone by now (expired, purged), which
      // answers not-found where lease-invalid was as true a moment before; both refuse the ack.
      const found = new Set<string>();
      if (failed.length > 0)
        for (const r of (await client.query<{ mid: string }>(FOUND_SQL, [failed])).rows) found.add(r.mid);
      for (const op of plan.confirms)
        out.set(op, {
          kind: 'ack',
          outcome: !refused.has(op.mid) ? 'ok' : found.has(op.mid) ? 'lease-invalid' : 'not-found',
          wake: null,
        });
    }
    let claimRows: ClaimRow[] | undefined;
    let leasedBodies: Map<string, string> | undefined;
    if (plan.sends.length > 0) {
      const result = res[k++]!;
      const rows = result.rows;
      const existing = new Map<string, Message>();
      let notCreated: Set<string>;
      if (plan.combined) {
        // ClaimRow rows, and one row (no mid, no mailbox) holding the mids not created and the
        // new messages leased at insert.
        claimRows = [];
        notCreated = new Set();
        let leased: string | null = null;
        for (const row of rows)
          if (row[2] === null && row[16] === null) {
            for (const mid of (row[18] as string[] | null) ?? []) notCreated.add(mid);
            leased = row[19] as string | null;
          } else claimRows.push(row as unknown as ClaimRow);
        leasedBodies = new Map();
        if (leased !== null) {
          // idx, rn, position in plan.first (from 1), lid, fence: numbers and hex, no comma inside.
          const f = leased.split(',');
          for (let j = 0; j + 4 < f.length; j += 5) {
            // A new message leased at insert: its fields are the send's.
            const m = plan.first[Number(f[j + 2]) - 1]!;
            claimRows.push([
              Number(f[j]),
              Number(f[j + 1]),
              m.mid,
              m.receiver,
              m.sender,
              m.receiver,
              m.clientTimeMs,
              now,
              m.delayMs,
              MessageStatus.NotDelivered,
              1,
              f[j + 3]!,
              Number(f[j + 4]),
              m.blobKey,
              m.bodyBytes,
              null,
              null,
              null,
            ]);
            leasedBodies.set(m.mid, m.body);
          }
        }
      } else {
        // COLS, data, not_created: one row, plus one per mid that existed before (duplicate sends).
        notCreated = new Set((rows[0]![rows[0]!.length - 1] as string[] | null) ?? []);
        for (const row of rows)
          if (row[1] !== null) {
            const named = objectRow<Row>(result.fields, row);
            existing.set(named.mid, message(named));
          }
      }
      const made = new Map<string, Message>();
      const missing: string[] = [];
      for (const op of plan.sends) {
        const m = op.message;
        if (!notCreated.has(m.mid) && !made.has(m.mid)) {
          const msg = newMessage(m, now);
          made.set(m.mid, msg);
          out.set(op, { kind: 'send', created: true, message: msg });
        } else {
          const stored = made.get(m.mid) ?? existing.get(m.mid);
          if (stored === undefined) missing.push(m.mid);
          else out.set(op, { kind: 'send', created: false, message: stored });
        }
      }
      if (missing.length > 0) {
        // Created by another broker's transaction that committed while ours waited on it.
        const r = await client.query<Row>(
          `SELECT ${COLS}, b.data FROM messages m LEFT JOIN blobs b ON b.key = m.blob WHERE m.mid = ANY($1::text[])`,
          [missing],
        );
        for (const row of r.rows) existing.set(row.mid, message(row));
        for (const op of plan.sends) {
          if (out.has(op)) continue;
          const stored = existing.get(op.message.mid);
          if (stored === undefined)
            throw new MailboxStoreError(`message ${op.message.mid} vanished during its send`);
          out.set(op, { kind: 'send', created: false, message: stored });
        }
      }
    }
    if (plan.claims.length > 0) {
      const rs = claimResults(plan.claims, claimRows ?? (res[k]!.rows as ClaimRow[]), now, leasedBodies);
      plan.claims.forEach((op, i) => out.set(op, rs[i]!));
    }
    return ops.map((op) => {
      const r = out.get(op);
      if (r !== undefined) return r;
      // A confirm of a mid already confirmed earlier in the batch: the lease is gone.
      const stale: StoreResult = { kind: 'ack', outcome: 'lease-invalid', wake: null };
      return stale;
    });
  }

  /**
   * Applies the ops of a batch. Between "barrier" ops (configure, redrive, purge), ops that
   * commute are regrouped so one statement does many: every send first (one INSERT per set of
   * mailbox defaults), then every confirm whose mid no other op of the segment touches (one
   * UPDATE), then every claim (one statement), then the rest in order. Sends before claims only let a claim see messages that
   * arrived with it; a confirm commutes with claims, timeouts and other confirms.
   */
  async #applyAll(ctx: BatchCtx, ops: readonly StoreOp[]): Promise<StoreResult[]> {
    const results: StoreResult[] = new Array<StoreResult>(ops.length);
    let start = 0;
    while (start < ops.length) {
      if (isBarrier(ops[start]!)) {
        results[start] = await this.#applyOne(ctx, ops[start]!);
        start++;
        continue;
      }
      let end = start;
      while (end < ops.length && !isBarrier(ops[end]!)) end++;
      const sends = new Map<string, number[]>();
      const touched = new Map<string, number>();
      for (let i = start; i < end; i++) {
        const op = ops[i]!;
        if (op.kind === 'send') {
          const d = op.defaults;
          const key = `${d.maxDeliveries}/${d.retryDelayMs}/${d.retentionMs}`;
          const list = sends.get(key);
          if (list === undefined) sends.set(key, [i]);
          else list.push(i);
        } else if (op.kind === 'ack' || op.kind === 'extend')
          touched.set(op.mid, (touched.get(op.mid) ?? 0) + 1);
      }
      for (const list of sends.values()) {
        const rs = await this.#sends(
          ctx,
          list.map((i) => ops[i] as Extract<StoreOp, { kind: 'send' }>),
        );
        list.forEach((i, k) => (results[i] = rs[k]!));
      }
      const confirms: number[] = [];
      for (let i = start; i < end; i++) {
        const op = ops[i]!;
        if (op.kind === 'ack' && op.status === 1 && touched.get(op.mid) === 1) confirms.push(i);
      }
      if (confirms.length > 0) {
        const rs = await this.#confirms(
          ctx,
          confirms.map((i) => ops[i] as Extract<StoreOp, { kind: 'ack' }>),
        );
        confirms.forEach((i, k) => (results[i] = rs[k]!));
      }
      const claims: number[] = [];
      for (let i = start; i < end; i++) if (ops[i]!.kind === 'claim') claims.push(i);
      if (claims.length > 1) {
        const rs = await this.#claims(
          ctx,
          claims.map((i) => ops[i] as Extract<StoreOp, { kind: 'claim' }>),
        );
        claims.forEach((i, k) => (results[i] = rs[k]!));
      }
      for (let i = start; i < end; i++)
        if (results[i] === undefined) results[i] = await this.#applyOne(ctx, ops[i]!);
      start = end;
    }
    return results;
  }

  async #sends(ctx: BatchCtx, run: Extract<StoreOp, { kind: 'send' }>[]): Promise<StoreResult[]> {
    const { client, now } = ctx;
    // Only the first of identical mids is inserted; the others are duplicates.
    const first = new Map<string, NewMessage>();
    for (const op of run) if (!first.has(op.message.mid)) first.set(op.message.mid, op.message);
    const ms = [...first.values()];
    const d = run[0]!.defaults;
    const r = await client.query<{ mid: string }>(
      {
        name: 'sy_send',
        text: SY_SEND_SQL,
      },
      sendParams(ms, d, now),
    );
    const created = new Set(r.rows.map((row) => row.mid));
    const existing = new Map<string, Message>();
    // Ops that did not create their message (it existed, or an earlier op of the run made it) return the row.
    const seen = new Set<string>();
    const fresh = run.map((op) => {
      const isNew = created.has(op.message.mid) && !seen.has(op.message.mid);
      seen.add(op.message.mid);
      return isNew;
    });
    const others = run.filter((_, k) => !fresh[k]).map((op) => op.message.mid);
    if (others.length > 0) {
      const rows = await client.query<Row>(
        `SELECT ${COLS}, b.data FROM messages m LEFT JOIN blobs b ON b.key = m.blob WHERE m.mid = ANY($1::text[])`,
        [[...new Set(others)]],
      );
      for (const row of rows.rows) existing.set(row.mid, message(row));
    }
    const results: StoreResult[] = [];
    for (let k = 0; k < run.length; k++) {
      const m = run[k]!.message;
      if (fresh[k]) {
        if (m.delayMs > 0) ctx.wake.set(m.receiver, true);
        else if (!ctx.wake.has(m.receiver)) ctx.wake.set(m.receiver, false);
        results.push({ kind: 'send', created: true, message: newMessage(m, now) });
      } else {
        const stored = existing.get(m.mid);
        if (stored === undefined) throw new MailboxStoreError(`message ${m.mid} vanished during its send`);
        results.push({ kind: 'send', created: false, message: stored });
      }
    }
    return results;
  }

  /**
   * Many claims in one statement: per mailbox, the oldest due rows for all its claims at once
   * (SKIP LOCKED), dealt out in op order; then, for the mailboxes where some claim got nothing,
   * when their next message comes due.
   */
  async #claims(ctx: BatchCtx, ops: Extract<StoreOp, { kind: 'claim' }>[]): Promise<StoreResult[]> {
    const { client, now } = ctx;
    const r = await client.query<ClaimRow>({
      name: 'sy_claims',
      text: SY_CLAIMS_SQL,
      rowMode: 'array',
      values: [
        ops.map((op) => op.mailbox),
        ops.map((op) => op.max),
        ops.map((op) => op.leaseMs),
        ops.map((op) => pgText(op.consumer)),
        ops.map((_, i) => i),
        now,
      ],
    });
    const results = claimResults(ops, r.rows, now);
    // A claim that got fewer than asked left nothing due, so the sends of this batch need wake no one.
    ops.forEach((op, i) => {
      if (results[i]!.messages.length < op.max && ctx.wake.get(op.mailbox) === false)
        ctx.wake.delete(op.mailbox);
    });
    return results;
  }

  async #confirms(ctx: BatchCtx, run: Extract<StoreOp, { kind: 'ack' }>[]): Promise<StoreResult[]> {
    const { client, now } = ctx;
    const r = await client.query<{ mid: string }>(
      {
        name: 'sy_confirm',
        text: `UPDATE messages m SET state = 2, status = 1, leased_until = NULL, expires_at = $3::bigint + mb.retention_ms,
         history = m.history || json_build_object('n', m.delivery_count, 'c', coalesce(m.consumer, ''),
           'f', m.fetch_time, 'e', $3::bigint, 'o', 1)::text || E'\\n'
       FROM unnest($1::text[], $2::text[]) AS a(mid, lid), mailboxes mb
       WHERE m.mid = a.mid AND m.lid = a.lid AND m.state = 1 AND m.leased_until > $3::bigint AND mb.name = m.mailbox
       RETURNING m.mid`,
      },
      [run.map((op) => op.mid), run.map((op) => op.lid), now],
    );
    const ok = new Set(r.rows.map((row) => row.mid));
    const failed = run.filter((op) => !ok.has(op.mid)).map((op) => op.mid);
    const found = new Set<string>();
    if (failed.length > 0) {
      const rows = await client.query<{ mid: string }>(
        'SELECT mid FROM messages WHERE mid = ANY($1::text[])',
        [failed],
      );
      for (const row of rows.rows) found.add(row.mid);
    }
    return run.map((op) => ({
      kind: 'ack',
      outcome: ok.has(op.mid) ? 'ok' : found.has(op.mid) ? 'lease-invalid' : 'not-found',
      wake: null,
    }));
  }

  async #applyOne(ctx: BatchCtx, op: StoreOp): Promise<StoreResult> {
    const { client, now } = ctx;
    switch (op.kind) {
      case 'send':
        return (await this.#sends(ctx, [op]))[0]!;
      case 'claim': {
        // One round trip: the leased rows, or (when none is due) one row saying when the next comes due.
        const r = await client.query<Row & { rn: number | null; next_due: number | null }>({
          name: 'sy_claim',
          text: `WITH c AS MATERIALIZED (
             SELECT mid, seq, due FROM messages WHERE mailbox = $1 AND state = 0 AND due <= $2::bigint
             ORDER BY due, seq LIMIT $3 FOR UPDATE SKIP LOCKED),
           n AS MATERIALIZED (SELECT mid, row_number() OVER (ORDER BY due, seq) AS rn FROM c),
           f AS MATERIALIZED (SELECT mid, rn, nextval('fence_seq') AS fence FROM (SELECT mid, rn FROM n ORDER BY rn) s),
           u AS (
             UPDATE messages m SET state = 1, due = NULL, delivery_count = m.delivery_count + 1,
               lid = replace(gen_random_uuid()::text, '-', ''), fence = f.fence, leased_until = $2::bigint + $4::bigint,
               fetch_time = $2::bigint, consumer = $5
             FROM f WHERE m.mid = f.mid
             RETURNING f.rn, ${COLS}, (SELECT b.data FROM blobs b WHERE b.key = m.blob) AS data)
           SELECT u.*, NULL::bigint AS next_due FROM u
           UNION ALL
           SELECT u.*, (SELECT due FROM messages WHERE mailbox = $1 AND state = 0 ORDER BY due, seq LIMIT 1)
           FROM (SELECT 1) one LEFT JOIN u ON false WHERE NOT EXISTS (SELECT 1 FROM u)`,
          values: [op.mailbox, now, op.max, op.leaseMs, pgText(op.consumer)],
        });
        // Fewer than asked: nothing due is left, so the sends of this batch need wake no one.
        if (r.rows.length < op.max + (r.rows[0]?.rn === null ? 1 : 0) && ctx.wake.get(op.mailbox) === false)
          ctx.wake.delete(op.mailbox);
        if (r.rows.length === 1 && r.rows[0]!.rn === null)
          return { kind: 'claim', messages: [], nextDueMs: r.rows[0]!.next_due };
        const rows = r.rows.sort((a, b) => a.rn! - b.rn!);
        return { kind: 'claim', messages: rows.map(message), nextDueMs: null };
      }
      case 'ack': {
        if (op.status === 1) return (await this.#confirms(ctx, [op]))[0]!;
        const r = await this.#leaseRow(client, op.mid);
        const outcome = checkRowLease(r, op.lid, now);
        if (outcome !== 'ok') return { kind: 'ack', outcome, wake: null };
        const [mailbox] = await this.#retry(ctx, [r!], [now], op.status);
        return { kind: 'ack', outcome, wake: mailbox! };
      }
      case 'extend': {
        const r = await client.query<Row>(
          `UPDATE messages m SET leased_until = $3::bigint + $4::bigint
           WHERE m.mid = $1 AND m.lid = $2 AND m.state = 1 AND m.leased_until > $3::bigint
           RETURNING ${COLS}, (SELECT b.data FROM blobs b WHERE b.key = m.blob) AS data`,
          [op.mid, op.lid, now, op.leaseMs],
        );
        if (r.rows.length === 1) return { kind: 'extend', outcome: 'ok', message: message(r.rows[0]!) };
        const exists = await client.query('SELECT 1 FROM messages WHERE mid = $1', [op.mid]);
        return {
          kind: 'extend',
          outcome: exists.rows.length === 0 ? 'not-found' : 'lease-invalid',
          message: null,
        };
      }
      case 'reenqueue': {
        const r = await client.query<SettingsRow>(
          `SELECT ${COLS}, mb.max_deliveries, mb.retry_delay_ms, mb.retention_ms
           FROM messages m JOIN mailboxes mb ON mb.name = m.mailbox
           WHERE m.state = 1 AND m.leased_until <= $1::bigint ORDER BY m.leased_until, m.seq LIMIT $2
           FOR UPDATE OF m SKIP LOCKED`,
          [Math.min(now, op.asOfMs ?? now), op.limit],
        );
        const rows = r.rows;
        const wake = await this.#retry(
          ctx,
          rows,
          rows.map((row) => row.leased_until!),
          4,
        );
        return { kind: 'reenqueue', count: rows.length, wake: [...new Set(wake)] };
      }
      case 'expire': {
        const count = await this.#deleteRows(
          client,
          'SELECT mid FROM messages WHERE state = 2 AND expires_at <= $1::bigint ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED',
          [now, op.limit],
        );
        return { kind: 'expire', count };
      }
      case 'configure': {
        const s = op.settings;
        await client.query(
          `INSERT INTO mailboxes (name, max_deliveries, retry_delay_ms, retention_ms, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (name) DO UPDATE SET max_deliveries = excluded.max_deliveries,
           retry_delay_ms = excluded.retry_delay_ms, retention_ms = excluded.retention_ms`,
          [op.name, s.maxDeliveries, s.retryDelayMs, s.retentionMs, now],
        );
        return { kind: 'configure' };
      }
      case 'redrive': {
        await ensureMailboxes(client, [op.target], [op.defaults], now);
        const res = await client.query(
          `UPDATE messages SET mailbox = $1, status = 8, delivery_count = 0, due = $2::bigint
           WHERE mid IN (SELECT mid FROM messages WHERE mailbox = $3 AND state = 0 ORDER BY due, seq LIMIT $4
                         FOR UPDATE SKIP LOCKED)`,
          [op.target, now, op.mailbox, op.limit],
        );
        const count = res.rowCount ?? 0;
        if (count > 0) ctx.wake.set(op.target, true);
        return { kind: 'redrive', count, target: op.target };
      }
      case 'purge': {
        const count = await this.#deleteRows(
          client,
          'SELECT mid FROM messages WHERE mailbox = $1 AND state = 0 ORDER BY due, seq LIMIT $2 FOR UPDATE SKIP LOCKED',
          [op.mailbox, op.limit],
        );
        return { kind: 'purge', count };
      }
      default:
        throw new MailboxStoreError(
          `the PostgreSQL store does not know the operation ${(op as { kind: string }).kind}`,
        );
    }
  }

  /** Deletes the messages `select` picks (by mid) and takes one blob reference per message. */
  async #deleteRows(client: PoolClient, select: string, values: unknown[]): Promise<number> {
    const r = await client.query<{ n: number }>(
      `WITH d AS (DELETE FROM messages WHERE mid IN (${select}) RETURNING blob),
       c AS (SELECT blob, count(*) AS n FROM d GROUP BY blob),
       u AS (UPDATE blobs b SET refs = b.refs - c.n FROM c WHERE b.key = c.blob)
       SELECT coalesce(sum(n), 0)::bigint AS n FROM c`,
      values,
    );
    return r.rows[0]!.n;
  }

  /** The row of `mid` with its mailbox's settings, locked for this transaction. */
  async #leaseRow(client: PoolClient, mid: string): Promise<SettingsRow | undefined> {
    const r = await client.query<SettingsRow>(
      `SELECT ${COLS}, mb.max_deliveries, mb.retry_delay_ms, mb.retention_ms
       FROM messages m JOIN mailboxes mb ON mb.name = m.mailbox WHERE m.mid = $1 FOR UPDATE OF m`,
      [mid],
    );
    return r.rows[0];
  }

  /**
   * Ends the leases of `rows` as Rejected (2) or Timeout (4) attempts ending at `endedAt`: back
   * to the queue after the retry delay, or to the dead-letter mailbox. Returns each row's mailbox afterwards.
   */
  async #retry(ctx: BatchCtx, rows: SettingsRow[], endedAt: number[], outcome: 2 | 4): Promise<string[]> {
    if (rows.length === 0) return [];
    const mids: string[] = [];
    const statuses: number[] = [];
    const mailboxes: string[] = [];
    const dues: number[] = [];
    const lines: string[] = [];
    const dead = new Map<string, MailboxSettings>();
    rows.forEach((r, i) => {
      const at = endedAt[i]!;
      const settings = settingsOf(r);
      const next = afterAttempt(settings, r.mailbox, r.delivery_count, at);
      if (next.dead && !dead.has(next.mailbox)) dead.set(next.mailbox, settings);
      mids.push(r.mid);
      statuses.push(next.dead ? MessageStatus.Dead : outcome);
      mailboxes.push(next.mailbox);
      dues.push(next.dueMs);
      lines.push(formatAttempt(r.delivery_count, r.consumer ?? '', r.fetch_time ?? at, at, outcome));
      ctx.wake.set(next.mailbox, true);
    });
    if (dead.size > 0) await ensureMailboxes(ctx.client, [...dead.keys()], [...dead.values()], ctx.now);
    await ctx.client.query(
      `UPDATE messages m SET state = 0, status = u.status, mailbox = u.mailbox, due = u.due, leased_until = NULL,
         history = m.history || u.line
       FROM unnest($1::text[], $2::smallint[], $3::text[], $4::bigint[], $5::text[]) AS u(mid, status, mailbox, due, line)
       WHERE m.mid = u.mid`,
      [mids, statuses, mailboxes, dues, lines],
    );
    return mailboxes;
  }

  // ---- reads --------------------------------------------------------------------------

  async get(mid: string): Promise<Message | null> {
    const rows = await this.#query<Row>(
      `SELECT ${COLS}, b.data FROM messages m LEFT JOIN blobs b ON b.key = m.blob WHERE m.mid = $1`,
      [mid],
    );
    const r = rows[0];
    return r === undefined ? null : { ...message(r), attempts: parseAttempts(r.history) };
  }

  async headers(mailbox: string, after: HeadersPosition, limit: number): Promise<HeadersRows> {
    // seq is no longer the primary key (migration 2) but is still the identity column: unique,
    // never rewritten, so (received_at, seq) is a total order of a mailbox's messages. One row
    // more than asked tells whether another page follows.
    const rows = await this.#query<Row>(
      `SELECT * FROM (
         SELECT ${COLS} FROM messages m WHERE m.mailbox = $1 AND m.state = 0 AND (m.received_at, m.seq) > ($2::bigint, $3::bigint)
         UNION ALL
         SELECT ${COLS} FROM messages m WHERE m.state = 1 AND m.mailbox = $1 AND (m.received_at, m.seq) > ($2::bigint, $3::bigint)) h
       ORDER BY received_at, seq LIMIT $4`,
      [mailbox, after.receivedAtMs, after.seq, limit + 1],
    );
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      headers: page.map(headerOfRow),
      next:
        rows.length > limit && last !== undefined ? { receivedAtMs: last.received_at, seq: last.seq } : null,
    };
  }

  async mailboxes(nowMs: number): Promise<MailboxInfo[]> {
    const rows = await this.#query<{
      name: string;
      max_deliveries: number;
      retry_delay_ms: number;
      retention_ms: number;
      created_at: number;
      ready: number;
      delayed: number;
      in_flight: number;
      confirmed: number;
    }>(
      `SELECT mb.*, coalesce(c.ready, 0) AS ready, coalesce(c.delayed, 0) AS delayed,
         coalesce(c.in_flight, 0) AS in_flight, coalesce(c.confirmed, 0) AS confirmed
       FROM mailboxes mb LEFT JOIN (
         SELECT mailbox, count(*) FILTER (WHERE state = 0 AND due <= $1::bigint) AS ready,
           count(*) FILTER (WHERE state = 0 AND due > $1::bigint) AS delayed,
           count(*) FILTER (WHERE state = 1) AS in_flight, count(*) FILTER (WHERE state = 2) AS confirmed
         FROM messages GROUP BY mailbox) c ON c.mailbox = mb.name
       ORDER BY mb.name COLLATE "C"`,
      [nowMs],
    );
    return rows.map((r) => ({
      name: r.name,
      settings: {
        maxDeliveries: r.max_deliveries,
        retryDelayMs: r.retry_delay_ms,
        retentionMs: r.retention_ms,
      },
      createdAt: new Date(r.created_at),
      ready: r.ready,
      delayed: r.delayed,
      inFlight: r.in_flight,
      confirmed: r.confirmed,
    }));
  }

  async stats(): Promise<StoreStats> {
    const rows = await this.#query<{
      messages: number;
      queued: number;
      leased: number;
      confirmed: number;
      mailboxes: number;
    }>(
      `SELECT count(*) AS messages, count(*) FILTER (WHERE state = 0) AS queued,
         count(*) FILTER (WHERE state = 1) AS leased, count(*) FILTER (WHERE state = 2) AS confirmed,
         (SELECT count(*) FROM mailboxes) AS mailboxes FROM messages`,
    );
    const blobs = await this.blobs.stats();
    return { ...rows[0]!, blobs: blobs.count, blobBytes: blobs.bytes };
  }

  /** Ends the pool and the LISTEN connection. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.clock.stop();
    if (this.#presenceTimer !== undefined) clearInterval(this.#presenceTimer);
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#listeners.clear();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    await this.#pool.end().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A free-form string as PostgreSQL text, which cannot hold U+0000: NUL becomes U+FFFD (the
 * consumer name is the one free-form string of an op; one NUL must not fail a whole batch).
 */
function pgText(v: string): string {
  return v.includes('\0') ? v.replaceAll('\0', '\uFFFD') : v;
}

/** Ops that the batch never reorders others around. */
function isBarrier(op: StoreOp): boolean {
  return !COMMUTING.has(op.kind);
}

const COMMUTING = new Set<string>(['send', 'claim', 'ack', 'extend', 'reenqueue', 'expire']);

async function ensureMailboxes(
  client: PoolClient,
  names: string[],
  settings: MailboxSettings[],
  now: number,
): Promise<void> {
  await client.query(
    `INSERT INTO mailboxes (name, max_deliveries, retry_delay_ms, retention_ms, created_at)
     SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::bigint[]) AS t, (SELECT $5::bigint) AS n
     ORDER BY 1 ON CONFLICT (name) DO NOTHING`,
    [
      names,
      settings.map((s) => s.maxDeliveries),
      settings.map((s) => s.retryDelayMs),
      settings.map((s) => s.retentionMs),
      now,
    ],
  );
}

interface FastPlan {
  sql: string;
  readonly sends: Extract<StoreOp, { kind: 'send' }>[];
  readonly confirms: Extract<StoreOp, { kind: 'ack' }>[];
  readonly claims: Extract<StoreOp, { kind: 'claim' }>[];
  first: NewMessage[];
  /** Sends and claims in one statement (`SYF_SENDCLAIMS_SQL`). */
  readonly combined: boolean;
  readonly wake: Map<string, boolean>;
}

function sameSettings(a: MailboxSettings, b: MailboxSettings): boolean {
  return (
    a === b ||
    (a.maxDeliveries === b.maxDeliveries &&
      a.retryDelayMs === b.retryDelayMs &&
      a.retentionMs === b.retentionMs)
  );
}

/** A row read as an array, as the object node-postgres would have made of it. */
function objectRow<R>(fields: readonly { name: string }[], row: readonly unknown[]): R {
  const o: Record<string, unknown> = {};
  for (let i = 0; i < fields.length; i++) o[fields[i]!.name] = row[i];
  return o as R;
}

/** Deals the rows of a merged claim statement out to its claims, in order. */
function claimResults(
  ops: readonly Extract<StoreOp, { kind: 'claim' }>[],
  all: readonly ClaimRow[],
  now: number,
  newBodies?: ReadonlyMap<string, string>,
): Extract<StoreResult, { kind: 'claim' }>[] {
  const got: ClaimRow[][] = ops.map(() => []);
  const next = new Map<string, number>();
  let sorted = true;
  let last: ClaimRow | undefined;
  for (const row of all) {
    if (row[16] !== null) {
      if (row[17] !== null) next.set(row[16], row[17]);
      continue;
    }
    if (last !== undefined && (row[0] < last[0] || (row[0] === last[0] && row[1] < last[1]))) sorted = false;
    last = row;
    got[row[0]]!.push(row);
  }
  if (!sorted) for (const rows of got) rows.sort((a, b) => a[1] - b[1]);
  return ops.map((op, i) => {
    const rows = got[i]!;
    if (rows.length === 0) return { kind: 'claim', messages: [], nextDueMs: next.get(op.mailbox) ?? null };
    const messages = new Array<Message>(rows.length);
    const leasedUntil = now + op.leaseMs;
    for (let j = 0; j < rows.length; j++) messages[j] = claimedMessage(rows[j]!, leasedUntil, now, newBodies);
    return { kind: 'claim', messages, nextDueMs: null };
  });
}

/** Where a claim's row holds the fields `leasedMessage` reads (see ClaimRow). */
const CLAIM_AT: ClaimColumns = {
  mid: 2,
  mailbox: 3,
  sender: 4,
  receiver: 5,
  clientTime: 6,
  receivedAt: 7,
  delayMs: 8,
  status: 9,
  blobKey: 13,
  bodyBytes: 14,
};

/** The message a claim leased, built straight from its row (state, lease end and fetch time are the claim's own). */
function claimedMessage(
  r: ClaimRow,
  leasedUntil: number,
  now: number,
  newBodies: ReadonlyMap<string, string> | undefined,
): Message {
  const data = r[15];
  // A message leased at insert comes without its body: the send's canonical body is it.
  const body = decodeBody(data === null ? (newBodies?.get(r[2]) ?? '') : unescapeBytea(data));
  return leasedMessage(r, CLAIM_AT, r[10], r[11], r[12], leasedUntil, now, body);
}

/**
 * The UTF-8 text of bytea in PostgreSQL's `escape` format: bytes 0x01–0x7f as themselves, a
 * backslash doubled, every other byte as `\nnn` (octal). Text without a backslash is ASCII, so
 * it is its own decoding.
 */
function unescapeBytea(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x5c) bytes.push(c);
    else if (s.charCodeAt(i + 1) === 0x5c) {
      bytes.push(0x5c);
      i++;
    } else {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * The parameters of the send statement (both the pipelined and the statement-by-statement
 * path): one array per column, built in one pass over the batch, then the new mailbox's
 * defaults and the batch time.
 */
function sendParams(ms: readonly NewMessage[], d: MailboxSettings, now: number): unknown[] {
  const n = ms.length;
  const mids = new Array<string>(n);
  const senders = new Array<string>(n);
  const receivers = new Array<string>(n);
  const clientTimes = new Array<number>(n);
  const delays = new Array<number>(n);
  const blobKeys = new Array<string>(n);
  const bodyBytes = new Array<number>(n);
  const bodies = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const m = ms[i]!;
    mids[i] = m.mid;
    senders[i] = m.sender;
    receivers[i] = m.receiver;
    clientTimes[i] = m.clientTimeMs;
    delays[i] = m.delayMs;
    blobKeys[i] = m.blobKey;
    bodyBytes[i] = m.bodyBytes;
    bodies[i] = m.body;
  }
  return [
    mids,
    senders,
    receivers,
    clientTimes,
    delays,
    blobKeys,
    bodyBytes,
    bodies,
    d.maxDeliveries,
    d.retryDelayMs,
    d.retentionMs,
    now,
  ];
}
