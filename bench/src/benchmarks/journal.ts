// @switchyard/shm journal against Node's own ways to move a message between two processes
// (worker_threads postMessage between two threads). Writer and reader are separate processes;
// every peer is measured again in this run. Messages/s count from the sender's first message
// to the reader's last (CLOCK_MONOTONIC, the same clock in every process).
// `npm run bench -- journal [scale]` (scale 1 = the default counts).
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  JOURNAL_CHILD,
  benchDirs,
  Proc,
  endToEnd,
  ipcRun,
  mbps,
  postMessageRun,
  rate,
  socketPingPong,
  type Result,
} from '../lib/peers.js';
import { progress, report, type Row } from '../lib/report.js';

async function journalRun(
  dir: string,
  size: number,
  count: number,
  wait: string,
  gapUs: number,
): Promise<Result> {
  const path = join(dir, `j-${size}-${wait}-${gapUs}`);
  const capacity = Math.ceil((((size + 15) & ~7) * (count + 16)) / 8) * 8 + 64;
  const writer = new Proc(JOURNAL_CHILD, [
    'jw',
    path,
    String(size),
    String(count),
    String(gapUs),
    String(capacity),
  ]);
  await writer.message('created');
  const reader = new Proc(JOURNAL_CHILD, ['jr', path, wait, gapUs > 0 ? '1' : '0']);
  await reader.message('ready');
  writer.send('go');
  const { startNs } = await writer.message<{ startNs: string }>('startNs');
  const result = endToEnd(await reader.message<Result>('read'), BigInt(startNs));
  await writer.message('written');
  rmSync(path, { force: true });
  return result;
}

async function socketRun(
  dir: string,
  size: number,
  count: number,
  batched: boolean,
  gapUs: number,
): Promise<Result> {
  const path = join(dir, `s-${size}-${batched}-${gapUs}.sock`);
  const reader = new Proc(JOURNAL_CHILD, ['sr', path, String(count), gapUs > 0 ? '1' : '0']);
  await reader.message('ready');
  const writer = new Proc(JOURNAL_CHILD, [
    'sw',
    path,
    String(size),
    String(count),
    batched ? '1' : '0',
    String(gapUs),
  ]);
  const { startNs } = await writer.message<{ startNs: string }>('startNs');
  const result = endToEnd(await reader.message<Result>('read'), BigInt(startNs));
  await writer.exited;
  return result;
}

async function pingPong(dir: string, wait: string, count: number): Promise<Result> {
  const sub = mkdtempSync(join(dir, 'pp-'));
  const pong = new Proc(JOURNAL_CHILD, ['jpong', sub, wait]);
  const ping = new Proc(JOURNAL_CHILD, ['jping', sub, wait, String(count)]);
  const result = await ping.message<Result>('read');
  await pong.exited;
  rmSync(sub, { recursive: true, force: true });
  return result;
}

export default async function journal(args: string[]): Promise<void> {
  const scale = Number(args[0] ?? 1);
  const n = (count: number): number => Math.max(1000, Math.round(count * scale));
  const { dir, sockDir, cleanUp } = benchDirs();
  const sizes = [64, 1024];
  const counts: Record<number, Record<string, number>> = {
    64: { journal: n(3_000_000), post: n(300_000), ipc: n(100_000), sock: n(200_000), batched: n(2_000_000) },
    1024: { journal: n(1_000_000), post: n(200_000), ipc: n(50_000), sock: n(100_000), batched: n(500_000) },
  };
  const rows: Row[] = [];
  const table = new Map<string, Row>();
  const row = (name: string): Row => {
    let r = table.get(name);
    if (r === undefined) {
      r = { transport: name };
      table.set(name, r);
      rows.push(r);
    }
    return r;
  };
  const bar = progress('journal', 18);
  const results: Record<string, Result> = {};
  try {
    for (const size of sizes) {
      const c = counts[size] as Record<string, number>;
      const put = (name: string, r: Result): void => {
        results[`${name}/${size}`] = r;
        row(name)[`${size} B msgs/s`] = Math.round(rate(r));
        row(name)[`${size} B MB/s`] = Math.round(mbps(r));
        bar.tick();
      };
      put(
        'shm journal, reader spinning (read in place)',
        await journalRun(dir, size, c.journal as number, 'spin', 0),
      );
      put(
        'shm journal, reader adaptive (parks on the doorbell)',
        await journalRun(dir, size, c.journal as number, 'adaptive', 0),
      );
      put('worker_threads postMessage(Buffer) (threads)', await postMessageRun(size, c.post as number));
      put('child_process IPC process.send (json)', await ipcRun(size, c.ipc as number));
      put('Unix socket, one write() per message', await socketRun(sockDir, size, c.sock as number, false, 0));
      put('Unix socket, 64 KiB batched writes', await socketRun(sockDir, size, c.batched as number, true, 0));
    }
    // Ping-pong round trips of 64-byte messages, one in flight: immune to backlogs, so a
    // preempted process spoils only the samples it delays.
    const lat: [string, () => Promise<Result>][] = [
      ['shm journal, reader spinning (read in place)', () => pingPong(dir, 'spin', n(20_000))],
      ['shm journal, reader adaptive (parks on the doorbell)', () => pingPong(dir, 'parked', n(5_000))],
      ['Unix socket, one write() per message', () => socketPingPong(sockDir, n(5_000))],
    ];
    for (const [name, run] of lat) {
      const r = await run();
      row(name)['RTT p50 µs'] = Number((r.p50 ?? 0).toFixed(1));
      row(name)['RTT p99 µs'] = Number((r.p99 ?? 0).toFixed(1));
      bar.tick();
    }
    // One-way write-to-read latency: the writer stamps each 64-byte message and paces them
    // (a futex sleep of 50 µs between messages to a spinning reader, 200 µs to a parked one, so it
    // really parks).
    // A preempted reader delays every message queued meanwhile: tails show the machine's load.
    const oneWay: [string, () => Promise<Result>][] = [
      ['shm journal, reader spinning (read in place)', () => journalRun(dir, 64, n(20_000), 'spin', 50)],
      [
        'shm journal, reader adaptive (parks on the doorbell)',
        () => journalRun(dir, 64, n(5_000), 'adaptive', 200),
      ],
      ['Unix socket, one write() per message', () => socketRun(sockDir, 64, n(5_000), false, 200)],
    ];
    for (const [name, run] of oneWay) {
      const r = await run();
      row(name)['1-way p50 µs'] = Number((r.p50 ?? 0).toFixed(1));
      row(name)['1-way p99 µs'] = Number((r.p99 ?? 0).toFixed(1));
      bar.tick();
    }
  } finally {
    bar.stop();
    cleanUp();
  }
  for (const r of rows) {
    r['RTT p50 µs'] ??= '—';
    r['RTT p99 µs'] ??= '—';
    r['1-way p50 µs'] ??= '—';
    r['1-way p99 µs'] ??= '—';
  }
  const ratio = (a: string, b: string, size: number): string => {
    const x = results[`${a}/${size}`];
    const y = results[`${b}/${size}`];
    return x !== undefined && y !== undefined ? (rate(x) / rate(y)).toFixed(1) : '?';
  };
  const J = 'shm journal, reader spinning (read in place)';
  report(
    'journal',
    'shm journal vs Node same-host transports (two processes; postMessage: two threads)',
    rows,
    [
      `64 B: journal/postMessage(Buffer) = ${ratio(J, 'worker_threads postMessage(Buffer) (threads)', 64)}x (target >= 10x); ` +
        `journal/batched Unix socket = ${ratio(J, 'Unix socket, 64 KiB batched writes', 64)}x (target >= 1x)`,
      `1 KiB: journal/batched Unix socket bytes/s = ${ratio(J, 'Unix socket, 64 KiB batched writes', 1024)}x (target >= 3x)`,
      'RTT: ping-pong round trip of a 64 B message between the two processes (parked: spinMicros 0, ' +
        'so every message wakes a parked reader through its doorbell). 1-way: write-to-read latency of paced, ' +
        'stamped 64 B messages (CLOCK_MONOTONIC); "—": not measured.',
    ],
  );
}
