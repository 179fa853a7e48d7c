/**
 * pandora compatibility: the reference client's exact requests (the Go `Mailbox` type's Send,
 * Fetch and Ack: PostForm, its parameter names, Go durations, RFC 3339 nanosecond times) and
 * its way of reading the answers; then the admin routes and every bad path (a 4xx with an
 * `error=` body, nothing changed).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MailboxServer } from '@switchyard/mailbox';
import { goParse, goPostForm, goRfc3339Nano, raw, snapshot, startServer } from './http-helpers.js';

/** The Go reference client, transcribed: same requests, same checks of the answers. */
class GoMailbox {
  constructor(readonly baseUrl: string) {}
  async send(
    from: string,
    to: string,
    delay: string,
    body: Record<string, string | string[]>,
  ): Promise<string> {
    // msg.Empty(body); SetSender; SetReceiver; SetClientTime(time.Now()); Set("delay", delay.String())
    const values = { ...body, sender: from, receiver: to, clientTime: goRfc3339Nano(new Date()), delay };
    const res = await goPostForm(this.baseUrl, '/api/send', values);
    if (res.status !== 200) throw new Error(`invalid status code: ${res.status}`);
    const v = goParse(res.text);
    if ((v.get('error')?.[0] ?? '').length > 0) throw new Error(v.get('error')![0]);
    return v.get('mid')?.[0] ?? '';
  }
  async fetch(from: string, lockFor: string): Promise<Map<string, string[]>> {
    const res = await goPostForm(this.baseUrl, '/api/fetch', { receiver: from, leaseTime: lockFor });
    if (res.status !== 200) throw new Error(`invalid status code: ${res.status}`);
    const v = goParse(res.text);
    if ((v.get('mid')?.[0] ?? '').length === 0) throw new Error('mid empty');
    return v;
  }
  async ack(mid: string, lid: string, status: number): Promise<void> {
    const res = await goPostForm(this.baseUrl, '/api/ack', { mid, lid, statusCode: String(status) });
    if (res.status !== 200) throw new Error(`invalid status code: ${res.status}`);
  }
}

let server: MailboxServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

const form = (path: string, values: Record<string, string | string[]>) =>
  goPostForm(server.url, path, values);

async function unchanged(fn: () => Promise<void>): Promise<void> {
  const before = await snapshot(server);
  await fn();
  assert.equal(await snapshot(server), before, 'the store changed');
}

describe('the pandora reference client (Go Mailbox) works unchanged', () => {
  test('TestMailbox: Send, Fetch, Ack with a 5m0s lease', async () => {
    const mb = new GoMailbox(server.url + '/api');
    const mid = await mb.send('a@local', 'b@remote', '0s', { topic: 'teste' });
    assert.match(mid, /^[0-9a-f]{40}$/);
    const fetched = await mb.fetch('b@remote', '5m0s');
    assert.equal(fetched.get('mid')?.[0], mid);
    assert.deepEqual(fetched.get('topic'), ['teste']);
    assert.equal(fetched.get('sender')?.[0], 'a@local');
    assert.equal(fetched.get('receiver')?.[0], 'b@remote');
    assert.equal(fetched.get('statusCode')?.[0], '8');
    assert.equal(fetched.get('status')?.[0], 'notDelivered');
    assert.equal(fetched.get('deliveryCount')?.[0], '1');
    assert.equal(fetched.get('validBody')?.[0], 'true');
    const leasedUntil = Date.parse(fetched.get('leasedUntil')![0]!);
    assert.ok(Math.abs(leasedUntil - Date.now() - 5 * 60_000) < 5000, 'a 5-minute lease');
    for (const f of ['receivedAt', 'sendWhen', 'clientTime'])
      assert.ok(!Number.isNaN(Date.parse(fetched.get(f)![0]!)), `${f} is an RFC 3339 time`);
    await mb.ack(fetched.get('mid')![0]!, fetched.get('lid')![0]!, 1);
    // The reference client sees "no message" as a non-200 status: 204.
    await assert.rejects(mb.fetch('b@remote', '5m0s'), /invalid status code: 204/);
    assert.equal((await server.broker.get(mid))?.status, 1);
  });

  test('multi-valued fields, spaces and reserved characters survive; delays in Go form', async () => {
    const mb = new GoMailbox(server.url + '/api');
    const mid = await mb.send('x', 'multi', '0s', { tag: ['a b', 'c&d=e', 'ü'], note: '+1%' });
    const f = await mb.fetch('multi', '1m0s');
    assert.equal(f.get('mid')?.[0], mid);
    assert.deepEqual(f.get('tag'), ['a b', 'c&d=e', 'ü']);
    assert.deepEqual(f.get('note'), ['+1%']);
    await mb.ack(mid, f.get('lid')![0]!, 2); // Rejected: comes back after the retry delay
    for (const delay of ['1h30m0s', '1.5h', '500ms', '-24h', '2h45m30.5s']) {
      const m = await mb.send('x', `delays`, delay, { d: delay });
      const msg = (await server.broker.get(m))!;
      const want = {
        '1h30m0s': 5_400_000,
        '1.5h': 5_400_000,
        '500ms': 500,
        '-24h': 0,
        '2h45m30.5s': 9_930_500,
      }[delay]!;
      assert.equal(msg.delayMs, want, delay);
    }
  });

  test('equal bodies sent in one millisecond stay two messages (clientTime nanoseconds count)', async () => {
    const values = (ns: string) => ({
      sender: 's',
      receiver: 'ns',
      clientTime: `2026-01-02T03:04:05.123${ns}Z`,
      k: 'v',
    });
    const a = goParse((await form('/api/send', values('456789'))).text).get('mid')?.[0];
    const b = goParse((await form('/api/send', values('456790'))).text).get('mid')?.[0];
    assert.notEqual(a, b);
    assert.equal((await server.broker.headers('ns')).length, 2);
    const f = goParse((await form('/api/fetch', { receiver: 'ns' })).text);
    assert.equal(
      f.get('clientTime')?.[0],
      '2026-01-02T03:04:05.123456789Z',
      'the client’s own clientTime text',
    );
  });

  test('the same clientTime and body is one message (idempotent send)', async () => {
    const values = {
      sender: 's',
      receiver: 'idem',
      clientTime: '2026-01-02T03:04:05.123456789+02:00',
      k: 'v',
    };
    const a = goParse((await form('/api/send', values)).text).get('mid')?.[0];
    const b = goParse((await form('/api/send', values)).text).get('mid')?.[0];
    assert.equal(a, b);
    assert.equal((await server.broker.headers('idem')).length, 1);
  });
});

describe('pandora admin routes', () => {
  test('admin/headers lists pending headers as JSON url.Values, null when none; receivedat as time or duration', async () => {
    await form('/api/send', { sender: 's', receiver: 'hdr', n: '1' });
    await form('/api/send', { sender: 's', receiver: 'hdr', n: '2' });
    const r = await raw(server.url, 'GET', '/api/admin/headers?receiver=hdr&receivedat=-1h');
    assert.equal(r.status, 200);
    const list = JSON.parse(r.text) as Record<string, string[]>[];
    assert.equal(list.length, 2);
    assert.match(list[0]!.mid![0]!, /^[0-9a-f]{40}$/);
    assert.equal(list[0]!.statusCode![0], '8');
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = await raw(
      server.url,
      'GET',
      `/api/admin/headers?receiver=hdr&receivedat=${encodeURIComponent(future)}`,
    );
    assert.equal(none.text.trim(), 'null');
    const posted = await form('/api/admin/headers', { receiver: 'hdr', receivedat: '2000-01-01T00:00:00Z' });
    assert.equal((JSON.parse(posted.text) as unknown[]).length, 2);
    const bad = await raw(server.url, 'GET', '/api/admin/headers?receiver=hdr&receivedat=yesterday');
    assert.equal(bad.status, 400);
    assert.match(goParse(bad.text).get('error')![0]!, /neither an RFC 3339 time nor a Go duration/);
  });

  test('admin/fetchBlob returns the stored form-encoded body by mid or blob key', async () => {
    const mid = goParse(
      (await form('/api/send', { sender: 's', receiver: 'blob', a: 'x y', b: ['1', '2'] })).text,
    ).get('mid')![0]!;
    const r = await raw(server.url, 'GET', `/api/admin/fetchBlob?mid=${mid}`);
    assert.equal(r.status, 200);
    assert.deepEqual(
      [...goParse(r.text)],
      [
        ['a', ['x y']],
        ['b', ['1', '2']],
      ],
    );
    const key = (await server.broker.get(mid))!.blobKey;
    assert.equal((await raw(server.url, 'GET', `/api/admin/fetchBlob?mid=${key}`)).text, r.text);
    const missing = await raw(server.url, 'GET', `/api/admin/fetchBlob?mid=${'0'.repeat(40)}`);
    assert.equal(missing.status, 404);
    assert.equal((await raw(server.url, 'GET', '/api/admin/fetchBlob?mid=xyz')).status, 400);
  });

  test('admin/reenqueue ends expired leases and answers count=<n>', async () => {
    await form('/api/send', { sender: 's', receiver: 'reenq', a: '1' });
    const f = await form('/api/fetch', { receiver: 'reenq', leaseTime: '50ms' });
    assert.equal(f.status, 200);
    await new Promise((r) => setTimeout(r, 80));
    const r = await form('/api/admin/reenqueue', {});
    assert.equal(r.status, 200);
    assert.match(r.text, /^count=\d+$/);
    const mid = goParse(f.text).get('mid')![0]!;
    const m = (await server.broker.get(mid))!;
    assert.equal(m.state, 'queued');
    assert.equal(m.attempts?.[0]?.outcome, 4);
  });
});

describe('pandora bad requests: 4xx, error= body, nothing changed', () => {
  const cases: [string, string, Record<string, string | string[]>, number, RegExp][] = [
    ['send without receiver', '/api/send', { sender: 's', a: '1' }, 400, /receiver/],
    [
      'send to a bad mailbox name',
      '/api/send',
      { sender: 's', receiver: 'no spaces', a: '1' },
      400,
      /receiver/,
    ],
    [
      'send with a bad delay',
      '/api/send',
      { sender: 's', receiver: 'r', delay: '5 minutes' },
      400,
      /Go duration/,
    ],
    [
      'send with a unitless delay',
      '/api/send',
      { sender: 's', receiver: 'r', delay: '10' },
      400,
      /Go duration/,
    ],
    [
      'send with a bad clientTime',
      '/api/send',
      { sender: 's', receiver: 'r', clientTime: 'yesterday' },
      400,
      /RFC 3339/,
    ],
    ['send with a huge delay', '/api/send', { sender: 's', receiver: 'r', delay: '100000h' }, 400, /delayMs/],
    ['fetch with a bad leaseTime', '/api/fetch', { receiver: 'r', leaseTime: '5' }, 400, /Go duration/],
    [
      'fetch with a lease over the maximum',
      '/api/fetch',
      { receiver: 'r', leaseTime: '1000h' },
      400,
      /leaseMs/,
    ],
    ['fetch without receiver', '/api/fetch', { leaseTime: '1s' }, 400, /receiver/],
    [
      'ack with an unknown status',
      '/api/ack',
      { mid: 'a'.repeat(40), lid: 'b'.repeat(32), statusCode: '4' },
      400,
      /statusCode/,
    ],
    [
      'ack with a non-numeric status',
      '/api/ack',
      { mid: 'a'.repeat(40), lid: 'b'.repeat(32), statusCode: 'x' },
      400,
      /statusCode/,
    ],
    ['ack with a malformed mid', '/api/ack', { mid: 'zz', lid: 'b'.repeat(32), statusCode: '1' }, 400, /mid/],
    [
      'ack of an unknown mid',
      '/api/ack',
      { mid: 'a'.repeat(40), lid: 'b'.repeat(32), statusCode: '1' },
      400,
      /unable to change status/,
    ],
  ];
  for (const [name, path, values, status, pattern] of cases)
    test(name, async () => {
      await unchanged(async () => {
        const r = await form(path, values);
        assert.equal(r.status, status, r.text);
        assert.match(r.headers['content-type'] as string, /x-www-form-urlencoded/);
        assert.match(goParse(r.text).get('error')?.[0] ?? '', pattern);
      });
    });

  test('forged and stale lids: 400 unable to change status, the lease holds', async () => {
    const mid = goParse((await form('/api/send', { sender: 's', receiver: 'lids', a: '1' })).text).get(
      'mid',
    )![0]!;
    const f = goParse((await form('/api/fetch', { receiver: 'lids', leaseTime: '1m' })).text);
    const lid = f.get('lid')![0]!;
    await unchanged(async () => {
      const forged = await form('/api/ack', { mid, lid: 'f'.repeat(32), statusCode: '1' });
      assert.equal(forged.status, 400);
      assert.match(goParse(forged.text).get('error')![0]!, /^unable to change status/);
      // pandora's lid was the SHA-1 of the expiry time: that forgery fails too.
      const pandoraStyle = await form('/api/ack', { mid, lid: 'a'.repeat(40), statusCode: '1' });
      assert.equal(pandoraStyle.status, 400);
    });
    assert.equal((await form('/api/ack', { mid, lid, statusCode: '1' })).status, 200);
    await unchanged(async () => {
      const stale = await form('/api/ack', { mid, lid, statusCode: '2' });
      assert.equal(stale.status, 400);
      assert.match(goParse(stale.text).get('error')![0]!, /^unable to change status/);
    });
  });

  test('a body over maxMessageBytes and a request over bodyLimit are 413', async () => {
    const small = await startServer({
      broker: { store: 'memory:', maxMessageBytes: 4096 },
      bodyLimit: 64 * 1024,
    });
    try {
      const before = await snapshot(small);
      const big = await goPostForm(small.url, '/api/send', {
        sender: 's',
        receiver: 'r',
        data: 'x'.repeat(5000),
      });
      assert.equal(big.status, 413);
      assert.match(goParse(big.text).get('error')![0]!, /maxMessageBytes/);
      const huge = await goPostForm(small.url, '/api/send', {
        sender: 's',
        receiver: 'r',
        data: 'x'.repeat(100_000),
      });
      assert.equal(huge.status, 413);
      assert.match(goParse(huge.text).get('error')![0]!, /too large/);
      assert.equal(await snapshot(small), before);
    } finally {
      await small.close();
    }
  });

  test('GET on a POST route is 405; unknown routes 404; non-form bodies 400/415', async () => {
    await unchanged(async () => {
      const get = await raw(server.url, 'GET', '/api/send?sender=s&receiver=r');
      assert.equal(get.status, 405);
      assert.equal(goParse(get.text).get('error')?.[0], 'POST is required');
      assert.equal((await raw(server.url, 'POST', '/api/nope')).status, 404);
      const text = await raw(
        server.url,
        'POST',
        '/api/send',
        { 'content-type': 'text/plain' },
        'sender=s&receiver=r',
      );
      assert.equal(text.status, 400);
      const xml = await raw(server.url, 'POST', '/api/send', { 'content-type': 'application/xml' }, '<a/>');
      assert.equal(xml.status, 415);
      assert.ok(goParse(text.text).has('error'));
      const json = await raw(
        server.url,
        'POST',
        '/api/send',
        { 'content-type': 'application/json' },
        '{"sender":"s","receiver":"r","x":1}',
      );
      assert.equal(json.status, 400);
      const broken = await raw(
        server.url,
        'POST',
        '/api/send',
        { 'content-type': 'application/json' },
        '{"sender":',
      );
      assert.equal(broken.status, 400);
    });
  });
});
