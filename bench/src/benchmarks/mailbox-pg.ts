// @switchyard/mailbox on PostgreSQL against pg-boss on the same database in the same run: the
// mailbox-core workload (256-byte bodies, every send confirmed after its commit, every message
// acknowledged individually). Both run in this process against the PostgreSQL at
// SWITCHYARD_PG_URL (default postgres://postgres@127.0.0.1:5432/test), each in a schema of its own,
// dropped afterwards.
//
//   npm run bench -- mailbox-pg [phaseMs=2000]
//   (env: MAILBOX_PG_CONSUMERS, default 16; MAILBOX_PG_CONCURRENT_BATCHES, the store's default 2)
import { randomBytes } from 'node:crypto';
import { Broker } from '@switchyard/mailbox';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { progress, report, type Row } from '../lib/report.js';

const PG_URL = process.env['SWITCHYARD_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const CONSUMERS = Number(process.env['MAILBOX_PG_CONSUMERS'] ?? 16);
const BODY_CHARS = 250; // + "d=" and the field separator: a 256-byte encoded body
const PHASES = ['warmup', 'latency', 'send1', 'backlog', 'e2e'] as const;

function makeBodies(n: number): string[] {
  return Array.from({ length: n }, () => randomBytes(BODY_CHARS / 2).toString('hex'));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function pgExec(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** Lets the database write back the phase before (CHECKPOINT) and pauses. */
async function settle(): Promise<void> {
  await pgExec('CHECKPOINT');
  await sleep(300);
}

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
  readonly consumers: number;
  send(body: string, sentAt: number): Promise<void>;
  consume(stop: () => boolean, waitMs: number, onMessage: (latencyMs: number) => void): Promise<void>;
  close(): Promise<void>;
}

async function switchyardQueue(schema: string, mailbox: () => string): Promise<Queue> {
  const u = new URL(PG_URL);
  u.searchParams.set('schema', schema);
  const batches = process.env['MAILBOX_PG_CONCURRENT_BATCHES'];
  if (batches !== undefined) u.searchParams.set('concurrentBatches', batches);
  const broker = await Broker.open({ store: u.toString() });
  return {
    consumers: CONSUMERS,
    async send(body, sentAt) {
      await broker.send({ sender: 'bench', receiver: mailbox(), body: { d: body, t: sentAt.toFixed(3) } });
    },
    async consume(stop, waitMs, onMessage) {
      while (!stop()) {
        const batch = await broker.fetchMany(mailbox(), { max: 64, waitMs, leaseMs: 30_000 });
        const received = performance.now();
        await Promise.all(
          batch.map(async (m) => {
            onMessage(received - Number(m.body['t']));
            await broker.ack(m.mid, m.lid!, 1);
          }),
        );
      }
    },
    close: () => broker.close(),
  };
}

/**
 * pg-boss as its README shows it, made as fast as its API allows: fetch up to 64 jobs at once,
 * complete each one (as Switchyard acks each), poll every 5 ms when the queue is empty (its own
 * `work()` polls every 2 s by default), its maintenance and schedules off.
 */
async function pgBossQueue(schema: string, mailbox: () => string): Promise<Queue> {
  const boss = new PgBoss({ connectionString: PG_URL, schema, supervise: false, schedule: false, max: 10 });
  boss.on('error', () => {});
  await boss.start();
  for (const name of PHASES) await boss.createQueue(name);
  return {
    consumers: CONSUMERS,
    async send(body, sentAt) {
      await boss.send(mailbox(), { d: body, t: sentAt });
    },
    async consume(stop, waitMs, onMessage) {
      while (!stop()) {
        const deadline = performance.now() + waitMs;
        for (;;) {
          const jobs = await boss.fetch<{ d: string; t: number }>(mailbox(), { batchSize: 64 });
          if (jobs.length > 0) {
            const received = performance.now();
            await Promise.all(
              jobs.map(async (job) => {
                onMessage(received - job.data.t);
                await boss.complete(mailbox(), job.id);
              }),
            );
            break;
          }
          if (performance.now() >= deadline || stop()) break;
          await sleep(5);
        }
      }
    },
    close: async () => {
      await boss.stop({ graceful: false, wait: true });
    },
  };
}

async function measure(
  label: string,
  open: (schema: string, mailbox: () => string) => Promise<Queue>,
  schema: string,
  phaseMs: number,
  tick: () => void,
): Promise<Row> {
  let current: (typeof PHASES)[number] = 'warmup';
  const q = await open(schema, () => current);
  const bodies = makeBodies(4096);
  const body = (i: number): string => bodies[i & 4095]!;
  try {
    let warm = 0;
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (warm < 3000) await q.send(body(warm++), performance.now());
      }),
    );
    await settle();
    current = 'latency';
    const latencies: number[] = [];
    let done = false;
    const consumersL = Array.from({ length: q.consumers }, () =>
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
    await sleep(300);
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
    tick();
    await settle();
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
      for (let i = p; !stop; i += 100) await q.send(body(i), performance.now());
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
      'send/s, 1 in flight': Math.round(send1),
      'send/s, 100 in flight': Math.round(backlog.rate),
      'fetch+ack/s from a backlog': Math.round(drain),
      'end to end msgs/s': Math.round(e2e),
      'p50 / p99 ms at 1 000 msg/s': `${percentile(latencies, 50).toFixed(2)} / ${percentile(latencies, 99).toFixed(2)}`,
    };
  } finally {
    await q.close();
  }
}

export default async function mailboxPg(args: string[]): Promise<void> {
  const phaseMs = Number(args[0] ?? 2000);
  const tag = `${process.pid}_${Date.now().toString(36)}`;
  const systems: [string, string, (schema: string, mailbox: () => string) => Promise<Queue>][] = [
    ['Switchyard broker, PostgreSQL store', `sy_bench_${tag}`, switchyardQueue],
    ['pg-boss 10, same database (peer)', `pgboss_bench_${tag}`, pgBossQueue],
  ];
  const bar = progress('mailbox-pg', systems.length * 5);
  const rows: Row[] = [];
  try {
    for (const [label, schema, open] of systems)
      rows.push(await measure(label, open, schema, phaseMs, () => bar.tick()));
  } finally {
    bar.stop();
    for (const [, schema] of systems) await pgExec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }
  const ours = rows[0]!['end to end msgs/s'] as number;
  const peer = rows[1]!['end to end msgs/s'] as number;
  report(
    'mailbox-pg',
    'Mailbox broker on PostgreSQL vs pg-boss: one process, 256-byte bodies, every send confirmed after commit, every message acked',
    rows,
    [
      `End to end: Switchyard ${(ours / peer).toFixed(1)}× pg-boss (target ≥ 10×).`,
      `Each phase runs ${phaseMs} ms (the backlog drain stops when the backlog is empty). Sends: 1 or 100`,
      `concurrent send() loops. Receiving: ${CONSUMERS} consumers that take up to 64 messages per fetch and ack (complete) each`,
      'one individually; pg-boss polls every 5 ms when empty, Switchyard long-polls. End to end: 100 send loops and',
      'the consumers at once. Latency (measured first, after 3 000 warm-up sends): send() call to receipt at a',
      'steady 1 000 msg/s. PostgreSQL 15 on this machine, synchronous_commit on (every commit is flushed);',
      'a CHECKPOINT before each phase. pg-boss runs with its pool of 10 connections, maintenance and schedules off.',
    ],
  );
}
