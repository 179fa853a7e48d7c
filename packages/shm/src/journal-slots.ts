/**
 * Reader slots: a reader that wants to park on a doorbell takes a slot in the journal header
 * and creates a FIFO named after the journal's real path and the slot. The writer rings that
 * FIFO when it finds the slot parked. A slot whose owner process is gone is taken back.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { FIXED_HEADER_BYTES, I_PARKED, SLOT_BYTES } from './journal-format.js';
import { closeRinger, openRinger, ring } from './native.js';

/** The FIFO of reader slot `slot` of the journal at `realPath`. */
export function bellPath(realPath: string, slot: number): string {
  return `${realPath}.r${slot}.bell`;
}

/** Whether process `pid` exists (EPERM: it exists, owned by someone else). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Int32 index of slot `slot`'s first word. */
export function slotIndex(slot: number): number {
  return (FIXED_HEADER_BYTES >> 2) + slot * (SLOT_BYTES >> 2);
}

/**
 * Takes a free slot (or one whose owner died) and returns its number, or -1 when every slot
 * belongs to a live reader. The caller then creates the FIFO and bumps the generation.
 */
export function claimSlot(i32: Int32Array, slots: number): number {
  for (let pass = 0; pass < 2; pass++) {
    for (let slot = 0; slot < slots; slot++) {
      const s = slotIndex(slot);
      if (pass === 0) {
        if (Atomics.compareExchange(i32, s, 0, 1) === 0) return own(i32, s, slot);
      } else if (Atomics.load(i32, s) === 1 && !processAlive(Atomics.load(i32, s + 2))) {
        // The owner died; take the slot over. A dead reader may have left it marked parked:
        // clear that, so the writer does not ring a FIFO nobody reads.
        const pid = Atomics.load(i32, s + 2);
        if (Atomics.compareExchange(i32, s + 2, pid, process.pid) === pid) {
          if (Atomics.compareExchange(i32, s + 1, 1, 0) === 1) Atomics.sub(i32, I_PARKED, 1);
          return own(i32, s, slot);
        }
      }
    }
  }
  return -1;
}

function own(i32: Int32Array, s: number, slot: number): number {
  Atomics.store(i32, s + 2, process.pid);
  return slot;
}

/** Releases a slot and removes its FIFO file. */
export function releaseSlot(i32: Int32Array, slot: number, fifoPath: string | undefined): void {
  const s = slotIndex(slot);
  if (Atomics.compareExchange(i32, s + 1, 1, 0) === 1) Atomics.sub(i32, I_PARKED, 1);
  Atomics.store(i32, s + 2, 0);
  Atomics.store(i32, s, 0);
  if (fifoPath !== undefined) removeFifo(fifoPath);
}

/** Removes `path` if it is a FIFO; anything else found there is left alone. */
function removeFifo(path: string): void {
  try {
    if (lstatSync(path).isFIFO()) unlinkSync(path);
  } catch {
    // Gone already, or not ours to remove.
  }
}

/**
 * Rings the doorbell of slot `slot` (whose FIFO generation is `generation`), keeping one
 * write-only fd per slot in `ringers` and reopening it when the slot's owner made a new FIFO
 * (`ringerGenerations` records which generation each fd belongs to). Shared by the journal
 * writer and the pub/sub publisher, whose slots work alike.
 */
export function ringSlot(
  ringers: Int32Array,
  ringerGenerations: Int32Array,
  realPath: string,
  slot: number,
  generation: number,
): void {
  let fd = ringers[slot] as number;
  if (fd < 0 || ringerGenerations[slot] !== generation) {
    if (fd >= 0) closeRinger(fd);
    fd = openRinger(bellPath(realPath, slot));
    ringers[slot] = fd;
    ringerGenerations[slot] = generation;
  }
  if (fd < 0 || ring(fd) < 0) {
    // Nobody holds the FIFO open (ENXIO/EPIPE/ENOENT): the reader died or left. A later
    // reader reclaims the slot; forget the fd.
    if (fd >= 0) closeRinger(fd);
    ringers[slot] = -1;
  }
}
