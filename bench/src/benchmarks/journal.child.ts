// The processes of the journal benchmark (see journal.ts). One JSON line on stdout reports.
//   jw <path> <size> <count> <gapUs> <capacity>   journal writer (waits for "go" on stdin)
//   jr <path> <wait> <latency 0|1>                journal reader: spin (tryRead loop) or adaptive
//   sr <socket> <count> <latency 0|1>             Unix socket reader (server)
//   sw <socket> <size> <count> <batched 0|1> <gapUs>   Unix socket writer
//   ipc <count>                                   child_process IPC receiver (process.on('message'))
//   jping <dir> <wait> <count> / jpong <dir> <wait>   journal ping-pong (two journals)
//   sping <socket> <count> / spong <socket>       Unix socket ping-pong, one write per message
import { createServer, connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { createJournal, openJournal } from '@switchyard/shm';

const [role = '', ...args] = process.argv.slice(2);
const say = (message: object): void => void process.stdout.write(JSON.stringify(message) + '\n');
const now = (): bigint => process.hrtime.bigint();

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Sleeps about `us` µs (a futex wait with a timeout): paces the latency phases without
 * burning the core the spinning reader needs. */
function pause(us: number): void {
  Atomics.wait(sleeper, 0, 0, us / 1000);
}

function stamp(target: Uint8Array): void {
  new DataView(target.buffer, target.byteOffset, 8).setBigInt64(0, now(), true);
}

/** Collects one-way latencies (ns) and reports p50/p99 in µs. */
function percentiles(samples: Float64Array, n: number): { p50: number; p99: number } {
  const sorted = samples.subarray(0, n).sort();
  const at = (q: number): number => (sorted[Math.min(n - 1, Math.floor(q * n))] ?? 0) / 1000;
  return { p50: at(0.5), p99: at(0.99) };
}

async function waitForGo(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) if (line === 'go') break;
  lines.close();
}

async function journalWriter(
  path: string,
  size: number,
  count: number,
  gapUs: number,
  capacity: number,
): Promise<void> {
  const writer = createJournal(path, {
    writerId: 1,
    channelId: 1,
    capacity,
    maxMessageLength: Math.max(size, 8),
    timeout: 10_000,
  });
  say({ created: true });
  await waitForGo();
  const payload = new Uint8Array(Math.max(size, 8)).fill(7).subarray(0, size);
  const start = now();
  say({ startNs: String(start) });
  if (gapUs > 0) {
    for (let i = 0; i < count; i++) {
      pause(gapUs);
      stamp(payload);
      writer.write(payload);
    }
  } else {
    for (let i = 0; i < count; i++) writer.write(payload);
  }
  const elapsed = Number(now() - start);
  writer.close();
  say({ written: count, writerMsgsPerSec: (count * 1e9) / elapsed });
}

async function journalReader(path: string, wait: string, latency: boolean): Promise<void> {
  const reader = openJournal(path, { waitForMs: 10_000, wait: wait === 'spin' ? 'spin' : 'adaptive' });
  say({ ready: true });
  const samples = new Float64Array(1 << 20);
  let n = 0;
  let bytes = 0;
  let first = 0n;
  let check = 0;
  for (;;) {
    let record = reader.tryRead();
    if (record === null) {
      if (reader.ended) break;
      if (wait === 'spin') continue;
      record = await reader.read();
      if (record === null) break;
    }
    if (n === 0) first = now();
    if (latency) {
      const sent = new DataView(record.buffer, record.byteOffset, 8).getBigInt64(0, true);
      if (n < samples.length) samples[n] = Number(now() - sent);
    } else {
      // Read in place: touch the payload's last byte, no copy.
      check += record[record.length - 1] ?? 0;
    }
    bytes += record.length;
    n++;
  }
  const elapsed = Number(now() - first);
  reader.close();
  say({
    read: n,
    bytes,
    elapsedNs: elapsed,
    check,
    ...(latency ? percentiles(samples, Math.min(n, samples.length)) : {}),
  });
}

function socketReader(path: string, count: number, latency: boolean): void {
  const samples = new Float64Array(Math.min(count, 1 << 20));
  const server = createServer((socket: Socket) => {
    let pending: Buffer = Buffer.alloc(0);
    let n = 0;
    let first = 0n;
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let at = 0;
      while (pending.length - at >= 4) {
        const length = pending.readUInt32LE(at);
        if (pending.length - at - 4 < length) break;
        if (n === 0) first = now();
        if (latency && n < samples.length) samples[n] = Number(now() - pending.readBigInt64LE(at + 4));
        bytes += length;
        n++;
        at += 4 + length;
      }
      pending = pending.subarray(at);
      if (n === count) {
        // lastNs: callers that know when the writer started (endToEnd) time the run from
        // the writer's first message to this, as the pub/sub and IPC runs are timed.
        const last = now();
        say({
          read: n,
          bytes,
          elapsedNs: Number(last - first),
          lastNs: String(last),
          ...(latency ? percentiles(samples, n) : {}),
        });
        socket.end();
        server.close();
      }
    });
  });
  server.listen(path, () => say({ ready: true }));
}

async function socketWriter(
  path: string,
  size: number,
  count: number,
  batched: boolean,
  gapUs: number,
): Promise<void> {
  const socket = connect(path);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const frame = Buffer.alloc(4 + Math.max(size, 8), 7);
  frame.writeUInt32LE(size, 0);
  const drain = (): Promise<void> => new Promise((resolve) => socket.once('drain', resolve));
  say({ startNs: String(now()) });
  if (batched) {
    const batch = Buffer.alloc(64 * 1024);
    let used = 0;
    for (let i = 0; i < count; i++) {
      if (used + 4 + size > batch.length) {
        if (!socket.write(Buffer.from(batch.subarray(0, used)))) await drain();
        used = 0;
      }
      frame.copy(batch, used, 0, 4 + size);
      used += 4 + size;
    }
    if (used > 0) socket.write(Buffer.from(batch.subarray(0, used)));
  } else {
    for (let i = 0; i < count; i++) {
      if (gapUs > 0) {
        pause(gapUs);
        frame.writeBigInt64LE(now(), 4);
      }
      // One write per message: its own buffer (the socket may still hold the last one).
      if (!socket.write(Buffer.from(frame.subarray(0, 4 + size)))) await drain();
    }
  }
  socket.end();
  await new Promise((resolve) => socket.once('close', resolve));
}

function ipcReceiver(count: number): void {
  let n = 0;
  let first = 0n;
  let bytes = 0;
  process.on('message', (message: string) => {
    if (n === 0) first = now();
    bytes += message.length;
    n++;
    if (n % 10_000 === 0) process.send?.({ ack: n });
    if (n === count) {
      const last = now();
      say({ read: n, bytes, elapsedNs: Number(last - first), lastNs: String(last) });
      process.disconnect();
    }
  });
  process.send?.({ ready: true });
}

/** The next record of `reader`: spinning on tryRead, or parked on the doorbell (no spin). */
async function next(reader: ReturnType<typeof openJournal>, spin: boolean): Promise<Uint8Array | null> {
  if (spin) {
    for (;;) {
      const record = reader.tryRead();
      if (record !== null || reader.ended) return record;
    }
  }
  return reader.tryRead() ?? (await reader.read());
}

const WARMUP = 1000;

/** Round trips of a 64-byte stamped message through two journals; reports p50/p99 in µs. */
async function journalPing(dir: string, wait: string, count: number): Promise<void> {
  const options = {
    writerId: 1,
    channelId: 1,
    capacity: 72 * (count + WARMUP + 16),
    maxMessageLength: 64,
    timeout: 10_000,
  };
  const ping = createJournal(`${dir}/ping`, options);
  const pong = openJournal(`${dir}/pong`, { waitForMs: 10_000, spinMicros: 0 });
  const payload = new Uint8Array(64);
  const samples = new Float64Array(count);
  for (let i = 0; i < count + WARMUP; i++) {
    const start = now();
    ping.write(payload);
    if ((await next(pong, wait === 'spin')) === null) throw new Error('pong ended early');
    if (i >= WARMUP) samples[i - WARMUP] = Number(now() - start);
  }
  ping.close();
  pong.close();
  say({ read: count, bytes: count * 64, elapsedNs: 1, ...percentiles(samples, count) });
}

async function journalPong(dir: string, wait: string): Promise<void> {
  const ping = openJournal(`${dir}/ping`, { waitForMs: 10_000, spinMicros: 0 });
  const pong = createJournal(`${dir}/pong`, {
    writerId: 2,
    channelId: 2,
    capacity: ping.header.capacity,
    maxMessageLength: 64,
    timeout: 10_000,
  });
  for (;;) {
    const record = await next(ping, wait === 'spin');
    if (record === null) break;
    pong.write(record);
  }
  pong.close();
  ping.close();
}

async function socketPing(path: string, count: number): Promise<void> {
  const socket = connect(path);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.setNoDelay?.(true);
  const frame = Buffer.alloc(68);
  frame.writeUInt32LE(64, 0);
  const samples = new Float64Array(count);
  let received = 0;
  let resolveEcho: () => void = () => {};
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received >= 68) {
      received -= 68;
      resolveEcho();
    }
  });
  for (let i = 0; i < count + WARMUP; i++) {
    const echoed = new Promise<void>((resolve) => (resolveEcho = resolve));
    const start = now();
    socket.write(Buffer.from(frame));
    await echoed;
    if (i >= WARMUP) samples[i - WARMUP] = Number(now() - start);
  }
  socket.end();
  say({ read: count, bytes: count * 64, elapsedNs: 1, ...percentiles(samples, count) });
}

function socketPong(path: string): void {
  const server = createServer((socket: Socket) => {
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
    socket.on('end', () => server.close());
  });
  server.listen(path, () => say({ ready: true }));
}

const num = (i: number): number => Number(args[i]);
switch (role) {
  case 'jw':
    await journalWriter(args[0] ?? '', num(1), num(2), num(3), num(4));
    break;
  case 'jr':
    await journalReader(args[0] ?? '', args[1] ?? 'spin', args[2] === '1');
    break;
  case 'sr':
    socketReader(args[0] ?? '', num(1), args[2] === '1');
    break;
  case 'sw':
    await socketWriter(args[0] ?? '', num(1), num(2), args[3] === '1', num(4));
    break;
  case 'ipc':
    ipcReceiver(num(0));
    break;
  case 'jping':
    await journalPing(args[0] ?? '', args[1] ?? 'spin', num(2));
    break;
  case 'jpong':
    await journalPong(args[0] ?? '', args[1] ?? 'spin');
    break;
  case 'sping':
    await socketPing(args[0] ?? '', num(1));
    break;
  case 'spong':
    socketPong(args[0] ?? '');
    break;
  default:
    process.stderr.write(`unknown role ${role}\n`);
    process.exitCode = 2;
}
