import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeTempDir } from '@switchyard/testkit';
import { main } from '../examples/quickstart.js';

test('examples/quickstart: idempotent send, reject then confirm, the attempt record', async () => {
  using dir = makeTempDir('switchyard-example-');
  const lines = await main(dir.path);
  assert.match(lines[0] ?? '', /the resend has the same mid: true/);
  assert.ok(lines.includes('attempt 1 by worker-1: outcome 2'));
  assert.ok(lines.includes('attempt 2 by worker-2: outcome 1'));
  assert.equal(lines.at(-1), 'status 1 (Confirmed = 1)');
});

test('examples/quickstart runs as a program', async () => {
  const file = fileURLToPath(new URL('../examples/quickstart.js', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [file]);
  assert.match(stdout, /attempt 2 by worker-2: outcome 1\nstatus 1/);
});
