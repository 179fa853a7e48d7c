import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  StreamClient,
  StreamConnectionLostError,
  StreamError,
  StreamGoawayError,
  StreamKeepaliveTimeoutError,
  StreamServer,
  type Source,
} from '@switchyard/stream';
import { collect, counter, eventually, startPair, text } from './helpers.js';

test('keepalive detects a peer that stopped answering', async () => {
  // A "server" that sends a valid preface and then never says another word.
  const sockets: Socket[] = [];
  const silent = createServer((socket) => {
    sockets.push(socket);
    const preface = Buffer.from([0x53, 0x57, 0x59, 0x53, 1, 0, 0, 0, 0, 1, 0, 0]);
    socket.write(preface);
    socket.on('data', () => undefined);
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const port = (silent.address() as { port: number }).port;
  const errors: Error[] = [];
  const client = new StreamClient({
    keepaliveIntervalMs: 50,
    keepaliveTimeoutMs: 100,
    onError: (e) => errors.push(e),
  });
  const started = Date.now();
  await assert.rejects(
    client.post(`tcp://127.0.0.1:${port}`, text('x'))[Symbol.asyncIterator]().next(),
    (e) => e instanceof StreamKeepaliveTimeoutError && e.code === 'STREAM_ERR_KEEPALIVE_TIMEOUT',
  );
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 100 && elapsed < 1500, `detected after ${elapsed} ms`);
  assert.ok(errors.some((e) => e instanceof StreamKeepaliveTimeoutError));
  await client.close();
  for (const s of sockets) s.destroy();
  silent.close();
});

test('keepalive pings keep a quiet but live connection open', async () => {
  await using pair = await startPair(
    'tcp',
    async function* () {
      yield {
        frames: (async function* () {
          await new Promise((r) => setTimeout(r, 400));
          yield text('late');
        })(),
      };
    },
    { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 100 },
    { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 100 },
  );
  for await (const s of pair.client.post(pair.address, text('x'))) assert.equal((await collect(s)).length, 1);
});

test('GOAWAY: close() lets in-flight streams finish, refuses new ones', async () => {
  const pair = await startPair('tcp', async function* () {
    yield {
      frames: (async function* () {
        for (let i = 0; i < 200; i++) {
          if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
          yield counter(i);
        }
      })(),
    };
  });
  const it = pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]();
  const source = (await it.next()).value as Source;
  const frames = source.frames[Symbol.asyncIterator]();
  await frames.next();
  const closing = pair.server.close();
  let n = 1;
  for (;;) {
    const r = await frames.next();
    if (r.done === true) break;
    n++;
  }
  assert.equal(n, 200, 'the in-flight stream finished');
  assert.equal((await it.next()).done, true);
  await closing;
  await assert.rejects(
    pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]().next(),
    (e) => e instanceof StreamError,
  );
  await pair.client.close();
});

test('GOAWAY: a request the server did not take fails with STREAM_ERR_GOAWAY; in-flight ones finish', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let taken = 0;
  await using pair = await startPair('memory', async function* () {
    taken++;
    await gate;
    yield { frames: [text('done')] };
  });
  const first = pair.client.post(pair.address, text('a'))[Symbol.asyncIterator]();
  const firstNext = first.next();
  // The server has taken the first request (a fixed sleep would race under load).
  await eventually(() => taken === 1, 3000, 'the first request to reach the server');
  const closing = pair.server.close();
  // Posted in the same turn: the REQUEST crosses the GOAWAY on the wire.
  const late = pair.client.post(pair.address, text('b'))[Symbol.asyncIterator]().next();
  await assert.rejects(late, (e) => e instanceof StreamGoawayError && e.code === 'STREAM_ERR_GOAWAY');
  release();
  const s = (await firstNext).value as Source;
  assert.deepEqual((await collect(s)).length, 1);
  await closing;
});

test('a server killed mid-stream (SIGKILL) ends every open iterator with a typed error, promptly', async () => {
  const script = fileURLToPath(new URL('./fixtures/server-child.js', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const address = line.toString().trim();
    const client = new StreamClient({ keepaliveIntervalMs: 200, keepaliveTimeoutMs: 200 });
    const its = [0, 1, 2].map(async () => {
      for await (const s of client.post(address, text('x'))) {
        let n = 0;
        for await (const _ of s.frames) n++;
        return n;
      }
      return -1;
    });
    await eventually(() => client.connections === 1, 2000, 'the connection');
    await new Promise((r) => setTimeout(r, 100));
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const results = await Promise.allSettled(its);
    const elapsed = Date.now() - killedAt;
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof StreamConnectionLostError, String(r.reason));
    }
    assert.ok(elapsed < 1000, `iterators ended ${elapsed} ms after the kill`);
    await client.close();
  } finally {
    child.kill('SIGKILL');
  }
});

test('a server drops a client that stopped answering and finishes its producers', async () => {
  let finished = 0;
  let produced = 0;
  const server = new StreamServer({ keepaliveIntervalMs: 50, keepaliveTimeoutMs: 100 });
  await server.listen('tcp://127.0.0.1:0', async function* () {
    try {
      yield {
        frames: (function* () {
          try {
            for (;;) {
              produced++;
              yield counter(produced);
            }
          } finally {
            finished++;
          }
        })(),
      };
    } finally {
      finished++;
    }
  });
  const port = Number(server.address.split(':').pop());
  // A raw client: preface and one REQUEST, then it reads nothing and answers no PING.
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const preface = Buffer.from([0x53, 0x57, 0x59, 0x53, 1, 0, 0, 0, 0, 1, 0, 0]);
  const request = Buffer.alloc(10 + 14);
  request.writeUInt32BE(14, 0);
  request[4] = 1; // REQUEST
  request.writeUInt32BE(1, 6);
  request.writeUInt32BE(1, 10); // source window
  request.writeUInt32BE(64, 14); // frame window
  request.writeUInt32BE(1 << 20, 18); // byte window
  socket.write(Buffer.concat([preface, request]));
  socket.pause();
  await eventually(() => produced >= 64, 2000, 'the window to fill');
  await eventually(() => finished === 2, 3000, 'the server to drop the silent client');
  assert.equal(server.connections, 0);
  assert.ok(produced <= 65, `produced ${produced}`);
  socket.destroy();
  await server.close();
});

test('a client killed mid-stream (SIGKILL): the server finishes every producer of it, promptly', async () => {
  let finished = 0;
  let started = 0;
  const server = new StreamServer();
  await server.listen('tcp://127.0.0.1:0', async function* (request) {
    try {
      for (let s = 0; s < 3; s++) {
        yield {
          frames: (async function* () {
            started++;
            try {
              for (let i = 0; ; i++) {
                if (i % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
                yield counter(i);
              }
            } finally {
              finished++;
            }
          })(),
        };
      }
      await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
    } finally {
      finished++;
    }
  });
  const script = fileURLToPath(new URL('./fixtures/client-child.js', import.meta.url));
  const child = spawn(process.execPath, [script, server.address], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await once(child.stdout, 'data');
    assert.equal(server.connections, 1);
    const killedAt = Date.now();
    child.kill('SIGKILL');
    await eventually(() => started === 3 && finished === 4, 2000, 'every producer to finish');
    assert.ok(Date.now() - killedAt < 1000);
    assert.equal(server.connections, 0);
  } finally {
    child.kill('SIGKILL');
    await server.close();
  }
});
