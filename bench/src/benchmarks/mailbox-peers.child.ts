// One process of the peer benchmark: a Switchyard broker server, a producer or a consumer for
// one system. Talks to the parent by lines: it prints READY, progress `C <n>` and `RESULT
// <json>`; a consumer stops when it reads STOP on stdin.
//
//   node mailbox-peers.child.js server <storeUrl>
//   node mailbox-peers.child.js produce <system> <queue> <inFlight> <maxMs> <maxCount> <ratePerSec|0> <serverJson>
//   node mailbox-peers.child.js consume <system> <queue> <serverJson>
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import amqp from 'amqplib';
import { Queue as BullQueue, Worker as BullWorker } from 'bullmq';
import { connect as natsConnect } from 'nats';
import PgBoss from 'pg-boss';
import {
  Broker,
  MailboxBinaryClient,
  MailboxBinaryServer,
  MailboxClient,
  MailboxServer,
} from '@switchyard/mailbox';
import { LATENCY_PERCENTILES } from '../lib/latency.js';

export const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const PAD = randomBytes(118).toString('hex'); // 236 chars; with the timestamp, a 256-byte body

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const out = (line: string): void => {
  process.stdout.write(line + '\n');
};

/** The body: a send timestamp (ms with 3 decimals, 17 chars) and padding, 256 bytes encoded. */
function stamp(): string {
  return now().toFixed(3).padStart(17, '0');
}

interface Producer {
  send(ts: string): Promise<void>;
  close(): Promise<void>;
}

interface Consumer {
  /** Starts delivering; `onMessage` gets the body's timestamp and must ack. */
  start(onMessage: (ts: string) => void): Promise<void>;
  close(): Promise<void>;
}

interface ServerInfo {
  readonly http: string;
  readonly binary: string;
}

/** pg-boss in its own schema, its maintenance and schedules off, a pool of 20 connections. */
async function startPgBoss(): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: PG_URL,
    schema: 'peers_pgboss',
    supervise: false,
    schedule: false,
    max: 20,
  });
  boss.on('error', () => {});
  await boss.start();
  return boss;
}

async function producerFor(system: string, queue: string, server: ServerInfo): Promise<Producer> {
  switch (system) {
    case 'rabbitmq': {
      const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672');
      const ch = await conn.createConfirmChannel();
      await ch.assertQueue(queue, { durable: true });
      return {
        send: (ts) =>
          new Promise<void>((resolve, reject) => {
            ch.sendToQueue(queue, Buffer.from(`${ts}${PAD}`), { persistent: true }, (err) =>
              err === null || err === undefined ? resolve() : reject(new Error(String(err))),
            );
          }),
        close: async () => {
          await ch.close();
          await conn.close();
        },
      };
    }
    case 'nats': {
      const nc = await natsConnect({ servers: '127.0.0.1:4222' });
      const js = nc.jetstream();
      return {
        send: async (ts) => {
          await js.publish(`${queue}.m`, Buffer.from(`${ts}${PAD}`));
        },
        close: () => nc.close(),
      };
    }
    case 'bullmq': {
      const q = new BullQueue(queue, { connection: { host: '127.0.0.1', port: 6379 } });
      return {
        send: async (ts) => {
          await q.add('m', { t: ts, d: PAD }, { removeOnComplete: true });
        },
        close: () => q.close(),
      };
    }
    case 'pgboss': {
      const boss = await startPgBoss();
      return {
        send: async (ts) => {
          await boss.send(queue, { t: ts, d: PAD });
        },
        close: () => boss.stop({ graceful: false, wait: true }),
      };
    }
    case 'sy-http': {
      const c = new MailboxClient(server.http);
      return {
        send: async (ts) => {
          await c.send({ sender: 'bench', receiver: queue, body: { t: ts, d: PAD } });
        },
        close: async () => {},
      };
    }
    case 'sy-binary': {
      const c = new MailboxBinaryClient(server.binary);
      return {
        send: async (ts) => {
          await c.send({ sender: 'bench', receiver: queue, body: { t: ts, d: PAD } });
        },
        close: () => c.close(),
      };
    }
    default:
      throw new Error(`unknown system ${system}`);
  }
}

async function consumerFor(system: string, queue: string, server: ServerInfo): Promise<Consumer> {
  switch (system) {
    case 'rabbitmq': {
      const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672');
      const ch = await conn.createChannel();
      await ch.assertQueue(queue, { durable: true });
      await ch.prefetch(100);
      return {
        start: async (onMessage) => {
          await ch.consume(queue, (msg) => {
            if (msg === null) return;
            onMessage(msg.content.subarray(0, 17).toString());
            ch.ack(msg);
          });
        },
        close: async () => {
          await ch.close();
          await conn.close();
        },
      };
    }
    case 'nats': {
      const nc = await natsConnect({ servers: '127.0.0.1:4222' });
      const js = nc.jetstream();
      let running: Promise<void> | undefined;
      let stopIt: (() => void) | undefined;
      return {
        start: async (onMessage) => {
          const c = await js.consumers.get(queue, 'work');
          const messages = await c.consume({ max_messages: 100 });
          stopIt = () => void messages.stop();
          running = (async () => {
            for await (const m of messages) {
              onMessage(Buffer.from(m.data.subarray(0, 17)).toString());
              m.ack();
            }
          })();
        },
        close: async () => {
          stopIt?.();
          await running;
          await nc.close();
        },
      };
    }
    case 'bullmq': {
      let worker: BullWorker | undefined;
      return {
        start: async (onMessage) => {
          worker = new BullWorker(
            queue,
            async (job) => {
              onMessage((job.data as { t: string }).t);
            },
            { connection: { host: '127.0.0.1', port: 6379 }, concurrency: 50 },
          );
          await worker.waitUntilReady();
        },
        close: async () => {
          await worker?.close();
        },
      };
    }
    case 'pgboss': {
      // As fast as its API allows: fetch up to 64 jobs, complete each one individually, poll
      // every 5 ms when empty (its own work() polls every 2 s by default).
      const boss = await startPgBoss();
      let stop = false;
      let running: Promise<void> | undefined;
      return {
        start: async (onMessage) => {
          const loop = async (): Promise<void> => {
            while (!stop) {
              const jobs = await boss.fetch<{ t: string }>(queue, { batchSize: 64 });
              if (jobs.length === 0) {
                await sleep(5);
                continue;
              }
              await Promise.all(
                jobs.map(async (job) => {
                  onMessage(job.data.t);
                  await boss.complete(queue, job.id);
                }),
              );
            }
          };
          running = Promise.all([loop(), loop(), loop(), loop()]).then(() => {});
        },
        close: async () => {
          stop = true;
          await running;
          await boss.stop({ graceful: false, wait: true });
        },
      };
    }
    case 'sy-http': {
      const c = new MailboxClient(server.http);
      const stop = new AbortController();
      let running: Promise<void> | undefined;
      return {
        start: async (onMessage) => {
          running = c.consume(queue, (m) => onMessage(m.body.t as string), {
            concurrency: 50,
            leaseMs: 30_000,
            waitMs: 1000,
            signal: stop.signal,
          });
        },
        close: async () => {
          stop.abort();
          await running;
        },
      };
    }
    case 'sy-binary': {
      const c = new MailboxBinaryClient(server.binary);
      const stop = new AbortController();
      let running: Promise<void> | undefined;
      return {
        start: async (onMessage) => {
          running = (async () => {
            try {
              for await (const m of c.subscribe(queue, {
                prefetch: 200,
                leaseMs: 30_000,
                signal: stop.signal,
              })) {
                onMessage(m.body.t as string);
                // Each message acked on its own (acks of one turn share a request).
                c.ack(m.mid, m.lid!, 1).catch(() => {});
              }
            } catch {
              // stopped
            }
          })();
        },
        close: async () => {
          stop.abort();
          await running;
          await c.close();
        },
      };
    }
    default:
      throw new Error(`unknown system ${system}`);
  }
}

async function runServer(store: string): Promise<void> {
  const broker = await Broker.open({
    store,
    ...(store.startsWith('sqlite:')
      ? {
          sqlite: {
            synchronous: 'full' as const,
            worker: process.env.SWITCHYARD_SQLITE_WORKER === '1',
            checkpoint:
              process.env.SWITCHYARD_SQLITE_CHECKPOINT === 'commit'
                ? ('commit' as const)
                : ('thread' as const),
          },
        }
      : {}),
  });
  const http = await MailboxServer.start({ broker, port: 0 });
  const binary = new MailboxBinaryServer(broker, { port: 0 });
  const binaryUrl = await binary.listen();
  out(`READY ${JSON.stringify({ http: http.url, binary: binaryUrl })}`);
  const stdin = createInterface({ input: process.stdin });
  for await (const line of stdin) if (line === 'STOP') break;
  await binary.close();
  await http.close();
  await broker.close();
  process.exit(0);
}

async function runProducer(args: string[]): Promise<void> {
  const [system, queue, inFlightS, maxMsS, maxCountS, rateS, serverJson] = args as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const p = await producerFor(system, queue, JSON.parse(serverJson) as ServerInfo);
  const inFlight = Number(inFlightS);
  const maxMs = Number(maxMsS);
  const maxCount = Number(maxCountS);
  const rate = Number(rateS);
  let sent = 0;
  let errors = 0;
  let started = 0;
  const t0 = now();
  const progressTimer = setInterval(() => out(`C ${sent}`), 200);
  if (rate > 0) {
    // A steady rate: every message goes out at its due time (catching up after a late timer).
    const pending = new Set<Promise<void>>();
    while (started < maxCount && now() - t0 < maxMs) {
      const due = t0 + (started * 1000) / rate;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      const s = p.send(stamp()).then(
        () => {
          sent++;
          pending.delete(s);
        },
        () => {
          errors++;
          pending.delete(s);
        },
      );
      pending.add(s);
      started++;
    }
    await Promise.all(pending);
  } else {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (started < maxCount && now() - t0 < maxMs) {
          started++;
          try {
            await p.send(stamp());
            sent++;
          } catch {
            // Counted and reported: a send that failed was not confirmed.
            errors++;
          }
        }
      }),
    );
  }
  const t1 = now();
  clearInterval(progressTimer);
  out(
    `RESULT ${JSON.stringify({ sent, errors, startedAt: t0, endedAt: t1, rate: (sent * 1000) / (t1 - t0) })}`,
  );
  await p.close();
  process.exit(0);
}

async function runConsumer(args: string[]): Promise<void> {
  const [system, queue, serverJson, warmupS = '0'] = args as [string, string, string, string?];
  const c = await consumerFor(system, queue, JSON.parse(serverJson) as ServerInfo);
  // Messages sent in the first `warmupMs` (by their stamps, from the first one) are not counted
  // in the latency percentiles.
  const warmupMs = Number(warmupS);
  let count = 0;
  let first = 0;
  let last = 0;
  let firstStamp = NaN;
  const latencies: number[] = [];
  // SWITCHYARD_BENCH_LATENCY_DUMP=<file>: every counted message's send stamp and latency (ms),
  // written at the end, to see when the late ones happen.
  const dump = process.env.SWITCHYARD_BENCH_LATENCY_DUMP;
  const stamps: number[] = [];
  await c.start((ts) => {
    const t = now();
    if (count === 0) first = t;
    last = t;
    count++;
    const sent = Number(ts);
    if (Number.isNaN(firstStamp)) firstStamp = sent;
    if (sent - firstStamp >= warmupMs) {
      latencies.push(t - sent);
      if (dump !== undefined) stamps.push(sent);
    }
  });
  out('READY');
  const progressTimer = setInterval(() => out(`C ${count}`), 100);
  const stdin = createInterface({ input: process.stdin });
  for await (const line of stdin) if (line === 'STOP') break;
  clearInterval(progressTimer);
  if (dump !== undefined) {
    writeFileSync(dump, stamps.map((st, i) => `${st.toFixed(3)} ${latencies[i]!.toFixed(3)}\n`).join(''));
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] ?? NaN;
  const over2 = latencies.length === 0 ? NaN : latencies.filter((l) => l > 2).length / latencies.length;
  out(`LATENCY ${JSON.stringify(LATENCY_PERCENTILES.map(pct))}`);
  out(`RESULT ${JSON.stringify({ count, firstAt: first, lastAt: last, p50: pct(50), p99: pct(99), over2 })}`);
  await Promise.race([c.close(), sleep(3000)]);
  process.exit(0);
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'server') await runServer(rest[0]!);
else if (role === 'produce') await runProducer(rest);
else if (role === 'consume') await runConsumer(rest);
else throw new Error(`unknown role ${role}`);
