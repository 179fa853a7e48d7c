// @switchyard/stream server streaming against @grpc/grpc-js server streaming (raw Buffer
// serializers) and against this repo's @switchyard/wire flood, client here and servers in a
// child process (stream.child.js), on loopback TCP and a Unix socket; then 10 000 concurrent
// streams on one connection (memory) and the request round trip.
//
//   npm run bench -- stream [scale]     scale multiplies the frame counts (default 1)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { connectShmTransport } from '@switchyard/shm';
import { StreamClient } from '@switchyard/stream';
import { ProtocolEngine, lengthPrefixed, type Connection } from '@switchyard/wire';
import { GRPC_METHOD } from '../lib/grpc-method.js';
import { progress, report, type Row } from '../lib/report.js';

interface Addresses {
  stream: { tcp: string; unix: string };
  grpc: { tcp: string; unix: string };
  wire: { tcp: string; unix: string };
  /** Duplex names of @switchyard/shm (null where its addon does not load). */
  shm: { stream: string; wire: string } | null;
}

type GrpcStreamClient = grpc.Client & {
  Stream(request: Buffer): grpc.ClientReadableStream<Buffer>;
};

const job = (o: object): Buffer => Buffer.from(JSON.stringify(o));

/** Frames per second and bytes per second of one server-streamed source. */
async function streamRun(
  client: StreamClient,
  address: string,
  count: number,
  size: number,
): Promise<number> {
  const start = performance.now();
  let n = 0;
  for await (const source of client.post(address, job({ count, size }))) {
    // Like the flood's onFrame: the consumer's code sees every frame (and checks its size).
    for await (const batch of source.frames.batches())
      for (const frame of batch) if (frame.length === size) n++;
  }
  if (n !== count) throw new Error(`stream: got ${n} of ${count} frames`);
  return (count * 1000) / (performance.now() - start);
}

async function grpcRun(client: GrpcStreamClient, count: number, size: number): Promise<number> {
  const start = performance.now();
  let n = 0;
  const call = client.Stream(job({ count, size }));
  call.on('data', () => {
    n++;
  });
  await once(call, 'end');
  if (n !== count) throw new Error(`grpc: got ${n} of ${count} frames`);
  return (count * 1000) / (performance.now() - start);
}

/**
 * The wire flood over one persistent connection (an shm duplex is one client–server pair):
 * the same request and the same onFrame counting as `wireRun`, without a connect per run.
 */
class WireFlood {
  readonly #engine: ProtocolEngine<Uint8Array>;
  #conn: Connection<Uint8Array> | null = null;
  #left = 0;
  #size = 0;
  #done: () => void = () => undefined;

  constructor() {
    this.#engine = new ProtocolEngine<Uint8Array>({
      codec: () => lengthPrefixed(),
      handler: {
        onFrame: (_conn, frame) => {
          if (frame.length === this.#size && --this.#left === 0) this.#done();
        },
      },
    });
  }

  async run(name: string, count: number, size: number): Promise<number> {
    this.#conn ??= this.#engine.manage(await connectShmTransport(name, { fallback: 'never' }));
    const finished = new Promise<void>((resolve) => (this.#done = resolve));
    this.#left = count;
    this.#size = size;
    const request = Buffer.alloc(8);
    request.writeUInt32BE(count, 0);
    request.writeUInt32BE(size, 4);
    const start = performance.now();
    this.#conn.send(request);
    await finished;
    return (count * 1000) / (performance.now() - start);
  }

  close(): Promise<void> {
    return this.#engine.close();
  }
}

async function wireRun(address: string, count: number, size: number): Promise<number> {
  let n = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const engine = new ProtocolEngine<Uint8Array>({
    codec: () => lengthPrefixed(),
    handler: {
      onFrame: (_conn, frame) => {
        if (frame.length === size && ++n === count) done();
      },
    },
  });
  const conn = await engine.connect(address);
  const request = Buffer.alloc(8);
  request.writeUInt32BE(count, 0);
  request.writeUInt32BE(size, 4);
  const start = performance.now();
  conn.send(request);
  await finished;
  const rate = (count * 1000) / (performance.now() - start);
  await engine.close();
  return rate;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

export default async function streamBench(args: string[]): Promise<void> {
  const scale = Number(args[0] ?? 1);
  const child = spawn(process.execPath, [new URL('./stream.child.js', import.meta.url).pathname], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  try {
    const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
    const addresses = JSON.parse(line) as Addresses;
    const client = new StreamClient();
    const shm = addresses.shm;
    const shmClient =
      shm === null
        ? null
        : new StreamClient({ dial: () => connectShmTransport(shm.stream, { fallback: 'never' }) });
    const shmFlood = shm === null ? null : new WireFlood();
    const GrpcClient = grpc.makeGenericClientConstructor({ Stream: GRPC_METHOD }, 'Bench');

    const sizes = [
      { size: 64, label: '64 B', stream: 4_000_000, grpc: 150_000, wire: 6_000_000 },
      { size: 1024, label: '1 KiB', stream: 1_000_000, grpc: 100_000, wire: 1_500_000 },
      { size: 65536, label: '64 KiB', stream: 20_000, grpc: 10_000, wire: 20_000 },
    ];
    const transports = shm === null ? (['tcp', 'unix'] as const) : (['tcp', 'unix', 'shm'] as const);
    const runs = 3;
    const bar = progress('stream throughput', transports.length * sizes.length * 3 * runs);
    const rows: Row[] = [];
    for (const transport of transports) {
      // grpc-js has no shm transport: its column is empty there.
      const grpcClient =
        transport === 'shm'
          ? null
          : (new GrpcClient(
              addresses.grpc[transport],
              grpc.credentials.createInsecure(),
            ) as unknown as GrpcStreamClient);
      const streamOnce = (count: number, size: number): Promise<number> =>
        transport === 'shm'
          ? streamRun(shmClient!, 'shm:bench', count, size)
          : streamRun(client, addresses.stream[transport], count, size);
      const grpcOnce = (count: number, size: number): Promise<number> =>
        grpcClient === null ? Promise.resolve(Number.NaN) : grpcRun(grpcClient, count, size);
      const wireOnce = (count: number, size: number): Promise<number> =>
        transport === 'shm'
          ? shmFlood!.run(shm!.wire, count, size)
          : wireRun(addresses.wire[transport], count, size);
      for (const s of sizes) {
        const n = (k: number): number => Math.max(1, Math.round(k * scale));
        const st: number[] = [];
        const gr: number[] = [];
        const wi: number[] = [];
        // A warm-up run of each (JIT, buffer pools, TCP windows), not counted.
        await streamOnce(n(s.stream / 4), s.size);
        await grpcOnce(n(s.grpc / 4), s.size);
        await wireOnce(n(s.wire / 4), s.size);
        // Interleaved runs, medians: the machine is shared and noisy.
        for (let r = 0; r < runs; r++) {
          st.push(await streamOnce(n(s.stream), s.size));
          bar.tick();
          gr.push(await grpcOnce(n(s.grpc), s.size));
          bar.tick();
          wi.push(await wireOnce(n(s.wire), s.size));
          bar.tick();
        }
        const [stream, grpcRate, wire] = [median(st), median(gr), median(wi)];
        const big = s.size >= 65536;
        const unit = big ? 'MB/s' : 'msgs/s';
        const scaleOf = (v: number): number => (big ? Math.round((v * s.size) / 1e6) : Math.round(v));
        rows.push({
          case: `${s.label} frames, ${unit}`,
          transport,
          stream: scaleOf(stream),
          'grpc-js': grpcClient === null ? '—' : scaleOf(grpcRate),
          'wire flood': scaleOf(wire),
          '× grpc-js': grpcClient === null ? '—' : Number((stream / grpcRate).toFixed(2)),
          '% of wire': Math.round((stream / wire) * 100),
          // Every run's ratio (stream / flood of the same round): the spread on a shared machine.
          'runs, % of wire': st.map((v, i) => Math.round((v / wi[i]!) * 100)).join(' / '),
        });
      }
      grpcClient?.close();
    }
    await shmClient?.close();
    await shmFlood?.close();
    bar.stop();
    report(
      'stream',
      'Server streaming one source, client and server in separate processes (after a warm-up, medians of 3)',
      rows,
      [
        'stream: @switchyard/stream, frames read with frames.batches(); grpc-js: @grpc/grpc-js server streaming with raw Buffer serializers; wire flood: @switchyard/wire lengthPrefixed frames decoded one by one into onFrame.',
        'shm: @switchyard/shm duplex (ShmTransport, a wire Transport), one connection kept for every run by both stream and flood; grpc-js has none.',
      ],
    );

    // --- 10 000 concurrent streams on one connection ---
    const streams = 10_000;
    const memBar = progress('10 000 concurrent streams', 3);
    const memoryOf = async (): Promise<NodeJS.MemoryUsage> => {
      for await (const s of client.post(addresses.stream.unix, job({ memory: true, count: 0, size: 0 }))) {
        return JSON.parse(Buffer.from(s.header).toString()) as NodeJS.MemoryUsage;
      }
      throw new Error('no memory answer');
    };
    const fresh = new StreamClient();
    global.gc?.();
    const serverBefore = await memoryOf();
    const clientBefore = process.memoryUsage();
    memBar.tick();
    const opened = performance.now();
    const held: AsyncIterator<unknown>[] = [];
    // One request of 10 000 sources, each parked after its first 64-byte frame: 10 001 streams.
    const it = fresh.post(addresses.stream.unix, job({ count: 1, size: 64, sources: streams, park: true }));
    let firstFrames = 0;
    for await (const source of it) {
      const frames = source.frames[Symbol.asyncIterator]();
      await frames.next();
      firstFrames++;
      held.push(frames);
    }
    if (firstFrames !== streams) throw new Error(`opened ${firstFrames} of ${streams} streams`);
    const openMs = performance.now() - opened;
    const clientDuring = process.memoryUsage();
    const serverDuring = await memoryOf();
    memBar.tick();
    await fresh.close();
    memBar.tick();
    memBar.stop();

    // --- request round trip: post, one source, one 64-byte frame, end ---
    const rtts: number[] = [];
    const grpcRtts: number[] = [];
    const grpcClient = new GrpcClient(
      addresses.grpc.tcp,
      grpc.credentials.createInsecure(),
    ) as unknown as GrpcStreamClient;
    const rounds = Math.max(200, Math.round(3000 * scale));
    const rttBar = progress('round trip', rounds * 2);
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      for await (const s of client.post(addresses.stream.tcp, job({ count: 1, size: 64 }))) {
        for await (const _ of s.frames) {
          // one frame
        }
      }
      rtts.push((performance.now() - t0) * 1000);
      rttBar.tick();
      const t1 = performance.now();
      const call = grpcClient.Stream(job({ count: 1, size: 64 }));
      call.on('data', () => undefined);
      await once(call, 'end');
      grpcRtts.push((performance.now() - t1) * 1000);
      rttBar.tick();
    }
    rttBar.stop();
    grpcClient.close();
    rtts.sort((a, b) => a - b);
    grpcRtts.sort((a, b) => a - b);
    const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10;
    report(
      'stream-concurrency',
      'Concurrency, memory and round trip (TCP for round trip, Unix socket for 10 000 streams)',
      [
        {
          case: `${streams.toLocaleString('en-US')} concurrent streams on one connection: open + first frame each, ms`,
          stream: Math.round(openMs),
          'grpc-js': '—',
        },
        {
          case: 'client RSS growth / heap growth with them open, MB',
          stream: `${mb(clientDuring.rss - clientBefore.rss)} / ${mb(clientDuring.heapUsed - clientBefore.heapUsed)}`,
          'grpc-js': '—',
        },
        {
          case: 'server RSS growth / heap growth with them open, MB',
          stream: `${mb(serverDuring.rss - serverBefore.rss)} / ${mb(serverDuring.heapUsed - serverBefore.heapUsed)}`,
          'grpc-js': '—',
        },
        {
          case: 'request round trip (1 source, 1 × 64 B frame) p50 / p99, µs',
          stream: `${Math.round(percentile(rtts, 50))} / ${Math.round(percentile(rtts, 99))}`,
          'grpc-js': `${Math.round(percentile(grpcRtts, 50))} / ${Math.round(percentile(grpcRtts, 99))}`,
        },
      ],
    );
    await client.close();
  } finally {
    child.stdin.end();
    child.kill('SIGTERM');
  }
}
