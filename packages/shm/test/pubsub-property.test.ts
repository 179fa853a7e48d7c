import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Publisher, Subscriber, type Loan, type Sample } from '@switchyard/shm';
import { shmDir } from './pubsub-helpers.js';

/** Message `seq`'s bytes: its length and every byte derive from `seq`. */
function pattern(seq: number, target?: Uint8Array): Uint8Array {
  const length = 4 + ((seq * 37) % 60);
  const out = target?.subarray(0, length) ?? new Uint8Array(length);
  new DataView(out.buffer, out.byteOffset, 4).setUint32(0, seq, true);
  for (let i = 4; i < length; i++) out[i] = (seq * 7 + i) & 0xff;
  return out;
}

function intact(sample: Sample): boolean {
  const seq = Number(sample.sequence);
  const want = pattern(seq);
  return sample.bytes.length === want.length && sample.bytes.every((b, i) => b === want[i]);
}

type Op =
  | { kind: 'send' }
  | { kind: 'loan'; publish: boolean }
  | { kind: 'recv'; hold: boolean }
  | { kind: 'release'; index: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ kind: 'send' }),
  fc.boolean().map<Op>((publish) => ({ kind: 'loan', publish })),
  fc.boolean().map<Op>((hold) => ({ kind: 'recv', hold })),
  fc.nat(16).map<Op>((index) => ({ kind: 'release', index })),
);

test('pub/sub against a model: guards stay intact, gaps are counted, the pool runs out only when every block is held', () => {
  using dir = shmDir();
  let run = 0;
  fc.assert(
    fc.property(
      fc.constantFrom(2, 4, 8),
      fc.constantFrom(1, 2, 4),
      fc.constantFrom('overwrite' as const, 'block' as const),
      fc.array(op, { minLength: 1, maxLength: 300 }),
      (blockCount, ringFraction, slowSubscriber, ops) => {
        const ringDepth = Math.max(1, Math.floor(blockCount / ringFraction));
        const name = `model-${run++}`;
        const publisher = Publisher.create(name, {
          dir: dir.path,
          blockCount,
          ringDepth,
          blockSize: 64,
          prefault: false,
          slowSubscriber,
          // Blocks only: inline messages are modelled in pubsub-inline.test.ts.
          inlineMaxBytes: 0,
        });
        const subscriber = Subscriber.open(name, { dir: dir.path });
        const held: Sample[] = [];
        const loans: Loan[] = [];
        let published = 0;
        let received = 0;
        let last = -1;
        try {
          for (const o of ops) {
            if (o.kind === 'send' || o.kind === 'loan') {
              // overwrite: out of blocks exactly when guards and open loans hold them all (ring
              // entries are given up first). block: unread ring entries are never given up, and
              // at most ringDepth may wait.
              const unread = slowSubscriber === 'block' ? published - received : 0;
              const out = held.length + loans.length + unread >= blockCount || unread >= ringDepth;
              try {
                if (o.kind === 'send') publisher.send(pattern(published));
                else {
                  const loan = publisher.loan();
                  pattern(published, loan.bytes);
                  if (o.publish) loan.publish(pattern(published).length);
                  else loans.push(loan);
                }
                assert.ok(!out, 'a block was handed out although every one is held');
                if (o.kind === 'send' || o.publish) published++;
              } catch (error) {
                const code = (error as { code?: string }).code;
                if (slowSubscriber === 'overwrite') assert.equal(code, 'SHM_ERR_POOL_EXHAUSTED');
                else assert.ok(code === 'SHM_ERR_POOL_EXHAUSTED' || code === 'SHM_ERR_WOULD_BLOCK', code);
                assert.ok(out, 'PoolExhausted with blocks to spare');
              }
            } else if (o.kind === 'recv') {
              const sample = subscriber.tryRecv();
              if (sample === null) continue;
              const seq = Number(sample.sequence);
              assert.ok(seq > last, 'sequences increase');
              assert.equal(sample.missed, seq - last - 1, 'the gap is reported as missed');
              assert.ok(intact(sample), `message ${seq} is whole`);
              last = seq;
              received++;
              if (o.hold) held.push(sample);
              else sample.release();
            } else if (held.length > 0) {
              const [sample] = held.splice(o.index % held.length, 1);
              assert.ok(intact(sample!), `held message ${sample!.sequence} was not overwritten`);
              sample!.release();
            } else if (loans.length > 0) {
              loans.pop()!.discard();
            }
          }
          for (const sample of held) assert.ok(intact(sample), 'held to the end, still whole');
          for (const sample of held.splice(0)) sample.release();
          for (const loan of loans.splice(0)) loan.discard();
          for (let s = subscriber.tryRecv(); s !== null; s = subscriber.tryRecv()) {
            assert.ok(intact(s));
            received++;
            s.release();
          }
          assert.equal(received + subscriber.missed, published, 'every message read or counted missed');
          if (slowSubscriber === 'block') assert.equal(subscriber.missed, 0, "'block' loses nothing");
        } finally {
          subscriber.close();
          publisher.close();
        }
      },
    ),
    { numRuns: 300 },
  );
});
