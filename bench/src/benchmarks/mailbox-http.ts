// Switchyard's mailbox over HTTP, measured from other processes: sends/s with autocannon
// (JSON /v1/messages and pandora's form /api/send, 1 and 64 connections, 256-byte bodies) and
// fetch+ack/s by a MailboxClient process draining the backlog (one message per fetch; 50 per
// fetch with one ack request each; 50 per fetch with one batch-ack request). The server runs SQLite with synchronous=FULL (every send and
// ack is on disk before it is answered). Peer measured in the same run: RabbitMQ classic
// durable queue, persistent messages, publisher confirms, manual acks (amqplib).
//
//   npm run bench -- mailbox-http [phaseMs=3000]
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { progress, report, type Row } from '../lib/report.js';

const CHILD = fileURLToPath(new URL('./mailbox-http.child.js', import.meta.url));
const PAD = randomBytes(128).toString('hex').slice(0, 248); // with "p=" and 6 more chars: 256 bytes

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}
type Autocannon = (o: Record<string, unknown>, cb: (err: unknown, r: AutocannonResult) => void) => unknown;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

function cannon(o: Record<string, unknown>): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    autocannon(o, (err, r) =>
      err ? reject(err instanceof Error ? err : new Error('autocannon failed')) : resolve(r),
    );
  });
}

interface Proc {
  readonly child: ChildProcess;
  readonly ready: Promise<string>;
  readonly result: Promise<Record<string, number>>;
}

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout });
  let ready!: (s: string) => void;
  let result!: (r: Record<string, number>) => void;
  const readyP = new Promise<string>((resolve) => (ready = resolve));
  const resultP = new Promise<Record<string, number>>((resolve) => (result = resolve));
  rl.on('line', (line) => {
    if (line.startsWith('READY ')) ready(line.slice(6));
    else if (line.startsWith('RESULT ')) result(JSON.parse(line.slice(7)) as Record<string, number>);
  });
  return { child, ready: readyP, result: resultP };
}

async function rabbit(phaseMs: number, inFlight: number): Promise<number> {
  const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672');
  const ch = await conn.createConfirmChannel();
  const queue = `sy-http-bench-${process.pid}`;
  await ch.assertQueue(queue, { durable: true });
  const body = Buffer.from(`p=${PAD}123456`);
  let n = 0;
  const deadline = performance.now() + phaseMs;
  const started = performance.now();
  const lane = async (): Promise<void> => {
    while (performance.now() < deadline)
      await new Promise<void>((resolve, reject) =>
        ch.sendToQueue(queue, body, { persistent: true }, (err) =>
          err ? reject(new Error(String(err))) : resolve(),
        ),
      ).then(() => void n++);
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const rate = (n * 1000) / (performance.now() - started);
  await ch.close();
  await conn.close();
  return rate;
}

async function rabbitDrain(phaseMs: number): Promise<number> {
  const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672');
  const ch = await conn.createChannel();
  const queue = `sy-http-bench-${process.pid}`;
  await ch.prefetch(64);
  let n = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, phaseMs);
    void ch.consume(queue, (msg) => {
      if (msg === null) return;
      ch.ack(msg);
      n++;
    });
    void timer;
  });
  const rate = (n * 1000) / (performance.now() - started);
  await ch.deleteQueue(queue);
  await ch.close();
  await conn.close();
  return rate;
}

export default async function mailboxHttp(args: string[]): Promise<void> {
  const phaseMs = Number(args[0] ?? 3000);
  const seconds = Math.max(1, Math.round(phaseMs / 1000));
  const dir = mkdtempSync(join(tmpdir(), 'sy-http-bench-'));
  const server = start(['server', dir]);
  const bar = progress('mailbox-http', 10);
  const rows: Row[] = [];
  try {
    const url = await server.ready;
    const json = JSON.stringify({ sender: 'bench', receiver: 'bench', body: { p: `${PAD}123456` } });
    const form = `sender=bench&receiver=bench&p=${PAD}123456`;
    const send = (path: string, body: string, type: string, connections: number) =>
      cannon({
        url: url + path,
        method: 'POST',
        body,
        headers: { 'content-type': type },
        connections,
        duration: seconds,
        pipelining: 1,
      });

    const peer: Record<string, number> = {};
    const row = (
      phase: string,
      sy: number,
      p50: number | string,
      p99: number | string,
      rabbitRate?: number,
    ): void => {
      rows.push({
        phase,
        'Switchyard msgs/s': Math.round(sy),
        'p50 ms': p50,
        'p99 ms': p99,
        'RabbitMQ msgs/s': rabbitRate === undefined ? '—' : Math.round(rabbitRate),
        'vs RabbitMQ': rabbitRate === undefined ? '—' : `${(sy / rabbitRate).toFixed(2)}×`,
      });
    };

    peer.send1 = await rabbit(phaseMs, 1);
    bar.tick();
    peer.send64 = await rabbit(phaseMs, 64);
    bar.tick();
    peer.drain = await rabbitDrain(phaseMs);
    bar.tick();

    const s1 = await send('/v1/messages', json, 'application/json', 1);
    bar.tick();
    row(
      'send, JSON /v1/messages, 1 connection',
      s1.requests.average,
      s1.latency.p50,
      s1.latency.p99,
      peer.send1,
    );
    const s64 = await send('/v1/messages', json, 'application/json', 64);
    bar.tick();
    row(
      'send, JSON /v1/messages, 64 connections',
      s64.requests.average,
      s64.latency.p50,
      s64.latency.p99,
      peer.send64,
    );
    const p64 = await send('/api/send', form, 'application/x-www-form-urlencoded', 64);
    bar.tick();
    row(
      'send, pandora form /api/send, 64 connections',
      p64.requests.average,
      p64.latency.p50,
      p64.latency.p99,
      peer.send64,
    );
    const errors = s1.non2xx + s64.non2xx + p64.non2xx + s1.errors + s64.errors + p64.errors;

    const c1 = start(['consume', url, 'bench', '64', '1', String(phaseMs)]);
    const r1 = await c1.result;
    bar.tick();
    row('fetch+ack, 1 per fetch, 64 workers (1 process)', (r1.n! * 1000) / r1.ms!, '—', '—', peer.drain);
    const c50 = start(['consume', url, 'bench', '8', '50', String(phaseMs)]);
    const r50 = await c50.result;
    bar.tick();
    row('fetch+ack, 50 per fetch, 8 workers (1 process)', (r50.n! * 1000) / r50.ms!, '—', '—', peer.drain);
    const cb = start(['consume', url, 'bench', '8', '50', String(phaseMs), 'batch']);
    const rb = await cb.result;
    row('fetch+ack, 50 per fetch, acks batched, 8 workers', (rb.n! * 1000) / rb.ms!, '—', '—', peer.drain);
    bar.tick();
    bar.stop();
    report(
      'mailbox-http',
      'Switchyard mailbox over HTTP (SQLite, synchronous=FULL) vs RabbitMQ, 256-byte bodies',
      rows,
      [
        `autocannon in this process, the server and the consumers in their own; ${seconds} s a phase; non-2xx or errors: ${errors}.`,
        `RabbitMQ: classic durable queue, persistent, publisher confirms (1 / 64 in flight), manual acks with prefetch 64 (receive+ack).`,
        `load average at the end: ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')} (2 cores, shared)`,
      ],
    );
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((r) => server.child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}
