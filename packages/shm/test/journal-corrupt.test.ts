import assert from 'node:assert/strict';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { createJournal, openJournal, ShmError, type ShmErrorCode } from '@switchyard/shm';
import { makeTempDir } from '@switchyard/testkit';

const OPTIONS = {
  writerId: 9,
  channelId: 3,
  capacity: 1024,
  maxMessageLength: 100,
  timeout: 1000,
  readerSlots: 4,
};

/** A closed journal with a few records, as bytes. */
function pristine(dir: string): Uint8Array {
  const path = join(dir, 'pristine');
  const writer = createJournal(path, OPTIONS);
  for (let i = 0; i < 5; i++) writer.write(new Uint8Array(10 + i * 20).fill(i));
  writer.heartbeat();
  writer.close();
  return new Uint8Array(readFileSync(path));
}

function fnv1a(bytes: Uint8Array, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < end; i++) {
    hash ^= bytes[i] as number;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Fixes the header checksum so a changed field is judged on its own merits. */
function reseal(bytes: Uint8Array): Uint8Array {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(68, fnv1a(bytes, 68), true);
  return bytes;
}

/** Opens `bytes` as a journal and reads it to the end; the error code, or 'ok'. */
function openAndReadAll(path: string, bytes: Uint8Array): ShmErrorCode | 'ok' {
  writeFileSync(path, bytes);
  try {
    const reader = openJournal(path);
    try {
      for (let i = 0; i < 1000 && reader.tryRead() !== null; i++);
    } finally {
      reader.close();
    }
    return 'ok';
  } catch (error) {
    if (error instanceof ShmError) return error.code;
    throw error;
  }
}

test('each damaged header field gives its typed error', () => {
  using dir = makeTempDir();
  const good = pristine(dir.path);
  const path = join(dir.path, 'damaged');
  assert.equal(openAndReadAll(path, good), 'ok');
  const edit = (f: (v: DataView, b: Uint8Array) => void, seal = true): Uint8Array => {
    const b = good.slice();
    f(new DataView(b.buffer), b);
    return seal ? reseal(b) : b;
  };
  const cases: [string, Uint8Array, ShmErrorCode][] = [
    ['foreign signature', edit((v) => v.setUint32(0, 0x464c457f, true)), 'SHM_ERR_FOREIGN_FILE'],
    [
      'a text file',
      new TextEncoder().encode('hello, this is not a journal at all '.repeat(40)),
      'SHM_ERR_FOREIGN_FILE',
    ],
    ['version 2', edit((v) => v.setUint32(8, 2, true)), 'SHM_ERR_UNSUPPORTED_VERSION'],
    ['all zero', new Uint8Array(good.length), 'SHM_ERR_NOT_READY'],
    ['state initializing', edit((v) => v.setInt32(72, 0, true)), 'SHM_ERR_NOT_READY'],
    ['state 7', edit((v) => v.setInt32(72, 7, true)), 'SHM_ERR_CORRUPT'],
    ['checksum', edit((v) => v.setUint32(40, 99, true), false), 'SHM_ERR_CORRUPT'],
    ['capacity past the file', edit((v) => v.setBigUint64(32, 2048n, true)), 'SHM_ERR_CORRUPT'],
    ['capacity not a multiple of 8', edit((v) => v.setBigUint64(32, 1020n, true)), 'SHM_ERR_CORRUPT'],
    ['capacity 2^63', edit((v) => v.setBigUint64(32, 2n ** 63n, true)), 'SHM_ERR_CORRUPT'],
    ['max message past capacity', edit((v) => v.setUint32(40, 5000, true)), 'SHM_ERR_CORRUPT'],
    ['tick unit 9', edit((v) => v.setUint32(44, 9, true)), 'SHM_ERR_CORRUPT'],
    ['timeout 2^64-1', edit((v) => v.setBigUint64(48, 2n ** 64n - 1n, true)), 'SHM_ERR_CORRUPT'],
    ['reader slots 5000', edit((v) => v.setUint32(64, 5000, true)), 'SHM_ERR_CORRUPT'],
    ['header bytes off', edit((v) => v.setUint32(12, 64, true)), 'SHM_ERR_CORRUPT'],
    ['truncated to 50 bytes', good.slice(0, 50), 'SHM_ERR_CORRUPT'],
    ['truncated inside the data', good.slice(0, good.length - 8), 'SHM_ERR_CORRUPT'],
    ['grown by a page', Uint8Array.from([...good, ...new Uint8Array(4096)]), 'SHM_ERR_CORRUPT'],
  ];
  for (const [name, bytes, code] of cases) assert.equal(openAndReadAll(path, bytes), code, name);
  writeFileSync(path, good);
  truncateSync(path, 0);
  assert.throws(
    () => openJournal(path),
    (e: unknown) => e instanceof ShmError && e.code === 'SHM_ERR_NOT_READY',
  );
});

test('damaged records give ShmCorruptError after the good ones', () => {
  using dir = makeTempDir();
  const good = pristine(dir.path);
  const path = join(dir.path, 'damaged');
  const dataOffset = new DataView(good.buffer).getUint32(12, true);
  const second = dataOffset + 24; // first record: 10 bytes -> 24
  const words: [string, number][] = [
    ['length above max', (101 << 2) | 1],
    ['kind 0', 4 << 2],
    ['heartbeat with a length', (3 << 2) | 2],
    ['end mark with a length', (3 << 2) | 3],
    ['negative', -1],
  ];
  for (const [name, word] of words) {
    const b = good.slice();
    new DataView(b.buffer).setInt32(second, word, true);
    writeFileSync(path, b);
    const reader = openJournal(path);
    assert.equal(reader.tryRead()?.length, 10, name);
    assert.throws(
      () => reader.tryRead(),
      (e: unknown) => e instanceof ShmError && e.code === 'SHM_ERR_CORRUPT',
      name,
    );
    reader.close();
  }
  // A record that would run past the data area: the last slot claims a long length.
  const b = good.slice();
  const capacity = 1024;
  const view = new DataView(b.buffer);
  b.fill(0, dataOffset);
  view.setInt32(dataOffset, (100 << 2) | 1, true);
  for (let at = 112; at + 112 <= capacity; at += 112) view.setInt32(dataOffset + at, (100 << 2) | 1, true);
  view.setInt32(dataOffset + 1008, (100 << 2) | 1, true);
  writeFileSync(path, b);
  const reader = openJournal(path);
  let n = 0;
  assert.throws(
    () => {
      while (reader.tryRead() !== null) n++;
    },
    (e: unknown) => e instanceof ShmError && e.code === 'SHM_ERR_CORRUPT',
  );
  assert.equal(n, 9);
  reader.close();
});

test('fuzz: random header damage and truncation give a typed error or a valid journal, never a crash', () => {
  using dir = makeTempDir();
  const good = pristine(dir.path);
  const path = join(dir.path, 'fuzzed');
  const headerBytes = new DataView(good.buffer).getUint32(12, true);
  const seen = new Set<string>();
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(headerBytes + 63), fc.nat(255)), { minLength: 1, maxLength: 8 }),
      fc.boolean(),
      fc.option(fc.nat(good.length), { freq: 4 }),
      (edits, seal, truncateTo) => {
        let bytes: Uint8Array = good.slice();
        for (const [at, value] of edits) bytes[at] = value;
        if (seal) bytes = reseal(bytes);
        if (truncateTo !== null) bytes = bytes.slice(0, truncateTo);
        if (bytes.length === 0) return;
        seen.add(openAndReadAll(path, bytes));
      },
    ),
    { numRuns: 400, seed: 4 },
  );
  assert.ok(seen.has('SHM_ERR_CORRUPT') && seen.size >= 3, `outcomes: ${[...seen].join(', ')}`);
});
