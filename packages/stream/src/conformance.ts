/**
 * The stream conformance suite: what must hold for @switchyard/stream on any
 * `@switchyard/wire` transport. Run it with a factory of connected transport pairs (the same
 * `MakeTransportPair` wire's `transportConformance` takes); this package runs it on the
 * in-memory pair, TCP and Unix sockets, and a new transport (the shm duplex) runs it too.
 */
import assert from 'node:assert/strict';
import type { MakeTransportPair, TransportPair } from '@switchyard/wire';
import { StreamClient } from './client.js';
import type { Source } from './client-session.js';
import { StreamRemoteError } from './errors.js';
import type { ClientOptions, ServerOptions } from './options.js';
import { StreamServer } from './server.js';
import type { SourceFunc } from './server-session.js';

interface Rig {
  server: StreamServer;
  client: StreamClient;
}

function counter(i: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(i);
  return b;
}

async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Registers the stream conformance tests (node:test) for the transports `makePair` makes. */
export async function streamConformance(label: string, makePair: MakeTransportPair): Promise<void> {
  const { describe, test } = await import('node:test');
  const pairs: TransportPair[] = [];

  const rig = async (
    source: SourceFunc,
    serverOptions: ServerOptions = {},
    clientOptions: ClientOptions = {},
  ): Promise<Rig & AsyncDisposable> => {
    const server = new StreamServer(serverOptions);
    const client = new StreamClient({
      ...clientOptions,
      dial: async () => {
        const pair = await makePair();
        pairs.push(pair);
        server.accept(pair.b, source);
        return pair.a;
      },
    });
    return {
      server,
      client,
      async [Symbol.asyncDispose]() {
        await client.close();
        await server.close();
        for (const p of pairs.splice(0)) await p.close?.();
      },
    };
  };

  void describe(`stream conformance: ${label}`, { timeout: 60_000 }, () => {
    test('requests, sources and frames multiplexed on one connection', async () => {
      await using r = await rig(async function* (request) {
        const n = Buffer.from(request.body).readUInt32BE(0);
        for (let s = 0; s < 3; s++) {
          yield {
            header: counter(s),
            frames: (function* () {
              for (let i = 0; i < n; i++) yield counter(i);
            })(),
          };
        }
      });
      await Promise.all(
        Array.from({ length: 10 }, async (_, q) => {
          const n = 100 + q * 50;
          let sources = 0;
          for await (const source of r.client.post('memory:conformance', counter(n))) {
            let i = 0;
            for await (const batch of source.frames.batches()) {
              for (const f of batch) assert.equal(Buffer.from(f).readUInt32BE(0), i++);
            }
            assert.equal(i, n);
            sources++;
          }
          assert.equal(sources, 3);
        }),
      );
      assert.equal(r.client.connections, 1);
    });

    test('a consumer that stops pulling stops the producer at its window', async () => {
      let produced = 0;
      await using r = await rig(
        async function* () {
          yield {
            frames: (function* () {
              for (;;) {
                produced++;
                yield new Uint8Array(100);
              }
            })(),
          };
        },
        {},
        { streamWindowFrames: 32 },
      );
      const it = r.client.post('memory:conformance', new Uint8Array(0))[Symbol.asyncIterator]();
      const source = (await it.next()).value as Source;
      const frames = source.frames[Symbol.asyncIterator]();
      await frames.next();
      await until(() => produced >= 32, 'the window to fill');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(produced <= 33, `produced ${produced} with a window of 32`);
      await frames.return?.();
      await it.return?.();
    });

    test('break cancels on the wire and finishes the server generators', async () => {
      let finished = 0;
      await using r = await rig(async function* (request) {
        try {
          yield {
            frames: (async function* () {
              try {
                for (let i = 0; ; i++) {
                  if (i % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
                  yield counter(i);
                }
              } finally {
                finished++;
              }
            })(),
          };
          await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
        } finally {
          finished++;
        }
      });
      for await (const source of r.client.post('memory:conformance', new Uint8Array(0))) {
        let n = 0;
        for await (const _ of source.frames) if (++n === 100) break;
        break;
      }
      await until(() => finished === 2, 'both generators to finish');
    });

    test('errors reach exactly their request or source, typed; the connection goes on', async () => {
      await using r = await rig(async function* (request) {
        if (request.body.length === 0) {
          yield {
            frames: (function* () {
              yield counter(1);
              throw Object.assign(new Error('frames failed'), { code: 'E_FRAMES' });
            })(),
          };
          throw Object.assign(new Error('sources failed'), { code: 'E_SOURCES' });
        }
        yield { frames: [counter(7)] };
      });
      const sources: Source[] = [];
      await assert.rejects(
        (async () => {
          for await (const s of r.client.post('memory:conformance', new Uint8Array(0))) sources.push(s);
        })(),
        (e) =>
          e instanceof StreamRemoteError && e.remoteCode === 'E_SOURCES' && e.message === 'sources failed',
      );
      await assert.rejects(
        (async () => {
          for await (const _ of sources[0]!.frames) {
            // one frame, then the error
          }
        })(),
        (e) => e instanceof StreamRemoteError && e.remoteCode === 'E_FRAMES',
      );
      for await (const s of r.client.post('memory:conformance', new Uint8Array(1))) {
        for await (const f of s.frames) assert.equal(Buffer.from(f).readUInt32BE(0), 7);
      }
      assert.equal(r.client.connections, 1);
    });

    test('LZ4 frames round-trip', async () => {
      const frames = [Buffer.alloc(10_000, 1), Buffer.from('short'), Buffer.alloc(70_000, 2)];
      await using r = await rig(
        async function* () {
          yield { frames };
        },
        { useCompression: true },
      );
      for await (const s of r.client.post('memory:conformance', new Uint8Array(0))) {
        const got: Uint8Array[] = [];
        for await (const f of s.frames) got.push(f);
        assert.deepEqual(
          got.map((g) => Buffer.from(g)),
          frames,
        );
      }
    });
  });
}
