// Child processes of the wire benchmark: one receiver (server) and one sender (client) per
// phase, so client and server run in separate processes. The parent (wire.ts) forks them
// and reads results over IPC.
//
//   wire.child.js server <kind> <address>          listen, send {address}, report on close
//   wire.child.js client <kind> <address> <ms>     send for <ms>, then close
//   kinds: engine | engine-window | coalesced | naive (64 B flood), engine64k | raw64k (64 KiB),
//          echo-engine | echo-raw (round trip), idle-engine | idle-raw (10 000 idle)
import { createConnection, createServer, type Socket } from 'node:net';
import { lengthPrefixed, ProtocolEngine, type Connection, type FrameWindow } from '@switchyard/wire';

const [role, kind = '', address = '', msArg = '2000'] = process.argv.slice(2);
const durationMs = Number(msArg);
const SMALL = 64;
const LARGE = 64 * 1024;

// 'exit' ends a child normally (so --cpu-prof can write its profile).
process.on('message', (m) => {
  if (m === 'exit') process.exit(0);
});

function send(message: unknown): void {
  process.send?.(message);
}

function target(addr: string): { host: string; port: number } | { path: string } {
  if (addr.startsWith('unix:')) return { path: addr.slice(5) };
  const m = /^tcp:\/\/([^:]+):(\d+)$/.exec(addr);
  return { host: m?.[1] ?? '127.0.0.1', port: Number(m?.[2]) };
}

function connectRaw(addr: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection(target(addr), () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

function drain(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('drain', resolve));
}

// ------------------------------------------------------------------ servers (receivers)

/** Counts frames (or bytes) from the first one to the end of the stream. */
class Meter {
  frames = 0;
  bytes = 0;
  first = 0;
  cpu: NodeJS.CpuUsage | undefined;
  start(): void {
    if (this.first === 0) {
      this.first = performance.now();
      this.cpu = process.cpuUsage();
    }
  }
  done(): void {
    const seconds = (performance.now() - this.first) / 1000;
    // CPU time of the receiving process: a figure that other load on the machine disturbs
    // far less than frames per second of wall time.
    const used = process.cpuUsage(this.cpu);
    send({ frames: this.frames, bytes: this.bytes, seconds, cpuSeconds: (used.user + used.system) / 1e6 });
  }
}

async function listenRaw(onSocket: (s: Socket) => void): Promise<void> {
  const server = createServer({ noDelay: true }, onSocket);
  const t = target(address);
  await new Promise<void>((resolve) => server.listen(t, resolve));
  const a = server.address();
  send({ address: typeof a === 'object' && a !== null ? `tcp://127.0.0.1:${a.port}` : address });
}

async function server(): Promise<void> {
  const meter = new Meter();
  if (kind === 'engine-window') {
    // Zero allocation per frame: one reused FrameWindow instead of a Uint8Array view each.
    const engine = new ProtocolEngine<FrameWindow>({
      codec: () => lengthPrefixed({ frames: 'window' }),
      handler: {
        onFrame: () => {
          if (meter.frames++ === 0) meter.start();
        },
        onClosed: () => meter.done(),
      },
    });
    const listener = await engine.listen(address);
    send({ address: listener.address });
  } else if (kind === 'engine' || kind === 'engine64k') {
    const large = kind === 'engine64k';
    const engine = new ProtocolEngine<Uint8Array>({
      codec: lengthPrefixed,
      handler: {
        onFrame: large
          ? (_c, frame) => {
              if (meter.frames++ === 0) meter.start();
              meter.bytes += frame.length;
            }
          : () => {
              if (meter.frames++ === 0) meter.start();
            },
        onClosed: () => meter.done(),
      },
    });
    const listener = await engine.listen(address);
    send({ address: listener.address });
  } else if (kind === 'coalesced') {
    // Hand-written coalesced reader: parse boundaries in place, carry a partial frame over.
    await listenRaw((socket) => {
      let carry: Buffer | null = null;
      socket.on('data', (chunk: Buffer) => {
        if (meter.first === 0) meter.start();
        let buf = chunk;
        if (carry !== null) {
          buf = Buffer.concat([carry, chunk]);
          carry = null;
        }
        let p = 0;
        const end = buf.length;
        let frames = 0;
        while (p + 4 <= end) {
          const len = (buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!;
          if (p + 4 + len > end) break;
          p += 4 + len;
          frames++;
        }
        meter.frames += frames;
        if (p < end) carry = Buffer.from(buf.subarray(p));
      });
      socket.on('close', () => meter.done());
    });
  } else if (kind === 'naive') {
    // Naive reader: concatenate every chunk, slice out each frame.
    await listenRaw((socket) => {
      let pending = Buffer.alloc(0);
      let last: Buffer | undefined;
      socket.on('data', (chunk: Buffer) => {
        if (meter.first === 0) meter.start();
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 4) {
          const len = pending.readUInt32BE(0);
          if (pending.length < 4 + len) break;
          last = pending.subarray(4, 4 + len);
          pending = pending.subarray(4 + len);
          meter.frames++;
        }
      });
      socket.on('close', () => {
        void last;
        meter.done();
      });
    });
  } else if (kind === 'raw64k') {
    await listenRaw((socket) => {
      socket.on('data', (chunk: Buffer) => {
        if (meter.first === 0) meter.start();
        meter.bytes += chunk.length;
      });
      socket.on('close', () => meter.done());
    });
  } else if (kind === 'echo-engine' || kind === 'idle-engine') {
    const engine = new ProtocolEngine<Uint8Array>(
      { codec: lengthPrefixed, handler: { onFrame: (conn, frame) => void conn.send(frame) } },
      { maxConnections: 20_000 },
    );
    const listener = await engine.listen(address);
    send({ address: listener.address });
    if (kind === 'idle-engine')
      idleReporter(
        () => engine.connections.size,
        () => engine.poolStats().leased,
      );
  } else if (kind === 'echo-raw' || kind === 'idle-raw') {
    let count = 0;
    await listenRaw((socket) => {
      count++;
      socket.on('data', (chunk: Buffer) => socket.write(chunk));
      socket.on('error', () => {});
    });
    if (kind === 'idle-raw')
      idleReporter(
        () => count,
        () => 0,
      );
  }
}

/** For the idle phases: RSS before and once the parent says every client is connected. */
function idleReporter(connections: () => number, leased: () => number): void {
  global.gc?.();
  const before = process.memoryUsage().rss;
  process.on('message', (m) => {
    if (m !== 'measure') return;
    global.gc?.();
    setTimeout(() => {
      global.gc?.();
      send({
        rssBefore: before,
        rssAfter: process.memoryUsage().rss,
        connections: connections(),
        leased: leased(),
      });
    }, 200);
  });
}

// ------------------------------------------------------------------ clients (senders)

async function client(): Promise<void> {
  const stopAt = performance.now() + durationMs;
  const payload = new Uint8Array(kind.endsWith('64k') ? LARGE : SMALL).fill(7);
  if (kind === 'engine' || kind === 'engine-window' || kind === 'engine64k') {
    const hwm = Number(process.env.WIRE_BENCH_HWM ?? 64 * 1024);
    const engine = new ProtocolEngine<Uint8Array>(
      { codec: lengthPrefixed, handler: { onFrame: () => {} } },
      { highWaterMark: hwm, lowWaterMark: hwm / 2 },
    );
    const conn = await engine.connect(address);
    let n = 0;
    while (performance.now() < stopAt) {
      // Send until the outbox is over its high-water mark, then wait for the drain.
      for (let i = 0; i < 4096; i++) {
        n++;
        if (!conn.send(payload)) {
          await conn.writable;
          break;
        }
      }
      if (conn.isWritable) await new Promise((r) => setImmediate(r));
    }
    await conn.close();
    await engine.close();
    send({ sent: n });
  } else if (kind === 'coalesced') {
    // Hand-written coalesced writer: encode frames into a 64 KiB buffer, one write per buffer.
    const socket = await connectRaw(address);
    const perBuffer = Math.floor(LARGE / (SMALL + 4));
    while (performance.now() < stopAt) {
      const buf = Buffer.allocUnsafe(perBuffer * (SMALL + 4));
      let p = 0;
      for (let i = 0; i < perBuffer; i++) {
        buf[p] = 0;
        buf[p + 1] = 0;
        buf[p + 2] = 0;
        buf[p + 3] = SMALL;
        buf.set(payload, p + 4);
        p += SMALL + 4;
      }
      if (!socket.write(buf)) await drain(socket);
    }
    socket.end();
    await new Promise((r) => socket.once('close', r));
  } else if (kind === 'naive') {
    // Naive writer: a write() per header and per payload.
    const socket = await connectRaw(address);
    while (performance.now() < stopAt) {
      for (let i = 0; i < 256; i++) {
        const header = Buffer.allocUnsafe(4);
        header.writeUInt32BE(SMALL, 0);
        socket.write(header);
        if (!socket.write(payload)) {
          await drain(socket);
          break;
        }
      }
    }
    socket.end();
    await new Promise((r) => socket.once('close', r));
  } else if (kind === 'raw64k') {
    const socket = await connectRaw(address);
    while (performance.now() < stopAt) {
      if (!socket.write(Buffer.alloc(LARGE, 7))) await drain(socket);
    }
    socket.end();
    await new Promise((r) => socket.once('close', r));
  } else if (kind === 'echo-engine') {
    const samples: number[] = [];
    let sentAt = 0;
    let finish: () => void = () => {};
    const finished = new Promise<void>((r) => (finish = r));
    const engine = new ProtocolEngine<Uint8Array>({
      codec: lengthPrefixed,
      handler: {
        onFrame: (conn: Connection<Uint8Array>) => {
          const now = performance.now();
          samples.push(now - sentAt);
          if (now > stopAt) return finish();
          sentAt = performance.now();
          conn.send(payload);
        },
      },
    });
    const conn = await engine.connect(address);
    sentAt = performance.now();
    conn.send(payload);
    await finished;
    await engine.close();
    send({ samples: summarize(samples) });
  } else if (kind === 'echo-raw') {
    const socket = await connectRaw(address);
    const frame = Buffer.alloc(SMALL + 4, 7);
    frame.writeUInt32BE(SMALL, 0);
    const samples: number[] = [];
    await new Promise<void>((resolve) => {
      let got = 0;
      let sentAt = performance.now();
      socket.on('data', (chunk: Buffer) => {
        got += chunk.length;
        if (got < frame.length) return;
        got -= frame.length;
        const now = performance.now();
        samples.push(now - sentAt);
        if (now > stopAt) return resolve();
        sentAt = performance.now();
        socket.write(frame);
      });
      socket.write(frame);
    });
    socket.destroy();
    send({ samples: summarize(samples) });
  } else if (kind === 'idle') {
    const count = Number(process.argv[6] ?? 10_000);
    const frame = Buffer.alloc(SMALL + 4, 7);
    frame.writeUInt32BE(SMALL, 0);
    const sockets: Socket[] = [];
    for (let i = 0; i < count; i += 250) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(250, count - i) }, () => connectRaw(address)),
      );
      for (const s of batch) {
        s.write(frame); // one round trip, then idle
        s.resume();
        sockets.push(s);
      }
    }
    send({ connected: sockets.length });
    setInterval(() => {}, 1 << 30);
  }
}

function summarize(samples: number[]): { n: number; p50: number; p99: number } {
  const sorted = samples.slice(10).sort((a, b) => a - b); // skip the warm-up
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { n: sorted.length, p50: at(0.5) * 1000, p99: at(0.99) * 1000 };
}

if (role === 'server') await server();
else await client();
