// @switchyard/mailbox broker core, library calls in one process, on SQLite flushing before it
// confirms (synchronous=FULL), against a naive SQLite queue table (a transaction per
// operation, a polling consumer) measured in the same run. 256-byte bodies; every message
// sent with its confirmation and acknowledged individually.
//
//   npm run bench -- mailbox-core [phaseMs=2000]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Broker, type SqliteStoreOptions } from '@switchyard/mailbox';
import { latencyCell, runPhases, sleep, type Phase, type Queue } from '../lib/mailbox-load.js';
import { progress, report, type Row } from '../lib/report.js';

/**
 * Flushes the OS's dirty pages and pauses, so a phase does not pay for the writeback of the
 * phase before it (the disk is shared; one phase writes tens of MB of WAL).
 */
async function settle(): Promise<void> {
  execFileSync('sync');
  await sleep(300);
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
  let current: Phase = 'send1';
  const q = await open(join(dir, 'queue.db'), () => current);
  try {
    const r = await runPhases(q, {
      phaseMs,
      setPhase: (phase) => (current = phase),
      settle,
      latencyConsumers: Math.min(q.consumers, 4),
      latencyDrainMs: 200,
      tick,
    });
    return {
      system: label,
      fsync: label.includes('NORMAL') ? 'no' : 'yes',
      'send/s, 1 in flight': Math.round(r.send1),
      'send/s, 100 in flight': Math.round(r.send100),
      'fetch+ack/s from a backlog': Math.round(r.drain),
      'end to end msgs/s': Math.round(r.e2e),
      'p50 / p99 ms at 1 000 msg/s': latencyCell(r.latencies),
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
