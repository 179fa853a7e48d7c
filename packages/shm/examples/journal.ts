// A journal between a writer and a reader: the reader replays what was written before it
// opened, then waits (parked on its doorbell) for the rest, until the writer closes.
//   node packages/shm/dist-test/examples/journal.js [path]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createJournal, openJournal } from '@switchyard/shm';

const dir = mkdtempSync(join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'journal-example-'));
const path = process.argv[2] ?? join(dir, 'orders');
try {
  const writer = createJournal(path, {
    writerId: 1,
    channelId: 42,
    capacity: 1 << 20,
    maxMessageLength: 1024,
    timeout: 5,
    tickUnit: 's',
  });
  const encoder = new TextEncoder();
  console.log(`wrote ${writer.write(encoder.encode('order 1'))} bytes`);

  const reader = openJournal(path);
  const received: string[] = [];
  const done = (async () => {
    for await (const record of reader) received.push(new TextDecoder().decode(record));
  })();

  for (let i = 2; i <= 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    writer.write(encoder.encode(`order ${i}`));
  }
  writer.close(); // the end-of-channel mark ends the reader's loop
  await done;
  reader.close();
  console.log(received.join(', '));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
