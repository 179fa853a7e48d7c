import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeTempDir } from '@switchyard/testkit';
import {
  DEFAULT_ENGINE_OPTIONS,
  lengthPrefixed,
  lines,
  memoryTransportPair,
  parseAddress,
  ProtocolEngine,
  resolveOptions,
  WireError,
  type Connection,
  type Handler,
} from '@switchyard/wire';
import { scripted, ScriptedTransport } from './helpers/feed.js';

async function until(predicate: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** An echo server engine and a recording client engine, over lines. */
function echoPair(options = {}) {
  const server = new ProtocolEngine<string>(
    { codec: () => lines(), handler: { onFrame: (conn, line) => void conn.send(line.toUpperCase()) } },
    options,
  );
  const got: string[] = [];
  const closed: (WireError | undefined)[] = [];
  const client = new ProtocolEngine<string>(
    {
      codec: () => lines(),
      handler: {
        onFrame: (_c, line) => void got.push(line),
        onClosed: (_c, e) => void closed.push(e),
      },
    },
    options,
  );
  return { server, client, got, closed };
}

test('options: defaults, validation naming the option, frozen', () => {
  assert.equal(DEFAULT_ENGINE_OPTIONS.initialBufferSize, 32 * 1024);
  assert.equal(DEFAULT_ENGINE_OPTIONS.initialBufferPoolSize, 16);
  assert.equal(DEFAULT_ENGINE_OPTIONS.maxBufferPoolSize, 128);
  assert.equal(DEFAULT_ENGINE_OPTIONS.maxFrameSize, 16 * 1024 * 1024);
  assert.equal(DEFAULT_ENGINE_OPTIONS.highWaterMark, 64 * 1024);
  assert.equal(DEFAULT_ENGINE_OPTIONS.lowWaterMark, 32 * 1024);
  assert.equal(DEFAULT_ENGINE_OPTIONS.idleTimeoutMs, 0);
  assert.equal(DEFAULT_ENGINE_OPTIONS.noDelay, true);
  assert.ok(Object.isFrozen(DEFAULT_ENGINE_OPTIONS));
  assert.throws(() => resolveOptions({ initialBufferSize: -1 }), /"initialBufferSize"/);
  assert.throws(() => resolveOptions({ maxFrameSize: 1.5 }), { code: 'WIRE_ERR_INVALID_ARGUMENT' });
  assert.throws(() => resolveOptions({ lowWaterMark: 10, highWaterMark: 5 }), /"lowWaterMark"/);
  assert.throws(() => resolveOptions({ initialBufferPoolSize: 200 }), /"initialBufferPoolSize"/);
  assert.throws(() => resolveOptions({ noDelay: 'yes' as unknown as boolean }), /"noDelay"/);
  assert.throws(() => resolveOptions({ bogus: 1 } as never), /"bogus"/);
  assert.throws(() => new ProtocolEngine({ codec: lines(), handler: {} as Handler<string> }), /onFrame/);
  assert.throws(() => parseAddress('http://x'), { code: 'WIRE_ERR_INVALID_ARGUMENT' });
  assert.deepEqual(parseAddress('tcp://127.0.0.1:80'), { kind: 'tcp', host: '127.0.0.1', port: 80 });
  assert.deepEqual(parseAddress('tcp://[::1]:80'), { kind: 'tcp', host: '::1', port: 80 });
  assert.deepEqual(parseAddress('unix:/tmp/a.sock'), { kind: 'unix', path: '/tmp/a.sock' });
  assert.deepEqual(parseAddress('unix:///tmp/a.sock'), { kind: 'unix', path: '/tmp/a.sock' });
});

test('listen and connect over TCP and a Unix socket: echo, addresses, onReady before connect resolves', async () => {
  using dir = makeTempDir('wire-engine-');
  for (const address of ['tcp://127.0.0.1:0', `unix:${join(dir.path, 'echo.sock')}`]) {
    const { server, client, got } = echoPair();
    const ready: string[] = [];
    const listener = await server.listen(address);
    if (address.startsWith('tcp')) {
      assert.match(listener.address, /^tcp:\/\/127\.0\.0\.1:\d+$/);
      assert.ok(listener.port > 0);
    } else assert.equal(listener.address, address);
    const conn = await client.connect(listener.address);
    ready.push('connected');
    assert.ok(conn.remoteAddress.length > 0);
    conn.send('hello');
    conn.send('world');
    await until(() => got.length === 2, 'echo');
    assert.deepEqual(got, ['HELLO', 'WORLD']);
    assert.equal(server.connections.size, 1);
    const [serverConn] = server.connections;
    if (address.startsWith('tcp')) assert.match(serverConn?.remoteAddress ?? '', /^127\.0\.0\.1:\d+$/);
    await client.close();
    await until(() => server.connections.size === 0, 'server side closed');
    await server.close();
    assert.deepEqual(ready, ['connected']);
  }
});

test('connect and listen failures are typed; an aborted connect rejects with the reason', async () => {
  const { server, client } = echoPair();
  const listener = await server.listen('tcp://127.0.0.1:0');
  await assert.rejects(server.listen(listener.address), { code: 'WIRE_ERR_LISTEN_FAILED' });
  const port = listener.port;
  await listener.close();
  await assert.rejects(client.connect(`tcp://127.0.0.1:${port}`), { code: 'WIRE_ERR_CONNECT_FAILED' });
  const reason = new Error('stop');
  const controller = new AbortController();
  controller.abort(reason);
  await assert.rejects(
    client.connect('tcp://127.0.0.1:1', { signal: controller.signal }),
    (e) => e === reason,
  );
  await client.close();
  await server.close();
  await assert.rejects(client.connect('tcp://127.0.0.1:1'), { code: 'WIRE_ERR_ENGINE_CLOSED' });
  assert.throws(() => client.manage(memoryTransportPair()[0]), { code: 'WIRE_ERR_ENGINE_CLOSED' });
});

test('broadcast reaches every connection; engine.close() flushes what was sent before it', async () => {
  const { server, client, got, closed } = echoPair();
  const received: string[] = [];
  const listener = await server.listen('tcp://127.0.0.1:0');
  const peers = new ProtocolEngine<string>({
    codec: lines,
    handler: { onFrame: (_c, l) => void received.push(l) },
  });
  for (let i = 0; i < 3; i++) await peers.connect(listener.address);
  await until(() => server.connections.size === 3, 'three accepted');
  server.broadcast('news');
  for (let i = 0; i < 100; i++) server.broadcast(`n${i}`);
  await server.close();
  await until(() => received.length === 303, 'broadcast frames');
  assert.equal(received.filter((l) => l === 'news').length, 3);
  assert.equal(received.filter((l) => l === 'n99').length, 3);
  await peers.close();
  await client.close();
  assert.deepEqual(got, []);
  assert.deepEqual(closed, []);
});

test('connection timers fire onTimeout with their token, clear, and die with the connection; engine timers too', async () => {
  const fired: string[] = [];
  const engineFired: string[] = [];
  const engine = new ProtocolEngine<string, string>({
    codec: lines,
    handler: {
      onFrame: () => {},
      onTimeout: (conn, token) => void fired.push(`${conn.id}:${token}`),
      onEngineTimeout: (token) => void engineFired.push(token),
    },
  });
  const [a, b] = memoryTransportPair();
  const conn = engine.manage(a);
  const other = engine.manage(b);
  conn.setTimeout(10, 'first');
  const cleared = conn.setTimeout(10, 'cleared');
  conn.clearTimeout(cleared);
  other.setTimeout(200, 'dies with its connection');
  engine.setTimeout(10, 'engine');
  const engineCleared = engine.setTimeout(10, 'engine-cleared');
  engine.clearTimeout(engineCleared);
  await sleep(50);
  other.destroy();
  await sleep(250);
  assert.deepEqual(fired, [`${conn.id}:first`]);
  assert.deepEqual(engineFired, ['engine']);
  assert.throws(() => conn.setTimeout(-1, 'x'), { code: 'WIRE_ERR_INVALID_ARGUMENT' });
  await engine.close();
  assert.throws(() => engine.setTimeout(1, 'x'), { code: 'WIRE_ERR_ENGINE_CLOSED' });
});

test('idle timeout closes a silent connection with WIRE_ERR_IDLE_TIMEOUT; traffic keeps one open', async () => {
  const errors: string[] = [];
  const engine = new ProtocolEngine<string>(
    {
      codec: lines,
      handler: { onFrame: () => {}, onError: (c, e) => void errors.push(`${c.id}:${e.code}`) },
    },
    { idleTimeoutMs: 300 },
  );
  const peer = new ProtocolEngine<string>({ codec: lines, handler: { onFrame: () => {} } });
  const [a1, b1] = memoryTransportPair();
  const [a2, b2] = memoryTransportPair();
  const silent = engine.manage(a1);
  const busy = engine.manage(a2);
  peer.manage(b1);
  const talker = peer.manage(b2);
  const started = Date.now();
  const interval = setInterval(() => talker.send('ping'), 20);
  await until(() => silent.closed, 'silent connection closed');
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 290 && elapsed < 5000, `closed after ${elapsed} ms`);
  assert.deepEqual(errors, [`${silent.id}:WIRE_ERR_IDLE_TIMEOUT`]);
  await sleep(400);
  assert.equal(busy.closed, false, 'a connection with traffic stays open');
  clearInterval(interval);
  await until(() => busy.closed, 'busy connection times out once quiet');
  await engine.close();
  await peer.close();
});

test('a frame declaring 1 GiB closes only its connection before any allocation; others carry on', async () => {
  const s = scripted(() => lengthPrefixed({ maxFrameSize: 2 ** 31 }), { maxFrameSize: 1 << 20 });
  const before = s.engine.poolStats();
  s.transport.feed(Uint8Array.of(0x40, 0, 0, 0, 1, 2, 3));
  assert.equal(s.errors[0]?.code, 'WIRE_ERR_FRAME_TOO_LARGE');
  assert.equal(s.conn.closed, true);
  assert.equal(s.engine.poolStats().allocated, before.allocated, 'nothing allocated');
  // Without a size hint (lines), the limit applies to what accumulates.
  const l = scripted(() => lines({ maxLineLength: 10_000_000 }), {
    maxFrameSize: 4096,
    initialBufferSize: 1024,
  });
  for (let i = 0; i < 10; i++) l.transport.feed(new Uint8Array(1000).fill(65));
  assert.equal(l.errors[0]?.code, 'WIRE_ERR_FRAME_TOO_LARGE');
  assert.ok(l.engine.poolStats().leasedBytes === 0);
});

test('garbage input: a typed error on that connection and a close, never a throw out of the engine', async () => {
  const s = scripted(() => lines());
  s.transport.feed(Uint8Array.of(0xc3, 0x28, 0x0a));
  assert.equal(s.errors[0]?.code, 'WIRE_ERR_PROTOCOL');
  assert.ok(s.errors[0]?.cause instanceof Error);
  assert.equal(s.conn.closed, true);
  assert.equal(s.transport.destroyed, true);
  // A truncated frame at end of stream.
  const t = scripted(() => lengthPrefixed());
  t.transport.feed(Uint8Array.of(0, 0, 0, 10, 1, 2));
  t.transport.sink?.end();
  assert.equal(t.errors[0]?.code, 'WIRE_ERR_TRUNCATED_FRAME');
  // A codec that throws a plain error is reported as WIRE_ERR_PROTOCOL with the cause.
  const boom = new Error('boom');
  const u = scripted(() => ({
    encode: () => 0,
    decode: () => {
      throw boom;
    },
  }));
  u.transport.feed(Uint8Array.of(1));
  assert.equal(u.errors[0]?.code, 'WIRE_ERR_PROTOCOL');
  assert.equal(u.errors[0]?.cause, boom);
  // A codec that lies about bytesRead is caught too.
  const v = scripted(() => ({ encode: () => 0, decode: () => ({ frame: 1, bytesRead: 99 }) }));
  v.transport.feed(Uint8Array.of(1));
  assert.equal(v.errors[0]?.code, 'WIRE_ERR_PROTOCOL');
});

test('a throwing handler fails only its connection with WIRE_ERR_HANDLER_FAILED', async () => {
  const errors: WireError[] = [];
  const engine = new ProtocolEngine<string>({
    codec: lines,
    handler: {
      onFrame: (_c, l) => {
        if (l === 'bad') throw new Error('handler bug');
      },
      onError: (_c, e) => void errors.push(e),
    },
  });
  const [a, b] = memoryTransportPair();
  const [c, d] = memoryTransportPair();
  const victim = engine.manage(a);
  const bystander = engine.manage(c);
  const peer = new ProtocolEngine<string>({ codec: lines, handler: { onFrame: () => {} } });
  peer.manage(b).send('bad');
  peer.manage(d).send('fine');
  await until(() => victim.closed, 'victim closed');
  assert.equal(errors[0]?.code, 'WIRE_ERR_HANDLER_FAILED');
  assert.equal((errors[0]?.cause as Error).message, 'handler bug');
  assert.equal(bystander.closed, false);
  await engine.close();
  await peer.close();
});

test('backpressure: hysteresis between the water marks, onDrain, and maxOutboxSize', async () => {
  let drains = 0;
  const engine = new ProtocolEngine<Uint8Array>(
    { codec: lengthPrefixed, handler: { onFrame: () => {}, onDrain: () => void drains++ } },
    { highWaterMark: 1000, lowWaterMark: 300, maxOutboxSize: 5000, initialBufferSize: 256 },
  );
  const t = new ScriptedTransport();
  t.autoComplete = false;
  const conn = engine.manage(t);
  const frame = new Uint8Array(96); // 100 bytes on the wire
  let accepted = 0;
  while (conn.send(frame)) accepted++;
  assert.equal(accepted, 9, 'true until the outbox reaches the high-water mark');
  assert.equal(conn.outboxSize, 1000);
  assert.equal(conn.isWritable, false);
  let resolved = false;
  void conn.writable.then(() => (resolved = true));
  await until(() => t.writes === 1, 'the flush hands the outbox to the transport, which holds it');
  assert.equal(conn.send(frame), false, 'still false: the outbox is still over the low-water mark');
  await until(() => {
    t.completeWrites();
    return resolved;
  }, 'drain');
  assert.equal(drains, 1);
  assert.equal(conn.outboxSize, 0);
  assert.equal(conn.send(frame), true);
  // Ignoring false: past maxOutboxSize the connection is destroyed.
  const errors: string[] = [];
  const e2 = new ProtocolEngine<Uint8Array>(
    { codec: lengthPrefixed, handler: { onFrame: () => {}, onError: (_c, e) => void errors.push(e.code) } },
    { highWaterMark: 1000, lowWaterMark: 300, maxOutboxSize: 5000 },
  );
  const t2 = new ScriptedTransport();
  t2.autoComplete = false;
  const c2 = e2.manage(t2);
  for (let i = 0; i < 100 && !c2.closed; i++) c2.send(frame);
  assert.deepEqual(errors, ['WIRE_ERR_OUTBOX_OVERFLOW']);
  assert.equal(c2.closed, true);
  await assert.rejects(c2.writable, { code: 'WIRE_ERR_CONNECTION_CLOSED' });
  t.autoComplete = true;
  t.completeWrites();
  await engine.close();
});

test('pooled buffers: a connection holds buffers only while it has something in flight', async () => {
  const s = scripted(() => lengthPrefixed());
  assert.equal(s.engine.poolStats().idle, 16, 'initialBufferPoolSize buffers are ready');
  s.transport.feed(Uint8Array.of(0, 0, 0, 5, 1, 2)); // a partial frame is held in a pooled buffer
  assert.equal(s.engine.poolStats().leased, 1);
  s.transport.feed(Uint8Array.of(3, 4, 5));
  assert.equal(s.frames.length, 1);
  assert.equal(s.engine.poolStats().leased, 0, 'the read buffer went back');
  s.conn.send(new Uint8Array(10));
  assert.equal(s.engine.poolStats().leased, 1, 'the write buffer is out until the write completes');
  await until(() => s.engine.poolStats().leased === 0, 'the write buffer back after the write');
  assert.equal(s.transport.writes, 1);
  // A frame larger than a pooled buffer takes a larger pooled buffer, returned after.
  const big = scripted(() => lengthPrefixed(), { initialBufferSize: 1024 });
  big.conn.send(new Uint8Array(5000));
  assert.ok(big.engine.poolStats().leasedBytes >= 5004);
  await until(() => big.engine.poolStats().leased === 0, 'the large buffer back');
  assert.equal(big.transport.writtenBytes().length, 5004);
});

test('diagnostics_channel publishes open, error and close', async () => {
  const seen: string[] = [];
  const onOpen = (): void => void seen.push('open');
  const onError = (m: unknown): void => void seen.push(`error:${(m as { error: WireError }).error.code}`);
  const onClose = (): void => void seen.push('close');
  subscribe('switchyard:wire:open', onOpen);
  subscribe('switchyard:wire:error', onError);
  subscribe('switchyard:wire:close', onClose);
  try {
    const s = scripted(() => lines());
    s.transport.feed(Uint8Array.of(0xff, 0x0a));
    assert.deepEqual(seen, ['open', 'error:WIRE_ERR_PROTOCOL', 'close']);
  } finally {
    unsubscribe('switchyard:wire:open', onOpen);
    unsubscribe('switchyard:wire:error', onError);
    unsubscribe('switchyard:wire:close', onClose);
  }
});

test('await using disposes engines and connections', async () => {
  let closedConn: Connection<string> | undefined;
  {
    await using engine = new ProtocolEngine<string>(
      { codec: lines, handler: { onFrame: () => {} } },
      { closeTimeoutMs: 50 },
    );
    const [a] = memoryTransportPair();
    closedConn = engine.manage(a);
  }
  // The peer never answered the graceful close: closeTimeoutMs destroyed the connection.
  assert.equal(closedConn.closed, true);
});

test('write slab: connections sending in one turn share pooled buffers; interleaved sends stay separate and ordered', async () => {
  const fc = (await import('fast-check')).default;
  // A broadcast to 1 000 connections takes a few shared buffers, not one each.
  const engine = new ProtocolEngine<Uint8Array>({ codec: lengthPrefixed, handler: { onFrame: () => {} } });
  const transports = Array.from({ length: 1000 }, () => {
    const t = new ScriptedTransport();
    t.autoComplete = false;
    engine.manage(t);
    return t;
  });
  engine.broadcast(new Uint8Array(100).fill(9));
  await until(() => transports.every((t) => t.writes === 1), 'every connection wrote');
  const stats = engine.poolStats();
  assert.ok(stats.leased <= 5, `${stats.leased} buffers for 1 000 connections × 104 bytes`);
  for (const t of transports) {
    assert.deepEqual(t.writtenBytes(), Buffer.concat([Buffer.of(0, 0, 0, 100), Buffer.alloc(100, 9)]));
    t.completeWrites();
  }
  await until(() => engine.poolStats().leased === 0, 'all buffers back');
  // Any interleaving of sends over a few connections, with any sizes, keeps each
  // connection's bytes its own and in order.
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.nat(3), fc.nat(3000)), { maxLength: 60 }), async (sends) => {
      const e = new ProtocolEngine<Uint8Array>(
        { codec: lengthPrefixed, handler: { onFrame: () => {} } },
        { initialBufferSize: 1024, highWaterMark: 1 << 20, lowWaterMark: 1 << 19 },
      );
      const ts = Array.from({ length: 4 }, () => new ScriptedTransport());
      const conns = ts.map((t) => e.manage(t));
      const expected: Buffer[][] = [[], [], [], []];
      sends.forEach(([c, size], i) => {
        const frame = new Uint8Array(size).fill(i & 0xff);
        conns[c]?.send(frame);
        const header = Buffer.alloc(4);
        header.writeUInt32BE(size);
        expected[c]?.push(header, Buffer.from(frame));
      });
      await until(() => e.poolStats().leased === 0, 'writes done', 2000);
      ts.forEach((t, c) => assert.deepEqual(t.writtenBytes(), Buffer.concat(expected[c] ?? [])));
    }),
    { numRuns: 100 },
  );
});

test('listen on a Unix socket left by a killed process takes it over; a live one is refused', async () => {
  const { spawn } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  using dir = makeTempDir('wire-stale-');
  const path = join(dir.path, 'stale.sock');
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(path)})`],
    {
      stdio: 'ignore',
    },
  );
  try {
    await until(() => existsSync(path), 'the child listening');
  } finally {
    if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(existsSync(path), 'SIGKILL left the socket file behind');
  const { server, client, got } = echoPair();
  const listener = await server.listen(`unix:${path}`);
  const conn = await client.connect(listener.address);
  conn.send('alive');
  await until(() => got.length === 1, 'echo over the reclaimed socket');
  const other = new ProtocolEngine<string>({ codec: lines, handler: { onFrame: () => {} } });
  await assert.rejects(other.listen(`unix:${path}`), { code: 'WIRE_ERR_LISTEN_FAILED' });
  await client.close();
  await server.close();
  await other.close();
});
