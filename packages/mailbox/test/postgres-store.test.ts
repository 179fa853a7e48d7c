/**
 * PostgreSQL-specific behaviour beyond the conformance suite: URL options, versioned
 * migrations, the database clock, one NOTIFY per commit, typed errors, lazy loading of pg.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import {
  Broker,
  MailboxError,
  MemoryStore,
  decodeBody,
  openPostgresStore,
  type MessageStore,
} from '@switchyard/mailbox';
import pg from 'pg';
import { PG_URL, dropSchema, freshSchema, pgExec, pgUnavailable, pgUrl } from './helpers/pg-env.js';

/**
 * The schema as released at version 2 (migrations 1 and 2 of src/postgres/migrations.ts, which
 * are never edited), tables qualified with "S".
 */
const SCHEMA_2 = `
CREATE TABLE "S".schema_migrations (
  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO "S".schema_migrations (version, name) VALUES
  (1, 'mailboxes, messages, blobs, fencing sequence'),
  (2, 'messages addressed by mid alone; keys and names compared bytewise');
CREATE TABLE "S".mailboxes (
  name text COLLATE "C" PRIMARY KEY, max_deliveries integer NOT NULL, retry_delay_ms bigint NOT NULL,
  retention_ms bigint NOT NULL, created_at bigint NOT NULL);
CREATE TABLE "S".blobs (key text COLLATE "C" PRIMARY KEY, refs bigint NOT NULL, data bytea NOT NULL);
CREATE INDEX blobs_zero ON "S".blobs (key) WHERE refs <= 0;
CREATE SEQUENCE "S".fence_seq;
CREATE TABLE "S".messages (
  seq bigint GENERATED ALWAYS AS IDENTITY, mid text COLLATE "C" NOT NULL UNIQUE, mailbox text COLLATE "C" NOT NULL,
  sender text NOT NULL, receiver text COLLATE "C" NOT NULL, client_time bigint NOT NULL, received_at bigint NOT NULL,
  delay_ms bigint NOT NULL, state smallint NOT NULL, status smallint NOT NULL, due bigint,
  delivery_count integer NOT NULL DEFAULT 0, lid text, fence bigint, leased_until bigint, fetch_time bigint,
  consumer text, blob text COLLATE "C" NOT NULL, body_bytes integer NOT NULL, expires_at bigint,
  history text NOT NULL DEFAULT '');
CREATE INDEX messages_ready ON "S".messages (mailbox, due, seq) WHERE state = 0;
CREATE INDEX messages_leased ON "S".messages (leased_until, seq) WHERE state = 1;
CREATE INDEX messages_expiring ON "S".messages (expires_at) WHERE state = 2;
`;

const unavailable = await pgUnavailable();

function code(e: unknown): string {
  return e instanceof MailboxError ? e.code : `not a MailboxError: ${String(e)}`;
}

test('memory and SQLite users never load the pg driver', () => {
  // An ESM resolve hook records every module the child resolves.
  const hook = `export async function resolve(s, c, next) { const r = await next(s, c); if (/[\\\\/]node_modules[\\\\/]pg[\\\\/]/.test(r.url)) process.stderr.write('LOADED-PG ' + r.url + '\\n'); return r; }`;
  const script = `
    import { register } from 'node:module';
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
    const { Broker } = await import('@switchyard/mailbox');
    const b = await Broker.open({ store: 'memory:' });
    await b.send({ sender: 's', receiver: 'r', body: { x: '1' } });
    await b.close();
    const s = await Broker.open({ store: 'sqlite::memory:' });
    await s.close();
    console.log('ok');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: new URL('.', import.meta.url),
    encoding: 'utf8',
  });
  assert.equal(r.stdout.trim(), 'ok', r.stderr);
  assert.doesNotMatch(r.stderr, /LOADED-PG/);
});

test("a broker keeps up to a store's concurrentBatches transactions in flight and splits a big backlog", async () => {
  // A memory store that takes 20 ms per batch and says it can run two at once.
  const inner = new MemoryStore();
  let inFlight = 0;
  let most = 0;
  const sizes: number[] = [];
  const store: MessageStore = {
    blobs: inner.blobs,
    concurrentBatches: 2,
    async apply(ops, nowMs) {
      inFlight++;
      most = Math.max(most, inFlight);
      sizes.push(ops.length);
      await new Promise((resolve) => setTimeout(resolve, 20));
      try {
        return await inner.apply(ops, nowMs);
      } finally {
        inFlight--;
      }
    },
    get: (mid) => inner.get(mid),
    headers: (m, a, l) => inner.headers(m, a, l),
    mailboxes: (n) => inner.mailboxes(n),
    stats: () => inner.stats(),
    close: () => inner.close(),
  };
  const broker = await Broker.open({ store, sweepIntervalMs: 0 });
  try {
    // 50 sends arriving together stay one batch (below 2 × 64: no split).
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => broker.send({ sender: 's', receiver: 'c', body: { i: `${i}` } })),
    );
    assert.deepEqual(sizes, [50]);
    // 300 are split between the two slots, which run at once.
    await Promise.all(
      Array.from({ length: 300 }, (_, i) => broker.send({ sender: 's', receiver: 'c', body: { j: `${i}` } })),
    );
    assert.deepEqual(sizes.slice(1), [150, 150]);
    assert.equal(most, 2);
    // While both slots are busy, new operations wait for one (never a third transaction).
    const a = Promise.all(
      Array.from({ length: 200 }, (_, i) => broker.send({ sender: 's', receiver: 'c', body: { k: `${i}` } })),
    );
    await new Promise((resolve) => setImmediate(resolve));
    const b = Promise.all(
      Array.from({ length: 10 }, (_, i) => broker.send({ sender: 's', receiver: 'c', body: { l: `${i}` } })),
    );
    await Promise.all([a, b]);
    assert.equal(most, 2);
    assert.equal((await broker.stats()).store.messages, 560);
  } finally {
    await broker.close();
  }
});

if (unavailable !== undefined) {
  test('PostgreSQL store tests', (t) => t.skip(unavailable));
} else {
  describe('PostgreSQL store', () => {
    const schemas: string[] = [];
    const fresh = (): string => {
      const s = freshSchema('sy_pgs');
      schemas.push(s);
      return s;
    };
    after(async () => {
      for (const s of schemas) await dropSchema(s);
    });

    test('the schema is created by versioned migrations, once, and a newer schema is refused', async () => {
      const schema = fresh();
      const a = await openPostgresStore(pgUrl(schema));
      await a.close();
      const b = await openPostgresStore(PG_URL, { schema });
      await b.close();
      const rows = await pgExec(`SELECT version FROM "${schema}".schema_migrations ORDER BY version`);
      assert.deepEqual(
        rows.rows.map((r: { version: number }) => r.version),
        [1, 2, 3],
      );
      // Headers cursors order by (received_at, seq): seq is no longer the primary key after
      // migration 2, but stays an identity column (unique, never rewritten, not null).
      const seq = await pgExec(
        `SELECT attidentity, attnotnull FROM pg_attribute WHERE attrelid = '"${schema}".messages'::regclass AND attname = 'seq'`,
      );
      assert.deepEqual(seq.rows, [{ attidentity: 'a', attnotnull: true }]);
      await pgExec(
        `INSERT INTO "${schema}".schema_migrations (version, name) VALUES (999, 'from the future')`,
      );
      await assert.rejects(openPostgresStore(pgUrl(schema)), (e) => {
        assert.equal(code(e), 'MAILBOX_ERR_STORE');
        assert.match((e as Error).message, /version 999/);
        return true;
      });
    });

    test('a schema-2 database holding messages in every state is upgraded to schema 3 and loses nothing', async () => {
      const schema = fresh();
      const q = (sql: string): string => sql.replaceAll('"S".', `"${schema}".`);
      // Messages as the released schema 2 holds them, written the way its store wrote them.
      const seed = await Broker.open({ store: 'memory:', sweepIntervalMs: 0 });
      const at = (i: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, i));
      const kinds = ['queued', 'delayed', 'leased', 'confirmed', 'retry', 'dead'] as const;
      const sent = new Map<string, { mid: string; blobKey: string; body: string }>();
      for (const [i, k] of kinds.entries()) {
        const m = await seed.send({ sender: 's', receiver: 'jobs', body: { k }, clientTime: at(i) });
        sent.set(k, { mid: m.mid, blobKey: m.blobKey, body: `k=${k}` });
      }
      await seed.close();
      const now = Date.now();
      const lid = 'b'.repeat(32);
      const fence = 41;
      const attempt = (n: number, outcome: number): string =>
        `${JSON.stringify({ n, c: 'w', f: now - 5000, e: now - 4000, o: outcome })}\n`;
      // [kind, mailbox, state, status, due, delivery count, lid, fence, leased until, fetch time, consumer, expires at, history]
      const rows: [string, string, number, number, ...unknown[]][] = [
        ['queued', 'jobs', 0, 8, now - 1000, 0, null, null, null, null, null, null, ''],
        ['delayed', 'jobs', 0, 8, now + 3_600_000, 0, null, null, null, null, null, null, ''],
        ['leased', 'jobs', 1, 8, null, 1, lid, fence, now + 600_000, now - 1000, 'w', null, ''],
        [
          'confirmed',
          'jobs',
          2,
          1,
          null,
          1,
          'c'.repeat(32),
          40,
          null,
          now - 5000,
          'w',
          now + 86_400_000,
          attempt(1, 1),
        ],
        [
          'retry',
          'jobs',
          0,
          2,
          now + 3_600_000,
          1,
          'd'.repeat(32),
          39,
          null,
          now - 5000,
          'w',
          null,
          attempt(1, 2),
        ],
        [
          'dead',
          'jobs.dead',
          0,
          16,
          now - 1000,
          5,
          'e'.repeat(32),
          38,
          null,
          now - 5000,
          'w',
          null,
          attempt(5, 4),
        ],
      ];
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      try {
        await client.query(`CREATE SCHEMA "${schema}"`);
        await client.query(q(SCHEMA_2));
        for (const name of ['jobs', 'jobs.dead'])
          await client.query(q('INSERT INTO "S".mailboxes VALUES ($1, 5, 1000, 86400000, $2)'), [name, now]);
        for (const [kind, mailbox, ...rest] of rows) {
          const m = sent.get(kind)!;
          await client.query(q('INSERT INTO "S".blobs (key, refs, data) VALUES ($1, 1, $2)'), [
            m.blobKey,
            Buffer.from(m.body),
          ]);
          await client.query(
            q(`INSERT INTO "S".messages (mid, mailbox, sender, receiver, client_time, received_at, delay_ms, state, status,
                 due, delivery_count, lid, fence, leased_until, fetch_time, consumer, blob, body_bytes, expires_at, history)
               VALUES ($1, $2, 's', 'jobs', $3, $4, 0, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`),
            [
              m.mid,
              mailbox,
              at(kinds.indexOf(kind as (typeof kinds)[number])).getTime(),
              now - 10_000,
              ...rest.slice(0, 9),
              m.blobKey,
              m.body.length,
              ...rest.slice(9),
            ],
          );
        }
        await client.query(q(`SELECT setval('"S".fence_seq', $1)`), [fence]);
      } finally {
        await client.end();
      }

      const broker = await Broker.open({ store: pgUrl(schema), sweepIntervalMs: 0 });
      try {
        const versions = await pgExec(q('SELECT version FROM "S".schema_migrations ORDER BY version'));
        assert.deepEqual(
          versions.rows.map((r: { version: number }) => r.version),
          [1, 2, 3],
        );
        const options = await pgExec(
          `SELECT reloptions FROM pg_class WHERE oid = '"${schema}".messages'::regclass`,
        );
        assert.deepEqual((options.rows[0] as { reloptions: string[] }).reloptions, ['fillfactor=50']);
        // Every message is still there, as it was.
        const expected = {
          queued: ['queued', 8, 0, 0],
          delayed: ['queued', 8, 0, 0],
          leased: ['leased', 8, 1, 0],
          confirmed: ['confirmed', 1, 1, 1],
          retry: ['queued', 2, 1, 1],
          dead: ['queued', 16, 5, 1],
        } as const;
        for (const k of kinds) {
          const m = await broker.get(sent.get(k)!.mid);
          assert.ok(m !== null, `${k} is there`);
          assert.deepEqual([m.state, m.status, m.deliveryCount, m.attempts?.length], expected[k], k);
          assert.deepEqual(m.body, { k }, `${k}: body`);
          assert.equal(m.mailbox, k === 'dead' ? 'jobs.dead' : 'jobs');
        }
        const leased = await broker.get(sent.get('leased')!.mid);
        assert.equal(leased?.lid, lid);
        assert.equal(leased?.fence, fence);
        assert.equal(leased?.leasedUntil?.getTime(), now + 600_000);
        // The lease granted before the upgrade still confirms; only the due message is handed out.
        await broker.ack(sent.get('leased')!.mid, lid, 1);
        assert.equal((await broker.get(sent.get('leased')!.mid))?.state, 'confirmed');
        const got = await broker.fetchMany('jobs', { max: 10 });
        assert.deepEqual(
          got.map((m) => m.mid),
          [sent.get('queued')!.mid],
        );
        assert.ok(got[0]!.fence! > fence, 'fencing tokens keep growing');
        await broker.ack(got[0]!.mid, got[0]!.lid!, 1);
        const dead = await broker.fetchMany('jobs.dead', { max: 10 });
        assert.deepEqual(
          dead.map((m) => m.mid),
          [sent.get('dead')!.mid],
        );
        // Sends still deduplicate against the old rows, and new rows go into the new pages.
        const again = await broker.send({
          sender: 's',
          receiver: 'jobs',
          body: { k: 'confirmed' },
          clientTime: at(3),
        });
        assert.equal(again.mid, sent.get('confirmed')!.mid);
        await broker.send({ sender: 's', receiver: 'jobs', body: { k: 'new' } });
        const st = (await broker.stats()).store;
        assert.deepEqual([st.messages, st.queued, st.leased, st.confirmed, st.blobs], [7, 3, 1, 3, 7]);
        assert.equal(await broker.store.blobs.refCount(sent.get('confirmed')!.blobKey), 1);
      } finally {
        await broker.close();
      }
    });

    test('bad options and unreachable servers give typed errors', async () => {
      for (const bad of [
        'postgres://x/db?schema=1bad',
        'postgres://x/db?schema=a;drop',
        'postgres://x/db?poolSize=0',
      ])
        await assert.rejects(openPostgresStore(bad), (e) => code(e) === 'MAILBOX_ERR_INVALID_ARGUMENT');
      await assert.rejects(
        openPostgresStore(PG_URL, { concurrentBatches: 9, poolSize: 4 }),
        (e) => code(e) === 'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      await assert.rejects(
        openPostgresStore('postgres://postgres@127.0.0.1:1/test', { connectTimeoutMs: 2000 }),
        (e) => code(e) === 'MAILBOX_ERR_STORE' && (e as Error).cause !== undefined,
      );
      await assert.rejects(
        Broker.open({ store: 'postgres://postgres@127.0.0.1:1/test' }),
        (e) => code(e) === 'MAILBOX_ERR_STORE',
      );
    });

    test('a broker opened on a postgres:// URL stamps times on the database clock', async () => {
      const broker = await Broker.open({ store: pgUrl(fresh()), sweepIntervalMs: 0 });
      try {
        const before = (await pgExec('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS t'))
          .rows[0] as {
          t: number;
        };
        const m = await broker.send({ sender: 's', receiver: 'clock', body: {} });
        const afterT = (await pgExec('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS t'))
          .rows[0] as {
          t: number;
        };
        // Within the round-trip error of the offset measurement.
        assert.ok(m.receivedAt.getTime() >= before.t - 50 && m.receivedAt.getTime() <= afterT.t + 50);
        const store = broker.store as unknown as { clock: { offsetMs: number } };
        assert.equal(typeof store.clock.offsetMs, 'number');
      } finally {
        await broker.close();
      }
    });

    test('a batch of sends is one commit with one NOTIFY naming its mailboxes', async () => {
      const schema = fresh();
      const broker = await Broker.open({ store: pgUrl(schema), sweepIntervalMs: 0 });
      const listener = new pg.Client({ connectionString: PG_URL });
      await listener.connect();
      const payloads: string[] = [];
      listener.on('notification', (n) => payloads.push(n.payload ?? ''));
      await listener.query(`LISTEN "switchyard_mailbox_${schema}"`);
      try {
        await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            broker.send({ sender: 's', receiver: i % 2 === 0 ? 'even' : 'odd', body: { i: String(i) } }),
          ),
        );
        assert.equal((await broker.stats()).batches, 1);
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal(payloads.length, 1, 'one notification for the whole batch');
        assert.deepEqual((JSON.parse(payloads[0]!) as { m: string[] }).m.sort(), ['even', 'odd']);
        // A send whose message a waiting local consumer takes in the same commit, leaving nothing
        // due (it asked for more than it got), wakes no one else.
        const waiting = broker.fetchMany('quiet', { max: 10, waitMs: 5000 });
        await new Promise((resolve) => setTimeout(resolve, 100));
        await broker.send({ sender: 's', receiver: 'quiet', body: {} });
        assert.equal((await waiting).length, 1);
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal(payloads.length, 1, 'nothing left due: no NOTIFY');
      } finally {
        await listener.end();
        await broker.close();
      }
    });

    test('a lone store sends no NOTIFY; it does again once another store announces itself', async () => {
      const schema = fresh();
      // Presence every 300 ms: a store counts itself alone 600 ms after it opened, and a peer
      // as present for 900 ms after its last announcement (room for a loaded machine).
      const store = await openPostgresStore(pgUrl(schema), { presenceMs: 300 });
      const opened = Date.now();
      const broker = await Broker.open({ store, sweepIntervalMs: 0 });
      const listener = new pg.Client({ connectionString: PG_URL });
      await listener.connect();
      const payloads: { s: string; m?: string[] }[] = [];
      listener.on('notification', (n) =>
        payloads.push(JSON.parse(n.payload ?? '{}') as { s: string; m?: string[] }),
      );
      await listener.query(`LISTEN "switchyard_mailbox_${schema}"`);
      const wakeUps = (): string[][] => payloads.filter((p) => p.m !== undefined).map((p) => p.m!);
      try {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, opened + 700 - Date.now())));
        await broker.send({ sender: 's', receiver: 'alone', body: {} });
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.deepEqual(wakeUps(), [], 'nobody else listens: no wake-up NOTIFY');
        assert.ok(
          payloads.some((p) => p.m === undefined),
          'but the store announces itself',
        );
        // Another store says hello (and is answered); wake-ups go out again.
        await listener.query(`SELECT pg_notify($1, '{"s":"peer","p":1}')`, [`switchyard_mailbox_${schema}`]);
        await new Promise((resolve) => setTimeout(resolve, 100));
        await broker.send({ sender: 's', receiver: 'alone', body: {} });
        const deadline = Date.now() + 3000;
        while (wakeUps().length === 0 && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 20));
        assert.deepEqual(wakeUps(), [['alone']]);
      } finally {
        await listener.end();
        await broker.close();
        await store.close();
      }
    });

    test('a fetch reads a body stored as any bytes: backslashes, UTF-8, invalid bytes, in one or many claims', async () => {
      const schema = fresh();
      const broker = await Broker.open({ store: pgUrl(schema), sweepIntervalMs: 0 });
      try {
        const [m1, m2] = await broker.sendMany([
          { sender: 's', receiver: 'raw', body: { x: '1' } },
          { sender: 's', receiver: 'raw2', body: { x: '2' } },
        ]);
        // Canonical bodies are ASCII; bytes beyond that reach a blob only from outside the broker.
        const raw = Buffer.concat([Buffer.from('x=caf\u00e9\\y\\\\&z=', 'utf8'), Buffer.from([0x80, 0x01])]);
        await pgExec(`UPDATE "${schema}".blobs SET data = $1 WHERE key = ANY($2::text[])`, [
          raw,
          [m1!.blobKey, m2!.blobKey],
        ]);
        const expected = { x: 'caf\u00e9\\y\\\\', z: '\uFFFD\u0001' };
        const one = await broker.fetch('raw');
        assert.deepEqual(one?.body, expected);
        const [a, b] = await Promise.all([
          broker.fetchMany('raw2', { max: 1 }),
          broker.fetchMany('raw', { max: 1 }),
        ]);
        assert.deepEqual(a?.[0]?.body, expected);
        assert.deepEqual(b, []);
      } finally {
        await broker.close();
      }
    });

    test('a batch that sends and claims leases its own new messages at insert, after the older ones, in order', async () => {
      const schema = fresh();
      const broker = await Broker.open({ store: pgUrl(schema), sweepIntervalMs: 0 });
      try {
        const at = (i: number): Date => new Date(Date.UTC(2026, 0, 2, 0, 0, i));
        const old = await broker.sendMany(
          [0, 1, 2].map((i) => ({ sender: 's', receiver: 'q', body: { old: `${i}` }, clientTime: at(i) })),
        );
        const before = await broker.fetchMany('other', { max: 1 });
        assert.deepEqual(before, []);
        const fence0 = Number(
          (
            (
              await pgExec(
                `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS v FROM "${schema}".fence_seq`,
              )
            ).rows[0] as { v: string }
          ).v,
        );
        const batches = (await broker.stats()).batches;
        // One tick, one batch: new sends (one delayed, one a resend of an old message, one with
        // a body of any characters) and three claims asking for more than there is.
        const odd = { x: 'caf\u00e9 \\ & = % + \u0001', y: ['1', '2'] };
        const [sent, resent, late, claims] = await Promise.all([
          broker.sendMany(
            [0, 1, 2, 3, 4].map((i) => ({
              sender: 's',
              receiver: 'q',
              body: i === 2 ? odd : { new: `${i}` },
            })),
          ),
          broker.send({ sender: 's', receiver: 'q', body: { old: '1' }, clientTime: at(1) }),
          broker.send({ sender: 's', receiver: 'q', body: { late: '1' }, delayMs: 3_600_000 }),
          Promise.all([
            broker.fetchMany('q', { max: 4, leaseMs: 60_000 }),
            broker.fetchMany('q', { max: 3, leaseMs: 60_000 }),
            broker.fetchMany('q', { max: 10, leaseMs: 60_000 }),
          ]),
        ]);
        assert.equal((await broker.stats()).batches, batches + 1, 'all in one batch');
        assert.equal(resent.mid, old[1]!.mid, 'the resend is the old message');
        // Oldest first: the three old ones, then the new ones in send order; the delayed one stays.
        const mids = claims.map((c) => c.map((m) => m.mid));
        assert.deepEqual(mids, [
          [old[0]!.mid, old[1]!.mid, old[2]!.mid, sent[0]!.mid],
          [sent[1]!.mid, sent[2]!.mid, sent[3]!.mid],
          [sent[4]!.mid],
        ]);
        const got = claims.flat();
        assert.deepEqual(got[5]!.body, odd);
        assert.deepEqual(got[3]!.body, { new: '0' });
        const fences = got.map((m) => m.fence!);
        assert.equal(new Set(fences).size, fences.length, 'fencing tokens unique');
        for (const f of fences) assert.ok(f > fence0, 'fencing tokens grow');
        for (const m of got) {
          assert.equal(m.state, 'leased');
          assert.equal(m.deliveryCount, 1);
          assert.match(m.lid!, /^[0-9a-f]{32}$/);
          assert.equal(m.mailbox, 'q');
          const stored = await broker.get(m.mid);
          assert.deepEqual(
            [
              stored?.state,
              stored?.lid,
              stored?.fence,
              stored?.leasedUntil?.getTime(),
              stored?.deliveryCount,
            ],
            ['leased', m.lid, m.fence, m.leasedUntil!.getTime(), 1],
          );
          assert.deepEqual(stored?.body, m.body);
        }
        assert.equal((await broker.get(late.mid))?.state, 'queued');
        // The leases taken at insert are ordinary leases: a stale lid is refused, the right one confirms.
        await assert.rejects(broker.ack(got[4]!.mid, 'f'.repeat(32), 1), (e) => {
          assert.equal(code(e), 'MAILBOX_ERR_LEASE_INVALID');
          return true;
        });
        for (const m of got) await broker.ack(m.mid, m.lid!, 1);
        const done = await broker.get(sent[4]!.mid);
        assert.equal(done?.state, 'confirmed');
        assert.equal(done?.attempts?.length, 1);
        const st = (await broker.stats()).store;
        assert.deepEqual([st.messages, st.queued, st.leased, st.confirmed, st.blobs], [9, 1, 0, 8, 9]);
        assert.equal(await broker.store.blobs.refCount(old[1]!.blobKey), 1, 'the resend took no reference');

        // A claim that gets nothing learns when the next message comes due, a delayed one of its own batch included.
        const now = Date.now();
        const newMessage = (mid: string, delayMs: number) => ({
          mid,
          sender: 's',
          receiver: 'z',
          clientTimeMs: now,
          delayMs,
          blobKey: mid,
          body: 'a=1',
          decoded: { a: '1' },
          bodyBytes: 3,
        });
        const defaults = { maxDeliveries: 5, retryDelayMs: 1000, retentionMs: 60_000 };
        const [, , claim] = await broker.store.apply(
          [
            { kind: 'send', message: newMessage('a'.repeat(40), 5000), defaults },
            { kind: 'send', message: newMessage('b'.repeat(40), 2000), defaults },
            { kind: 'claim', mailbox: 'z', max: 5, leaseMs: 1000, consumer: 'c' },
          ],
          now,
        );
        assert.deepEqual(claim, { kind: 'claim', messages: [], nextDueMs: now + 2000 });
      } finally {
        await broker.close();
      }
    });

    test('one batch of sends, claims and confirms carries any text: commas, quotes, backslashes, empty bodies', async () => {
      // The common batch writes its lists of strings as one comma-separated literal when no
      // element holds a comma; the store API takes any strings, so every odd case must round-trip.
      const schema = fresh();
      const store = await openPostgresStore(pgUrl(schema));
      try {
        const defaults = { maxDeliveries: 5, retryDelayMs: 1000, retentionMs: 60_000 };
        const now = 1_700_000_000_000;
        const msg = (mid: string, receiver: string, body: string, sender = 's') => ({
          kind: 'send' as const,
          defaults,
          message: {
            mid,
            sender,
            receiver,
            clientTimeMs: now,
            delayMs: 0,
            blobKey: `k-${mid}`,
            body,
            decoded: decodeBody(body),
            bodyBytes: Buffer.byteLength(body),
          },
        });
        const cases: [mid: string, receiver: string, body: string, sender?: string][] = [
          ['m,1', 'q', 'a=1,2'],
          ["m'2", "q'x", "a=it's"],
          ['m\\3', 'q', 'a=\\n\\'],
          ['m"4', 'q"y', 'a="{x}"', 's,"\''],
          ['m5', 'q', ''],
          ['m6', 'q', ''],
        ];
        const claim = (mailbox: string, max: number) => ({
          kind: 'claim' as const,
          mailbox,
          max,
          leaseMs: 60_000,
          consumer: 'c,1',
        });
        // Sends alone, then sends with claims (a batch that does both leases at insert).
        const first = await store.apply([msg(...cases[0]!), msg(...cases[4]!)], now);
        assert.deepEqual(
          first.map((r) => r.kind === 'send' && r.created),
          [true, true],
        );
        const rs = await store.apply(
          [
            ...cases.slice(1).map((c) => msg(...c)),
            claim('q', 10),
            claim("q'x", 1),
            claim('q"y', 1),
            claim('n,o', 1),
          ],
          now,
        );
        assert.deepEqual(
          rs.slice(0, 5).map((r) => r.kind === 'send' && r.created),
          [true, true, true, false, true],
          'm5 existed already',
        );
        const got = rs.slice(5).map((r) => (r.kind === 'claim' ? r.messages : []));
        assert.deepEqual(
          got.map((ms) => ms.map((m) => m.mid)),
          [['m,1', 'm5', 'm\\3', 'm6'], ["m'2"], ['m"4'], []],
        );
        const all = got.flat();
        for (const m of all) {
          const c = cases.find((x) => x[0] === m.mid)!;
          assert.deepEqual(m.body, decodeBody(c[2]), m.mid);
          assert.equal(m.receiver, c[1]);
          assert.equal(m.sender, c[3] ?? 's');
          assert.equal(m.blobKey, `k-${m.mid}`);
        }
        // Confirms in one batch (one with a wrong lid, one of a mid that never was), those
        // without a comma apart from the one with.
        const confirm = (mid: string, lid: string) => ({
          kind: 'ack' as const,
          mid,
          lid,
          status: 1 as const,
        });
        const [withComma, ...rest] = all;
        const acks = await store.apply(
          [
            ...rest.map((m, i) => confirm(m.mid, i === 0 ? `${m.lid!}'x` : m.lid!)),
            confirm("no'such\\", 'l'),
          ],
          now + 1,
        );
        assert.deepEqual(
          acks.map((r) => r.kind === 'ack' && r.outcome),
          ['lease-invalid', 'ok', 'ok', 'ok', 'ok', 'not-found'],
        );
        const last = await store.apply(
          [confirm(withComma!.mid, withComma!.lid!), confirm('x,y', 'l')],
          now + 1,
        );
        assert.deepEqual(
          last.map((r) => r.kind === 'ack' && r.outcome),
          ['ok', 'not-found'],
        );
        assert.equal((await store.get(rest[0]!.mid))?.state, 'leased');
        for (const m of [withComma!, ...rest.slice(1)])
          assert.equal((await store.get(m.mid))?.state, 'confirmed', m.mid);
        assert.deepEqual((await store.get('m6'))?.body, {});
      } finally {
        await store.close();
      }
    });

    test('a NUL in a consumer name does not fail the batch it rides in', async () => {
      const broker = await Broker.open({ store: pgUrl(fresh()), sweepIntervalMs: 0 });
      try {
        await broker.sendMany([
          { sender: 's', receiver: 'nul', body: { i: '1' } },
          { sender: 's', receiver: 'nul', body: { i: '2' } },
        ]);
        const [a, b] = await Promise.all([
          broker.fetch('nul', { consumer: 'bad\u0000name' }),
          broker.fetch('nul', { consumer: 'good' }),
          broker.send({ sender: 's', receiver: 'other', body: {} }),
        ]);
        assert.ok(a && b);
        await broker.ack(a.mid, a.lid!, 1);
        const attempts = (await broker.get(a.mid))?.attempts;
        assert.equal(attempts?.[0]?.consumer, 'bad\uFFFDname');
      } finally {
        await broker.close();
      }
    });

    test('two stores on one schema: fencing tokens grow across brokers; leases agree', async () => {
      const url = pgUrl(fresh());
      const a = await Broker.open({ store: url, sweepIntervalMs: 0 });
      const b = await Broker.open({ store: url, sweepIntervalMs: 0 });
      try {
        await a.sendMany(
          Array.from({ length: 6 }, (_, i) => ({ sender: 's', receiver: 'f', body: { i: String(i) } })),
        );
        const fences: number[] = [];
        for (let i = 0; i < 3; i++) {
          fences.push((await a.fetch('f'))!.fence!);
          fences.push((await b.fetch('f'))!.fence!);
        }
        assert.deepEqual(
          fences,
          [...fences].sort((x, y) => x - y),
        );
        assert.equal(new Set(fences).size, 6);
        // A lease taken on A is acked on B.
        await a.send({ sender: 's', receiver: 'g', body: {} });
        const m = (await a.fetch('g', { leaseMs: 60_000 }))!;
        await b.ack(m.mid, m.lid!, 1);
        assert.equal((await a.get(m.mid))?.state, 'confirmed');
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
