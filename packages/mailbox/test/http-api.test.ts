/**
 * The JSON API under /v1/: every route's happy path and its bad inputs (400/404/409/413 with a
 * MAILBOX_ERR_* code, nothing changed); bearer-token auth with scopes and mailboxes (401/403);
 * /metrics, /healthz, /v1/openapi.json; graceful close.
 */
/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return -- assertions on parsed JSON answers */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MailboxServer } from '@switchyard/mailbox';
import { raw, snapshot, startServer } from './http-helpers.js';

let server: MailboxServer;
before(async () => {
  server = await startServer({
    broker: {
      store: 'memory:',
      sweepIntervalMs: 100,
      mailboxDefaults: { maxDeliveries: 2, retryDelayMs: 0 },
    },
  });
});
after(async () => {
  await server.close();
});

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  target: MailboxServer = server,
): Promise<{ status: number; json: any; text: string; headers: Record<string, unknown> }> {
  const h: Record<string, string> = { ...headers };
  let payload: string | undefined;
  if (body !== undefined) {
    h['content-type'] ??= 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const r = await raw(target.url, method, path, h, payload);
  let json: any;
  try {
    json = r.text.length > 0 ? JSON.parse(r.text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text: r.text, headers: r.headers };
}

async function unchanged(fn: () => Promise<void>, target: MailboxServer = server): Promise<void> {
  const before = await snapshot(target);
  await fn();
  assert.equal(await snapshot(target), before, 'the store changed');
}

function isError(r: { status: number; json: any }, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(r.json?.error?.code, code);
  assert.equal(typeof r.json?.error?.message, 'string');
  assert.ok(r.json.error.message.length > 0);
}

describe('JSON API', () => {
  test('send, fetch, extend, ack, get with the attempt record', async () => {
    const s = await call('POST', '/v1/messages', {
      sender: 'a',
      receiver: 'jobs',
      body: { k: 'v', m: ['1', '2'] },
    });
    assert.equal(s.status, 201);
    assert.match(s.json.mid, /^[0-9a-f]{40}$/);
    assert.equal(s.json.state, 'queued');
    const f = await call('POST', '/v1/mailboxes/jobs/fetch', { leaseMs: 1000, consumer: 'w1' });
    assert.equal(f.status, 200);
    const [m] = f.json.messages;
    assert.deepEqual(m.body, { k: 'v', m: ['1', '2'] });
    const e = await call('POST', `/v1/messages/${m.mid}/extend`, { lid: m.lid, leaseMs: 60_000 });
    assert.equal(e.status, 200);
    assert.ok(Date.parse(e.json.leasedUntil) > Date.parse(m.leasedUntil));
    const a = await call('POST', `/v1/messages/${m.mid}/ack`, { lid: m.lid, status: 1 });
    assert.equal(a.status, 204);
    const g = await call('GET', `/v1/messages/${m.mid}`);
    assert.equal(g.json.status, 1);
    assert.equal(g.json.attempts.length, 1);
    assert.equal(g.json.attempts[0].consumer, 'w1');
    assert.equal(g.json.attempts[0].outcome, 1);
  });

  test('batches, long poll (woken by a send), empty fetch', async () => {
    const b = await call('POST', '/v1/messages/batch', {
      messages: [1, 2, 3].map((i) => ({
        sender: 's',
        receiver: 'batch',
        body: { i: String(i) },
        delay: '0s',
      })),
    });
    assert.equal(b.status, 201);
    assert.equal(b.json.messages.length, 3);
    const f = await call('POST', '/v1/mailboxes/batch/fetch', { max: 10 });
    assert.deepEqual(
      f.json.messages.map((m: any) => m.body.i),
      ['1', '2', '3'],
    );
    const empty = await call('POST', '/v1/mailboxes/batch/fetch', {});
    assert.deepEqual(empty.json.messages, []);
    const started = Date.now();
    const poll = call('POST', '/v1/mailboxes/lp/fetch', { waitMs: 5000 });
    await new Promise((r) => setTimeout(r, 100));
    await call('POST', '/v1/messages', { sender: 's', receiver: 'lp', body: { x: 'woke' } });
    const got = await poll;
    assert.equal(got.json.messages[0].body.x, 'woke');
    assert.ok(Date.now() - started < 4000, 'the long poll answered at the send');
    const timedOut = await call('POST', '/v1/mailboxes/lp/fetch', { waitMs: 150 });
    assert.deepEqual(timedOut.json.messages, []);
  });

  test('dead letters, redrive, purge, mailbox settings, headers, stats, reenqueue', async () => {
    await call('PUT', '/v1/mailboxes/dl', { maxDeliveries: 1, retryDelayMs: 0 });
    const mb = await call('GET', '/v1/mailboxes/dl');
    assert.equal(mb.json.settings.maxDeliveries, 1);
    const sent = await call('POST', '/v1/messages', { sender: 's', receiver: 'dl', body: { x: '1' } });
    const [m] = (await call('POST', '/v1/mailboxes/dl/fetch', {})).json.messages;
    await call('POST', `/v1/messages/${m.mid}/ack`, { lid: m.lid, status: 2 });
    const dead = await call('GET', '/v1/mailboxes/dl/dead');
    assert.equal(dead.json.messages.length, 1);
    assert.equal(dead.json.messages[0].mid, sent.json.mid);
    assert.equal(dead.json.messages[0].status, 16);
    const rd = await call('POST', '/v1/mailboxes/dl/redrive', {});
    assert.deepEqual(rd.json, { count: 1 });
    const hdr = await call('GET', '/v1/mailboxes/dl/headers?limit=5');
    assert.equal(hdr.json.messages.length, 1);
    assert.equal(hdr.json.messages[0].body, undefined, 'headers carry no body');
    const pg = await call('POST', '/v1/mailboxes/dl/purge');
    assert.deepEqual(pg.json, { count: 1 });
    assert.equal((await call('GET', `/v1/messages/${sent.json.mid}`)).status, 404);
    const list = await call('GET', '/v1/mailboxes');
    assert.ok(list.json.mailboxes.some((x: any) => x.name === 'dl.dead'));
    const st = await call('GET', '/v1/stats');
    assert.equal(typeof st.json.store.messages, 'number');
    assert.deepEqual((await call('POST', '/v1/reenqueue')).json, { count: 0 });
  });

  test('headers and dead letters page by cursor across one millisecond; bad cursors are 400', async () => {
    await call('PUT', '/v1/mailboxes/pages', { maxDeliveries: 1, retryDelayMs: 0 });
    // One sendMany is one batch: all 30 are received in the same millisecond.
    const batch = await call('POST', '/v1/messages/batch', {
      messages: Array.from({ length: 30 }, (_, i) => ({
        sender: 's',
        receiver: 'pages',
        body: { i: String(i) },
      })),
    });
    assert.equal(batch.status, 201, batch.text);
    const sent: string[] = batch.json.messages.map((m: any) => m.mid);
    assert.equal(new Set(batch.json.messages.map((m: any) => m.receivedAt)).size, 1);
    const walk = async (route: string, limit: number): Promise<{ mids: string[]; pages: number }> => {
      const mids: string[] = [];
      let pages = 0;
      let q = `limit=${limit}`;
      for (;;) {
        const r = await call('GET', `/v1/mailboxes/pages/${route}?${q}`);
        assert.equal(r.status, 200, r.text);
        mids.push(...r.json.messages.map((m: any) => m.mid));
        pages++;
        if (r.json.next === null) return { mids, pages };
        assert.equal(typeof r.json.next, 'string');
        q = `limit=${limit}&cursor=${encodeURIComponent(r.json.next)}`;
      }
    };
    assert.deepEqual(await walk('headers', 7), { mids: sent, pages: 5 });
    assert.deepEqual(
      await walk('headers', 30),
      { mids: sent, pages: 1 },
      'next is null on an exact last page',
    );

    // Dead-letter the first 12 (maxDeliveries 1: one reject): /dead pages the same way.
    const leased = (await call('POST', '/v1/mailboxes/pages/fetch', { max: 12 })).json.messages;
    assert.equal(leased.length, 12);
    for (const m of leased) await call('POST', `/v1/messages/${m.mid}/ack`, { lid: m.lid, status: 2 });
    const dead = await walk('dead', 5);
    assert.deepEqual(dead.mids.toSorted(), sent.slice(0, 12).toSorted());
    assert.equal(dead.pages, 3);
    assert.deepEqual((await walk('headers', 5)).mids, sent.slice(12));

    const first = await call('GET', '/v1/mailboxes/pages/headers?limit=1');
    const next = first.json.next as string;
    await unchanged(async () => {
      for (const cursor of [
        '',
        'x',
        'bm90IGEgY3Vyc29y',
        `${next}A`,
        next.slice(0, 4),
        '%00',
        'a'.repeat(201),
      ])
        for (const route of ['headers', 'dead'])
          isError(
            await call('GET', `/v1/mailboxes/pages/${route}?cursor=${encodeURIComponent(cursor)}`),
            400,
            'MAILBOX_ERR_INVALID_ARGUMENT',
          );
      isError(
        await call('GET', `/v1/mailboxes/pages/headers?cursor=${next}&after=2026-01-01T00:00:00Z`),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
    });
    const bad = await call('GET', '/v1/mailboxes/pages/headers?cursor=x');
    assert.match(bad.json.error.message, /cursor/);
    // `after` still pages by time, as before.
    const at = batch.json.messages[0].receivedAt as string;
    assert.deepEqual((await call('GET', `/v1/mailboxes/pages/headers?after=${at}`)).json, {
      messages: [],
      next: null,
    });
    await call('POST', '/v1/mailboxes/pages/purge');
    await call('POST', '/v1/mailboxes/pages.dead/purge');
  });

  test('batch acks: each ack its own result; a forged lid fails alone; bad lists are 400', async () => {
    await call('POST', '/v1/messages/batch', {
      messages: [1, 2, 3].map((i) => ({ sender: 's', receiver: 'acks', body: { i: String(i) } })),
    });
    const [a, b, c] = (await call('POST', '/v1/mailboxes/acks/fetch', { max: 3 })).json.messages;
    await unchanged(async () => {
      isError(await call('POST', '/v1/messages/acks', { acks: [] }), 400, 'MAILBOX_ERR_INVALID_ARGUMENT');
      isError(
        await call('POST', '/v1/messages/acks', { acks: [{ mid: a.mid, lid: a.lid, status: 3 }] }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
    });
    const r = await call('POST', '/v1/messages/acks', {
      acks: [
        { mid: a.mid, lid: a.lid, status: 1 },
        { mid: b.mid, lid: 'f'.repeat(32), status: 1 },
        { mid: c.mid, lid: c.lid, status: 2 },
        { mid: 'zz', lid: c.lid, status: 1 },
      ],
    });
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.json.results.map((x: any) => [x.ok, x.error?.code]),
      [
        [true, undefined],
        [false, 'MAILBOX_ERR_LEASE_INVALID'],
        [true, undefined],
        [false, 'MAILBOX_ERR_INVALID_ARGUMENT'],
      ],
    );
    assert.equal((await call('GET', `/v1/messages/${a.mid}`)).json.status, 1);
    assert.equal((await call('GET', `/v1/messages/${b.mid}`)).json.state, 'leased');
    assert.equal((await call('GET', `/v1/messages/${c.mid}`)).json.status, 2);
  });

  test('mailbox names with / and : travel percent-encoded', async () => {
    const name = 'team:a/jobs@x';
    await call('POST', '/v1/messages', { sender: 's', receiver: name, body: { a: '1' } });
    const f = await call('POST', `/v1/mailboxes/${encodeURIComponent(name)}/fetch`, {});
    assert.equal(f.json.messages[0].receiver, name);
  });

  test('bad requests: a 4xx with a code, nothing changed', async () => {
    const sent = await call('POST', '/v1/messages', { sender: 's', receiver: 'bad', body: { x: '1' } });
    const [m] = (await call('POST', '/v1/mailboxes/bad/fetch', { leaseMs: 60_000 })).json.messages;
    await unchanged(async () => {
      isError(await call('POST', '/v1/messages', '{"sender": "s",'), 400, 'MAILBOX_ERR_INVALID_ARGUMENT');
      isError(
        await call('POST', '/v1/messages', { sender: 's', receiver: 'r' }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/messages', { sender: 's', receiver: 'r', body: { n: 1 } }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/messages', { sender: 's', receiver: 'r', body: {}, extra: 1 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/messages', { sender: 's', receiver: 'sp ace', body: {} }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/messages', { sender: 's', receiver: 'r', body: {}, delay: '3 days' }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/messages', { sender: 's', receiver: 'r', body: {}, clientTime: 'now' }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/messages', { sender: 's', receiver: 'r', body: { x: 'y'.repeat(300_000) } }),
        413,
        'MAILBOX_ERR_MESSAGE_TOO_LARGE',
      );
      isError(
        await call('POST', '/v1/messages', {
          sender: 's',
          receiver: 'r',
          body: { x: 'y'.repeat(5_000_000) },
        }),
        413,
        'MAILBOX_ERR_MESSAGE_TOO_LARGE',
      );
      isError(
        await call('POST', '/v1/messages/batch', { messages: [] }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/messages/batch', {
          messages: [
            { sender: 's', receiver: 'ok', body: {} },
            { sender: 's', receiver: 'bad name', body: {} },
          ],
        }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', `/v1/messages/${m.mid}/ack`, { lid: m.lid, status: 4 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', `/v1/messages/${m.mid}/ack`, { lid: 'f'.repeat(32), status: 1 }),
        409,
        'MAILBOX_ERR_LEASE_INVALID',
      );
      isError(
        await call('POST', `/v1/messages/${m.mid}/ack`, { lid: 'nothex', status: 1 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', `/v1/messages/${'0'.repeat(40)}/ack`, { lid: m.lid, status: 1 }),
        404,
        'MAILBOX_ERR_NOT_FOUND',
      );
      isError(
        await call('POST', '/v1/messages/xyz/ack', { lid: m.lid, status: 1 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', `/v1/messages/${m.mid}/extend`, { lid: m.lid, leaseMs: 0 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', `/v1/messages/${m.mid}/extend`, { lid: m.lid, leaseMs: 10 ** 12 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(await call('POST', '/v1/mailboxes/bad/fetch', { max: 0 }), 400, 'MAILBOX_ERR_INVALID_ARGUMENT');
      isError(
        await call('POST', '/v1/mailboxes/bad/fetch', { waitMs: 10 ** 9 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('POST', '/v1/mailboxes/bad/redrive', { limit: -1 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('PUT', '/v1/mailboxes/bad', { maxDeliveries: 0 }),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(
        await call('GET', '/v1/mailboxes/bad/headers?after=tuesday'),
        400,
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      isError(await call('GET', '/v1/mailboxes/nope'), 404, 'MAILBOX_ERR_NOT_FOUND');
      isError(await call('GET', '/v1/nothing'), 404, 'MAILBOX_ERR_NOT_FOUND');
    });
    // A stale lid after the ack: 409, and the confirmation stands.
    assert.equal((await call('POST', `/v1/messages/${m.mid}/ack`, { lid: m.lid, status: 1 })).status, 204);
    await unchanged(async () => {
      isError(
        await call('POST', `/v1/messages/${m.mid}/ack`, { lid: m.lid, status: 2 }),
        409,
        'MAILBOX_ERR_LEASE_INVALID',
      );
    });
    assert.equal((await call('GET', `/v1/messages/${sent.json.mid}`)).json.status, 1);
  });

  test('/metrics, /healthz, /v1/openapi.json and /', async () => {
    const metrics = await call('GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers['content-type'] as string, /text\/plain; version=0\.0\.4/);
    for (const series of [
      'switchyard_mailbox_depth{mailbox="jobs"}',
      'switchyard_mailbox_in_flight{mailbox="jobs"}',
      'switchyard_mailbox_delayed{mailbox="jobs"}',
      'switchyard_mailbox_dead{mailbox="dl"}',
      'switchyard_mailbox_sends_total',
      'switchyard_http_request_duration_seconds_bucket{route="/v1/messages",le="0.005"}',
      'switchyard_http_requests_total{route="/v1/messages",method="POST",status="201"}',
    ])
      assert.ok(metrics.text.includes(series), series);
    for (const line of metrics.text.trim().split('\n'))
      assert.match(line, /^(# (HELP|TYPE) \S+ .+|[a-z_]+(\{[^}]*\})? [0-9.e+-]+)$/, line);
    assert.deepEqual((await call('GET', '/healthz')).json, { ok: true });
    const doc = await call('GET', '/v1/openapi.json');
    assert.equal(doc.json.openapi, '3.1.0');
    for (const p of [
      '/v1/messages',
      '/v1/mailboxes/{name}/fetch',
      '/v1/messages/{mid}/ack',
      '/v1/mailboxes/{name}/redrive',
      '/v1/messages/acks',
      '/v1/openapi.json',
      '/api/send',
      '/api/admin/headers',
    ])
      assert.ok(doc.json.paths[p], p);
    const headersDoc = doc.json.paths['/v1/mailboxes/{name}/headers'].get;
    assert.ok(
      headersDoc.parameters.some((x: any) => x.name === 'cursor' && x.in === 'query'),
      'the cursor parameter is documented',
    );
    assert.ok(doc.json.components.schemas.HeaderList.properties.next, 'the next cursor is documented');
    const home = await call('GET', '/');
    assert.equal(home.status, 200);
    assert.match(String(home.headers['content-type']), /text\/html/);
  });
});

describe('bearer-token auth', () => {
  let secured: MailboxServer;
  const ADMIN = 'admin-token-0123';
  const SENDER = 'sender-token-0123';
  const ORDERS = 'orders-receiver-01';
  before(async () => {
    secured = await MailboxServer.start({
      broker: { store: 'memory:' },
      port: 0,
      auth: true,
      tokens: [
        ADMIN,
        { token: SENDER, name: 'sender', scopes: ['send'], mailboxes: ['orders*'] },
        { token: ORDERS, name: 'orders-worker', scopes: ['receive'], mailboxes: ['orders'] },
      ],
    });
  });
  after(async () => {
    await secured.close();
  });
  const as = (token: string | undefined) => (method: string, path: string, body?: unknown) =>
    call(method, path, body, token === undefined ? {} : { authorization: `Bearer ${token}` }, secured);

  test('no token or an unknown one: 401 with WWW-Authenticate, nothing changed', async () => {
    await unchanged(async () => {
      const none = await as(undefined)('POST', '/v1/messages', { sender: 's', receiver: 'orders', body: {} });
      isError(none, 401, 'MAILBOX_ERR_UNAUTHORIZED');
      assert.match(String(none.headers['www-authenticate']), /^Bearer/);
      isError(await as('wrong-token-xyz')('GET', '/v1/mailboxes'), 401, 'MAILBOX_ERR_UNAUTHORIZED');
      isError(
        await call('GET', '/v1/stats', undefined, { authorization: 'Basic abc' }, secured),
        401,
        'MAILBOX_ERR_UNAUTHORIZED',
      );
      const pandora = await raw(
        secured.url,
        'POST',
        '/api/send',
        { 'content-type': 'application/x-www-form-urlencoded' },
        'sender=s&receiver=orders',
      );
      assert.equal(pandora.status, 401);
      assert.match(pandora.text, /^error=/);
      assert.equal((await as(undefined)('GET', '/metrics')).status, 401);
    }, secured);
    assert.equal((await as(undefined)('GET', '/healthz')).status, 200);
    assert.equal((await as(undefined)('GET', '/v1/openapi.json')).status, 200);
  });

  test('scopes and mailboxes: 403 outside them, nothing changed', async () => {
    const sent = await as(SENDER)('POST', '/v1/messages', {
      sender: 's',
      receiver: 'orders',
      body: { a: '1' },
    });
    assert.equal(sent.status, 201);
    await as(ADMIN)('POST', '/v1/messages', { sender: 's', receiver: 'billing', body: { b: '1' } });
    await unchanged(async () => {
      isError(
        await as(SENDER)('POST', '/v1/messages', { sender: 's', receiver: 'billing', body: {} }),
        403,
        'MAILBOX_ERR_FORBIDDEN',
      );
      isError(await as(SENDER)('POST', '/v1/mailboxes/orders/fetch', {}), 403, 'MAILBOX_ERR_FORBIDDEN');
      isError(await as(ORDERS)('POST', '/v1/mailboxes/billing/fetch', {}), 403, 'MAILBOX_ERR_FORBIDDEN');
      isError(
        await as(ORDERS)('POST', '/v1/messages', { sender: 's', receiver: 'orders', body: {} }),
        403,
        'MAILBOX_ERR_FORBIDDEN',
      );
      isError(await as(ORDERS)('GET', '/v1/stats'), 403, 'MAILBOX_ERR_FORBIDDEN');
      isError(await as(ORDERS)('POST', '/v1/mailboxes/orders/purge', {}), 403, 'MAILBOX_ERR_FORBIDDEN');
    }, secured);
    const [billing] = (await as(ADMIN)('POST', '/v1/mailboxes/billing/fetch', {})).json.messages;
    await unchanged(async () => {
      isError(
        await as(ORDERS)('POST', `/v1/messages/${billing.mid}/ack`, { lid: billing.lid, status: 1 }),
        403,
        'MAILBOX_ERR_FORBIDDEN',
      );
      isError(await as(ORDERS)('GET', `/v1/messages/${billing.mid}`), 403, 'MAILBOX_ERR_FORBIDDEN');
    }, secured);
    const [m] = (await as(ORDERS)('POST', '/v1/mailboxes/orders/fetch', {})).json.messages;
    assert.equal(m.mid, sent.json.mid);
    assert.equal(
      (await as(ORDERS)('POST', `/v1/messages/${m.mid}/ack`, { lid: m.lid, status: 1 })).status,
      204,
    );
    const visible = (await as(ORDERS)('GET', '/v1/mailboxes')).json.mailboxes.map((x: any) => x.name);
    assert.deepEqual(visible, ['orders']);
    assert.equal((await as(ADMIN)('GET', '/metrics')).status, 200);
  });

  test('auth is on by default beyond loopback and refuses to start without tokens', async () => {
    await assert.rejects(
      MailboxServer.start({ broker: { store: 'memory:' }, host: '0.0.0.0', port: 0 }),
      (e: any) => e.code === 'MAILBOX_ERR_INVALID_ARGUMENT' && /not loopback/.test(e.message),
    );
    await assert.rejects(
      MailboxServer.start({ broker: { store: 'memory:' }, port: 0, auth: true }),
      (e: any) => e.code === 'MAILBOX_ERR_INVALID_ARGUMENT',
    );
    await assert.rejects(
      MailboxServer.start({ broker: { store: 'memory:' }, port: 0, tokens: [{ token: 'short' }] }),
      /tokens\[0\]\.token/,
    );
    await assert.rejects(
      MailboxServer.start({
        broker: { store: 'memory:' },
        port: 0,
        tokens: [{ token: 'long-enough-1', scopes: ['root' as never] }],
      }),
      /tokens\[0\]\.scopes/,
    );
    await assert.rejects(MailboxServer.start({ broker: { store: 'memory:' }, port: 70000 }), /port/);
    const local = await startServer();
    assert.equal(local.authRequired, false);
    await local.close();
  });
});

describe('graceful close', () => {
  test('in-flight requests finish, long polls end empty, then the broker closes', async () => {
    const s = await startServer();
    let received = 0;
    s.app.server.on('request', () => received++);
    const poll = call('POST', '/v1/mailboxes/idle/fetch', { waitMs: 30_000 }, {}, s);
    const sends = Array.from({ length: 20 }, (_, i) =>
      call('POST', '/v1/messages', { sender: 's', receiver: 'closing', body: { i: String(i) } }, {}, s),
    );
    while (received < 21) await new Promise((r) => setTimeout(r, 5));
    const started = Date.now();
    await s.close();
    assert.ok(Date.now() - started < 5000, 'close did not wait for the long poll');
    const polled = await poll;
    assert.equal(polled.status, 200);
    assert.deepEqual(polled.json.messages, []);
    for (const r of await Promise.all(sends)) assert.equal(r.status, 201);
    await assert.rejects(s.broker.stats(), /closed/);
    await s.close();
  });
});
