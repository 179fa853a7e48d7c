// The durable work-queue workload of shared/BENCHMARKS.md, run in one go against the peers
// running on this machine (RabbitMQ, NATS JetStream, BullMQ on Redis, pg-boss on PostgreSQL)
// and Switchyard (HTTP and binary API, SQLite and PostgreSQL stores). ~256-byte bodies; the
// producer, the consumer and the Switchyard broker are separate processes; every send is
// confirmed by the broker and every message acknowledged individually.
//
// Phases (each on a fresh queue): sends/s with 1 and with 100 in flight (the second leaves the
// backlog), receive+ack/s draining that backlog, end to end msgs/s (producer with 100 in
// flight and consumer at once), and send-to-receive p50/p99 at a steady 1 000 msg/s. Each
// throughput phase stops after `phaseMs` or 20 000 messages, whichever comes first.
//
//   npm run bench -- mailbox-peers [phaseMs=2000] [latencyMs=10000] [systems=all, comma-separated]
// (10 s at 1 000 msg/s: the latency phase of shared/BENCHMARKS.md.) The latency phase first runs
// `SWITCHYARD_BENCH_WARMUP_MS` (default 2000) at the same rate, not counted, for every system:
// the producer and consumer are fresh processes, and their first seconds measure V8 compiling
// the client code rather than the broker (a per-message record showed p50 2-3 ms in a fresh
// client's first second and 0.35-0.45 ms from the third on). 0 measures from the first message.
//
// Env: SWITCHYARD_BENCH_SERVER_ARGS adds node flags to the broker process (e.g. "--cpu-prof");
// SWITCHYARD_SQLITE_WORKER=1 runs its SQLite store on a worker thread (`sqlite.worker`);
// SWITCHYARD_SQLITE_CHECKPOINT=commit keeps SQLite's own checkpoints (`sqlite.checkpoint`).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import amqp from 'amqplib';
import { Queue as BullQueue } from 'bullmq';
import { AckPolicy, RetentionPolicy, StorageType, connect as natsConnect } from 'nats';
import PgBoss from 'pg-boss';
import { MailboxClient } from '@switchyard/mailbox';
import { LATENCY_PERCENTILES, latencyChart } from '../lib/latency.js';
import { svgDocument, svgEscape as esc } from '../lib/svg.js';
import { formatTable, progress, report, type Row } from '../lib/report.js';

const CHILD = fileURLToPath(new URL('./mailbox-peers.child.js', import.meta.url));
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const MAX_COUNT = 20_000;

interface System {
  readonly key: string;
  readonly client: string;
  readonly label: string;
  readonly fsync: string;
  readonly store?: 'sqlite' | 'postgres';
}

const SYSTEMS: readonly System[] = [
  {
    key: 'rabbitmq',
    client: 'rabbitmq',
    label: 'RabbitMQ 3.10 classic durable queue (amqplib, prefetch 100)',
    fsync: 'yes: persistent messages, publisher confirms after the disk write',
  },
  {
    key: 'nats',
    client: 'nats',
    label: 'NATS JetStream work queue, file store (nats.js)',
    fsync: 'no: file store, fsync every 2 min (server default)',
  },
  {
    key: 'bullmq',
    client: 'bullmq',
    label: 'BullMQ on Redis, worker concurrency 50',
    fsync: 'no: this Redis has no AOF and no RDB saves',
  },
  {
    key: 'pgboss',
    client: 'pgboss',
    label: 'pg-boss 10 on PostgreSQL 15 (fetch 64, complete each)',
    fsync: 'yes: synchronous_commit=on',
  },
  {
    key: 'sy-http-sqlite',
    client: 'sy-http',
    label: 'Switchyard HTTP /v1/, SQLite',
    fsync: "yes: synchronous 'full' (WAL fdatasync'd before confirm), group commit",
    store: 'sqlite',
  },
  {
    key: 'sy-binary-sqlite',
    client: 'sy-binary',
    label: 'Switchyard binary API (push, credit 200), SQLite',
    fsync: "yes: synchronous 'full' (WAL fdatasync'd before confirm), group commit",
    store: 'sqlite',
  },
  {
    key: 'sy-http-pg',
    client: 'sy-http',
    label: 'Switchyard HTTP /v1/, PostgreSQL',
    fsync: 'yes: synchronous_commit=on',
    store: 'postgres',
  },
  {
    key: 'sy-binary-pg',
    client: 'sy-binary',
    label: 'Switchyard binary API (push, credit 200), PostgreSQL',
    fsync: 'yes: synchronous_commit=on',
    store: 'postgres',
  },
];

interface Child {
  readonly pid: number;
  readonly lines: AsyncIterator<string>;
  count: number;
  /** A consumer's latency at LATENCY_PERCENTILES (ms), once it reported them. */
  curve: number[] | undefined;
  readonly result: Promise<Record<string, number>>;
  readonly ready: Promise<string>;
  stop(): void;
  kill(): void;
}

function start(args: string[]): Child {
  // SWITCHYARD_BENCH_SERVER_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the broker.
  const nodeArgs =
    args[0] === 'server' ? (process.env.SWITCHYARD_BENCH_SERVER_ARGS ?? '').split(' ').filter(Boolean) : [];
  const child = spawn(process.execPath, [...nodeArgs, CHILD, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const rl = createInterface({ input: child.stdout });
  let ready!: (s: string) => void;
  let result!: (r: Record<string, number>) => void;
  let failed!: (e: Error) => void;
  const readyP = new Promise<string>((resolve, reject) => {
    ready = resolve;
    failed = reject;
  });
  const resultP = new Promise<Record<string, number>>((resolve, reject) => {
    result = resolve;
    child.once('exit', (code) => reject(new Error(`${args.slice(0, 2).join(' ')} exited with ${code}`)));
  });
  child.once('exit', (code) =>
    failed(new Error(`${args.slice(0, 2).join(' ')} exited with ${code} before READY`)),
  );
  resultP.catch(() => {});
  readyP.catch(() => {});
  const c: Child = {
    pid: child.pid!,
    lines: rl[Symbol.asyncIterator](),
    count: 0,
    curve: undefined,
    result: resultP,
    ready: readyP,
    stop: () => child.stdin.write('STOP\n'),
    kill: () => child.kill('SIGKILL'),
  };
  rl.on('line', (line) => {
    if (line.startsWith('READY')) ready(line.slice(6));
    else if (line.startsWith('C ')) c.count = Number(line.slice(2));
    else if (line.startsWith('LATENCY ')) c.curve = JSON.parse(line.slice(8)) as number[];
    else if (line.startsWith('RESULT ')) result(JSON.parse(line.slice(7)) as Record<string, number>);
  });
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Fields of /proc/<pid>/stat after the command name (utime is [11], stime [12], cutime [13], cstime [14]). */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // gone
  }
}

/** Pids whose command name (/proc/<pid>/comm) matches. */
function pidsNamed(re: RegExp): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (re.test(readFileSync(`/proc/${d}/comm`, 'utf8').trim())) pids.push(Number(d));
    } catch {
      // gone
    }
  }
  return pids;
}

const TICK_US = 10_000; // USER_HZ = 100 on Linux

/**
 * CPU time (µs, user + system) the server side of `system` used so far: Switchyard's broker
 * process (and PostgreSQL's processes for its PostgreSQL store), or the peer's server processes.
 * PostgreSQL backends come and go, so the postmaster's reaped-children time counts too.
 */
function serverCpuMicros(system: System, brokerPid: number | undefined): number {
  const postgres = system.key === 'pgboss' || system.store === 'postgres';
  const named =
    system.key === 'rabbitmq'
      ? /^beam\.smp$/
      : system.key === 'nats'
        ? /^nats-server$/
        : system.key === 'bullmq'
          ? /^redis-server$/
          : postgres
            ? /^postgres$/
            : undefined;
  const servers = named === undefined ? [] : pidsNamed(named);
  let ticks = 0;
  for (const pid of [...(brokerPid === undefined ? [] : [brokerPid]), ...servers]) {
    const f = statFields(pid);
    if (f === undefined) continue;
    ticks += Number(f[11]) + Number(f[12]);
    // The postmaster (its parent is not a postgres process): the time of its reaped backends.
    if (postgres && servers.includes(pid) && !servers.includes(Number(f[1])))
      ticks += Number(f[13]) + Number(f[14]);
  }
  return ticks * TICK_US;
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

/** Creates and removes the peers' queues (each phase gets a fresh one). */
class Admin {
  #boss: PgBoss | undefined;
  #n = 0;

  async create(system: System): Promise<string> {
    const q = `peers_${process.pid}_${this.#n++}`;
    if (system.key === 'nats') {
      const nc = await natsConnect({ servers: '127.0.0.1:4222' });
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({
        name: q,
        subjects: [`${q}.m`],
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
      });
      await jsm.consumers.add(q, {
        durable_name: 'work',
        ack_policy: AckPolicy.Explicit,
        max_ack_pending: 1000,
      });
      await nc.close();
    } else if (system.key === 'pgboss') {
      if (this.#boss === undefined) {
        this.#boss = new PgBoss({
          connectionString: PG_URL,
          schema: 'peers_pgboss',
          supervise: false,
          schedule: false,
        });
        this.#boss.on('error', () => {});
        await this.#boss.start();
      }
      await this.#boss.createQueue(q);
    }
    return q;
  }

  async remove(system: System, q: string, server: { http: string } | undefined): Promise<void> {
    try {
      if (system.key === 'rabbitmq') {
        const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672');
        const ch = await conn.createChannel();
        await ch.deleteQueue(q);
        await conn.close();
      } else if (system.key === 'nats') {
        const nc = await natsConnect({ servers: '127.0.0.1:4222' });
        await (await nc.jetstreamManager()).streams.delete(q);
        await nc.close();
      } else if (system.key === 'bullmq') {
        const bq = new BullQueue(q, { connection: { host: '127.0.0.1', port: 6379 } });
        await bq.obliterate({ force: true });
        await bq.close();
      } else if (system.key === 'pgboss') {
        await this.#boss?.deleteQueue(q);
      } else if (server !== undefined) {
        await new MailboxClient(server.http).purge(q);
      }
    } catch {
      // best effort: a leftover queue does not change the next phase's fresh one
    }
  }

  async close(): Promise<void> {
    await this.#boss?.stop({ graceful: false, wait: true });
  }
}

interface Measured {
  /** Sends that failed (not confirmed): not counted in the rates. */
  errors: number;
  send1: number;
  send100: number;
  recv: number;
  e2e: number;
  /** Server-side CPU (µs, user + system) per message in the end-to-end phase. */
  serverCpuUs: number;
  p50: number;
  p99: number;
  /** Share of the latency phase's messages over 2 ms. */
  over2: number;
  /** Latency (ms) at LATENCY_PERCENTILES in the latency phase. */
  curve: number[];
}

async function measure(
  system: System,
  admin: Admin,
  server: { http: string; binary: string } | undefined,
  phaseMs: number,
  latencyMs: number,
  warmupMs: number,
  tick: () => void,
  serverCpu: () => number,
): Promise<Measured> {
  const serverJson = JSON.stringify(server ?? { http: '', binary: '' });
  const produce = (q: string, inFlight: number, ms: number, rate: number): Child =>
    start([
      'produce',
      system.client,
      q,
      String(inFlight),
      String(ms),
      String(MAX_COUNT),
      String(rate),
      serverJson,
    ]);
  const consume = (q: string, warmupMs = 0): Child =>
    start(['consume', system.client, q, serverJson, String(warmupMs)]);

  // Sends, 1 in flight.
  let q = await admin.create(system);
  const send1 = await produce(q, 1, phaseMs, 0).result;
  await admin.remove(system, q, server);
  tick();

  // Sends, 100 in flight: the backlog of the next phase.
  q = await admin.create(system);
  const send100 = await produce(q, 100, phaseMs, 0).result;
  tick();
  let c = consume(q);
  await c.ready;
  await waitFor(() => c.count >= send100.sent!, 30_000);
  c.stop();
  const recvR = await c.result;
  await admin.remove(system, q, server);
  tick();

  // End to end: consumer and producer at once.
  q = await admin.create(system);
  c = consume(q);
  await c.ready;
  const cpu0 = serverCpu();
  const e2eP = await produce(q, 100, phaseMs, 0).result;
  await waitFor(() => c.count >= e2eP.sent!, 30_000);
  const cpu1 = serverCpu();
  c.stop();
  const e2eR = await c.result;
  await admin.remove(system, q, server);
  tick();

  // Latency at a steady 1 000 msg/s, after a warm-up at that rate the consumer does not count.
  q = await admin.create(system);
  c = consume(q, warmupMs);
  await c.ready;
  const latP = await produce(q, 0, warmupMs + latencyMs, 1000).result;
  await waitFor(() => c.count >= latP.sent!, 30_000);
  c.stop();
  const latR = await c.result;
  await admin.remove(system, q, server);
  tick();

  const errors = [send1, send100, e2eP, latP].reduce((n, r) => n + (r.errors ?? 0), 0);
  return {
    errors,
    send1: send1.rate!,
    send100: send100.rate!,
    recv: (recvR.count! * 1000) / Math.max(1, recvR.lastAt! - recvR.firstAt!),
    e2e: (Math.min(e2eR.count!, e2eP.sent!) * 1000) / Math.max(1, e2eR.lastAt! - e2eP.startedAt!),
    serverCpuUs: (cpu1 - cpu0) / Math.max(1, Math.min(e2eR.count!, e2eP.sent!)),
    p50: latR.p50!,
    p99: latR.p99!,
    over2: latR.over2!,
    curve: c.curve ?? [],
  };
}

/** A grouped horizontal bar chart (end to end and sends with 100 in flight), as SVG. */
function chart(rows: readonly { label: string; e2e: number; send100: number }[], title: string): string {
  const barH = 12;
  const groupH = 2 * barH + 14;
  const left = 420;
  const width = 960;
  const top = 50;
  const max = Math.max(...rows.map((r) => Math.max(r.e2e, r.send100)), 1);
  const scale = (v: number): number => ((width - left - 90) * v) / max;
  const parts: string[] = [];
  rows.forEach((r, i) => {
    const y = top + i * groupH;
    parts.push(
      `<text x="${left - 8}" y="${y + barH + 4}" text-anchor="end" font-size="12">${esc(r.label)}</text>`,
      `<rect x="${left}" y="${y}" width="${scale(r.e2e).toFixed(1)}" height="${barH}" fill="#2b6cb0"/>`,
      `<text x="${left + scale(r.e2e) + 4}" y="${y + barH - 2}" font-size="11">${Math.round(r.e2e).toLocaleString('en-US')}</text>`,
      `<rect x="${left}" y="${y + barH + 2}" width="${scale(r.send100).toFixed(1)}" height="${barH}" fill="#a0aec0"/>`,
      `<text x="${left + scale(r.send100) + 4}" y="${y + 2 * barH}" font-size="11">${Math.round(r.send100).toLocaleString('en-US')}</text>`,
    );
  });
  const h = top + rows.length * groupH + 20;
  return svgDocument(width, h, title, [
    `<rect x="${left}" y="30" width="12" height="10" fill="#2b6cb0"/><text x="${left + 16}" y="39" font-size="11">end to end msgs/s</text>`,
    `<rect x="${left + 150}" y="30" width="12" height="10" fill="#a0aec0"/><text x="${left + 166}" y="39" font-size="11">sends/s, 100 in flight</text>`,
    ...parts,
  ]);
}

/** Median wall time of a one-row commit with synchronous=FULL (WAL): what one fsync costs now. */
function fsyncMs(path: string): number {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE t (x)');
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  const times: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    insert.run(i);
    times.push(performance.now() - t0);
  }
  db.close();
  times.sort((a, b) => a - b);
  return times[25]!;
}

export default async function main(args: string[]): Promise<void> {
  const phaseMs = Number(args[0] ?? 2000);
  const latencyMs = Number(args[1] ?? 10_000);
  const warmupMs = Number(process.env.SWITCHYARD_BENCH_WARMUP_MS ?? 2000);
  if (!Number.isInteger(warmupMs) || warmupMs < 0)
    throw new Error('SWITCHYARD_BENCH_WARMUP_MS must be a whole number of milliseconds');
  const only = args[2]?.split(',');
  const systems = SYSTEMS.filter((s) => only === undefined || only.includes(s.key));
  const loadBefore = loadavg()[0]!;
  const admin = new Admin();
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-peers-'));
  const fsyncBefore = fsyncMs(join(dir, 'fsync-before.db'));
  let fsyncAfter: number | undefined;
  const results = new Map<string, Measured>();
  const bar = progress('mailbox peers', systems.length * 5);
  try {
    for (const system of systems) {
      let server: Child | undefined;
      let info: { http: string; binary: string } | undefined;
      if (system.store !== undefined) {
        const store =
          system.store === 'sqlite'
            ? `sqlite:${join(dir, `${system.key}.db`)}`
            : `${PG_URL}?schema=peers_${system.key.replace(/-/g, '_')}`;
        server = start(['server', store]);
        info = JSON.parse(await server.ready) as { http: string; binary: string };
      }
      try {
        const brokerPid = server?.pid;
        results.set(
          system.key,
          await measure(
            system,
            admin,
            info,
            phaseMs,
            latencyMs,
            warmupMs,
            () => bar.tick(),
            () => serverCpuMicros(system, brokerPid),
          ),
        );
      } catch (error) {
        process.stderr.write(`\n${system.key}: ${(error as Error).message}\n`);
      } finally {
        server?.stop();
        if (server !== undefined) await Promise.race([server.result.catch(() => {}), sleep(5000)]);
        server?.kill();
      }
    }
    fsyncAfter = fsyncMs(join(dir, 'fsync-after.db'));
  } finally {
    bar.stop();
    await admin.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const loadAfter = loadavg()[0]!;
  const best = Math.max(
    ...systems.filter((s) => s.store === undefined).map((s) => results.get(s.key)?.e2e ?? 0),
    1,
  );
  const rows: Row[] = systems.map((s) => {
    const m = results.get(s.key);
    return {
      system: s.label,
      'flushed before confirm': s.fsync,
      'send/s 1 in flight': m === undefined ? 'failed' : Math.round(m.send1),
      'send/s 100 in flight': m === undefined ? 'failed' : Math.round(m.send100),
      'recv+ack/s backlog': m === undefined ? 'failed' : Math.round(m.recv),
      'end to end msgs/s': m === undefined ? 'failed' : Math.round(m.e2e),
      '× best peer e2e': m === undefined ? '—' : Number((m.e2e / best).toFixed(2)),
      'server CPU µs/msg (e2e)': m === undefined ? '—' : Math.round(m.serverCpuUs),
      'p50 / p99 ms at 1 000/s': m === undefined ? 'failed' : `${m.p50.toFixed(2)} / ${m.p99.toFixed(2)}`,
      '> 2 ms at 1 000/s': m === undefined ? '—' : `${(100 * m.over2).toFixed(1)} %`,
    };
  });
  const date = new Date().toISOString().slice(0, 10);
  const title = 'Durable work queues: ~256 B bodies, producer / consumer / broker in separate processes';
  const notes = [
    `Each throughput phase: ${phaseMs} ms or ${MAX_COUNT.toLocaleString('en-US')} messages, whichever first (one run, not medians); latency: ${latencyMs} ms at 1 000 msg/s, after ${warmupMs} ms at that rate not counted (fresh client processes warming up; the same for every system).`,
    `Load average (1 min) on this shared 2-core machine: ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after; a one-row SQLite commit with fsync (synchronous=FULL) took ${fsyncBefore.toFixed(2)} ms before and ${fsyncAfter?.toFixed(2) ?? '—'} ms after (median of 50; shared/BENCHMARKS.md assumes about 0.3 ms).`,
    'Server CPU: user + system time of the server processes over the end-to-end phase, per message (/proc): the Switchyard broker process (plus every PostgreSQL process for its PostgreSQL store), beam.smp, nats-server, redis-server, or every PostgreSQL process for pg-boss (other work on the shared PostgreSQL counts too).',
    "Peer acks are the clients' own (RabbitMQ basic.ack, JetStream ack, BullMQ job completion, pg-boss complete); Switchyard acks are committed by the broker (binary: acks of one turn share a request).",
  ];
  for (const s of systems) {
    const e = results.get(s.key)?.errors ?? 0;
    if (e > 0) notes.push(`${s.label}: ${e} sends failed (not confirmed; not counted).`);
  }
  report('mailbox-peers', title, rows, notes);
  const docs = fileURLToPath(new URL('../../../docs/benchmarks/', import.meta.url));
  mkdirSync(docs, { recursive: true });
  writeFileSync(
    join(docs, 'mailbox-peers.svg'),
    chart(
      systems.flatMap((s) => {
        const m = results.get(s.key);
        return m === undefined ? [] : [{ label: s.label, e2e: m.e2e, send100: m.send100 }];
      }),
      `Durable work queues, msgs/s — ${date}, Node ${process.version}, 2 cores (shared)`,
    ),
  );
  writeFileSync(
    join(docs, 'mailbox-peers-latency.svg'),
    latencyChart(
      systems.flatMap((s) => {
        const m = results.get(s.key);
        return m === undefined || m.curve.length !== LATENCY_PERCENTILES.length
          ? []
          : [{ label: s.label, curve: m.curve }];
      }),
      `Send-to-receive latency at a steady 1 000 msg/s — ${date}, Node ${process.version}, 2 cores (shared)`,
      [
        { percentile: 50, ms: 0.5, label: 'target p50' },
        { percentile: 99, ms: 2, label: 'target p99' },
      ],
    ),
  );
  writeFileSync(
    join(docs, 'mailbox-peers.md'),
    [
      '# Mailbox peer benchmark',
      '',
      `\`npm run bench -- mailbox-peers\` (bench/src/benchmarks/mailbox-peers.ts), ${date}, Node ${process.version}, ${process.platform}/${process.arch}.`,
      '',
      `**${title}**`,
      '',
      formatTable(rows),
      '',
      ...notes.map((n) => `- ${n}`),
      '',
      '![end to end and send rates](mailbox-peers.svg)',
      '',
      `Latency at a steady 1 000 msg/s, by percentile (${LATENCY_PERCENTILES.map((p) => `p${p}`).join(', ')}; both axes logarithmic; crosses: the spec's targets for Switchyard on SQLite):`,
      '',
      '![latency percentiles at 1 000 msg/s](mailbox-peers-latency.svg)',
      '',
    ].join('\n'),
  );
  console.log(`wrote ${join(docs, 'mailbox-peers.md')}, mailbox-peers.svg and mailbox-peers-latency.svg`);
}
