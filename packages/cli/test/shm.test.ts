import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { Publisher, Subscriber, regionPath } from '@switchyard/shm';
import { repoRoot } from '@switchyard/testkit';
import { main } from 'switchyard';

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

function shmDir(): { path: string } & Disposable {
  const path = mkdtempSync('/dev/shm/switchyard-cli-test-');
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

/** A publisher in a process of its own that a subscriber parks on, then SIGKILLed. */
async function killedPublisher(dir: string, name: string): Promise<void> {
  const source = `
    import { Publisher } from '@switchyard/shm';
    const p = Publisher.create(${JSON.stringify(name)}, { dir: ${JSON.stringify(dir)}, blockCount: 4, ringDepth: 4, blockSize: 64 });
    p.send(new Uint8Array([1, 2, 3]));
    console.log('ready');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    cwd: repoRoot(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await once(child.stdout, 'data');
  // A subscriber parks on its doorbell FIFO: `rm` must remove that file too.
  const subscriber = Subscriber.open(name, { dir, from: 'oldest', spinMicros: 0 });
  subscriber.tryRecv()?.release();
  const parked = subscriber.recv().catch((error: unknown) => error);
  await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await once(child, 'exit');
  subscriber.close();
  await parked;
}

test('shm ls lists live and dead regions; shm rm removes a dead one and its FIFOs, refuses a live one', async () => {
  using dir = shmDir();
  const live = Publisher.create('alive', { dir: dir.path, blockCount: 2, ringDepth: 2, blockSize: 64 });
  try {
    await killedPublisher(dir.path, 'orphan');
    const listed = await cli(['shm', 'ls', '--dir', dir.path]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^NAME +STATUS +PID/);
    assert.match(listed.stdout, new RegExp(`\\nalive +live +${process.pid} `));
    assert.match(listed.stdout, /\norphan +dead +\d+ /);
    const json = await cli(['shm', 'ls', '--dir', dir.path, '--json']);
    const regions = json.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { name: string; status: string; published: number; dead: boolean });
    assert.deepEqual(
      regions.map((r) => [r.name, r.status, r.published, r.dead]),
      [
        ['alive', 'live', 0, false],
        ['orphan', 'dead', 1, true],
      ],
    );

    const refused = await cli(['shm', 'rm', '--dir', dir.path, 'alive']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is alive; use --force/);
    assert.equal(existsSync(live.path), true);

    const removed = await cli(['shm', 'rm', '--dir', dir.path, 'orphan']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, 'removed orphan\n');
    assert.deepEqual(
      readdirSync(dir.path),
      ['switchyard-ps-alive'],
      'the region and its doorbell FIFO are gone',
    );
  } finally {
    live.close();
  }
});

test('shm rm --dead removes every dead region; bad names and missing regions fail cleanly', async () => {
  using dir = shmDir();
  await killedPublisher(dir.path, 'one');
  await killedPublisher(dir.path, 'two');
  const r = await cli(['shm', 'rm', '--dir', dir.path, '--dead']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /removed one \(publisher \d+ dead\)\nremoved two/);
  assert.deepEqual(readdirSync(dir.path), []);
  assert.equal((await cli(['shm', 'ls', '--dir', dir.path])).stdout, `no pub/sub regions in ${dir.path}\n`);

  const escape = await cli(['shm', 'rm', '--dir', dir.path, '../etc']);
  assert.equal(escape.code, 1);
  assert.match(escape.stderr, /SHM_ERR_INVALID_ARGUMENT/);
  const missing = await cli(['shm', 'rm', '--dir', dir.path, 'nothing']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /ENOENT|SHM_ERR_SYSTEM/);
  assert.equal((await cli(['shm', 'rm', '--dir', dir.path])).code, 2);

  // A file that is not a region is listed as unreadable and removed only with --force.
  writeFileSync(regionPath(dir.path, 'junk'), 'x'.repeat(4096));
  assert.match(
    (await cli(['shm', 'ls', '--dir', dir.path])).stdout,
    /junk +unreadable \(SHM_ERR_FOREIGN_FILE\)/,
  );
  assert.equal((await cli(['shm', 'rm', '--dir', dir.path, 'junk'])).code, 1);
  assert.equal((await cli(['shm', 'rm', '--dir', dir.path, 'junk', '--force'])).code, 0);
  assert.deepEqual(readdirSync(dir.path), []);
});
