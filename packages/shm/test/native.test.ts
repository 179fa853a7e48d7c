import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { BINDING_ENV, isSupported } from '@switchyard/shm';
import { makeTempDir, repoRoot } from '@switchyard/testkit';

const run = promisify(execFile);

test('the addon built by npm install loads: isSupported() is true on Linux', () => {
  assert.equal(isSupported(), process.platform === 'linux');
});

test('the binding path can be overridden; a missing addon gives isSupported() false and ShmUnsupportedError', async () => {
  const script = `
    import { isSupported, createJournal, openJournal } from '@switchyard/shm';
    const out = { supported: isSupported() };
    for (const [name, f] of [['create', () => createJournal('/nonexistent/x', { writerId: 1, channelId: 1, capacity: 64, maxMessageLength: 8, timeout: 1 })], ['open', () => openJournal('/etc/hostname')]]) {
      try { f(); out[name] = 'ok'; } catch (e) { out[name] = e.code; }
    }
    console.log(JSON.stringify(out));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
    cwd: repoRoot(),
    env: { ...process.env, [BINDING_ENV]: '/nonexistent/switchyard_shm.node' },
  });
  assert.deepEqual(JSON.parse(stdout), {
    supported: false,
    create: 'SHM_ERR_UNSUPPORTED',
    open: 'SHM_ERR_UNSUPPORTED',
  });
});

test('a debug build (node-gyp --debug) loads through the override and runs a journal', async () => {
  using dir = makeTempDir();
  cpSync(join(repoRoot(), 'packages', 'shm', 'binding.gyp'), join(dir.path, 'binding.gyp'));
  cpSync(join(repoRoot(), 'packages', 'shm', 'native'), join(dir.path, 'native'), { recursive: true });
  // The repository's node-gyp wrapper: offline, against the running Node's headers.
  await run(process.execPath, [join(repoRoot(), 'node_modules', '.bin', 'node-gyp'), 'rebuild', '--debug'], {
    cwd: dir.path,
  });
  const addon = join(dir.path, 'build', 'Debug', 'switchyard_shm.node');
  assert.ok(existsSync(addon));
  const script = `
    import { isSupported, createJournal, openJournal } from '@switchyard/shm';
    const path = process.argv[1];
    const writer = createJournal(path, { writerId: 1, channelId: 1, capacity: 4096, maxMessageLength: 64, timeout: 1000 });
    const reader = openJournal(path);
    const pending = reader.read();
    setTimeout(() => { writer.write(new TextEncoder().encode('debug')); writer.close(); }, 5);
    const first = new TextDecoder().decode(await pending);
    console.log(JSON.stringify({ supported: isSupported(), first, end: await reader.read() }));
    reader.close();`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, join(dir.path, 'j')], {
    cwd: repoRoot(),
    env: { ...process.env, [BINDING_ENV]: addon },
  });
  assert.deepEqual(JSON.parse(stdout), { supported: true, first: 'debug', end: null });
});
