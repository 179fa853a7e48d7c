import { statSync } from 'node:fs';
import { ShmError, ShmNotReadyError, ShmSystemError } from './errors.js';
import {
  FIXED_HEADER_BYTES,
  I64_HEARTBEAT,
  I_PARKED,
  I_STATE,
  I_WRITER_PID,
  KIND_DATA,
  KIND_END,
  KIND_HEARTBEAT,
  STATE_CLOSED,
  decodeRecord,
  readHeader,
  type JournalHeader,
} from './journal-format.js';
import { slotIndex } from './journal-slots.js';
import { openMapping, unmapFile } from './native.js';

/** A reader slot in use. */
export interface JournalReaderSlot {
  readonly slot: number;
  readonly pid: number;
  readonly parked: boolean;
}

/** What `inspectJournal` finds: the header, the writer's state and a walk of every record. */
export interface JournalInspection {
  readonly path: string;
  readonly fileBytes: number;
  readonly header: JournalHeader;
  /** `open`: a writer has it (or died without closing); `closed`: the end mark is written. */
  readonly state: 'open' | 'closed';
  readonly writerPid: number;
  readonly lastHeartbeatMs: number;
  /** Data records, heartbeats, and payload bytes of the data records. */
  readonly records: number;
  readonly heartbeats: number;
  readonly payloadBytes: number;
  /** Data position after the last committed record (where the writer writes next). */
  readonly position: number;
  /** True when the walk met the end-of-channel mark. */
  readonly ended: boolean;
  /** Data area bytes still free (the 8 bytes kept for the end mark excluded). */
  readonly freeBytes: number;
  /** Set when the walk stopped at a damaged record: what was wrong. */
  readonly damage?: string;
  readonly parkedReaders: number;
  readonly readers: readonly JournalReaderSlot[];
}

/**
 * Reads a journal's header and walks every committed record without consuming anything:
 * for tools (`switchyard journal inspect`). Throws the same typed errors as `openJournal`.
 */
export function inspectJournal(path: string): JournalInspection {
  let fileBytes: number;
  try {
    fileBytes = statSync(path).size;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    throw new ShmSystemError(`stat ${path} failed: ${code}`, code, 'stat', { cause: error });
  }
  if (fileBytes === 0) throw new ShmNotReadyError(`${path} is empty`);
  const mapping = openMapping(path);
  try {
    const header = readHeader(mapping.bytes, path);
    const i32 = new Int32Array(mapping.buffer);
    const i64 = new BigInt64Array(mapping.buffer, 0, FIXED_HEADER_BYTES >> 3);
    let position = 0;
    let records = 0;
    let heartbeats = 0;
    let payloadBytes = 0;
    let ended = false;
    let damage: string | undefined;
    try {
      for (;;) {
        const record = decodeRecord(
          i32,
          header.headerBytes,
          position,
          header.capacity,
          header.maxMessageLength,
        );
        if (record === null) break;
        if (record.kind === KIND_END) {
          ended = true;
          break;
        }
        if (record.kind === KIND_DATA) {
          records++;
          payloadBytes += record.length;
        } else if (record.kind === KIND_HEARTBEAT) heartbeats++;
        position += record.used;
      }
    } catch (error) {
      if (!(error instanceof ShmError)) throw error;
      damage = error.message;
    }
    const readers: JournalReaderSlot[] = [];
    for (let slot = 0; slot < header.readerSlots; slot++) {
      const s = slotIndex(slot);
      if (Atomics.load(i32, s) !== 0) {
        readers.push({ slot, pid: Atomics.load(i32, s + 2), parked: Atomics.load(i32, s + 1) === 1 });
      }
    }
    const result: JournalInspection = {
      path,
      fileBytes,
      header,
      state: Atomics.load(i32, I_STATE) === STATE_CLOSED ? 'closed' : 'open',
      writerPid: Atomics.load(i32, I_WRITER_PID),
      lastHeartbeatMs: Number(Atomics.load(i64, I64_HEARTBEAT)),
      records,
      heartbeats,
      payloadBytes,
      position,
      ended,
      freeBytes: ended ? 0 : Math.max(0, header.capacity - 8 - position),
      parkedReaders: Atomics.load(i32, I_PARKED),
      readers,
      ...(damage === undefined ? {} : { damage }),
    };
    return result;
  } finally {
    unmapFile(mapping);
  }
}
