/**
 * pandora's HTTP encodings: form-encoded values in and out (Go's `url.Values`), RFC 3339
 * times, `error=` bodies, and the fields its `Message.WriteTo` adds to a fetched body.
 */
import { MessageStatus } from '../message.js';
import type { Body, Message, MessageHeader } from '../message.js';

/** Form values as parsed (`querystring.parse`): a string, or an array for repeated keys. */
export type FormValues = Record<string, string | string[] | undefined>;

/** Go's `Values.Get`: the first value, or ''. */
export function first(v: FormValues, key: string): string {
  if (!Object.hasOwn(v, key)) return '';
  const x = v[key];
  if (Array.isArray(x)) return x[0] ?? '';
  return x ?? '';
}

/** Go's `Values.Encode`: keys sorted, each value in order. */
export function encodeForm(values: Record<string, string | readonly string[]>): string {
  const p = new URLSearchParams();
  for (const key of Object.keys(values).sort()) {
    const v = values[key]!;
    if (typeof v === 'string') p.append(key, v);
    else for (const x of v) p.append(key, x);
  }
  return p.toString();
}

export function errorBody(message: string): string {
  return new URLSearchParams({ error: message }).toString();
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 time (Go's `time.RFC3339Nano` layout accepts any fraction); undefined if malformed. */
export function parseRfc3339(s: string): Date | undefined {
  if (!RFC3339_RE.test(s)) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

const STATUS_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [MessageStatus.Confirmed]: 'confirmed',
  [MessageStatus.Rejected]: 'rejected',
  [MessageStatus.Timeout]: 'timeout',
  [MessageStatus.NotDelivered]: 'notDelivered',
  [MessageStatus.Dead]: 'dead',
});

const iso = (d: Date | null): string => (d === null ? '0001-01-01T00:00:00Z' : d.toISOString());

/** The header fields pandora's `Message.WriteTo` sets, plus sender, receiver and clientTime. */
export function headerValues(m: MessageHeader): Record<string, string> {
  return {
    mid: m.mid,
    lid: m.lid ?? '',
    statusCode: String(m.status),
    status: STATUS_NAMES[m.status] ?? String(m.status),
    leasedUntil: iso(m.leasedUntil),
    receivedAt: iso(m.receivedAt),
    deliveryCount: String(m.deliveryCount),
    sendWhen: iso(m.sendWhen),
    validBody: 'true',
    sender: m.sender,
    receiver: m.receiver,
    clientTime: iso(m.clientTime),
  };
}

/** A fetched message as pandora answers it: the body's fields, then the header fields over them. */
export function messageValues(m: Message): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  const body: Body = m.body;
  for (const key of Object.keys(body)) out[key] = body[key]!;
  const raw = body.clientTime; // the client's own RFC 3339 text (nanoseconds kept), if it sent one
  Object.assign(out, headerValues(m));
  if (typeof raw === 'string') out.clientTime = raw;
  return out;
}
