import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '@switchyard/testkit';
import { main } from 'switchyard';

const run = promisify(execFile);
const bin = join(repoRoot(), 'packages', 'cli', 'bin', 'switchyard.js');
const { version } = JSON.parse(readFileSync(join(repoRoot(), 'packages', 'cli', 'package.json'), 'utf8')) as {
  version: string;
};

test('switchyard --version prints the package version', async () => {
  const { stdout } = await run(process.execPath, [bin, '--version']);
  assert.equal(stdout.trim(), version);
});

test('switchyard --help lists the commands', async () => {
  const { stdout } = await run(process.execPath, [bin, '--help']);
  assert.match(stdout, /Usage: switchyard/);
  assert.match(stdout, /serve/);
});

test('an unknown command fails with a non-zero exit and says why', async () => {
  const out: string[] = [];
  const code = await main(['no-such-command'], { stdout: (t) => out.push(t), stderr: (t) => out.push(t) });
  assert.notEqual(code, 0);
  assert.match(out.join(''), /unknown command 'no-such-command'/);
});
