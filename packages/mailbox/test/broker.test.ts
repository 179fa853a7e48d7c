import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  Broker,
  MailboxError,
  ManualClock,
  MemoryStore,
  SqliteStore,
  decodeBody,
  encodeBody,
  resolveOptions,
  type MessageStore,
} from '@switchyard/mailbox';
import { makeTempDir } from '@switchyard/testkit';

function code(e: unknown): string {
  return e instanceof MailboxError ? e.code : `not a MailboxError: ${String(e)}`;
}

async function codeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    return code(e);
  }
  return 'resolved';
}

test('resolveOptions fills defaults and names the option it refuses', () => {
  const o = resolveOptions({ store: 'memory:' });
  assert.equal(o.maxMessageBytes, 256 * 1024);
  assert.equal(o.defaultLeaseMs, 300_000);
  assert.deepEqual(o.mailboxDefaults, { maxDeliveries: 5, retryDelayMs: 1000, retentionMs: 86_400_000 });
  assert.ok(Object.isFrozen(o));
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ maxMessageBytes: 0 }, /maxMessageBytes/],
    [{ maxMessageBytes: 1.5 }, /maxMessageBytes/],
    [{ defaultLeaseMs: -1 }, /defaultLeaseMs/],
    [{ maxWaitMs: 'x' }, /maxWaitMs/],
    [{ maxPendingOps: 0 }, /maxPendingOps/],
    [{ hash: 'md5' }, /hash/],
    [{ mailboxDefaults: { maxDeliveries: 0 } }, /mailboxDefaults\.maxDeliveries/],
    [{ mailboxDefaults: { retries: 1 } }, /mailboxDefaults\.retries/],
    [{ sqlite: { synchronous: 'off' } }, /sqlite\.synchronous/],
    [{ clock: {} }, /clock/],
    [{ store: 42 }, /store/],
  ];
  for (const [extra, message] of bad) {
    assert.throws(
      () => resolveOptions({ store: 'memory:', ...extra }),
      (e: unknown) => code(e) === 'MAILBOX_ERR_INVALID_ARGUMENT' && message.test((e as Error).message),
      JSON.stringify(extra),
    );
  }
});

test('Broker.open understands memory: and sqlite: URLs and refuses others', async () => {
  using dir = makeTempDir('switchyard-mailbox-');
  for (const url of ['memory:', `sqlite:${join(dir.path, 'a.db')}`, 'sqlite::memory:']) {
    const broker = await Broker.open({ store: url });
    const m = await broker.send({ sender: 's', receiver: 'r', body: { a: '1' } });
    assert.equal((await broker.fetch('r'))?.mid, m.mid, url);
    await broker.close();
  }
  for (const url of ['mysql://x', 'sqlite:', ''])
    assert.equal(await codeOf(() => Broker.open({ store: url })), 'MAILBOX_ERR_INVALID_ARGUMENT', url);
});

test('one process owns a SQLite database: a second open gets MAILBOX_ERR_STORE_LOCKED', async () => {
  using dir = makeTempDir('switchyard-mailbox-');
  const path = join(dir.path, 'owned.db');
  const first = await SqliteStore.open(path);
  assert.equal(await codeOf(() => SqliteStore.open(path, { busyTimeoutMs: 20 })), 'MAILBOX_ERR_STORE_LOCKED');
  await first.close();
  await using second = await SqliteStore.open(path);
  await second.close();
  await second.close();
});

test('maxPendingOps and maxWaiters bound the queues', async () => {
  const broker = await Broker.open({ store: 'memory:', maxPendingOps: 5, maxWaiters: 1 });
  try {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        broker.send({ sender: 's', receiver: 'r', body: { i: `${i}` } }).then(
          () => 'ok',
          (e: unknown) => code(e),
        ),
      ),
    );
    assert.deepEqual(results.filter((r) => r === 'ok').length, 5);
    assert.deepEqual(results.filter((r) => r === 'MAILBOX_ERR_OVERLOADED').length, 3);
    const waiting = broker.fetch('empty', { waitMs: 60_000 });
    while ((await broker.stats()).waiters === 0) await new Promise((r) => setImmediate(r));
    assert.equal(await codeOf(() => broker.fetch('empty2', { waitMs: 1000 })), 'MAILBOX_ERR_OVERLOADED');
    await broker.send({ sender: 's', receiver: 'empty', body: {} });
    assert.ok(await waiting);
  } finally {
    await broker.close();
  }
});

test('a failing store rejects the whole batch with MAILBOX_ERR_STORE and the broker carries on', async () => {
  const inner = new MemoryStore();
  let fail = true;
  const cause = new Error('disk on fire');
  const flaky: MessageStore = {
    blobs: inner.blobs,
    apply: async (ops, now) => {
      if (fail) throw cause;
      return inner.apply(ops, now);
    },
    get: (mid) => inner.get(mid),
    headers: (m, a, l) => inner.headers(m, a, l),
    mailboxes: (now) => inner.mailboxes(now),
    stats: () => inner.stats(),
    close: () => inner.close(),
  };
  const broker = await Broker.open({ store: flaky });
  try {
    const errors = await Promise.all(
      [1, 2, 3].map((i) =>
        broker.send({ sender: 's', receiver: 'r', body: { i: `${i}` } }).then(
          () => null,
          (e: unknown) => e as MailboxError,
        ),
      ),
    );
    for (const e of errors) {
      assert.equal(e?.code, 'MAILBOX_ERR_STORE');
      assert.equal(e?.cause, cause);
    }
    assert.equal((await broker.stats()).store.messages, 0);
    fail = false;
    await broker.send({ sender: 's', receiver: 'r', body: {} });
    assert.equal((await broker.stats()).store.messages, 1);
  } finally {
    await broker.close();
    await flaky.close();
  }
});

test('the sweep on the clock ends expired leases and frees retained messages without explicit calls', async () => {
  const clock = new ManualClock();
  const broker = await Broker.open({
    store: 'memory:',
    clock,
    sweepIntervalMs: 1000,
    mailboxDefaults: { retryDelayMs: 0, retentionMs: 5000 },
  });
  try {
    const sent = await broker.send({ sender: 's', receiver: 'r', body: { x: '1' } });
    const m = (await broker.fetch('r', { leaseMs: 1500 }))!;
    const waiting = broker.fetch('r', { waitMs: 10_000 });
    while ((await broker.stats()).waiters === 0) await new Promise((r) => setImmediate(r));
    clock.advance(1000);
    clock.advance(1000);
    const again = (await waiting)!;
    assert.equal(again.mid, m.mid);
    assert.equal(again.deliveryCount, 2);
    await broker.ack(again.mid, again.lid!, 1);
    for (let i = 0; i < 6; i++) {
      clock.advance(1000);
      for (let j = 0; j < 5; j++) await new Promise((r) => setImmediate(r));
    }
    assert.equal(await broker.get(sent.mid), null);
    assert.equal((await broker.stats()).store.blobs, 0);
  } finally {
    await broker.close();
  }
});

test('batches are published on switchyard:mailbox:batch', async () => {
  const events: { ops: number }[] = [];
  const listener = (e: unknown): void => {
    events.push(e as { ops: number });
  };
  subscribe('switchyard:mailbox:batch', listener);
  const broker = await Broker.open({ store: 'memory:' });
  try {
    await Promise.all([1, 2, 3].map((i) => broker.send({ sender: 's', receiver: 'r', body: { i: `${i}` } })));
    assert.deepEqual(
      events.map((e) => e.ops),
      [3],
    );
  } finally {
    unsubscribe('switchyard:mailbox:batch', listener);
    await broker.close();
  }
});

test('ManualClock fires due timers in order, never goes backwards, and cancels', () => {
  const clock = new ManualClock(1000);
  const fired: string[] = [];
  clock.setTimer(20, () => fired.push('b'));
  clock.setTimer(10, () => fired.push('a'));
  const cancel = clock.setTimer(15, () => fired.push('x'));
  cancel();
  clock.advance(10);
  assert.deepEqual(fired, ['a']);
  clock.advance(100);
  assert.deepEqual(fired, ['a', 'b']);
  assert.equal(clock.now(), 1110);
  assert.throws(() => clock.set(0), RangeError);
  assert.equal(clock.pendingTimers, 0);
});

const field = fc.string({ unit: 'grapheme', maxLength: 12 });
const body = fc.dictionary(field, fc.oneof(field, fc.array(field, { minLength: 2, maxLength: 4 })), {
  maxKeys: 6,
});

test('body codec: decode(encode(b)) is b, and the encoding is canonical (key order does not matter)', () => {
  fc.assert(
    fc.property(body, (b) => {
      const encoded = encodeBody(b);
      assert.match(encoded, /^[\x21-\x7e]*$/, 'the encoding is printable ASCII');
      assert.deepEqual(decodeBody(encoded), { ...b });
      const reversed = Object.fromEntries(Object.entries(b).reverse());
      assert.equal(encodeBody(reversed), encoded);
    }),
    { numRuns: 300 },
  );
});

test('body codec: a "__proto__" field is data, not a prototype', () => {
  const decoded = decodeBody(encodeBody(JSON.parse('{"__proto__":"x","a":"1"}') as Record<string, string>));
  assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
  assert.deepEqual(Object.keys(decoded), ['__proto__', 'a']);
  assert.equal(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.value, 'x');
});

test('a sent "__proto__" field comes back as data in the send answer and the stored message', async () => {
  using dir = makeTempDir('proto-field');
  const broker = await Broker.open({ store: `sqlite:${join(dir.path, 'db.sqlite')}` });
  try {
    const raw = JSON.parse('{"a":"1","__proto__":["x","y"],"z":"2"}') as Record<string, string | string[]>;
    const sent = await broker.send({ sender: 's', receiver: 'proto', body: raw });
    for (const body of [sent.body, (await broker.get(sent.mid))!.body]) {
      assert.equal(Object.getPrototypeOf(body), Object.prototype);
      assert.deepEqual(Object.keys(body), ['__proto__', 'a', 'z']);
      assert.deepEqual(Object.getOwnPropertyDescriptor(body, '__proto__')?.value, ['x', 'y']);
    }
  } finally {
    await broker.close();
  }
});

test('body codec: anything but string fields is refused with MAILBOX_ERR_INVALID_ARGUMENT', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.constant(null),
        fc.integer(),
        fc.string(),
        fc.array(fc.string()),
        fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)), { minKeys: 1 }),
      ),
      (input) => {
        assert.throws(
          () => encodeBody(input),
          (e: unknown) => code(e) === 'MAILBOX_ERR_INVALID_ARGUMENT',
        );
      },
    ),
    { numRuns: 200 },
  );
});

test('mids: clientTime in the first 12 hex digits (so they sort by time), then the content hash', async () => {
  const broker = await Broker.open({ store: 'memory:' });
  try {
    const clientTime = new Date('2026-03-04T05:06:07.089Z');
    const a = await broker.send({ sender: 's', receiver: 'r', body: { k: 'v' }, clientTime });
    assert.equal(a.mid.slice(0, 12), clientTime.getTime().toString(16).padStart(12, '0'));
    assert.equal(a.mid.length, 40);
    const b = await broker.send({ sender: 's', receiver: 'r', body: { k: 'w' }, clientTime });
    assert.equal(b.mid.slice(0, 12), a.mid.slice(0, 12));
    assert.notEqual(b.mid, a.mid);
    const later = await broker.send({
      sender: 's',
      receiver: 'r',
      body: { k: 'v' },
      clientTime: new Date(clientTime.getTime() + 1),
    });
    assert.ok(later.mid > a.mid && later.mid > b.mid);
  } finally {
    await broker.close();
  }
  const sha256 = await Broker.open({ store: 'memory:', hash: 'sha256' });
  try {
    const m = await sha256.send({ sender: 's', receiver: 'r', body: {} });
    assert.match(m.mid, /^[0-9a-f]{64}$/);
    assert.match(m.blobKey, /^[0-9a-f]{64}$/);
  } finally {
    await sha256.close();
  }
});

test('a sweep that hits sweepLimit runs again at once, so expiry keeps up', async () => {
  const clock = new ManualClock();
  const broker = await Broker.open({
    store: 'memory:',
    clock,
    sweepIntervalMs: 1000,
    sweepLimit: 10,
    mailboxDefaults: { retentionMs: 0 },
  });
  try {
    await broker.sendMany(
      Array.from({ length: 55 }, (_, i) => ({ sender: 's', receiver: 'r', body: { i: `${i}` } })),
    );
    const ms = await broker.fetchMany('r', { max: 100 });
    await Promise.all(ms.map((m) => broker.ack(m.mid, m.lid!, 1)));
    assert.equal((await broker.stats()).store.messages, 55);
    clock.advance(1000);
    // One interval: 55 messages at 10 per step are gone without another tick of the clock.
    for (let i = 0; i < 200 && (await broker.stats()).store.messages > 0; i++)
      await new Promise((r) => setImmediate(r));
    const s = await broker.stats();
    assert.equal(s.store.messages, 0);
    assert.equal(s.store.blobs, 0);
  } finally {
    await broker.close();
  }
});

test('the attempt record stops growing at 64 KiB (a message rejected forever stays bounded)', async () => {
  for (const store of ['memory:', 'sqlite::memory:']) {
    const broker = await Broker.open({ store, sweepIntervalMs: 0, mailboxDefaults: { retryDelayMs: 0 } });
    try {
      const sent = await broker.send({ sender: 's', receiver: 'loop.dead', body: {} });
      for (let i = 0; i < 1300; i++) {
        const m = (await broker.fetch('loop.dead', { consumer: 'c' }))!;
        await broker.ack(m.mid, m.lid!, 2);
      }
      const got = (await broker.get(sent.mid))!;
      assert.equal(got.deliveryCount, 1300, store);
      const attempts = got.attempts!;
      assert.ok(
        attempts.length > 900 && attempts.length < 1300,
        `${store}: ${attempts.length} attempts kept`,
      );
      assert.deepEqual(
        attempts.slice(0, 3).map((a) => a.n),
        [1, 2, 3],
        'the first attempts are kept',
      );
    } finally {
      await broker.close();
    }
  }
});

test('headers paging: any mix of same-millisecond sends and limits lists every message once, in send order', async () => {
  // Each case: the clock steps (0 or 1 ms) between sends, a page size, and which messages are
  // confirmed after the first page (the cursor must survive the mailbox changing under it).
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom(0, 0, 0, 1), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 0, max: 5 }),
      async (steps, limit, confirm) => {
        const clock = new ManualClock();
        await using broker = await Broker.open({ store: 'memory:', clock, sweepIntervalMs: 0 });
        const sent: string[] = [];
        for (const [i, step] of steps.entries()) {
          clock.advance(step);
          sent.push((await broker.send({ sender: 's', receiver: 'p', body: { i: String(i) } })).mid);
        }
        const first = await broker.headersPage('p', { limit });
        const seen = first.messages.map((h) => h.mid);
        const gone = new Set<string>();
        const leased =
          confirm === 0 ? [] : await broker.fetchMany('p', { max: Math.min(confirm, seen.length) });
        for (const m of leased) {
          await broker.ack(m.mid, m.lid!, 1);
          gone.add(m.mid);
        }
        let next = first.next;
        while (next !== null) {
          const page = await broker.headersPage('p', { limit, cursor: next });
          assert.ok(page.messages.length <= limit);
          assert.ok(
            page.messages.length > 0 || page.next === null,
            'a page is empty only when it is the last',
          );
          seen.push(...page.messages.map((h) => h.mid));
          next = page.next;
        }
        assert.deepEqual(seen, sent, 'every message once, in send order');
        assert.deepEqual(
          (await broker.headers('p', { limit: 1000 })).map((h) => h.mid),
          sent.filter((mid) => !gone.has(mid)),
        );
      },
    ),
    { numRuns: 60 },
  );
});

test('headers: a cursor string is either a position or MAILBOX_ERR_INVALID_ARGUMENT, nothing else', async () => {
  await using broker = await Broker.open({ store: 'memory:', sweepIntervalMs: 0 });
  await broker.send({ sender: 's', receiver: 'c', body: {} });
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.string({ maxLength: 80 }),
        fc.base64String({ maxLength: 40 }).map((s) => s.replace(/=+$/, '')),
      ),
      async (cursor) => {
        const result = await codeOf(() => broker.headers('c', { cursor }));
        assert.ok(result === 'resolved' || result === 'MAILBOX_ERR_INVALID_ARGUMENT', result);
      },
    ),
    { numRuns: 500 },
  );
});

/** Lets pending immediates and microtasks run (several event-loop turns). */
async function turns(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

test(
  'a poll that drained its mailbox waits for the next send, whose batch carries its claim; fetchMany claims first',
  { timeout: 20_000 },
  async () => {
    const broker = await Broker.open({ store: 'memory:', sweepIntervalMs: 0 });
    try {
      const poll = broker.openPoll('q');
      const m1 = await broker.send({ sender: 's', receiver: 'q', body: { n: '1' } });
      assert.deepEqual(
        (await poll.fetch({ max: 10, waitMs: 5000 })).map((m) => m.mid),
        [m1.mid],
      );
      // Drained (1 of 10): the next fetch submits no claim until something is committed.
      const before = (await broker.stats()).batches;
      const next = poll.fetch({ max: 10, waitMs: 5000 });
      await turns();
      assert.equal((await broker.stats()).batches, before, 'no empty claim');
      const m2 = await broker.send({ sender: 's', receiver: 'q', body: { n: '2' } });
      assert.deepEqual(
        (await next).map((m) => m.mid),
        [m2.mid],
      );
      assert.equal((await broker.stats()).batches, before + 1, "the send's batch carried the claim");
      // Again after a claim that rode in a send's batch: that batch's own send is no news.
      const third = poll.fetch({ max: 10, waitMs: 5000 });
      await turns();
      assert.equal((await broker.stats()).batches, before + 1, 'no empty claim after a handed-off one');
      const m5 = await broker.send({ sender: 's', receiver: 'q', body: { n: '5' } });
      assert.deepEqual(
        (await third).map((m) => m.mid),
        [m5.mid],
      );
      assert.equal((await broker.stats()).batches, before + 2);

      // The same with fetchMany: an empty claim first, then the send, then (woken) a claim in it.
      const m3 = await broker.send({ sender: 's', receiver: 'q', body: { n: '3' } });
      assert.equal((await broker.fetchMany('q', { max: 10, waitMs: 5000 }))[0]?.mid, m3.mid);
      const before2 = (await broker.stats()).batches;
      const polled = broker.fetchMany('q', { max: 10, waitMs: 5000 });
      await turns();
      assert.equal((await broker.stats()).batches, before2 + 1, 'fetchMany claimed an empty mailbox');
      await broker.send({ sender: 's', receiver: 'q', body: { n: '4' } });
      assert.equal((await polled).length, 1);
      poll.close();
    } finally {
      await broker.close();
    }
  },
);

test(
  'a poll misses nothing: a send between two fetches, a send while its claim runs, a message coming due',
  { timeout: 20_000 },
  async () => {
    const clock = new ManualClock();
    const broker = await Broker.open({ store: 'memory:', sweepIntervalMs: 0, clock });
    try {
      const poll = broker.openPoll('q');
      await broker.send({ sender: 's', receiver: 'q', body: { n: '1' } });
      assert.equal((await poll.fetch({ max: 10, waitMs: 60_000 })).length, 1);
      // Committed after the drained fetch and before the next: the next claims at once.
      const m2 = await broker.send({ sender: 's', receiver: 'q', body: { n: '2' } });
      const got = await poll.fetch({ max: 10, waitMs: 60_000 });
      assert.deepEqual(
        got.map((m) => m.mid),
        [m2.mid],
      );
      // A send submitted in the same turn as the claim: in one batch or the next, it is found
      // without the clock moving (a missed notification would wait 60 s of a clock that stands).
      const both = poll.fetch({ max: 10, waitMs: 60_000 });
      const m3 = broker.send({ sender: 's', receiver: 'q', body: { n: '3' } });
      assert.deepEqual(
        (await both).map((m) => m.mid),
        [(await m3).mid],
      );
      // A delayed message: the drained poll waits until it comes due, then claims it.
      await broker.send({ sender: 's', receiver: 'q', body: { n: '4' }, delayMs: 5000 });
      const due = poll.fetch({ max: 10, waitMs: 60_000 });
      let done = false;
      void due.then(() => (done = true));
      await turns();
      assert.equal(done, false);
      clock.advance(5000);
      assert.equal((await due)[0]?.body.n, '4');
      poll.close();
    } finally {
      await broker.close();
    }
  },
);

test('openPoll: bad names and options are refused; a closed poll or broker refuses fetches', async () => {
  const broker = await Broker.open({ store: 'memory:', sweepIntervalMs: 0 });
  assert.equal(code(catchSync(() => broker.openPoll('bad name'))), 'MAILBOX_ERR_INVALID_MAILBOX');
  const poll = broker.openPoll('q');
  assert.equal(await codeOf(() => poll.fetch({ max: 0 })), 'MAILBOX_ERR_INVALID_ARGUMENT');
  assert.equal(await codeOf(() => poll.fetch({ max: 1, waitMs: -1 })), 'MAILBOX_ERR_INVALID_ARGUMENT');
  assert.equal(
    await codeOf(() => poll.fetch(null as unknown as { max: number })),
    'MAILBOX_ERR_INVALID_ARGUMENT',
  );
  assert.deepEqual(await poll.fetch({ max: 1 }), []);
  poll.close();
  poll.close();
  assert.equal(await codeOf(() => poll.fetch({ max: 1 })), 'MAILBOX_ERR_CLOSED');
  await broker.close();
  assert.equal(code(catchSync(() => broker.openPoll('q'))), 'MAILBOX_ERR_CLOSED');
});

function catchSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}
