/**
 * The mailbox binary API on `@switchyard/stream`: every call is a stream request on the one
 * connection a client keeps to the server. The request body is JSON `{ op, … }`; the token
 * travels in the `authorization` tag (`Bearer <token>`, the same tokens as HTTP). A call
 * answers with one source whose single frame is the JSON result; `subscribe` answers with one
 * source whose header names the subscription and whose frames are the leased messages, one
 * JSON message per frame. Failures are stream remote errors whose `remoteCode` is the
 * `MAILBOX_ERR_*` code; per-item failures of a batch travel inside the result.
 *
 * Messages travel as `wireMessage` builds them (protocol 3): a positional array — `WIRE_FIELDS`
 * names the slots — whose times are numbers of milliseconds since the epoch (null when unset).
 * An array of strings and numbers is the cheapest thing JSON.stringify and JSON.parse do: no
 * key is written or read, and a pushed message carries nineteen fields. (Protocol 1 sent
 * objects with ISO strings, protocol 2 objects with epoch ms.) `fromWire` turns one back into
 * a `Message`.
 */
import { MAILBOX_ERROR_CODES, MailboxError, MailboxInvalidArgumentError } from '../errors.js';
import type { MailboxErrorCode } from '../errors.js';
import type { Attempt, Body, Message, MessageHeader } from '../message.js';

export const BINARY_PROTOCOL_VERSION = 3;

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

const decoder = new TextDecoder();

// Buffer.from, not TextEncoder: for the strings of this protocol (a few hundred bytes to a few
// dozen KiB) it is 2–3× faster on Node 20 (a pooled slab, no new ArrayBuffer per call).
export function encodeJson(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8');
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

/** The slots of a message on the wire, in order (`sendWhen` is receivedAt + delayMs). */
export const WIRE_FIELDS = [
  'mid',
  'sender',
  'receiver',
  'mailbox',
  'clientTime',
  'receivedAt',
  'delayMs',
  'state',
  'status',
  'deliveryCount',
  'lid',
  'fence',
  'leasedUntil',
  'fetchTime',
  'dueAt',
  'blobKey',
  'bodyBytes',
  'body',
  'attempts',
] as const;

/**
 * A message (or a header, without `body`) as the binary API sends it: the `WIRE_FIELDS` slots,
 * times as epoch ms; `attempts` only when the message has them. `withBody: false` leaves the
 * body out (null: a send's answer, whose sender has it).
 */
export function wireMessage(m: MessageHeader & { readonly body?: Body }, withBody = true): unknown[] {
  const w: unknown[] = [
    m.mid,
    m.sender,
    m.receiver,
    m.mailbox,
    m.clientTime.getTime(),
    m.receivedAt.getTime(),
    m.delayMs,
    m.state,
    m.status,
    m.deliveryCount,
    m.lid,
    m.fence,
    ms(m.leasedUntil),
    ms(m.fetchTime),
    ms(m.dueAt),
    m.blobKey,
    m.bodyBytes,
    withBody && m.body !== undefined ? m.body : null,
  ];
  if (m.attempts !== undefined)
    w.push(
      m.attempts.map((a) => ({
        ...a,
        fetchedAt: a.fetchedAt.getTime(),
        endedAt: a.endedAt.getTime(),
      })),
    );
  return w;
}

const msJson = (d: Date | null): string => (d === null ? 'null' : String(d.getTime()));

/**
 * The JSON bytes of `wireMessage(m)` (one pushed frame), written out by hand: every string slot
 * but the body is JSON-safe as it is — mid, lid and blobKey are hex, sender, receiver and
 * mailbox pass the mailbox naming rule (letters, digits and `@ . _ - : /`), state is one of
 * three words — so only the body goes through JSON.stringify. A message with `attempts`
 * (only `Broker.get` has them) takes the generic path.
 */
export function encodeMessage(m: Message): Uint8Array {
  if (m.attempts !== undefined) return Buffer.from(JSON.stringify(wireMessage(m)), 'utf8');
  const json =
    '["' +
    m.mid +
    '","' +
    m.sender +
    '","' +
    m.receiver +
    '","' +
    m.mailbox +
    '",' +
    m.clientTime.getTime() +
    ',' +
    m.receivedAt.getTime() +
    ',' +
    m.delayMs +
    ',"' +
    m.state +
    '",' +
    m.status +
    ',' +
    m.deliveryCount +
    ',' +
    (m.lid === null ? 'null' : '"' + m.lid + '"') +
    ',' +
    (m.fence === null ? 'null' : String(m.fence)) +
    ',' +
    msJson(m.leasedUntil) +
    ',' +
    msJson(m.fetchTime) +
    ',' +
    msJson(m.dueAt) +
    ',"' +
    m.blobKey +
    '",' +
    m.bodyBytes +
    ',' +
    JSON.stringify(m.body) +
    ']';
  return Buffer.from(json, 'utf8');
}

/**
 * A `Message` back from `wireMessage`'s array (times as Dates again; `body` absent when null,
 * or `body` when given: a send's answer, whose sender has it).
 */
export function fromWire<T extends MessageHeader = Message>(raw: unknown, body?: Body): T {
  if (!Array.isArray(raw) || raw.length < 18 || typeof raw[0] !== 'string')
    throw new MailboxInvalidArgumentError('a message from the server is not a protocol 3 message');
  const w = raw as unknown[];
  const receivedAt = date(w[5])!;
  const m: Record<string, unknown> = {
    mid: w[0],
    sender: w[1],
    receiver: w[2],
    mailbox: w[3],
    clientTime: date(w[4]),
    receivedAt,
    sendWhen: new Date(receivedAt.getTime() + (w[6] as number)),
    delayMs: w[6],
    state: w[7],
    status: w[8],
    deliveryCount: w[9],
    lid: w[10],
    fence: w[11],
    leasedUntil: date(w[12]),
    fetchTime: date(w[13]),
    dueAt: date(w[14]),
    blobKey: w[15],
    bodyBytes: w[16],
  };
  if (w[17] !== null) m.body = w[17];
  else if (body !== undefined) m.body = body;
  if (Array.isArray(w[18]))
    m.attempts = (w[18] as Record<string, unknown>[]).map((a): Attempt => ({
      ...(a as unknown as Attempt),
      fetchedAt: date(a.fetchedAt)!,
      endedAt: date(a.endedAt)!,
    }));
  return m as unknown as T;
}
