/**
 * The row shape the SQL stores (SQLite and PostgreSQL) share, and its mapping to a
 * `MessageHeader`. Internal: not exported from the package index. Both schemas keep the same
 * columns under the same names; only the type of the body column (`data`) differs, so each
 * store extends `MessageRow` with its own `data`.
 */
import type { MessageHeader, MessageState, MessageStatusValue } from './message.js';
import type { LeaseOutcome } from './store.js';

/** Indexed by the stored state number (0 queued, 1 leased, 2 confirmed). */
export const STATE_NAMES: readonly MessageState[] = ['queued', 'leased', 'confirmed'];

export interface MessageRow {
  seq: number;
  mid: string;
  mailbox: string;
  sender: string;
  receiver: string;
  client_time: number;
  received_at: number;
  delay_ms: number;
  state: 0 | 1 | 2;
  status: MessageStatusValue;
  due: number | null;
  delivery_count: number;
  lid: string | null;
  fence: number | null;
  leased_until: number | null;
  fetch_time: number | null;
  consumer: string | null;
  blob: string;
  body_bytes: number;
  history: string;
}

export function headerOfRow(r: MessageRow): MessageHeader {
  return {
    mid: r.mid,
    sender: r.sender,
    receiver: r.receiver,
    mailbox: r.mailbox,
    clientTime: new Date(r.client_time),
    receivedAt: new Date(r.received_at),
    sendWhen: new Date(r.received_at + r.delay_ms),
    delayMs: r.delay_ms,
    state: STATE_NAMES[r.state]!,
    status: r.status,
    deliveryCount: r.delivery_count,
    lid: r.lid,
    fence: r.fence,
    leasedUntil: r.leased_until === null ? null : new Date(r.leased_until),
    fetchTime: r.fetch_time === null ? null : new Date(r.fetch_time),
    dueAt: r.due === null ? null : new Date(r.due),
    blobKey: r.blob,
    bodyBytes: r.body_bytes,
  };
}

/** Whether `lid` still holds the lease of row `r` at `now` (the rule an ack or extend checks). */
export function checkRowLease(r: MessageRow | undefined, lid: string, now: number): LeaseOutcome {
  if (r === undefined) return 'not-found';
  if (r.state !== 1 || r.lid !== lid || r.leased_until === null || r.leased_until <= now)
    return 'lease-invalid';
  return 'ok';
}
