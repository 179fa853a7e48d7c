import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connectShmTransport, listenShmTransport, ShmTransport } from '@switchyard/shm';
import {
  lengthPrefixed,
  ProtocolEngine,
  transportConformance,
  type TransportPair,
  type WireError,
} from '@switchyard/wire';
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

test('a peer SIGKILLed mid-connection: the survivor’s connection fails with the publisher-dead cause', async () => {
  const script = fileURLToPath(new URL('./fixtures/duplex-child.js', import.meta.url));
  const child = spawn(process.execPath, [script, 'echo-fast-heartbeat', dir.path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const transport = await connectShmTransport('mortal', {
      config: { dir: dir.path },
      timeoutMs: 10_000,
      fallback: 'never',
    });
    let echoed = 0;
    const closed = new Promise<WireError | undefined>((resolve) => {
      const engine = new ProtocolEngine<Uint8Array>({
        codec: () => lengthPrefixed({ copy: true }),
        handler: { onFrame: () => void echoed++, onClosed: (_conn, error) => resolve(error) },
      });
      const conn = engine.manage(transport);
      conn.send(new Uint8Array([1, 2, 3]));
    });
    while (echoed === 0) await sleep(5);
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const error = await closed;
    assert.equal(error?.code, 'WIRE_ERR_TRANSPORT');
    assert.equal((error?.cause as { code?: string } | undefined)?.code, 'SHM_ERR_PUBLISHER_DEAD');
    assert.ok(Date.now() - killedAt < 400 + 1000, `noticed after ${Date.now() - killedAt} ms`);
  } finally {
    child.kill('SIGKILL');
  }
});

test.after(() => dir[Symbol.dispose]());
