import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { lengthPrefixed } from './codecs/length-prefixed.js';
import type { Connection, Handler } from './connection.js';
import { ProtocolEngine } from './engine.js';
import type { WireError } from './errors.js';
import type { EngineOptions } from './options.js';
import type { Transport, TransportSink } from './transport.js';

/** Two connected transports, and how to release what made them. */
export interface TransportPair {
  a: Transport;
  b: Transport;
  close?(): Promise<void>;
}

export type MakeTransportPair = () => Promise<TransportPair>;

type Bytes = Uint8Array;

/** One side of a test link: an engine managing one transport, recording what happens. */
class Side {
  readonly frames: Bytes[] = [];
  readonly errors: WireError[] = [];
  closedWith: WireError | undefined | 'open' = 'open';
  readonly engine: ProtocolEngine<Bytes>;
  readonly conn: Connection<Bytes>;
  #waiters: (() => void)[] = [];

  constructor(
    transport: Transport,
    options: EngineOptions = {},
    onFrame?: (conn: Connection<Bytes>, f: Bytes) => void,
  ) {
    const handler: Handler<Bytes> = {
      onFrame: (conn, frame) => {
        this.frames.push(frame);
        onFrame?.(conn, frame);
        this.#wake();
      },
      onError: (_conn, error) => {
        this.errors.push(error);
      },
      onClosed: (_conn, error) => {
        this.closedWith = error;
        this.#wake();
      },
    };
    this.engine = new ProtocolEngine({ codec: () => lengthPrefixed({ copy: true }), handler }, options);
    this.conn = this.engine.manage(transport);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Waits until `predicate` holds, or fails after `ms`. */
  async until(predicate: () => boolean, what: string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 50));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/** A transport wrapper counting `write` calls (to prove coalescing). */
class CountingTransport implements Transport {
  writes = 0;
  readonly #inner: Transport;
  constructor(inner: Transport) {
    this.#inner = inner;
  }
  get remoteAddress(): string {
    return this.#inner.remoteAddress;
  }
  get localAddress(): string {
    return this.#inner.localAddress;
  }
  start(sink: TransportSink): void {
    this.#inner.start(sink);
  }
  write(chunks: readonly Uint8Array[], done: (error?: Error | null) => void): void {
    this.writes++;
    this.#inner.write(chunks, done);
  }
  pause(): void {
    this.#inner.pause();
  }
  resume(): void {
    this.#inner.resume();
  }
  end(): void {
    this.#inner.end();
  }
  destroy(error?: Error): void {
    this.#inner.destroy(error);
  }
}

function assertBytes(actual: Bytes | undefined, expected: Bytes, message?: string): void {
  assert.ok(actual !== undefined, message ?? 'missing frame');
  assert.ok(
    Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected),
    message ?? 'bytes differ',
  );
}

function frameOf(i: number, size: number): Bytes {
  const f = new Uint8Array(size);
  for (let j = 0; j < size; j++) f[j] = (i * 31 + j) & 0xff;
  return f;
}

/**
 * The transport conformance suite: registers a `node:test` suite named `label` that runs the
 * engine over pairs from `makePair` and checks ordering, large frames, coalescing,
 * backpressure, pause, graceful close, destroy and the frame-size limit. Every transport
 * (TCP, Unix socket, in-memory pair, shm duplex) must pass it. Call it from a test file:
 * `await transportConformance('tcp', makeTcpPair)`.
 */
export async function transportConformance(label: string, makePair: MakeTransportPair): Promise<void> {
  const { describe, test } = await import('node:test');
  const sides: Side[] = [];
  const pairs: TransportPair[] = [];
  const open = async (options: EngineOptions = {}, onFrameB?: (c: Connection<Bytes>, f: Bytes) => void) => {
    const pair = await makePair();
    pairs.push(pair);
    const a = new Side(pair.a, options);
    const b = new Side(pair.b, options, onFrameB);
    sides.push(a, b);
    return { a, b, pair };
  };
  const cleanup = async (): Promise<void> => {
    for (const s of sides.splice(0)) s.conn.destroy();
    for (const p of pairs.splice(0)) await p.close?.();
  };

  void describe(`transport conformance: ${label}`, { timeout: 60_000 }, () => {
    test('frames of many sizes arrive whole and in order, both ways', async () => {
      try {
        const { a, b } = await open({ initialBufferSize: 1024 });
        const sizes = Array.from({ length: 600 }, (_, i) => (i * 7919) % 3000);
        for (let i = 0; i < sizes.length; i++) {
          a.conn.send(frameOf(i, sizes[i] as number));
          b.conn.send(frameOf(i + 1, sizes[i] as number));
          if (i % 50 === 0) await sleep(0);
        }
        await b.until(() => b.frames.length === sizes.length, 'frames a→b');
        await a.until(() => a.frames.length === sizes.length, 'frames b→a');
        for (let i = 0; i < sizes.length; i++) {
          assertBytes(b.frames[i], frameOf(i, sizes[i] as number), `frame ${i} a→b`);
          assertBytes(a.frames[i], frameOf(i + 1, sizes[i] as number), `frame ${i} b→a`);
        }
      } finally {
        await cleanup();
      }
    });

    test('a frame larger than a pooled buffer arrives whole', async () => {
      try {
        const { a, b } = await open({ initialBufferSize: 1024 });
        const big = frameOf(7, 300_000);
        a.conn.send(frameOf(1, 10));
        a.conn.send(big);
        a.conn.send(frameOf(2, 10));
        await b.until(() => b.frames.length === 3, 'three frames');
        assertBytes(b.frames[1], big);
        assertBytes(b.frames[2], frameOf(2, 10));
      } finally {
        await cleanup();
      }
    });

    test('frames sent in one turn leave in one transport write', async () => {
      try {
        const pair = await makePair();
        pairs.push(pair);
        const counting = new CountingTransport(pair.a);
        const a = new Side(counting);
        const b = new Side(pair.b);
        sides.push(a, b);
        for (let i = 0; i < 500; i++) a.conn.send(frameOf(i, 64));
        await b.until(() => b.frames.length === 500, '500 frames');
        assert.equal(counting.writes, 1, 'one write for 500 frames sent in one turn');
        a.conn.send(frameOf(1, 64));
        await sleep(5);
        a.conn.send(frameOf(2, 64));
        await b.until(() => b.frames.length === 502, '2 more frames');
        assert.equal(counting.writes, 3, 'frames sent in different turns leave in different writes');
      } finally {
        await cleanup();
      }
    });

    test('backpressure: a peer that stops reading makes send() return false; memory stays bounded; drain follows resume', async () => {
      try {
        const { a, b } = await open({ highWaterMark: 64 * 1024, lowWaterMark: 16 * 1024 });
        b.conn.pause();
        const frame = frameOf(3, 16 * 1024);
        let sent = 0;
        let stalled = false;
        // Fill until the outbox stays over the high-water mark: the peer's kernel buffers
        // (for sockets) fill first, then ours.
        while (sent < 4000 && !stalled) {
          if (a.conn.send(frame)) {
            sent++;
            continue;
          }
          sent++;
          assert.equal(a.conn.isWritable, false);
          const drained = await Promise.race([
            a.conn.writable.then(() => true),
            sleep(200).then(() => false),
          ]);
          stalled = !drained;
        }
        assert.ok(stalled, `the writer never stalled after ${sent} frames`);
        assert.equal(b.frames.length, 0, 'a paused reader gets no frames');
        assert.ok(a.conn.outboxSize <= 64 * 1024 + frame.length, `outbox ${a.conn.outboxSize} is bounded`);
        assert.ok(a.engine.poolStats().leasedBytes <= 256 * 1024, 'the writer holds few buffers');
        let drained = false;
        const writable = a.conn.writable.then(() => {
          drained = true;
        });
        b.conn.resume();
        await writable;
        assert.ok(drained);
        await b.until(() => b.frames.length === sent, `all ${sent} frames after resume`, 15_000);
        assertBytes(b.frames[sent - 1], frame);
      } finally {
        await cleanup();
      }
    });

    test('pause() stops onFrame until resume(), even for frames already read', async () => {
      try {
        let pauseAt = 5;
        const { a, b } = await open({}, (conn) => {
          if (--pauseAt === 0) conn.pause();
        });
        for (let i = 0; i < 20; i++) a.conn.send(frameOf(i, 32));
        await b.until(() => b.frames.length >= 5, 'five frames');
        await sleep(50);
        assert.equal(b.frames.length, 5, 'no frame while paused');
        assert.equal(b.conn.isPaused, true);
        b.conn.resume();
        await b.until(() => b.frames.length === 20, 'the rest');
        assertBytes(b.frames[19], frameOf(19, 32));
      } finally {
        await cleanup();
      }
    });

    test('close() flushes the outbox, then both sides close without error', async () => {
      try {
        const { a, b } = await open();
        for (let i = 0; i < 1000; i++) a.conn.send(frameOf(i, 200));
        await a.conn.close();
        assert.equal(a.closedWith, undefined);
        await b.until(() => b.closedWith !== 'open', 'peer closed');
        assert.equal(b.frames.length, 1000, 'every frame sent before close() arrived');
        assert.equal(b.closedWith, undefined);
        assert.equal(a.conn.send(frameOf(0, 1)), false, 'send after close is refused');
        assert.equal(a.engine.connections.size, 0);
        assert.equal(a.engine.poolStats().leased, 0, 'buffers returned');
      } finally {
        await cleanup();
      }
    });

    test('destroy() closes both sides at once', async () => {
      try {
        const { a, b } = await open();
        a.conn.destroy();
        assert.equal(a.conn.closed, true);
        await b.until(() => b.closedWith !== 'open', 'peer closed');
        await a.until(() => a.closedWith !== 'open', 'closed');
        assert.equal(b.engine.connections.size, 0);
      } finally {
        await cleanup();
      }
    });

    test('a frame over maxFrameSize closes only that connection, with WIRE_ERR_FRAME_TOO_LARGE', async () => {
      try {
        const bad = await open({ maxFrameSize: 4096 });
        const good = await open({ maxFrameSize: 4096 });
        // The sender's own limit would refuse it; send through a permissive engine instead.
        const pair = await makePair();
        pairs.push(pair);
        const sender = new Side(pair.a, { maxFrameSize: 1 << 24 });
        const receiver = new Side(pair.b, { maxFrameSize: 4096 });
        sides.push(sender, receiver);
        sender.conn.send(frameOf(1, 1 << 20));
        await receiver.until(() => receiver.closedWith !== 'open', 'receiver closed');
        assert.equal((receiver.closedWith as WireError).code, 'WIRE_ERR_FRAME_TOO_LARGE');
        assert.equal(receiver.errors[0]?.code, 'WIRE_ERR_FRAME_TOO_LARGE');
        assert.ok(receiver.engine.poolStats().leasedBytes < 1 << 20, 'nothing frame-sized was allocated');
        assert.throws(() => bad.a.conn.send(frameOf(1, 8192)), { code: 'WIRE_ERR_FRAME_TOO_LARGE' });
        good.a.conn.send(frameOf(5, 100));
        await good.b.until(() => good.b.frames.length === 1, 'the other connection carries on');
        assert.equal(good.b.closedWith, 'open');
      } finally {
        await cleanup();
      }
    });
  });
}
