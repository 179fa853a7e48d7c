import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createJournal, inspectJournal, openJournal, ShmWriterTimeoutError } from '@switchyard/shm';
import { makeTempDir } from '@switchyard/testkit';
import { checkPattern, fillPattern, patternLength } from './fixtures/pattern.js';
import { Child } from './helpers.js';

const COUNT = 200_000;
const MAX = 200;

interface ReadSummary {
  read: number;
  bytes: number;
  ended?: boolean;
  error?: string;
  message?: string;
}

async function writerAndTwoReaders(path: string): Promise<void> {
  // The readers start first and wait for the file; one parks on its doorbell, one backs off.
  const readers = [
    new Child(['read', path, 'adaptive', String(MAX)]),
    new Child(['read', path, 'backoff', String(MAX)]),
  ];
  const writer = new Child(['write', path, String(COUNT), String(MAX), '5000']);
  assert.deepEqual(await writer.message('written'), { written: COUNT });
  for (const reader of readers) {
    const summary = await reader.message<ReadSummary>('read');
    assert.equal(summary.error, undefined, summary.message);
    assert.equal(summary.read, COUNT);
    assert.equal(summary.ended, true);
    assert.equal(await reader.exit(), 0);
  }
  assert.equal(await writer.exit(), 0);
  // The journal outlives its writer: a reader started now replays everything.
  const late = openJournal(path);
  let seq = 0;
  for await (const record of late) checkPattern(record, seq++, MAX);
  assert.equal(seq, COUNT);
  late.close();
}

test('a writer process and two reader processes, on /dev/shm', async () => {
  const dir = mkdtempSync('/dev/shm/switchyard-test-');
  try {
    await writerAndTwoReaders(join(dir, 'journal'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a writer process and two reader processes, on a disk file', async () => {
  using dir = makeTempDir();
  await writerAndTwoReaders(join(dir.path, 'journal'));
});

test('a writer killed with SIGKILL mid-burst never shows a torn record; readers report the writer timeout', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'journal');
  const writer = new Child(['burst', path, String(MAX)]);
  const other = new Child(['read', path, 'adaptive', String(MAX)]);
  await writer.message('created');
  const reader = openJournal(path, { waitForMs: 5000 });
  let seq = 0;
  const readAll = (async () => {
    for (;;) {
      const record = await reader.read();
      if (record === null) throw new Error('an end mark the writer never wrote');
      checkPattern(record, seq++, MAX);
    }
  })();
  await writer.message('burst');
  await new Promise((r) => setTimeout(r, 30));
  writer.process.kill('SIGKILL');
  await writer.exit();
  const t0 = Date.now();
  await assert.rejects(readAll, ShmWriterTimeoutError);
  assert.ok(Date.now() - t0 < 5000);
  assert.ok(seq >= 1000, `read ${seq} whole records before the timeout`);
  const summary = await other.message<ReadSummary>('read');
  assert.equal(summary.error, 'SHM_ERR_WRITER_TIMEOUT', summary.message);
  assert.equal(summary.read, seq, 'the other process read the same whole records');
  reader.close();
  await other.exit();
});

test('a reader killed while parked: the writer goes on, and a new reader takes its slot back', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'journal');
  const writer = createJournal(path, {
    writerId: 1,
    channelId: 1,
    capacity: 1 << 16,
    maxMessageLength: MAX,
    timeout: 60_000,
    readerSlots: 1,
  });
  const child = new Child(['read', path, 'adaptive', String(MAX)]);
  await child.message('opened');
  const deadline = Date.now() + 10_000;
  while (inspectJournal(path).parkedReaders !== 1) {
    assert.ok(Date.now() < deadline, 'the child reader never parked');
    await new Promise((r) => setTimeout(r, 10));
  }
  child.process.kill('SIGKILL');
  await child.exit();
  const scratch = new Uint8Array(MAX);
  writer.write(fillPattern(scratch, 0, patternLength(0, MAX)));
  const after = inspectJournal(path);
  assert.equal(after.parkedReaders, 0, 'the writer took the dead reader off the parked count');
  assert.equal(after.readers.length, 1, 'its slot is still marked taken');
  // The only slot belongs to a dead process: a new reader reclaims it and parks.
  const reader = openJournal(path);
  checkPattern((await reader.read()) as Uint8Array, 0, MAX);
  const pending = reader.read();
  await new Promise((r) => setTimeout(r, 20));
  const parked = inspectJournal(path);
  assert.equal(parked.parkedReaders, 1);
  assert.deepEqual(parked.readers, [{ slot: 0, pid: process.pid, parked: true }]);
  writer.write(fillPattern(scratch, 1, patternLength(1, MAX)));
  checkPattern((await pending) as Uint8Array, 1, MAX);
  writer.close();
  assert.equal(await reader.read(), null);
  reader.close();
});
