/**
 * The store conformance suite: every rule of the model, checked through a `Broker` on a
 * `ManualClock`, against any `MessageStore`. Call it from a test file:
 *
 *   storeConformance('sqlite', () => sqliteHarness());
 *
 * A PostgreSQL store runs it unchanged. The harness opens stores over one set of data, so the
 * durability tests can close and reopen.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Broker } from './broker.js';
import { ManualClock } from './clock.js';
import { MailboxError } from './errors.js';
import type { Message } from './message.js';
import { MessageStatus } from './message.js';
import type { BrokerOptions } from './options.js';
import type { MessageStore } from './store.js';

export interface StoreHarness {
  /** Opens a store; after the previous one closed, a new one sees the same data if `durable`. */
  open(): Promise<MessageStore>;
  /** Whether data survives close and reopen. */
  readonly durable: boolean;
  /** Deletes the data. */
  destroy(): Promise<void>;
}

const LEASE = 10_000;
const RETRY = 2_000;

interface Ctx {
  readonly broker: Broker;
  readonly clock: ManualClock;
  readonly store: MessageStore;
  readonly harness: StoreHarness;
  reopen(): Promise<Ctx>;
}

async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await cond()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  assert.fail(`timed out waiting for ${what}`);
}

function code(e: unknown): string {
  return e instanceof MailboxError ? e.code : `not a MailboxError: ${String(e)}`;
}

async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), expected: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    assert.equal(code(e), expected);
    return;
  }
  assert.fail(`expected ${expected}`);
}

/** Registers the conformance tests for the stores `makeHarness` gives. */
export function storeConformance(
  label: string,
  makeHarness: () => StoreHarness | Promise<StoreHarness>,
  brokerOptions: Partial<BrokerOptions> = {},
): void {
  async function withCtx(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
    const harness = await makeHarness();
    const clock = new ManualClock();
    const open = async (): Promise<Ctx> => {
      const store = await harness.open();
      const broker = await Broker.open({
        ...brokerOptions,
        store,
        clock,
        sweepIntervalMs: 0,
        mailboxDefaults: { maxDeliveries: 3, retryDelayMs: RETRY, retentionMs: 60_000 },
        defaultLeaseMs: LEASE,
      });
      const ctx: Ctx = {
        broker,
        clock,
        store,
        harness,
        reopen: async () => {
          await broker.close();
          await store.close();
          current = await open();
          return current;
        },
      };
      return ctx;
    };
    let current = await open();
    try {
      await fn(current);
    } finally {
      await current.broker.close();
      await current.store.close();
      await harness.destroy();
    }
  }
  const it = (name: string, fn: (ctx: Ctx) => Promise<void>): void => {
    test(name, () => withCtx(fn));
  };

  describe(`MessageStore conformance: ${label}`, () => {
    it('a sent message is fetched with its body, a random lid, a lease and a fencing token', async ({
      broker,
      clock,
    }) => {
      const t0 = clock.now();
      const sent = await broker.send({
        sender: 'alice',
        receiver: 'bob',
        body: { text: 'hello', tags: ['a', 'b'], 'sp ace&=': 'x=y&z' },
        clientTime: new Date(t0 - 5),
      });
      assert.match(sent.mid, /^[0-9a-f]{40}$/);
      assert.equal(sent.status, MessageStatus.NotDelivered);
      assert.equal(sent.state, 'queued');
      assert.equal(sent.receivedAt.getTime(), t0);
      assert.equal(sent.sendWhen.getTime(), t0);
      assert.equal(sent.clientTime.getTime(), t0 - 5);
      assert.equal(sent.deliveryCount, 0);
      assert.equal(sent.lid, null);
      clock.advance(3);
      const m = await broker.fetch('bob', { leaseMs: 5000, consumer: 'worker-1' });
      assert.ok(m);
      assert.equal(m.mid, sent.mid);
      assert.deepEqual(m.body, { text: 'hello', tags: ['a', 'b'], 'sp ace&=': 'x=y&z' });
      assert.deepEqual(sent.body, m.body, 'send returns the body as fetch does');
      assert.equal(m.sender, 'alice');
      assert.equal(m.receiver, 'bob');
      assert.equal(m.mailbox, 'bob');
      assert.equal(m.state, 'leased');
      assert.equal(m.deliveryCount, 1);
      assert.match(m.lid ?? '', /^[0-9a-f]{32}$/);
      assert.equal(typeof m.fence, 'number');
      assert.equal(m.fetchTime?.getTime(), t0 + 3);
      assert.equal(m.leasedUntil?.getTime(), t0 + 3 + 5000);
      assert.equal(await broker.fetch('bob'), null, 'a leased message is not handed out twice');
      assert.equal(await broker.fetch('alice'), null);
    });

    it('mids are content-derived: an identical send is stored once and returns the same mid', async ({
      broker,
    }) => {
      const clientTime = new Date('2025-06-01T00:00:00Z');
      const a = await broker.send({ sender: 's', receiver: 'r', body: { k: 'v' }, clientTime });
      const b = await broker.send({ sender: 's', receiver: 'r', body: { k: 'v' }, clientTime });
      assert.equal(a.mid, b.mid);
      const [c, d] = await Promise.all([
        broker.send({ sender: 's', receiver: 'r', body: { k: 'w' }, clientTime }),
        broker.send({ sender: 's', receiver: 'r', body: { k: 'w' }, clientTime }),
      ]);
      assert.equal(c.mid, d.mid, 'identical sends in one batch are one message');
      assert.notEqual(a.mid, c.mid);
      const e = await broker.send({ sender: 's', receiver: 'r2', body: { k: 'v' }, clientTime });
      assert.notEqual(a.mid, e.mid, 'the receiver is part of the mid');
      const f = await broker.send({ sender: 's', receiver: 'r', body: { k: 'v' } });
      const g = await broker.send({ sender: 's', receiver: 'r', body: { k: 'v' } });
      assert.notEqual(f.mid, g.mid, 'without clientTime every send is a new message');
      const stats = await broker.stats();
      assert.equal(stats.store.messages, 5);
      assert.equal(stats.duplicateSends, 2);
      assert.equal(await broker.store.blobs.refCount(a.blobKey), 4, 'one blob, a reference per message');
      assert.equal(a.blobKey, e.blobKey);
      const first = await broker.fetch('r');
      assert.equal(first?.mid, a.mid);
      // A duplicate of a leased message does not reset it.
      const again = await broker.send({ sender: 's', receiver: 'r', body: { k: 'v' }, clientTime });
      assert.equal(again.state, 'leased');
      assert.equal(again.deliveryCount, 1);
    });

    it('hands out the oldest due message first and holds delayed ones until sendWhen', async ({
      broker,
      clock,
    }) => {
      const late = await broker.send({ sender: 's', receiver: 'q', body: { n: 'late' }, delayMs: 1000 });
      assert.equal(late.sendWhen.getTime() - late.receivedAt.getTime(), 1000);
      assert.equal(late.delayMs, 1000);
      clock.advance(1);
      for (let i = 0; i < 5; i++) {
        await broker.send({ sender: 's', receiver: 'q', body: { n: String(i) } });
        clock.advance(1);
      }
      const got = await broker.fetchMany('q', { max: 10 });
      assert.deepEqual(
        got.map((m) => m.body.n),
        ['0', '1', '2', '3', '4'],
      );
      assert.equal(await broker.fetch('q'), null);
      clock.advance(994);
      assert.equal((await broker.fetch('q'))?.body.n, 'late');
    });

    it('fetchMany returns at most max messages', async ({ broker }) => {
      await broker.sendMany(
        Array.from({ length: 7 }, (_, i) => ({ sender: 's', receiver: 'q', body: { i: `${i}` } })),
      );
      assert.equal((await broker.fetchMany('q', { max: 3 })).length, 3);
      assert.equal((await broker.fetchMany('q', { max: 3 })).length, 3);
      assert.equal((await broker.fetchMany('q', { max: 3 })).length, 1);
      assert.equal((await broker.fetchMany('q', { max: 3 })).length, 0);
    });

    it('many concurrent fetchers never hold one message twice', async ({ broker }) => {
      const n = 60;
      await broker.sendMany(
        Array.from({ length: n }, (_, i) => ({ sender: 's', receiver: 'race', body: { i: `${i}` } })),
      );
      const fetchers = Array.from({ length: 100 }, (_, i) =>
        i % 3 === 0 ? broker.fetchMany('race', { max: 2 }) : broker.fetch('race').then((m) => (m ? [m] : [])),
      );
      const got = (await Promise.all(fetchers)).flat();
      const mids = got.map((m) => m.mid);
      assert.equal(new Set(mids).size, mids.length, 'a message was handed out twice');
      assert.equal(mids.length, n);
      const fences = got.map((m) => m.fence!);
      assert.equal(new Set(fences).size, fences.length, 'fencing tokens are unique');
    });

    it('long-polling fetchers racing for new sends never share a message', async ({ broker, clock }) => {
      const waiting = Array.from({ length: 20 }, () => broker.fetch('lp', { waitMs: 5000 }));
      await until(async () => (await broker.stats()).waiters === 20, '20 waiters');
      await broker.sendMany(
        Array.from({ length: 12 }, (_, i) => ({ sender: 's', receiver: 'lp', body: { i: `${i}` } })),
      );
      await until(async () => (await broker.stats()).waiters === 8, '12 woken');
      clock.advance(5000);
      const got = await Promise.all(waiting);
      const mids = got.filter((m): m is Message => m !== null).map((m) => m.mid);
      assert.equal(mids.length, 12);
      assert.equal(new Set(mids).size, 12);
    });

    it('a confirmed message is never delivered again', async ({ broker, clock }) => {
      const sent = await broker.send({ sender: 's', receiver: 'c', body: { x: '1' } });
      const m = (await broker.fetch('c'))!;
      await broker.ack(m.mid, m.lid!, 1);
      await rejectsWith(broker.ack(m.mid, m.lid!, 1), 'MAILBOX_ERR_LEASE_INVALID');
      await rejectsWith(broker.ack(m.mid, m.lid!, 2), 'MAILBOX_ERR_LEASE_INVALID');
      clock.advance(LEASE + RETRY + 1);
      assert.equal(await broker.reenqueue(), 0);
      assert.equal(await broker.fetch('c'), null);
      const got = await broker.get(sent.mid);
      assert.equal(got?.status, MessageStatus.Confirmed);
      assert.equal(got?.state, 'confirmed');
      assert.equal(got?.leasedUntil, null);
      assert.deepEqual(
        got?.attempts?.map((a) => a.outcome),
        [1],
      );
      assert.equal((await broker.headers('c')).length, 0, 'confirmed messages are not pending');
    });

    it('forged, stale and malformed lids, unknown mids and bad statuses change nothing', async ({
      broker,
    }) => {
      await broker.send({ sender: 's', receiver: 'f', body: { x: '1' } });
      const m = (await broker.fetch('f'))!;
      const forged = m.lid!.startsWith('0') ? '1' + m.lid!.slice(1) : '0' + m.lid!.slice(1);
      await rejectsWith(broker.ack(m.mid, forged, 1), 'MAILBOX_ERR_LEASE_INVALID');
      await rejectsWith(broker.extend(m.mid, forged, 1000), 'MAILBOX_ERR_LEASE_INVALID');
      await rejectsWith(broker.ack('0'.repeat(40), m.lid!, 1), 'MAILBOX_ERR_NOT_FOUND');
      await rejectsWith(() => broker.ack(m.mid, 'xyz', 1), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.ack(m.mid, m.lid!.toUpperCase(), 1), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.ack('nothex', m.lid!, 1), 'MAILBOX_ERR_INVALID_ARGUMENT');
      for (const bad of [0, 3, 4, 8, 16, '1', null])
        await rejectsWith(() => broker.ack(m.mid, m.lid!, bad as never), 'MAILBOX_ERR_INVALID_ARGUMENT');
      const after = await broker.get(m.mid);
      assert.equal(after?.state, 'leased');
      assert.equal(after?.lid, m.lid);
      assert.equal(after?.leasedUntil?.getTime(), m.leasedUntil?.getTime());
      assert.equal(after?.attempts?.length, 0);
      await broker.ack(m.mid, m.lid!, 1);
    });

    it('an expired lease cannot be acked, counts a Timeout attempt and comes back after the retry delay', async ({
      broker,
      clock,
    }) => {
      await broker.send({ sender: 's', receiver: 'e', body: { x: '1' } });
      const first = (await broker.fetch('e', { consumer: 'w1' }))!;
      clock.advance(LEASE);
      await rejectsWith(broker.ack(first.mid, first.lid!, 1), 'MAILBOX_ERR_LEASE_INVALID');
      assert.equal(await broker.fetch('e'), null, 'not due before the sweep and the retry delay');
      assert.equal(
        await broker.reenqueue(new Date(clock.now() - 1)),
        0,
        'not expired as of a moment earlier',
      );
      assert.equal(await broker.reenqueue(), 1);
      const h = await broker.get(first.mid);
      assert.equal(h?.status, MessageStatus.Timeout);
      assert.equal(h?.dueAt?.getTime(), first.leasedUntil!.getTime() + RETRY);
      clock.advance(RETRY - 1);
      assert.equal(await broker.fetch('e'), null);
      clock.advance(1);
      const second = (await broker.fetch('e', { consumer: 'w2' }))!;
      assert.equal(second.mid, first.mid);
      assert.equal(second.deliveryCount, 2);
      assert.notEqual(second.lid, first.lid);
      assert.ok(second.fence! > first.fence!, 'the fencing token grows');
      await rejectsWith(broker.ack(first.mid, first.lid!, 1), 'MAILBOX_ERR_LEASE_INVALID');
      await broker.ack(second.mid, second.lid!, 1);
      const attempts = (await broker.get(first.mid))!.attempts!;
      assert.deepEqual(
        attempts.map((a) => [a.n, a.consumer, a.outcome]),
        [
          [1, 'w1', 4],
          [2, 'w2', 1],
        ],
      );
      assert.equal(attempts[0]!.endedAt.getTime(), first.leasedUntil!.getTime());
      assert.equal(attempts[0]!.fetchedAt.getTime(), first.fetchTime!.getTime());
    });

    it('extend moves a valid lease; a stale or expired one cannot be extended', async ({ broker, clock }) => {
      await broker.send({ sender: 's', receiver: 'x', body: { x: '1' } });
      const m = (await broker.fetch('x', { leaseMs: 1000 }))!;
      clock.advance(900);
      const ext = await broker.extend(m.mid, m.lid!, 1000);
      assert.equal(ext.leasedUntil?.getTime(), clock.now() + 1000);
      assert.equal(ext.lid, m.lid);
      assert.deepEqual(ext.body, { x: '1' });
      clock.advance(500);
      assert.equal(await broker.reenqueue(), 0, 'an extended lease is not expired');
      await broker.ack(m.mid, m.lid!, 1);
      await broker.send({ sender: 's', receiver: 'x', body: { x: '2' } });
      const n = (await broker.fetch('x', { leaseMs: 1000 }))!;
      clock.advance(1000);
      await rejectsWith(broker.extend(n.mid, n.lid!, 1000), 'MAILBOX_ERR_LEASE_INVALID');
      await rejectsWith(() => broker.extend(n.mid, n.lid!, 0), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.extend(n.mid, n.lid!, 1.5), 'MAILBOX_ERR_INVALID_ARGUMENT');
    });

    it('a rejected message comes back after the retry delay, not at once', async ({ broker, clock }) => {
      await broker.send({ sender: 's', receiver: 'rj', body: { x: '1' } });
      const m = (await broker.fetch('rj'))!;
      await broker.ack(m.mid, m.lid!, 2);
      const h = await broker.get(m.mid);
      assert.equal(h?.status, MessageStatus.Rejected);
      assert.equal(h?.state, 'queued');
      assert.equal(await broker.fetch('rj'), null);
      clock.advance(RETRY);
      const again = (await broker.fetch('rj'))!;
      assert.equal(again.mid, m.mid);
      assert.equal(again.deliveryCount, 2);
    });

    it('after maxDeliveries attempts a message moves to <name>.dead with its record', async ({
      broker,
      clock,
    }) => {
      const sent = await broker.send({ sender: 's', receiver: 'work', body: { x: '1' } });
      for (let i = 1; i <= 3; i++) {
        const m = (await broker.fetch('work'))!;
        assert.equal(m.deliveryCount, i);
        if (i === 2) {
          clock.advance(LEASE);
          await broker.reenqueue();
        } else await broker.ack(m.mid, m.lid!, 2);
        clock.advance(RETRY);
      }
      assert.equal(await broker.fetch('work'), null, 'no fourth delivery');
      const dead = (await broker.get(sent.mid))!;
      assert.equal(dead.status, MessageStatus.Dead);
      assert.equal(dead.mailbox, 'work.dead');
      assert.equal(dead.receiver, 'work');
      assert.deepEqual(
        dead.attempts?.map((a) => a.outcome),
        [2, 4, 2],
      );
      const names = (await broker.mailboxes()).map((mb) => mb.name);
      assert.ok(names.includes('work.dead'));
      const d = (await broker.fetch('work.dead'))!;
      assert.equal(d.mid, sent.mid);
      // A dead-letter mailbox never dead-letters again: rejects there just retry.
      for (let i = 0; i < 4; i++) {
        const again = i === 0 ? d : (await broker.fetch('work.dead'))!;
        await broker.ack(again.mid, again.lid!, 2);
        clock.advance(RETRY);
      }
      const last = (await broker.fetch('work.dead'))!;
      assert.equal(last.mailbox, 'work.dead');
      await broker.ack(last.mid, last.lid!, 1);
      assert.equal((await broker.get(sent.mid))?.status, MessageStatus.Confirmed);
    });

    it('redrive moves queued dead letters back, due now, with a fresh count; purge deletes queued only', async ({
      broker,
      clock,
    }) => {
      const a = await broker.send({ sender: 's', receiver: 'rd', body: { x: 'a' } });
      const b = await broker.send({ sender: 's', receiver: 'rd', body: { x: 'b' } });
      for (let i = 0; i < 3; i++) {
        for (const m of await broker.fetchMany('rd', { max: 10 })) await broker.ack(m.mid, m.lid!, 2);
        clock.advance(RETRY);
      }
      assert.equal((await broker.get(a.mid))?.mailbox, 'rd.dead');
      assert.equal((await broker.get(b.mid))?.mailbox, 'rd.dead');
      await rejectsWith(() => broker.redrive('rd'), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.redrive('bad name!.dead'), 'MAILBOX_ERR_INVALID_MAILBOX');
      await rejectsWith(() => broker.purge('rd', { limit: 0 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
      assert.equal(await broker.redrive('rd.dead', { limit: 1 }), 1);
      const back = (await broker.get(a.mid))!;
      assert.equal(back.mailbox, 'rd');
      assert.equal(back.status, MessageStatus.NotDelivered);
      assert.equal(back.deliveryCount, 0);
      assert.equal(back.attempts?.length, 3, 'the attempt record stays');
      const f = (await broker.fetch('rd'))!;
      assert.equal(f.mid, a.mid);
      assert.equal(f.deliveryCount, 1);
      assert.equal(await broker.redrive('rd.dead'), 1);
      assert.equal(await broker.redrive('rd.dead'), 0);
      assert.equal(await broker.redrive('never.dead'), 0);
      // a.mid is leased: purge leaves it; b is queued: purge deletes it and its body reference.
      const key = (await broker.get(b.mid))!.blobKey;
      assert.equal(await broker.purge('rd'), 1);
      assert.equal(await broker.get(b.mid), null);
      assert.equal(await broker.store.blobs.refCount(key), 0);
      assert.equal((await broker.get(a.mid))?.state, 'leased');
      await broker.ack(f.mid, f.lid!, 1);
      assert.equal(await broker.purge('rd'), 0, 'confirmed messages are not purged');
      assert.equal((await broker.get(a.mid))?.status, MessageStatus.Confirmed);
      for (let i = 0; i < 5; i++)
        await broker.send({ sender: 's', receiver: 'many', body: { i: String(i) } });
      assert.equal(await broker.purge('many', { limit: 2 }), 2);
      assert.equal((await broker.fetchMany('many', { max: 10 })).map((m) => m.body.i).join(), '2,3,4');
    });

    it('bodies are stored once by content; references go down at retention and the collector frees zero', async ({
      broker,
      clock,
    }) => {
      const body = { payload: 'same body' };
      const a = await broker.send({ sender: 's', receiver: 'b1', body });
      const b = await broker.send({ sender: 's', receiver: 'b2', body });
      const other = await broker.send({ sender: 's', receiver: 'b1', body: { payload: 'other' } });
      assert.equal(a.blobKey, b.blobKey);
      const blobs = broker.store.blobs;
      assert.equal(await blobs.refCount(a.blobKey), 2);
      assert.equal((await blobs.get(a.blobKey))?.toString('utf8'), 'payload=same%20body');
      const ma = (await broker.fetch('b1'))!;
      await broker.ack(ma.mid, ma.lid!, 1);
      clock.advance(59_999);
      assert.deepEqual(await broker.collect(), { messages: 0, blobs: 0 }, 'still retained');
      clock.advance(1);
      assert.deepEqual(await broker.collect(), { messages: 1, blobs: 0 });
      assert.equal(await broker.get(a.mid), null, 'gone after retention');
      assert.equal(await blobs.refCount(a.blobKey), 1);
      const mb = (await broker.fetch('b2'))!;
      await broker.ack(mb.mid, mb.lid!, 1);
      clock.advance(60_000);
      assert.deepEqual(await broker.collect(), { messages: 1, blobs: 1 });
      assert.equal(await blobs.refCount(a.blobKey), null);
      assert.equal(await blobs.get(a.blobKey), null);
      assert.equal(await blobs.refCount(other.blobKey), 1, 'an unconfirmed message keeps its body');
      assert.ok(await broker.get(other.mid));
      const s = await broker.stats();
      assert.equal(s.store.blobs, 1);
      assert.equal(s.store.messages, 1);
    });

    it('the BlobStore seam: put, get, reference counts, collect', async ({ store }) => {
      const blobs = store.blobs;
      await blobs.put('aa', Buffer.from([1, 2, 3]));
      await blobs.put('aa', Buffer.from([1, 2, 3]));
      await blobs.put('bb', 'text');
      assert.equal(await blobs.refCount('aa'), 2);
      assert.deepEqual([...(await blobs.get('aa'))!], [1, 2, 3]);
      assert.equal((await blobs.get('bb'))?.toString(), 'text');
      assert.equal(await blobs.get('cc'), null);
      assert.equal(await blobs.refCount('cc'), null);
      await blobs.updateRefCounts(
        new Map([
          ['aa', -2],
          ['bb', -1],
          ['cc', 5],
        ]),
      );
      assert.equal(await blobs.refCount('aa'), 0);
      assert.equal(await blobs.collect(1), 1);
      assert.equal(await blobs.collect(10), 1);
      assert.equal(await blobs.collect(10), 0);
      assert.equal(await blobs.get('aa'), null);
      assert.deepEqual(await blobs.stats(), { count: 0, bytes: 0 });
    });

    it('maxMessageBytes is enforced and a refused send stores nothing', async ({ store, clock }) => {
      const broker = await Broker.open({ store, clock, sweepIntervalMs: 0, maxMessageBytes: 100 });
      try {
        await broker.send({ sender: 's', receiver: 'big', body: { k: 'x'.repeat(98) } });
        await rejectsWith(
          () => broker.send({ sender: 's', receiver: 'big', body: { k: 'x'.repeat(99) } }),
          'MAILBOX_ERR_MESSAGE_TOO_LARGE',
        );
        // Multi-byte characters count by their encoded size.
        await rejectsWith(
          () => broker.send({ sender: 's', receiver: 'big', body: { k: 'é'.repeat(20) } }),
          'MAILBOX_ERR_MESSAGE_TOO_LARGE',
        );
        assert.equal((await broker.stats()).store.messages, 1);
      } finally {
        await broker.close();
      }
    });

    it('bad input is refused with typed errors and changes nothing', async ({ broker }) => {
      const before = await broker.stats();
      const bad: [unknown, string][] = [
        [{ sender: '', receiver: 'r', body: {} }, 'MAILBOX_ERR_INVALID_MAILBOX'],
        [{ sender: 's', receiver: 'a b', body: {} }, 'MAILBOX_ERR_INVALID_MAILBOX'],
        [{ sender: 's', receiver: 'x'.repeat(201), body: {} }, 'MAILBOX_ERR_INVALID_MAILBOX'],
        [{ sender: 's', receiver: 'ünï', body: {} }, 'MAILBOX_ERR_INVALID_MAILBOX'],
        [{ sender: 's', receiver: 'r?', body: {} }, 'MAILBOX_ERR_INVALID_MAILBOX'],
        [{ sender: 42, receiver: 'r', body: {} }, 'MAILBOX_ERR_INVALID_MAILBOX'],
        [{ sender: 's', receiver: 'r', body: null }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: 'text' }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: ['a'] }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: { n: 1 } }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: { n: ['a', 2] } }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: { n: '\ud800' } }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: {}, delayMs: -1 }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: {}, delayMs: 1.5 }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: {}, delayMs: '1s' }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: {}, clientTime: new Date(NaN) }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [{ sender: 's', receiver: 'r', body: {}, clientTime: '2020-01-01' }, 'MAILBOX_ERR_INVALID_ARGUMENT'],
        [null, 'MAILBOX_ERR_INVALID_ARGUMENT'],
      ];
      for (const [input, expected] of bad) await rejectsWith(() => broker.send(input as never), expected);
      await rejectsWith(() => broker.fetch(''), 'MAILBOX_ERR_INVALID_MAILBOX');
      await rejectsWith(() => broker.fetch('r', { leaseMs: 0 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.fetch('r', { waitMs: -5 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.fetchMany('r', { max: 0 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.fetchMany('r', { max: 1e9 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.headers('r', { limit: 0 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.configure('r', { maxDeliveries: 0 }), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.configure('r', { bogus: 1 } as never), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(() => broker.reenqueue(new Date(Date.UTC(2100, 0))), 'MAILBOX_ERR_INVALID_ARGUMENT');
      const after = await broker.stats();
      assert.deepEqual(after.store, before.store);
      assert.equal(after.sends, 0);
      assert.deepEqual(await broker.mailboxes(), []);
      // The name rule accepts its whole alphabet and 200 characters.
      await broker.send({ sender: 'a@b.c_d-e:f/g', receiver: 'y'.repeat(200), body: {} });
    });

    it('a long poll is woken by a send, times out on the clock, and rejects with the abort reason', async ({
      broker,
      clock,
    }) => {
      const woken = broker.fetch('w', { waitMs: 30_000 });
      await until(async () => (await broker.stats()).waiters === 1, 'a waiter');
      const batches = (await broker.stats()).batches;
      const sent = await broker.send({ sender: 's', receiver: 'w', body: { x: '1' } });
      assert.equal((await woken)?.mid, sent.mid);
      assert.equal(
        (await broker.stats()).batches - batches,
        1,
        'the waiter claimed in the batch of the send',
      );

      // A delayed send does not satisfy a waiter before it is due.
      const early = broker.fetch('w', { waitMs: 30_000 });
      await until(async () => (await broker.stats()).waiters === 1, 'a waiter');
      const delayed = await broker.send({ sender: 's', receiver: 'w', body: { x: '2' }, delayMs: 100 });
      await until(async () => (await broker.stats()).waiters === 1, 'the waiter asleep until the delay ends');
      clock.advance(99);
      await turns();
      assert.equal((await broker.stats()).waiters, 1);
      clock.advance(1);
      assert.equal((await early)?.mid, delayed.mid);

      const timedOut = broker.fetch('w', { waitMs: 1000 });
      await until(async () => (await broker.stats()).waiters === 1, 'a waiter');
      clock.advance(999);
      await turns();
      assert.equal((await broker.stats()).waiters, 1);
      clock.advance(1);
      assert.equal(await timedOut, null);

      const controller = new AbortController();
      const aborted = broker.fetch('w', { waitMs: 30_000, signal: controller.signal });
      await until(async () => (await broker.stats()).waiters === 1, 'a waiter');
      const reason = new Error('stop');
      controller.abort(reason);
      await assert.rejects(aborted, (e) => e === reason);
      assert.equal((await broker.stats()).waiters, 0);
      await assert.rejects(broker.fetch('w', { signal: AbortSignal.abort(reason) }), (e) => e === reason);
    });

    it('a long poll is woken when a delayed message or a retry comes due', async ({ broker, clock }) => {
      await broker.send({ sender: 's', receiver: 'd', body: { x: '1' }, delayMs: 500 });
      const p = broker.fetch('d', { waitMs: 10_000 });
      await until(async () => (await broker.stats()).waiters === 1, 'a waiter');
      clock.advance(500);
      const m = (await p)!;
      assert.ok(m);
      const q = broker.fetch('d', { waitMs: 10_000 });
      await until(async () => (await broker.stats()).waiters === 1, 'a waiter');
      await broker.ack(m.mid, m.lid!, 2);
      await until(async () => (await broker.stats()).waiters === 1, 'the waiter back asleep until the retry');
      clock.advance(RETRY);
      assert.equal((await q)?.mid, m.mid);
    });

    it('headers lists pending messages without bodies, after a time, up to a limit', async ({
      broker,
      clock,
    }) => {
      const t0 = clock.now();
      for (let i = 0; i < 5; i++) {
        await broker.send({ sender: 's', receiver: 'h', body: { i: `${i}` } });
        clock.advance(10);
      }
      const all = await broker.headers('h');
      assert.equal(all.length, 5);
      assert.ok(all.every((h) => !('body' in h)));
      const after = await broker.headers('h', { after: new Date(t0 + 15), limit: 2 });
      assert.deepEqual(
        after.map((h) => h.receivedAt.getTime() - t0),
        [20, 30],
      );
      await broker.fetch('h');
      const leased = await broker.headers('h');
      assert.equal(leased.length, 5, 'leased messages are still pending');
      assert.equal(leased[0]?.state, 'leased');
    });

    it('headers pages by cursor: many messages in one millisecond, none skipped or repeated', async ({
      broker,
      clock,
    }) => {
      // 23 sends at one instant, then 4 a millisecond later: every page boundary but the last
      // falls inside the first millisecond, where paging by `after` cannot tell them apart.
      const sent: string[] = [];
      for (let i = 0; i < 23; i++)
        sent.push((await broker.send({ sender: 's', receiver: 'pg', body: { i: `${i}` } })).mid);
      const t0 = clock.now();
      clock.advance(1);
      for (let i = 23; i < 27; i++)
        sent.push((await broker.send({ sender: 's', receiver: 'pg', body: { i: `${i}` } })).mid);
      const all = await broker.headers('pg', { limit: 1000 });
      assert.equal(
        all.filter((h) => h.receivedAt.getTime() === t0).length,
        23,
        'the first 23 share one millisecond',
      );
      assert.deepEqual(
        all.map((h) => h.mid),
        sent,
        'one millisecond lists in send order',
      );

      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: Awaited<ReturnType<Broker['headersPage']>> = await broker.headersPage('pg', {
          limit: 5,
          ...(cursor === null ? {} : { cursor }),
        });
        assert.ok(page.messages.length <= 5);
        seen.push(...page.messages.map((h) => h.mid));
        cursor = page.next;
        pages++;
        assert.ok(pages <= 6, 'paging ends');
      } while (cursor !== null);
      assert.deepEqual(seen, sent, 'every message exactly once, in order');
      assert.equal(pages, 6);

      // `next` is null exactly when nothing follows: a page that ends on the last message.
      const exact = await broker.headersPage('pg', { limit: 27 });
      assert.equal(exact.messages.length, 27);
      assert.equal(exact.next, null);
      const short = await broker.headersPage('pg', { limit: 26 });
      assert.notEqual(short.next, null);
      const tail = await broker.headersPage('pg', { limit: 26, cursor: short.next! });
      assert.deepEqual(
        tail.messages.map((h) => h.mid),
        [sent[26]],
      );
      assert.equal(tail.next, null);

      // A cursor stays valid while the mailbox changes: messages before it may go (confirmed),
      // later ones are listed, and sends after it (even at the same instant) come next.
      const first = await broker.headersPage('pg', { limit: 10 });
      const leased = await broker.fetchMany('pg', { max: 3 });
      for (const m of leased) await broker.ack(m.mid, m.lid!, 1);
      const late = (await broker.send({ sender: 's', receiver: 'pg', body: { i: 'late' } })).mid;
      const rest = await broker.headersPage('pg', { limit: 1000, cursor: first.next! });
      assert.deepEqual(
        rest.messages.map((h) => h.mid),
        [...sent.slice(10), late],
      );
      assert.equal(rest.next, null);

      // `after` keeps its meaning: received strictly after that millisecond.
      const after = await broker.headersPage('pg', { after: new Date(t0), limit: 2 });
      assert.deepEqual(
        after.messages.map((h) => h.mid),
        sent.slice(23, 25),
      );
      assert.deepEqual(
        (await broker.headers('pg', { cursor: after.next!, limit: 1000 })).map((h) => h.mid),
        [...sent.slice(25), late],
      );
      assert.deepEqual(await broker.headers('pg.dead', { limit: 5 }), [], 'no dead letters');
    });

    it('headers refuses a bad cursor, and after with cursor', async ({ broker }) => {
      await broker.send({ sender: 's', receiver: 'bc', body: { x: '1' } });
      await broker.send({ sender: 's', receiver: 'bc', body: { x: '2' } });
      const { next } = await broker.headersPage('bc', { limit: 1 });
      assert.ok(next !== null && /^[A-Za-z0-9_-]+$/.test(next), 'an opaque URL-safe token');
      const b64 = (text: string): string => Buffer.from(text, 'latin1').toString('base64url');
      const bad: unknown[] = [
        '',
        'x',
        'not a cursor!',
        `${next}=`,
        next.slice(0, 4), // "h1:"
        'aDE6MTozNR', // "h1:1:35" spelled non-canonically (stray trailing bits)
        b64('h1:-1:5'),
        b64('h1:01:2'),
        b64('h2:1:2'),
        b64('h1:1:2 '),
        b64('h1:1'),
        b64('h1:9007199254740993:1'),
        'a'.repeat(65),
        42,
        null,
      ];
      for (const cursor of bad)
        await rejectsWith(() => broker.headers('bc', { cursor } as never), 'MAILBOX_ERR_INVALID_ARGUMENT');
      await rejectsWith(
        () => broker.headersPage('bc', { cursor: next, after: new Date(0) }),
        'MAILBOX_ERR_INVALID_ARGUMENT',
      );
      assert.equal((await broker.headers('bc', { cursor: next })).length, 1, 'the good cursor still works');
    });

    it('mailboxes: created on first send or by configure, with settings and counts', async ({
      broker,
      clock,
    }) => {
      await broker.configure('cfg', { maxDeliveries: 1, retryDelayMs: 0 });
      await broker.send({ sender: 's', receiver: 'cfg', body: { x: '1' } });
      await broker.send({ sender: 's', receiver: 'cfg', body: { x: '2' }, delayMs: 100 });
      await broker.send({ sender: 's', receiver: 'cfg', body: { x: '3' } });
      const m = (await broker.fetch('cfg'))!;
      const infos = await broker.mailboxes();
      const cfg = infos.find((i) => i.name === 'cfg')!;
      assert.deepEqual(cfg.settings, { maxDeliveries: 1, retryDelayMs: 0, retentionMs: 60_000 });
      assert.deepEqual([cfg.ready, cfg.delayed, cfg.inFlight, cfg.confirmed], [1, 1, 1, 0]);
      assert.ok(infos.some((i) => i.name === 's') === false, 'senders are not mailboxes until they receive');
      await broker.ack(m.mid, m.lid!, 2);
      const moved = await broker.get(m.mid);
      assert.equal(moved?.mailbox, 'cfg.dead', 'maxDeliveries 1: the first reject dead-letters');
      clock.advance(100);
      const cfg2 = (await broker.mailboxes()).find((i) => i.name === 'cfg')!;
      assert.deepEqual([cfg2.ready, cfg2.delayed, cfg2.inFlight], [2, 0, 0]);
    });

    it('operations that arrive together are committed in one batch', async ({ broker }) => {
      const before = (await broker.stats()).batches;
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          broker.send({ sender: 's', receiver: 'g', body: { i: `${i}` } }),
        ),
      );
      const s = await broker.stats();
      assert.equal(s.batches - before, 1);
      assert.ok(s.largestBatch >= 50);
    });

    it('a batch that sends and claims: older due messages first, then its own sends in order, leased as any claim', async ({
      broker,
      clock,
      store,
    }) => {
      const at = (i: number): Date => new Date(Date.UTC(2026, 0, 2, 0, 0, i));
      const old = await broker.sendMany(
        [0, 1, 2].map((i) => ({ sender: 's', receiver: 'q', body: { old: `${i}` }, clientTime: at(i) })),
      );
      await broker.send({ sender: 's', receiver: 'p', body: { p: '1' } });
      const p = (await broker.fetch('p'))!;
      await broker.ack(p.mid, p.lid!, 1);
      const fence0 = p.fence!;
      clock.advance(5);
      const t = clock.now();
      const batches = (await broker.stats()).batches;
      // One batch: new sends (one delayed in their midst, one a resend of an old message, one
      // sent twice, one with a body of any characters) and three claims asking for more than there is.
      const odd = { x: 'caf\u00e9 \\ & = % + \u0001', y: ['1', '2'] };
      const [sent, resent, twice, claims] = await Promise.all([
        broker.sendMany(
          [0, 1, 2, 3, 4, 5].map((i) => ({
            sender: 's',
            receiver: 'q',
            body: i === 2 ? odd : i === 3 ? { late: '1' } : { new: `${i}` },
            ...(i === 3 ? { delayMs: 3_600_000 } : {}),
            ...(i === 5 ? { clientTime: at(9) } : {}),
          })),
        ),
        broker.send({ sender: 's', receiver: 'q', body: { old: '1' }, clientTime: at(1) }),
        broker.send({ sender: 's', receiver: 'q', body: { new: '5' }, clientTime: at(9) }),
        Promise.all([
          broker.fetchMany('q', { max: 4, leaseMs: 60_000, consumer: 'c1' }),
          broker.fetchMany('q', { max: 3, leaseMs: 30_000, consumer: 'c2' }),
          broker.fetchMany('q', { max: 10, leaseMs: 60_000, consumer: 'c3' }),
        ]),
      ]);
      assert.equal((await broker.stats()).batches, batches + 1, 'all in one batch');
      assert.equal(resent.mid, old[1]!.mid, 'the resend is the old message');
      assert.equal(twice.mid, sent[5]!.mid, 'the send made twice is one message');
      const mids = claims.map((c) => c.map((m) => m.mid));
      assert.deepEqual(mids, [
        [old[0]!.mid, old[1]!.mid, old[2]!.mid, sent[0]!.mid],
        [sent[1]!.mid, sent[2]!.mid, sent[4]!.mid],
        [sent[5]!.mid],
      ]);
      const got = claims.flat();
      assert.deepEqual(got[3]!.body, { new: '0' });
      assert.deepEqual(got[5]!.body, odd);
      const fences = got.map((m) => m.fence!);
      assert.equal(new Set(fences).size, fences.length, 'fencing tokens unique');
      for (const f of fences) assert.ok(f > fence0, 'fencing tokens grow');
      const consumers = ['c1', 'c1', 'c1', 'c1', 'c2', 'c2', 'c2', 'c3'];
      for (const [i, m] of got.entries()) {
        const leaseMs = consumers[i] === 'c2' ? 30_000 : 60_000;
        assert.equal(m.state, 'leased');
        assert.equal(m.deliveryCount, 1);
        assert.match(m.lid!, /^[0-9a-f]{32}$/);
        assert.equal(m.mailbox, 'q');
        assert.equal(m.fetchTime?.getTime(), t);
        assert.equal(m.leasedUntil?.getTime(), t + leaseMs);
        assert.equal(m.dueAt, null);
        const stored = await broker.get(m.mid);
        assert.deepEqual(
          [stored?.state, stored?.lid, stored?.fence, stored?.leasedUntil?.getTime(), stored?.deliveryCount],
          ['leased', m.lid, m.fence, t + leaseMs, 1],
        );
        assert.deepEqual(stored?.body, m.body);
        assert.deepEqual(stored?.attempts, []);
      }
      for (const m of got.slice(3))
        assert.deepEqual(
          [m.receivedAt.getTime(), m.sendWhen.getTime(), m.status, m.sender, m.receiver],
          [t, t, MessageStatus.NotDelivered, 's', 'q'],
        );
      assert.equal((await broker.get(sent[3]!.mid))?.state, 'queued', 'the delayed send is not due');
      // Pending messages in the order they were received: the delayed one where it was sent.
      assert.deepEqual(
        (await broker.headers('q')).map((h) => h.mid),
        [...old.map((m) => m.mid), ...sent.map((m) => m.mid)],
      );
      // The leases are ordinary leases: a stale lid is refused, the right one confirms with its record.
      await rejectsWith(broker.ack(got[4]!.mid, 'f'.repeat(32), 1), 'MAILBOX_ERR_LEASE_INVALID');
      clock.advance(7);
      for (const m of got) await broker.ack(m.mid, m.lid!, 1);
      const done = await broker.get(sent[4]!.mid);
      assert.equal(done?.state, 'confirmed');
      assert.deepEqual(
        done?.attempts?.map((a) => [a.n, a.consumer, a.fetchedAt.getTime(), a.endedAt.getTime(), a.outcome]),
        [[1, 'c2', t, t + 7, 1]],
      );
      const st = (await broker.stats()).store;
      assert.deepEqual([st.messages, st.queued, st.leased, st.confirmed], [10, 1, 0, 9]);
      assert.equal(await broker.store.blobs.refCount(old[1]!.blobKey), 1, 'the resend took no reference');
      assert.equal(await broker.store.blobs.refCount(sent[5]!.blobKey), 1, 'nor the second send');

      // Straight on the store: ops naming a new message of their batch find it as sent; a
      // claim that gets nothing learns when the next message comes due, its batch's delayed ones included.
      const now = clock.now();
      const newMessage = (mid: string, receiver: string, delayMs: number) => ({
        mid,
        sender: 's',
        receiver,
        clientTimeMs: now,
        delayMs,
        blobKey: `k${mid}`,
        body: 'a=1',
        decoded: { a: '1' },
        bodyBytes: 3,
      });
      const defaults = { maxDeliveries: 5, retryDelayMs: 1000, retentionMs: 60_000 };
      const claim = (mailbox: string, max: number) =>
        ({ kind: 'claim', mailbox, max, leaseMs: 1000, consumer: 'c' }) as const;
      const a = 'a'.repeat(40);
      const b = 'b'.repeat(40);
      const c = 'c'.repeat(40);
      const r = await store.apply(
        [
          { kind: 'send', message: newMessage(a, 'y', 0), defaults },
          { kind: 'send', message: newMessage(b, 'y', 0), defaults },
          { kind: 'ack', mid: a, lid: 'f'.repeat(32), status: 1 },
          { kind: 'extend', mid: b, lid: 'f'.repeat(32), leaseMs: 1000 },
          { kind: 'send', message: newMessage(c, 'y', 0), defaults },
          { kind: 'send', message: newMessage(c, 'y', 0), defaults },
          claim('y', 2),
          claim('y', 2),
          { kind: 'send', message: newMessage('d'.repeat(40), 'z', 5000), defaults },
          { kind: 'send', message: newMessage('e'.repeat(40), 'z', 2000), defaults },
          claim('z', 5),
        ],
        now,
      );
      assert.deepEqual(
        r.slice(2, 4).map((x) => (x.kind === 'ack' || x.kind === 'extend' ? x.outcome : x.kind)),
        ['lease-invalid', 'lease-invalid'],
      );
      assert.deepEqual(
        r.slice(4, 6).map((x) => (x.kind === 'send' ? [x.created, x.message.state] : x.kind)),
        [
          [true, 'queued'],
          [false, 'queued'],
        ],
      );
      assert.deepEqual(
        r.slice(6, 8).map((x) => (x.kind === 'claim' ? x.messages.map((m) => [m.mid, m.body]) : x.kind)),
        [
          [
            [a, { a: '1' }],
            [b, { a: '1' }],
          ],
          [[c, { a: '1' }]],
        ],
      );
      assert.deepEqual(r[10], { kind: 'claim', messages: [], nextDueMs: now + 2000 });
    });

    it('fencing tokens only grow', async ({ broker, clock }) => {
      await broker.sendMany(
        Array.from({ length: 10 }, (_, i) => ({ sender: 's', receiver: 'fz', body: { i: `${i}` } })),
      );
      let last = -Infinity;
      for (let round = 0; round < 3; round++) {
        const got = await broker.fetchMany('fz', { max: 10, leaseMs: 100 });
        for (const m of got) {
          assert.ok(m.fence! > last);
          last = m.fence!;
        }
        clock.advance(100);
        await broker.reenqueue();
        clock.advance(RETRY);
      }
    });

    it('close ends long polls with MAILBOX_ERR_CLOSED and refuses new calls', async ({ broker }) => {
      const p = broker.fetch('z', { waitMs: 10_000 }).then(
        () => 'resolved',
        (e: unknown) => code(e),
      );
      await until(async () => (await broker.stats()).waiters === 1, 'a waiter');
      const sending = broker.send({ sender: 's', receiver: 'z2', body: {} });
      await broker.close();
      assert.equal(await p, 'MAILBOX_ERR_CLOSED');
      assert.ok(await sending, 'queued operations are committed before close resolves');
      await rejectsWith(() => broker.send({ sender: 's', receiver: 'z', body: {} }), 'MAILBOX_ERR_CLOSED');
      await rejectsWith(() => broker.fetch('z'), 'MAILBOX_ERR_CLOSED');
      await rejectsWith(() => broker.stats(), 'MAILBOX_ERR_CLOSED');
      await broker.close();
      await broker[Symbol.asyncDispose]();
    });

    test('durable stores keep messages, leases and confirmations across reopen', async (t) => {
      const probe = await makeHarness();
      const durable = probe.durable;
      await probe.destroy();
      if (!durable) {
        t.skip('the store is not durable');
        return;
      }
      await withCtx(async (ctx) => {
        const { broker, clock } = ctx;
        const a = await broker.send({ sender: 's', receiver: 'p', body: { x: 'a' } });
        const b = await broker.send({ sender: 's', receiver: 'p', body: { x: 'b' } });
        await broker.send({ sender: 's', receiver: 'p', body: { x: 'c' } });
        const ma = (await broker.fetch('p'))!;
        await broker.ack(ma.mid, ma.lid!, 1);
        const mb = (await broker.fetch('p'))!;
        assert.equal(mb.mid, b.mid);
        const re = await ctx.reopen();
        const got = await re.broker.get(a.mid);
        assert.equal(got?.status, MessageStatus.Confirmed);
        const held = await re.broker.get(b.mid);
        assert.equal(held?.state, 'leased');
        assert.equal(held?.lid, mb.lid);
        await re.broker.extend(mb.mid, mb.lid!, 1000);
        const mc = (await re.broker.fetch('p'))!;
        assert.deepEqual(mc.body, { x: 'c' });
        assert.ok(mc.fence! > mb.fence!, 'tokens after reopen are greater than before');
        assert.equal(await re.broker.fetch('p'), null);
        clock.advance(LEASE + RETRY);
        assert.equal(await re.broker.reenqueue(), 2);
        const again = await re.broker.fetchMany('p', { max: 10 });
        assert.deepEqual(again.map((m) => m.body.x).sort(), ['b', 'c']);
        assert.deepEqual(
          (await re.broker.mailboxes()).map((m) => m.name),
          ['p'],
        );
      });
    });
  });
}
