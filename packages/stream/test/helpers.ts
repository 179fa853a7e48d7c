import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { memoryTransportPair } from '@switchyard/wire';
import {
  StreamClient,
  StreamServer,
  type ClientOptions,
  type ServerOptions,
  type Source,
  type SourceFunc,
} from '@switchyard/stream';
import { makeTempDir } from '@switchyard/testkit';

export type TransportKind = 'memory' | 'tcp' | 'unix';
export const TRANSPORTS: readonly TransportKind[] = ['memory', 'tcp', 'unix'];

export interface Pair extends AsyncDisposable {
  server: StreamServer;
  client: StreamClient;
  address: string;
}

/** A server serving `source` and a client reaching it over `kind`. */
export async function startPair(
  kind: TransportKind,
  source: SourceFunc,
  serverOptions: ServerOptions = {},
  clientOptions: ClientOptions = {},
): Promise<Pair> {
  const server = new StreamServer(serverOptions);
  let client: StreamClient;
  let address: string;
  let dir: ({ path: string } & Disposable) | undefined;
  if (kind === 'memory') {
    client = new StreamClient({
      ...clientOptions,
      dial: () => {
        const [a, b] = memoryTransportPair();
        server.accept(b, source);
        return a;
      },
    });
    address = 'memory:test';
  } else {
    if (kind === 'tcp') await server.listen('tcp://127.0.0.1:0', source);
    else {
      dir = makeTempDir('switchyard-stream-');
      await server.listen(`unix:${join(dir.path, 's.sock')}`, source);
    }
    client = new StreamClient(clientOptions);
    address = server.address;
  }
  return {
    server,
    client,
    address,
    async [Symbol.asyncDispose]() {
      await client.close();
      await server.close();
      dir?.[Symbol.dispose]();
    },
  };
}

/** Frames `[0, n)` as 4-byte big-endian counters. */
export function counter(i: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(i);
  return b;
}

export function readCounter(frame: Uint8Array): number {
  return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).readUInt32BE(0);
}

export async function collect(source: Source): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const f of source.frames) out.push(f);
  return out;
}

/** Polls `check` until it is true or `ms` pass. */
export async function eventually(check: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export const text = (s: string): Uint8Array => Buffer.from(s);
export const str = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString();
