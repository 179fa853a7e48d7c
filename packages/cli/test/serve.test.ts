/**
 * `switchyard serve` and `npm start` as real processes: a fresh data folder, the printed URL,
 * flags / environment / config file, auth beyond loopback, and graceful SIGINT/SIGTERM (in-flight
 * requests finish, the store closes so the next process opens it and finds every message).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MailboxClient } from '@switchyard/mailbox';
import { makeTempDir, repoRoot } from '@switchyard/testkit';

const bin = join(repoRoot(), 'packages', 'cli', 'bin', 'switchyard.js');

interface Running {
  readonly child: ChildProcess;
  readonly url: string;
  output(): string;
  exited: Promise<number | null>;
}

/** Spawns and waits for the "broker on <url>" line. */
async function spawnServe(
  command: string,
  args: string[],
  env: Record<string, string> = {},
  cwd = repoRoot(),
  detached = false,
): Promise<Running> {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Stop what was started (npm and its child: the whole group when detached), or the
      // process and its pipes outlive the failed test and keep the test run waiting.
      try {
        if (detached) process.kill(-child.pid!, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
      reject(new Error(`no URL within 20 s:\n${out}`));
    }, 20_000);
    const check = (): void => {
      const m = /broker on (http:\/\/[^/\s]+)\//.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`exited before serving:\n${out}`));
    });
  });
  return { child, url, output: () => out, exited };
}

test('npm start on a fresh data folder serves on loopback, prints its URL, and stops on SIGTERM', async () => {
  using dir = makeTempDir();
  const data = join(dir.path, 'fresh', 'data');
  const s = await spawnServe(
    'npm',
    ['start', '--silent'],
    { SWITCHYARD_DATA: data, SWITCHYARD_PORT: '0' },
    repoRoot(),
    true,
  );
  try {
    assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(s.output(), /auth off/);
    const client = new MailboxClient(s.url);
    await client.send({ sender: 'a', receiver: 'start', body: { x: '1' } });
    assert.equal((await client.mailboxes())[0]?.name, 'start');
    assert.ok(existsSync(join(data, 'mailbox.db')), 'SQLite under the data folder');
    const home = await fetch(`${s.url}/`);
    assert.equal(home.status, 200);
  } finally {
    process.kill(-s.child.pid!, 'SIGTERM'); // npm and its child: the process group we started
  }
  await s.exited;
  // npm may exit before its child finished closing: wait for the child's last line.
  for (let i = 0; i < 200 && !/closed/.test(s.output()); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(s.output(), /SIGTERM, closing/);
  assert.match(s.output(), /closed/);
});

test('without options it keeps SQLite under ./data of the working directory, on 127.0.0.1', async () => {
  using dir = makeTempDir();
  const s = await spawnServe(
    process.execPath,
    [bin, 'serve', '--port', '0', '--binary-port', '0'],
    {},
    dir.path,
  );
  try {
    assert.match(s.url, /^http:\/\/127\.0\.0\.1:/);
    assert.ok(existsSync(join(dir.path, 'data', 'mailbox.db')));
  } finally {
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  }
});

test('SIGINT while a long poll waits: it answers, the store closes, the next process finds every message', async () => {
  using dir = makeTempDir();
  const s = await spawnServe(process.execPath, [bin, 'serve', '--data', dir.path, '--port', '0']);
  const client = new MailboxClient(s.url);
  const sent = await client.sendMany(
    Array.from({ length: 50 }, (_, i) => ({ sender: 's', receiver: 'keep', body: { i: String(i) } })),
  );
  const poll = client.fetch('idle', { waitMs: 30_000 });
  await new Promise((r) => setTimeout(r, 200));
  const started = Date.now();
  s.child.kill('SIGINT');
  assert.equal(await poll, null, 'the long poll answered "no message"');
  assert.equal(await s.exited, 0);
  assert.ok(Date.now() - started < 5000, 'closed promptly');
  assert.match(s.output(), /SIGINT, closing\n[^]*closed/);
  const again = await spawnServe(process.execPath, [bin, 'serve', '--data', dir.path, '--port', '0']);
  try {
    const c2 = new MailboxClient(again.url);
    const headers = await c2.headers('keep', { limit: 100 });
    assert.deepEqual(headers.map((h) => h.mid).sort(), sent.map((m) => m.mid).sort());
  } finally {
    again.child.kill('SIGTERM');
    assert.equal(await again.exited, 0);
  }
});

test('config file, environment and flags: flags win, then environment, then the file; tokens turn auth on', async () => {
  using dir = makeTempDir();
  const config = join(dir.path, 'switchyard.json');
  writeFileSync(
    config,
    JSON.stringify({
      port: 1, // overridden by the environment below
      store: 'memory:',
      auth: true,
      tokens: [{ token: 'config-token-1', scopes: ['send'], mailboxes: ['in*'] }],
      broker: { mailboxDefaults: { maxDeliveries: 7 } },
    }),
  );
  const s = await spawnServe(
    process.execPath,
    [bin, 'serve', '--config', config, '--token', 'flag-token-123'],
    {
      SWITCHYARD_PORT: '0',
    },
  );
  try {
    assert.match(s.output(), /store memory:, auth on/);
    const anon = new MailboxClient(s.url);
    await assert.rejects(anon.mailboxes(), /MAILBOX_ERR_UNAUTHORIZED|authentication required/);
    const scoped = new MailboxClient(s.url, { token: 'config-token-1' });
    await scoped.send({ sender: 's', receiver: 'inbox', body: {} });
    await assert.rejects(scoped.send({ sender: 's', receiver: 'other', body: {} }), /may not use mailbox/);
    const admin = new MailboxClient(s.url, { token: 'flag-token-123' });
    const [mb] = await admin.mailboxes();
    assert.equal(mb?.settings.maxDeliveries, 7);
  } finally {
    s.child.kill('SIGTERM');
    await s.exited;
  }
});

test('beyond loopback without tokens it refuses to start; bad options name themselves', async () => {
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, 'serve', '--store', 'memory:', ...args], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      child.on('exit', (code) => resolve({ code, out }));
    });
  const open = await run(['--host', '0.0.0.0', '--port', '0']);
  assert.equal(open.code, 1);
  assert.match(open.out, /not loopback, but no tokens/);
  const badPort = await run(['--port', '99999']);
  assert.notEqual(badPort.code, 0);
  assert.match(badPort.out, /port/);
  const badEnv = await run([], { SWITCHYARD_PORT: 'many' });
  assert.equal(badEnv.code, 1);
  assert.match(badEnv.out, /SWITCHYARD_PORT/);
  const badConfig = await run(['--config', '/nonexistent/switchyard.json']);
  assert.equal(badConfig.code, 1);
  assert.match(badConfig.out, /cannot read the config file/);
});

test('SIGKILL mid-traffic: every send answered 200 and every ack answered 204 survive the restart', async () => {
  using dir = makeTempDir();
  for (let round = 0; round < 3; round++) {
    const s = await spawnServe(process.execPath, [bin, 'serve', '--data', dir.path, '--port', '0']);
    const client = new MailboxClient(s.url, { timeoutMs: 5000 });
    const sent: string[] = [];
    const confirmed: string[] = [];
    let stop = false;
    const senders = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        try {
          sent.push(
            (
              await client.send({
                sender: 's',
                receiver: 'kill',
                body: { w: String(w), i: String(i), round: String(round) },
              })
            ).mid,
          );
        } catch {
          return; // the server died
        }
      }
    });
    const consumer = (async () => {
      while (!stop) {
        try {
          const m = await client.fetch('kill', { leaseMs: 60_000 });
          if (m === null) continue;
          await client.ack(m.mid, m.lid!, 1);
          confirmed.push(m.mid);
        } catch {
          return;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 400)));
    s.child.kill('SIGKILL');
    await s.exited;
    stop = true;
    await Promise.all([...senders, consumer]);
    await client.close();
    assert.ok(sent.length > 0, 'some sends were answered before the kill');
    const again = await spawnServe(process.execPath, [bin, 'serve', '--data', dir.path, '--port', '0']);
    try {
      const c2 = new MailboxClient(again.url);
      for (const mid of sent) assert.ok((await c2.get(mid)) !== null, `acknowledged send ${mid} survived`);
      for (const mid of confirmed)
        assert.equal((await c2.get(mid))?.status, 1, `confirmed ${mid} stays confirmed`);
      const done = new Set(confirmed);
      for (const m of await c2.fetchMany('kill', { max: 1000, leaseMs: 1 }))
        assert.ok(!done.has(m.mid), `confirmed ${m.mid} delivered again`);
      await c2.close();
    } finally {
      again.child.kill('SIGTERM');
      assert.equal(await again.exited, 0);
    }
  }
});
