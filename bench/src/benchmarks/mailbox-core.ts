// @switchyard/mailbox broker core, library calls in one process, on SQLite flushing before it
// confirms (synchronous=FULL), against a naive SQLite queue table (a transaction per
// operation, a polling consumer) measured in the same run. 256-byte bodies; every message
// sent with its confirmation and acknowledged individually.
//
//   npm run bench -- mailbox-core [phaseMs=2000]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Broker, type SqliteStoreOptions } from '@switchyard/mailbox';
import { progress, report, type Row } from '../lib/report.js';

const BODY_CHARS = 250; // + "d=" and the field separator: a 256-byte encoded body

function makeBodies(n: number): string[] {
  return Array.from({ length: n }, () => randomBytes(BODY_CHARS / 2).toString('hex'));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Flushes the OS's dirty pages and pauses, so a phase does not pay for the writeback of the
 * phase before it (the disk is shared; one phase writes tens of MB of WAL).
 */
async function settle(): Promise<void> {
  execFileSync('sync');
  await sleep(300);
}

/** Runs `worker` in `inFlight` concurrent loops for `ms`; returns completed operations per second. */
async function concurrent(
  inFlight: number,
  ms: number,
  op: (i: number) => Promise<unknown>,
): Promise<{ rate: number; count: number }> {
  let done = 0;
  let stop = false;
  const start = performance.now();
  setTimeout(() => (stop = true), ms);
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (!stop) {
        await op(done);
        done++;
      }
    }),
  );
  return { rate: (done * 1000) / (performance.now() - start), count: done };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

interface Queue {
  /** How many consumers to run: a batching consumer needs few, a one-at-a-time one many. */
  readonly consumers: number;
  send(body: string, sentAt: number): Promise<void>;
  /**
   * One consumer: until `stop()` says so, receives messages (waiting or polling up to `waitMs`
   * for each) and acks each one individually; reports each one's send-to-receive latency.
   */
  consume(stop: () => boolean, waitMs: number, onMessage: (latencyMs: number) => void): Promise<void>;
  close(): Promise<void>;
}

/** The naive queue's calls are synchronous; each yields to the event loop after its operation, like I/O would. */
const yieldNow = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

async function switchyardQueue(
  path: string,
  sqlite: SqliteStoreOptions,
  mailbox: () => string,
): Promise<Queue> {
  const broker = await Broker.open({ store: `sqlite:${path}`, sqlite });
  return {
    consumers: 4,
    async send(body, sentAt) {
      await broker.send({ sender: 'bench', receiver: mailbox(), body: { d: body, t: sentAt.toFixed(3) } });
    },
    // The fastest client path of the library: lease up to 64 at once, ack each one.
    async consume(stop, waitMs, onMessage) {
      while (!stop()) {
        const batch = await broker.fetchMany(mailbox(), { max: 64, waitMs, leaseMs: 30_000 });
        const received = performance.now();
        await Promise.all(
          batch.map(async (m) => {
            onMessage(received - Number(m.body.t));
            await broker.ack(m.mid, m.lid!, 1);
          }),
        );
      }
    },
    close: () => broker.close(),
  };
}

/** The plain queue table: one process, a transaction per operation, a consumer that polls. */
async function naiveQueue(path: string, mailbox: () => string): Promise<Queue> {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL,
    sent_at REAL NOT NULL, locked_until INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(queue, locked_until, id);`);
  const insert = db.prepare('INSERT INTO jobs (queue, body, sent_at) VALUES (?, ?, ?)');
  const pick = db.prepare(
    'SELECT id, body, sent_at FROM jobs WHERE queue = ? AND locked_until < ? ORDER BY id LIMIT 1',
  );
  const lock = db.prepare('UPDATE jobs SET locked_until = ? WHERE id = ?');
  const remove = db.prepare('DELETE FROM jobs WHERE id = ?');
  const claim = db.transaction((queue: string, now: number) => {
    const row = pick.get(queue, now) as { id: number; body: string; sent_at: number } | undefined;
    if (row !== undefined) lock.run(now + 30_000, row.id);
    return row;
  });
  return {
    consumers: 100,
    async send(body, sentAt) {
      insert.run(mailbox(), body, sentAt);
      await yieldNow();
    },
    async consume(stop, waitMs, onMessage) {
      while (!stop()) {
        const deadline = performance.now() + waitMs;
        for (;;) {
          const row = claim.immediate(mailbox(), Date.now());
          if (row !== undefined) {
            onMessage(performance.now() - row.sent_at);
            remove.run(row.id);
            break;
          }
          if (performance.now() >= deadline) break;
          await sleep(1);
        }
        await yieldNow();
      }
    },
    close: async () => {
      db.close();
    },
  };
}

async function measure(
  label: string,
  open: (path: string, mailbox: () => string) => Promise<Queue>,
  phaseMs: number,
  tick: () => void,
): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-'));
  let current = 'send1';
  const q = await open(join(dir, 'queue.db'), () => current);
  const bodies = makeBodies(4096);
  const body = (i: number): string => bodies[i & 4095]!;
  try {
    // Warm-up: write enough that the WAL reached its checkpoint size once, as in a broker that
    // has been running (while the WAL file still grows, every fsync also commits its new size).
    current = 'warmup';
    let warm = 0;
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (warm < 3000) await q.send(body(warm++), performance.now());
      }),
    );
    await settle();
    // Latency first, on a fresh database, at a steady 1 000 msg/s.
    current = 'latency';
    const latencies: number[] = [];
    let done = false;
    const consumersL = Array.from({ length: Math.min(q.consumers, 4) }, () =>
      q.consume(
        () => done,
        100,
        (l) => latencies.push(l),
      ),
    );
    const rate = 1000;
    const t0 = performance.now();
    let sent = 0;
    const sends: Promise<void>[] = [];
    while (performance.now() - t0 < phaseMs) {
      const due = Math.floor(((performance.now() - t0) * rate) / 1000);
      for (; sent < due; sent++) sends.push(q.send(body(sent), performance.now()));
      await sleep(1);
    }
    await Promise.all(sends);
    await sleep(200);
    done = true;
    await Promise.all(consumersL);
    latencies.sort((a, b) => a - b);
    tick();

    current = 'send1';
    await settle();
    const send1 = (await concurrent(1, phaseMs, (i) => q.send(body(i), performance.now()))).rate;
    tick();
    current = 'backlog';
    await settle();
    const backlog = await concurrent(100, phaseMs, (i) => q.send(body(i), performance.now()));
    const send100 = backlog.rate;
    tick();
    await settle();
    // Drain the backlog; the clock stops when it is empty (or the phase time is up).
    let drained = 0;
    let stopDrain = false;
    const drainStart = performance.now();
    const drainTimer = setTimeout(() => (stopDrain = true), phaseMs);
    await Promise.all(
      Array.from({ length: q.consumers }, () =>
        q.consume(
          () => stopDrain || drained >= backlog.count,
          0,
          () => drained++,
        ),
      ),
    );
    const drain = (drained * 1000) / (performance.now() - drainStart);
    clearTimeout(drainTimer);
    tick();

    current = 'e2e';
    await settle();
    let received = 0;
    let stop = false;
    const start = performance.now();
    setTimeout(() => (stop = true), phaseMs);
    const producers = Array.from({ length: 100 }, async (_, p) => {
      for (let i = p; !stop; i += 100) {
        await q.send(body(i), performance.now());
      }
    });
    const consumers = Array.from({ length: q.consumers }, () =>
      q.consume(
        () => stop,
        50,
        () => received++,
      ),
    );
    await Promise.all([...producers, ...consumers]);
    const e2e = (received * 1000) / (performance.now() - start);
    tick();

    return {
      system: label,
      fsync: label.includes('NORMAL') ? 'no' : 'yes',
      'send/s, 1 in flight': Math.round(send1),
      'send/s, 100 in flight': Math.round(send100),
      'fetch+ack/s from a backlog': Math.round(drain),
      'end to end msgs/s': Math.round(e2e),
      'p50 / p99 ms at 1 000 msg/s': `${percentile(latencies, 50).toFixed(2)} / ${percentile(latencies, 99).toFixed(2)}`,
    };
  } finally {
    await q.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export default async function mailboxCore(args: string[]): Promise<void> {
  const phaseMs = Number(args[0] ?? 2000);
  const systems: [string, (path: string, mailbox: () => string) => Promise<Queue>][] = [
    ['Switchyard broker, SQLite synchronous=FULL', (p, m) => switchyardQueue(p, {}, m)],
    [
      'Switchyard broker, SQLite synchronous=NORMAL',
      (p, m) => switchyardQueue(p, { synchronous: 'normal' }, m),
    ],
    ['naive SQLite queue table, a transaction per op (peer)', (p, m) => naiveQueue(p, m)],
  ];
  const bar = progress('mailbox-core', systems.length * 5);
  const rows: Row[] = [];
  for (const [label, open] of systems) rows.push(await measure(label, open, phaseMs, () => bar.tick()));
  bar.stop();
  report(
    'mailbox-core',
    'Mailbox broker core: library calls, one process, 256-byte bodies, every send confirmed after fsync, every message acked',
    rows,
    [
      `Each phase runs ${phaseMs} ms (the backlog drain stops when the backlog is empty). Sends: 1 or 100`,
      'concurrent send() loops. Receiving: Switchyard runs 4 consumers that lease up to 64 messages per fetchMany',
      'and ack each one individually; the naive queue runs 100 consumers that claim one row per transaction and',
      'delete it in another, polling every 1 ms when empty. End to end: 100 send loops and the consumers at once.',
      'Latency (measured first, after a warm-up of 3 000 sends): send() call to receipt at a steady 1 000 msg/s, 4 consumers.',
      'Before each phase the OS page cache is synced. One process, so the naive queue pays no',
      'cross-process lock contention (BENCHMARKS.md measures it with two processes).',
    ],
  );
}
