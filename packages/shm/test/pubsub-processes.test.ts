import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import {
  Publisher,
  inspectRegionFile,
  ShmChannel,
  Subscriber,
  listRegions,
  regionPath,
  removeRegionFiles,
} from '@switchyard/shm';
import { PubSubChild, runPubSub, shmDir, type SubSummary } from './pubsub-helpers.js';

const dir = shmDir();
test.after(() => dir[Symbol.dispose]());

test('overwrite, two processes: a slow subscriber is told what it missed and never reads a reused block', async () => {
  const config = { dir: dir.path, blockCount: 16, ringDepth: 8, blockSize: 256 };
  const count = 100_000;
  const pub = new PubSubChild(['pub', 'lagging', JSON.stringify(config), String(count), 'close', '1']);
  try {
    await pub.message('created');
    // Holds each sample 20 µs and checks its bytes again before releasing it.
    const sub = new PubSubChild([
      'sub',
      'lagging',
      JSON.stringify({ dir: dir.path, timeoutMs: 5000 }),
      String(count),
      'spin',
      '20',
      'total',
    ]);
    const summary = await sub.message<SubSummary>('received', 60_000);
    const published = await pub.message<{ stats: { published: number } }>('published');
    pub.send('close');
    assert.equal(summary.bad, 0, summary.firstError);
    assert.equal(published.stats.published, count);
    assert.ok(summary.missed > 0, 'the subscriber fell behind and was told so');
    assert.equal(
      summary.start + summary.received + summary.missed,
      count,
      'every message since it attached was either read or counted as missed',
    );
    assert.equal(summary.lastSeq, count - 1);
    assert.equal(await sub.exit(), 0);
  } finally {
    pub.kill();
  }
});

test("'block', two processes: a subscriber that keeps up misses nothing; content intact", async () => {
  const config = {
    dir: dir.path,
    blockCount: 16,
    ringDepth: 8,
    blockSize: 1024,
    slowSubscriber: 'block' as const,
  };
  const count = 50_000;
  const { summary } = await runPubSub('pub', 'lossless', config, count);
  assert.equal(summary.bad, 0, summary.firstError);
  assert.equal(summary.missed, 0);
  assert.equal(summary.received, count);
});

test('guards across processes: held blocks are never reused; PoolExhausted until the holder releases', async () => {
  const name = 'held';
  // Every message in a block (small ones would otherwise travel inline and hold none).
  const publisher = Publisher.create(name, {
    dir: dir.path,
    blockCount: 8,
    ringDepth: 4,
    blockSize: 256,
    inlineMaxBytes: 0,
  });
  const holder = new PubSubChild(['hold', name, JSON.stringify({ dir: dir.path }), '4']);
  try {
    await holder.message('ready');
    const pattern = (seq: number): Uint8Array => {
      const out = new Uint8Array(4 + ((seq * 7919) % 253));
      new DataView(out.buffer).setUint32(0, seq, true);
      for (let i = 4; i < out.length; i++) out[i] = (seq + i) & 0xff;
      return out;
    };
    let seq = 0;
    while (seq < 4) {
      publisher.send(pattern(seq++));
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.deepEqual((await holder.message<{ held: number[] }>('held')).held, [0, 1, 2, 3]);
    // 4 blocks held by the other process; 1000 more messages cycle through the other 4.
    for (let i = 0; i < 1000; i++) publisher.send(pattern(seq++));
    holder.send('check');
    assert.equal((await holder.message<{ intact: boolean }>('intact')).intact, true);
    // Fill the ring too: 4 entries pin the other 4 blocks while nobody reads them...
    const reader = Subscriber.open(name, { dir: dir.path });
    const mine = [];
    for (let i = 0; i < 4; i++) {
      publisher.send(pattern(seq++));
      mine.push(reader.tryRecv()!);
    }
    assert.throws(() => publisher.send(pattern(seq)), { code: 'SHM_ERR_POOL_EXHAUSTED' });
    for (const s of mine) s.release();
    reader.close();
    holder.send('release');
    await holder.message('released');
    assert.equal(await holder.exit(), 0);
    for (let i = 0; i < 8; i++) publisher.send(pattern(seq++));
  } finally {
    holder.kill();
    publisher.close();
  }
});

test('PublisherDead after the publisher is SIGKILLed, within the stale timeout', async () => {
  const config = {
    dir: dir.path,
    blockCount: 4,
    ringDepth: 4,
    blockSize: 64,
    heartbeatIntervalMs: 50,
    staleTimeoutMs: 400,
  };
  const pub = new PubSubChild(['pub', 'doomed', JSON.stringify(config), '1', 'hang', '0']);
  try {
    await pub.message('created');
    await pub.message('published');
    const subscriber = Subscriber.open('doomed', { dir: dir.path, from: 'oldest' });
    const first = await subscriber.recv();
    first.release();
    assert.equal(subscriber.publisherAlive, true);
    // Alive and idle: waiting longer than the stale timeout is not death.
    await assert.rejects(subscriber.recv({ signal: AbortSignal.timeout(600) }), { name: 'TimeoutError' });
    const pending = subscriber.recv();
    const killedAt = Date.now();
    pub.kill();
    await assert.rejects(pending, { code: 'SHM_ERR_PUBLISHER_DEAD', name: 'ShmPublisherDeadError' });
    const tookMs = Date.now() - killedAt;
    // Stale 400 ms after the last stamp (at most 50 ms before the kill); the rest is slack
    // for a loaded 2-core machine.
    assert.ok(tookMs <= 400 + 500, `noticed ${tookMs} ms after the kill (stale timeout 400 ms)`);
    assert.throws(
      () => {
        // The clock is read on the first empty poll and every 32nd after it.
        for (let i = 0; i < 64; i++) subscriber.tryRecv();
      },
      { code: 'SHM_ERR_PUBLISHER_DEAD' },
    );
    assert.equal(subscriber.publisherAlive, false);
    subscriber.close();
    // The region outlived its publisher: it is listed as dead and can be removed.
    const region = listRegions(dir.path).find((r) => r.name === 'doomed');
    assert.ok(
      region !== undefined && 'region' in region && region.region.dead && !region.region.publisherAlive,
    );
    removeRegionFiles(regionPath(dir.path, 'doomed'));
    assert.equal(existsSync(regionPath(dir.path, 'doomed')), false);
  } finally {
    pub.kill();
  }
});

test('a dead publisher’s region is taken over by the next Publisher.create of that name', async () => {
  const config = { dir: dir.path, blockCount: 4, ringDepth: 4, blockSize: 64 };
  const pub = new PubSubChild(['pub', 'phoenix', JSON.stringify(config), '3', 'hang', '0']);
  await pub.message('published');
  assert.throws(() => Publisher.create('phoenix', config), { code: 'SHM_ERR_EXISTS' });
  pub.kill();
  await pub.exit();
  const publisher = Publisher.create('phoenix', config);
  const subscriber = Subscriber.open('phoenix', { dir: dir.path, from: 'oldest' });
  assert.equal(subscriber.tryRecv(), null, 'a fresh region: nothing of the dead one');
  subscriber.close();
  publisher.close();
});

test('the publisher skips the wake syscall while the other process spins, and rings it once it parks', async () => {
  const name = 'wakes';
  const publisher = Publisher.create(name, { dir: dir.path, blockCount: 64, ringDepth: 32, blockSize: 256 });
  const pattern = (seq: number): Uint8Array => {
    const out = new Uint8Array(4 + ((seq * 7919) % 253));
    new DataView(out.buffer).setUint32(0, seq, true);
    for (let i = 4; i < out.length; i++) out[i] = (seq + i) & 0xff;
    return out;
  };
  try {
    for (const [wait, expectWakes] of [
      ['spin', false],
      ['adaptive', true],
    ] as const) {
      const before = publisher.stats.wakeSyscalls;
      const start = Number(publisher.sequence);
      const sub = new PubSubChild([
        'sub',
        name,
        JSON.stringify({ dir: dir.path, spinMicros: 0 }),
        '20',
        wait,
        '0',
      ]);
      await sub.message('ready');
      // Paced: a parked subscriber parks between messages; a spinning one never does.
      for (let i = 0; i < 20; i++) {
        publisher.send(pattern(start + i));
        await new Promise((r) => setTimeout(r, 3));
      }
      const summary = await sub.message<SubSummary>('received');
      assert.equal(summary.received, 20);
      assert.equal(summary.bad, 0, summary.firstError);
      const wakes = publisher.stats.wakeSyscalls - before;
      // Most of the 20 find it parked; a loaded machine may deschedule it past a few.
      if (expectWakes) assert.ok(wakes >= 3, `${wakes} wake syscalls for a parked subscriber`);
      else assert.equal(wakes, 0, 'no wake syscall while the subscriber spins');
      await sub.exit();
    }
    assert.equal(publisher.stats.published, publisher.stats.wakeSyscalls + publisher.stats.wakesSkipped);
  } finally {
    publisher.close();
  }
});

test('recvSync in another process sleeps on the futex and is woken by the publisher', async () => {
  const name = 'futex';
  const publisher = Publisher.create(name, { dir: dir.path, blockCount: 8, ringDepth: 8, blockSize: 256 });
  const sub = new PubSubChild(['sync', name, JSON.stringify({ dir: dir.path, spinMicros: 0 }), '10']);
  try {
    await sub.message('ready');
    for (let seq = 0; seq < 10; seq++) {
      const out = new Uint8Array(4 + ((seq * 7919) % 253));
      new DataView(out.buffer).setUint32(0, seq, true);
      for (let i = 4; i < out.length; i++) out[i] = (seq + i) & 0xff;
      publisher.send(out);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(await sub.message('received'), { received: 10, timedOut: 0 });
    assert.ok(publisher.stats.wakeSyscalls >= 2, `${publisher.stats.wakeSyscalls} futex wakes`);
  } finally {
    sub.kill();
    publisher.close();
  }
});

test('ShmChannel ping-pong between two processes, both spinning: every reply, in order, none missed', async () => {
  const config = { dir: dir.path, blockCount: 16, ringDepth: 8, blockSize: 64 };
  const pong = new PubSubChild(['pong', 'pingpong', JSON.stringify(config)]);
  try {
    const channel = await ShmChannel.connect('pingpong', config, 10_000);
    const request = new Uint8Array(64);
    const deadline = Date.now() + 20_000;
    // Spinning on both sides exposes races between a publish and a poll (a reply read as
    // "lapped" would be counted missed and never arrive).
    for (let i = 0; i < 3000; i++) {
      new DataView(request.buffer).setUint32(0, i, true);
      channel.send(request);
      let reply = channel.tryRecv();
      while (reply === null) {
        assert.ok(Date.now() < deadline, `no reply ${i} (missed ${channel.missed})`);
        reply = channel.tryRecv();
      }
      assert.equal(new DataView(reply.bytes.buffer, reply.bytes.byteOffset, 4).getUint32(0, true), i);
      assert.equal(reply.sequence, BigInt(i));
      reply.release();
    }
    assert.equal(channel.missed, 0);
    channel.close();
    const echoed = await pong.message<{ missed: number }>('echoed');
    assert.equal(echoed.missed, 0);
  } finally {
    pong.kill();
  }
});

test('a subscriber SIGKILLed while holding samples: the publisher takes its blocks and slot back', async () => {
  const name = 'killed-holder';
  const publisher = Publisher.create(name, {
    dir: dir.path,
    blockCount: 4,
    ringDepth: 4,
    blockSize: 256,
    heartbeatIntervalMs: 50,
    inlineMaxBytes: 0,
  });
  const holder = new PubSubChild(['hold', name, JSON.stringify({ dir: dir.path }), '4']);
  try {
    await holder.message('ready');
    for (let seq = 0; seq < 4; seq++) {
      const out = new Uint8Array(4 + ((seq * 7919) % 253));
      new DataView(out.buffer).setUint32(0, seq, true);
      for (let i = 4; i < out.length; i++) out[i] = (seq + i) & 0xff;
      publisher.send(out);
      await new Promise((r) => setTimeout(r, 2));
    }
    await holder.message('held');
    assert.throws(() => publisher.send(new Uint8Array(8)), { code: 'SHM_ERR_POOL_EXHAUSTED' });
    assert.equal(publisher.subscribers, 1);
    holder.kill();
    await holder.exit();
    // The heartbeat timer sweeps every 50 ms here.
    const deadline = Date.now() + 2000;
    while (!publisher.isWritable && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(publisher.isWritable, true, 'the dead subscriber’s blocks came back');
    assert.deepEqual(inspectRegionFile(publisher.path).subscribers, [], 'and its slot is free');
    for (let i = 0; i < 8; i++) publisher.send(new Uint8Array(8).fill(i));
    assert.equal(publisher.sweep(), 0, 'nothing left to clean');
  } finally {
    holder.kill();
    publisher.close();
  }
});
