/**
 * The row shape the SQL stores (SQLite and PostgreSQL) share, and its mapping to a
 * `MessageHeader`. Internal: not exported from the package index. Both schemas keep the same
 * columns under the same names; only the type of the body column (`data`) differs, so each
 * store extends `MessageRow` with its own `data`.
 */
import type { Body, Message, MessageHeader, MessageState, MessageStatusValue } from './message.js';
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

/**
 * Where a claim's array row holds each stored field it reads (each SQL store reads a claim into
 * an array row, whose layout is its own: materialising rows as objects was most of a claim's cost).
 */
export interface ClaimColumns {
  readonly mid: number;
  readonly sender: number;
  readonly receiver: number;
  readonly mailbox: number;
  readonly clientTime: number;
  readonly receivedAt: number;
  readonly delayMs: number;
  readonly status: number;
  readonly blobKey: number;
  readonly bodyBytes: number;
}

/**
 * The message a claim leased, from the stored fields of its row (at `at`) and the lease it gave
 * (state, lease end and fetch time are the claim's own): the one shape both SQL stores hand out.
 */
export function leasedMessage(
  r: readonly unknown[],
  at: ClaimColumns,
  deliveryCount: number,
  lid: string,
  fence: number,
  leasedUntilMs: number,
  nowMs: number,
  body: Body,
): Message {
  const receivedAt = r[at.receivedAt] as number;
  const delayMs = r[at.delayMs] as number;
  return {
    mid: r[at.mid] as string,
    sender: r[at.sender] as string,
    receiver: r[at.receiver] as string,
    mailbox: r[at.mailbox] as string,
    clientTime: new Date(r[at.clientTime] as number),
    receivedAt: new Date(receivedAt),
    sendWhen: new Date(receivedAt + delayMs),
    delayMs,
    state: 'leased',
    status: r[at.status] as MessageStatusValue,
    deliveryCount,
    lid,
    fence,
    leasedUntil: new Date(leasedUntilMs),
    fetchTime: new Date(nowMs),
    dueAt: null,
    blobKey: r[at.blobKey] as string,
    bodyBytes: r[at.bodyBytes] as number,
    body,
  };
}
