import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { openSync, closeSync, readFileSync, statSync, writeFileSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import {
  Publisher,
  PUBSUB_DEFAULTS,
  REGION_PREFIX,
  ShmChannel,
  ShmError,
  Subscriber,
  inspectRegionFile,
  listRegions,
  regionPath,
  type PubSubConfig,
} from '@switchyard/shm';
import { pair, shmDir } from './pubsub-helpers.js';

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

test('PubSubConfig has the spec defaults', () => {
  assert.equal(PUBSUB_DEFAULTS.blockCount, 256);
  assert.equal(PUBSUB_DEFAULTS.blockSize, 64 * 1024);
  assert.equal(PUBSUB_DEFAULTS.heartbeatIntervalMs, 100);
  assert.equal(PUBSUB_DEFAULTS.staleTimeoutMs, 5000);
  assert.equal(PUBSUB_DEFAULTS.slowSubscriber, 'overwrite');
  assert.equal(PUBSUB_DEFAULTS.ringDepth & (PUBSUB_DEFAULTS.ringDepth - 1), 0, 'ringDepth is a power of two');
  assert.ok(Object.isFrozen(PUBSUB_DEFAULTS));
});

test('send, tryRecv: the message arrives in place with its sequence', () => {
  using dir = shmDir();
  using p = pair(dir.path, 'basic');
  assert.equal(p.subscriber.tryRecv(), null);
  p.publisher.send(text('hello'));
  p.publisher.send(text('world'));
  const a = p.subscriber.tryRecv();
  const b = p.subscriber.tryRecv();
  assert.ok(a !== null && b !== null);
  assert.equal(str(a.bytes), 'hello');
  assert.equal(a.sequence, 0n);
  assert.equal(str(b.bytes), 'world');
  assert.equal(b.sequence, 1n);
  assert.equal(a.missed, 0);
  a.release();
  b[Symbol.dispose]();
  assert.equal(p.subscriber.tryRecv(), null);
  assert.equal(p.publisher.stats.published, 2);
});

test('loan: written in place, published by length; discard gives the block back', () => {
  using dir = shmDir();
  using p = pair(dir.path, 'loan', { blockCount: 2, ringDepth: 1, blockSize: 1024 });
  const loan = p.publisher.loan();
  assert.equal(loan.bytes.length, 1024);
  loan.bytes.set(text('in place'), 0);
  loan.publish(8);
  assert.throws(() => loan.publish(8), { code: 'SHM_ERR_CLOSED' });
  const sample = p.subscriber.tryRecv();
  assert.equal(str(sample!.bytes), 'in place');
  sample!.release();
  const discarded = p.publisher.loan();
  discarded.discard();
  discarded.discard();
  // Both blocks are free again: two loans at once succeed.
  const l1 = p.publisher.loan();
  const l2 = p.publisher.loan();
  assert.throws(() => l2.publish(2000), { code: 'SHM_ERR_INVALID_ARGUMENT' });
  l1.discard();
  l2.discard();
  assert.equal(p.subscriber.tryRecv(), null, 'nothing was published by discarded loans');
});

test('DataTooLarge above the block size; PoolExhausted when every block is out, until one is released', () => {
  using dir = shmDir();
  using p = pair(dir.path, 'limits', { blockCount: 4, ringDepth: 4, blockSize: 64, inlineMaxBytes: 0 });
  assert.throws(() => p.publisher.send(new Uint8Array(65)), {
    code: 'SHM_ERR_DATA_TOO_LARGE',
    name: 'ShmDataTooLargeError',
  });
  p.publisher.send(new Uint8Array(64));
  const held = [p.subscriber.tryRecv()!];
  for (let i = 0; i < 3; i++) {
    p.publisher.send(bytes(i));
    held.push(p.subscriber.tryRecv()!);
  }
  assert.throws(() => p.publisher.send(bytes(9)), {
    code: 'SHM_ERR_POOL_EXHAUSTED',
    name: 'ShmPoolExhaustedError',
  });
  assert.throws(() => p.publisher.loan(), { code: 'SHM_ERR_POOL_EXHAUSTED' });
  assert.equal(p.publisher.isWritable, false);
  held[1]!.release();
  assert.equal(p.publisher.isWritable, true);
  p.publisher.send(bytes(10));
  assert.equal(p.subscriber.tryRecv()!.bytes[0], 10);
  for (const h of held) h.release();
});

test('a block held by a guard is never reused, however many messages follow', () => {
  using dir = shmDir();
  using p = pair(dir.path, 'guard', { blockCount: 8, ringDepth: 4, blockSize: 64, inlineMaxBytes: 0 });
  p.publisher.send(text('keep me'));
  const kept = p.subscriber.tryRecv()!;
  for (let i = 0; i < 1000; i++) p.publisher.send(new Uint8Array(64).fill(i & 0xff));
  assert.equal(str(kept.bytes), 'keep me');
  kept.release();
});

test('blockCount = ringDepth, ring full: every send frees the oldest entry’s block and takes it; guards still hold', () => {
  using dir = shmDir();
  // Overwrite: the ring and the pool are the same size, so each send past the first lap must
  // give up the oldest entry's block first (found without a scan of the table).
  {
    using p = pair(dir.path, 'full-overwrite', {
      blockCount: 8,
      ringDepth: 8,
      blockSize: 64,
      inlineMaxBytes: 0,
    });
    p.publisher.send(text('kept'));
    const kept = p.subscriber.tryRecv()!;
    for (let i = 0; i < 1000; i++) p.publisher.send(new Uint8Array(64).fill(i & 0xff));
    assert.equal(p.publisher.stats.published, 1001);
    assert.equal(str(kept.bytes), 'kept', 'the held block was never reused');
    // The subscriber lapped: it gets the 7 newest whole (the kept guard's block is out of
    // the pool, so the ring holds one message less), and the count of what it missed.
    const first = p.subscriber.tryRecv()!;
    assert.equal(first.missed, 1000 - 7);
    assert.equal(first.sequence, 994n);
    assert.deepEqual(first.bytes, new Uint8Array(64).fill(993 & 0xff));
    first.release();
    let n = 1;
    for (let s = p.subscriber.tryRecv(); s !== null; s = p.subscriber.tryRecv(), n++) {
      assert.equal(s.bytes[0], Number(s.sequence - 1n) & 0xff);
      s.release();
    }
    assert.equal(n, 7);
    kept.release();
  }
  // Block: a full ring refuses (WOULD_BLOCK), and each message read makes room for one more.
  {
    using p = pair(dir.path, 'full-block', {
      blockCount: 8,
      ringDepth: 8,
      blockSize: 64,
      inlineMaxBytes: 0,
      slowSubscriber: 'block',
    });
    for (let i = 0; i < 8; i++) p.publisher.send(bytes(i));
    assert.equal(p.publisher.isWritable, false);
    assert.throws(() => p.publisher.send(bytes(8)), { code: 'SHM_ERR_WOULD_BLOCK' });
    for (let i = 8; i < 200; i++) {
      const s = p.subscriber.tryRecv()!;
      assert.equal(s.bytes[0], (i - 8) & 0xff);
      s.release();
      assert.equal(p.publisher.isWritable, true);
      p.publisher.send(bytes(i & 0xff));
      assert.throws(() => p.publisher.send(bytes(0)), { code: 'SHM_ERR_WOULD_BLOCK' });
    }
  }
});

test('an evicted block is free (inspect counts it; the publisher takes it again) unless a guard holds it', () => {
  using dir = shmDir();
  using p = pair(dir.path, 'stale-ref', { blockCount: 4, ringDepth: 2, blockSize: 64, inlineMaxBytes: 0 });
  const path = regionPath(dir.path, 'stale-ref');
  p.publisher.send(bytes(0));
  const held = p.subscriber.tryRecv()!; // message 0, block 0: a guard holds it
  p.publisher.send(bytes(1));
  assert.deepEqual(inspectRegionFile(path).blocks, { free: 2, loaned: 0, referenced: 2 });
  p.publisher.send(bytes(2)); // evicts message 0: its block stays out (the guard)
  p.publisher.send(bytes(3)); // evicts message 1: block 1 is free again
  assert.equal(p.publisher.stats.evicted, 2);
  assert.deepEqual(inspectRegionFile(path).blocks, { free: 1, loaned: 0, referenced: 3 });
  // Every block has been used once; the next loan must take block 1 back (0 is held, 2 and
  // 3 are in the ring).
  const loan = p.publisher.loan();
  assert.equal(loan.block, 1);
  assert.deepEqual(inspectRegionFile(path).blocks, { free: 0, loaned: 1, referenced: 3 });
  loan.discard();
  held.release(); // block 0: evicted and released, free
  assert.deepEqual(inspectRegionFile(path).blocks, { free: 2, loaned: 0, referenced: 2 });
  const got: number[] = [];
  for (let s = p.subscriber.tryRecv(); s !== null; s = p.subscriber.tryRecv()) {
    got.push(s.bytes[0]!);
    s.release();
  }
  assert.deepEqual(got, [2, 3]);
  assert.equal(p.subscriber.missed, 1);
});

test('a torn head hint (its high word a wrap ahead of its low word) does not place a new subscriber 2^32 ahead', () => {
  using dir = shmDir();
  const publisher = Publisher.create('torn-head', {
    dir: dir.path,
    blockCount: 8,
    ringDepth: 4,
    blockSize: 64,
  });
  try {
    for (let i = 0; i < 6; i++) publisher.send(bytes(i));
    const { header, head, tail } = inspectRegionFile(publisher.path);
    assert.deepEqual([head, tail], [6, 2]);
    // What a reader could see while the head's low word wraps (high stored first), or forever
    // after a publisher died between the two stores: 2^32 + 6.
    const fd = openSync(publisher.path, 'r+');
    const hi = Buffer.alloc(4);
    hi.writeUInt32LE(1, 0);
    writeSync(fd, hi, 0, 4, header.cursorsOffset + 4);
    closeSync(fd);
    const latest = Subscriber.open('torn-head', { dir: dir.path });
    assert.equal(latest.position, 2n, 'not 2^32 + 6: the oldest message held (the tail)');
    const first = latest.tryRecv()!;
    assert.deepEqual([...first.bytes], [2]);
    first.release();
    latest.close();
  } finally {
    publisher.close();
  }
});

test('isWritable finds a free block anywhere in the pool, not only next to the cursor', () => {
  using dir = shmDir();
  using p = pair(dir.path, 'far-free', { blockCount: 4, ringDepth: 2, blockSize: 64, inlineMaxBytes: 0 });
  p.publisher.send(bytes(0));
  p.publisher.send(bytes(1));
  const held = [p.subscriber.tryRecv()!, p.subscriber.tryRecv()!]; // blocks 0 and 1, held
  const first = p.publisher.loan(); // block 2
  const second = p.publisher.loan(); // block 3; the cursor wraps to block 0
  first.discard(); // block 2 is free again, three places from the cursor
  assert.equal(p.publisher.isWritable, true);
  p.publisher.send(bytes(2));
  const got = p.subscriber.tryRecv()!;
  assert.deepEqual([...got.bytes], [2]);
  got.release();
  second.discard();
  for (const h of held) h.release();
});

test('a slow subscriber is told how many it missed and reads only whole, current messages', () => {
  using dir = shmDir();
  using p = pair(dir.path, 'lag', { blockCount: 16, ringDepth: 8, blockSize: 64 });
  const lags: number[] = [];
  const onLag = (m: unknown): void => void lags.push((m as { missed: number }).missed);
  subscribe('switchyard:shm:pubsub-lag', onLag);
  try {
    for (let i = 0; i < 20; i++) p.publisher.send(bytes(i));
    const first = p.subscriber.tryRecv()!;
    assert.equal(first.sequence, 12n, 'the oldest the ring still holds');
    assert.equal(first.missed, 12);
    assert.equal(first.bytes[0], 12);
    first.release();
    let n = 13;
    for (let s = p.subscriber.tryRecv(); s !== null; s = p.subscriber.tryRecv()) {
      assert.equal(s.bytes[0], n);
      assert.equal(s.missed, 0);
      s.release();
      n++;
    }
    assert.equal(n, 20);
    assert.equal(p.subscriber.missed, 12);
    assert.deepEqual(lags, [12]);
  } finally {
    unsubscribe('switchyard:shm:pubsub-lag', onLag);
  }
});

test("slowSubscriber 'block': never overwrites an unread message; writable() waits for the reader", async () => {
  using dir = shmDir();
  using p = pair(dir.path, 'blocking', {
    blockCount: 8,
    ringDepth: 4,
    blockSize: 64,
    slowSubscriber: 'block',
  });
  for (let i = 0; i < 4; i++) p.publisher.send(bytes(i));
  assert.throws(() => p.publisher.send(bytes(4)), {
    code: 'SHM_ERR_WOULD_BLOCK',
    name: 'ShmWouldBlockError',
  });
  assert.equal(p.publisher.isWritable, false);
  const ready = p.publisher.writable();
  setTimeout(() => p.subscriber.tryRecv()!.release(), 10);
  await ready;
  p.publisher.send(bytes(4));
  const seen: number[] = [];
  for (let s = p.subscriber.tryRecv(); s !== null; s = p.subscriber.tryRecv()) {
    seen.push(s.bytes[0]!);
    s.release();
  }
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.equal(p.subscriber.missed, 0);
  const controller = new AbortController();
  for (let i = 0; i < 4; i++) p.publisher.send(bytes(i));
  const waiting = p.publisher.writable({ signal: controller.signal });
  controller.abort(new Error('stop'));
  await assert.rejects(waiting, { message: 'stop' });
});

test("'block' keeps messages for a subscriber that has not attached yet ('oldest')", () => {
  using dir = shmDir();
  const publisher = Publisher.create('early', {
    dir: dir.path,
    blockCount: 4,
    ringDepth: 2,
    blockSize: 64,
    slowSubscriber: 'block',
  });
  publisher.send(bytes(1));
  publisher.send(bytes(2));
  assert.throws(() => publisher.send(bytes(3)), { code: 'SHM_ERR_WOULD_BLOCK' });
  const subscriber = Subscriber.open('early', { dir: dir.path, from: 'oldest' });
  assert.equal(subscriber.tryRecv()!.bytes[0], 1);
  publisher.send(bytes(3));
  subscriber.close();
  publisher.close();
});

test('recv waits with every strategy; the publisher makes a wake syscall only for a parked subscriber', async () => {
  using dir = shmDir();
  using p = pair(dir.path, 'waits', { blockSize: 64, blockCount: 8, ringDepth: 4 });
  for (const wait of ['spin', 'yield', 'backoff', 'adaptive'] as const) {
    const pending = p.subscriber.recv({ wait });
    setTimeout(() => p.publisher.send(text(wait)), 5);
    const sample = await pending;
    assert.equal(str(sample.bytes), wait);
    sample.release();
  }
  const parkedWakes = p.publisher.stats.wakeSyscalls;
  assert.ok(parkedWakes >= 1, 'the adaptive wait parked and was rung');
  // Nobody parked: 1000 messages, no system call.
  for (let i = 0; i < 1000; i++) {
    p.publisher.send(bytes(i & 0xff));
    p.subscriber.tryRecv()!.release();
  }
  assert.equal(p.publisher.stats.wakeSyscalls, parkedWakes);
  assert.equal(p.publisher.stats.published, 1004);
  assert.equal(p.publisher.stats.wakesSkipped, 1004 - parkedWakes);
});

test('recv rejects with the signal reason; close() rejects a pending recv; publisher close ends the stream', async () => {
  using dir = shmDir();
  const publisher = Publisher.create('ending', { dir: dir.path, blockSize: 64, blockCount: 8, ringDepth: 4 });
  const subscriber = Subscriber.open('ending', { dir: dir.path });
  const controller = new AbortController();
  const aborted = subscriber.recv({ signal: controller.signal });
  setTimeout(() => controller.abort(new Error('enough')), 5);
  await assert.rejects(aborted, { message: 'enough' });
  // Already aborted, with a reason that is no Error: rejected with it as it is, never thrown.
  const early = subscriber.recv({ signal: AbortSignal.abort('no more') });
  assert.ok(early instanceof Promise);
  await assert.rejects(early, (reason) => reason === 'no more');
  const bad = subscriber.recv({ signal: 'nope' as unknown as AbortSignal });
  await assert.rejects(bad, { code: 'SHM_ERR_INVALID_ARGUMENT' });
  await assert.rejects(subscriber.recv({ wait: 'sometimes' as never }), { code: 'SHM_ERR_INVALID_ARGUMENT' });
  const pending = subscriber.recv();
  setTimeout(() => subscriber.close(), 5);
  await assert.rejects(pending, { code: 'SHM_ERR_CLOSED' });
  assert.throws(() => subscriber.tryRecv(), { code: 'SHM_ERR_CLOSED' });

  const second = Subscriber.open('ending', { dir: dir.path });
  publisher.send(text('a'));
  publisher.send(text('b'));
  publisher.close();
  publisher.close();
  assert.equal(existsSync(publisher.path), false, 'the publisher removed its file');
  const got: string[] = [];
  for await (const sample of second) {
    got.push(str(sample.bytes));
    sample.release();
  }
  assert.deepEqual(got, ['a', 'b']);
  await assert.rejects(second.recv(), { code: 'SHM_ERR_CLOSED' });
  second.close();
});

test('recvSync in a worker thread: the worker opens the region itself and sleeps on the futex', async () => {
  using dir = shmDir();
  const publisher = Publisher.create('worker', { dir: dir.path, blockSize: 64, blockCount: 8, ringDepth: 4 });
  const source = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.shm).then(({ Subscriber }) => {
      const sub = Subscriber.open('worker', { dir: workerData.dir });
      parentPort.postMessage('ready');
      const got = [];
      for (let i = 0; i < 5; i++) { const s = sub.recvSync({ timeoutMs: 5000 }); got.push(s.bytes[0]); s.release(); }
      let timeout = '';
      try { sub.recvSync({ timeoutMs: 30 }); } catch (e) { timeout = e.code; }
      sub.close();
      parentPort.postMessage({ got, timeout });
    });`;
  const shm = import.meta.resolve('@switchyard/shm');
  const worker = new Worker(source, { eval: true, workerData: { dir: dir.path, shm } });
  const messages: unknown[] = [];
  const done = new Promise<void>((resolve, reject) => {
    worker.on('message', (m) => {
      messages.push(m);
      if (m === 'ready') {
        let i = 0;
        const timer = setInterval(() => {
          publisher.send(bytes(i++));
          if (i === 5) clearInterval(timer);
        }, 3);
      } else resolve();
    });
    worker.on('error', reject);
  });
  await done;
  await worker.terminate();
  assert.deepEqual(messages[1], { got: [0, 1, 2, 3, 4], timeout: 'SHM_ERR_TIMEOUT' });
  assert.ok(publisher.stats.wakeSyscalls >= 1, 'the futex sleeper was woken');
  publisher.close();
});

test('names cannot escape the directory; region files are mode 0600', () => {
  using dir = shmDir();
  for (const bad of ['', '../x', 'a/b', '/etc/passwd', '.hidden', '-x', 'a\0b', '..', 'x'.repeat(201), 'é']) {
    assert.throws(() => Publisher.create(bad, { dir: dir.path }), { code: 'SHM_ERR_INVALID_ARGUMENT' }, bad);
    assert.throws(() => Subscriber.open(bad, { dir: dir.path }), { code: 'SHM_ERR_INVALID_ARGUMENT' }, bad);
  }
  assert.equal(regionPath(dir.path, 'ok.name_1-2'), join(dir.path, `${REGION_PREFIX}ok.name_1-2`));
  const publisher = Publisher.create('mode', { dir: dir.path, blockCount: 1, ringDepth: 1, blockSize: 64 });
  assert.equal(statSync(publisher.path).mode & 0o777, 0o600);
  publisher.close();
});

test('config validation names the option', () => {
  const cases: [PubSubConfig, RegExp][] = [
    [{ ringDepth: 3 }, /ringDepth/],
    [{ blockCount: 4, ringDepth: 8 }, /ringDepth/],
    [{ blockSize: 100 }, /blockSize/],
    [{ blockCount: 0 }, /blockCount/],
    [{ heartbeatIntervalMs: 100, staleTimeoutMs: 100 }, /staleTimeoutMs/],
    [{ slowSubscriber: 'drop' as never }, /slowSubscriber/],
    [{ blockCount: 65536, blockSize: 1 << 20 }, /blockCount/],
    [{ dir: '' }, /dir/],
  ];
  for (const [config, message] of cases) {
    assert.throws(() => Publisher.create('cfg', config), { code: 'SHM_ERR_INVALID_ARGUMENT', message });
  }
  assert.throws(() => Subscriber.open('cfg', { from: 'middle' as never }), { message: /from/ });
});

test('open: ENOENT at once, SHM_ERR_TIMEOUT after timeoutMs', () => {
  using dir = shmDir();
  assert.throws(() => Subscriber.open('missing', { dir: dir.path }), {
    code: 'SHM_ERR_SYSTEM',
    errno: 'ENOENT',
  });
  const started = Date.now();
  assert.throws(() => Subscriber.open('missing', { dir: dir.path, timeoutMs: 50 }), {
    code: 'SHM_ERR_TIMEOUT',
  });
  assert.ok(Date.now() - started >= 50);
});

test('every header field is validated on open: typed errors, never a crash (fuzzed)', () => {
  using dir = shmDir();
  const publisher = Publisher.create('valid', { dir: dir.path, blockCount: 2, ringDepth: 2, blockSize: 64 });
  const good = readFileSync(publisher.path);
  publisher.close();
  const path = regionPath(dir.path, 'fuzzed');
  const check = (image: Uint8Array): void => {
    writeFileSync(path, image, { mode: 0o600 });
    try {
      Subscriber.open('fuzzed', { dir: dir.path }).close();
    } catch (error) {
      assert.ok(error instanceof ShmError, `not a ShmError: ${String(error)}`);
    }
  };
  // Specific damage, specific codes.
  const foreign = Buffer.from(good);
  foreign.write('NOTMINE!', 0);
  writeFileSync(path, foreign);
  assert.throws(() => Subscriber.open('fuzzed', { dir: dir.path }), { code: 'SHM_ERR_FOREIGN_FILE' });
  const version = Buffer.from(good);
  version.writeUInt32LE(9, 8);
  writeFileSync(path, version);
  assert.throws(() => Subscriber.open('fuzzed', { dir: dir.path }), { code: 'SHM_ERR_UNSUPPORTED_VERSION' });
  const sum = Buffer.from(good);
  sum.writeUInt32LE(sum.readUInt32LE(16) + 1, 16);
  writeFileSync(path, sum);
  assert.throws(() => Subscriber.open('fuzzed', { dir: dir.path }), { code: 'SHM_ERR_CORRUPT' });
  writeFileSync(path, good.subarray(0, good.length - 64));
  assert.throws(() => Subscriber.open('fuzzed', { dir: dir.path }), { code: 'SHM_ERR_CORRUPT' });
  const fd = openSync(path, 'w');
  writeSync(fd, new Uint8Array(256));
  closeSync(fd);
  assert.throws(() => Subscriber.open('fuzzed', { dir: dir.path }), { code: 'SHM_ERR_NOT_READY' });
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(127), fc.nat(255)), { minLength: 1, maxLength: 8 }), (edits) => {
      const image = Buffer.from(good);
      for (const [at, value] of edits) image[at] = value;
      check(image);
    }),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (image) => check(image)),
    { numRuns: 100 },
  );
});

test('a region left by a dead publisher is listed as dead and taken over; a live one is not', () => {
  using dir = shmDir();
  const live = Publisher.create('taken', { dir: dir.path, blockCount: 1, ringDepth: 1, blockSize: 64 });
  assert.throws(() => Publisher.create('taken', { dir: dir.path }), { code: 'SHM_ERR_EXISTS' });
  // Fake a dead owner: a pid that does not exist.
  const i32 = new Int32Array(1);
  i32[0] = 2 ** 22 + 12345;
  const fd = openSync(live.path, 'r+');
  writeSync(fd, new Uint8Array(i32.buffer), 0, 4, 104);
  closeSync(fd);
  const listing = listRegions(dir.path);
  assert.equal(listing.length, 1);
  const region = 'region' in listing[0]! ? listing[0].region : undefined;
  assert.equal(region?.name, 'taken');
  assert.equal(region?.publisherAlive, false);
  assert.equal(region?.dead, true);
  const next = Publisher.create('taken', { dir: dir.path, blockCount: 1, ringDepth: 1, blockSize: 64 });
  assert.equal(inspectRegionFile(next.path).publisherPid, process.pid);
  next.close();
  live.close();
});

test('ShmChannel: listen and connect in either order; request and response; listen times out', async () => {
  using dir = shmDir();
  const config = { dir: dir.path, blockCount: 8, ringDepth: 4, blockSize: 256 };
  const clientFirst = ShmChannel.connect('duo', config, 2000);
  const server = await ShmChannel.listen('duo', config, 2000);
  const client = await clientFirst;
  client.send(text('request'));
  const request = await server.recv();
  assert.equal(str(request.bytes), 'request');
  request.release();
  const loan = server.loan();
  loan.bytes.set(text('response'));
  loan.publish(8);
  const reply = await client.recv();
  assert.equal(str(reply.bytes), 'response');
  reply.release();
  assert.equal(server.role, 'server');
  client.close();
  server.close();
  await assert.rejects(ShmChannel.listen('lonely', config, 50), { code: 'SHM_ERR_TIMEOUT' });
  assert.equal(
    existsSync(regionPath(dir.path, 'lonely-srv')),
    false,
    'a listen that timed out removes its region',
  );
});
