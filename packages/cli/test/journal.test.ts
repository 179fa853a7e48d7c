import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createJournal } from '@switchyard/shm';
import { makeTempDir, repoRoot } from '@switchyard/testkit';
import { main } from 'switchyard';

const bin = join(repoRoot(), 'packages', 'cli', 'bin', 'switchyard.js');
const OPTIONS = { writerId: 11, channelId: 22, capacity: 4096, maxMessageLength: 100, timeout: 5000 };

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

test('journal inspect prints the header, state, records and position; --json is one object', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  writer.write(Buffer.from('alpha'));
  writer.heartbeat();
  writer.write(Buffer.from('beta'));
  const open = await cli(['journal', 'inspect', path]);
  assert.equal(open.code, 0, open.stderr);
  assert.match(open.stdout, /writer +id 11, pid \d+/);
  assert.match(open.stdout, /channel +id 22/);
  assert.match(open.stdout, /state +open\n/);
  assert.match(open.stdout, /records +2 \(9 payload bytes\), 1 heartbeats/);
  assert.match(open.stdout, /position +40 of 4096/);
  writer.close();
  const closed = await cli(['journal', 'inspect', path, '--json', '--records', '5']);
  assert.equal(closed.code, 0, closed.stderr);
  const info = JSON.parse(closed.stdout) as Record<string, unknown> & {
    header: Record<string, unknown>;
    records: { position: number; length: number; data: string }[];
  };
  assert.equal(info.state, 'closed');
  assert.equal(info.ended, true);
  assert.equal(info.records.length, 2);
  assert.deepEqual(info.records[1], { position: 16 + 8, length: 4, data: 'beta' });
  assert.equal(info.header.writerId, '11');
  assert.equal(info.header.capacity, 4096);
  assert.equal(info.header.tickUnit, 'ms');
  assert.equal(info.position, 40, 'where the end mark stands');
  const hex = await cli(['journal', 'inspect', path, '--records', '1', '--encoding', 'hex']);
  assert.match(hex.stdout, /@0 \[5\] 616c706861/);
});

test('journal inspect and tail report typed errors with their code and a non-zero exit', async () => {
  using dir = makeTempDir();
  const foreign = join(dir.path, 'foreign');
  writeFileSync(foreign, 'not a journal, just some text that is long enough for a header '.repeat(8));
  for (const command of ['inspect', 'tail']) {
    const r = await cli(['journal', command, foreign]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /SHM_ERR_FOREIGN_FILE/);
    const missing = await cli(['journal', command, join(dir.path, 'missing')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /SHM_ERR_SYSTEM/);
  }
  const bad = await cli(['journal', 'tail', foreign, '--from', '-3']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--from/);
  const enc = await cli(['journal', 'tail', foreign, '--encoding', 'rot13']);
  assert.notEqual(enc.code, 0);
});

test('journal tail --no-follow prints what is there; --from and --from-end pick the start', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const writer = createJournal(path, OPTIONS);
  const positions = ['one', 'two', 'three'].map((s) => {
    const at = writer.position;
    writer.write(Buffer.from(s));
    return at;
  });
  const all = await cli(['journal', 'tail', path, '--no-follow']);
  assert.equal(all.code, 0, all.stderr);
  assert.equal(all.stdout, 'one\ntwo\nthree\n');
  const json = await cli(['journal', 'tail', path, '--no-follow', '--json', '--from', String(positions[1])]);
  assert.deepEqual(
    json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown),
    [
      { position: positions[1], length: 3, data: 'two' },
      { position: positions[2], length: 5, data: 'three' },
    ],
  );
  const end = await cli(['journal', 'tail', path, '--no-follow', '--from-end']);
  assert.equal(end.stdout, '');
  const notBoundary = await cli(['journal', 'tail', path, '--no-follow', '--from', '8']);
  assert.equal(notBoundary.code, 1);
  assert.match(notBoundary.stderr, /SHM_ERR_INVALID_ARGUMENT/);
  writer.close();
});

test('journal tail follows a live writer in another process and exits at the end-of-channel mark', async () => {
  using dir = makeTempDir();
  const path = join(dir.path, 'j');
  const child = spawn(process.execPath, [bin, 'journal', 'tail', path, '--json', '--wait-for', '5000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => void (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => void (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const writer = createJournal(path, OPTIONS);
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 30));
    writer.write(Buffer.from(`live ${i}`));
  }
  await new Promise((r) => setTimeout(r, 30));
  writer.close();
  assert.equal(await exited, 0, stderr);
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { data: string }).data);
  assert.deepEqual(lines, ['live 0', 'live 1', 'live 2', 'live 3', 'live 4']);
});
