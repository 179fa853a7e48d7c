import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { memoryTransportPair, type Transport } from '@switchyard/wire';
import {
  FrameType,
  HEADER_SIZE,
  PREFACE_SIZE,
  RECORD_LZ4,
  StreamClient,
  StreamFrameTooLargeError,
  StreamRefusedError,
  StreamRemoteError,
  StreamServer,
  type ClientOptions,
  type ServerOptions,
  type Source,
  type SourceFunc,
} from '@switchyard/stream';
import { collect, counter, startPair, str, text } from './helpers.js';

class CodedError extends Error {
  readonly code = 'E_NOPE';
}

test('an error in the source function reaches exactly that request, typed, after its sources', async () => {
  await using pair = await startPair('tcp', async function* (request) {
    if (str(request.body) === 'fail') {
      yield { header: text('before'), frames: [text('a'), text('b')] };
      throw new CodedError('no such thing');
    }
    yield { frames: [text('fine')] };
  });
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const s of pair.client.post(pair.address, text('fail'))) {
        got.push(str(s.header), ...(await collect(s)).map(str));
      }
    })(),
    (e) =>
      e instanceof StreamRemoteError &&
      e.code === 'STREAM_ERR_REMOTE' &&
      e.remoteCode === 'E_NOPE' &&
      e.message === 'no such thing',
  );
  assert.deepEqual(got, ['before', 'a', 'b']);
  // The connection goes on.
  for await (const s of pair.client.post(pair.address, text('ok')))
    assert.deepEqual((await collect(s)).map(str), ['fine']);
  assert.equal(pair.client.connections, 1);
});

test('an error in a frame generator fails that source only; siblings and other requests go on', async () => {
  const fn: SourceFunc = async function* () {
    yield {
      header: text('bad'),
      frames: (function* () {
        yield text('1');
        throw new TypeError('generator broke');
      })(),
    };
    yield { header: text('good'), frames: Array.from({ length: 100 }, (_, i) => counter(i)) };
  };
  await using pair = await startPair('memory', fn);
  const sources: Source[] = [];
  for await (const s of pair.client.post(pair.address, text('x'))) sources.push(s);
  const [bad, good] = sources as [Source, Source];
  const seen: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const f of bad.frames) seen.push(str(f));
    })(),
    (e) => e instanceof StreamRemoteError && e.remoteCode === 'ERROR' && e.message === 'generator broke',
  );
  assert.deepEqual(seen, ['1']);
  assert.equal((await collect(good)).length, 100);
  for await (const s of pair.client.post(pair.address, text('again'))) {
    if (str(s.header) === 'good') assert.equal((await collect(s)).length, 100);
    else await assert.rejects(collect(s), StreamRemoteError);
  }
});

test('a source function that returns no AsyncIterable is a typed error on that request', async () => {
  await using pair = await startPair('tcp', (() => 42) as unknown as SourceFunc);
  await assert.rejects(
    pair.client.post(pair.address, text('x'))[Symbol.asyncIterator]().next(),
    (e) => e instanceof StreamRemoteError && e.remoteCode === 'STREAM_ERR_INVALID_ARGUMENT',
  );
});

/** A client whose transport records the bytes it receives from the server. */
function recordingClient(server: StreamServer, fn: SourceFunc, options: ClientOptions = {}) {
  const received: Uint8Array[] = [];
  const client = new StreamClient({
    ...options,
    dial: () => {
      const [a, b] = memoryTransportPair();
      server.accept(b, fn);
      const spy: Transport = {
        get remoteAddress() {
          return a.remoteAddress;
        },
        get localAddress() {
          return a.localAddress;
        },
        start: (sink) =>
          a.start({
            data: (chunk) => {
              received.push(Buffer.from(chunk));
              sink.data(chunk);
            },
            end: () => sink.end(),
            closed: (e) => sink.closed(e),
          }),
        write: (chunks, done) => a.write(chunks, done),
        pause: () => a.pause(),
        resume: () => a.resume(),
        end: () => a.end(),
        destroy: (e) => a.destroy(e),
      };
      return spy;
    },
  });
  return { client, received };
}

/** The LZ4 bits of every record in the DATA frames of a server→client byte stream. */
function lz4Bits(bytes: Buffer): boolean[] {
  const bits: boolean[] = [];
  let p = PREFACE_SIZE;
  while (p + HEADER_SIZE <= bytes.length) {
    const length = bytes.readUInt32BE(p);
    const type = bytes[p + 4];
    if (type === FrameType.DATA) {
      let q = p + HEADER_SIZE;
      while (q < p + HEADER_SIZE + length) {
        const h = bytes.readUInt32BE(q);
        bits.push((h & RECORD_LZ4) !== 0);
        q += 4 + (h & 0x7fffffff);
      }
    }
    p += HEADER_SIZE + length;
  }
  return bits;
}

async function lz4Run(frames: Uint8Array[], options: ServerOptions) {
  const server = new StreamServer(options);
  const fn: SourceFunc = async function* () {
    yield { frames };
  };
  const { client, received } = recordingClient(server, fn);
  let got: Uint8Array[] = [];
  for await (const s of client.post('memory:x', text('x'))) got = await collect(s);
  await client.close();
  await server.close();
  const bytes = Buffer.concat(received);
  // Records are Buffers (plain or decompressed); compared by their bytes.
  assert.ok(got.every((f) => Buffer.isBuffer(f)));
  return { got: got.map((f) => Buffer.from(f)), bytes: bytes.length, bits: lz4Bits(bytes) };
}

test('LZ4 per frame: flagged in the record header, used only when smaller, transparent to the consumer', async () => {
  const compressible = Array.from({ length: 20 }, (_, i) => Buffer.alloc(4096, 97 + (i % 3)));
  const random = Array.from({ length: 20 }, () => randomBytes(4096));
  const tiny = Array.from({ length: 20 }, () => Buffer.alloc(64, 1));
  const mixed = [...compressible.slice(0, 3), ...random.slice(0, 3), ...tiny.slice(0, 3)];

  const on = await lz4Run(compressible, { useCompression: true });
  assert.deepEqual(on.got, compressible);
  assert.ok(on.bits.length === 20 && on.bits.every(Boolean));
  assert.ok(on.bytes < 20 * 4096 * 0.1, `${on.bytes} bytes on the wire`);

  const off = await lz4Run(compressible, { useCompression: false });
  assert.deepEqual(off.got, compressible);
  assert.ok(off.bits.every((b) => !b));
  assert.ok(off.bytes > 20 * 4096);

  const incompressible = await lz4Run(random, { useCompression: true });
  assert.deepEqual(incompressible.got, random);
  assert.ok(
    incompressible.bits.every((b) => !b),
    'random frames are sent as they are',
  );

  const small = await lz4Run(tiny, { useCompression: true });
  assert.ok(
    small.bits.every((b) => !b),
    'frames under compressionMinBytes are not compressed',
  );

  const both = await lz4Run(mixed, { useCompression: true });
  assert.deepEqual(both.got, mixed);
  assert.deepEqual(both.bits, [true, true, true, false, false, false, false, false, false]);
});

test('a frame above the client maxFrameSize is refused before allocation; the connection fails typed', async () => {
  await using pair = await startPair(
    'tcp',
    async function* () {
      yield { frames: [new Uint8Array(4096)] };
    },
    {},
    { maxFrameSize: 1024 },
  );
  await assert.rejects(
    (async () => {
      for await (const s of pair.client.post(pair.address, text('x'))) await collect(s);
    })(),
    (e) => e instanceof StreamFrameTooLargeError && e.code === 'STREAM_ERR_FRAME_TOO_LARGE',
  );
});

test('a frame above the server maxFrameSize fails that source, typed, and nothing else', async () => {
  await using pair = await startPair(
    'memory',
    async function* () {
      yield { header: text('big'), frames: [text('ok'), new Uint8Array(2048)] };
      yield { header: text('small'), frames: [text('fine')] };
    },
    { maxFrameSize: 1024 },
  );
  const sources: Source[] = [];
  for await (const s of pair.client.post(pair.address, text('x'))) sources.push(s);
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const f of sources[0]!.frames) got.push(str(f));
    })(),
    (e) => e instanceof StreamRemoteError && e.remoteCode === 'STREAM_ERR_FRAME_TOO_LARGE',
  );
  assert.deepEqual(got, ['ok']);
  assert.deepEqual((await collect(sources[1]!)).map(str), ['fine']);
});

test('maxErrorMass: bounded exponential back-off, the hook is called, success resets', async () => {
  const calls: { mass: number; delay: number }[] = [];
  let fail = true;
  let served = 0;
  await using pair = await startPair(
    'tcp',
    async function* () {
      served++;
      if (fail) throw new Error('broken backend');
      yield { frames: [text('ok')] };
    },
    {
      maxErrorMass: 3,
      errorBackoffBaseMs: 20,
      errorBackoffMaxMs: 80,
      onMaxErrorMass: (mass, error, delay) => {
        assert.equal(error.message, 'broken backend');
        calls.push({ mass, delay });
      },
    },
  );
  const post = async () => {
    const started = Date.now();
    try {
      for await (const s of pair.client.post(pair.address, text('x'))) await collect(s);
    } catch (e) {
      assert.ok(e instanceof StreamRemoteError);
    }
    return Date.now() - started;
  };
  const times: number[] = [];
  for (let i = 0; i < 7; i++) times.push(await post());
  assert.deepEqual(calls, [
    { mass: 3, delay: 20 },
    { mass: 4, delay: 40 },
    { mass: 5, delay: 80 },
    { mass: 6, delay: 80 },
    { mass: 7, delay: 80 },
  ]);
  // The requests after the mass was reached waited for the back-off.
  assert.ok(times[3]! >= 15, `4th request took ${times[3]} ms`);
  assert.ok(times[5]! >= 70, `6th request took ${times[5]} ms`);
  assert.equal(pair.server.errorMass, 7);
  fail = false;
  await post();
  assert.equal(pair.server.errorMass, 0);
  assert.equal(served, 8);
});

test('server hooks and diagnostics channels report requests, sources and errors', async () => {
  const events: { name: string; message: unknown }[] = [];
  const names = ['request', 'source', 'error', 'connection'];
  const listeners = names.map((name) => {
    const fn = (message: unknown): void => {
      events.push({ name, message });
    };
    diagnostics.subscribe(`switchyard:stream:${name}`, fn);
    return { name, fn };
  });
  const masterErrors: Error[] = [];
  const chanErrors: Error[] = [];
  try {
    await using pair = await startPair(
      'tcp',
      async function* () {
        yield {
          frames: (function* () {
            yield text('x');
            throw new Error('chan failed');
          })(),
        };
        throw new Error('master failed');
      },
      { onError: (e) => masterErrors.push(e), onChanError: (e) => chanErrors.push(e) },
    );
    const sources: Source[] = [];
    await assert.rejects(async () => {
      for await (const s of pair.client.post(pair.address, text('x'))) sources.push(s);
    }, StreamRemoteError);
    await assert.rejects(collect(sources[0]!), StreamRemoteError);
  } finally {
    for (const { name, fn } of listeners) diagnostics.unsubscribe(`switchyard:stream:${name}`, fn);
  }
  assert.deepEqual(
    masterErrors.map((e) => e.message),
    ['master failed'],
  );
  assert.deepEqual(
    chanErrors.map((e) => e.message),
    ['chan failed'],
  );
  const seen = new Set(events.map((e) => e.name));
  for (const name of names) assert.ok(seen.has(name), `no ${name} event`);
  assert.ok(events.some((e) => e.name === 'request' && (e.message as { side: string }).side === 'server'));
  assert.ok(events.some((e) => e.name === 'request' && (e.message as { side: string }).side === 'client'));
});

test('maxConcurrentRequests: a request over the limit is refused, typed; the others go on', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  await using pair = await startPair(
    'tcp',
    async function* () {
      await gate;
      yield { frames: [text('ok')] };
    },
    { maxConcurrentRequests: 2 },
  );
  const first = [0, 1].map((i) => {
    const posted = pair.client.post(pair.address, text(String(i)));
    return posted[Symbol.asyncIterator]().next();
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  await assert.rejects(
    pair.client.post(pair.address, text('2'))[Symbol.asyncIterator]().next(),
    (e) => e instanceof StreamRefusedError && e.code === 'STREAM_ERR_REFUSED',
  );
  release();
  for (const r of await Promise.all(first))
    assert.deepEqual((await collect(r.value as Source)).map(str), ['ok']);
});

/** Records per DATA frame in a server→client byte stream. */
function dataFrameSizes(bytes: Buffer): number[] {
  const sizes: number[] = [];
  let p = PREFACE_SIZE;
  while (p + HEADER_SIZE <= bytes.length) {
    const length = bytes.readUInt32BE(p);
    if (bytes[p + 4] === FrameType.DATA) {
      let q = p + HEADER_SIZE;
      let n = 0;
      while (q < p + HEADER_SIZE + length) {
        q += 4 + (bytes.readUInt32BE(q) & 0x7fffffff);
        n++;
      }
      sizes.push(n);
    }
    p += HEADER_SIZE + length;
  }
  return sizes;
}

test('a sync source sends its window as DATA frames of at most half of it, every frame in order', async () => {
  const server = new StreamServer();
  const count = 3000;
  const fn: SourceFunc = async function* () {
    yield {
      frames: (function* () {
        for (let i = 0; i < count; i++) {
          const f = Buffer.alloc(64);
          f.writeUInt32BE(i, 0);
          yield f;
        }
      })(),
    };
  };
  const { client, received } = recordingClient(server, fn, { streamWindowFrames: 1024 });
  const got: number[] = [];
  for await (const s of client.post('memory:x', text('x'))) {
    for await (const batch of s.frames.batches()) {
      for (const f of batch) got.push(Buffer.from(f.buffer, f.byteOffset, f.byteLength).readUInt32BE(0));
    }
  }
  await client.close();
  await server.close();
  assert.deepEqual(
    got,
    Array.from({ length: count }, (_, i) => i),
  );
  const sizes = dataFrameSizes(Buffer.concat(received));
  assert.equal(
    sizes.reduce((a, b) => a + b, 0),
    count,
  );
  // A window of 1024 frames: no DATA frame carries more than 512.
  assert.ok(
    sizes.every((n) => n >= 1 && n <= 512),
    `records per DATA frame: ${sizes.join(',')}`,
  );
});

test('a sync frame iterator yielding a non-Uint8Array: the frames before it arrive, then a typed error, and its finally runs', async () => {
  let finallyRan = false;
  await using pair = await startPair('tcp', async function* () {
    yield {
      frames: (function* () {
        try {
          yield text('a');
          yield text('b');
          yield 'not bytes' as unknown as Uint8Array;
          yield text('never');
        } finally {
          finallyRan = true;
        }
      })(),
    };
  });
  const got: string[] = [];
  for await (const s of pair.client.post(pair.address, text('x'))) {
    await assert.rejects(
      (async () => {
        for await (const f of s.frames) got.push(str(f));
      })(),
      (e) => e instanceof StreamRemoteError && e.remoteCode === 'STREAM_ERR_INVALID_ARGUMENT',
    );
  }
  assert.deepEqual(got, ['a', 'b']);
  assert.equal(finallyRan, true);
});
