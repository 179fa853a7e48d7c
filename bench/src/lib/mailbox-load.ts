// The mailbox broker workload shared by the mailbox-core (SQLite) and mailbox-pg (PostgreSQL)
// benchmarks: 256-byte bodies, every send confirmed, every message acknowledged individually,
// the same five phases in the same order against every system.
import { randomBytes } from 'node:crypto';

const BODY_CHARS = 250; // + "d=" and the field separator: a 256-byte encoded body

export function makeBodies(n: number): string[] {
  return Array.from({ length: n }, () => randomBytes(BODY_CHARS / 2).toString('hex'));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `worker` in `inFlight` concurrent loops for `ms`; returns completed operations per second. */
export async function concurrent(
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

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

export interface Queue {
  /** How many consumers to run: a batching consumer needs few, a one-at-a-time one many. */
  readonly consumers: number;
  send(body: string, sentAt: number): Promise<void>;
  /**
   * One consumer: until `stop()` says so, receives messages (waiting or polling up to `waitMs`
   * for each) and acks each one individually; reports each one's send-to-receive latency.
   */
  consume(stop: () => boolean, waitMs: number, onMessage: (latencyMs: number) => void): Promise<void>;
  close(): Promise<void>;
}

/** The phases in the order they run; each sends to a mailbox (queue) of its own name. */
export const PHASES = ['warmup', 'latency', 'send1', 'backlog', 'e2e'] as const;
export type Phase = (typeof PHASES)[number];

export interface PhaseOptions {
  readonly phaseMs: number;
  /** Switches the mailbox `q` sends to and receives from. */
  readonly setPhase: (phase: Phase) => void;
  /** Runs before each phase, so a phase does not pay for the writeback of the one before. */
  readonly settle: () => Promise<void>;
  /** Consumers in the latency phase. */
  readonly latencyConsumers: number;
  /** How long the latency phase waits for the last messages after the last send. */
  readonly latencyDrainMs: number;
  /** Called after each of the five measured phases. */
  readonly tick: () => void;
}

export interface PhaseResults {
  readonly send1: number;
  readonly send100: number;
  readonly drain: number;
  readonly e2e: number;
  /** Send-to-receipt latencies at a steady 1 000 msg/s, sorted. */
  readonly latencies: readonly number[];
}

/** Runs the warm-up and the five measured phases against `q`. */
export async function runPhases(q: Queue, o: PhaseOptions): Promise<PhaseResults> {
  const { phaseMs, setPhase, settle, tick } = o;
  const bodies = makeBodies(4096);
  const body = (i: number): string => bodies[i & 4095]!;
  // Warm-up: write enough that the WAL reached its checkpoint size once, as in a broker that
  // has been running (while the WAL file still grows, every fsync also commits its new size).
  setPhase('warmup');
  let warm = 0;
  await Promise.all(
    Array.from({ length: 100 }, async () => {
      while (warm < 3000) await q.send(body(warm++), performance.now());
    }),
  );
  await settle();
  // Latency first, on a fresh database, at a steady 1 000 msg/s.
  setPhase('latency');
  const latencies: number[] = [];
  let done = false;
  const consumersL = Array.from({ length: o.latencyConsumers }, () =>
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
  await sleep(o.latencyDrainMs);
  done = true;
  await Promise.all(consumersL);
  latencies.sort((a, b) => a - b);
  tick();

  setPhase('send1');
  await settle();
  const send1 = (await concurrent(1, phaseMs, (i) => q.send(body(i), performance.now()))).rate;
  tick();
  setPhase('backlog');
  await settle();
  const backlog = await concurrent(100, phaseMs, (i) => q.send(body(i), performance.now()));
  tick();
  await settle();
  // Drain the backlog; the clock stops when it is empty (or the phase time is up).
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

  setPhase('e2e');
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

  return { send1, send100: backlog.rate, drain, e2e, latencies };
}

/** The latency column: p50 / p99 in ms. */
export function latencyCell(sorted: readonly number[]): string {
  return `${percentile(sorted, 50).toFixed(2)} / ${percentile(sorted, 99).toFixed(2)}`;
}
