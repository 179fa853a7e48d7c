import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { createJournal, openJournal } from '@switchyard/shm';
import { makeTempDir } from '@switchyard/testkit';
import { checkPattern, fillPattern, patternLength } from './fixtures/pattern.js';

const WORKER = new URL('./fixtures/journal-worker.js', import.meta.url);
const MAX = 300;

function start(workerData: object): { result: Promise<Record<string, unknown>>; exited: Promise<unknown> } {
  const worker = new Worker(WORKER, { workerData });
  const result = once(worker, 'message').then(([m]) => m as Record<string, unknown>);
  return { result, exited: once(worker, 'exit') };
}

test('worker threads map the same journal by path: readers parked on the doorbell and on the futex', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'journal');
  const count = 50_000;
  const writer = createJournal(path, {
    writerId: 1,
    channelId: 1,
    capacity: 16 << 20,
    maxMessageLength: MAX,
    timeout: 5000,
  });
  const readers = (['adaptive', 'block', 'spin'] as const).map((wait) =>
    start({ mode: 'read', path, wait, count, maxLength: MAX }),
  );
  // Give the readers time to park, then write in bursts with pauses so they park again.
  await new Promise((r) => setTimeout(r, 100));
  const scratch = new Uint8Array(MAX);
  for (let seq = 0; seq < count; seq++) {
    writer.write(fillPattern(scratch, seq, patternLength(seq, MAX)));
    if (seq % 5000 === 4999) await new Promise((r) => setTimeout(r, 5));
  }
  writer.close();
  for (const { result, exited } of readers) {
    assert.deepEqual(await result, { read: count, ended: true });
    await exited;
  }
});

test('a writer in a worker thread, read in the main thread', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'journal');
  const count = 20_000;
  const { result, exited } = start({ mode: 'write', path, count, maxLength: MAX });
  const reader = openJournal(path, { waitForMs: 5000 });
  let seq = 0;
  for await (const record of reader) checkPattern(record, seq++, MAX);
  assert.equal(seq, count);
  assert.deepEqual(await result, { written: count });
  reader.close();
  await exited;
});
