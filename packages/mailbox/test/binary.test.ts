// The binary API on @switchyard/stream: batched sends after the group commit, push
// subscriptions bounded by credit, acks on the same connection, tokens, bad inputs, and
// `consume` through connectMailbox on both the binary and the HTTP API.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import {
  Broker,
  MailboxBinaryClient,
  MailboxBinaryServer,
  MailboxClient,
  MailboxError,
  MailboxServer,
  connectMailbox,
} from '@switchyard/mailbox';
import type { Message } from '@switchyard/mailbox';
import { StreamClient, StreamRemoteError } from '@switchyard/stream';
import { makeTempDir, repoRoot } from '@switchyard/testkit';

const body = (i: number): Record<string, string> => ({ n: String(i), pad: 'x'.repeat(200) });
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof MailboxError && e.code === code);
}

async function setup(options: { sweepIntervalMs?: number } = {}): Promise<{
  broker: Broker;
  server: MailboxBinaryServer;
  url: string;
  [Symbol.asyncDispose](): Promise<void>;
}> {
  const broker = await Broker.open({
    store: 'memory:',
    sweepIntervalMs: options.sweepIntervalMs ?? 20,
    mailboxDefaults: { retryDelayMs: 0, maxDeliveries: 100 },
  });
  const server = new MailboxBinaryServer(broker, { port: 0 });
  const url = await server.listen();
  return {
    broker,
    server,
    url,
    async [Symbol.asyncDispose]() {
      await server.close();
      await broker.close();
    },
  };
}

describe('binary API calls', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let client: MailboxBinaryClient;
  before(async () => {
    env = await setup();
    client = new MailboxBinaryClient(env.url);
  });
  after(async () => {
    await client.close();
    await env[Symbol.asyncDispose]();
  });

  test('listen answers a switchyard:// address on 127.0.0.1', () => {
    assert.match(env.url, /^switchyard:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(env.server.address, env.url);
  });

  test('send resolves with the stored message; fetch, extend and ack work through it', async () => {
    const sent = await client.send({ sender: 'a', receiver: 'calls', body: { k: ['v1', 'v2'] } });
    assert.match(sent.mid, /^[0-9a-f]{40}$/);
    assert.ok(sent.receivedAt instanceof Date);
    assert.deepEqual((await env.broker.get(sent.mid))?.body, { k: ['v1', 'v2'] });
    const m = await client.fetch('calls', { leaseMs: 5000 });
    assert.ok(m !== null);
    assert.equal(m.mid, sent.mid);
    assert.deepEqual(m.body, { k: ['v1', 'v2'] });
    const extended = await client.extend(m.mid, m.lid!, 60_000);
    assert.ok(extended.leasedUntil!.getTime() > m.leasedUntil!.getTime());
    await client.ack(m.mid, m.lid!, 1);
    assert.equal((await env.broker.get(m.mid))?.status, 1);
    await rejectsWithCode(client.ack(m.mid, m.lid!, 1), 'MAILBOX_ERR_LEASE_INVALID');
    assert.equal(await client.fetch('calls'), null);
  });

  test("every field survives the wire: sent, fetched, extended and pushed messages equal the broker's own", async () => {
    const sent = await client.send({
      sender: 'fields',
      receiver: 'wire-fields',
      body: { k: ['v1', 'v2'], é: 'ü "quoted" \\ \n', empty: '' },
      delayMs: 0,
      clientTime: new Date('2026-03-04T05:06:07.089Z'),
    });
    const { attempts: _none, ...stored } = (await env.broker.get(sent.mid))!;
    assert.deepEqual(sent, stored);
    const m = (await client.fetch('wire-fields', { leaseMs: 5000, consumer: 'c1' }))!;
    const { attempts: _a, ...leased } = (await env.broker.get(m.mid))!;
    assert.deepEqual(m, leased);
    assert.equal(m.state, 'leased');
    assert.equal(m.sendWhen.getTime(), stored.receivedAt.getTime());
    const extended = await client.extend(m.mid, m.lid!, 60_000);
    const { attempts: _b, ...after } = (await env.broker.get(m.mid))!;
    assert.deepEqual(extended, after);
    await client.ack(m.mid, m.lid!, 2); // rejected: queued again after the retry delay
    const ac = new AbortController();
    const pushed = client.subscribe('wire-fields', { prefetch: 1, leaseMs: 5000, signal: ac.signal });
    const next = await pushed.next();
    ac.abort();
    const { attempts: _c, ...again } = (await env.broker.get(m.mid))!;
    assert.deepEqual(next.value, again);
    assert.equal(again.deliveryCount, 2);
    await pushed.return(undefined).catch(() => {});
  });

  test("pushed messages of any valid names and bodies equal the broker's own (fast-check)", async () => {
    // Pushed frames are JSON written by hand around the body: names of every allowed character
    // and bodies of any text (quotes, backslashes, control characters, astral planes) must
    // come back exactly as the broker stores them.
    const name = fc.stringMatching(/^[A-Za-z0-9@._\-:/]{1,24}$/);
    const text = fc.string({ unit: 'binary', maxLength: 40 });
    const bodyArb = fc.dictionary(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }),
      fc.oneof(text, fc.array(text, { minLength: 2, maxLength: 3 })),
      { maxKeys: 4 },
    );
    let round = 0;
    await fc.assert(
      fc.asyncProperty(name, name, bodyArb, async (sender, receiver, b) => {
        const mailbox = `${receiver}.${round++}`; // a fresh mailbox: the push takes this message
        const sent = await client.send({ sender, receiver: mailbox, body: b });
        const ac = new AbortController();
        const pushed = client.subscribe(mailbox, { prefetch: 1, leaseMs: 5000, signal: ac.signal });
        const next = await pushed.next();
        ac.abort();
        await pushed.return(undefined).catch(() => {});
        const { attempts: _none, ...stored } = (await env.broker.get(sent.mid))!;
        assert.deepEqual(next.value, stored);
      }),
      { numRuns: 60 },
    );
  });

  test('sends made in one turn share requests and every one is committed when it resolves', async () => {
    const before = (await env.broker.stats()).batches;
    const sent = await Promise.all(
      Array.from({ length: 300 }, (_, i) => client.send({ sender: 'a', receiver: 'many', body: body(i) })),
    );
    assert.equal(new Set(sent.map((m) => m.mid)).size, 300);
    const stats = await env.broker.stats();
    assert.ok(stats.batches - before < 300, `${stats.batches - before} commits for 300 sends`);
    const headers = await env.broker.headers('many', { limit: 1000 });
    assert.equal(headers.length, 300);
    const many = await client.sendMany(
      [0, 1, 2].map((i) => ({ sender: 'a', receiver: 'many', body: body(i) })),
    );
    assert.equal(many.length, 3);
  });

  test('an identical send with a clientTime is stored once', async () => {
    const clientTime = new Date('2026-01-02T03:04:05Z');
    const a = await client.send({ sender: 'a', receiver: 'idem', body: { x: '1' }, clientTime });
    const b = await client.send({ sender: 'a', receiver: 'idem', body: { x: '1' }, clientTime });
    assert.equal(a.mid, b.mid);
    assert.equal((await env.broker.headers('idem')).length, 1);
  });

  test('bad items fail alone with their code; the rest of the batch is stored', async () => {
    const results = await Promise.allSettled([
      client.send({ sender: 'a', receiver: 'bad name!', body: {} }),
      client.send({ sender: 'a', receiver: 'ok', body: { a: '1' } }),
      client.send({ sender: 'a', receiver: 'ok', body: { a: 'x'.repeat(300 * 1024) } }),
      client.send({ sender: 'a', receiver: 'ok', body: {}, delayMs: -1 }),
    ]);
    const codes = results.map((r) => (r.status === 'rejected' ? (r.reason as MailboxError).code : 'ok'));
    assert.deepEqual(codes, [
      'MAILBOX_ERR_INVALID_MAILBOX',
      'ok',
      'MAILBOX_ERR_MESSAGE_TOO_LARGE',
      'MAILBOX_ERR_INVALID_ARGUMENT',
    ]);
    assert.equal((await env.broker.headers('ok')).length, 1);
    await rejectsWithCode(client.ack('0'.repeat(40), '0'.repeat(32), 1), 'MAILBOX_ERR_NOT_FOUND');
    await rejectsWithCode(client.ack('zz', '0'.repeat(32), 1), 'MAILBOX_ERR_INVALID_ARGUMENT');
    await rejectsWithCode(client.ack('0'.repeat(40), '0'.repeat(32), 3 as 1), 'MAILBOX_ERR_INVALID_ARGUMENT');
    await rejectsWithCode(client.fetchMany('ok', { max: 0 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
    await rejectsWithCode(client.send(null as never), 'MAILBOX_ERR_INVALID_ARGUMENT');
  });

  test('malformed requests are refused with a mailbox code and change nothing', async () => {
    await using raw = new StreamClient();
    const endpoint = env.url.replace('switchyard://', 'tcp://');
    const post = async (bytes: Uint8Array): Promise<string> => {
      try {
        for await (const s of raw.post(endpoint, bytes)) for await (const _ of s.frames) return 'answered';
      } catch (error) {
        assert.ok(error instanceof StreamRemoteError);
        return error.remoteCode;
      }
      return 'nothing';
    };
    const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
    assert.equal(await post(new TextEncoder().encode('{not json')), 'MAILBOX_ERR_INVALID_ARGUMENT');
    assert.equal(await post(enc([1, 2])), 'MAILBOX_ERR_INVALID_ARGUMENT');
    assert.equal(await post(enc({ op: 'drop' })), 'MAILBOX_ERR_INVALID_ARGUMENT');
    assert.equal(await post(enc({ op: 'send', messages: [] })), 'MAILBOX_ERR_INVALID_ARGUMENT');
    assert.equal(await post(enc({ op: 'send', messages: 'x' })), 'MAILBOX_ERR_INVALID_ARGUMENT');
    assert.equal(
      await post(enc({ op: 'send', messages: Array.from({ length: 1001 }, () => ({})) })),
      'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    assert.equal(
      await post(enc({ op: 'subscribe', receiver: 'x', prefetch: 0 })),
      'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    assert.equal(await post(enc({ op: 'subscribe', receiver: 7 })), 'MAILBOX_ERR_INVALID_ARGUMENT');
    assert.equal(
      await post(enc({ op: 'subscribe', receiver: 'x', prefetch: 1e9 })),
      'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    assert.equal(
      (await env.broker.mailboxes()).some((m) => m.name === 'x'),
      false,
    );
  });

  test('fuzzed requests: every one is answered or refused with a mailbox code, and the server goes on', async () => {
    await using raw = new StreamClient();
    const endpoint = env.url.replace('switchyard://', 'tcp://');
    const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
    const field = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
    );
    const item = fc.dictionary(
      fc.constantFrom(
        'sender',
        'receiver',
        'body',
        'delayMs',
        'clientTime',
        'mid',
        'lid',
        'status',
        'leaseMs',
      ),
      field,
    );
    const request = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc
        .record(
          {
            op: fc.oneof(
              fc.constantFrom('send', 'ack', 'extend', 'fetch', 'subscribe'),
              fc.string({ maxLength: 8 }),
            ),
            messages: fc.oneof(fc.array(item, { maxLength: 4 }), field),
            acks: fc.oneof(fc.array(item, { maxLength: 4 }), field),
            items: fc.oneof(fc.array(item, { maxLength: 4 }), field),
            receiver: field,
            max: field,
            prefetch: field,
            leaseMs: field,
            waitMs: fc.constantFrom(undefined, 0, -1, 'x'),
          },
          { requiredKeys: ['op'] },
        )
        .map(enc),
    );
    await fc.assert(
      fc.asyncProperty(request, async (bytes) => {
        const signal = AbortSignal.timeout(100);
        try {
          for await (const source of raw.post(endpoint, bytes, { signal }))
            for await (const frame of source.frames) {
              // A subscription streams: one frame is enough to show it was accepted.
              assert.ok(frame.length > 0);
              break;
            }
        } catch (error) {
          if (signal.aborted) return; // a valid long poll or subscription that stayed quiet
          assert.ok(error instanceof StreamRemoteError, String(error));
          assert.match(error.remoteCode, /^MAILBOX_ERR_[A-Z_]+$/);
        }
      }),
      { numRuns: 40 },
    );
    // Still serving.
    const m = await client.send({ sender: 'a', receiver: 'after-fuzz', body: { ok: '1' } });
    assert.match(m.mid, /^[0-9a-f]{40}$/);
  });

  test('bad client arguments are refused before anything is sent', () => {
    for (const url of ['http://127.0.0.1:1', 'switchyard://127.0.0.1', 'not a url'])
      assert.throws(
        () => new MailboxBinaryClient(url),
        (e: unknown) => e instanceof MailboxError && e.code === 'MAILBOX_ERR_INVALID_ARGUMENT',
      );
    assert.throws(() => new MailboxBinaryClient(env.url, { maxBatch: 0 }), /maxBatch/);
    assert.throws(() => new MailboxBinaryClient(env.url, { token: '' }), /token/);
    assert.throws(() => new MailboxBinaryServer(env.broker, { port: -1 }), /port/);
    assert.throws(() => new MailboxBinaryServer(env.broker, { auth: true }), /no tokens/);
    assert.throws(() => new MailboxBinaryServer(env.broker, { host: '0.0.0.0' }), /no tokens/);
    assert.ok(connectMailbox(env.url) instanceof MailboxBinaryClient);
    assert.ok(connectMailbox('http://127.0.0.1:7420') instanceof MailboxClient);
  });

  test('an unreachable server is MAILBOX_ERR_HTTP', async () => {
    await using c = new MailboxBinaryClient('switchyard://127.0.0.1:1', { dialTimeoutMs: 1000 });
    await rejectsWithCode(c.send({ sender: 'a', receiver: 'b', body: {} }), 'MAILBOX_ERR_HTTP');
  });

  test('a closed client refuses calls with MAILBOX_ERR_CLOSED', async () => {
    const c = new MailboxBinaryClient(env.url);
    await c.close();
    await c[Symbol.asyncDispose]();
    await rejectsWithCode(c.fetch('calls'), 'MAILBOX_ERR_CLOSED');
  });
});

describe('binary API tokens', () => {
  test('the same token table as HTTP: unknown tokens, scopes and mailboxes', async () => {
    await using broker = await Broker.open({ store: 'memory:' });
    await using server = new MailboxBinaryServer(broker, {
      port: 0,
      auth: true,
      tokens: [
        'full-access-token',
        { token: 'send-only-token', scopes: ['send'] },
        { token: 'orders-only-token', mailboxes: ['orders*'] },
      ],
    });
    const url = await server.listen();
    await using anon = new MailboxBinaryClient(url);
    await using wrong = new MailboxBinaryClient(url, { token: 'wrong-token-123' });
    await using full = new MailboxBinaryClient(url, { token: 'full-access-token' });
    await using sender = new MailboxBinaryClient(url, { token: 'send-only-token' });
    await using orders = new MailboxBinaryClient(url, { token: 'orders-only-token' });
    const m = { sender: 'a', receiver: 'orders.eu', body: { a: '1' } };
    await rejectsWithCode(anon.send(m), 'MAILBOX_ERR_UNAUTHORIZED');
    await rejectsWithCode(wrong.send(m), 'MAILBOX_ERR_UNAUTHORIZED');
    await sender.send(m);
    await rejectsWithCode(sender.fetch('orders.eu'), 'MAILBOX_ERR_FORBIDDEN');
    const it = sender.subscribe('orders.eu');
    await rejectsWithCode(it.next(), 'MAILBOX_ERR_FORBIDDEN');
    await rejectsWithCode(orders.send({ ...m, receiver: 'billing' }), 'MAILBOX_ERR_FORBIDDEN');
    await rejectsWithCode(orders.fetch('billing'), 'MAILBOX_ERR_FORBIDDEN');
    const got = await orders.fetch('orders.eu');
    assert.ok(got !== null);
    await orders.ack(got.mid, got.lid!, 1);
    await full.send({ ...m, receiver: 'billing' });
    assert.equal((await broker.headers('billing')).length, 1);
  });
});

describe('push subscriptions', () => {
  test('every message arrives once and is confirmed; never more than prefetch leased to the consumer', async () => {
    await using env = await setup();
    await using producer = new MailboxBinaryClient(env.url);
    await using consumer = new MailboxBinaryClient(env.url);
    const N = 1000;
    const prefetch = 16;
    const sent = new Set(
      (
        await Promise.all(
          Array.from({ length: N }, (_, i) =>
            producer.send({ sender: 'p', receiver: 'push', body: body(i) }),
          ),
        )
      ).map((m) => m.mid),
    );
    const seen = new Set<string>();
    let maxHeld = 0;
    const acks: Promise<void>[] = [];
    for await (const m of consumer.subscribe('push', { prefetch, leaseMs: 30_000 })) {
      assert.ok(sent.has(m.mid));
      assert.ok(!seen.has(m.mid), `${m.mid} delivered twice`);
      seen.add(m.mid);
      maxHeld = Math.max(maxHeld, env.server.subscriptions.held);
      // The subscription and its acks share the consumer's one connection (plus the producer's).
      assert.equal(env.server.connections, 2);
      acks.push(consumer.ack(m.mid, m.lid!, 1));
      if (seen.size === N) break;
    }
    assert.equal(seen.size, N);
    await Promise.all(acks);
    assert.ok(maxHeld <= prefetch, `server held ${maxHeld} > prefetch ${prefetch}`);
    await until(async () => (await env.broker.stats()).confirmed === N, 'every ack');
    await until(() => env.server.subscriptions.count === 0, 'break to end the subscription');
    assert.equal((await env.broker.headers('push')).length, 0);
  });

  test('messages sent after subscribing are pushed without polling', async () => {
    await using env = await setup();
    await using c = new MailboxBinaryClient(env.url);
    const it = c.subscribe('later', { prefetch: 4 });
    const first = it.next();
    await sleep(50);
    const t0 = performance.now();
    await c.send({ sender: 'p', receiver: 'later', body: { a: '1' } });
    const r = await first;
    assert.ok(r.done !== true);
    assert.deepEqual(r.value.body, { a: '1' });
    assert.ok(performance.now() - t0 < 1000);
    await it.return();
  });

  test('a consumer that stops pulling: the server stops pushing at prefetch, and pushes again on acks', async () => {
    await using env = await setup();
    await using c = new MailboxBinaryClient(env.url);
    await c.sendMany(
      Array.from({ length: 200 }, (_, i) => ({ sender: 'p', receiver: 'stall', body: body(i) })),
    );
    const prefetch = 20;
    const it = c.subscribe('stall', { prefetch, leaseMs: 60_000 });
    const taken: Message[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await it.next();
      assert.ok(r.done !== true);
      taken.push(r.value);
    }
    // The consumer stops pulling (and acking). Give the server time to push anything it would.
    await sleep(300);
    const leased = async (): Promise<number> =>
      (await env.broker.headers('stall', { limit: 1000 })).filter((h) => h.state === 'leased').length;
    assert.equal(env.server.subscriptions.pushed, prefetch, 'pushed exactly prefetch, then stopped');
    assert.equal(await leased(), prefetch);
    assert.equal((await env.broker.headers('stall', { limit: 1000 })).length, 200);
    // Credit comes back with acks, a quarter of it at a time: three acks push nothing yet...
    for (const m of taken.slice(0, 3)) await c.ack(m.mid, m.lid!, 1);
    await sleep(150);
    assert.equal(env.server.subscriptions.pushed, prefetch);
    assert.equal(await leased(), prefetch - 3);
    // ...two more make five (prefetch / 4): five more pushed, prefetch held again.
    for (const m of taken.slice(3)) await c.ack(m.mid, m.lid!, 1);
    await until(() => env.server.subscriptions.pushed === prefetch + 5, 'five more pushes');
    await sleep(100);
    assert.equal(env.server.subscriptions.pushed, prefetch + 5);
    assert.equal(await leased(), prefetch);
    await it.return();
  });

  test('leases that run out unacked give the room back to a connected subscription', async () => {
    await using env = await setup();
    await using c = new MailboxBinaryClient(env.url);
    await c.sendMany(
      Array.from({ length: 6 }, (_, i) => ({ sender: 'p', receiver: 'lapse', body: body(i) })),
    );
    const prefetch = 2;
    const it = c.subscribe('lapse', { prefetch, leaseMs: 250 });
    const first = [(await it.next()).value as Message, (await it.next()).value as Message];
    await sleep(100);
    assert.equal(env.server.subscriptions.pushed, prefetch, 'full: nothing more before the leases end');
    // No ack at all: once the two leases end, the server counts them out and leases more.
    await until(() => env.server.subscriptions.pushed > prefetch, 'pushes after the leases ran out', 5000);
    const next = (await it.next()).value as Message;
    assert.ok(!first.some((m) => m.mid === next.mid && m.lid === next.lid), 'a new lease, not an old one');
    await assert.rejects(() => c.ack(first[0]!.mid, first[0]!.lid!, 1), {
      code: 'MAILBOX_ERR_LEASE_INVALID',
    });
    await it.return();
  });

  test('a consumer that disconnects with messages leased: they come back after the lease, once', async () => {
    await using env = await setup();
    await using producer = new MailboxBinaryClient(env.url);
    await producer.sendMany(
      Array.from({ length: 10 }, (_, i) => ({ sender: 'p', receiver: 'gone', body: body(i) })),
    );
    const a = new MailboxBinaryClient(env.url);
    const held: Message[] = [];
    for await (const m of a.subscribe('gone', { prefetch: 5, leaseMs: 400 })) {
      held.push(m);
      if (held.length === 5) {
        await a.close(); // the connection goes with five leases held, none acked
        break;
      }
    }
    await until(() => env.server.subscriptions.count === 0, 'the server to end the subscription');
    const leasedAt = Date.now();
    await using b = new MailboxBinaryClient(env.url);
    const got = new Map<string, Message>();
    for await (const m of b.subscribe('gone', { prefetch: 10, leaseMs: 30_000 })) {
      assert.ok(!got.has(m.mid), 'no message twice while its lease holds');
      got.set(m.mid, m);
      await b.ack(m.mid, m.lid!, 1);
      if (got.size === 10) break;
    }
    for (const m of held) {
      const again = got.get(m.mid);
      assert.ok(again !== undefined, 'a message held by the lost consumer came back');
      assert.equal(again.deliveryCount, 2);
      assert.ok(again.fetchTime!.getTime() >= m.leasedUntil!.getTime(), 'not before its lease ran out');
    }
    assert.ok(Date.now() - leasedAt < 5000);
    const stats = await env.broker.stats();
    assert.equal(stats.confirmed, 10);
    assert.equal(stats.timedOut, 5);
  });

  test('two subscribers never hold one message at once; every message is confirmed once', async () => {
    await using env = await setup();
    await using producer = new MailboxBinaryClient(env.url);
    const N = 600;
    const holders = new Map<string, string>();
    const confirmed = new Set<string>();
    const run = async (name: string, stop: AbortSignal): Promise<void> => {
      await using c = new MailboxBinaryClient(env.url);
      try {
        for await (const m of c.subscribe('shared', { prefetch: 8, leaseMs: 30_000, signal: stop })) {
          const other = holders.get(m.mid);
          assert.equal(other, undefined, `${m.mid} held by ${other} and ${name}`);
          holders.set(m.mid, name);
          await sleep(Math.random() < 0.05 ? 2 : 0);
          holders.delete(m.mid);
          await c.ack(m.mid, m.lid!, 1);
          assert.ok(!confirmed.has(m.mid), 'confirmed twice');
          confirmed.add(m.mid);
        }
      } catch (error) {
        if (!stop.aborted) throw error;
      }
    };
    const stop = new AbortController();
    const consumers = Promise.all([run('one', stop.signal), run('two', stop.signal)]);
    await Promise.all(
      Array.from({ length: N }, (_, i) => producer.send({ sender: 'p', receiver: 'shared', body: body(i) })),
    );
    await until(() => confirmed.size === N, `${N} confirmations`, 15_000);
    stop.abort();
    await consumers;
    assert.equal(confirmed.size, N);
  });

  test('the signal ends a subscription with its reason', async () => {
    await using env = await setup();
    await using c = new MailboxBinaryClient(env.url);
    const stop = new AbortController();
    const it = c.subscribe('quiet', { signal: stop.signal });
    const next = it.next();
    setTimeout(() => stop.abort(new Error('enough')), 50);
    await assert.rejects(next, /enough/);
    await until(() => env.server.subscriptions.count === 0, 'the server to end the subscription');
  });

  test('closing the server ends open subscriptions', async () => {
    const env = await setup();
    const c = new MailboxBinaryClient(env.url);
    const it = c.subscribe('closing');
    const next = it.next();
    await until(() => env.server.subscriptions.count === 1, 'the subscription');
    await env.server.close();
    const r = await next.then(
      (v) => v,
      (e: unknown) => e,
    );
    assert.ok(r instanceof MailboxError || (r as IteratorResult<Message>).done === true);
    assert.equal(env.server.subscriptions.count, 0);
    await c.close();
    await env.broker.close();
  });
});

describe('consume works on both APIs', () => {
  for (const kind of ['binary', 'http'] as const) {
    test(`consume over ${kind}: confirms what resolves, rejects what throws, extends long handlers`, async () => {
      const broker = await Broker.open({
        store: 'memory:',
        sweepIntervalMs: 20,
        mailboxDefaults: { retryDelayMs: 0, maxDeliveries: 100 },
      });
      const binary = new MailboxBinaryServer(broker, { port: 0 });
      const http = await MailboxServer.start({ broker, port: 0 });
      const url = kind === 'binary' ? await binary.listen() : http.url;
      const client = connectMailbox(url);
      try {
        const N = 40;
        await client.sendMany(
          Array.from({ length: N }, (_, i) => ({ sender: 'p', receiver: 'work', body: body(i) })),
        );
        const stop = new AbortController();
        const done = new Set<string>();
        const failedOnce = new Set<string>();
        let running = 0;
        let maxRunning = 0;
        const consuming = client.consume(
          'work',
          async (m) => {
            running++;
            maxRunning = Math.max(maxRunning, running);
            try {
              const n = Number(m.body.n);
              if (n % 10 === 0 && !failedOnce.has(m.mid)) {
                failedOnce.add(m.mid);
                throw new Error('first attempt fails');
              }
              // Longer than the lease: it must be extended meanwhile.
              if (n === 5) await sleep(1600);
              done.add(m.mid);
            } finally {
              running--;
            }
          },
          { concurrency: 4, leaseMs: 1000, signal: stop.signal, onError: () => {} },
        );
        await until(() => done.size === N, `${N} handled`, 15_000);
        stop.abort();
        await consuming;
        assert.ok(maxRunning <= 4);
        assert.equal(failedOnce.size, 4);
        const stats = await broker.stats();
        assert.equal(stats.confirmed, N);
        assert.equal(stats.rejected, 4);
        assert.equal(stats.timedOut, 0, 'the long handler kept its lease');
      } finally {
        if (client instanceof MailboxBinaryClient) await client.close();
        await binary.close();
        await http.close();
        await broker.close();
      }
    });
  }
});

describe('switchyard serve', () => {
  test('serves the binary API next to HTTP, with --binary-port, and closes it on SIGTERM', async () => {
    using dir = makeTempDir('switchyard-binary-serve-');
    // A free port for --binary-port: listen on 0, note it, let it go.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const free = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    const bin = join(repoRoot(), 'packages', 'cli', 'bin', 'switchyard.js');
    const child = spawn(
      process.execPath,
      [bin, 'serve', '--data', dir.path, '--port', '0', '--binary-port', String(free)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await until(() => /broker on http:\/\/\S+ and switchyard:\/\/\S+/.test(out), 'the serve line', 20_000);
      const url = /(switchyard:\/\/[\d.:]+)/.exec(out)![1]!;
      assert.equal(url, `switchyard://127.0.0.1:${free}`);
      await using c = new MailboxBinaryClient(url);
      const sent = await c.send({ sender: 'cli', receiver: 'served', body: { a: '1' } });
      for await (const m of c.subscribe('served', { prefetch: 1 })) {
        assert.equal(m.mid, sent.mid);
        await c.ack(m.mid, m.lid!, 1);
        break;
      }
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, out);
    }
    assert.match(out, /closed/);
  });
});
