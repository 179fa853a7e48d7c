import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  createJournal,
  inspectJournal,
  openJournal,
  ShmChannelFullError,
  ShmClosedError,
  ShmExistsError,
  ShmInvalidArgumentError,
  ShmRecordTooLargeError,
  ShmSystemError,
  ShmWriterTimeoutError,
  type JournalOptions,
} from '@switchyard/shm';
import { makeTempDir } from '@switchyard/testkit';

const OPTIONS: JournalOptions = {
  writerId: 1,
  channelId: 2,
  capacity: 4096,
  maxMessageLength: 256,
  timeout: 10_000,
};
const text = (bytes: Uint8Array | null): string | null =>
  bytes === null ? null : Buffer.from(bytes).toString();

test('write returns the bytes used (8-byte header, payload, padding to 8) and readers get the records in order', () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  assert.equal(writer.write(new Uint8Array(0)), 8);
  assert.equal(writer.write(Buffer.from('a')), 16);
  assert.equal(writer.write(Buffer.from('12345678')), 16);
  assert.equal(writer.write(new Uint8Array(9)), 24);
  assert.equal(writer.write(new Uint8Array(64).fill(7)), 72);
  assert.equal(writer.write(new Uint8Array(200).fill(9)), 208);
  assert.equal(writer.position, 8 + 16 + 16 + 24 + 72 + 208);
  const reader = openJournal(path);
  assert.equal(reader.tryRead()?.length, 0);
  assert.equal(text(reader.tryRead()), 'a');
  assert.equal(text(reader.tryRead()), '12345678');
  assert.deepEqual(reader.tryRead(), new Uint8Array(9));
  assert.deepEqual(reader.tryRead(), new Uint8Array(64).fill(7));
  assert.deepEqual(reader.tryRead(), new Uint8Array(200).fill(9));
  assert.equal(reader.tryRead(), null, 'nothing more yet');
  assert.equal(reader.ended, false);
  assert.equal(reader.position, writer.position);
  writer.close();
  reader.close();
});

test('the header describes the journal; the file is mode 0600 and exactly header + capacity bytes', () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const before = Date.now();
  const writer = createJournal(path, {
    ...OPTIONS,
    writerId: 2n ** 63n + 5n,
    channelId: 42,
    tickUnit: 's',
    timeout: 3,
  });
  const reader = openJournal(path);
  const h = reader.header;
  assert.equal(h.version, 1);
  assert.equal(h.writerId, 2n ** 63n + 5n);
  assert.equal(h.channelId, 42n);
  assert.equal(h.capacity, 4096);
  assert.equal(h.maxMessageLength, 256);
  assert.equal(h.timeout, 3);
  assert.equal(h.tickUnit, 's');
  assert.equal(h.timeoutMs, 3000);
  assert.ok(h.createdAtMs >= before && h.createdAtMs <= Date.now());
  assert.equal(h.readerSlots, 32);
  assert.equal(h.headerBytes % 64, 0);
  const stat = statSync(path);
  assert.equal(stat.mode & 0o777, 0o600);
  assert.equal(stat.size, h.headerBytes + h.capacity);
  writer.close();
  reader.close();
});

test('records above maxMessageLength are refused; a full channel still takes a smaller record', () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, { ...OPTIONS, capacity: 256, maxMessageLength: 100 });
  assert.throws(() => writer.write(new Uint8Array(101)), ShmRecordTooLargeError);
  assert.throws(() => writer.write('text' as unknown as Uint8Array), ShmInvalidArgumentError);
  // 256 bytes, 8 kept for the end mark: two 108-byte records (112 each) fill 224.
  writer.write(new Uint8Array(100));
  writer.write(new Uint8Array(100));
  const full = assert.throws(() => writer.write(new Uint8Array(100)), ShmChannelFullError);
  void full;
  assert.equal(writer.write(new Uint8Array(8)), 16, 'a smaller record still fits');
  assert.throws(
    () => writer.write(new Uint8Array(1)),
    (e: unknown) => e instanceof ShmChannelFullError,
  );
  assert.equal(writer.heartbeat(), 8, 'a heartbeat takes the last free 8 bytes');
  assert.equal(writer.position, 248);
  assert.throws(() => writer.heartbeat(), ShmChannelFullError);
  assert.throws(() => writer.write(new Uint8Array(0)), ShmChannelFullError);
  writer.close();
  const reader = openJournal(path);
  let n = 0;
  while (reader.tryRead() !== null) n++;
  assert.equal(n, 3);
  assert.equal(reader.ended, true, 'the end mark fitted in the reserved bytes');
  reader.close();
});

test('heartbeats are skipped by readers; close writes the end mark; read() then resolves null', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  const reader = openJournal(path);
  writer.heartbeat();
  writer.write(Buffer.from('x'));
  writer.heartbeat();
  assert.equal(text(await reader.read()), 'x');
  writer.close();
  writer.close();
  assert.throws(() => writer.write(Buffer.from('y')), ShmClosedError);
  assert.throws(() => writer.heartbeat(), ShmClosedError);
  assert.throws(() => writer.flush(), ShmClosedError);
  assert.equal(await reader.read(), null);
  assert.equal(reader.ended, true);
  assert.equal(reader.tryRead(), null);
  const info = inspectJournal(path);
  assert.equal(info.state, 'closed');
  assert.equal(info.records, 1);
  assert.equal(info.heartbeats, 2);
  assert.equal(info.ended, true);
  reader.close();
});

test('a reader opened after the writer closed replays everything, and can seek', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  const positions: number[] = [];
  for (let i = 0; i < 10; i++) {
    positions.push(writer.position);
    writer.write(Buffer.from(`record ${i}`));
  }
  writer.flush();
  writer.close();
  const reader = openJournal(path);
  const seen: string[] = [];
  for await (const record of reader) seen.push(Buffer.from(record).toString());
  assert.deepEqual(
    seen,
    Array.from({ length: 10 }, (_, i) => `record ${i}`),
  );
  reader.seek(positions[7] as number);
  assert.equal(reader.ended, false);
  assert.equal(text(reader.tryRead()), 'record 7');
  reader.seek(0);
  assert.equal(text(reader.tryRead()), 'record 0');
  assert.throws(() => reader.seek(4), ShmInvalidArgumentError);
  assert.throws(() => reader.seek((positions[1] as number) + 8), ShmInvalidArgumentError, 'not a boundary');
  assert.throws(() => reader.seek(-8), ShmInvalidArgumentError);
  assert.throws(() => reader.seek(1e9), ShmInvalidArgumentError);
  reader.close();
});

test('views stay valid until close, then they are empty (never a dangling mapping)', () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  writer.write(Buffer.from('kept'));
  const reader = openJournal(path);
  const view = reader.tryRead();
  assert.equal(text(view), 'kept');
  writer.write(Buffer.from('more'));
  assert.equal(text(view), 'kept');
  reader.close();
  reader.close();
  assert.equal(view?.length, 0);
  assert.throws(() => reader.tryRead(), ShmClosedError);
  assert.throws(() => reader.seek(0), ShmClosedError);
  writer.close();
});

test('the event-loop wait strategies deliver a record written later', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, { ...OPTIONS, capacity: 1 << 16 });
  const reader = openJournal(path);
  // 'block' blocks this thread: it is tested with the writer in another thread.
  for (const wait of ['adaptive', 'spin', 'yield', 'backoff'] as const) {
    const pending = reader.read({ wait });
    setTimeout(() => writer.write(Buffer.from(wait)), 5);
    assert.equal(text(await pending), wait);
  }
  await assert.rejects(reader.read({ wait: 'sleepy' as never }), ShmInvalidArgumentError);
  writer.close();
  reader.close();
});

test('read() rejects with the signal reason on abort and with ShmClosedError on close', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  const reader = openJournal(path);
  const reason = new Error('stop');
  const controller = new AbortController();
  const aborted = reader.read({ signal: controller.signal });
  setTimeout(() => controller.abort(reason), 10);
  await assert.rejects(aborted, (e) => e === reason);
  await assert.rejects(reader.read({ signal: AbortSignal.abort(reason) }), (e) => e === reason);
  for (const wait of ['yield', 'backoff', 'spin'] as const) {
    const c = new AbortController();
    const p = reader.read({ wait, signal: c.signal });
    setTimeout(() => c.abort(reason), 5);
    await assert.rejects(p, (e) => e === reason);
  }
  const pending = reader.read();
  setTimeout(() => reader.close(), 10);
  await assert.rejects(pending, ShmClosedError);
  writer.close();
});

test('a silent writer is reported as ShmWriterTimeoutError; heartbeats keep it alive', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, { ...OPTIONS, timeout: 150 });
  const reader = openJournal(path);
  const beat = setInterval(() => writer.heartbeat(), 30);
  const start = Date.now();
  const pending = reader.read();
  setTimeout(() => writer.write(Buffer.from('alive')), 400);
  assert.equal(text(await pending), 'alive', 'heartbeats kept the reader waiting past the timeout');
  assert.ok(Date.now() - start >= 350);
  clearInterval(beat);
  const t0 = Date.now();
  await assert.rejects(reader.read(), ShmWriterTimeoutError);
  const waited = Date.now() - t0;
  assert.ok(waited >= 100 && waited < 2000, `timed out after ${waited} ms`);
  assert.throws(() => reader.tryRead(), ShmWriterTimeoutError);
  writer.close();
  assert.equal(await reader.read(), null, 'the end mark arrives after all');
  reader.close();
});

test('createJournal is exclusive, validates its options and names the option', () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  createJournal(path, OPTIONS).close();
  assert.throws(() => createJournal(path, OPTIONS), ShmExistsError);
  const bad: [Partial<JournalOptions>, RegExp][] = [
    [{ capacity: 100 }, /capacity/],
    [{ capacity: 8 }, /capacity/],
    [{ capacity: 1.5 }, /capacity/],
    [{ maxMessageLength: -1 }, /maxMessageLength/],
    [{ maxMessageLength: 5000 }, /maxMessageLength/],
    [{ timeout: -1 }, /timeout/],
    [{ tickUnit: 'h' as never }, /tickUnit/],
    [{ writerId: -1 }, /writerId/],
    [{ channelId: 2n ** 64n }, /channelId/],
    [{ channelId: 'x' as never }, /channelId/],
    [{ readerSlots: 5000 }, /readerSlots/],
  ];
  for (const [override, message] of bad) {
    assert.throws(
      () => createJournal(join(dir.path, 'k'), { ...OPTIONS, ...override }),
      (e: unknown) => {
        assert.ok(e instanceof ShmInvalidArgumentError);
        assert.match(e.message, message);
        return true;
      },
    );
    assert.equal(existsSync(join(dir.path, 'k')), false, 'nothing created on bad options');
  }
  assert.throws(() => createJournal('', OPTIONS), ShmInvalidArgumentError);
  assert.throws(
    () => openJournal(join(dir.path, 'missing')),
    (e: unknown) => {
      assert.ok(e instanceof ShmSystemError);
      assert.equal(e.errno, 'ENOENT');
      return true;
    },
  );
  assert.throws(() => openJournal(path, { waitForMs: -1 }), /waitForMs/);
  assert.throws(() => openJournal(path, { wait: 'x' as never }), /wait/);
});

test('openJournal waits for a journal that appears within waitForMs', () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'late');
  const t0 = Date.now();
  assert.throws(() => openJournal(path, { waitForMs: 30 }), ShmSystemError);
  assert.ok(Date.now() - t0 >= 25);
});

test('readers park on the doorbell: the writer rings only while one is parked', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, { ...OPTIONS, capacity: 1 << 16 });
  const a = openJournal(path);
  const b = openJournal(path);
  const pa = a.read();
  const pb = b.read();
  await new Promise((r) => setTimeout(r, 20));
  const parked = inspectJournal(path);
  assert.equal(parked.parkedReaders, 2);
  assert.equal(parked.readers.filter((r) => r.parked).length, 2);
  assert.ok(existsSync(`${path}.r0.bell`) && existsSync(`${path}.r1.bell`), 'FIFOs next to the journal');
  writer.write(Buffer.from('both'));
  assert.equal(text(await pa), 'both');
  assert.equal(text(await pb), 'both');
  assert.equal(inspectJournal(path).parkedReaders, 0);
  a.close();
  b.close();
  assert.equal(existsSync(`${path}.r0.bell`), false, 'close removes the FIFO');
  assert.equal(inspectJournal(path).readers.length, 0);
  writer.close();
});

test('flush writes the records to a disk file; prefault can be turned off; diagnostics channels report', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const events: string[] = [];
  const onCreate = (m: unknown): void => void events.push(`create ${(m as { path: string }).path === path}`);
  const onClose = (m: unknown): void => void events.push(`close ${(m as { position: number }).position}`);
  const onTimeout = (): void => void events.push('timeout');
  diagnostics.subscribe('switchyard:shm:journal-create', onCreate);
  diagnostics.subscribe('switchyard:shm:journal-close', onClose);
  diagnostics.subscribe('switchyard:shm:journal-writer-timeout', onTimeout);
  try {
    const writer = createJournal(path, { ...OPTIONS, prefault: false, timeout: 20 });
    writer.write(Buffer.from('persisted'));
    writer.flush();
    const file = readFileSync(path);
    const headerBytes = file.readUInt32LE(12);
    assert.equal(file.readInt32LE(headerBytes), (9 << 2) | 1, 'the commit word is in the file');
    assert.equal(file.subarray(headerBytes + 8, headerBytes + 17).toString(), 'persisted');
    const reader = openJournal(path);
    assert.equal(text(reader.tryRead()), 'persisted');
    await assert.rejects(reader.read(), ShmWriterTimeoutError);
    writer.close();
    reader.close();
    assert.throws(() => createJournal(join(dir.path, 'k'), { ...OPTIONS, prefault: 1 as never }), /prefault/);
  } finally {
    diagnostics.unsubscribe('switchyard:shm:journal-create', onCreate);
    diagnostics.unsubscribe('switchyard:shm:journal-close', onClose);
    diagnostics.unsubscribe('switchyard:shm:journal-writer-timeout', onTimeout);
  }
  assert.deepEqual(events, ['create true', 'timeout', 'close 32']);
});

test('a reader that cannot create its doorbell FIFO falls back to polling', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  const reader = openJournal(path);
  // A directory where the FIFO of slot 0 would go: mkfifo fails with EEXIST, then the
  // retry finds the slot taken; with the FIFO path blocked by a directory, parking is off.
  mkdirSync(`${path}.r0.bell`);
  writeFileSync(`${path}.r0.bell/keep`, '');
  const pending = reader.read();
  setTimeout(() => writer.write(Buffer.from('polled')), 20);
  assert.equal(text(await pending), 'polled');
  assert.equal(inspectJournal(path).parkedReaders, 0);
  writer.close();
  assert.equal(await reader.read(), null);
  reader.close();
});
