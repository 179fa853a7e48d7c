import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { memoryTransportPair, type Transport } from '@switchyard/wire';
import { StreamClient, StreamServer, type SourceFunc } from '@switchyard/stream';
import { TRANSPORTS, collect, counter, readCounter, startPair, str, text } from './helpers.js';

/** Request body "r:s:n": r sources (named by the body), s … each with n counter frames. */
const fanOut: SourceFunc = async function* (request) {
  const [sources, frames] = str(request.body).split(':').map(Number) as [number, number];
  for (let s = 0; s < sources; s++) {
    yield {
      header: text(`${request.tags.get('id') ?? ''}/${s}`),
      frames: (function* () {
        for (let i = 0; i < frames; i++) yield counter(i);
      })(),
    };
  }
};

for (const kind of TRANSPORTS) {
  describe(`stream over ${kind}`, () => {
    test('many requests, sources and frames share one connection', async () => {
      await using pair = await startPair(kind, fanOut);
      const requests = Array.from({ length: 20 }, async (_, r) => {
        const seen: string[] = [];
        for await (const source of pair.client.post(pair.address, text('3:200'), { tags: { id: `q${r}` } })) {
          const frames = await collect(source);
          assert.deepEqual(
            frames.map(readCounter),
            Array.from({ length: 200 }, (_, i) => i),
          );
          seen.push(str(source.header));
        }
        assert.deepEqual(seen, [`q${r}/0`, `q${r}/1`, `q${r}/2`]);
      });
      await Promise.all(requests);
      assert.equal(pair.client.connections, 1);
      assert.equal(pair.server.connections, 1);
    });

    test('sources interleave: frames of a later source arrive while an earlier one is unread', async () => {
      await using pair = await startPair(kind, fanOut);
      const sources = [];
      for await (const source of pair.client.post(pair.address, text('4:50'))) sources.push(source);
      // All four were announced before any frame was read; read them in reverse order.
      for (const source of sources.reverse()) assert.equal((await collect(source)).length, 50);
    });

    test('batches() yields every frame in order with far fewer awaits', async () => {
      await using pair = await startPair(kind, fanOut);
      let batches = 0;
      const got: number[] = [];
      for await (const source of pair.client.post(pair.address, text('1:20000'))) {
        for await (const batch of source.frames.batches()) {
          batches++;
          for (const f of batch) got.push(readCounter(f));
        }
      }
      assert.equal(got.length, 20000);
      assert.ok(
        got.every((v, i) => v === i),
        'in order',
      );
      assert.ok(batches < 2000, `${batches} batches for 20000 frames`);
    });

    test('the server sees body, tags and remote address; the client sees header and meta', async () => {
      let seen: { body: string; tags: [string, string][]; remote: string } | undefined;
      await using pair = await startPair(kind, async function* (request, ctx) {
        seen = { body: str(request.body), tags: [...request.tags], remote: ctx.remoteAddress };
        assert.equal(request.remoteAddress, ctx.remoteAddress);
        yield { header: text('h'), frames: [text('x')] };
        yield { frames: [] };
      });
      const sources = [];
      for await (const s of pair.client.post(pair.address, text('hello'), {
        tags: { a: '1', bucket: 'k' },
      })) {
        sources.push({
          header: str(s.header),
          meta: s.meta.remoteAddress,
          frames: (await collect(s)).map(str),
        });
      }
      assert.deepEqual(seen?.body, 'hello');
      assert.deepEqual(seen?.tags, [
        ['a', '1'],
        ['bucket', 'k'],
      ]);
      assert.equal(typeof seen?.remote, 'string');
      assert.deepEqual(
        sources.map((s) => [s.header, s.frames]),
        [
          ['h', ['x']],
          ['', []],
        ],
      );
      assert.ok(sources[0]!.meta.length > 0);
    });

    test('async frame generators and empty requests work', async () => {
      await using pair = await startPair(kind, async function* (request) {
        if (request.body.length === 0) return;
        yield {
          frames: (async function* () {
            for (let i = 0; i < 1000; i++) {
              if (i % 100 === 0) await new Promise((r) => setImmediate(r));
              yield counter(i);
            }
          })(),
        };
      });
      const none = [];
      for await (const s of pair.client.post(pair.address, new Uint8Array(0))) none.push(s);
      assert.equal(none.length, 0);
      for await (const s of pair.client.post(pair.address, text('x'))) {
        assert.deepEqual(
          (await collect(s)).map(readCounter),
          Array.from({ length: 1000 }, (_, i) => i),
        );
      }
    });
  });
}

test('the first request leaves in the same write as the preface: no round trip to open a stream', async () => {
  const server = new StreamServer();
  const writes: number[][] = [];
  const client = new StreamClient({
    dial: () => {
      const [a, b] = memoryTransportPair();
      server.accept(b, async function* () {
        yield { frames: [text('ok')] };
      });
      const spy: Transport = {
        get remoteAddress() {
          return a.remoteAddress;
        },
        get localAddress() {
          return a.localAddress;
        },
        start: (sink) => a.start(sink),
        write: (chunks, done) => {
          writes.push(chunks.map((c) => c.length));
          a.write(chunks, done);
        },
        pause: () => a.pause(),
        resume: () => a.resume(),
        end: () => a.end(),
        destroy: (e) => a.destroy(e),
      };
      return spy;
    },
  });
  for await (const s of client.post('memory:x', text('body')))
    assert.deepEqual((await collect(s)).map(str), ['ok']);
  // Preface (12) + REQUEST (10 + 14 + 4) in the first write, before anything came back.
  const first = writes[0]!.reduce((a, b) => a + b, 0);
  assert.ok(first >= 12 + 28, `first write was ${first} bytes`);
  await client.close();
  await server.close();
});

test('1000 concurrent requests on one connection', async () => {
  await using pair = await startPair('tcp', fanOut);
  let frames = 0;
  await Promise.all(
    Array.from({ length: 1000 }, async () => {
      for await (const s of pair.client.post(pair.address, text('1:10'))) {
        const got = await collect(s);
        frames += got.length;
      }
    }),
  );
  assert.equal(frames, 10_000);
  assert.equal(pair.client.connections, 1);
});
