import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

test('examples/journal.ts runs and prints what the reader received', async () => {
  const example = fileURLToPath(new URL('../examples/journal.js', import.meta.url));
  const { stdout } = await run(process.execPath, [example]);
  assert.equal(stdout, 'wrote 16 bytes\norder 1, order 2, order 3\n');
});

test('examples/channel-rpc.ts: a server and a client process exchange a request and a response', async () => {
  const example = fileURLToPath(new URL('../examples/channel-rpc.js', import.meta.url));
  const { stdout } = await run(process.execPath, [example]);
  assert.equal(stdout, 'server got: request\nclient got: response\n');
});
