// The processes of the shm pub/sub benchmark (see shm.ts). One JSON line on stdout reports.
//   pub <name> <dir> <size> <count> <send|loan> <blockSize> <blockCount> <ringDepth> [inlineMaxBytes|default]
//        publisher ('block' policy: nothing is lost); waits for "go" on stdin
//   sub <name> <dir> <count> <spin|adaptive> [idleMicros]   subscriber: reads in place (drain),
//        touches first and last byte; after an empty poll, waits idleMicros (busy) and polls
//        again; nothing then either: waits for one message (recvSync 'spin', or recv 'adaptive')
//   pong <name> <dir> <spin|parked>            ShmChannel server: echoes every message
//   ping <name> <dir> <spin|parked> <count>    ShmChannel client: 64 B round trips, reports p50/p99
import { createInterface } from 'node:readline';
import { Publisher, ShmChannel, Subscriber, type Sample } from '@switchyard/shm';

const [role = '', name = '', dir = '', ...args] = process.argv.slice(2);
const say = (message: object): void => void process.stdout.write(JSON.stringify(message) + '\n');
const now = (): bigint => process.hrtime.bigint();

async function waitForGo(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) if (line === 'go') break;
  lines.close();
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Ring full: sleep 20 µs (a futex wait) so a subscriber sharing the core (2 cores, other
 * load) gets to run instead of a publisher polling. Every `trySend`/`tryLoan` while the ring
 * is full may read the subscriber's position, so retrying in a tight loop would also pull
 * that cache line away from the subscriber, which writes it as it reads. With a deep ring the
 * subscriber has thousands of messages to read meanwhile. */
function backOff(): void {
  Atomics.wait(sleeper, 0, 0, 0.02);
}

/**
 * Busy-waits `micros` touching no shared memory: a subscriber that found nothing lets a
 * batch build up before it looks again (sub's idleMicros). Polling right behind the
 * publisher slows it down: every look, and the reading core's prefetcher running ahead of
 * it, takes the cache lines the publisher is about to write, and its next commit (a locked
 * store) waits for them to come back. Throughput only: the round-trip rows do not wait.
 */
function idle(micros: number): void {
  const until = performance.now() + micros / 1000;
  while (performance.now() < until);
}

async function publish(): Promise<void> {
  const [size, count, how, blockSize, blockCount, ringDepth, inlineMaxBytes = 'default'] = args;
  const n = Number(count);
  const length = Number(size);
  const publisher = Publisher.create(name, {
    dir,
    blockSize: Number(blockSize),
    blockCount: Number(blockCount),
    ringDepth: Number(ringDepth),
    slowSubscriber: 'block',
    staleTimeoutMs: 30_000,
    // 'default': left to the package (PUBSUB_DEFAULTS.inlineMaxBytes).
    ...(inlineMaxBytes === 'default' ? {} : { inlineMaxBytes: Number(inlineMaxBytes) }),
  });
  say({ created: true });
  await waitForGo();
  const payload = new Uint8Array(length).fill(7);
  const cpu0 = process.cpuUsage();
  const start = now();
  say({ startNs: String(start) });
  let full = 0;
  if (how === 'send') {
    for (let i = 0; i < n;) {
      // One call per message: false when the ring is full (the subscriber is behind).
      if (publisher.trySend(payload)) i++;
      else {
        full++;
        backOff();
      }
    }
  } else {
    // Born in shared memory: the message is written in place (here: its first and last
    // byte stamped), nothing is copied on the publisher side.
    for (let i = 0; i < n;) {
      // One call per message: null when the ring or the pool is full.
      const loan = publisher.tryLoan();
      if (loan === null) {
        full++;
        backOff();
        continue;
      }
      const bytes = loan.bytes;
      bytes[0] = i & 0xff;
      bytes[length - 1] = i & 0xff;
      loan.publish(length);
      i++;
    }
  }
  const elapsed = Number(now() - start);
  const cpu = process.cpuUsage(cpu0);
  say({
    published: n,
    full,
    publisherMsgsPerSec: (n * 1e9) / elapsed,
    cpuMicros: cpu.user + cpu.system,
    stats: publisher.stats,
  });
  // Keep the region until the subscriber has read everything.
  for await (const line of createInterface({ input: process.stdin })) if (line === 'close') break;
  publisher.close();
}

async function subscribe(): Promise<void> {
  const [count, wait, idleMicros = '0'] = args;
  const idleFor = Number(idleMicros);
  const n = Number(count);
  const subscriber = Subscriber.open(name, { dir, timeoutMs: 10_000, from: 'oldest', spinMicros: 20 });
  say({ ready: true });
  let read = 0;
  let bytes = 0;
  let touched = 0;
  let cpu0: NodeJS.CpuUsage | undefined;
  // Batches: drain() hands out every message there, in place (inline ones: the subscriber's
  // own copy), no Sample and no release per message.
  const take = (view: Uint8Array): void => {
    touched += (view[0] as number) + (view[view.length - 1] as number);
    bytes += view.length;
  };
  let idled = false;
  while (read < n) {
    const got = subscriber.drain(take);
    if (got > 0) {
      idled = false;
      read += got;
      cpu0 ??= process.cpuUsage();
      continue;
    }
    // Nothing there: let a batch build up before the next look (idleMicros); nothing then
    // either, wait for one message (spinning, or adaptive: spin, then park).
    if (idleFor > 0 && !idled) {
      idle(idleFor);
      idled = true;
      continue;
    }
    idled = false;
    const sample =
      wait === 'spin' ? subscriber.recvSync({ wait: 'spin' }) : await subscriber.recv({ wait: 'adaptive' });
    cpu0 ??= process.cpuUsage();
    take(sample.bytes);
    sample.release();
    read++;
  }
  const lastNs = now();
  const cpu = process.cpuUsage(cpu0);
  say({
    read,
    bytes,
    lastNs: String(lastNs),
    elapsedNs: 1,
    touched,
    missed: subscriber.missed,
    cpuMicros: cpu.user + cpu.system,
  });
  subscriber.close();
}

function percentiles(samples: Float64Array, n: number): { p50: number; p99: number } {
  const sorted = samples.subarray(0, n).sort();
  const at = (q: number): number => (sorted[Math.min(n - 1, Math.floor(q * n))] ?? 0) / 1000;
  return { p50: at(0.5), p99: at(0.99) };
}

/** Spinning: a synchronous loop (no promise per message); parked: `recv`, which parks. */
function receiveSpinning(channel: ShmChannel): Sample {
  for (;;) {
    const sample = channel.tryRecv();
    if (sample !== null) return sample;
  }
}

async function pong(): Promise<void> {
  const [wait = 'spin'] = args;
  const config = { dir, blockSize: 64, blockCount: 64, ringDepth: 32 };
  const options = { spinMicros: wait === 'spin' ? 20 : 0 };
  const channel = await ShmChannel.listen(name, config, 10_000, options);
  for (;;) {
    let sample: Sample;
    try {
      sample = wait === 'spin' ? receiveSpinning(channel) : await channel.recv({ wait: 'adaptive' });
    } catch {
      break; // the client closed: done
    }
    channel.send(sample.bytes);
    sample.release();
  }
  channel.close();
}

async function ping(): Promise<void> {
  const [wait = 'spin', count] = args;
  const n = Number(count);
  const config = { dir, blockSize: 64, blockCount: 64, ringDepth: 32 };
  const channel = await ShmChannel.connect(name, config, 10_000, { spinMicros: wait === 'spin' ? 20 : 0 });
  const payload = new Uint8Array(64).fill(1);
  const samples = new Float64Array(n);
  const warmup = Math.min(1000, n >> 2);
  for (let i = 0; i < n + warmup; i++) {
    const t0 = now();
    channel.send(payload);
    const reply = wait === 'spin' ? receiveSpinning(channel) : await channel.recv({ wait: 'adaptive' });
    const t1 = now();
    reply.release();
    if (i >= warmup) samples[i - warmup] = Number(t1 - t0);
  }
  say({ read: n, bytes: n * 64, elapsedNs: 1, ...percentiles(samples, n) });
  channel.close();
}

switch (role) {
  case 'pub':
    await publish();
    break;
  case 'sub':
    await subscribe();
    break;
  case 'pong':
    await pong();
    break;
  case 'ping':
    await ping();
    break;
  default:
    throw new Error(`unknown role ${role}`);
}
process.exit(0);
