import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  INSUFFICIENT_BUFFER,
  json,
  lengthPrefixed,
  lines,
  WireError,
  type Codec,
  type Decoded,
  type FrameWindow,
  type Incomplete,
} from '@switchyard/wire';
import { cut, scripted } from './helpers/feed.js';

const HEADERS = ['u32be', 'u16be', 'varint'] as const;

/** Encodes frames back to back with the codec itself (growing the buffer as needed). */
function encodeAll<F>(codec: Codec<F>, frames: readonly F[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of frames) {
    let size = 16;
    for (;;) {
      const buf = new Uint8Array(size);
      const n = codec.encode(f, buf);
      if (n !== INSUFFICIENT_BUFFER) {
        parts.push(buf.subarray(0, n));
        break;
      }
      size *= 2;
    }
  }
  return Buffer.concat(parts);
}

const bytesArb = fc.uint8Array({ maxLength: 600 });

for (const header of HEADERS) {
  test(`lengthPrefixed ${header}: any frames cut into any chunks decode to the same frames`, () => {
    fc.assert(
      fc.property(
        fc.array(bytesArb, { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.integer({ min: 64, max: 4096 }),
        (frames, cuts, bufferSize) => {
          const {
            transport,
            frames: got,
            errors,
          } = scripted(() => lengthPrefixed({ header }), {
            initialBufferSize: bufferSize,
          });
          const bytes = encodeAll(lengthPrefixed({ header }), frames);
          for (const chunk of cut(bytes, cuts)) transport.feed(chunk);
          assert.deepEqual(errors, []);
          assert.deepEqual(
            got.map((f) => Buffer.from(f)),
            frames.map((f) => Buffer.from(f)),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  test(`lengthPrefixed ${header}: random bytes give frames or a typed error, never a throw`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (bytes, cuts) => {
          const s = scripted(() => lengthPrefixed({ header, maxFrameSize: 1000 }), {
            initialBufferSize: 256,
          });
          for (const chunk of cut(bytes, cuts)) s.transport.feed(chunk);
          s.transport.sink?.end();
          for (const e of s.errors) {
            assert.ok(e instanceof WireError);
            assert.ok(
              ['WIRE_ERR_PROTOCOL', 'WIRE_ERR_FRAME_TOO_LARGE', 'WIRE_ERR_TRUNCATED_FRAME'].includes(e.code),
            );
          }
          assert.ok(s.errors.length <= 1, 'at most one error per connection');
          assert.equal(s.engine.poolStats().leasedBytes <= 4096, true, 'no large allocation');
        },
      ),
      { numRuns: 300 },
    );
  });
}

test("lengthPrefixed frames: 'window': one reused window per codec, same bytes as views, and sendable", () => {
  fc.assert(
    fc.property(
      fc.array(bytesArb, { maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (frames, cuts) => {
        const seen: Buffer[] = [];
        let window: FrameWindow | undefined;
        const s = scripted(() => lengthPrefixed({ frames: 'window' }), { initialBufferSize: 128 });
        const codec = lengthPrefixed({ frames: 'window' });
        const bytes = encodeAll(lengthPrefixed(), frames);
        // Decode by hand through decodeAt, as the engine does, checking the window is reused.
        let p = 0;
        while (p < bytes.length) {
          const r = codec.decodeAt?.(bytes, p, bytes.length) as Decoded<FrameWindow>;
          if (window !== undefined) assert.equal(r.frame, window, 'the same window object every time');
          window = r.frame;
          seen.push(Buffer.from(r.frame.buffer.subarray(r.frame.offset, r.frame.offset + r.frame.length)));
          p += r.bytesRead;
        }
        assert.deepEqual(
          seen,
          frames.map((f) => Buffer.from(f)),
        );
        for (const chunk of cut(bytes, cuts)) s.transport.feed(chunk);
        assert.equal(s.frames.length, frames.length);
        assert.deepEqual(s.errors, []);
        // A window (any { buffer, offset, length }) encodes as its payload.
        const out = new Uint8Array(64);
        const n = codec.encode({ buffer: Uint8Array.of(9, 1, 2, 3, 9), offset: 1, length: 3 }, out);
        assert.deepEqual([...out.subarray(0, n as number)], [0, 0, 0, 3, 1, 2, 3]);
      },
    ),
    { numRuns: 100 },
  );
  assert.throws(() => lengthPrefixed({ frames: 'slices' as 'window' }), /"frames"/);
});

test('lengthPrefixed: header layouts, limits and views', () => {
  const u32 = lengthPrefixed();
  const buf = new Uint8Array(16);
  assert.equal(u32.encode(Uint8Array.of(1, 2, 3), buf), 7);
  assert.deepEqual([...buf.subarray(0, 7)], [0, 0, 0, 3, 1, 2, 3]);
  assert.equal(u32.encode(new Uint8Array(13), buf), INSUFFICIENT_BUFFER);
  const u16 = lengthPrefixed({ header: 'u16be' });
  assert.equal(u16.encode(Uint8Array.of(9), buf), 3);
  assert.deepEqual([...buf.subarray(0, 3)], [0, 1, 9]);
  const varint = lengthPrefixed({ header: 'varint' });
  const big = new Uint8Array(300);
  const out = new Uint8Array(400);
  assert.equal(varint.encode(big, out), 302);
  assert.deepEqual([...out.subarray(0, 2)], [0xac, 0x02]);
  // Incomplete says how many bytes the frame needs in total.
  const r = u32.decode(Uint8Array.of(0, 0, 1, 0, 5)) as Incomplete;
  assert.equal(r.incomplete, true);
  assert.equal(r.bytesNeeded, 260);
  // A declared size over the limit is refused from the header alone.
  assert.throws(() => lengthPrefixed({ maxFrameSize: 10 }).decode(Uint8Array.of(0, 0, 0, 11)), {
    code: 'WIRE_ERR_FRAME_TOO_LARGE',
  });
  assert.throws(() => lengthPrefixed({ maxFrameSize: 10 }).encode(new Uint8Array(11), out), {
    code: 'WIRE_ERR_FRAME_TOO_LARGE',
  });
  assert.throws(() => varint.decode(Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x01)), {
    code: 'WIRE_ERR_PROTOCOL',
  });
  // Views alias the buffer; copies do not.
  const src = Uint8Array.of(0, 0, 0, 2, 7, 8);
  const view = (u32.decode(src) as Decoded<Uint8Array>).frame;
  const copy = (lengthPrefixed({ copy: true }).decode(src) as Decoded<Uint8Array>).frame;
  src[4] = 99;
  assert.equal(view[0], 99);
  assert.equal(copy[0], 7);
  assert.throws(() => lengthPrefixed({ header: 'u8' as 'u16be' }), { code: 'WIRE_ERR_INVALID_ARGUMENT' });
  assert.throws(() => lengthPrefixed({ header: 'u16be', maxFrameSize: 70000 }), /maxFrameSize/);
});

const lineArb = fc
  .string({ unit: 'grapheme', maxLength: 80 })
  .filter((s) => !s.includes('\n') && !s.endsWith('\r'));

test('lines: any lines cut into any chunks decode to the same lines', () => {
  fc.assert(
    fc.property(fc.array(lineArb, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 40 }), (ls, cuts) => {
      const { transport, frames, errors } = scripted(() => lines(), { initialBufferSize: 64 });
      for (const chunk of cut(encodeAll(lines(), ls), cuts)) transport.feed(chunk);
      assert.deepEqual(errors, []);
      assert.deepEqual(frames, ls);
    }),
    { numRuns: 300 },
  );
});

test('lines: CRLF, limits and invalid UTF-8', () => {
  const codec = lines({ maxLineLength: 8 });
  assert.equal((codec.decode(Buffer.from('hi\r\nnext')) as Decoded<string>).frame, 'hi');
  assert.equal((codec.decode(Buffer.from('hi\r\nnext')) as Decoded<string>).bytesRead, 4);
  assert.equal((codec.decode(Buffer.from('partial')) as Incomplete).incomplete, true);
  assert.throws(() => codec.decode(Buffer.from('way too long a line')), { code: 'WIRE_ERR_FRAME_TOO_LARGE' });
  assert.throws(() => codec.decode(Uint8Array.of(0xff, 0xfe, 0x0a)), { code: 'WIRE_ERR_PROTOCOL' });
  assert.throws(() => codec.encode('a\nb', new Uint8Array(10)), { code: 'WIRE_ERR_INVALID_ARGUMENT' });
  assert.equal(codec.encode('abcdef', new Uint8Array(4)), INSUFFICIENT_BUFFER);
  const buf = new Uint8Array(10);
  assert.equal(codec.encode('é', buf), 3);
  assert.deepEqual([...buf.subarray(0, 3)], [0xc3, 0xa9, 0x0a]);
});

test('lines: random bytes give lines or a typed error, never a throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
      const s = scripted(() => lines({ maxLineLength: 500 }), { initialBufferSize: 128 });
      for (const chunk of cut(bytes, cuts)) s.transport.feed(chunk);
      s.transport.sink?.end();
      for (const e of s.errors) {
        assert.ok(
          ['WIRE_ERR_PROTOCOL', 'WIRE_ERR_FRAME_TOO_LARGE', 'WIRE_ERR_TRUNCATED_FRAME'].includes(e.code),
        );
      }
      assert.ok(s.errors.length <= 1);
    }),
    { numRuns: 300 },
  );
});

test('json over lines and over lengthPrefixed: any values round-trip through any chunking', () => {
  const valueArb = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
  for (const make of [() => json(), () => json(lengthPrefixed({ header: 'varint' }), { bytes: true })]) {
    fc.assert(
      fc.property(
        fc.array(valueArb, { maxLength: 10 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (values, cuts) => {
          const { transport, frames, errors } = scripted(make, { initialBufferSize: 64 });
          for (const chunk of cut(encodeAll(make(), values), cuts)) transport.feed(chunk);
          assert.deepEqual(errors, []);
          assert.deepEqual(frames, values);
        },
      ),
      { numRuns: 150 },
    );
  }
  assert.throws(() => json().decode(Buffer.from('{nope\n')), { code: 'WIRE_ERR_PROTOCOL' });
  assert.throws(() => json().encode(undefined, new Uint8Array(10)), { code: 'WIRE_ERR_INVALID_ARGUMENT' });
});
