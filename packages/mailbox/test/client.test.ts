/**
 * MailboxClient over HTTP: every method, errors as MailboxErrors with the server's codes,
 * consume (concurrency, reject on throw, leases extended past their length, a lost lease
 * aborting the handler and the message delivered again), and a client-only import that never
 * loads the native SQLite module.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import {
  MailboxClient,
  MailboxError,
  MailboxHttpError,
  MailboxLeaseInvalidError,
  MailboxServer,
} from '@switchyard/mailbox';
import type { Message } from '@switchyard/mailbox';
import { repoRoot } from '@switchyard/testkit';
import { startServer } from './http-helpers.js';

let server: MailboxServer;
let client: MailboxClient;
before(async () => {
  server = await startServer({
    broker: { store: 'memory:', sweepIntervalMs: 50, mailboxDefaults: { retryDelayMs: 0, maxDeliveries: 5 } },
  });
  client = new MailboxClient(server.url);
});
after(async () => {
  await server.close();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('importing the package for the client does not load better-sqlite3', () => {
  const script = `
    import { createRequire } from 'node:module';
    import { MailboxClient } from '@switchyard/mailbox';
    new MailboxClient('http://127.0.0.1:1');
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('better-sqlite3'));
    process.stdout.write(JSON.stringify(loaded));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: repoRoot(),
    encoding: 'utf8',
  });
  assert.equal(out, '[]');
});

describe('MailboxClient', () => {
  test('send, sendMany, fetch, extend, ack, get, headers with dates revived', async () => {
    const sent = await client.send({
      sender: 'a',
      receiver: 'c1',
      body: { x: '1' },
      clientTime: new Date(1_700_000_000_000),
    });
    assert.ok(sent.receivedAt instanceof Date);
    assert.equal(sent.clientTime.getTime(), 1_700_000_000_000);
    const again = await client.send({
      sender: 'a',
      receiver: 'c1',
      body: { x: '1' },
      clientTime: new Date(1_700_000_000_000),
    });
    assert.equal(again.mid, sent.mid, 'idempotent send');
    const many = await client.sendMany(
      [1, 2].map((i) => ({ sender: 'a', receiver: 'c1', body: { i: String(i) }, delayMs: 0 })),
    );
    assert.equal(many.length, 2);
    assert.equal((await client.headers('c1')).length, 3);
    const m = (await client.fetch('c1', { leaseMs: 500, consumer: 'me' }))!;
    assert.equal(m.mid, sent.mid);
    assert.ok(m.leasedUntil instanceof Date);
    const ext = await client.extend(m.mid, m.lid!, 60_000);
    assert.ok(ext.leasedUntil!.getTime() > m.leasedUntil.getTime());
    await client.ack(m.mid, m.lid!, 1);
    const got = (await client.get(m.mid))!;
    assert.equal(got.status, 1);
    assert.equal(got.attempts?.[0]?.consumer, 'me');
    assert.ok(got.attempts?.[0]?.endedAt instanceof Date);
    assert.equal(await client.get('0'.repeat(40)), null);
    const rest = await client.fetchMany('c1', { max: 10 });
    assert.equal(rest.length, 2);
    const acked = await client.ackMany([
      { mid: rest[0]!.mid, lid: rest[0]!.lid!, status: 1 },
      { mid: rest[1]!.mid, lid: 'f'.repeat(32), status: 1 },
    ]);
    assert.equal(acked[0]?.ok, true);
    assert.ok(acked[1]?.error instanceof MailboxLeaseInvalidError);
    await client.ack(rest[1]!.mid, rest[1]!.lid!, 1);
    assert.equal(await client.fetch('c1'), null);
  });

  test('dead letters, redrive, purge, configure, mailboxes, stats, reenqueue', async () => {
    const info = await client.configure('c2', { maxDeliveries: 1 });
    assert.equal(info.settings.maxDeliveries, 1);
    assert.ok(info.createdAt instanceof Date);
    await client.send({ sender: 'a', receiver: 'c2', body: { d: '1' } });
    const m = (await client.fetch('c2'))!;
    await client.ack(m.mid, m.lid!, 2);
    const dead = await client.deadLetters('c2');
    assert.deepEqual(
      dead.map((h) => h.mid),
      [m.mid],
    );
    assert.equal(await client.redrive('c2'), 1);

    // Paging by cursor: 9 sent in one batch (one millisecond), read 4 at a time.
    const many = await client.sendMany(
      Array.from({ length: 9 }, (_, i) => ({ sender: 'a', receiver: 'c3', body: { i: String(i) } })),
    );
    const seen: string[] = [];
    let page = await client.headersPage('c3', { limit: 4 });
    for (;;) {
      assert.ok(page.messages.every((h) => h.receivedAt instanceof Date));
      seen.push(...page.messages.map((h) => h.mid));
      if (page.next === null) break;
      page = await client.headersPage('c3', { limit: 4, cursor: page.next });
    }
    assert.deepEqual(
      seen,
      many.map((m) => m.mid),
    );
    const firstDead = await client.deadLettersPage('c3', { limit: 1 });
    assert.deepEqual(firstDead, { messages: [], next: null });
    await assert.rejects(
      client.headers('c3', { cursor: 'bogus!' }),
      (e: unknown) => e instanceof MailboxError && e.code === 'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    await assert.rejects(
      client.deadLetters('c3', { cursor: 'Zm9v' }),
      (e: unknown) => e instanceof MailboxError && e.code === 'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    assert.equal(await client.purge('c2'), 1);
    assert.ok((await client.mailboxes()).some((x) => x.name === 'c2.dead'));
    assert.equal(typeof (await client.stats()).sends, 'number');
    assert.equal(await client.reenqueue(), 0);
  });

  test('errors carry the server codes; an unreachable server is MAILBOX_ERR_HTTP', async () => {
    await client.send({ sender: 'a', receiver: 'c3', body: {} });
    const m = (await client.fetch('c3'))!;
    await assert.rejects(client.ack(m.mid, 'f'.repeat(32), 1), (e) => e instanceof MailboxLeaseInvalidError);
    await assert.rejects(
      client.send({ sender: 'a', receiver: 'bad name', body: {} }),
      (e) => e instanceof MailboxError && e.code === 'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    const dead = new MailboxClient('http://127.0.0.1:1', { timeoutMs: 2000 });
    await assert.rejects(dead.stats(), (e) => e instanceof MailboxHttpError && e.status === 0);
    assert.throws(() => new MailboxClient('ftp://x'), /http/);
    assert.throws(() => new MailboxClient('not a url'), /not a URL/);
    const ac = new AbortController();
    const poll = client.fetch('c-empty', { waitMs: 10_000, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop')), 50);
    await assert.rejects(poll, /stop/);
  });

  test('a token is sent as a bearer token', async () => {
    const secured = await MailboxServer.start({
      broker: { store: 'memory:' },
      port: 0,
      auth: true,
      tokens: ['client-token-1'],
    });
    try {
      await assert.rejects(
        new MailboxClient(secured.url).stats(),
        (e) => e instanceof MailboxError && e.code === 'MAILBOX_ERR_UNAUTHORIZED',
      );
      const ok = new MailboxClient(secured.url, { token: 'client-token-1' });
      assert.equal(typeof (await ok.stats()).sends, 'number');
    } finally {
      await secured.close();
    }
  });
});

describe('MailboxClient.consume', () => {
  test('confirms what the handler finished, rejects what it threw (delivered again), stops on the signal', async () => {
    const n = 20;
    await client.sendMany(
      Array.from({ length: n }, (_, i) => ({ sender: 's', receiver: 'cons', body: { i: String(i) } })),
    );
    const seen = new Map<string, number>();
    let running = 0;
    let maxRunning = 0;
    const ac = new AbortController();
    const done = client.consume(
      'cons',
      async (m: Message) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(10);
        running--;
        const i = m.body.i as string;
        seen.set(i, (seen.get(i) ?? 0) + 1);
        if (i === '3' && m.deliveryCount === 1) throw new Error('first try of 3 fails');
      },
      { concurrency: 4, leaseMs: 5000, waitMs: 200, signal: ac.signal, onError: () => {} },
    );
    for (let i = 0; i < 200 && seen.size < n; i++) await sleep(20);
    await sleep(100);
    ac.abort();
    await done;
    assert.equal(seen.size, n);
    assert.equal(seen.get('3'), 2, 'rejected, then delivered again');
    for (const [i, count] of seen) if (i !== '3') assert.equal(count, 1, `message ${i} once`);
    assert.ok(maxRunning > 1 && maxRunning <= 4, `concurrency ${maxRunning}`);
    const info = (await client.mailboxes()).find((x) => x.name === 'cons')!;
    assert.equal(info.confirmed, n);
    assert.equal(info.ready + info.inFlight, 0);
  });

  test('50 workers on one signal: no MaxListenersExceededWarning, the caller signal untouched', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      await client.sendMany(
        Array.from({ length: 60 }, (_, i) => ({ sender: 's', receiver: 'many', body: { i: String(i) } })),
      );
      let handled = 0;
      const ac = new AbortController();
      const done = client.consume(
        'many',
        async () => {
          handled++;
          await sleep(5);
        },
        { concurrency: 50, leaseMs: 5000, waitMs: 100, signal: ac.signal },
      );
      for (let i = 0; i < 200 && handled < 60; i++) await sleep(20);
      ac.abort();
      await done;
      await new Promise((r) => setImmediate(r));
      assert.equal(handled, 60);
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
        [],
      );
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('a handler slower than the lease keeps it by extension: no second delivery', async () => {
    const sent = await client.send({ sender: 's', receiver: 'slow', body: { x: '1' } });
    const ac = new AbortController();
    let calls = 0;
    const done = client.consume(
      'slow',
      async () => {
        calls++;
        await sleep(900); // three leases long
        ac.abort();
      },
      { leaseMs: 300, waitMs: 100, signal: ac.signal },
    );
    await sleep(500);
    assert.equal(await client.fetch('slow'), null, 'the lease held past its first term');
    await done;
    assert.equal(calls, 1);
    const m = (await client.get(sent.mid))!;
    assert.equal(m.status, 1);
    assert.equal(m.deliveryCount, 1);
  });

  test('a lost lease (extensions fail) aborts the handler; the ack fails and the message comes back', async () => {
    const sent = await client.send({ sender: 's', receiver: 'lost', body: { x: '1' } });
    // A network that drops every extension: the lease runs out while the handler works.
    const flaky = new MailboxClient(server.url, {
      fetch: async (input, init) => {
        if (
          (typeof input === 'string' ? input : input instanceof URL ? input.href : input.url).endsWith(
            '/extend',
          )
        )
          throw new TypeError('network down');
        return fetch(input, init);
      },
    });
    const errors: unknown[] = [];
    const ac = new AbortController();
    let aborted = false;
    const done = flaky.consume(
      'lost',
      async (_m, { signal }) => {
        await new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          });
          setTimeout(resolve, 2000);
        });
        await sleep(400); // past the lease: the broker's sweep ends it
        ac.abort();
      },
      { leaseMs: 300, waitMs: 100, signal: ac.signal, onError: (e) => errors.push(e) },
    );
    await done;
    assert.ok(aborted, 'the handler saw its lease go');
    assert.ok(
      errors.some((e) => e instanceof MailboxHttpError),
      'the failed extension was reported',
    );
    assert.ok(
      errors.some((e) => e instanceof MailboxLeaseInvalidError),
      'the late ack was refused',
    );
    const again = (await client.fetch('lost'))!;
    assert.equal(again.mid, sent.mid);
    assert.equal(again.deliveryCount, 2);
    assert.equal((await client.get(sent.mid))?.attempts?.[0]?.outcome, 4, 'the first attempt timed out');
    await client.ack(again.mid, again.lid!, 1);
  });

  test('bad arguments', async () => {
    await assert.rejects(client.consume('x', null as never), /handler/);
    await assert.rejects(
      client.consume('x', () => {}, { concurrency: 0 }),
      /concurrency/,
    );
    await assert.rejects(
      client.consume('x', () => {}, { leaseMs: 1 }),
      /leaseMs/,
    );
  });
});

test('a keep-alive socket the server reset while idle: the request goes again on a new connection, once', async () => {
  // A minimal HTTP server: every connection answers its first request (keep-alive) and resets
  // on its second, as a server closing an idle socket does to a request racing the close.
  const { createServer } = await import('node:net');
  let connections = 0;
  let answered = 0;
  const raw = createServer((socket) => {
    connections++;
    let requests = 0;
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      while (buffered.includes('\r\n\r\n')) {
        buffered = buffered.slice(buffered.indexOf('\r\n\r\n') + 4);
        if (++requests > 1) {
          socket.resetAndDestroy();
          return;
        }
        answered++;
        const body = '{"ok":true}';
        socket.write(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: keep-alive\r\n\r\n${body}`,
        );
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const port = (raw.address() as { port: number }).port;
  const c = new MailboxClient(`http://127.0.0.1:${port}`);
  try {
    assert.deepEqual(await c.request('GET', '/v1/stats'), { ok: true });
    // Reuses the idle socket, which resets: retried once on a new connection.
    assert.deepEqual(await c.request('GET', '/v1/stats'), { ok: true });
    assert.equal(connections, 2);
    assert.equal(answered, 2);
    // A request that fails on a fresh socket is not retried: the error surfaces.
    raw.close();
    await c.close();
    await assert.rejects(
      () => c.request('GET', '/v1/stats'),
      (e: unknown) => e instanceof MailboxHttpError && e.status === 0,
    );
  } finally {
    await c.close();
    raw.close();
  }
});
