import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { memoryTransportPair, type Transport } from '@switchyard/wire';
import {
  FrameType,
  StreamClient,
  StreamError,
  createStreamCodec,
  encodedSize,
  type Frame,
  type Source,
} from '@switchyard/stream';
import { eventually, startPair, text } from './helpers.js';

function bytes(frames: readonly Frame[]): Buffer {
  const codec = createStreamCodec({ maxFrameSize: 1 << 20 });
  return Buffer.concat(
    frames.map((f) => {
      const b = new Uint8Array(encodedSize(f));
      codec.encode(f, b);
      return b;
    }),
  );
}

const PREFACE: Frame = { type: FrameType.PREFACE, version: 1, windowBytes: 1 << 20 };

/** A client whose peer is a raw transport end driven by `serve` (the bytes a server would send). */
function rawPeer(serve: (peer: Transport, received: Buffer[]) => void): StreamClient {
  return new StreamClient({
    keepaliveIntervalMs: 0,
    dial: () => {
      const [a, b] = memoryTransportPair();
      const received: Buffer[] = [];
      b.start({
        data: (chunk) => received.push(Buffer.from(chunk)),
        end: () => b.end(),
        closed: () => undefined,
      });
      serve(b, received);
      return a;
    },
  });
}

test('a connection torn in the middle of a DATA frame ends the open iterators with a typed error', async () => {
  const data = bytes([
    { type: FrameType.SOURCE, streamId: 2, requestId: 1, header: text('h') },
    { type: FrameType.DATA, streamId: 2, records: [text('first')], lz4: null, payload: null, count: 1 },
    { type: FrameType.DATA, streamId: 2, records: [Buffer.alloc(1000)], lz4: null, payload: null, count: 1 },
  ]);
  const client = rawPeer((peer) => {
    peer.write([bytes([PREFACE]), data.subarray(0, data.length - 500)], () => {
      setTimeout(() => peer.end(), 20);
    });
  });
  const it = client.post('memory:x', text('x'))[Symbol.asyncIterator]();
  const source = (await it.next()).value as Source;
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const f of source.frames) got.push(Buffer.from(f).toString());
    })(),
    (e) => e instanceof StreamError,
  );
  assert.deepEqual(got, ['first']);
  await assert.rejects(it.next(), (e) => e instanceof StreamError);
  await client.close();
});

test('fuzz: whatever a peer sends after its preface, the client fails typed and never hangs', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc.constantFrom(
            bytes([{ type: FrameType.SOURCE, streamId: 2, requestId: 1, header: text('h') }]),
            bytes([{ type: FrameType.END, streamId: 1 }]),
            bytes([{ type: FrameType.END, streamId: 2 }]),
            bytes([
              { type: FrameType.DATA, streamId: 2, records: [text('d')], lz4: null, payload: null, count: 1 },
            ]),
            bytes([{ type: FrameType.ERROR, streamId: 1, code: 'E', message: 'm' }]),
            bytes([{ type: FrameType.PING, streamId: 0, ack: false, data: new Uint8Array(8) }]),
            bytes([{ type: FrameType.GOAWAY, streamId: 0, lastRequestId: 0, code: 'X', message: '' }]),
          ),
        ),
        { maxLength: 8 },
      ),
      async (chunks) => {
        const client = rawPeer((peer) => {
          peer.write([bytes([PREFACE]), ...chunks], () => setTimeout(() => peer.end(), 5));
        });
        const outcome = await Promise.race([
          (async () => {
            try {
              for await (const s of client.post('memory:x', text('x'))) {
                for await (const _ of s.frames) {
                  // drain
                }
              }
              return 'completed';
            } catch (e) {
              assert.ok(e instanceof StreamError, `untyped ${String(e)}`);
              return 'failed';
            }
          })(),
          new Promise((resolve) => setTimeout(() => resolve('hung'), 3000)),
        ]);
        await client.close();
        assert.notEqual(outcome, 'hung');
      },
    ),
    { numRuns: 60 },
  );
});

test('post accepts AbortSignal.timeout(): the timeout cancels on the wire like any abort', async () => {
  let finished = false;
  await using pair = await startPair('tcp', async function* (request) {
    try {
      yield {
        frames: (async function* () {
          for (let i = 0; ; i++) {
            await new Promise((r) => setTimeout(r, 10));
            yield text(String(i));
          }
        })(),
      };
      await new Promise((r) => request.signal.addEventListener('abort', r));
    } finally {
      finished = true;
    }
  });
  await assert.rejects(
    (async () => {
      for await (const s of pair.client.post(pair.address, text('x'), { signal: AbortSignal.timeout(150) })) {
        for await (const _ of s.frames) {
          // until the timeout
        }
      }
    })(),
    (e) => (e as Error).name === 'TimeoutError',
  );
  await eventually(() => finished, 2000, 'the source function to finish');
});

test('a peer that overruns the granted window is a protocol error: client memory stays bounded', async () => {
  const data: Frame = {
    type: FrameType.DATA,
    streamId: 2,
    records: [text('x')],
    lz4: null,
    payload: null,
    count: 1,
  };
  const client = new StreamClient({
    keepaliveIntervalMs: 0,
    streamWindowFrames: 4,
    dial: () => {
      const [a, b] = memoryTransportPair();
      b.start({ data: () => undefined, end: () => b.end(), closed: () => undefined });
      b.write(
        [
          bytes([PREFACE, { type: FrameType.SOURCE, streamId: 2, requestId: 1, header: text('h') }]),
          ...Array.from({ length: 10 }, () => bytes([data])),
        ],
        () => undefined,
      );
      return a;
    },
  });
  const it = client.post('memory:x', text('x'))[Symbol.asyncIterator]();
  await assert.rejects(
    (async () => {
      const source = (await it.next()).value as Source;
      for await (const _ of source.frames) {
        // the first four are fine
      }
    })(),
    (e) => e instanceof StreamError && e.code === 'STREAM_ERR_PROTOCOL',
  );
  await client.close();
});
