import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { makeTempDir } from '@switchyard/testkit';

const SERVER = fileURLToPath(new URL('../examples/echo-server.js', import.meta.url));
const CLIENT = fileURLToPath(new URL('../examples/echo-client.js', import.meta.url));

function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Runs a command to completion with stdin, returning stdout (fails after `ms`). */
async function run(
  cmd: string,
  args: string[],
  input = '',
  ms = 10_000,
): Promise<{ code: number | null; out: string }> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stdin.end(input);
  const timer = setTimeout(() => stop(child, 'SIGKILL'), ms);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, out };
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts the example server and waits for its `listening <address>` line. */
async function startServer(address: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, [SERVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  const bound = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 10_000);
    child.stdout.on('data', (d: string) => {
      out += d;
      const m = /listening (\S+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return { child, address: bound };
}

test(
  'echo-server answers nc and socat over TCP, and socat over a Unix socket',
  { timeout: 30_000 },
  async () => {
    using dir = makeTempDir('wire-echo-');
    const tcp = await startServer('tcp://127.0.0.1:0');
    const unix = await startServer(`unix:${join(dir.path, 'echo.sock')}`);
    try {
      const port = /:(\d+)$/.exec(tcp.address)?.[1] ?? '';
      const viaNc = await run('nc', ['-N', '127.0.0.1', port], 'hello\nwörld\n');
      assert.equal(viaNc.out, 'hello\nwörld\n');
      const viaSocat = await run('socat', ['-t', '2', '-', `TCP:127.0.0.1:${port}`], 'one\r\ntwo\n');
      assert.equal(viaSocat.out, 'one\ntwo\n', 'CRLF lines come back as LF lines');
      const viaUnix = await run(
        'socat',
        ['-t', '2', '-', `UNIX-CONNECT:${unix.address.slice(5)}`],
        'over unix\n',
      );
      assert.equal(viaUnix.out, 'over unix\n');
    } finally {
      stop(tcp.child);
      stop(unix.child);
    }
    const [code] = (await once(tcp.child, 'exit')) as [number | null];
    assert.equal(code, 0, 'SIGTERM closes the server gracefully');
  },
);

test(
  'echo-client talks to a plain socat line echo server (TCP and Unix socket)',
  { timeout: 30_000 },
  async () => {
    using dir = makeTempDir('wire-echo-');
    const port = await freePort();
    const sock = join(dir.path, 'socat.sock');
    const tcpEcho = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, 'EXEC:cat'], {
      stdio: 'ignore',
    });
    const unixEcho = spawn('socat', [`UNIX-LISTEN:${sock},fork`, 'EXEC:cat'], { stdio: 'ignore' });
    try {
      let result = { code: 1 as number | null, out: '' };
      // socat needs a moment to bind; retry the client briefly.
      for (let attempt = 0; attempt < 20 && result.code !== 0; attempt++) {
        if (attempt > 0) await sleep(100);
        result = await run(process.execPath, [CLIENT, `tcp://127.0.0.1:${port}`, 'first', 'second']);
      }
      assert.equal(result.code, 0, result.out);
      assert.match(result.out, /Received a message from 127\.0\.0\.1:\d+: 'first'/);
      assert.match(result.out, /Received a message from 127\.0\.0\.1:\d+: 'second'/);
      assert.match(result.out, /Disconnected from/);
      let viaUnix = { code: 1 as number | null, out: '' };
      for (let attempt = 0; attempt < 20 && viaUnix.code !== 0; attempt++) {
        if (attempt > 0) await sleep(100);
        viaUnix = await run(process.execPath, [CLIENT, `unix:${sock}`]);
      }
      assert.equal(viaUnix.code, 0, viaUnix.out);
      assert.match(viaUnix.out, /'Supercalifragilisticexpialidocious!'/);
    } finally {
      stop(tcpEcho);
      stop(unixEcho);
    }
  },
);

test(
  'echo-client and echo-server talk to each other; the client fails cleanly with no server',
  { timeout: 30_000 },
  async () => {
    const server = await startServer('tcp://127.0.0.1:0');
    try {
      const result = await run(process.execPath, [CLIENT, server.address, 'ping']);
      assert.equal(result.code, 0);
      assert.match(result.out, /'ping'/);
    } finally {
      stop(server.child);
    }
    const port = await freePort();
    const refused = await run(process.execPath, [CLIENT, `tcp://127.0.0.1:${port}`]);
    assert.equal(refused.code, 1);
  },
);
