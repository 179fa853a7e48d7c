import assert from 'node:assert/strict';
import { test } from 'node:test';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  StreamClient,
  StreamError,
  StreamServer,
  StreamTimeoutError,
  type Source,
  type SourceFunc,
} from '@switchyard/stream';
import { TRANSPORTS, counter, eventually, startPair, text } from './helpers.js';

/** A server whose producers record whether their `finally` ran. */
function tracked(framesDelayMs = 0, sources = 2) {
  const state = { sourceFnFinally: 0, framesFinally: 0, framesStarted: 0, signalAborted: false };
  const fn: SourceFunc = async function* (request) {
    try {
      for (let s = 0; s < sources; s++) {
        yield {
          header: text(String(s)),
          frames: (async function* () {
            state.framesStarted++;
            try {
              for (let i = 0; ; i++) {
                if (framesDelayMs > 0) await sleep(framesDelayMs);
                yield counter(i);
              }
            } finally {
              state.framesFinally++;
            }
          })(),
        };
      }
      // Keep the source function open until cancelled.
      await new Promise<void>((resolve) => request.signal.addEventListener('abort', () => resolve()));
    } finally {
      state.signalAborted = request.signal.aborted;
      state.sourceFnFinally++;
    }
  };
  return { state, fn };
}

for (const kind of TRANSPORTS) {
  test(`${kind}: break out of frames cancels that source on the wire and runs its finally`, async () => {
    const { state, fn } = tracked();
    await using pair = await startPair(kind, fn);
    const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
    const first = (await it.next()).value as Source;
    const second = (await it.next()).value as Source;
    let n = 0;
    for await (const _ of first.frames) if (++n === 5) break;
    await eventually(() => state.framesFinally === 1, 2000, 'the first generator to finish');
    // The sibling keeps flowing.
    n = 0;
    for await (const _ of second.frames) if (++n === 3000) break;
    assert.equal(n, 3000);
    await it.return?.();
    await eventually(
      () => state.framesFinally === 2 && state.sourceFnFinally === 1,
      2000,
      'all producers to finish',
    );
    assert.equal(state.signalAborted, true);
  });

  test(`${kind}: break out of the sources stops the source function and the sources not taken`, async () => {
    const { state, fn } = tracked(0, 3);
    await using pair = await startPair(kind, fn);
    for await (const source of pair.client.post(pair.address, text('x'))) {
      assert.ok(source.header.length > 0);
      break;
    }
    await eventually(
      () => state.sourceFnFinally === 1 && state.framesFinally === state.framesStarted,
      2000,
      'source function and untaken sources to finish',
    );
  });

  test(`${kind}: signal.abort() rejects with its reason and finishes every producer`, async () => {
    const { state, fn } = tracked(1);
    await using pair = await startPair(kind, fn);
    const ac = new AbortController();
    const it = pair.client.post(pair.address, text('x'), { signal: ac.signal })[Symbol.asyncIterator]();
    const first = (await it.next()).value as Source;
    const frames = first.frames[Symbol.asyncIterator]();
    await frames.next();
    const reason = new Error('stop now');
    ac.abort(reason);
    await assert.rejects(
      (async () => {
        for (;;) if ((await frames.next()).done === true) return;
      })(),
      (e) => e === reason,
    );
    await assert.rejects(it.next(), (e) => e === reason);
    await eventually(
      () =>
        state.sourceFnFinally === 1 && state.framesFinally === state.framesStarted && state.framesStarted > 0,
      2000,
      'producers to finish after abort',
    );
  });
}

test('an already aborted signal fails at once and sends nothing', async () => {
  const { state, fn } = tracked();
  await using pair = await startPair('tcp', fn);
  const reason = new Error('early');
  const it = pair.client.post(pair.address, text('x'), { signal: AbortSignal.abort(reason) });
  await assert.rejects(it[Symbol.asyncIterator]().next(), (e) => e === reason);
  await sleep(50);
  assert.equal(state.sourceFnFinally, 0);
  assert.equal(state.framesStarted, 0);
});

const isTimeout = (name: string) => (e: unknown) =>
  e instanceof StreamTimeoutError && e.code === 'STREAM_ERR_TIMEOUT' && e.timeout === name;

test('frameReadTimeoutMs cancels a source whose frames stop coming', async () => {
  const { state, fn } = tracked(400, 1);
  await using pair = await startPair('tcp', fn, {}, { frameReadTimeoutMs: 100 });
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  const source = (await it.next()).value as Source;
  await assert.rejects(
    (async () => {
      for await (const _ of source.frames) {
        // nothing
      }
    })(),
    isTimeout('frameReadTimeoutMs'),
  );
  await eventually(() => state.framesFinally === 1, 2000, 'the slow generator to finish');
  await it.return?.();
});

test('masterReadTimeoutMs cancels a request whose sources stop coming', async () => {
  let finished = false;
  await using pair = await startPair(
    'memory',
    async function* (request) {
      try {
        await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
        yield { frames: [] };
      } finally {
        finished = true;
      }
    },
    {},
    { masterReadTimeoutMs: 100 },
  );
  await assert.rejects(
    (async () => {
      for await (const _ of pair.client.post(pair.address, text('x'))) {
        // nothing
      }
    })(),
    isTimeout('masterReadTimeoutMs'),
  );
  await eventually(() => finished, 2000, 'the source function to finish');
});

test('servingTimeoutMs ends the request and every source with a typed error on the client', async () => {
  const { state, fn } = tracked(20, 2);
  await using pair = await startPair('tcp', fn, { servingTimeoutMs: 200 });
  const errors: unknown[] = [];
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  const sources = [(await it.next()).value as Source, (await it.next()).value as Source];
  await Promise.all(
    sources.map(async (s) => {
      try {
        for await (const _ of s.frames) {
          // drain
        }
      } catch (e) {
        errors.push(e);
      }
    }),
  );
  await assert.rejects(it.next(), isTimeout('servingTimeoutMs'));
  assert.equal(errors.length, 2);
  for (const e of errors) assert.ok(isTimeout('servingTimeoutMs')(e), String(e));
  await eventually(
    () => state.framesFinally === 2 && state.sourceFnFinally === 1,
    2000,
    'producers to finish after the serving timeout',
  );
});

test('sourcingTimeoutMs fails a request that does not finish announcing', async () => {
  const { state, fn } = tracked(0, 1);
  await using pair = await startPair('unix', fn, { sourcingTimeoutMs: 100 });
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  const source = (await it.next()).value as Source;
  await assert.rejects(it.next(), isTimeout('sourcingTimeoutMs'));
  // The announced source goes on.
  let n = 0;
  for await (const _ of source.frames) if (++n === 100) break;
  assert.equal(n, 100);
  await eventually(
    () => state.sourceFnFinally === 1 && state.framesFinally === 1,
    2000,
    'producers to finish',
  );
});

test('chanAcceptTimeoutMs fails a request whose sources are not taken', async () => {
  let finished = false;
  await using pair = await startPair(
    'tcp',
    async function* () {
      try {
        for (let i = 0; i < 10; i++) yield { frames: [counter(i)] };
      } finally {
        finished = true;
      }
    },
    { chanAcceptTimeoutMs: 100 },
    { sourceBufferSize: 1 },
  );
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  await it.next();
  await sleep(300);
  // The one source in the window is still there; then the timeout.
  await it.next();
  await assert.rejects(
    (async () => {
      for (;;) if ((await it.next()).done === true) return;
    })(),
    isTimeout('chanAcceptTimeoutMs'),
  );
  await eventually(() => finished, 2000, 'the source function to finish');
});

test('frameWriteTimeoutMs fails a source whose consumer stops taking frames', async () => {
  const { state, fn } = tracked(0, 1);
  await using pair = await startPair('memory', fn, { frameWriteTimeoutMs: 100 }, { streamWindowFrames: 16 });
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  const source = (await it.next()).value as Source;
  // The timeout fires once the window is full and no credit came: the generator is finished.
  await eventually(() => state.framesFinally === 1, 3000, 'the frame write timeout');
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const _ of source.frames) n++;
    })(),
    isTimeout('frameWriteTimeoutMs'),
  );
  assert.equal(n, 16, 'the frames in the window are delivered before the error');
  await it.return?.();
});

test('dialTimeoutMs bounds connecting', async () => {
  const client = new StreamClient({
    dialTimeoutMs: 100,
    dial: (_endpoint, signal) =>
      new Promise((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason as Error)),
      ),
  });
  const started = Date.now();
  await assert.rejects(
    client.post('memory:nowhere', text('x'))[Symbol.asyncIterator]().next(),
    isTimeout('dialTimeoutMs'),
  );
  assert.ok(Date.now() - started < 1000);
  await client.close();
});

test('closing the client mid-stream finishes every server producer', async () => {
  const { state, fn } = tracked(1, 3);
  const pair = await startPair('tcp', fn);
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  const s = (await it.next()).value as Source;
  await s.frames[Symbol.asyncIterator]().next();
  await pair.client.close();
  await eventually(
    () => state.sourceFnFinally === 1 && state.framesFinally === state.framesStarted,
    2000,
    'producers to finish after the client closed',
  );
  await assert.rejects(it.next(), (e) => e instanceof StreamError);
  await pair[Symbol.asyncDispose]();
});

test('client masterWriteTimeoutMs: a request stuck in the outbox fails typed', async () => {
  // A peer that sends its preface and then never reads.
  const sockets: Socket[] = [];
  const deaf = createServer((socket) => {
    sockets.push(socket);
    socket.write(Buffer.from([0x53, 0x57, 0x59, 0x53, 1, 0, 0, 0, 0, 1, 0, 0]));
    socket.pause();
  });
  deaf.listen(0, '127.0.0.1');
  await once(deaf, 'listening');
  const port = (deaf.address() as { port: number }).port;
  const client = new StreamClient({ masterWriteTimeoutMs: 100, keepaliveIntervalMs: 0 });
  const posted = client.post(`tcp://127.0.0.1:${port}`, new Uint8Array(32 * 1024 * 1024));
  await assert.rejects(posted[Symbol.asyncIterator]().next(), isTimeout('masterWriteTimeoutMs'));
  await client.close();
  for (const s of sockets) s.destroy();
  deaf.close();
});

test('server masterWriteTimeoutMs: an announcement stuck behind a congested outbox fails the request', async () => {
  let reason: unknown;
  const server = new StreamServer({ masterWriteTimeoutMs: 100, keepaliveIntervalMs: 0 });
  await server.listen('tcp://127.0.0.1:0', async function* (request) {
    try {
      // Endless sources: each announcement finds the outbox congested again, until the
      // socket buffers are full and it stays congested.
      for (let i = 0; i < 100; i++) {
        yield {
          frames: (function* () {
            for (;;) yield new Uint8Array(65536);
          })(),
        };
      }
    } finally {
      reason = request.signal.reason;
    }
  });
  const port = Number(server.address.split(':').pop());
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const preface = Buffer.from([0x53, 0x57, 0x59, 0x53, 1, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
  const request = Buffer.alloc(10 + 14);
  request.writeUInt32BE(14, 0);
  request[4] = 1; // REQUEST
  request.writeUInt32BE(1, 6);
  request.writeUInt32BE(100, 10); // source window
  request.writeUInt32BE(0x7fffffff, 14); // frame window
  request.writeUInt32BE(0x7fffffff, 18); // byte window
  socket.write(Buffer.concat([preface, request]));
  socket.pause(); // never read: the server's outbox fills
  await eventually(() => reason !== undefined, 3000, 'the request to fail');
  assert.ok(isTimeout('masterWriteTimeoutMs')(reason), String(reason));
  socket.destroy();
  await server.close();
});
