/**
 * The SQLite store's own machinery: the bulk-maintained blob key index (keys in memory up to
 * `mergeKeysAt`, then merged), the migration of a schema-1 database, the
 * staged commit (leases at commit, confirmations at flush) and the store on its worker thread.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs, { existsSync, rmSync, statSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import {
  Broker,
  MailboxError,
  ManualClock,
  MemoryStore,
  SqliteStore,
  SqliteThreadStore,
  type MessageStore,
  type StoreOp,
  type StoreResult,
} from '@switchyard/mailbox';
import { makeTempDir } from '@switchyard/testkit';

async function codeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    return e instanceof MailboxError ? e.code : `not a MailboxError: ${String(e)}`;
  }
  return 'resolved';
}

type Fdatasync = (fd: number, cb: (e: Error | null) => void) => void;
const realFdatasync = fs.fdatasync as Fdatasync;

/** Makes the store's `fdatasync` (node:fs's, which it imports) `fn`; no argument puts the real one back. */
function useFdatasync(fn: Fdatasync = realFdatasync): void {
  (fs as { fdatasync: unknown }).fdatasync = fn;
  syncBuiltinESMExports();
}

const at = (s: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, s));

test('blob keys stay findable across merges and reopens; expiry and collection clean the index', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const path = join(dir.path, 'm.db');
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const options = {
      clock,
      sweepIntervalMs: 0,
      mailboxDefaults: { maxDeliveries: 3, retryDelayMs: 0, retentionMs: 1000 },
    };
    // The broker owns a store it opened from a URL, and closes it.
    const open = (): Promise<Broker> =>
      Broker.open({ ...options, store: `sqlite:${path}`, sqlite: { mergeKeysAt: 4, worker: false } });
    let broker = await open();
    // 25 messages, 5 distinct bodies: merges of both indexes happen several times meanwhile.
    const sent = [];
    for (let i = 0; i < 25; i++)
      sent.push(
        await broker.send({ sender: 's', receiver: 'q', body: { b: String(i % 5) }, clientTime: at(i) }),
      );
    assert.equal(new Set(sent.map((m) => m.mid)).size, 25);
    assert.equal((await broker.stats()).store.blobs, 5);
    await broker.close();

    // Reopened: every mid still deduplicates and reads back with its body.
    broker = await open();
    for (let i = 0; i < 25; i++) {
      const again = await broker.send({
        sender: 's',
        receiver: 'q',
        body: { b: String(i % 5) },
        clientTime: at(i),
      });
      assert.equal(again.mid, sent[i]!.mid);
      assert.deepEqual((await broker.get(sent[i]!.mid))?.body, { b: String(i % 5) });
    }
    let st = (await broker.stats()).store;
    assert.equal(st.messages, 25);
    assert.equal(st.blobs, 5);

    // Lease all, ack every one.
    const leased = await broker.fetchMany('q', { max: 100 });
    assert.equal(leased.length, 25);
    for (const m of leased) await broker.ack(m.mid, m.lid!, 1);
    assert.equal(
      await codeOf(() => broker.ack(leased[0]!.mid, leased[0]!.lid!, 1)),
      'MAILBOX_ERR_LEASE_INVALID',
    );

    // Past retention: messages expire, their blobs drop to zero and are collected.
    clock.advance(2000);
    const collected = await broker.collect();
    assert.deepEqual(collected, { messages: 25, blobs: 5 });
    st = (await broker.stats()).store;
    assert.equal(st.messages, 0);
    assert.equal(st.blobs, 0);
    assert.equal(await broker.get(sent[3]!.mid), null);
    await broker.close();

    // Reopened once more: nothing stale is left in either index; the same sends are new again.
    broker = await open();
    const fresh = await broker.send({ sender: 's', receiver: 'q', body: { b: '0' }, clientTime: at(0) });
    assert.equal(fresh.mid, sent[0]!.mid);
    assert.equal(fresh.deliveryCount, 0);
    assert.equal(fresh.state, 'queued');
    assert.equal((await broker.stats()).store.blobs, 1);
    await broker.close();

    const db = new Database(path, { readonly: true });
    const keys = db
      .prepare('SELECT count(*) FROM blob_keys WHERE id NOT IN (SELECT id FROM blobs)')
      .pluck()
      .get();
    db.close();
    assert.equal(keys, 0, 'the blob key index keeps no collected blob');
  } finally {
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test('a purge forgets its messages and drops their blob references', async () => {
  const store = await SqliteStore.open(':memory:', { mergeKeysAt: 2 });
  const broker = await Broker.open({ store, sweepIntervalMs: 0 });
  const mids = [];
  for (let i = 0; i < 7; i++)
    mids.push((await broker.send({ sender: 's', receiver: 'p', body: { i: String(i) } })).mid);
  assert.equal(await broker.purge('p'), 7);
  for (const mid of mids) assert.equal(await broker.get(mid), null);
  assert.equal((await broker.collect()).blobs, 7);
  await broker.close();
  await store.close();
});

/** The schema of the first release (mid and blob key UNIQUE in their tables). */
const SCHEMA_1 = `
CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE mailboxes (name TEXT PRIMARY KEY, max_deliveries INTEGER NOT NULL, retry_delay_ms INTEGER NOT NULL,
  retention_ms INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE blobs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, refs INTEGER NOT NULL, data NOT NULL);
CREATE INDEX blobs_zero ON blobs(key) WHERE refs <= 0;
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY, mid TEXT NOT NULL UNIQUE, mailbox TEXT NOT NULL, sender TEXT NOT NULL,
  receiver TEXT NOT NULL, client_time INTEGER NOT NULL, received_at INTEGER NOT NULL, delay_ms INTEGER NOT NULL,
  state INTEGER NOT NULL, status INTEGER NOT NULL, due INTEGER, delivery_count INTEGER NOT NULL DEFAULT 0,
  lid TEXT, fence INTEGER, leased_until INTEGER, fetch_time INTEGER, consumer TEXT,
  blob TEXT NOT NULL, body_bytes INTEGER NOT NULL, expires_at INTEGER, history TEXT NOT NULL DEFAULT '');
CREATE INDEX messages_ready ON messages(mailbox, due, seq) WHERE state = 0;
CREATE INDEX messages_leased ON messages(leased_until) WHERE state = 1;
CREATE INDEX messages_expiring ON messages(expires_at) WHERE state = 2;
`;

test('a schema-1 database is migrated at open: messages, leases, bodies and dedup carry over', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const path = join(dir.path, 'old.db');
    // Written by the first release: one queued message, one leased, one confirmed; two blobs.
    const seed = await Broker.open({ store: 'memory:', sweepIntervalMs: 0 });
    const q = await seed.send({ sender: 's', receiver: 'jobs', body: { n: '1' }, clientTime: at(1) });
    const l = await seed.send({ sender: 's', receiver: 'jobs', body: { n: '2' }, clientTime: at(2) });
    await seed.close();
    const now = Date.now();
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec(SCHEMA_1);
    old.prepare(`INSERT INTO meta (k, v) VALUES ('fence_epoch', 7)`).run();
    old.prepare('INSERT INTO mailboxes VALUES (?, 5, 1000, 86400000, ?)').run('jobs', now);
    const blob = old.prepare('INSERT INTO blobs (key, refs, data) VALUES (?, 1, ?)');
    blob.run(q.blobKey, 'n=1');
    blob.run(l.blobKey, 'n=2');
    const insert = old.prepare(
      `INSERT INTO messages (mid, mailbox, sender, receiver, client_time, received_at, delay_ms, state, status, due,
       delivery_count, lid, fence, leased_until, fetch_time, consumer, blob, body_bytes)
       VALUES (?, 'jobs', 's', 'jobs', ?, ?, 0, ?, 8, ?, ?, ?, ?, ?, ?, ?, ?, 3)`,
    );
    insert.run(q.mid, at(1).getTime(), now, 0, now, 0, null, null, null, null, null, q.blobKey);
    const lid = 'a'.repeat(32);
    insert.run(
      l.mid,
      at(2).getTime(),
      now,
      1,
      null,
      1,
      lid,
      7 * 2 ** 32 + 1,
      now + 600_000,
      now,
      'w',
      l.blobKey,
    );
    old.close();

    const broker = await Broker.open({ store: `sqlite:${path}`, sweepIntervalMs: 0 });
    const leasedBack = await broker.get(l.mid);
    assert.equal(leasedBack?.state, 'leased');
    assert.deepEqual(leasedBack?.body, { n: '2' });
    await broker.ack(l.mid, lid, 1);
    assert.equal((await broker.get(l.mid))?.state, 'confirmed');
    const again = await broker.send({ sender: 's', receiver: 'jobs', body: { n: '1' }, clientTime: at(1) });
    assert.equal(again.mid, q.mid, 'the old mid still deduplicates');
    const [m] = await broker.fetchMany('jobs', { max: 10 });
    assert.equal(m?.mid, q.mid);
    assert.deepEqual(m?.body, { n: '1' });
    assert.ok(m.fence! > 7 * 2 ** 32 + 1, 'fencing tokens keep growing across the migration');
    const st = (await broker.stats()).store;
    assert.equal(st.messages, 2);
    assert.equal(st.blobs, 2);
    await broker.close();

    const db = new Database(path, { readonly: true });
    assert.equal(db.prepare(`SELECT v FROM meta WHERE k = 'schema'`).pluck().get(), 2);
    db.close();
  } finally {
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test('a database of a newer schema is refused with MAILBOX_ERR_STORE, untouched', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const path = join(dir.path, 'new.db');
    await (await SqliteStore.open(path)).close();
    const db = new Database(path);
    db.prepare(`UPDATE meta SET v = 99 WHERE k = 'schema'`).run();
    db.close();
    let error: unknown;
    try {
      await SqliteStore.open(path);
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof MailboxError);
    assert.equal(error.code, 'MAILBOX_ERR_STORE');
    assert.match(error.message, /schema 99/);
    assert.equal(
      await codeOf(() => SqliteStore.open(path, { mergeKeysAt: 0 })),
      'MAILBOX_ERR_INVALID_ARGUMENT',
    );
  } finally {
    rmSync(dir.path, { recursive: true, force: true });
  }
});

/** An in-memory SQLite store whose flushes the test releases or fails by hand. */
class StagedStore implements MessageStore {
  readonly flushes: { resolve: () => void; reject: (e: Error) => void }[] = [];
  /** Batches with a send or an ack wait for the test; others (a long poll's empty claim) flush at once. */
  readonly #inner: SqliteStore;
  /** Like the real store with a flusher (which allows eight): a second batch may commit while the first one's flush runs. */
  readonly concurrentBatches = 2;
  constructor(inner: SqliteStore) {
    this.#inner = inner;
  }
  get blobs(): MessageStore['blobs'] {
    return this.#inner.blobs;
  }
  apply(ops: readonly StoreOp[], nowMs: number): Promise<StoreResult[]> {
    return this.#inner.apply(ops, nowMs);
  }
  applyStaged(ops: readonly StoreOp[], nowMs: number): { results: StoreResult[]; flushed: Promise<void> } {
    const { results } = this.#inner.applyStaged(ops, nowMs);
    if (!ops.some((op) => op.kind === 'send' || op.kind === 'ack'))
      return { results, flushed: Promise.resolve() };
    return {
      results,
      flushed: new Promise<void>((resolve, reject) => this.flushes.push({ resolve, reject })),
    };
  }
  /** Resolves once a held batch committed (its flush waits for the test). */
  async committed(): Promise<void> {
    while (this.flushes.length === 0) await new Promise((r) => setImmediate(r));
  }
  get: MessageStore['get'] = (mid) => this.#inner.get(mid);
  headers: MessageStore['headers'] = (m, a, l) => this.#inner.headers(m, a, l);
  mailboxes: MessageStore['mailboxes'] = (now) => this.#inner.mailboxes(now);
  stats: MessageStore['stats'] = () => this.#inner.stats();
  close: MessageStore['close'] = () => this.#inner.close();
}

test('a staged store: a lease goes out at commit, the send and the ack resolve only at the flush', async () => {
  const store = new StagedStore(await SqliteStore.open(':memory:'));
  const broker = await Broker.open({ store, sweepIntervalMs: 0 });
  const poll = broker.fetchMany('q', { max: 1, waitMs: 5000 });
  let sendDone = false;
  const send = broker.send({ sender: 's', receiver: 'q', body: { x: '1' } }).then((m) => {
    sendDone = true;
    return m;
  });
  // The send and the long poll's claim commit together; the claim answers before the flush.
  const [m] = await poll;
  assert.ok(m !== undefined);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(sendDone, false, 'the send is not confirmed before its flush');
  store.flushes.shift()!.resolve();
  assert.equal((await send).mid, m.mid);

  let ackDone = false;
  const ack = broker.ack(m.mid, m.lid!, 1).then(() => (ackDone = true));
  await store.committed();
  assert.equal(ackDone, false, 'the ack is not confirmed before its flush');
  assert.equal(store.flushes.length, 1);
  store.flushes.shift()!.resolve();
  await ack;

  // A failed flush fails the batch's confirmations with MAILBOX_ERR_STORE.
  const failed = broker.send({ sender: 's', receiver: 'q', body: { x: '2' } });
  await store.committed();
  store.flushes.shift()!.reject(new Error('EIO'));
  assert.equal(await codeOf(() => failed), 'MAILBOX_ERR_STORE');
  await broker.close();
  await store.close();
});

test('the store on its worker thread: typed errors cross the thread; a closed store refuses calls', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const path = join(dir.path, 't.db');
    const store = await SqliteThreadStore.open(path);
    assert.equal(
      await codeOf(() => SqliteThreadStore.open(path, { busyTimeoutMs: 20 })),
      'MAILBOX_ERR_STORE_LOCKED',
    );
    const broker = await Broker.open({ store, sweepIntervalMs: 0 });
    const sent = await broker.send({ sender: 's', receiver: 'w', body: { a: 'b' } });
    const [m] = await broker.fetchMany('w', { max: 1 });
    assert.equal(m?.mid, sent.mid);
    assert.equal(await codeOf(() => broker.ack(m.mid, 'f'.repeat(32), 1)), 'MAILBOX_ERR_LEASE_INVALID');
    await broker.ack(m.mid, m.lid!, 1);
    await store.blobs.put('k', new Uint8Array([1, 2, 3]));
    const back = await store.blobs.get('k');
    assert.ok(Buffer.isBuffer(back));
    assert.deepEqual([...back], [1, 2, 3]);
    await broker.close();
    await store.close();
    assert.equal(await codeOf(() => store.get(sent.mid)), 'MAILBOX_ERR_CLOSED');
    // The thread released the database: it opens again, with the message confirmed.
    const again = await SqliteStore.open(path);
    assert.equal((await again.get(sent.mid))?.state, 'confirmed');
    await again.close();
  } finally {
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test('a failed WAL flush fails its batch and poisons the store: nothing later is confirmed', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const broker = await Broker.open({ store: `sqlite:${join(dir.path, 'p.db')}`, sweepIntervalMs: 0 });
    const kept = await broker.send({ sender: 's', receiver: 'q', body: { n: '1' } });
    // The disk fails the next flush (the store's fdatasync comes from node:fs).
    useFdatasync((_fd, cb) => cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })));
    assert.equal(
      await codeOf(() => broker.send({ sender: 's', receiver: 'q', body: { n: '2' } })),
      'MAILBOX_ERR_STORE',
    );
    useFdatasync();
    // The disk "works" again, but the store refuses: what the failed flush covered may be lost.
    assert.equal(
      await codeOf(() => broker.send({ sender: 's', receiver: 'q', body: { n: '3' } })),
      'MAILBOX_ERR_STORE',
    );
    assert.equal(await codeOf(() => broker.ack(kept.mid, 'f'.repeat(32), 1)), 'MAILBOX_ERR_STORE');
    await broker.close();
    // A new open starts clean; the confirmed send is there.
    const again = await Broker.open({ store: `sqlite:${join(dir.path, 'p.db')}`, sweepIntervalMs: 0 });
    assert.equal((await again.get(kept.mid))?.state, 'queued');
    await again.close();
  } finally {
    useFdatasync();
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test('batches commit while earlier flushes run, up to concurrentBatches; a lease goes out before any flush', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  const held: (() => void)[] = [];
  try {
    const store = await SqliteStore.open(join(dir.path, 'f.db'));
    const broker = await Broker.open({ store, sweepIntervalMs: 0 });
    await broker.send({ sender: 's', receiver: 'warm', body: {} });
    assert.equal(store.concurrentBatches, 8);
    // The disk stalls: every fdatasync waits until the test lets it finish.
    useFdatasync((fd, cb) => held.push(() => realFdatasync(fd, cb)));
    const poll = broker.fetchMany('q', { max: 1, waitMs: 10_000 });
    // Asleep before the first send, the poll's claim rides in that send's batch.
    while ((await broker.stats()).waiters === 0) await new Promise((r) => setImmediate(r));
    const confirmed: number[] = [];
    const sends: Promise<unknown>[] = [];
    // Twelve sends, each in a batch of its own (one a macrotask).
    for (let i = 0; i < 12; i++) {
      sends.push(
        broker.send({ sender: 's', receiver: 'q', body: { i: String(i) } }).then(() => confirmed.push(i)),
      );
      await new Promise((r) => setTimeout(r, 2));
    }
    // The first send's lease went out at its commit, with its flush still on the disk.
    const [m] = await poll;
    assert.equal(m?.body.i, '0');
    await new Promise((r) => setTimeout(r, 20));
    // Eight batches committed (one flushing, seven waiting to share the next flush); the ninth
    // waits for a free slot; nothing is confirmed.
    assert.equal((await store.stats()).messages, 1 + 8);
    assert.deepEqual(confirmed, []);
    assert.equal(held.length, 1, 'one flush at a time');
    useFdatasync();
    held.shift()!();
    await Promise.all(sends);
    assert.deepEqual(confirmed, [...Array(12).keys()], 'confirmed in commit order');
    assert.equal((await store.stats()).messages, 1 + 12);
    await broker.close();
    await store.close();
  } finally {
    useFdatasync();
    for (const release of held) release();
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test('checkpoints on their own thread: the WAL restarts and stays bounded under continuous writes; a reopen finds everything', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const path = join(dir.path, 'c.db');
    // A small restart size; the owner takes over whenever frames are left after a pass.
    const store = await SqliteStore.open(path, {
      checkpointer: { restartFrames: 64, catchUpFrames: 1_000_000, idleMs: 1 },
    });
    const broker = await Broker.open({ store, sweepIntervalMs: 0 });
    try {
      const body = (i: number): { pad: string } => ({ pad: 'x'.repeat(400) + String(i) });
      let sent = 0;
      let maxWal = 0;
      // One large commit: the thread's pass over it outlasts the small commits that follow, so
      // it ends with frames left and hands the last ones over to the owner.
      await broker.sendMany(
        Array.from({ length: 2000 }, (_, i) => ({ sender: 's', receiver: 'c', body: body(i) })),
      );
      sent += 2000;
      // A round is three commits (send, lease, ack), each appending at least one frame (measured:
      // ~11), so without restarts the WAL would hold at least `4 * rounds` frames more than the
      // batch's. Until the owner has taken over a pass, the WAL was seen to restart (its frame
      // count fell) and its file is less than half that size, however slow the machine: a slow
      // thread lets the WAL grow for a while, but restarts stop it while the writes go on.
      const frameBytes = 4096 + 24;
      const appendedAtLeast = (rounds: number): number => 32 + 4 * rounds * frameBytes;
      const deadline = Date.now() + 30_000;
      let rounds = 0;
      let peak = 0;
      let restarted = false;
      while (
        Date.now() < deadline &&
        !(
          store.checkpointStats!.ownerPasses > 0 &&
          restarted &&
          sent >= 3000 &&
          maxWal < appendedAtLeast(rounds) / 2
        )
      ) {
        await broker.send({ sender: 's', receiver: 'c', body: body(sent) });
        sent++;
        rounds++;
        const [m] = await broker.fetchMany('c', { max: 1 });
        if (m !== undefined) await broker.ack(m.mid, m.lid!, 1);
        maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
        const frames = store.checkpointStats!.walFrames;
        if (frames < peak / 2) restarted = true;
        peak = Math.max(peak, frames);
      }
      const stats = store.checkpointStats!;
      assert.ok(stats.threadPasses > 0, 'the thread checkpointed');
      assert.ok(stats.ownerPasses > 0, 'the owner copied the last frames so the WAL could restart');
      assert.ok(restarted, `the WAL restarted (peak ${peak} frames, now ${stats.walFrames})`);
      assert.equal(stats.fallback, false);
      // Never restarted, it would hold every frame written.
      assert.ok(
        maxWal < appendedAtLeast(rounds) / 2,
        `the WAL file stayed small (${maxWal} bytes for ${rounds} rounds, ${sent} sends)`,
      );
      await broker.close();
      await store.close();
      assert.equal(existsSync(`${path}-wal`), false, 'the last close checkpointed and removed the WAL');
      const again = await SqliteStore.open(path);
      const totals = await again.stats();
      assert.equal(totals.messages, sent);
      await again.close();
    } finally {
      await broker.close();
      await store.close();
    }
  } finally {
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test("checkpoint 'commit' keeps SQLite's own checkpoints; either way one process owns the file; bad values are refused", async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const path = join(dir.path, 'o.db');
    assert.equal(
      await codeOf(() => SqliteStore.open(path, { checkpoint: 'sometimes' as never })),
      'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    for (const checkpointer of [{ idleMs: 0 }, { restartFrames: 1.5 }, { maxFrames: -1 }, 'often' as never])
      assert.equal(
        await codeOf(() => SqliteStore.open(path, { checkpointer })),
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
    assert.equal(existsSync(path), false, 'a refused open creates nothing');
    const a = await SqliteStore.open(path, { checkpoint: 'commit' });
    assert.equal(a.checkpointStats, undefined);
    assert.equal(
      await codeOf(() => SqliteStore.open(path, { busyTimeoutMs: 20 })),
      'MAILBOX_ERR_STORE_LOCKED',
    );
    const broker = await Broker.open({ store: a, sweepIntervalMs: 0 });
    const sent = await broker.send({ sender: 's', receiver: 'o', body: { a: 'b' } });
    await broker.close();
    await a.close();
    // The lock went with the store: a thread-checkpointed store opens it and finds the message.
    const b = await SqliteStore.open(path);
    assert.ok(b.checkpointStats !== undefined);
    assert.equal(
      await codeOf(() => SqliteStore.open(path, { checkpoint: 'commit', busyTimeoutMs: 20 })),
      'MAILBOX_ERR_STORE_LOCKED',
    );
    assert.equal((await b.get(sent.mid))?.mid, sent.mid);
    await b.close();
  } finally {
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test('a process started with V8 or module flags opens both thread-backed stores (their workers take no flags)', async () => {
  const dir = makeTempDir('switchyard-sqlite-');
  try {
    const code = `
      import { Broker, SqliteStore, SqliteThreadStore } from '@switchyard/mailbox';
      const dir = ${JSON.stringify(dir.path)};
      for (const store of [await SqliteStore.open(dir + '/a.db'), await SqliteThreadStore.open(dir + '/b.db')]) {
        const broker = await Broker.open({ store, sweepIntervalMs: 0 });
        const m = await broker.send({ sender: 's', receiver: 'q', body: { a: 'b' } });
        const [got] = await broker.fetchMany('q', { max: 1 });
        if (got?.mid !== m.mid) throw new Error('no message');
        await broker.close();
        await store.close();
      }
      console.log('ok');`;
    const child = spawnSync(
      process.execPath,
      ['--max-semi-space-size=32', '--input-type=module', '-e', code],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(child.stderr, '');
    assert.equal(child.stdout.trim(), 'ok');
    assert.equal(child.status, 0);
  } finally {
    rmSync(dir.path, { recursive: true, force: true });
  }
});

test('batches whose claims take their own sends give what the memory store gives, op for op (random batches)', async () => {
  // A seeded generator: the same batches every run.
  let seed = 0x5eed;
  const rnd = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
  const stores: MessageStore[] = [new MemoryStore(), await SqliteStore.open(':memory:')];
  try {
    const boxes = ['a', 'b', 'c'];
    // Retries come due at once (retryDelayMs 0), so acks with status 2 put due rows before a batch's sends.
    const defaults = { maxDeliveries: 2, retryDelayMs: 0, retentionMs: 60_000 };
    /** Leases handed out so far, per store (same position, each store's own lid). */
    const leases: { mid: string; lids: string[] }[] = [];
    const fences: number[][] = [[], []];
    const mids: string[] = [];
    let now = Date.UTC(2026, 0, 1);
    let k = 0;
    for (let batch = 0; batch < 300; batch++) {
      now += rnd(3) * 500;
      // Each op is made per store (its own lids).
      const plan: ((side: number) => StoreOp)[] = [];
      const size = 1 + rnd(12);
      for (let i = 0; i < size; i++) {
        const r = rnd(100);
        if (r < 45) {
          // A send: new, delayed, or the mid of an earlier (or this batch's) send.
          const again = mids.length > 0 && rnd(8) === 0;
          const mid = again ? mids[rnd(mids.length)]! : (++k).toString(16).padStart(40, '0');
          if (!again) mids.push(mid);
          const receiver = boxes[rnd(boxes.length)]!;
          // Blob keys are content hashes: a few distinct bodies, each under its own key.
          const body = `n=${k % 7}&x=${encodeURIComponent('é&=')}`;
          const message = {
            mid,
            sender: 's',
            receiver,
            clientTimeMs: now - 1,
            delayMs: rnd(5) === 0 ? 1000 : 0,
            blobKey: `key-${k % 7}`,
            body,
            decoded: { n: String(k % 7), x: 'é&=' },
            bodyBytes: body.length,
          };
          plan.push(() => ({ kind: 'send', message, defaults }));
        } else if (r < 75) {
          const op: StoreOp = {
            kind: 'claim',
            mailbox: boxes[rnd(boxes.length)]!,
            max: rnd(6),
            leaseMs: 1000 + rnd(3) * 1000,
            consumer: `c${rnd(3)}`,
          };
          plan.push(() => op);
        } else if (r < 92 && leases.length > 0) {
          const l = leases[rnd(leases.length)]!;
          const status = rnd(3) === 0 ? 2 : 1;
          const forged = rnd(6) === 0;
          plan.push((side) => ({
            kind: 'ack',
            mid: l.mid,
            lid: forged ? 'f'.repeat(32) : l.lids[side]!,
            status,
          }));
        } else if (r < 96 && mids.length > 0) {
          // An ack or extend naming a send, maybe one of this very batch.
          const mid = mids[mids.length - 1 - rnd(Math.min(3, mids.length))]!;
          const op: StoreOp =
            rnd(2) === 0
              ? { kind: 'ack', mid, lid: 'f'.repeat(32), status: 1 }
              : { kind: 'extend', mid, lid: 'f'.repeat(32), leaseMs: 500 };
          plan.push(() => op);
        } else plan.push(() => ({ kind: 'reenqueue', limit: 3 }));
      }
      const results: StoreResult[][] = [];
      for (const [side, store] of stores.entries())
        results.push(
          await store.apply(
            plan.map((p) => p(side)),
            now,
          ),
        );
      // Same results, but for lids (random) and fences (each store's own numbering; their order is compared).
      const seen = results.map((rs, side) =>
        rs.map((r) => {
          if (r.kind !== 'claim' && r.kind !== 'extend' && r.kind !== 'send') return r;
          const ms = r.kind === 'claim' ? r.messages : r.message === null ? [] : [r.message];
          for (const m of ms) if (m.fence !== null && r.kind === 'claim') fences[side]!.push(m.fence);
          const plain = ms.map((m) => ({
            ...m,
            lid: m.lid === null ? null : 'lid',
            fence: m.fence === null ? null : 0,
          }));
          // nextDueMs too: both stores give it for an empty claim only.
          if (r.kind === 'claim') return { ...r, messages: plain };
          return { ...r, message: plain[0] ?? null };
        }),
      );
      assert.deepEqual(seen[1], seen[0], `batch ${batch}`);
      for (const [j, r] of results[0]!.entries())
        if (r.kind === 'claim')
          for (const [x, m] of r.messages.entries()) {
            const other = results[1]![j] as Extract<StoreResult, { kind: 'claim' }>;
            leases.push({ mid: m.mid, lids: [m.lid!, other.messages[x]!.lid!] });
          }
      if (leases.length > 40) leases.splice(0, leases.length - 40);
      if (batch % 25 === 24 || batch === 299) {
        for (const mailbox of [...boxes, 'a.dead', 'b.dead', 'c.dead']) {
          const pages = await Promise.all(
            stores.map((s) => s.headers(mailbox, { receivedAtMs: -1, seq: Number.MAX_SAFE_INTEGER }, 10_000)),
          );
          const [m0, m1] = pages.map((p) =>
            p.headers.map((h) => ({
              ...h,
              lid: h.lid === null ? null : 'lid',
              fence: h.fence === null ? null : 0,
            })),
          );
          assert.deepEqual(m1, m0, `headers of ${mailbox} after batch ${batch}`);
        }
        for (const mid of mids.slice(-60)) {
          const [g0, g1] = await Promise.all(stores.map((s) => s.get(mid)));
          const plain = (m: typeof g0 | undefined) =>
            m === null || m === undefined
              ? null
              : { ...m, lid: m.lid === null ? null : 'lid', fence: m.fence === null ? null : 0 };
          assert.deepEqual(plain(g1), plain(g0), `message ${mid}`);
        }
      }
    }
    // Fencing tokens handed out in the same order.
    const rank = (fs: number[]): number[] => fs.map((f) => [...fs].sort((x, y) => x - y).indexOf(f));
    assert.deepEqual(rank(fences[1]!), rank(fences[0]!));
    assert.ok(fences[0]!.length > 300, `${fences[0]!.length} leases`);
  } finally {
    for (const s of stores) await s.close();
  }
});
