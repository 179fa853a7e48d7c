/**
 * `switchyard send | fetch | ack | headers | mailboxes | stats` end to end against a spawned
 * `switchyard serve`: tables by default, --json, tokens, and errors (exit code 1, the code and
 * message on stderr).
 */
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '@switchyard/testkit';
import { main } from 'switchyard';

const bin = join(repoRoot(), 'packages', 'cli', 'bin', 'switchyard.js');
const TOKEN = 'cli-test-token-1';
let child: ChildProcess;
let url = '';

before(async () => {
  child = spawn(
    process.execPath,
    [bin, 'serve', '--store', 'memory:', '--port', '0', '--auth', '--token', TOKEN],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no URL: ${out}`)), 20_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /broker on (http:\/\/[^/\s]+)\//.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
});

after(async () => {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
});

async function cli(argv: string[], auth = true): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const args = [...argv, '--url', url, ...(auth ? ['--token', TOKEN] : [])];
  const code = await main(args, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

test('send, headers, fetch, ack, mailboxes, stats: tables and --json', async () => {
  const sent = await cli(['send', 'work', 'task=build', 'tag=a', 'tag=b c', '--from', 'ci']);
  assert.equal(sent.code, 0, sent.stderr);
  const mid = /^sent ([0-9a-f]{40}) to work/.exec(sent.stdout)?.[1];
  assert.ok(mid, sent.stdout);
  const js = await cli(['send', 'work', '--body', '{"n":"2"}', '--delay', '1h', '--json']);
  const delayed = JSON.parse(js.stdout) as { mid: string; delayMs: number };
  assert.equal(delayed.delayMs, 3_600_000);

  const headers = await cli(['headers', 'work']);
  assert.equal(headers.code, 0);
  assert.match(headers.stdout, /^MID +STATE +STATUS +DELIVERIES +RECEIVED +DUE +SENDER +BYTES\n/);
  assert.match(headers.stdout, new RegExp(`${mid} +queued +notDelivered +0 `));
  assert.equal((JSON.parse((await cli(['headers', 'work', '--json'])).stdout) as unknown[]).length, 2);
  // Paged: one per page, the next page's command printed, every message once.
  const first = await cli(['headers', 'work', '--limit', '1']);
  const next = /next page: switchyard headers work --cursor (\S+)\n$/.exec(first.stdout)?.[1];
  assert.ok(next, first.stdout);
  const second = await cli(['headers', 'work', '--limit', '1', '--cursor', next, '--json']);
  assert.equal(second.code, 0, second.stderr);
  const page2 = JSON.parse(second.stdout) as { mid: string }[];
  assert.equal(page2.length, 1);
  assert.ok(!first.stdout.includes(page2[0]!.mid), 'the second page holds the other message');
  assert.equal(second.stderr, '', 'no next page after the last');
  const bad = await cli(['headers', 'work', '--cursor', 'not-a-cursor']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /MAILBOX_ERR_INVALID_ARGUMENT|cursor/);

  const fetched = await cli(['fetch', 'work', '--lease', '1m']);
  assert.equal(fetched.code, 0, fetched.stderr);
  assert.match(fetched.stdout, /^MID +LID +DELIVERY +LEASED UNTIL +SENDER +BODY\n/);
  const row = new RegExp(`${mid} +([0-9a-f]{32}) +1 +\\S+ +ci +tag=a&tag=b\\+c&task=build`).exec(
    fetched.stdout,
  );
  assert.ok(row, fetched.stdout);
  const lid = row[1]!;
  const none = await cli(['fetch', 'work']);
  assert.equal(none.stdout, 'no message due in work\n');
  assert.equal((await cli(['fetch', 'work', '--json'])).stdout, '[]\n');

  const acked = await cli(['ack', mid, lid]);
  assert.equal(acked.code, 0, acked.stderr);
  assert.equal(acked.stdout, `confirmed ${mid}\n`);

  const boxes = await cli(['mailboxes']);
  assert.match(
    boxes.stdout,
    /^NAME +READY +DELAYED +IN FLIGHT +CONFIRMED +MAX DELIVERIES +RETRY DELAY\nwork +0 +1 +0 +1 +5 +1000ms\n$/,
  );
  const boxesJson = JSON.parse((await cli(['mailboxes', '--json'])).stdout) as {
    name: string;
    confirmed: number;
  }[];
  assert.deepEqual(
    boxesJson.map((b) => [b.name, b.confirmed]),
    [['work', 1]],
  );

  const stats = await cli(['stats']);
  assert.match(stats.stdout, /^sends +2$/m);
  assert.match(stats.stdout, /^confirmed +1$/m);
  assert.equal((JSON.parse((await cli(['stats', '--json'])).stdout) as { sends: number }).sends, 2);
});

test('errors: exit code 1 with the code on stderr, nothing changed', async () => {
  const before = (await cli(['stats', '--json'])).stdout;
  const stale = await cli(['ack', 'a'.repeat(40), 'b'.repeat(32)]);
  assert.equal(stale.code, 1);
  assert.match(stale.stderr, /^switchyard ack: MAILBOX_ERR_NOT_FOUND: /);
  const badName = await cli(['send', 'bad name', 'x=1']);
  assert.equal(badName.code, 1);
  assert.match(badName.stderr, /MAILBOX_ERR_INVALID_ARGUMENT/);
  const badField = await cli(['send', 'work', 'novalue']);
  assert.equal(badField.code, 1);
  assert.match(badField.stderr, /key=value/);
  const badDelay = await cli(['send', 'work', 'x=1', '--delay', 'soon']);
  assert.notEqual(badDelay.code, 0);
  assert.match(badDelay.stderr, /Go duration/);
  const noToken = await cli(['mailboxes'], false);
  assert.equal(noToken.code, 1);
  assert.match(noToken.stderr, /MAILBOX_ERR_UNAUTHORIZED/);
  const down = await main(['stats', '--url', 'http://127.0.0.1:1'], { stdout: () => {}, stderr: () => {} });
  assert.equal(down, 1);
  const after = JSON.parse((await cli(['stats', '--json'])).stdout) as Record<string, unknown>;
  const was = JSON.parse(before) as Record<string, unknown>;
  assert.deepEqual(after.store, was.store);
  assert.equal(after.sends, was.sends);
});

test('the binary runs the commands too (token from SWITCHYARD_TOKEN)', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [bin, 'send', 'bin', 'x=1', '--url', url, '--json'],
    {
      env: { ...process.env, SWITCHYARD_TOKEN: TOKEN },
    },
  );
  assert.match((JSON.parse(stdout) as { mid: string }).mid, /^[0-9a-f]{40}$/);
});
