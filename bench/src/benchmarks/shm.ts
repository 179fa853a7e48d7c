// @switchyard/shm pub/sub and ShmChannel against Node's own ways to move a message between
// two processes (worker_threads postMessage between two threads), and against the shm
// journal. Publisher and subscriber are separate processes; every peer is measured again in
// this run (the peers and the journal run from journal.child.js / journal-worker.child.js).
// Messages/s count from the sender's first message to the reader's last (CLOCK_MONOTONIC,
// the same clock in every process).
// `npm run bench -- shm [scale] [phase,phase…]` (scale 1 = the default counts; phases by the
// names below, e.g. `send 64 spin,batched 64`: only those run).
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

const SHM_CHILD = fileURLToPath(new URL('./shm.child.js', import.meta.url));

/**
 * Region geometry per message size: blocks as big as the message, a deep ring for 64 B
 * (65536 entries, 5 MiB inline; twice as many blocks, for the runs via blocks) and a pool of
 * 4 MiB for 1 KiB (4096 blocks, as many ring entries: the lines both sides touch stay in the
 * caches — a 16 MiB pool, ring 8192, cost the publisher about 250 ns a message against 190);
 * the journal runs get room for the whole run, the socket the kernel's buffers.
 */
function geometry(size: number): {
  blockSize: number;
  blockCount: number;
  ringDepth: number;
  idleMicros: number;
} {
  // idleMicros: how long the subscriber lets a batch build up after an empty poll (see
  // idle() in shm.child.ts) — not with a ring of 4, which the publisher fills in microseconds.
  if (size >= 1 << 20) return { blockSize: size, blockCount: 8, ringDepth: 4, idleMicros: 0 };
  if (size <= 64) return { blockSize: 64, blockCount: 131072, ringDepth: 65536, idleMicros: 10 };
  return { blockSize: size, blockCount: 4096, ringDepth: 4096, idleMicros: 10 };
}

async function pubSubRun(
  dir: string,
  size: number,
  count: number,
  how: 'send' | 'loan',
  wait: string,
  /** undefined: the default (`PUBSUB_DEFAULTS.inlineMaxBytes`, 64). */
  inlineMaxBytes?: number,
): Promise<Result> {
  const name = `b-${size}-${how}-${wait}-${inlineMaxBytes ?? 'default'}`;
  const g = geometry(size);
  const pub = new Proc(SHM_CHILD, [
    'pub',
    name,
    dir,
    String(size),
    String(count),
    how,
    String(g.blockSize),
    String(g.blockCount),
    String(g.ringDepth),
    inlineMaxBytes === undefined ? 'default' : String(inlineMaxBytes),
  ]);
  await pub.message('created');
  const sub = new Proc(SHM_CHILD, ['sub', name, dir, String(count), wait, String(g.idleMicros)]);
  await sub.message('ready');
  pub.send('go');
  const { startNs } = await pub.message<{ startNs: string }>('startNs');
  const result = endToEnd(await sub.message<Result>('read'), BigInt(startNs));
  await pub.message('published');
  pub.send('close');
  await Promise.all([pub.exited, sub.exited]);
  return result;
}

async function channelPingPong(dir: string, wait: 'spin' | 'parked', count: number): Promise<Result> {
  const name = `pp-${wait}`;
  const pong = new Proc(SHM_CHILD, ['pong', name, dir, wait]);
  const ping = new Proc(SHM_CHILD, ['ping', name, dir, wait, String(count)]);
  const result = await ping.message<Result>('read');
  await pong.exited;
  return result;
}

async function journalRun(dir: string, size: number, count: number, wait: string): Promise<Result> {
  const path = join(dir, `j-${size}-${wait}`);
  const capacity = Math.ceil((((size + 15) & ~7) * (count + 16)) / 8) * 8 + 64;
  const writer = new Proc(JOURNAL_CHILD, ['jw', path, String(size), String(count), '0', String(capacity)]);
  await writer.message('created');
  const reader = new Proc(JOURNAL_CHILD, ['jr', path, wait, '0']);
  await reader.message('ready');
  writer.send('go');
  const { startNs } = await writer.message<{ startNs: string }>('startNs');
  const result = endToEnd(await reader.message<Result>('read'), BigInt(startNs));
  await writer.message('written');
  rmSync(path, { force: true });
  return result;
}

async function journalPingPong(dir: string, count: number): Promise<Result> {
  const sub = mkdtempSync(join(dir, 'jpp-'));
  const pong = new Proc(JOURNAL_CHILD, ['jpong', sub, 'spin']);
  const ping = new Proc(JOURNAL_CHILD, ['jping', sub, 'spin', String(count)]);
  const result = await ping.message<Result>('read');
  await pong.exited;
  rmSync(sub, { recursive: true, force: true });
  return result;
}

async function socketRun(dir: string, size: number, count: number, batched: boolean): Promise<Result> {
  const path = join(dir, `s-${size}-${batched}.sock`);
  const reader = new Proc(JOURNAL_CHILD, ['sr', path, String(count), '0']);
  await reader.message('ready');
  const writer = new Proc(JOURNAL_CHILD, ['sw', path, String(size), String(count), batched ? '1' : '0', '0']);
  const { startNs } = await writer.message<{ startNs: string }>('startNs');
  const result = endToEnd(await reader.message<Result>('read'), BigInt(startNs));
  await writer.exited;
  return result;
}

const SEND_SPIN = 'shm pub/sub send(), inlineMaxBytes default (64), subscriber spinning';
const SEND_ADAPTIVE =
  'shm pub/sub send(), inlineMaxBytes default (64), subscriber adaptive (parks on the doorbell)';
const BLOCKS_SPIN = 'shm pub/sub send() via blocks (inlineMaxBytes 0), subscriber spinning';
const BLOCKS_ADAPTIVE = 'shm pub/sub send() via blocks (inlineMaxBytes 0), subscriber adaptive';
const LOAN_SPIN = 'shm pub/sub loan() (written in place), subscriber spinning';
const LOAN_ADAPTIVE = 'shm pub/sub loan() (written in place), subscriber adaptive';
const CHANNEL = 'shm ShmChannel ping-pong';
const JOURNAL = 'shm journal, reader spinning (read in place)';
const POST = 'worker_threads postMessage(Buffer) (threads)';
const IPC = 'child_process IPC process.send (json)';
const SOCK = 'Unix socket, one write() per message';
const BATCHED = 'Unix socket, 64 KiB batched writes';

export default async function shm(args: string[]): Promise<void> {
  const scale = Number(args[0] ?? 1);
  const n = (count: number): number => Math.max(200, Math.round(count * scale));
  const { dir, sockDir, cleanUp } = benchDirs();
  const columns = ['64 B msgs/s', '1 KiB msgs/s', '1 KiB MB/s', '1 MiB GB/s', 'RTT p50 µs', 'RTT p99 µs'];
  const rows: Row[] = [];
  const table = new Map<string, Row>();
  const row = (name: string): Row => {
    let r = table.get(name);
    if (r === undefined) {
      r = { transport: name };
      for (const c of columns) r[c] = '—';
      table.set(name, r);
      rows.push(r);
    }
    return r;
  };
  for (const name of [
    SEND_SPIN,
    SEND_ADAPTIVE,
    BLOCKS_SPIN,
    BLOCKS_ADAPTIVE,
    LOAN_SPIN,
    LOAN_ADAPTIVE,
    `${CHANNEL}, spinning`,
    `${CHANNEL}, parked on the doorbell`,
    JOURNAL,
    POST,
    IPC,
    SOCK,
    BATCHED,
  ]) {
    row(name);
  }
  const results: Record<string, Result> = {};
  const put = (name: string, size: number, r: Result): void => {
    results[`${name}/${size}`] = r;
    if (size === 64) row(name)['64 B msgs/s'] = Math.round(rate(r));
    else if (size === 1024) {
      row(name)['1 KiB msgs/s'] = Math.round(rate(r));
      row(name)['1 KiB MB/s'] = Math.round(mbps(r));
    } else row(name)['1 MiB GB/s'] = Number((mbps(r) / 1000).toFixed(2));
  };
  const rtt = (name: string, r: Result): void => {
    row(name)['RTT p50 µs'] = Number((r.p50 ?? 0).toFixed(1));
    row(name)['RTT p99 µs'] = Number((r.p99 ?? 0).toFixed(1));
  };
  const MiB = 1 << 20;
  const phases: [string, () => Promise<void>][] = [
    ['send 64 spin', async () => put(SEND_SPIN, 64, await pubSubRun(dir, 64, n(2_000_000), 'send', 'spin'))],
    [
      'send 64 adaptive',
      async () => put(SEND_ADAPTIVE, 64, await pubSubRun(dir, 64, n(2_000_000), 'send', 'adaptive')),
    ],
    [
      'blocks 64 spin',
      async () => put(BLOCKS_SPIN, 64, await pubSubRun(dir, 64, n(2_000_000), 'send', 'spin', 0)),
    ],
    [
      'blocks 64 adaptive',
      async () => put(BLOCKS_ADAPTIVE, 64, await pubSubRun(dir, 64, n(2_000_000), 'send', 'adaptive', 0)),
    ],
    [
      'send 1K spin',
      async () => put(SEND_SPIN, 1024, await pubSubRun(dir, 1024, n(1_000_000), 'send', 'spin')),
    ],
    ['send 1M spin', async () => put(SEND_SPIN, MiB, await pubSubRun(dir, MiB, n(2_000), 'send', 'spin'))],
    [
      'send 1K adaptive',
      async () => put(SEND_ADAPTIVE, 1024, await pubSubRun(dir, 1024, n(1_000_000), 'send', 'adaptive')),
    ],
    [
      'loan 1K spin',
      async () => put(LOAN_SPIN, 1024, await pubSubRun(dir, 1024, n(1_000_000), 'loan', 'spin')),
    ],
    ['loan 1M spin', async () => put(LOAN_SPIN, MiB, await pubSubRun(dir, MiB, n(20_000), 'loan', 'spin'))],
    [
      'loan 1K adaptive',
      async () => put(LOAN_ADAPTIVE, 1024, await pubSubRun(dir, 1024, n(1_000_000), 'loan', 'adaptive')),
    ],
    [
      'loan 1M adaptive',
      async () => put(LOAN_ADAPTIVE, MiB, await pubSubRun(dir, MiB, n(20_000), 'loan', 'adaptive')),
    ],
    ['channel spin', async () => rtt(`${CHANNEL}, spinning`, await channelPingPong(dir, 'spin', n(20_000)))],
    [
      'channel parked',
      async () => rtt(`${CHANNEL}, parked on the doorbell`, await channelPingPong(dir, 'parked', n(5_000))),
    ],
    ['journal 64', async () => put(JOURNAL, 64, await journalRun(dir, 64, n(3_000_000), 'spin'))],
    ['journal 1K', async () => put(JOURNAL, 1024, await journalRun(dir, 1024, n(1_000_000), 'spin'))],
    ['journal rtt', async () => rtt(JOURNAL, await journalPingPong(dir, n(20_000)))],
    ['post 64', async () => put(POST, 64, await postMessageRun(64, n(300_000)))],
    ['post 1K', async () => put(POST, 1024, await postMessageRun(1024, n(200_000)))],
    ['ipc 64', async () => put(IPC, 64, await ipcRun(64, n(100_000)))],
    ['ipc 1K', async () => put(IPC, 1024, await ipcRun(1024, n(50_000)))],
    ['sock 64', async () => put(SOCK, 64, await socketRun(sockDir, 64, n(200_000), false))],
    ['sock 1K', async () => put(SOCK, 1024, await socketRun(sockDir, 1024, n(100_000), false))],
    ['sock rtt', async () => rtt(SOCK, await socketPingPong(sockDir, n(5_000)))],
    ['batched 64', async () => put(BATCHED, 64, await socketRun(sockDir, 64, n(2_000_000), true))],
    ['batched 1K', async () => put(BATCHED, 1024, await socketRun(sockDir, 1024, n(500_000), true))],
  ];
  const only = args[1]?.split(',').map((p) => p.trim());
  const chosen = only === undefined ? phases : phases.filter(([name]) => only.includes(name));
  const bar = progress('shm', chosen.length);
  try {
    for (const [, phase] of chosen) {
      await phase();
      bar.tick();
    }
  } finally {
    bar.stop();
    cleanUp();
  }
  const ratio = (a: string, b: string, size: number): string => {
    const x = results[`${a}/${size}`];
    const y = results[`${b}/${size}`];
    return x !== undefined && y !== undefined ? (rate(x) / rate(y)).toFixed(1) : '?';
  };
  const spinP50 = table.get(`${CHANNEL}, spinning`)?.['RTT p50 µs'];
  const parkedP50 = table.get(`${CHANNEL}, parked on the doorbell`)?.['RTT p50 µs'];
  const sockP50 = table.get(SOCK)?.['RTT p50 µs'];
  report(
    'shm',
    'shm pub/sub and ShmChannel vs the journal and Node same-host transports (two processes; postMessage: two threads)',
    rows,
    [
      `64 B: pub/sub send/postMessage(Buffer) = default ${ratio(SEND_SPIN, POST, 64)}x spinning, ${ratio(SEND_ADAPTIVE, POST, 64)}x adaptive; ` +
        `via blocks ${ratio(BLOCKS_SPIN, POST, 64)}x spinning, ${ratio(BLOCKS_ADAPTIVE, POST, 64)}x adaptive (target >= 10x); ` +
        `pub/sub send/batched Unix socket = default ${ratio(SEND_SPIN, BATCHED, 64)}x spinning, ${ratio(SEND_ADAPTIVE, BATCHED, 64)}x adaptive; ` +
        `via blocks ${ratio(BLOCKS_SPIN, BATCHED, 64)}x spinning, ${ratio(BLOCKS_ADAPTIVE, BATCHED, 64)}x adaptive (target >= 1x); ` +
        `journal/batched = ${ratio(JOURNAL, BATCHED, 64)}x`,
      `1 KiB read in place, bytes/s over the batched Unix socket's: loan ${ratio(LOAN_SPIN, BATCHED, 1024)}x spinning, ` +
        `${ratio(LOAN_ADAPTIVE, BATCHED, 1024)}x adaptive; send ${ratio(SEND_SPIN, BATCHED, 1024)}x spinning, ` +
        `${ratio(SEND_ADAPTIVE, BATCHED, 1024)}x adaptive (target >= 3x)`,
      `RTT p50: spinning ${String(spinP50)} µs (target < 1 µs); parked ${String(parkedP50)} µs vs Unix socket ${String(sockP50)} µs (target: below the socket)`,
      'Pub/sub runs use the lossless policy (slowSubscriber "block"; the publisher retries when the ring is full), blocks sized ' +
        'to the message (64 B: ring 65536, 131072 blocks; 1 KiB: ring 4096, 4096 blocks; 1 MiB: 8 blocks, ring 4). ' +
        'inlineMaxBytes default (64; the ring geometry and the lossless policy are set by the benchmark, as above): a 64 B ' +
        'message travels in its ring entry (no block, no reference ' +
        'count; the subscriber copies it into a slot of its own) and 1 KiB and 1 MiB ones in blocks, read in place. Via blocks: ' +
        'inlineMaxBytes 0, every message in a block, read in place. The subscriber touches the first and last byte of each ' +
        'message, read with drain() (batches, no Sample per message); after an empty poll it waits 10 µs (busy; 0 µs ' +
        'with the 1 MiB ring of 4) and polls again, then waits for one message (recvSync spin, or recv adaptive). ' +
        'The publisher sends with trySend() or loans with tryLoan() (false / null when the ring is full: it sleeps 20 µs). ' +
        'loan(): the publisher writes in place (stamps two bytes), no copy. ' +
        'RTT: ping-pong of one 64 B message through an ShmChannel (two regions; parked: spinMicros 0, so every message wakes a ' +
        'parked reader through its doorbell FIFO). "—": not measured.',
    ],
  );
}
