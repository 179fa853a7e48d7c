import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Source } from '@switchyard/stream';
import { TRANSPORTS, collect, counter, eventually, readCounter, startPair, str, text } from './helpers.js';

for (const kind of TRANSPORTS) {
  test(`${kind}: a consumer that stops pulling stops the producer at the frame window`, async () => {
    let produced = 0;
    await using pair = await startPair(
      kind,
      async function* () {
        yield {
          frames: (function* () {
            for (;;) {
              produced++;
              yield counter(produced);
            }
          })(),
        };
      },
      {},
      { streamWindowFrames: 64 },
    );
    for await (const source of pair.client.post(pair.address, text('x'))) {
      let read = 0;
      for await (const frame of source.frames) {
        assert.ok(frame.length === 4);
        if (++read === 10) {
          // Stall: hold the iterator without pulling. The producer fills the window, then stops.
          await eventually(() => produced >= 64, 3000, 'the window to fill');
          const stalledAt = produced;
          await sleep(150);
          assert.equal(produced, stalledAt, 'the producer kept going while nobody pulled');
          // 64 frames of window, 10 consumed but not yet returned as credit (below half a window).
          assert.ok(produced <= 64, `produced ${produced}`);
        }
        if (read === 10) break;
      }
      break;
    }
  });
}

for (const [size, window, what] of [
  [100, 2622, 'the byte window (256 KiB / 100 B, plus one record of overdraft)'],
  [4, 4096, 'the derived frame window (256 KiB / 64 = 4096 frames)'],
] as const) {
  test(`by default, ${size}-byte frames: a stalled consumer stops the producer at ${what}`, async () => {
    let produced = 0;
    await using pair = await startPair(
      'unix',
      async function* () {
        yield {
          frames: (function* () {
            for (;;) {
              produced++;
              yield new Uint8Array(size);
            }
          })(),
        };
      },
      {},
      // frameBufferSize stays at its default (1024): it no longer caps the window.
      { streamWindowBytes: 256 * 1024 },
    );
    const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
    const source = (await it.next()).value as Source;
    const frames = source.frames[Symbol.asyncIterator]();
    await frames.next();
    await eventually(() => produced >= window - 1, 3000, 'the window to fill');
    const stalledAt = produced;
    await sleep(150);
    assert.equal(produced, stalledAt, 'the producer kept going while nobody pulled');
    assert.ok(produced >= window - 1 && produced <= window, `produced ${produced}, window ${window}`);
    await frames.return?.();
    await it.return?.();
  });
}

test('frameBufferSize bounds the frames one batch hands over; batches combine DATA frames up to it', async () => {
  const count = 2000;
  let produced = 0;
  await using pair = await startPair(
    'memory',
    async function* () {
      yield {
        // Ten frames per turn: DATA frames of about ten records.
        frames: (async function* () {
          for (let i = 0; i < count; i++) {
            if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
            produced++;
            yield counter(i);
          }
        })(),
      };
    },
    {},
    { frameBufferSize: 100 },
  );
  for await (const source of pair.client.post(pair.address, text('x'))) {
    // Let everything arrive (the derived window, 65 536 frames, holds it all), then read.
    await eventually(() => produced === count, 3000, 'the producer to finish');
    await sleep(50);
    const sizes: number[] = [];
    let next = 0;
    for await (const batch of source.frames.batches()) {
      sizes.push(batch.length);
      for (const f of batch) assert.equal(readCounter(f), next++);
    }
    assert.equal(next, count);
    assert.ok(
      sizes.every((n) => n >= 1 && n <= 100),
      `batch sizes ${sizes.join(',')}`,
    );
    assert.ok(Math.max(...sizes) > 20, `batches were not combined: ${sizes.join(',')}`);
  }
});

test('the byte window bounds the producer too', async () => {
  let produced = 0;
  await using pair = await startPair(
    'tcp',
    async function* () {
      yield {
        frames: (function* () {
          for (;;) {
            produced++;
            yield new Uint8Array(1000);
          }
        })(),
      };
    },
    {},
    { frameBufferSize: 100_000, streamWindowBytes: 10_000 },
  );
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  const source = (await it.next()).value as Source;
  const frames = source.frames[Symbol.asyncIterator]();
  await frames.next();
  await eventually(() => produced >= 10, 3000, 'the byte window to fill');
  await sleep(100);
  // 10 000 bytes of window: 10 frames, plus at most one record of overdraft.
  assert.ok(produced <= 11, `produced ${produced}`);
  await frames.return?.();
  await it.return?.();
});

test('credit comes back as frames are consumed: a long stream through a small window', async () => {
  await using pair = await startPair(
    'unix',
    async function* () {
      yield {
        frames: (function* () {
          for (let i = 0; i < 50_000; i++) yield counter(i);
        })(),
      };
    },
    {},
    { frameBufferSize: 8, streamWindowBytes: 64 },
  );
  for await (const s of pair.client.post(pair.address, text('x')))
    assert.equal((await collect(s)).length, 50_000);
});

test('a stalled source stalls neither its siblings nor other requests', async () => {
  let stalledProduced = 0;
  await using pair = await startPair(
    'tcp',
    async function* (request) {
      if (str(request.body) === 'other') {
        yield { header: text('other'), frames: Array.from({ length: 5000 }, (_, i) => counter(i)) };
        return;
      }
      yield {
        header: text('stalled'),
        frames: (function* () {
          for (;;) {
            stalledProduced++;
            yield new Uint8Array(512);
          }
        })(),
      };
      yield { header: text('sibling'), frames: Array.from({ length: 5000 }, (_, i) => counter(i)) };
    },
    {},
    // The connection window is smaller than what the stalled source may buffer: the
    // connection credit must still flow (it is returned on receipt).
    { frameBufferSize: 1024, streamWindowBytes: 256 * 1024, connectionWindowBytes: 64 * 1024 },
  );
  const it = pair.client.post(pair.address, text('main'))[Symbol.asyncIterator]();
  const stalled = (await it.next()).value as Source;
  assert.equal(str(stalled.header), 'stalled');
  const sibling = (await it.next()).value as Source;
  assert.equal(str(sibling.header), 'sibling');
  assert.equal((await collect(sibling)).length, 5000);
  for await (const s of pair.client.post(pair.address, text('other'))) {
    assert.equal((await collect(s)).length, 5000);
  }
  // Its byte window (256 KiB of 512-byte frames) is what stops it.
  await eventually(() => stalledProduced >= 512, 2000, 'the stalled source to fill its window');
  await sleep(50);
  assert.ok(stalledProduced <= 513, `stalled source produced ${stalledProduced}`);
  await it.return?.();
  const f = stalled.frames[Symbol.asyncIterator]();
  await f.return?.();
});

test('the server never has more announced sources outstanding than the source window', async () => {
  let announced = 0;
  await using pair = await startPair(
    'memory',
    async function* () {
      for (let i = 0; i < 100; i++) {
        announced++;
        yield { frames: [counter(i)] };
      }
    },
    {},
    { sourceBufferSize: 4 },
  );
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  await it.next();
  await sleep(100);
  // 4 in the window, plus the one the generator produced while waiting for credit.
  assert.ok(announced <= 4 + 2, `announced ${announced}`);
  let count = 1;
  for (;;) {
    const r = await it.next();
    if (r.done === true) break;
    count++;
  }
  assert.equal(count, 100);
});
