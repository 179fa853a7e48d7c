import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { Publisher, Subscriber, inspectRegionFile, regionPath, type Sample } from '@switchyard/shm';
import { PubSubChild, pair, pattern, runPubSub, shmDir, type SubSummary } from './pubsub-helpers.js';

const dir = shmDir();
test.after(() => dir[Symbol.dispose]());

function intact(sample: Sample, length: number): boolean {
  const want = pattern(Number(sample.sequence), length);
  return sample.bytes.length === length && sample.bytes.every((b, i) => b === want[i]);
}

test('inlineMaxBytes: validated, 64 by default (0 with a ring of 1), recorded in the header (format version 4)', () => {
  const bad = [
    { inlineMaxBytes: -1 },
    { inlineMaxBytes: 1.5 },
    { inlineMaxBytes: 65, blockSize: 64 },
    { inlineMaxBytes: 4081, blockSize: 8192 },
    { inlineMaxBytes: 32, blockCount: 1, ringDepth: 1, blockSize: 64 },
  ];
  for (const config of bad) {
    assert.throws(() => Publisher.create('inline-bad', { dir: dir.path, ...config }), {
      code: 'SHM_ERR_INVALID_ARGUMENT',
      message: /inlineMaxBytes/,
    });
  }
  const byDefault = Publisher.create('inline-default', {
    dir: dir.path,
    blockCount: 4,
    ringDepth: 4,
    blockSize: 64,
  });
  assert.equal(byDefault.config.inlineMaxBytes, 64);
  const on = Subscriber.open('inline-default', { dir: dir.path });
  assert.equal(on.header.inlineMaxBytes, 64);
  assert.equal(on.header.ringEntryBytes, 80, 'align16(16 + 64): inline entries are packed');
  on.close();
  byDefault.close();
  // A ring of one entry cannot carry inline messages (a copy is checked against the entry
  // before it): blocks only.
  const single = Publisher.create('inline-single', {
    dir: dir.path,
    blockCount: 1,
    ringDepth: 1,
    blockSize: 64,
  });
  assert.equal(single.config.inlineMaxBytes, 0);
  single.close();
  const plain = Publisher.create('inline-off', {
    dir: dir.path,
    blockCount: 4,
    ringDepth: 4,
    blockSize: 64,
    inlineMaxBytes: 0,
  });
  assert.equal(plain.config.inlineMaxBytes, 0);
  const off = Subscriber.open('inline-off', { dir: dir.path });
  assert.equal(off.header.inlineMaxBytes, 0);
  assert.equal(off.header.ringEntryBytes, 16, 'four entries a cache line');
  assert.equal(off.header.version, 4);
  off.close();
  plain.close();
  const publisher = Publisher.create('inline-on', {
    dir: dir.path,
    blockCount: 4,
    ringDepth: 4,
    blockSize: 256,
    inlineMaxBytes: 100,
  });
  const subscriber = Subscriber.open('inline-on', { dir: dir.path });
  assert.equal(subscriber.header.inlineMaxBytes, 100);
  assert.equal(subscriber.header.ringEntryBytes, 128, 'align16(16 + 100)');
  const file = readFileSync(regionPath(dir.path, 'inline-on'));
  assert.equal(file.readUInt32LE(8), 4, 'format version');
  assert.equal(file.readUInt32LE(64), 100, 'inline max bytes at offset 64');
  // Older regions are refused, as older subscribers refuse this one: version 2 (a seqlock
  // per inline entry, which this subscriber would not check for) and version 3 (no length in
  // a block's ring entry, which a lossless drain reads instead of the table).
  for (const version of [2, 3]) {
    const older = Buffer.from(file);
    older.writeUInt32LE(version, 8);
    writeFileSync(regionPath(dir.path, `inline-v${version}`), older, { mode: 0o600 });
    assert.throws(() => Subscriber.open(`inline-v${version}`, { dir: dir.path }), {
      code: 'SHM_ERR_UNSUPPORTED_VERSION',
      message: new RegExp(`format version ${version}; this package reads 4`),
    });
  }
  subscriber.close();
  publisher.close();
});

test('inline messages: no block taken, whole and private to the sample; larger ones still use blocks', () => {
  const name = 'inline-basic';
  const publisher = Publisher.create(name, {
    dir: dir.path,
    blockCount: 2,
    ringDepth: 2,
    blockSize: 128,
    inlineMaxBytes: 64,
  });
  const subscriber = Subscriber.open(name, { dir: dir.path });
  try {
    const held: Sample[] = [];
    // Far more held samples than blocks: inline messages take none.
    for (let seq = 0; seq < 10; seq++) {
      publisher.send(pattern(seq, seq * 7));
      const sample = subscriber.tryRecv()!;
      assert.equal(sample.sequence, BigInt(seq));
      assert.ok(intact(sample, seq * 7));
      held.push(sample);
    }
    assert.equal(inspectRegionFile(regionPath(dir.path, name)).blocks.free, 2, 'no block taken');
    publisher.send(new Uint8Array(0));
    const empty = subscriber.tryRecv()!;
    assert.equal(empty.bytes.length, 0);
    empty.release();
    // The ring (depth 2) has been overwritten many times: the held copies are untouched.
    for (let seq = 11; seq < 200; seq++) publisher.send(pattern(seq, 64));
    held.forEach((sample, seq) => assert.ok(intact(sample, seq * 7), `held inline message ${seq} intact`));
    for (const sample of held) {
      sample.release();
      sample.release();
    }
    assert.equal(subscriber.missed, 0);
    assert.equal(subscriber.tryRecv()!.missed, 187, 'lapped: told how many it missed');
    // Above the inline limit: a block, with the guard rules (PoolExhausted once both are held).
    while (subscriber.tryRecv() !== null);
    publisher.send(pattern(200, 65));
    publisher.send(pattern(201, 128));
    const a = subscriber.tryRecv()!;
    const b = subscriber.tryRecv()!;
    assert.ok(intact(a, 65) && intact(b, 128));
    assert.equal(inspectRegionFile(regionPath(dir.path, name)).blocks.free, 0);
    assert.throws(() => publisher.send(pattern(202, 100)), { code: 'SHM_ERR_POOL_EXHAUSTED' });
    publisher.send(pattern(202, 64)); // inline: no block needed
    assert.throws(() => publisher.send(new Uint8Array(129)), { code: 'SHM_ERR_DATA_TOO_LARGE' });
    a.release();
    b.release();
    assert.ok(intact(subscriber.tryRecv()!, 64));
  } finally {
    subscriber.close();
    publisher.close();
  }
});

test('inline copies: held ones stay intact however many follow, in any release order, beyond the copy slots', () => {
  // The subscriber copies inline messages into fixed slots of its own memory (1024 of them
  // for 64-byte messages) and reuses a slot only after its sample is released; past that,
  // each copy gets a buffer of its own.
  const name = 'inline-copies';
  const publisher = Publisher.create(name, { dir: dir.path, blockCount: 2, ringDepth: 2, blockSize: 64 });
  const subscriber = Subscriber.open(name, { dir: dir.path });
  try {
    assert.equal(publisher.config.inlineMaxBytes, 64, 'inline by default');
    const held = new Map<number, Sample>();
    let seq = 0;
    const receive = (): void => {
      publisher.send(pattern(seq, 1 + (seq % 64)));
      const sample = subscriber.tryRecv()!;
      assert.equal(sample.sequence, BigInt(seq));
      held.set(seq++, sample);
    };
    for (let i = 0; i < 1500; i++) receive();
    const check = (): void => {
      for (const [n, sample] of held) assert.ok(intact(sample, 1 + (n % 64)), `held message ${n} intact`);
    };
    check();
    // Release every third, newest first, then receive more: freed slots are reused, the
    // others never.
    for (let n = 1499; n >= 0; n -= 3) {
      held.get(n)!.release();
      held.delete(n);
    }
    for (let i = 0; i < 2000; i++) {
      receive();
      if (i % 2 === 0) {
        const [oldest, sample] = held.entries().next().value as [number, Sample];
        sample.release();
        sample.release();
        held.delete(oldest);
      }
    }
    check();
    for (const sample of held.values()) sample.release();
    assert.equal(subscriber.missed, 0);
    assert.equal(inspectRegionFile(regionPath(dir.path, name)).blocks.free, 2, 'no block taken');
  } finally {
    subscriber.close();
    publisher.close();
  }
});

test('inline messages published back to back are taken together, served in order, one at a time', () => {
  const name = 'inline-ahead';
  const publisher = Publisher.create(name, { dir: dir.path, blockCount: 16, ringDepth: 16, blockSize: 256 });
  const subscriber = Subscriber.open(name, { dir: dir.path });
  try {
    // 10 inline, one in a block (100 bytes > 64), 3 inline.
    for (let seq = 0; seq < 14; seq++) publisher.send(pattern(seq, seq === 10 ? 100 : 8 + seq));
    const first = subscriber.tryRecv()!;
    assert.equal(first.sequence, 0n);
    assert.equal(subscriber.position, 1n, 'position counts what was served, not what was copied ahead');
    // The ring (depth 16) is overwritten many times: the messages the subscriber had copied
    // with the first one still arrive whole; then it is told what it missed.
    for (let seq = 14; seq < 100; seq++) publisher.send(pattern(seq, 8));
    const served: Sample[] = [first];
    for (let s = subscriber.tryRecv(); s !== null; s = subscriber.tryRecv()) served.push(s);
    const sequences = served.map((s) => Number(s.sequence));
    assert.deepEqual(sequences.slice(0, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'taken ahead, in order');
    for (const s of served.slice(0, 10))
      assert.ok(intact(s, 8 + Number(s.sequence)), `message ${s.sequence} whole`);
    assert.equal(served[10]!.missed, Number(served[10]!.sequence) - 10, 'then the lag is counted');
    assert.equal(subscriber.missed, served[10]!.missed);
    assert.equal(sequences.at(-1), 99);
    for (const s of served.slice(10)) assert.ok(intact(s, 8), `message ${s.sequence} whole`);
    for (const s of served) s.release();
    // A block message ends a run taken ahead; order is kept across kinds.
    publisher.send(pattern(100, 8));
    publisher.send(pattern(101, 200));
    publisher.send(pattern(102, 8));
    const kinds = [subscriber.tryRecv()!, subscriber.tryRecv()!, subscriber.tryRecv()!];
    assert.deepEqual(
      kinds.map((s) => Number(s.sequence)),
      [100, 101, 102],
    );
    assert.ok(intact(kinds[0]!, 8) && intact(kinds[1]!, 200) && intact(kinds[2]!, 8));
    for (const s of kinds) s.release();
    assert.equal(subscriber.tryRecv(), null);
    assert.equal(subscriber.position, 103n);
  } finally {
    subscriber.close();
    publisher.close();
  }
});

test("inline messages with slowSubscriber 'block': never overwritten unread", () => {
  const name = 'inline-block';
  const publisher = Publisher.create(name, {
    dir: dir.path,
    blockCount: 4,
    ringDepth: 4,
    blockSize: 64,
    inlineMaxBytes: 64,
    slowSubscriber: 'block',
  });
  const subscriber = Subscriber.open(name, { dir: dir.path });
  try {
    for (let seq = 0; seq < 4; seq++) publisher.send(pattern(seq, 8));
    assert.throws(() => publisher.send(pattern(4, 8)), { code: 'SHM_ERR_WOULD_BLOCK' });
    assert.equal(publisher.isWritable, false);
    const first = subscriber.tryRecv()!;
    assert.ok(intact(first, 8));
    assert.equal(publisher.isWritable, true);
    publisher.send(pattern(4, 8));
    for (let seq = 1; seq <= 4; seq++) {
      const sample = subscriber.tryRecv()!;
      assert.equal(sample.sequence, BigInt(seq));
      assert.ok(intact(sample, 8));
    }
    assert.equal(subscriber.missed, 0);
  } finally {
    subscriber.close();
    publisher.close();
  }
});

test('a full ring of 256 evicts 4 entries at a time (ringDepth / 64): counted, never past an unread message', () => {
  const geometry = { blockCount: 512, ringDepth: 256, blockSize: 64 };
  {
    using p = pair(dir.path, 'evict-batch', { ...geometry, slowSubscriber: 'overwrite' });
    const { publisher: overwrite, subscriber: early } = p;
    for (let seq = 0; seq < 256; seq++) overwrite.send(pattern(seq, 64));
    assert.equal(overwrite.stats.evicted, 0, 'a ring that is not full keeps everything');
    overwrite.send(pattern(256, 64));
    assert.equal(overwrite.stats.evicted, 4, 'one eviction frees four entries');
    for (let seq = 257; seq < 260; seq++) overwrite.send(pattern(seq, 64));
    assert.equal(overwrite.stats.evicted, 4, 'the next three need no eviction');
    overwrite.send(pattern(260, 64));
    assert.equal(overwrite.stats.evicted, 8);
    // A subscriber opened now starts at the oldest message still held; the one that was
    // attached all along is told it missed the eight evicted ones, and reads the rest whole.
    const late = Subscriber.open('evict-batch', { dir: dir.path, from: 'oldest' });
    assert.equal(late.position, 8n);
    late.close();
    const first = early.tryRecv()!;
    assert.equal(first.sequence, 8n);
    assert.equal(first.missed, 8);
    assert.ok(intact(first, 64));
    first.release();
    for (let seq = 9; seq <= 260; seq++) {
      const sample = early.tryRecv()!;
      assert.equal(sample.sequence, BigInt(seq));
      assert.ok(intact(sample, 64), `message ${seq} whole`);
      sample.release();
    }
    assert.equal(early.tryRecv(), null);
  }
  // 'block': a batch stops at the slowest subscriber's position, so nothing unread goes.
  {
    using p = pair(dir.path, 'evict-batch-block', { ...geometry, slowSubscriber: 'block' });
    const { publisher: block, subscriber } = p;
    for (let seq = 0; seq < 256; seq++) block.send(pattern(seq, 64));
    assert.throws(() => block.send(pattern(256, 64)), { code: 'SHM_ERR_WOULD_BLOCK' });
    // The ring is full and the subscriber reads at its tail: the copies are checked
    // against the tail (the entry before each already holds a message of the next lap).
    // One poll copies the next 32 out of the ring (its position moves past them).
    for (let seq = 0; seq < 2; seq++) {
      const sample = subscriber.tryRecv()!;
      assert.equal(sample.sequence, BigInt(seq));
      assert.ok(intact(sample, 64));
      sample.release();
    }
    assert.equal(subscriber.position, 2n);
    block.send(pattern(256, 64));
    assert.equal(block.stats.evicted, 4);
    for (let seq = 257; seq < 288; seq++) block.send(pattern(seq, 64));
    assert.equal(block.stats.evicted, 32, 'up to what every subscriber has copied, in steps of 4');
    assert.throws(() => block.send(pattern(288, 64)), { code: 'SHM_ERR_WOULD_BLOCK' });
    for (let seq = 2; seq < 288; seq++) {
      const sample = subscriber.tryRecv()!;
      assert.equal(sample.sequence, BigInt(seq));
      assert.ok(intact(sample, 64), `message ${seq} whole`);
      sample.release();
    }
    assert.equal(subscriber.missed, 0);
  }
});

test('inline and block messages mixed, against a model: every message whole, gaps counted', () => {
  let run = 0;
  fc.assert(
    fc.property(
      fc.constantFrom(2, 4, 8),
      fc.constantFrom(16, 48, 64),
      fc.constantFrom('overwrite' as const, 'block' as const),
      fc.array(
        fc.oneof(
          fc.nat(128).map((length) => ({ kind: 'send' as const, length })),
          fc.boolean().map((hold) => ({ kind: 'recv' as const, hold })),
          fc.nat(8).map((index) => ({ kind: 'release' as const, index })),
        ),
        { minLength: 1, maxLength: 200 },
      ),
      (ringDepth, inlineMaxBytes, slowSubscriber, ops) => {
        const name = `inline-model-${run++}`;
        const publisher = Publisher.create(name, {
          dir: dir.path,
          blockCount: ringDepth * 2,
          ringDepth,
          blockSize: 128,
          inlineMaxBytes,
          slowSubscriber,
          prefault: false,
        });
        const subscriber = Subscriber.open(name, { dir: dir.path });
        const lengths: number[] = [];
        const held: Sample[] = [];
        let received = 0;
        let last = -1;
        try {
          for (const o of ops) {
            if (o.kind === 'send') {
              try {
                publisher.send(pattern(lengths.length, o.length));
                lengths.push(o.length);
              } catch (error) {
                const code = (error as { code?: string }).code;
                assert.ok(code === 'SHM_ERR_POOL_EXHAUSTED' || code === 'SHM_ERR_WOULD_BLOCK', code);
                if (code === 'SHM_ERR_POOL_EXHAUSTED')
                  assert.ok(o.length > inlineMaxBytes, 'inline needs no block');
              }
            } else if (o.kind === 'recv') {
              const sample = subscriber.tryRecv();
              if (sample === null) continue;
              const seq = Number(sample.sequence);
              assert.ok(seq > last);
              assert.equal(sample.missed, seq - last - 1);
              assert.ok(intact(sample, lengths[seq]!), `message ${seq} whole`);
              last = seq;
              received++;
              if (o.hold) held.push(sample);
              else sample.release();
            } else if (held.length > 0) {
              const [sample] = held.splice(o.index % held.length, 1);
              assert.ok(intact(sample!, lengths[Number(sample!.sequence)]!), 'held message intact');
              sample!.release();
            }
          }
          for (const sample of held.splice(0)) {
            assert.ok(intact(sample, lengths[Number(sample.sequence)]!));
            sample.release();
          }
          for (let s = subscriber.tryRecv(); s !== null; s = subscriber.tryRecv()) {
            assert.ok(intact(s, lengths[Number(s.sequence)]!));
            received++;
            s.release();
          }
          assert.equal(received + subscriber.missed, lengths.length, 'every message read or counted missed');
          if (slowSubscriber === 'block') assert.equal(subscriber.missed, 0);
        } finally {
          subscriber.close();
          publisher.close();
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('inline, two processes, overwrite: a lapped subscriber never sees a torn message and counts what it missed', async () => {
  // Messages up to 128 bytes inline (most of them), longer ones in blocks; a tiny ring so
  // the publisher overwrites entries while the other process copies them.
  const config = { dir: dir.path, blockCount: 4, ringDepth: 2, blockSize: 256, inlineMaxBytes: 240 };
  const count = 200_000;
  const pub = new PubSubChild(['pubsend', 'inline-lag', JSON.stringify(config), String(count), 'close', '1']);
  try {
    await pub.message('created');
    const sub = new PubSubChild([
      'sub',
      'inline-lag',
      JSON.stringify({ dir: dir.path, timeoutMs: 5000 }),
      String(count),
      'spin',
      '0',
      'total',
    ]);
    const summary = await sub.message<SubSummary>('received', 60_000);
    const published = await pub.message<{ stats: { published: number } }>('published');
    pub.send('close');
    assert.equal(summary.bad, 0, summary.firstError);
    assert.equal(published.stats.published, count);
    assert.ok(summary.missed > 0, 'the subscriber fell behind and was told so');
    assert.equal(summary.start + summary.received + summary.missed, count);
    assert.equal(summary.lastSeq, count - 1);
    assert.equal(await sub.exit(), 0);
  } finally {
    pub.kill();
  }
});

test('inline, two processes, overwrite, a ring that evicts in batches: never a torn message, every gap counted', async () => {
  // 256 entries: the publisher frees 4 at a time, and the subscriber (holding each sample
  // for 2 µs) is lapped again and again while it copies.
  const config = { dir: dir.path, blockCount: 256, ringDepth: 256, blockSize: 256, inlineMaxBytes: 240 };
  const count = 200_000;
  const pub = new PubSubChild([
    'pubsend',
    'inline-lag-batch',
    JSON.stringify(config),
    String(count),
    'close',
    '1',
  ]);
  try {
    await pub.message('created');
    const sub = new PubSubChild([
      'sub',
      'inline-lag-batch',
      JSON.stringify({ dir: dir.path, timeoutMs: 5000 }),
      String(count),
      'spin',
      '2',
      'total',
    ]);
    const summary = await sub.message<SubSummary>('received', 60_000);
    const published = await pub.message<{ stats: { published: number } }>('published');
    pub.send('close');
    assert.equal(summary.bad, 0, summary.firstError);
    assert.equal(published.stats.published, count);
    assert.ok(summary.missed > 0, 'the subscriber fell behind and was told so');
    assert.equal(summary.start + summary.received + summary.missed, count);
    assert.equal(summary.lastSeq, count - 1);
    assert.equal(await sub.exit(), 0);
  } finally {
    pub.kill();
  }
});

for (const ringDepth of [8, 256]) {
  test(`inline, two processes, 'block', a ring of ${ringDepth}: nothing lost, content intact`, async () => {
    const config = {
      dir: dir.path,
      blockCount: ringDepth * 2,
      ringDepth,
      blockSize: 256,
      inlineMaxBytes: 192,
      slowSubscriber: 'block' as const,
    };
    const count = 50_000;
    const { summary, subExit } = await runPubSub('pubsend', `inline-lossless-${ringDepth}`, config, count);
    assert.equal(summary.bad, 0, summary.firstError);
    assert.equal(summary.missed, 0);
    assert.equal(summary.received, count);
    assert.equal(subExit, 0);
  });
}

test('blocks reused with other lengths: every sample has its own length and bytes; loans span the block', () => {
  const name = 'views';
  const publisher = Publisher.create(name, { dir: dir.path, blockCount: 2, ringDepth: 1, blockSize: 128 });
  const subscriber = Subscriber.open(name, { dir: dir.path });
  try {
    for (let seq = 0; seq < 50; seq++) {
      const length = (seq * 13) % 129;
      if (seq % 3 === 0) {
        const loan = publisher.loan();
        assert.equal(loan.bytes.length, 128);
        loan.bytes.set(pattern(seq, length));
        loan.publish(length);
      } else publisher.send(pattern(seq, length));
      const sample = subscriber.tryRecv()!;
      assert.equal(sample.sequence, BigInt(seq));
      assert.ok(intact(sample, length), `message ${seq} (${length} bytes)`);
      sample.release();
    }
    publisher.send(pattern(50, 100));
    const held = subscriber.tryRecv()!;
    subscriber.close();
    assert.equal(held.bytes.length, 0, 'unmapped with the subscriber');
  } finally {
    subscriber.close();
    publisher.close();
  }
});
