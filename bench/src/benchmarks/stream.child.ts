// The server side of `npm run bench -- stream`, in its own process: a StreamServer, a
// @grpc/grpc-js server-streaming service with raw Buffer serializers, and a @switchyard/wire
// flood server, each on TCP and on a Unix socket. Prints their addresses as one JSON line.
import { once, setMaxListeners } from 'node:events';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { isSupported, listenShmTransport } from '@switchyard/shm';
import { StreamServer } from '@switchyard/stream';
import { ProtocolEngine, lengthPrefixed } from '@switchyard/wire';
import { GRPC_METHOD } from '../lib/grpc-method.js';

export interface StreamJob {
  /** Frames per source. */
  count: number;
  /** Bytes per frame. */
  size: number;
  /** Sources in the request (10 000-stream phase). */
  sources?: number;
  /** Park each source after its first frame until cancelled (memory phase). */
  park?: boolean;
  /** Answer with this process's memory as the header of one source. */
  memory?: boolean;
}

const payloads = new Map<number, Buffer>();
function payload(size: number): Buffer {
  let p = payloads.get(size);
  if (p === undefined) {
    p = Buffer.alloc(size, 0x61);
    payloads.set(size, p);
  }
  return p;
}

async function main(): Promise<void> {
  const dir = tmpdir();
  const tag = `${process.pid}`;
  const unix = (name: string): string => join(dir, `switchyard-bench-${name}-${tag}.sock`);

  // --- @switchyard/stream ---
  const stream = new StreamServer();
  const serve = async function* (request: { body: Uint8Array; signal: AbortSignal }) {
    const job = JSON.parse(Buffer.from(request.body).toString()) as StreamJob;
    if (job.memory === true) {
      yield { header: Buffer.from(JSON.stringify(process.memoryUsage())), frames: [] };
      return;
    }
    const frame = payload(job.size);
    // Every parked source listens to the request's signal: 10 000 listeners on purpose.
    if (job.park === true) setMaxListeners((job.sources ?? 1) + 10, request.signal);
    for (let s = 0; s < (job.sources ?? 1); s++) {
      if (job.park === true) {
        const signal = request.signal;
        yield {
          frames: (async function* () {
            yield frame;
            await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          })(),
        };
      } else {
        yield {
          frames: (function* () {
            for (let i = 0; i < job.count; i++) yield frame;
          })(),
        };
      }
    }
  };
  await stream.listen('tcp://127.0.0.1:0', serve);
  rmSync(unix('stream'), { force: true });
  await stream.listen(`unix:${unix('stream')}`, serve);

  // --- @grpc/grpc-js server streaming, raw Buffer serializers ---
  const grpcServer = new grpc.Server();
  grpcServer.addService(
    { Stream: GRPC_METHOD },
    {
      Stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        void (async () => {
          const job = JSON.parse(call.request.toString()) as StreamJob;
          const frame = payload(job.size);
          for (let i = 0; i < job.count; i++) {
            if (!call.write(frame)) await once(call, 'drain');
          }
          call.end();
        })();
      },
    },
  );
  const bindGrpc = (address: string): Promise<number> =>
    new Promise((resolve, reject) =>
      grpcServer.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) =>
        error === null ? resolve(port) : reject(error),
      ),
    );
  const grpcPort = await bindGrpc('127.0.0.1:0');
  rmSync(unix('grpc'), { force: true });
  await bindGrpc(`unix:${unix('grpc')}`);

  // --- @switchyard/wire flood: a u32 count and u32 size request, then count frames ---
  const wire = new ProtocolEngine<Uint8Array>({
    codec: () => lengthPrefixed(),
    handler: {
      onFrame: (conn, frame) => {
        const view = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
        const count = view.readUInt32BE(0);
        const buf = payload(view.readUInt32BE(4));
        void (async () => {
          for (let i = 0; i < count; i++) {
            if (!conn.send(buf)) await conn.writable;
          }
        })();
      },
    },
  });
  const wireTcp = await wire.listen('tcp://127.0.0.1:0');
  rmSync(unix('wire'), { force: true });
  const wireUnix = await wire.listen(`unix:${unix('wire')}`);

  // --- the same two over @switchyard/shm's duplex (a wire Transport), one connection each:
  // a duplex is one client–server pair, and both clients keep theirs for every run ---
  const shm = isSupported() ? { stream: `sy-bench-stream-${tag}`, wire: `sy-bench-wire-${tag}` } : null;
  /** Destroyed on stop: a closed duplex removes its region from /dev/shm (exit alone left 16 MiB each). */
  const shmTransports: { destroy(): void }[] = [];
  if (shm !== null) {
    // The client comes to shm after TCP and Unix sockets: minutes later.
    const listen = { fallback: 'never', timeoutMs: 30 * 60_000 } as const;
    const failed = (error: unknown): void => {
      process.stderr.write(`shm listen failed: ${String(error)}\n`);
    };
    listenShmTransport(shm.stream, listen).then((t) => {
      shmTransports.push(t);
      stream.accept(t, serve);
    }, failed);
    listenShmTransport(shm.wire, listen).then((t) => {
      shmTransports.push(t);
      wire.manage(t);
    }, failed);
  }

  process.stdout.write(
    JSON.stringify({
      stream: { tcp: stream.addresses[0], unix: stream.addresses[1] },
      grpc: { tcp: `127.0.0.1:${grpcPort}`, unix: `unix:${unix('grpc')}` },
      wire: { tcp: wireTcp.address, unix: wireUnix.address },
      shm,
    }) + '\n',
  );
  const stop = (): void => {
    for (const name of ['stream', 'grpc', 'wire']) rmSync(unix(name), { force: true });
    for (const t of shmTransports) t.destroy();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

await main();
