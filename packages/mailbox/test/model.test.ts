// Model-based fuzzing: random sequences of broker calls run against the memory store (the
// reference) and the SQLite store on one manual clock; every answer must agree.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  Broker,
  MailboxError,
  ManualClock,
  MemoryStore,
  SqliteStore,
  type Message,
} from '@switchyard/mailbox';

type Command =
  | { kind: 'send'; receiver: number; body: number; delayMs: number; at: number }
  | { kind: 'fetch'; receiver: number; max: number; leaseMs: number }
  | { kind: 'ack'; pick: number; status: 1 | 2 }
  | { kind: 'extend'; pick: number; leaseMs: number }
  | { kind: 'stale'; pick: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'reenqueue' }
  | { kind: 'collect' };

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    kind: fc.constant('send' as const),
    receiver: fc.nat(2),
    body: fc.nat(3),
    delayMs: fc.constantFrom(0, 0, 50, 500),
    at: fc.nat(5),
  }),
  fc.record({
    kind: fc.constant('fetch' as const),
    receiver: fc.nat(3),
    max: fc.integer({ min: 1, max: 3 }),
    leaseMs: fc.constantFrom(100, 1000),
  }),
  fc.record({
    kind: fc.constant('ack' as const),
    pick: fc.nat(20),
    status: fc.constantFrom(1 as const, 2 as const),
  }),
  fc.record({ kind: fc.constant('extend' as const), pick: fc.nat(20), leaseMs: fc.constantFrom(50, 500) }),
  fc.record({ kind: fc.constant('stale' as const), pick: fc.nat(20) }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(1, 50, 100, 300, 1000, 5000) }),
  fc.constant({ kind: 'reenqueue' as const }),
  fc.constant({ kind: 'collect' as const }),
);

const MAILBOXES = ['a', 'b', 'c', 'a.dead'];

function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: unknown) => (e instanceof MailboxError ? e.code : `unexpected ${String(e)}`),
  );
}

function shape(m: Message): unknown {
  return {
    mid: m.mid,
    mailbox: m.mailbox,
    status: m.status,
    state: m.state,
    deliveryCount: m.deliveryCount,
    body: m.body,
    leasedUntil: m.leasedUntil?.getTime() ?? null,
    dueAt: m.dueAt?.getTime() ?? null,
  };
}

test('the SQLite store answers every random call sequence as the memory store does', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(command, { minLength: 5, maxLength: 60 }), async (commands) => {
      const clock = new ManualClock();
      const options = {
        clock,
        sweepIntervalMs: 0,
        mailboxDefaults: { maxDeliveries: 2, retryDelayMs: 100, retentionMs: 2000 },
      };
      // Merges of the key indexes every few sends: lookups cross the map / table boundary.
      const sqlite = await SqliteStore.open(':memory:', { mergeKeysAt: 3 });
      const memory = new MemoryStore();
      const brokers = [
        await Broker.open({ ...options, store: memory }),
        await Broker.open({ ...options, store: sqlite }),
      ];
      // What each broker currently holds, in the same order: [mid, lid] per broker.
      const held: Message[][] = [[], []];
      try {
        for (const c of commands) {
          switch (c.kind) {
            case 'send': {
              const input = {
                sender: 's',
                receiver: MAILBOXES[c.receiver]!,
                body: { n: String(c.body), tags: ['x', String(c.body)] },
                delayMs: c.delayMs,
                clientTime: new Date(Date.UTC(2025, 0, 1, 0, 0, c.at)),
              };
              const [x, y] = await Promise.all(brokers.map((b) => b.send(input)));
              assert.deepEqual(shape(y!), shape(x!));
              break;
            }
            case 'fetch': {
              const got = await Promise.all(
                brokers.map((b) => b.fetchMany(MAILBOXES[c.receiver]!, { max: c.max, leaseMs: c.leaseMs })),
              );
              assert.deepEqual(got[1]!.map(shape), got[0]!.map(shape));
              got.forEach((ms, i) => held[i]!.push(...ms));
              break;
            }
            case 'ack':
            case 'extend':
            case 'stale': {
              if (held[0]!.length === 0) break;
              const k = c.pick % held[0]!.length;
              const results = await Promise.all(
                brokers.map((b, i) => {
                  const m = held[i]![k]!;
                  if (c.kind === 'ack') return outcome(b.ack(m.mid, m.lid!, c.status));
                  if (c.kind === 'extend') return outcome(b.extend(m.mid, m.lid!, c.leaseMs));
                  return outcome(b.ack(m.mid, 'f'.repeat(32), 1));
                }),
              );
              assert.equal(results[1], results[0], `${c.kind} of a held message`);
              if (c.kind === 'ack') held.forEach((h) => h.splice(k, 1));
              break;
            }
            case 'advance':
              clock.advance(c.ms);
              break;
            case 'reenqueue': {
              const [x, y] = await Promise.all(brokers.map((b) => b.reenqueue()));
              assert.equal(y, x);
              break;
            }
            case 'collect': {
              const [x, y] = await Promise.all(brokers.map((b) => b.collect()));
              assert.deepEqual(y, x);
              break;
            }
          }
        }
        const [ma, mb] = await Promise.all(brokers.map((b) => b.mailboxes()));
        assert.deepEqual(
          mb!.map((m) => ({ ...m, createdAt: m.createdAt.getTime() })),
          ma!.map((m) => ({ ...m, createdAt: m.createdAt.getTime() })),
        );
        const [sa, sb] = await Promise.all(brokers.map((b) => b.stats()));
        assert.deepEqual(sb!.store, sa!.store);
        for (const m of held[0]!) {
          const [x, y] = await Promise.all(brokers.map((b) => b.get(m.mid)));
          assert.deepEqual(
            y?.attempts?.map((a) => [a.n, a.outcome, a.endedAt.getTime()]),
            x?.attempts?.map((a) => [a.n, a.outcome, a.endedAt.getTime()]),
          );
        }
      } finally {
        for (const b of brokers) await b.close();
        await sqlite.close();
        await memory.close();
      }
    }),
    { numRuns: 60 },
  );
});
