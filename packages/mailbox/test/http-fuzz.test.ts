/**
 * 10 000 malformed requests (fast-check): bad encodings, wrong content types, broken JSON,
 * wrong types, bad durations and times, unknown statuses, forged lids, bad names, bad tokens,
 * random bytes to random paths. Every answer is a 4xx with a clear error; afterwards the
 * server is up and the store is exactly as before.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import fc from 'fast-check';
import { goEncode, snapshot, startServer } from './http-helpers.js';

const REQUESTS = 10_000;
const CONCURRENCY = 16;

interface Req {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | Buffer | undefined;
}

const badName = fc.oneof(
  fc.constant(''),
  fc.constant('has space'),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => `${s}!`),
  fc.constant('x'.repeat(300)),
  fc.constant('é'),
);
const anyName = fc.oneof(badName, fc.constantFrom('fz', 'fz2', 'a/b', 'fz.dead'));
const badDuration = fc.oneof(
  fc.constantFrom('5', '1 s', 'abc', '1d', '--1s', '.s', '1.2.3s', 'h', '∞', '9999999999999h', '1e3s'),
  fc.string({ maxLength: 12 }).map((s) => `${s}x!`),
);
const badTime = fc.oneof(
  fc.constantFrom(
    'yesterday',
    '2026-13-01T00:00:00Z',
    '2026-01-01',
    '2026-01-01T25:00:00Z',
    '1700000000',
    'Z',
  ),
  fc.string({ maxLength: 30 }).map((s) => `T${s}`),
);
const hexish = (n: number) =>
  fc.oneof(
    fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n }),
    fc.string({ maxLength: n + 5 }),
  );
const form = (values: Record<string, string | string[]>): string => goEncode(values);
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const JSONH = { 'content-type': 'application/json' };
/** A JSON send that is valid but for `field`, drawn from `bad`. */
const sendWithBad = (field: string, bad: fc.Arbitrary<unknown>): fc.Arbitrary<string> =>
  bad.map((v) => JSON.stringify({ sender: 's', receiver: 'fz', body: {}, [field]: v }));

function requests(mids: string[]): fc.Arbitrary<Req> {
  const mid = fc.oneof(fc.constantFrom(...mids), hexish(40));
  const extra = fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 3 });
  const p = (path: string, values: fc.Arbitrary<Record<string, string | string[]>>): fc.Arbitrary<Req> =>
    values.map((v) => ({ method: 'POST', path, headers: FORM, body: form(v) }));
  return fc.oneof(
    // pandora send: always one fatal defect
    p(
      '/api/send',
      fc
        .tuple(
          extra,
          fc.oneof(
            badName.map((r) => ({ sender: 's', receiver: r })),
            badDuration.map((d) => ({ sender: 's', receiver: 'fz', delay: d })),
            badTime.map((t) => ({ sender: 's', receiver: 'fz', clientTime: t })),
            fc.constant({ sender: 's' }),
          ),
        )
        .map(([e, v]) => ({ ...e, ...v })),
    ),
    p(
      '/api/fetch',
      fc.oneof(
        badName.map((r) => ({ receiver: r, leaseTime: '1s' })),
        badDuration.map((d) => ({ receiver: 'fz', leaseTime: d })),
        badDuration.map((d) => ({ receiver: 'fz', leaseTime: '1s', wait: d })),
      ),
    ),
    p(
      '/api/ack',
      fc.record({
        mid,
        lid: hexish(32),
        statusCode: fc.oneof(
          fc.constantFrom('1', '2', '0', '3', '4', '8', '-1', '01', 'x', ''),
          fc.string({ maxLength: 4 }),
        ),
      }),
    ),
    p(
      '/api/admin/headers',
      fc.oneof(
        badName.map((r) => ({ receiver: r })),
        badTime.map((t) => ({ receiver: 'fz', receivedat: `${t}!` })),
      ),
    ),
    p('/api/admin/fetchBlob', fc.record({ mid: fc.string({ maxLength: 50 }).map((s) => `${s}z`) })),
    p(
      '/api/admin/reenqueue',
      badTime.map((t) => ({ now: t })),
    ),
    // wrong methods, content types, raw bytes
    fc.record({
      method: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'POST', 'OPTIONS'),
      path: fc.oneof(
        fc.constantFrom(
          '/api/send',
          '/api/fetch',
          '/api/ack',
          '/v1/messages',
          '/v1/messages/batch',
          '/nope',
          '/api/',
          '/v1/',
        ),
        fc.string({ maxLength: 30 }).map((s) => `/v1/${encodeURIComponent(s)}x/y`),
      ),
      headers: fc.constantFrom<Record<string, string>>(
        { 'content-type': 'text/plain' },
        { 'content-type': 'application/xml' },
        { 'content-type': 'application/octet-stream' },
        { 'content-type': 'multipart/form-data; boundary=x' },
        { 'content-type': 'application/json; charset=utf-16' },
      ),
      body: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    }),
    // broken or wrongly typed JSON to /v1/
    fc.record({
      method: fc.constant('POST'),
      path: fc.constantFrom('/v1/messages', '/v1/messages/batch', '/v1/messages/acks'),
      headers: fc.constant(JSONH),
      body: fc.oneof(
        fc.string({ maxLength: 60 }).map((s) => `{${s}`),
        fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
        fc
          .record({ sender: fc.anything(), receiver: badName, body: fc.anything() })
          .map((v) => JSON.stringify(v)),
        fc
          .record({
            sender: fc.string(),
            receiver: fc.constant('fz'),
            body: fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.boolean(), fc.constant(null))),
          })
          .filter((v) => Object.keys(v.body).length > 0)
          .map((v) => JSON.stringify(v)),
        sendWithBad('delay', badDuration),
        sendWithBad('clientTime', badTime),
        sendWithBad(
          'delayMs',
          fc.oneof(
            fc.integer({ max: -1 }),
            fc.double().filter((d) => !(Number.isInteger(d) && d >= 0)),
            fc.string(),
          ),
        ),
      ),
    }),
    fc.record({
      method: fc.constant('POST'),
      path: fc
        .tuple(mid, fc.constantFrom('ack', 'extend'))
        .map(([m, op]) => `/v1/messages/${encodeURIComponent(m)}/${op}`),
      headers: fc.constant(JSONH),
      body: fc.oneof(
        fc
          .record({ lid: hexish(32), status: fc.oneof(fc.integer(), fc.string()) })
          .map((v) => JSON.stringify(v)),
        fc
          .record({ lid: hexish(32), leaseMs: fc.oneof(fc.integer(), fc.string()) })
          .map((v) => JSON.stringify(v)),
        fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
      ),
    }),
    fc.record({
      method: fc.constantFrom('POST', 'PUT'),
      path: fc
        .tuple(badName, fc.constantFrom('/fetch', '/redrive', '/purge', ''))
        .map(([n, op]) => `/v1/mailboxes/${encodeURIComponent(n)}${op}`),
      headers: fc.constant(JSONH),
      body: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
    }),
    fc.record({
      method: fc.constant('GET'),
      path: fc
        .tuple(anyName, fc.string({ maxLength: 20 }))
        .map(
          ([n, q]) =>
            `/v1/mailboxes/${encodeURIComponent(n)}/headers?after=${encodeURIComponent(q)}x&limit=${encodeURIComponent(q)}`,
        ),
      headers: fc.constant({}),
      body: fc.constant(undefined),
    }),
  );
}

function send(agent: Agent, url: URL, r: Req): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...r.headers };
    if (r.body !== undefined) headers['content-length'] = String(Buffer.byteLength(r.body));
    const req = request(
      { host: url.hostname, port: url.port, method: r.method, path: r.path, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(r.body);
  });
}

test(`${REQUESTS} malformed requests: every answer a 4xx with an error, the server up, the store unchanged`, async () => {
  const server = await startServer();
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  try {
    const mids: string[] = [];
    for (let i = 0; i < 5; i++)
      mids.push((await server.broker.send({ sender: 's', receiver: 'fz', body: { i: String(i) } })).mid);
    await server.broker.fetch('fz', { leaseMs: 600_000 }); // one leased: forged lids must not touch it
    const before = await snapshot(server);
    const reqs = fc.sample(requests(mids), { numRuns: REQUESTS, seed: 42 });
    const url = new URL(server.url);
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < reqs.length) {
        const r = reqs[next++]!;
        const res = await send(agent, url, r);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status < 400 || res.status >= 500)
          assert.fail(
            `${r.method} ${r.path} ${String(r.body).slice(0, 200)} → ${res.status} ${res.text.slice(0, 200)}`,
          );
        if (r.method !== 'HEAD') assert.ok(res.text.length > 0, `${r.method} ${r.path}: an error body`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    assert.equal(await snapshot(server), before, 'the store changed');
    const health = await send(agent, url, { method: 'GET', path: '/healthz', headers: {}, body: undefined });
    assert.equal(health.status, 200);
    // Still serving real work.
    const ok = await send(agent, url, {
      method: 'POST',
      path: '/api/send',
      headers: FORM,
      body: 'sender=s&receiver=after',
    });
    assert.equal(ok.status, 200);
    assert.ok(
      [...statuses.keys()].every((s) => s >= 400 && s < 500),
      JSON.stringify([...statuses]),
    );
  } finally {
    agent.destroy();
    await server.close();
  }
});
