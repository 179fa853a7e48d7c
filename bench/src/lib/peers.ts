// The peers the shm benchmarks (journal, shm) measure against: a child process driven over
// its stdout lines, and Node's own ways to move a message between two processes or threads
// (Unix socket ping-pong, child_process IPC, worker_threads postMessage). The peers run
// from benchmarks/journal.child.js and benchmarks/journal-worker.child.js.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

export const JOURNAL_CHILD = fileURLToPath(new URL('../benchmarks/journal.child.js', import.meta.url));
const WORKER = new URL('../benchmarks/journal-worker.child.js', import.meta.url);

export interface Result {
  read: number;
  bytes: number;
  /** From the writer's first write to the reader's last read (CLOCK_MONOTONIC in both). */
  elapsedNs: number;
  lastNs?: string;
  p50?: number;
  p99?: number;
}

/** A benchmark child: its JSON lines on stdout are kept, to be awaited by key. */
export class Proc {
  readonly child: ChildProcess;
  /**
   * Settles when the child has exited. Made at spawn: `once(child, 'exit')` taken later misses
   * an exit that already happened and waits for ever (seen: a ping-pong's echo side exits as
   * soon as the ping side closes, sometimes before the parent got to the await).
   */
  readonly exited: Promise<unknown>;
  readonly #messages: Record<string, unknown>[] = [];
  #wake: (() => void) | undefined;

  constructor(script: string, args: string[]) {
    this.child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.exited = once(this.child, 'exit');
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      this.#messages.push(JSON.parse(line) as Record<string, unknown>);
      this.#wake?.();
    });
  }

  send(line: string): void {
    this.child.stdin!.write(line + '\n');
  }

  async message<T>(key: string): Promise<T> {
    for (;;) {
      const found = this.#messages.find((m) => key in m);
      if (found !== undefined) return found as T;
      if (this.child.exitCode !== null) throw new Error(`benchmark child exited without "${key}"`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  }
}

/** Measures from the sender's first message, so a reader catching up on a backlog cannot flatter. */
export function endToEnd(result: Result, startNs: bigint): Result {
  return result.lastNs === undefined
    ? result
    : { ...result, elapsedNs: Number(BigInt(result.lastNs) - startNs) };
}

/**
 * A directory under /dev/shm for the regions and journals and one under the OS's temporary
 * directory for the sockets; `cleanUp` removes both, and runs at exit too (also on a crash:
 * what is under /dev/shm holds memory until removed).
 */
export function benchDirs(): { dir: string; sockDir: string; cleanUp: () => void } {
  const dir = mkdtempSync('/dev/shm/switchyard-bench-');
  const sockDir = mkdtempSync(join(tmpdir(), 'switchyard-bench-'));
  const cleanUp = (): void => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(sockDir, { recursive: true, force: true });
  };
  process.once('exit', cleanUp);
  return { dir, sockDir, cleanUp };
}

export const rate = (r: Result): number => (r.read * 1e9) / r.elapsedNs;
export const mbps = (r: Result): number => (r.bytes * 1e9) / r.elapsedNs / 1e6;

export async function socketPingPong(dir: string, count: number): Promise<Result> {
  const path = join(dir, 'pp.sock');
  const pong = new Proc(JOURNAL_CHILD, ['spong', path]);
  await pong.message('ready');
  const ping = new Proc(JOURNAL_CHILD, ['sping', path, String(count)]);
  const result = await ping.message<Result>('read');
  await pong.exited;
  return result;
}

export async function ipcRun(size: number, count: number): Promise<Result> {
  const child = fork(JOURNAL_CHILD, ['ipc', String(count)], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    serialization: 'json',
  });
  const exited = once(child, 'exit'); // taken now: the child may exit before the sends finish
  let result: Result | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    result = JSON.parse(line) as Result;
  });
  let acked = 0;
  child.on('message', (m: { ack?: number }) => {
    if (m.ack !== undefined) acked = m.ack;
  });
  await once(child, 'message');
  const payload = 'x'.repeat(size);
  const start = process.hrtime.bigint();
  // At most ~50 000 messages in flight: the channel has no flow control of its own.
  for (let i = 0; i < count; i++) {
    while (i - acked > 50_000) await new Promise((r) => setImmediate(r));
    child.send(payload);
  }
  await exited;
  if (result === undefined) throw new Error('no IPC result');
  return endToEnd(result, start);
}

export async function postMessageRun(size: number, count: number): Promise<Result> {
  const worker = new Worker(WORKER, { workerData: { count } });
  const exited = once(worker, 'exit'); // taken now: the thread may end before the posts finish
  let acked = 0;
  let result: Result | undefined;
  worker.on('message', (m: { ack?: number } & Partial<Result>) => {
    if (m.ack !== undefined) acked = m.ack;
    else result = m as Result;
  });
  const payload = Buffer.alloc(size, 7);
  // The clock starts once the thread runs (as the other peers' writers start once their
  // reader is listening): a thread still booting is not part of the transport's rate.
  await once(worker, 'online');
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    while (i - acked > 50_000) await new Promise((r) => setImmediate(r));
    worker.postMessage(payload);
  }
  await exited;
  if (result === undefined) throw new Error('no postMessage result');
  return endToEnd(result, start);
}
