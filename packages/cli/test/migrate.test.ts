/**
 * `switchyard migrate` end to end: a SQLite store with every kind of message state is copied
 * into a fresh PostgreSQL schema, and a broker on PostgreSQL carries on where SQLite stopped.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Broker, ManualClock, type Message } from '@switchyard/mailbox';
import { makeTempDir } from '@switchyard/testkit';
import pg from 'pg';
import { main } from 'switchyard';

const PG_URL = process.env['SWITCHYARD_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

async function pgExec(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

async function unavailable(): Promise<string | undefined> {
  try {
    await pgExec('SELECT 1');
    return undefined;
  } catch (error) {
    const why = `PostgreSQL at ${PG_URL} is unreachable (${(error as Error).message}); set SWITCHYARD_PG_URL`;
    if (process.env['CI'] === 'true')
      throw new Error(`${why} (CI=true: this test must run)`, { cause: error });
    return why;
  }
}

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

function urlFor(schema: string): string {
  const u = new URL(PG_URL);
  u.searchParams.set('schema', schema);
  return u.toString();
}

const why = await unavailable();

test('migrate refuses bad arguments', async () => {
  const a = await cli(['migrate', '--from', '/tmp/x.db', '--to', 'postgres://h/db']);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /--from must be sqlite:<path>/);
  const b = await cli(['migrate', '--from', 'sqlite:/tmp/x.db', '--to', 'mysql://h/db']);
  assert.equal(b.code, 1);
  assert.match(b.stderr, /--to must be a postgres:\/\/ URL/);
  const c = await cli(['migrate', '--from', 'sqlite:/tmp/x.db', '--to', 'postgres://h/db', '--batch', '0']);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /--batch must be an integer/);
  const d = await cli(['migrate', '--to', 'postgres://h/db']);
  assert.notEqual(d.code, 0);
});

test('migrate copies mailboxes, messages with state, leases and attempts, and blobs into PostgreSQL', async (t) => {
  if (why !== undefined) {
    t.skip(why);
    return;
  }
  using dir = makeTempDir('switchyard-migrate-');
  const path = join(dir.path, 'mailbox.db');
  const schema = `sy_migrate_${process.pid}_${Date.now().toString(36)}`;
  const url = urlFor(schema);
  // Real time: the PostgreSQL broker below runs on the database clock and honours the leases.
  const clock = new ManualClock(Date.now() - 10_000);
  const sqlite = await Broker.open({
    store: `sqlite:${path}`,
    clock,
    sweepIntervalMs: 0,
    mailboxDefaults: { maxDeliveries: 2, retryDelayMs: 1000, retentionMs: 3_600_000 },
  });
  const mids: string[] = [];
  let leased: Message;
  try {
    await sqlite.configure('cfg', { maxDeliveries: 7, retryDelayMs: 5, retentionMs: 99_000 });
    const send = async (receiver: string, body: Record<string, string>, delayMs = 0): Promise<Message> => {
      const m = await sqlite.send({ sender: 's', receiver, body, delayMs });
      mids.push(m.mid);
      return m;
    };
    for (let i = 0; i < 30; i++) await send('bulk', { i: String(i), shared: 'same body part' });
    await send('bulk', { same: 'x' });
    await send('other', { same: 'x' }); // one blob, two references
    await send('later', { n: '1' }, 3_600_000);
    // Confirmed (retained), rejected once (retry pending), dead-lettered, leased.
    await send('work', { k: 'confirm' });
    await send('work', { k: 'dead' });
    await send('retry', { k: 'reject' });
    await send('held', { k: 'lease' });
    const c = (await sqlite.fetch('work', { consumer: 'w1' }))!;
    await sqlite.ack(c.mid, c.lid!, 1);
    const r = (await sqlite.fetch('retry', { consumer: 'w1' }))!;
    await sqlite.ack(r.mid, r.lid!, 2);
    const d = (await sqlite.fetch('work', { consumer: 'w2' }))!;
    await sqlite.ack(d.mid, d.lid!, 2);
    clock.advance(1000);
    const d2 = (await sqlite.fetch('work', { consumer: 'w3' }))!;
    assert.equal(d2.mid, d.mid);
    await sqlite.ack(d2.mid, d2.lid!, 2);
    assert.equal((await sqlite.get(d.mid))?.mailbox, 'work.dead');
    leased = (await sqlite.fetch('held', { consumer: 'w4', leaseMs: 600_000 }))!;
    clock.set(Date.now());
  } finally {
    await sqlite.close();
  }
  const before = await Broker.open({ store: `sqlite:${path}`, clock, sweepIntervalMs: 0 });
  const expected = new Map<string, Message | null>();
  let stats;
  try {
    for (const mid of mids) expected.set(mid, await before.get(mid));
    stats = (await before.stats()).store;
    // A broker holds the SQLite file: migrate refuses.
    const busy = await cli(['migrate', '--from', `sqlite:${path}`, '--to', url]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /MAILBOX_ERR_STORE_LOCKED|open in a broker/);
  } finally {
    await before.close();
  }

  try {
    const run = await cli(['migrate', '--from', `sqlite:${path}`, '--to', url, '--batch', '7', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { mailboxes: number; messages: number; blobs: number };
    assert.equal(report.messages, mids.length);
    assert.equal(report.mailboxes, stats.mailboxes);
    assert.equal(report.blobs, stats.blobs);

    const again = await cli(['migrate', '--from', `sqlite:${path}`, '--to', url]);
    assert.equal(again.code, 1, 'a second migration into the same schema is refused');
    assert.match(again.stderr, /empty schema/);

    const broker = await Broker.open({ store: url, sweepIntervalMs: 0 });
    try {
      assert.deepEqual(
        (await broker.stats()).store,
        stats,
        'same counts of messages, states, mailboxes, blobs',
      );
      for (const mid of mids) assert.deepEqual(await broker.get(mid), expected.get(mid), `message ${mid}`);
      const infos = await broker.mailboxes();
      assert.deepEqual(infos.find((i) => i.name === 'cfg')?.settings, {
        maxDeliveries: 7,
        retryDelayMs: 5,
        retentionMs: 99_000,
      });
      assert.deepEqual(
        infos.map((i) => i.name),
        ['bulk', 'cfg', 'held', 'later', 'other', 'retry', 'work', 'work.dead'],
      );
      // The lease granted by the SQLite broker is still valid on PostgreSQL.
      await broker.extend(leased.mid, leased.lid!, 60_000);
      await broker.ack(leased.mid, leased.lid!, 1);
      // Delivery carries on in order, with fencing tokens above every SQLite token.
      const maxFence = Math.max(...[...expected.values()].map((m) => m?.fence ?? 0));
      const got = await broker.fetchMany('bulk', { max: 3 });
      assert.deepEqual(
        got.map((m) => m.body['i']),
        ['0', '1', '2'],
      );
      assert.ok(got.every((m) => m.fence! > maxFence));
      const retried = (await broker.fetch('retry', { waitMs: 2000 }))!;
      assert.equal(retried.body['k'], 'reject');
      assert.equal(retried.deliveryCount, 2);
      assert.equal((await broker.get(retried.mid))?.attempts?.length, 1);
      assert.equal((await broker.fetch('work.dead'))?.body['k'], 'dead');
    } finally {
      await broker.close();
    }
  } finally {
    await pgExec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }
});
