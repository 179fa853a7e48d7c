// @switchyard/mailbox on PostgreSQL against pg-boss on the same database in the same run: the
// mailbox-core workload (256-byte bodies, every send confirmed after its commit, every message
// acknowledged individually). Both run in this process against the PostgreSQL at
// SWITCHYARD_PG_URL (default postgres://postgres@127.0.0.1:5432/test), each in a schema of its own,
// dropped afterwards.
//
//   npm run bench -- mailbox-pg [phaseMs=2000]
//   (env: MAILBOX_PG_CONSUMERS, default 16; MAILBOX_PG_CONCURRENT_BATCHES, the store's default 2)
import { Broker } from '@switchyard/mailbox';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { PHASES, latencyCell, runPhases, sleep, type Phase, type Queue } from '../lib/mailbox-load.js';
import { progress, report, type Row } from '../lib/report.js';

const PG_URL = process.env['SWITCHYARD_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const CONSUMERS = Number(process.env['MAILBOX_PG_CONSUMERS'] ?? 16);

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
  let current: Phase = 'warmup';
  const opened = await open(schema, () => current);
  // This process's CPU time (user + system) over the end-to-end phase, per message received.
  let received = 0;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let cpuUs = NaN;
  const q: Queue = {
    ...opened,
    consume: (stop, waitMs, onMessage) =>
      opened.consume(stop, waitMs, (l) => {
        if (current === 'e2e') received++;
        onMessage(l);
      }),
  };
  try {
    const r = await runPhases(q, {
      phaseMs,
      setPhase: (phase) => {
        current = phase;
        if (phase === 'e2e') cpuAtStart = process.cpuUsage();
      },
      settle,
      latencyConsumers: q.consumers,
      latencyDrainMs: 300,
      tick: () => {
        if (cpuAtStart !== undefined && Number.isNaN(cpuUs)) {
          const d = process.cpuUsage(cpuAtStart);
          cpuUs = d.user + d.system;
        }
        tick();
      },
    });
    return {
      system: label,
      'send/s, 1 in flight': Math.round(r.send1),
      'send/s, 100 in flight': Math.round(r.send100),
      'fetch+ack/s from a backlog': Math.round(r.drain),
      'end to end msgs/s': Math.round(r.e2e),
      'p50 / p99 ms at 1 000 msg/s': latencyCell(r.latencies),
      'process CPU µs/msg, end to end': received > 0 ? Math.round(cpuUs / received) : '–',
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
      'Process CPU: user + system time of this one process (store or pg-boss, broker and the load) over the',
      'end-to-end phase (from its CHECKPOINT to the last ack), divided by the messages received in it.',
    ],
  );
}
