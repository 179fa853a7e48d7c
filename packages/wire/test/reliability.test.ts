import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { lengthPrefixed, ProtocolEngine, type WireError } from '@switchyard/wire';

const CHILD = fileURLToPath(new URL('./helpers/clients.child.js', import.meta.url));

async function until(predicate: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function spawnClients(port: number, ...args: string[]): ChildProcess {
  return fork(CHILD, [String(port), ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function kill(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

test(
  '10 000 idle TCP connections hold no read or write buffer (pool statistics)',
  { timeout: 60_000 },
  async () => {
    let frames = 0;
    const engine = new ProtocolEngine<Uint8Array>(
      {
        codec: lengthPrefixed,
        handler: {
          onFrame: (conn, frame) => {
            frames++;
            conn.send(frame); // every connection reads and writes once, then goes idle
          },
        },
      },
      { maxConnections: 20_000 },
    );
    const listener = await engine.listen('tcp://127.0.0.1:0');
    const child = spawnClients(listener.port, 'idle', '10000');
    try {
      await once(child, 'message');
      await until(() => frames === 10_000, `10 000 frames (got ${frames})`);
      await sleep(100);
      assert.equal(engine.connections.size, 10_000);
      const stats = engine.poolStats();
      assert.equal(stats.leased, 0, 'no connection holds a buffer');
      assert.equal(stats.leasedBytes, 0);
      assert.ok(stats.idle <= engine.options.maxBufferPoolSize, 'the pool keeps at most maxBufferPoolSize');
    } finally {
      kill(child);
      await until(() => engine.connections.size === 0, 'connections closed after the kill');
      await engine.close();
    }
  },
);

test(
  'a client killed (SIGKILL) mid-frame fails only its own connection; others carry on',
  { timeout: 30_000 },
  async () => {
    const closed: (WireError | undefined)[] = [];
    let frames = 0;
    const engine = new ProtocolEngine<Uint8Array>({
      codec: lengthPrefixed,
      handler: {
        onFrame: (conn, f) => {
          frames++;
          conn.send(f);
        },
        onClosed: (_c, e) => void closed.push(e),
      },
    });
    const listener = await engine.listen('tcp://127.0.0.1:0');
    const echoes: number[] = [];
    const survivor = new ProtocolEngine<Uint8Array>({
      codec: lengthPrefixed,
      handler: { onFrame: (_c, f) => void echoes.push(f.length) },
    });
    const conn = await survivor.connect(listener.address);
    const child = spawnClients(listener.port, 'partial');
    try {
      await once(child, 'message');
      await until(() => frames === 2, 'two complete frames from the child');
      kill(child);
      await until(() => closed.length === 1, 'the killed client is closed');
      assert.ok(
        closed[0]?.code === 'WIRE_ERR_TRUNCATED_FRAME' || closed[0]?.code === 'WIRE_ERR_TRANSPORT',
        `closed with ${closed[0]?.code}`,
      );
      conn.send(new Uint8Array(10));
      await until(() => echoes.length === 1, 'the other connection still echoes');
      assert.equal(engine.connections.size, 1);
    } finally {
      kill(child);
      await survivor.close();
      await engine.close();
    }
  },
);

test(
  'a peer that stalls mid-frame is closed by the idle timeout; a torn frame never hangs the engine',
  { timeout: 10_000 },
  async () => {
    const errors: string[] = [];
    const engine = new ProtocolEngine<Uint8Array>(
      { codec: lengthPrefixed, handler: { onFrame: () => {}, onError: (_c, e) => void errors.push(e.code) } },
      { idleTimeoutMs: 100 },
    );
    const listener = await engine.listen('tcp://127.0.0.1:0');
    const socket = connect({ host: '127.0.0.1', port: listener.port });
    await once(socket, 'connect');
    socket.resume(); // read, so the server's close is seen
    const socketClosed = once(socket, 'close');
    socket.write(Uint8Array.of(0, 0, 0, 50, 1, 2)); // and then nothing
    await until(() => errors.length === 1, 'idle timeout');
    assert.deepEqual(errors, ['WIRE_ERR_IDLE_TIMEOUT']);
    await socketClosed;
    assert.equal(engine.connections.size, 0);
    await engine.close();
  },
);
