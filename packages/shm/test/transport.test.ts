import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connectShmTransport, listenShmTransport, ShmTransport } from '@switchyard/shm';
import { transportConformance, type TransportPair } from '@switchyard/wire';
import { shmDir } from './pubsub-helpers.js';

const run = promisify(execFile);
const dir = shmDir();
let counter = 0;

async function shmPair(): Promise<TransportPair> {
  const name = `conf-${process.pid}-${counter++}`;
  const config = { dir: dir.path, blockCount: 64, ringDepth: 32, blockSize: 16 * 1024 };
  const [b, a] = await Promise.all([
    listenShmTransport(name, { config, timeoutMs: 5000, fallback: 'never' }),
    connectShmTransport(name, { config, timeoutMs: 5000, fallback: 'never' }),
  ]);
  assert.ok(a instanceof ShmTransport && b instanceof ShmTransport);
  return {
    a,
    b,
    close: async () => {
      a.destroy();
      b.destroy();
    },
  };
}

async function fallbackPair(): Promise<TransportPair> {
  const name = `fallback-${process.pid}-${counter++}`;
  const [b, a] = await Promise.all([
    listenShmTransport(name, { timeoutMs: 5000, fallback: 'always', socketDir: dir.path }),
    connectShmTransport(name, { timeoutMs: 5000, fallback: 'always', socketDir: dir.path }),
  ]);
  assert.ok(!(a instanceof ShmTransport), 'a Unix socket transport');
  return { a, b };
}

await transportConformance('shm duplex', shmPair);
await transportConformance('shm duplex, Unix socket fallback', fallbackPair);

test('without the native addon, listen/connect fall back to a Unix socket and wire runs over it', async () => {
  const script = fileURLToPath(new URL('./fixtures/duplex-child.js', import.meta.url));
  const { stdout } = await run(process.execPath, [script, 'fallback', dir.path], {
    env: { ...process.env, SWITCHYARD_SHM_BINDING: '/nonexistent/switchyard_shm.node' },
  });
  assert.deepEqual(JSON.parse(stdout), {
    supported: false,
    address: 'unix',
    echoed: 'ping over the fallback',
  });
});

test('wire over the shm duplex between two processes: an echo server in a child', async () => {
  const script = fileURLToPath(new URL('./fixtures/duplex-child.js', import.meta.url));
  const { stdout } = await run(process.execPath, [script, 'processes', dir.path]);
  assert.deepEqual(JSON.parse(stdout), { frames: 1000, intact: true, address: 'shm:echo-srv' });
});

test.after(() => dir[Symbol.dispose]());
