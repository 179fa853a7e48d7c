// @switchyard/wire against hand-written socket code, over loopback TCP and a Unix socket,
// client and server in separate processes (wire.child.ts):
//   - 64 B one-way flood decoded frame by frame into onFrame (Uint8Array views, and the
//     zero-allocation frames: 'window' mode), against a naive reader/writer
//     (a write() per header and per payload) and a hand-written coalesced length-prefix
//     reader/writer (64 KiB writes, boundaries parsed in place);
//   - 64 KiB frames against raw 64 KiB socket writes (bytes/s);
//   - echo round trip of 64 B frames, one in flight (p50/p99), against a raw socket echo;
//   - RSS of 10 000 idle connections (server process), against a plain net.Server.
//
//   npm run bench -- wire [phaseMs=1500] [runs=3]
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress, report, type Row } from '../lib/report.js';

const CHILD = fileURLToPath(new URL('./wire.child.js', import.meta.url));

interface Flow {
  frames: number;
  bytes: number;
  seconds: number;
  cpuSeconds: number;
}
interface Latency {
  n: number;
  p50: number;
  p99: number;
}
interface Idle {
  rssBefore: number;
  rssAfter: number;
  connections: number;
  leased: number;
}

function spawnChild(args: string[], gc = false): ChildProcess {
  return fork(CHILD, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: gc ? ['--expose-gc'] : [],
  });
}

function nextMessage<T>(child: ChildProcess, ms = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('a benchmark child did not answer')), ms);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as T);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`a benchmark child exited with ${code}`));
    });
  });
}

function stop(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** One phase: a receiver process, a sender process; returns what the receiver measured. */
async function flow(kind: string, listenAt: string, ms: number): Promise<Flow> {
  const server = spawnChild(['server', kind, listenAt]);
  try {
    const { address } = await nextMessage<{ address: string }>(server);
    const result = nextMessage<Flow>(server, ms + 30_000);
    const client = spawnChild(['client', kind, address, String(ms)]);
    try {
      return await result;
    } finally {
      stop(client);
    }
  } finally {
    stop(server);
  }
}

async function echo(kind: string, listenAt: string, ms: number): Promise<Latency> {
  const server = spawnChild(['server', kind, listenAt]);
  try {
    const { address } = await nextMessage<{ address: string }>(server);
    const client = spawnChild(['client', kind, address, String(ms)]);
    try {
      return (await nextMessage<{ samples: Latency }>(client, ms + 30_000)).samples;
    } finally {
      stop(client);
    }
  } finally {
    stop(server);
  }
}

async function idle(kind: string, count: number): Promise<Idle> {
  const server = spawnChild(['server', kind, 'tcp://127.0.0.1:0'], true);
  try {
    const { address } = await nextMessage<{ address: string }>(server);
    const client = spawnChild(['client', 'idle', address, '0', String(count)]);
    try {
      await nextMessage(client, 120_000);
      await new Promise((r) => setTimeout(r, 300));
      const result = nextMessage<Idle>(server);
      server.send('measure');
      return await result;
    } finally {
      stop(client);
    }
  } finally {
    stop(server);
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

const round = (v: number, digits = 2): number => Math.round(v * 10 ** digits) / 10 ** digits;

export default async function wire(args: string[]): Promise<void> {
  const ms = Number(args[0] ?? 1500);
  const runs = Number(args[1] ?? 3);
  const dir = mkdtempSync(join(tmpdir(), 'wire-bench-'));
  const loadBefore = loadavg()[0] ?? 0;
  const transports = [
    { name: 'TCP', at: () => 'tcp://127.0.0.1:0' },
    { name: 'Unix socket', at: () => `unix:${join(dir, `s-${Math.random().toString(36).slice(2)}.sock`)}` },
  ];
  // An optional third argument picks flood phases (e.g. engine64k,raw64k) and skips the rest.
  const only = args[2]?.split(',');
  const floods = ['engine', 'engine-window', 'coalesced', 'naive', 'engine64k', 'raw64k'].filter(
    (k) => only === undefined || only.includes(k),
  );
  const bar = progress('wire', transports.length * (floods.length * runs + 2) + 2);
  const results = new Map<string, Map<string, number | Latency>>();
  try {
    for (const t of transports) {
      const r = new Map<string, number | Latency>();
      results.set(t.name, r);
      // Runs interleave the kinds, so a burst of load from elsewhere on the machine hits the
      // engine and its peers alike; each figure is the median of its runs.
      const values = new Map<string, number[]>(floods.map((k) => [k, []]));
      const cpu = new Map<string, number[]>(floods.map((k) => [k, []]));
      for (let i = 0; i < runs; i++) {
        for (const kind of floods) {
          const f = await flow(kind, t.at(), ms);
          cpu.get(kind)?.push((f.cpuSeconds * 1e9) / f.frames);
          values
            .get(kind)
            ?.push(kind.endsWith('64k') ? f.bytes / f.seconds / 1e9 : f.frames / f.seconds / 1e6);
          bar.tick();
        }
      }
      for (const kind of floods) {
        r.set(kind, median(values.get(kind) ?? []));
        r.set(`${kind}:cpu`, median(cpu.get(kind) ?? []));
      }
      if (only !== undefined) {
        for (const kind of floods) console.log(`${t.name} ${kind}: ${round(r.get(kind) as number)}`);
        continue;
      }
      for (const kind of ['echo-engine', 'echo-raw']) {
        r.set(kind, await echo(kind, t.at(), ms));
        bar.tick();
      }
    }
    if (only !== undefined) return;
    const idleEngine = await idle('idle-engine', 10_000);
    bar.tick();
    const idleRaw = await idle('idle-raw', 10_000);
    bar.tick();
    bar.stop();

    const get = (t: string, k: string): number => results.get(t)?.get(k) as number;
    const lat = (t: string, k: string): Latency => results.get(t)?.get(k) as Latency;
    const row = (name: string, f: (t: string) => number | string): Row => {
      const out: Row = { case: name };
      for (const t of transports) {
        const v = f(t.name);
        out[t.name] = typeof v === 'number' ? round(v) : v;
      }
      return out;
    };
    const mib = (b: number): number => b / 1024 / 1024;
    const rows: Row[] = [
      row('64 B flood → onFrame, wire engine (M frames/s)', (t) => get(t, 'engine')),
      row('64 B flood → onFrame, wire engine, frames: window (M frames/s)', (t) => get(t, 'engine-window')),
      row('64 B flood, hand-written coalesced reader/writer (M frames/s)', (t) => get(t, 'coalesced')),
      row('64 B flood, naive write() per header and payload (M frames/s)', (t) => get(t, 'naive')),
      row('receiver CPU per 64 B frame: engine views · window · hand-written (ns)', (t) =>
        ['engine', 'engine-window', 'coalesced'].map((k) => Math.round(get(t, `${k}:cpu`))).join(' · '),
      ),
      row('wire engine / hand-written coalesced (views · window)', (t) => {
        const pct = (k: string): number => Math.round((100 * get(t, k)) / get(t, 'coalesced'));
        return `${pct('engine')} % · ${pct('engine-window')} %`;
      }),
      row('64 KiB frames, wire engine (GB/s)', (t) => get(t, 'engine64k')),
      row('64 KiB raw socket writes (GB/s)', (t) => get(t, 'raw64k')),
      row(
        'wire engine / raw bytes',
        (t) => `${Math.round((100 * get(t, 'engine64k')) / get(t, 'raw64k'))} %`,
      ),
      row('echo 64 B, one in flight, wire engine p50 / p99 (µs)', (t) => {
        const l = lat(t, 'echo-engine');
        return `${round(l.p50, 1)} / ${round(l.p99, 1)}`;
      }),
      row('echo 64 B, one in flight, raw socket p50 / p99 (µs)', (t) => {
        const l = lat(t, 'echo-raw');
        return `${round(l.p50, 1)} / ${round(l.p99, 1)}`;
      }),
      row('10 000 idle connections, wire engine: server RSS growth (MiB)', (t) =>
        t === 'TCP' ? round(mib(idleEngine.rssAfter - idleEngine.rssBefore), 1) : '—',
      ),
      row('10 000 idle connections, plain net.Server: server RSS growth (MiB)', (t) =>
        t === 'TCP' ? round(mib(idleRaw.rssAfter - idleRaw.rssBefore), 1) : '—',
      ),
    ];
    const tcp = (k: string): number => get('TCP', k);
    const notes = [
      `Medians of ${runs} runs of ${ms} ms per flood phase; separate client and server processes; ` +
        `load average ${round(loadBefore, 1)} before, ${round(loadavg()[0] ?? 0, 1)} after, on ${cpus().length} cores.`,
      `Idle: ${idleEngine.connections} connections, ${idleEngine.leased} pooled buffers leased (RSS ${round(mib(idleEngine.rssAfter), 1)} MiB total).`,
      `Targets: ≥ 5 M frames/s on TCP: ${tcp('engine') >= 5 ? 'met' : 'NOT met'} (${round(tcp('engine'))}); ` +
        `≥ 70 % of coalesced: ${tcp('engine') / tcp('coalesced') >= 0.7 ? 'met' : 'NOT met'} with Uint8Array views, ` +
        `${tcp('engine-window') / tcp('coalesced') >= 0.7 ? 'met' : 'NOT met'} with frames: 'window'; ` +
        `≥ 80 % of raw bytes/s at 64 KiB: ${tcp('engine64k') / tcp('raw64k') >= 0.8 ? 'met' : 'NOT met'}.`,
    ];
    report('wire', '@switchyard/wire vs hand-written socket code (loopback, 2 processes)', rows, notes);
  } finally {
    bar.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
