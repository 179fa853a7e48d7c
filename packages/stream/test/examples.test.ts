import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeTempDir } from '@switchyard/testkit';
import { listDirectory } from '../examples/directory-listing.js';

function fixture(): { path: string } & Disposable {
  const dir = makeTempDir('switchyard-stream-example-');
  writeFileSync(join(dir.path, 'a.txt'), 'hello');
  writeFileSync(join(dir.path, 'big.bin'), Buffer.alloc(200_000, 7));
  writeFileSync(join(dir.path, 'empty'), '');
  return dir;
}

test('the directory-listing example serves one source per file with its contents as frames', async () => {
  using dir = fixture();
  assert.deepEqual(await listDirectory(dir.path), [
    { name: 'a.txt', bytes: 5 },
    { name: 'big.bin', bytes: 200_000 },
    { name: 'empty', bytes: 0 },
  ]);
});

test('the example runs as a program', async () => {
  using dir = fixture();
  const script = fileURLToPath(new URL('../examples/directory-listing.js', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [script, dir.path], { timeout: 20_000 });
  assert.equal(stdout, '5\ta.txt\n200000\tbig.bin\n0\tempty\n');
});
