import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { INSUFFICIENT_BUFFER, type Decoded, type Incomplete } from '@switchyard/wire';
import {
  FrameType,
  HEADER_SIZE,
  PAYLOAD_ALLOWANCE,
  PREFACE_SIZE,
  RECORD_LZ4,
  StreamError,
  StreamFrameTooLargeError,
  StreamProtocolError,
  createStreamCodec,
  encodedSize,
  type Frame,
} from '@switchyard/stream';

const MAX = 1024;

function encode(frames: readonly Frame[]): Uint8Array {
  const codec = createStreamCodec({ maxFrameSize: MAX });
  const parts = frames.map((f) => {
    const buf = new Uint8Array(encodedSize(f));
    const n = codec.encode(f, buf);
    assert.equal(n, buf.length);
    return buf;
  });
  return Buffer.concat(parts);
}

const preface: Frame = { type: FrameType.PREFACE, version: 1, windowBytes: 65536 };

function isIncomplete(r: Decoded<Frame> | Incomplete): r is Incomplete {
  return 'incomplete' in r;
}

/** Decodes everything in `bytes`, delivered in the given chunk sizes; frames are deep-copied. */
function decodeAll(bytes: Uint8Array, chunks: readonly number[] = [bytes.length]): unknown[] {
  const codec = createStreamCodec({ maxFrameSize: MAX });
  const out: unknown[] = [];
  let buffered = Buffer.alloc(0);
  let pos = 0;
  for (const size of [...chunks, bytes.length]) {
    const next = bytes.subarray(pos, Math.min(bytes.length, pos + size));
    pos += next.length;
    buffered = Buffer.concat([buffered, next]);
    for (;;) {
      const r = codec.decode(buffered);
      if (isIncomplete(r)) {
        if (r.bytesNeeded !== undefined) assert.ok(r.bytesNeeded > buffered.length);
        break;
      }
      out.push(plain(r.frame));
      buffered = buffered.subarray(r.bytesRead);
    }
    if (pos >= bytes.length) break;
  }
  assert.equal(buffered.length, 0, 'bytes left over');
  return out;
}

/** A frame as plain data (views copied, Maps as entries) for deepEqual. */
function plain(frame: Frame): unknown {
  const conv = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return [...v];
    if (v instanceof Map) return [...(v as Map<string, string>)];
    if (Array.isArray(v)) return v.map(conv);
    return v;
  };
  return Object.fromEntries(Object.entries(frame).map(([k, v]) => [k, conv(v)]));
}

function dataFrame(streamId: number, records: Uint8Array[]): Frame {
  return { type: FrameType.DATA, streamId, records, lz4: null, payload: null, count: records.length };
}

test('every frame type round-trips', () => {
  const frames: Frame[] = [
    preface,
    {
      type: FrameType.REQUEST,
      streamId: 1,
      sourceWindow: 128,
      frameWindow: 1024,
      byteWindow: 1 << 20,
      tags: new Map([
        ['bucket', 'k1'],
        ['ü', 'ß'],
      ]),
      body: Buffer.from('body'),
    },
    { type: FrameType.SOURCE, streamId: 2, requestId: 1, header: Buffer.from('hdr') },
    dataFrame(2, [Buffer.from('a'), Buffer.from(''), Buffer.from('ccc')]),
    { type: FrameType.END, streamId: 2 },
    { type: FrameType.ERROR, streamId: 1, code: 'E_BAD', message: 'it went wrong' },
    { type: FrameType.CANCEL, streamId: 4, reason: 'consumer stopped' },
    { type: FrameType.CREDIT, streamId: 0, frames: 0, bytes: 4096 },
    { type: FrameType.PING, streamId: 0, ack: true, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) },
    { type: FrameType.GOAWAY, streamId: 0, lastRequestId: 7, code: 'STREAM_ERR_CLOSED', message: 'bye' },
  ];
  const decoded = decodeAll(encode(frames));
  assert.equal(decoded.length, frames.length);
  const data = decoded[3] as { type: number; count: number; payload: number[] };
  assert.equal(data.type, FrameType.DATA);
  assert.equal(data.count, 3);
  // Record headers: u32 length each, no LZ4 bit.
  assert.deepEqual(data.payload, [0, 0, 0, 1, 97, 0, 0, 0, 0, 0, 0, 0, 3, 99, 99, 99]);
  const expected = frames.map((f) => plain(f)) as Record<string, unknown>[];
  expected[3] = { ...expected[3], records: null, payload: data.payload };
  assert.deepEqual(decoded, expected);
});

test('the preface and header layout follow docs/wire-format.md', () => {
  const bytes = encode([preface, { type: FrameType.END, streamId: 0x01020304 }]);
  assert.deepEqual([...bytes.subarray(0, 4)], [0x53, 0x57, 0x59, 0x53]); // "SWYS"
  assert.equal(bytes[4], 1);
  assert.equal(Buffer.from(bytes).readUInt32BE(8), 65536);
  assert.deepEqual([...bytes.subarray(PREFACE_SIZE)], [0, 0, 0, 0, FrameType.END, 0, 1, 2, 3, 4]);
  assert.equal(HEADER_SIZE, 10);
});

test('the LZ4 bit of a record header is bit 31', () => {
  const stored = new Uint8Array(8);
  stored.set([5, 0, 0, 0]); // a little-endian uncompressed length of 5
  const frame: Frame = {
    type: FrameType.DATA,
    streamId: 2,
    records: [stored],
    lz4: [true],
    payload: null,
    count: 1,
  };
  const bytes = encode([preface, frame]);
  const header = Buffer.from(bytes).readUInt32BE(PREFACE_SIZE + HEADER_SIZE);
  assert.equal(header >>> 0, (RECORD_LZ4 | 8) >>> 0);
});

test('encode reports INSUFFICIENT_BUFFER instead of writing past the end', () => {
  const codec = createStreamCodec({ maxFrameSize: MAX });
  const frame = dataFrame(2, [Buffer.alloc(100, 1)]);
  const small = new Uint8Array(encodedSize(frame) - 1);
  assert.equal(codec.encode(frame, small), INSUFFICIENT_BUFFER);
  assert.ok(
    small.every((b) => b === 0),
    'nothing written',
  );
  const exact = new Uint8Array(encodedSize(frame));
  assert.equal(codec.encode(frame, exact), exact.length);
});

test('decode across every chunk split gives the same frames', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 5 }), { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 17 }), { maxLength: 30 }),
      (batches, chunks) => {
        const frames: Frame[] = [preface, ...batches.map((records, i) => dataFrame(2 + 2 * i, records))];
        const bytes = encode(frames);
        const whole = decodeAll(bytes);
        assert.deepEqual(decodeAll(bytes, chunks), whole);
        assert.equal(whole.length, frames.length);
      },
    ),
    { numRuns: 300 },
  );
});

test('incomplete frames ask for the bytes they need', () => {
  const codec = createStreamCodec({ maxFrameSize: MAX });
  const bytes = encode([preface, dataFrame(2, [Buffer.alloc(50)])]);
  const first = codec.decode(bytes.subarray(0, 5));
  assert.ok(isIncomplete(first) && first.bytesNeeded === PREFACE_SIZE);
  const p = codec.decode(bytes);
  assert.ok(!isIncomplete(p));
  const rest = bytes.subarray(PREFACE_SIZE);
  const r = codec.decode(rest.subarray(0, 20));
  assert.ok(isIncomplete(r));
  assert.equal(r.bytesNeeded, rest.length);
});

test('a frame over maxFrameSize is refused from its header, before the payload arrives', () => {
  const codec = createStreamCodec({ maxFrameSize: MAX });
  codec.decode(encode([preface]));
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt32BE(MAX + PAYLOAD_ALLOWANCE + 1, 0);
  header[4] = FrameType.DATA;
  header.writeUInt32BE(2, 6);
  assert.throws(() => codec.decode(header), StreamFrameTooLargeError);
  // A 4 GiB claim also fails from 10 bytes, without an allocation of that size.
  const codec2 = createStreamCodec({ maxFrameSize: MAX });
  codec2.decode(encode([preface]));
  header.writeUInt32BE(0xffffffff, 0);
  assert.throws(
    () => codec2.decode(header),
    (e: unknown) => e instanceof StreamError && e.code === 'STREAM_ERR_FRAME_TOO_LARGE',
  );
});

test('a record or LZ4 length over maxFrameSize is refused', () => {
  const big = dataFrame(2, [Buffer.alloc(MAX + 1)]);
  const bytes = encode([preface, big]);
  assert.throws(() => decodeAll(bytes), StreamFrameTooLargeError);
  const stored = Buffer.alloc(8);
  stored.writeUInt32LE(MAX + 1, 0);
  const lz = encode([
    preface,
    { type: FrameType.DATA, streamId: 2, records: [stored], lz4: [true], payload: null, count: 1 },
  ]);
  assert.throws(() => decodeAll(lz), StreamFrameTooLargeError);
});

test('malformed input is a StreamProtocolError: magic, version, ids, lengths, UTF-8', () => {
  const bad = (bytes: Uint8Array) => assert.throws(() => decodeAll(bytes), StreamProtocolError);
  const p = Buffer.from(encode([preface]));
  bad(Buffer.concat([Buffer.from('XXXX'), p.subarray(4)]));
  const v2 = Buffer.from(p);
  v2[4] = 2;
  bad(v2);
  const frame = (type: number, streamId: number, payload: number[]) => {
    const h = Buffer.alloc(HEADER_SIZE);
    h.writeUInt32BE(payload.length, 0);
    h[4] = type;
    h.writeUInt32BE(streamId, 6);
    return Buffer.concat([p, h, Buffer.from(payload)]);
  };
  bad(frame(99, 1, [])); // unknown type
  bad(frame(FrameType.REQUEST, 2, [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0])); // even request id
  bad(frame(FrameType.REQUEST, 1, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0])); // zero window
  bad(frame(FrameType.REQUEST, 1, [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 9])); // tag cut short
  bad(frame(FrameType.SOURCE, 3, [0, 0, 0, 1])); // odd source id
  bad(frame(FrameType.SOURCE, 2, [0, 0, 0, 2])); // even request id
  bad(frame(FrameType.DATA, 2, [])); // no record
  bad(frame(FrameType.DATA, 2, [0, 0, 0, 5, 1])); // record longer than frame
  bad(frame(FrameType.END, 2, [1])); // END with payload
  bad(frame(FrameType.CREDIT, 2, [0, 0, 0, 1])); // CREDIT too short
  bad(frame(FrameType.CREDIT, 2, [0x80, 0, 0, 0, 0, 0, 0, 0])); // credit above 2^31-1
  bad(frame(FrameType.PING, 1, [0, 0, 0, 0, 0, 0, 0, 0])); // PING off stream 0
  bad(frame(FrameType.ERROR, 1, [0, 9, 65])); // code longer than frame
  bad(frame(FrameType.CANCEL, 1, [0xff, 0xfe])); // invalid UTF-8
});

test('fuzz: arbitrary bytes never crash the decoder with anything but a StreamError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (junk, withPreface) => {
      const codec = createStreamCodec({ maxFrameSize: MAX });
      let buf: Uint8Array = withPreface ? Buffer.concat([encode([preface]), junk]) : junk;
      try {
        for (let i = 0; i < 100; i++) {
          const r = codec.decode(buf);
          if (isIncomplete(r)) {
            if (r.bytesNeeded !== undefined)
              assert.ok(r.bytesNeeded <= HEADER_SIZE + MAX + PAYLOAD_ALLOWANCE);
            return;
          }
          assert.ok(r.bytesRead > 0 && r.bytesRead <= buf.length);
          buf = buf.subarray(r.bytesRead);
        }
      } catch (error) {
        assert.ok(error instanceof StreamError, `threw ${String(error)}`);
      }
    }),
    { numRuns: 2000 },
  );
});

test('fuzz: mutated valid streams fail only with StreamError', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 30 }), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
      (records, at, value) => {
        const bytes = Buffer.from(
          encode([
            preface,
            dataFrame(2, records),
            { type: FrameType.ERROR, streamId: 1, code: 'X', message: 'm' },
          ]),
        );
        bytes[PREFACE_SIZE + (at % (bytes.length - PREFACE_SIZE))] = value;
        try {
          decodeAll(bytes);
        } catch (error) {
          assert.ok(
            error instanceof StreamError || (error as Error).message.startsWith('bytes left over'),
            String(error),
          );
        }
      },
    ),
    { numRuns: 1000 },
  );
});
