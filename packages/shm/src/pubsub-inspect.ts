/**
 * Looking into pub/sub regions without disturbing them: what `switchyard shm ls` prints and
 * what decides whether a region left behind may be removed.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ShmError, ShmSystemError } from './errors.js';
import {
  FIXED_HEADER_BYTES,
  I64_HEARTBEAT,
  I_PARKED,
  I_STATE,
  I_WRITER_PID,
  SLOT_BYTES,
} from './journal-format.js';
import { processAlive } from './journal-slots.js';
import { openMapping, unmapFile } from './native.js';
import {
  CURSOR_HEAD_HI,
  CURSOR_HEAD_LO,
  CURSOR_TAIL_HI,
  CURSOR_TAIL_LO,
  LOAN_BIT,
  POSITION_BYTES,
  REGION_PREFIX,
  readRegionHeader,
  type RegionHeader,
  TABLE_WORDS,
} from './pubsub-format.js';

/** A subscriber slot in use. */
export interface RegionSubscriber {
  readonly slot: number;
  readonly pid: number;
  readonly alive: boolean;
  readonly parked: boolean;
  /** Low 32 bits of the sequence it reads next. */
  readonly next: number;
}

/** What `inspectRegion` finds. */
export interface RegionInspection {
  readonly name: string;
  readonly path: string;
  readonly header: RegionHeader;
  readonly subscriberSlots: number;
  readonly state: 'open' | 'closed';
  readonly publisherPid: number;
  readonly publisherAlive: boolean;
  /** Age of the publisher's heartbeat, ms. */
  readonly heartbeatAgeMs: number;
  /** True when the region can be removed: its publisher is gone, closed or stale. */
  readonly dead: boolean;
  readonly head: number;
  readonly tail: number;
  readonly parked: number;
  readonly subscribers: readonly RegionSubscriber[];
  readonly blocks: { readonly free: number; readonly loaned: number; readonly referenced: number };
}

/** Inspects the region file at `path` (validating its header). */
export function inspectRegionFile(path: string): RegionInspection {
  const mapping = openMapping(path);
  try {
    const header = readRegionHeader(mapping.bytes, path);
    const i32 = new Int32Array(mapping.buffer);
    const i64 = new BigInt64Array(mapping.buffer, 0, FIXED_HEADER_BYTES >> 3);
    const pid = Atomics.load(i32, I_WRITER_PID);
    const alive = processAlive(pid);
    const state = Atomics.load(i32, I_STATE) === 1 ? 'open' : 'closed';
    const heartbeatAgeMs = Date.now() - Number(Atomics.load(i64, I64_HEARTBEAT));
    const subscribers: RegionSubscriber[] = [];
    for (let slot = 0; slot < header.subscriberSlots; slot++) {
      const s = (FIXED_HEADER_BYTES >> 2) + slot * (SLOT_BYTES >> 2);
      if (Atomics.load(i32, s) !== 1) continue;
      const spid = Atomics.load(i32, s + 2);
      subscribers.push({
        slot,
        pid: spid,
        alive: processAlive(spid),
        parked: Atomics.load(i32, s + 1) === 1,
        next: Atomics.load(i32, (header.positionsOffset >> 2) + slot * (POSITION_BYTES >> 2)) >>> 0,
      });
    }
    const c = header.cursorsOffset >> 2;
    const tail =
      (Atomics.load(i32, c + CURSOR_TAIL_HI) >>> 0) * 2 ** 32 + (Atomics.load(i32, c + CURSOR_TAIL_LO) >>> 0);
    let free = 0;
    let loaned = 0;
    for (let b = 0; b < header.blockCount; b++) {
      const t = (header.tableOffset >> 2) + b * TABLE_WORDS;
      const st = Atomics.load(i32, t);
      if (st === 0) free++;
      else if ((st & LOAN_BIT) !== 0) loaned++;
      else if (st === 1) {
        // Only the ring's reference, and the message it holds already evicted (below the
        // tail): the publisher drops that reference when it takes the block again — free.
        const seq = (Atomics.load(i32, t + 2) >>> 0) * 2 ** 32 + (Atomics.load(i32, t + 1) >>> 0);
        if (seq < tail) free++;
      }
    }
    const base = path.slice(path.lastIndexOf('/') + 1);
    return Object.freeze({
      name: base.startsWith(REGION_PREFIX) ? base.slice(REGION_PREFIX.length) : base,
      path,
      header,
      subscriberSlots: header.subscriberSlots,
      state,
      publisherPid: pid,
      publisherAlive: alive,
      heartbeatAgeMs,
      dead: !alive || state === 'closed' || heartbeatAgeMs > header.staleTimeoutMs,
      head:
        (Atomics.load(i32, c + CURSOR_HEAD_HI) >>> 0) * 2 ** 32 +
        (Atomics.load(i32, c + CURSOR_HEAD_LO) >>> 0),
      tail,
      parked: Atomics.load(i32, I_PARKED),
      subscribers,
      blocks: { free, loaned, referenced: header.blockCount - free - loaned },
    });
  } finally {
    unmapFile(mapping);
  }
}

/** One entry of `listRegions`: the inspection, or why the file could not be read. */
export type RegionListing =
  | { readonly name: string; readonly path: string; readonly region: RegionInspection }
  | { readonly name: string; readonly path: string; readonly error: ShmError };

/** Every pub/sub region file in `dir` (default /dev/shm), inspected. */
export function listRegions(dir = '/dev/shm'): RegionListing[] {
  const base = resolve(dir);
  let names: string[];
  try {
    names = readdirSync(base);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    throw new ShmSystemError(`cannot list ${base}: ${code}`, code, 'scandir', { cause: error });
  }
  const out: RegionListing[] = [];
  for (const file of names.sort()) {
    if (!file.startsWith(REGION_PREFIX) || file.endsWith('.bell')) continue;
    const path = join(base, file);
    const name = file.slice(REGION_PREFIX.length);
    try {
      if (!statSync(path).isFile()) continue;
      out.push({ name, path, region: inspectRegionFile(path) });
    } catch (error) {
      if (!(error instanceof ShmError)) throw error;
      out.push({ name, path, error });
    }
  }
  return out;
}
