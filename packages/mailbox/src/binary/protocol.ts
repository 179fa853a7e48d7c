/**
 * The mailbox binary API on `@switchyard/stream`: every call is a stream request on the one
 * connection a client keeps to the server. The request body is JSON `{ op, … }`; the token
 * travels in the `authorization` tag (`Bearer <token>`, the same tokens as HTTP). A call
 * answers with one source whose single frame is the JSON result; `subscribe` answers with one
 * source whose header names the subscription and whose frames are the leased messages, one
 * JSON message per frame. Failures are stream remote errors whose `remoteCode` is the
 * `MAILBOX_ERR_*` code; per-item failures of a batch travel inside the result.
 *
 * Messages travel as `wireMessage` builds them (protocol 2): every time is a number of
 * milliseconds since the epoch (null when unset), not an ISO string — a fixed-shape object of
 * strings and numbers is the cheapest thing JSON.stringify and JSON.parse do, and a message
 * carries five times. `fromWire` turns one back into a `Message`.
 */
import { MAILBOX_ERROR_CODES, MailboxError, MailboxInvalidArgumentError } from '../errors.js';
import type { MailboxErrorCode } from '../errors.js';
import type { Attempt, Body, Message, MessageHeader } from '../message.js';

export const BINARY_PROTOCOL_VERSION = 2;

/** Default TCP port of the binary API (`switchyard serve`). */
export const DEFAULT_BINARY_PORT = 7421;

export type BinaryOp = 'send' | 'ack' | 'extend' | 'fetch' | 'subscribe';

export interface WireSend {
  readonly sender: string;
  readonly receiver: string;
  readonly body: unknown;
  readonly delayMs?: number;
  /** Milliseconds since the epoch. */
  readonly clientTime?: number;
}

export interface WireAck {
  readonly mid: string;
  readonly lid: string;
  readonly status: 1 | 2;
}

export interface WireExtend {
  readonly mid: string;
  readonly lid: string;
  readonly leaseMs: number;
}

/** One item's outcome in a batch answer. */
export type WireItemResult<T> = { readonly ok: T } | { readonly error: { code: string; message: string } };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(bytes)) as unknown;
  } catch (error) {
    throw new MailboxInvalidArgumentError(`${what} is not valid JSON`, { cause: error });
  }
}

/** The item error of a batch answer. */
export function itemError(error: unknown): { code: string; message: string } {
  if (error instanceof MailboxError) return { code: error.code, message: error.message };
  return { code: 'MAILBOX_ERR_STORE', message: error instanceof Error ? error.message : String(error) };
}

/** A MailboxError from a code and message received from the server. */
export function mailboxErrorOf(code: string, message: string, cause?: unknown): MailboxError {
  const c: MailboxErrorCode = Object.hasOwn(MAILBOX_ERROR_CODES, code)
    ? (code as MailboxErrorCode)
    : 'MAILBOX_ERR_STORE';
  return new MailboxError(c, message, cause === undefined ? undefined : { cause });
}

const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());
const date = (v: unknown): Date | null => (typeof v === 'number' ? new Date(v) : null);

/**
 * A message (or a header, without `body`) as the binary API sends it: times as epoch ms.
 * `withBody: false` leaves the body out (a send's answer: the sender has it).
 */
export function wireMessage(
  m: MessageHeader & { readonly body?: Body },
  withBody = true,
): Record<string, unknown> {
  const w: Record<string, unknown> = {
    mid: m.mid,
    sender: m.sender,
    receiver: m.receiver,
    mailbox: m.mailbox,
    clientTime: m.clientTime.getTime(),
    receivedAt: m.receivedAt.getTime(),
    sendWhen: m.sendWhen.getTime(),
    delayMs: m.delayMs,
    state: m.state,
    status: m.status,
    deliveryCount: m.deliveryCount,
    lid: m.lid,
    fence: m.fence,
    leasedUntil: ms(m.leasedUntil),
    fetchTime: ms(m.fetchTime),
    dueAt: ms(m.dueAt),
    blobKey: m.blobKey,
    bodyBytes: m.bodyBytes,
    body: withBody ? m.body : undefined,
  };
  if (m.attempts !== undefined)
    w.attempts = m.attempts.map((a) => ({
      ...a,
      fetchedAt: a.fetchedAt.getTime(),
      endedAt: a.endedAt.getTime(),
    }));
  return w;
}

/** The JSON bytes of `wireMessage(m)` (one pushed frame). */
export function encodeMessage(m: Message): Uint8Array {
  return encoder.encode(JSON.stringify(wireMessage(m)));
}

/** A `Message` back from `wireMessage`'s shape (times as Dates again). */
export function fromWire<T extends MessageHeader = Message>(raw: unknown): T {
  if (typeof raw !== 'object' || raw === null)
    throw new MailboxInvalidArgumentError('a message from the server is not an object');
  const w = raw as Record<string, unknown>;
  const m: Record<string, unknown> = {
    ...w,
    clientTime: date(w.clientTime),
    receivedAt: date(w.receivedAt),
    sendWhen: date(w.sendWhen),
    leasedUntil: date(w.leasedUntil),
    fetchTime: date(w.fetchTime),
    dueAt: date(w.dueAt),
  };
  if (Array.isArray(w.attempts))
    m.attempts = (w.attempts as Record<string, unknown>[]).map((a): Attempt => ({
      ...(a as unknown as Attempt),
      fetchedAt: date(a.fetchedAt)!,
      endedAt: date(a.endedAt)!,
    }));
  return m as unknown as T;
}
