import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Publisher, Subscriber, type PubSubConfig, type Sample } from '@switchyard/shm';
import { PubSubChild, pair, pattern, shmDir, type SubSummary } from './pubsub-helpers.js';

const dir = shmDir();
test.after(() => dir[Symbol.dispose]());

function same(bytes: Uint8Array, want: Uint8Array): boolean {
  return bytes.length === want.length && bytes.every((b, i) => b === want[i]);
}

let regions = 0;
/** A fresh region of its own for each test. */
const drainPair = (config: PubSubConfig): ReturnType<typeof pair> =>
  pair(dir.path, `drain-${regions++}`, { prefault: false, ...config });

/** Drains everything there now; each message copied (its bytes are only valid during the call). */
function drainAll(subscriber: Subscriber, max?: number): { seq: number; bytes: Uint8Array }[] {
  const out: { seq: number; bytes: Uint8Array }[] = [];
  const n = subscriber.drain((bytes, seq) => out.push({ seq, bytes: bytes.slice() }), max);
  assert.equal(n, out.length, 'drain returns how many it delivered');
  return out;
}

test('drain: every message there, in order, inline and in blocks; 0 when none; max bounds a call', () => {
  using p = drainPair({ blockCount: 16, ringDepth: 16, blockSize: 256 });
  const { publisher, subscriber } = p;
  assert.deepEqual(drainAll(subscriber), [], 'nothing published yet');
  const lengths = [0, 1, 64, 65, 256, 8, 200, 63];
  for (const [seq, length] of lengths.entries()) publisher.send(pattern(seq, length));
  const first = drainAll(subscriber, 3);
  assert.deepEqual(
    first.map((m) => m.seq),
    [0, 1, 2],
  );
  assert.equal(subscriber.position, 3n, 'position counts what drain handed out');
  const rest = drainAll(subscriber);
  assert.deepEqual(
    rest.map((m) => m.seq),
    [3, 4, 5, 6, 7],
  );
  for (const { seq, bytes } of [...first, ...rest]) {
    assert.ok(same(bytes, pattern(seq, lengths[seq]!)), `message ${seq} whole`);
  }
  assert.equal(
    subscriber.drain(() => assert.fail('nothing left')),
    0,
  );
  assert.equal(subscriber.missed, 0);
});

test('drain after tryRecv: a run of inline messages taken ahead is handed out by either, in order', () => {
  using p = drainPair({ blockCount: 16, ringDepth: 16, blockSize: 128 });
  const { publisher, subscriber } = p;
  for (let seq = 0; seq < 6; seq++) publisher.send(pattern(seq, 8));
  publisher.send(pattern(6, 100)); // a block ends the run
  publisher.send(pattern(7, 8));
  const sample = subscriber.tryRecv()!;
  assert.equal(sample.sequence, 0n);
  const drained = drainAll(subscriber, 2);
  assert.deepEqual(
    drained.map((m) => m.seq),
    [1, 2],
  );
  const next = subscriber.tryRecv()!;
  assert.equal(next.sequence, 3n);
  next.release();
  const rest = drainAll(subscriber);
  assert.deepEqual(
    rest.map((m) => m.seq),
    [4, 5, 6, 7],
  );
  assert.ok(same(rest[2]!.bytes, pattern(6, 100)));
  assert.ok(same(sample.bytes, pattern(0, 8)), 'the sample taken first is still whole');
  sample.release();
});

test('drain: bad arguments, a callback that receives from its subscriber, and a closed subscriber are typed errors', async () => {
  using p = drainPair({ blockCount: 4, ringDepth: 4, blockSize: 64 });
  const { publisher, subscriber } = p;
  for (const fn of [undefined, null, 1, 'f', {}]) {
    assert.throws(() => subscriber.drain(fn as never), { code: 'SHM_ERR_INVALID_ARGUMENT', message: /fn/ });
  }
  for (const max of [0, -1, 1.5, NaN, Infinity, '2', null]) {
    assert.throws(() => subscriber.drain(() => {}, max as never), {
      code: 'SHM_ERR_INVALID_ARGUMENT',
      message: /max/,
    });
  }
  publisher.send(pattern(0, 8));
  publisher.send(pattern(1, 8));
  publisher.send(pattern(2, 8));
  const inside: unknown[] = [];
  let rejected: Promise<unknown> | undefined;
  const n = subscriber.drain(() => {
    for (const call of [
      () => subscriber.tryRecv(),
      () => subscriber.recvSync({ timeoutMs: 0 }),
      () => subscriber.drain(() => {}),
    ]) {
      try {
        call();
      } catch (error) {
        inside.push((error as { code?: string }).code);
      }
    }
    rejected ??= subscriber.recv();
  }, 1);
  assert.equal(n, 1);
  assert.deepEqual(inside, [
    'SHM_ERR_INVALID_ARGUMENT',
    'SHM_ERR_INVALID_ARGUMENT',
    'SHM_ERR_INVALID_ARGUMENT',
  ]);
  await assert.rejects(rejected!, { code: 'SHM_ERR_INVALID_ARGUMENT' });
  // Outside the callback, the subscriber receives again: the messages the callback could not take.
  assert.equal(subscriber.tryRecv()?.sequence, 1n);
  subscriber.close();
  assert.throws(() => subscriber.drain(() => {}), { code: 'SHM_ERR_CLOSED' });
});

test('drain: an error thrown by the callback propagates; its message counts as read, the rest stay', () => {
  for (const inlineMaxBytes of [64, 0]) {
    for (const slowSubscriber of ['overwrite', 'block'] as const) {
      using p = drainPair({ blockCount: 8, ringDepth: 8, blockSize: 64, inlineMaxBytes, slowSubscriber });
      const { publisher, subscriber } = p;
      for (let seq = 0; seq < 4; seq++) publisher.send(pattern(seq, 16));
      const boom = new Error('boom');
      assert.throws(
        () =>
          subscriber.drain((_bytes, seq) => {
            if (seq === 1) throw boom;
          }),
        boom,
      );
      assert.equal(subscriber.position, 2n);
      assert.deepEqual(
        drainAll(subscriber).map((m) => m.seq),
        [2, 3],
      );
      // With blocks, the callback's reference was given back: every block can be taken again.
      for (let seq = 4; seq < 12; seq++) assert.equal(publisher.trySend(pattern(seq, 16)), true);
    }
  }
});

test('drain: a callback that closes its subscriber ends the call; the subscriber stays closed', () => {
  for (const inlineMaxBytes of [64, 0]) {
    for (const slowSubscriber of ['overwrite', 'block'] as const) {
      using p = drainPair({ blockCount: 8, ringDepth: 8, blockSize: 64, inlineMaxBytes, slowSubscriber });
      const { publisher, subscriber } = p;
      for (let seq = 0; seq < 4; seq++) publisher.send(pattern(seq, 16));
      const seen: number[] = [];
      const n = subscriber.drain((_bytes, seq) => {
        seen.push(seq);
        subscriber.close();
      });
      assert.equal(n, 1);
      assert.deepEqual(seen, [0]);
      assert.throws(() => subscriber.drain(() => {}), { code: 'SHM_ERR_CLOSED' });
      // Its guards went with it: every block can be taken again.
      for (let seq = 4; seq < 12; seq++) assert.equal(publisher.trySend(pattern(seq, 16)), true);
    }
  }
});

test('drain: a closed region is drained to its end, then SHM_ERR_CLOSED', () => {
  const name = `drain-end-${regions++}`;
  const publisher = Publisher.create(name, { dir: dir.path, blockCount: 8, ringDepth: 8, blockSize: 64 });
  const subscriber = Subscriber.open(name, { dir: dir.path });
  try {
    publisher.send(pattern(0, 8));
    publisher.send(pattern(1, 40));
    publisher.close();
    assert.deepEqual(
      drainAll(subscriber).map((m) => m.seq),
      [0, 1],
    );
    assert.throws(() => subscriber.drain(() => {}), { code: 'SHM_ERR_CLOSED' });
  } finally {
    subscriber.close();
  }
});

test("drain with 'block' reads blocks in place and gives the ring room back when it returns", () => {
  using p = drainPair({
    blockCount: 4,
    ringDepth: 4,
    blockSize: 64,
    inlineMaxBytes: 0,
    slowSubscriber: 'block',
  });
  const { publisher, subscriber } = p;
  for (let seq = 0; seq < 4; seq++) assert.equal(publisher.trySend(pattern(seq, 32)), true);
  assert.equal(publisher.trySend(pattern(4, 32)), false, 'the ring holds four unread messages');
  let during: boolean | undefined;
  const n = subscriber.drain((bytes, seq) => {
    assert.ok(same(bytes, pattern(seq, 32)));
    // While the callbacks run, the position is not yet published: no room.
    during ??= publisher.isWritable;
  });
  assert.equal(n, 4);
  assert.equal(during, false, 'entries read in place stay in the ring during the call');
  for (let seq = 4; seq < 8; seq++) assert.equal(publisher.trySend(pattern(seq, 32)), true);
  assert.deepEqual(
    drainAll(subscriber).map((m) => m.seq),
    [4, 5, 6, 7],
  );
  assert.equal(subscriber.missed, 0);
});

test('drain with overwrite: a lapped subscriber skips to the oldest message held and counts the gap', () => {
  using p = drainPair({ blockCount: 16, ringDepth: 8, blockSize: 128 });
  const { publisher, subscriber } = p;
  for (let seq = 0; seq < 30; seq++) publisher.send(pattern(seq, seq % 2 === 0 ? 8 : 100));
  const got = drainAll(subscriber);
  assert.ok(got.length > 0 && got.length <= 8);
  assert.equal(got[0]!.seq, subscriber.missed, 'the gap before the first is what it missed');
  assert.equal(got.at(-1)!.seq, 29);
  for (const { seq, bytes } of got) assert.ok(same(bytes, pattern(seq, seq % 2 === 0 ? 8 : 100)));
  assert.equal(subscriber.missed + got.length, 30);
});

test('trySend and tryLoan: published or loaned, else false / null (nothing taken) when the ring or the pool is full; errors otherwise', () => {
  {
    using p = drainPair({ blockCount: 4, ringDepth: 2, blockSize: 64, slowSubscriber: 'block' });
    const { publisher, subscriber } = p;
    assert.equal(publisher.trySend(pattern(0, 8)), true);
    assert.equal(publisher.trySend(pattern(1, 64)), true);
    assert.equal(publisher.trySend(pattern(2, 8)), false);
    assert.equal(publisher.sequence, 2n, 'a refused message takes no sequence');
    assert.throws(() => publisher.send(pattern(2, 8)), { code: 'SHM_ERR_WOULD_BLOCK' });
    subscriber.tryRecv()!.release();
    assert.equal(publisher.trySend(pattern(2, 8)), true);
    assert.throws(() => publisher.trySend('text' as never), { code: 'SHM_ERR_INVALID_ARGUMENT' });
    assert.throws(() => publisher.trySend(new Uint16Array(4) as never), { code: 'SHM_ERR_INVALID_ARGUMENT' });
    assert.throws(() => publisher.trySend(new Uint8Array(65)), { code: 'SHM_ERR_DATA_TOO_LARGE' });
    // tryLoan likewise: null while the ring holds two unread messages, a Loan once there is room.
    assert.equal(publisher.trySend(pattern(3, 8)), false);
    assert.equal(publisher.tryLoan(), null);
    assert.throws(() => publisher.loan(), { code: 'SHM_ERR_WOULD_BLOCK' });
    subscriber.tryRecv()!.release();
    const loan = publisher.tryLoan()!;
    loan.bytes.set(pattern(3, 40));
    loan.publish(40);
    assert.equal(publisher.sequence, 4n);
    publisher.close();
    assert.throws(() => publisher.trySend(pattern(4, 8)), { code: 'SHM_ERR_CLOSED' });
    assert.throws(() => publisher.tryLoan(), { code: 'SHM_ERR_CLOSED' });
  }
  {
    // overwrite, every block held by a guard: the pool is out.
    using p = drainPair({ blockCount: 2, ringDepth: 2, blockSize: 64, inlineMaxBytes: 0 });
    const { publisher, subscriber } = p;
    assert.equal(publisher.trySend(pattern(0, 8)), true);
    assert.equal(publisher.trySend(pattern(1, 8)), true);
    const held = [subscriber.tryRecv()!, subscriber.tryRecv()!];
    assert.equal(publisher.trySend(pattern(2, 8)), false);
    assert.equal(publisher.tryLoan(), null);
    assert.throws(() => publisher.send(pattern(2, 8)), { code: 'SHM_ERR_POOL_EXHAUSTED' });
    for (const s of held) s.release();
    assert.equal(publisher.trySend(pattern(2, 8)), true);
  }
});

test('drain, trySend, tryRecv and guards interleaved, against a model: every message whole, gaps counted', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(2, 4, 8),
      fc.constantFrom(0, 16, 64),
      fc.constantFrom('overwrite' as const, 'block' as const),
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant('send' as const), length: fc.nat(128), quiet: fc.boolean() }),
          fc.record({ kind: fc.constant('drain' as const), max: fc.integer({ min: 1, max: 20 }) }),
          fc.record({ kind: fc.constant('recv' as const), hold: fc.boolean() }),
          fc.record({ kind: fc.constant('release' as const), index: fc.nat(8) }),
        ),
        { minLength: 1, maxLength: 200 },
      ),
      (ringDepth, inlineMaxBytes, slowSubscriber, ops) => {
        using p = drainPair({
          blockCount: ringDepth * 2,
          ringDepth,
          blockSize: 128,
          inlineMaxBytes,
          slowSubscriber,
        });
        const { publisher, subscriber } = p;
        const lengths: number[] = [];
        const held: Sample[] = [];
        let received = 0;
        let last = -1;
        let missedSeen = 0;
        const check = (bytes: Uint8Array, seq: number): void => {
          assert.ok(seq > last, 'sequences increase');
          missedSeen += seq - last - 1;
          assert.ok(same(bytes, pattern(seq, lengths[seq]!)), `message ${seq} whole`);
          last = seq;
          received++;
        };
        for (const o of ops) {
          if (o.kind === 'send') {
            const data = pattern(lengths.length, o.length);
            if (o.quiet) {
              if (publisher.trySend(data)) lengths.push(o.length);
            } else {
              try {
                publisher.send(data);
                lengths.push(o.length);
              } catch (error) {
                const code = (error as { code?: string }).code;
                assert.ok(code === 'SHM_ERR_POOL_EXHAUSTED' || code === 'SHM_ERR_WOULD_BLOCK', code);
              }
            }
            assert.equal(publisher.sequence, BigInt(lengths.length), 'a refused message takes no sequence');
          } else if (o.kind === 'drain') {
            const n = subscriber.drain(check, o.max);
            assert.ok(n <= o.max);
          } else if (o.kind === 'recv') {
            const sample = subscriber.tryRecv();
            if (sample === null) continue;
            check(sample.bytes, Number(sample.sequence));
            if (o.hold) held.push(sample);
            else sample.release();
          } else if (held.length > 0) {
            const [sample] = held.splice(o.index % held.length, 1);
            const seq = Number(sample!.sequence);
            assert.ok(same(sample!.bytes, pattern(seq, lengths[seq]!)), 'a held message stays whole');
            sample!.release();
          }
        }
        for (const sample of held.splice(0)) {
          const seq = Number(sample.sequence);
          assert.ok(same(sample.bytes, pattern(seq, lengths[seq]!)));
          sample.release();
        }
        while (subscriber.drain(check) > 0);
        assert.equal(missedSeen, subscriber.missed, 'the gaps are what the subscriber counts as missed');
        assert.equal(received + subscriber.missed, lengths.length, 'every message read or counted missed');
        if (slowSubscriber === 'block') assert.equal(subscriber.missed, 0);
      },
    ),
    { numRuns: 300 },
  );
});

/** A publisher child sending `count` pattern messages (`pubsend`), a drain child reading them. */
async function drainAcross(
  name: string,
  config: PubSubConfig & { readonly dir: string },
  count: number,
  drainArgs: { holdMicros: number; holdFirst: boolean; total?: boolean; waitSubscriber?: boolean },
): Promise<SubSummary & { batches: number }> {
  const pub = new PubSubChild([
    'pubsend',
    name,
    JSON.stringify(config),
    String(count),
    'close',
    drainArgs.waitSubscriber === true ? '1' : '0',
  ]);
  try {
    await pub.message('created');
    const sub = new PubSubChild([
      'drain',
      name,
      JSON.stringify({ dir: config.dir, from: 'oldest', timeoutMs: 5000 }),
      String(count),
      String(drainArgs.holdMicros),
      drainArgs.holdFirst ? '1' : '0',
      ...(drainArgs.total === true ? ['total'] : []),
    ]);
    const summary = await sub.message<SubSummary & { batches: number }>('received', 60_000);
    await pub.message('published');
    pub.send('close');
    assert.equal(await sub.exit(), 0);
    return summary;
  } finally {
    pub.kill();
  }
}

test("drain, two processes, 'block': lossless, every message whole, inline and in blocks, in batches", async () => {
  const count = 60_000;
  const summary = await drainAcross(
    'drain-lossless',
    { dir: dir.path, blockCount: 32, ringDepth: 16, blockSize: 192, slowSubscriber: 'block' },
    count,
    { holdMicros: 0, holdFirst: false },
  );
  assert.equal(summary.bad, 0, summary.firstError);
  assert.equal(summary.missed, 0);
  assert.equal(summary.received, count);
  assert.equal(summary.lastSeq, count - 1);
  assert.ok(summary.batches < count, 'messages came in batches');
});

test('drain, two processes: a guard taken with tryRecv and held across every batch is never reused', async () => {
  for (const slowSubscriber of ['block', 'overwrite'] as const) {
    const count = 20_000;
    const summary = await drainAcross(
      `drain-held-${slowSubscriber}`,
      // Every message in a block; a small pool, so every other block is reused many times.
      { dir: dir.path, blockCount: 6, ringDepth: 4, blockSize: 128, inlineMaxBytes: 0, slowSubscriber },
      count,
      { holdMicros: 0, holdFirst: true, total: true, waitSubscriber: true },
    );
    assert.equal(summary.bad, 0, summary.firstError);
    assert.equal(summary.start + summary.received + summary.missed, count);
    if (slowSubscriber === 'block') assert.equal(summary.missed, 0);
  }
});

test('drain, two processes, overwrite: a lapped subscriber is told how many it missed, never a torn message', async () => {
  const count = 100_000;
  const summary = await drainAcross(
    'drain-lapped',
    { dir: dir.path, blockCount: 16, ringDepth: 8, blockSize: 192 },
    count,
    { holdMicros: 30, holdFirst: false, total: true, waitSubscriber: true },
  );
  assert.equal(summary.bad, 0, summary.firstError);
  assert.ok(summary.missed > 0, 'the subscriber fell behind and was told so');
  assert.equal(summary.start + summary.received + summary.missed, count, 'read or counted missed, each one');
  assert.equal(summary.lastSeq, count - 1);
});
