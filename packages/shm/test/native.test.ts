import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { BINDING_ENV, isSupported } from '@switchyard/shm';
import { repoRoot } from '@switchyard/testkit';

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
