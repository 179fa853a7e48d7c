/**
 * The message model (pandora's `Message`, with Switchyard's fixes): statuses, the body codec,
 * content-derived mids and the mailbox naming rule.
 */
import * as crypto from 'node:crypto';
import { createHash, randomBytes } from 'node:crypto';
import { MailboxInvalidArgumentError, MailboxInvalidMailboxError } from './errors.js';

/** pandora's ack statuses; `Timeout` and `NotDelivered` are set by the broker, never by `ack`. */
export const AckStatus = Object.freeze({ Confirmed: 1, Rejected: 2, Timeout: 4, NotDelivered: 8 } as const);
/** Every status a message can carry: pandora's four plus `Dead` (moved to `<name>.dead`). */
export const MessageStatus = Object.freeze({ ...AckStatus, Dead: 16 } as const);
export type MessageStatusValue = (typeof MessageStatus)[keyof typeof MessageStatus];
/** The outcome of one delivery attempt. */
export type AttemptOutcome = 1 | 2 | 4;

/** Where a message is in its life. */
export type MessageState = 'queued' | 'leased' | 'confirmed';

/** A body: string fields, multi-valued as in Go's `url.Values`. */
export type Body = Record<string, string | string[]>;

/** One delivery attempt: who fetched it, when, and how it ended. */
export interface Attempt {
  /** 1 for the first delivery. */
  readonly n: number;
  readonly consumer: string;
  readonly fetchedAt: Date;
  readonly endedAt: Date;
  readonly outcome: AttemptOutcome;
}

/** Everything about a message except its body (what `headers()` lists). */
export interface MessageHeader {
  /** Content-derived id (40 hex digits with SHA-1): clientTime (ms, 12 digits) then a hash over sender, receiver, clientTime and body. */
  readonly mid: string;
  readonly sender: string;
  /** The mailbox it was sent to. */
  readonly receiver: string;
  /** The mailbox it is in now: `receiver`, or `<receiver>.dead` once dead-lettered. */
  readonly mailbox: string;
  readonly clientTime: Date;
  /** Server time of the send. */
  readonly receivedAt: Date;
  /** receivedAt + delayMs. */
  readonly sendWhen: Date;
  readonly delayMs: number;
  readonly state: MessageState;
  /** 8 until an attempt ends; then the last outcome (1, 2, 4), or 16 once dead. */
  readonly status: MessageStatusValue;
  /** How many times it was handed to a receiver. */
  readonly deliveryCount: number;
  /** The current (or last) lease id; random, unguessable. */
  readonly lid: string | null;
  /** The fencing token of the current (or last) lease; strictly greater for every new lease. */
  readonly fence: number | null;
  readonly leasedUntil: Date | null;
  readonly fetchTime: Date | null;
  /** When it can next be claimed (queued messages only). */
  readonly dueAt: Date | null;
  /** The BlobStore key of the body (hex). */
  readonly blobKey: string;
  readonly bodyBytes: number;
  /** Every finished delivery attempt, oldest first (only from `Broker.get`). */
  readonly attempts?: readonly Attempt[];
}

export interface Message extends MessageHeader {
  readonly body: Body;
}

const MAILBOX_RE = /^[A-Za-z0-9@._\-:/]{1,200}$/;
const DEAD_SUFFIX = '.dead';

/** The dead-letter mailbox of `name`. */
export function deadLetterName(name: string): string {
  return name + DEAD_SUFFIX;
}

/** True for a dead-letter mailbox; messages there are never dead-lettered again. */
export function isDeadLetterName(name: string): boolean {
  return name.endsWith(DEAD_SUFFIX);
}

/**
 * Checks the naming rule: 1–200 characters of letters, digits and `@ . _ - : /`; a
 * dead-letter mailbox (`<name>.dead`) may be 205 long.
 */
export function validateMailboxName(name: unknown, what = 'mailbox'): string {
  if (typeof name !== 'string') throw new MailboxInvalidMailboxError(`${what} must be a string`);
  if (MAILBOX_RE.test(name)) return name;
  if (isDeadLetterName(name) && MAILBOX_RE.test(name.slice(0, -DEAD_SUFFIX.length))) return name;
  throw new MailboxInvalidMailboxError(
    `${what} ${JSON.stringify(name.slice(0, 64))} must be 1–200 characters of letters, digits and @ . _ - : /`,
  );
}

/**
 * The canonical encoding of a body: `application/x-www-form-urlencoded`, keys sorted, values
 * in order (Go's `url.Values.Encode`, with %20 for spaces). Equal bodies encode to equal
 * bytes, so they hash to one blob key. Throws for anything but string fields.
 */
export function encodeBody(body: unknown): string {
  return encodeBodyParts(body).encoded;
}

function setField(body: Body, key: string, value: string | string[]): void {
  // A "__proto__" field must stay an own data property, never set the prototype; any other key
  // is a plain assignment (defineProperty cost a send ~0.3 µs a field).
  if (key === '__proto__')
    Object.defineProperty(body, key, { value, enumerable: true, writable: true, configurable: true });
  else body[key] = value;
}

/**
 * The canonical encoding of a body and the body exactly as `decodeBody` would return it (keys
 * sorted, one-element arrays as strings, empty arrays gone), built in one pass so a send never
 * decodes what it just encoded.
 */
export function encodeBodyParts(body: unknown): { encoded: string; decoded: Body } {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new MailboxInvalidArgumentError('body must be an object of string fields');
  const keys = Object.keys(body);
  // Sorted only when not in order already (as most bodies are): `sort` allocates even then.
  for (let i = 1; i < keys.length; i++)
    if (keys[i - 1]! > keys[i]!) {
      keys.sort();
      break;
    }
  const decoded: Body = {};
  let out = '';
  for (const key of keys) {
    const value = (body as Record<string, unknown>)[key];
    const k = encodeField(key, 'body key');
    if (typeof value === 'string') {
      out += (out.length === 0 ? '' : '&') + k + '=' + encodeField(value, `body.${key}`);
      setField(decoded, key, value);
    } else if (Array.isArray(value)) {
      for (const v of value as unknown[]) {
        if (typeof v !== 'string')
          throw new MailboxInvalidArgumentError(`body.${key} must be a string or an array of strings`);
        out += (out.length === 0 ? '' : '&') + k + '=' + encodeField(v, `body.${key}`);
      }
      if (value.length === 1) setField(decoded, key, value[0] as string);
      else if (value.length > 1) setField(decoded, key, [...(value as string[])]);
    } else {
      throw new MailboxInvalidArgumentError(`body.${key} must be a string or an array of strings`);
    }
  }
  return { encoded: out, decoded };
}

/** Characters encodeURIComponent leaves as they are: a field of only these encodes to itself. */
const UNRESERVED_RE = /^[A-Za-z0-9\-_.!~*'()]*$/;

/** A percent-decoded field (a field with no `%` decodes to itself). */
function decodeField(s: string): string {
  return s.includes('%') ? decodeURIComponent(s) : s;
}

function encodeField(s: string, what: string): string {
  if (UNRESERVED_RE.test(s)) return s;
  try {
    return encodeURIComponent(s);
  } catch (error) {
    // encodeURIComponent throws URIError for a lone surrogate.
    throw new MailboxInvalidArgumentError(`${what} is not well-formed Unicode`, { cause: error });
  }
}

/**
 * Decodes a canonical body. A key seen once is a string, a key seen more often an array
 * (so a one-element array comes back as a string, as with `url.Values.Get`).
 */
export function decodeBody(encoded: string): Body {
  const body: Body = {};
  if (encoded.length === 0) return body;
  let start = 0;
  while (start <= encoded.length) {
    let end = encoded.indexOf('&', start);
    if (end === -1) end = encoded.length;
    const eq = encoded.indexOf('=', start);
    const split = eq === -1 || eq > end ? end : eq;
    const key = decodeField(encoded.slice(start, split));
    const value = split === end ? '' : decodeField(encoded.slice(split + 1, end));
    const prev = Object.hasOwn(body, key) ? body[key] : undefined;
    // A "__proto__" field must stay an own data property, never set the prototype.
    if (prev === undefined) {
      if (key === '__proto__')
        Object.defineProperty(body, key, { value, enumerable: true, writable: true, configurable: true });
      else body[key] = value;
    } else if (typeof prev === 'string') body[key] = [prev, value];
    else prev.push(value);
    start = end + 1;
  }
  return body;
}

export type HashAlgorithm = 'sha1' | 'sha256';

const MID_TIME_HEX = 12; // 48 bits of milliseconds: until the year 10889

/**
 * The mid: content-derived, as in pandora, and as long as the hash's hex print (40 digits for
 * SHA-1), but laid out as `clientTime (48-bit ms, hex) ‖ the first bits of the hash` over
 * sender, receiver, clientTime, the body and (for sends without clientTime) a nonce. Equal
 * sends still give equal mids; the time prefix makes new mids sort after old ones, so the mid
 * index grows at its right edge instead of touching a random page per send (it halves the
 * bytes a send writes to the WAL). The hash part keeps 112 bits (SHA-1) or 208 bits (SHA-256).
 */
export function computeMid(
  algorithm: HashAlgorithm,
  sender: string,
  receiver: string,
  clientTimeMs: number,
  encodedBody: string,
  nonce: string,
): string {
  const hash = hexHash(algorithm, `${sender}\n${receiver}\n${clientTimeMs}\n${nonce}\n${encodedBody}`);
  const time = Math.min(Math.max(0, Math.floor(clientTimeMs)), 2 ** 48 - 1);
  return time.toString(16).padStart(MID_TIME_HEX, '0') + hash.slice(0, hash.length - MID_TIME_HEX);
}

/** The blob key of a body: its hash, printed as hex (pandora's KeyPrinter). */
export function blobKeyOf(algorithm: HashAlgorithm, data: Uint8Array | string): string {
  return hexHash(algorithm, data);
}

/**
 * A hash of `data` (a string as UTF-8) in hex. `crypto.hash` (Node 20.12+) hashes in one call,
 * without the Hash object `createHash` builds: 0.8 against 2 µs for a 256-byte body. Hashing the
 * mid's fields joined is the same as feeding them to one Hash in turn.
 */
const oneShotHash = (
  crypto as { hash?: (algorithm: string, data: Uint8Array | string, encoding: 'hex') => string }
).hash;
function hexHash(algorithm: HashAlgorithm, data: Uint8Array | string): string {
  return oneShotHash !== undefined
    ? oneShotHash(algorithm, data, 'hex')
    : createHash(algorithm).update(data).digest('hex');
}

/**
 * Random 128-bit ids in hex (lease ids, nonces), cut from a pooled buffer: one `randomBytes`
 * call per 256 ids instead of one each. Each store or broker owns its own pool.
 */
export class RandomIds {
  #pool = Buffer.alloc(0);
  #offset = 0;

  next(): string {
    if (this.#offset >= this.#pool.length) {
      this.#pool = randomBytes(16 * 256);
      this.#offset = 0;
    }
    const id = this.#pool.toString('hex', this.#offset, this.#offset + 16);
    this.#offset += 16;
    return id;
  }
}

/**
 * The attempt record of a message stops growing at 64 KiB (about 1 000 attempts): a message
 * that is rejected forever in a dead-letter mailbox must not grow without bound. The first
 * attempts are kept.
 */
export const MAX_HISTORY_CHARS = 65_536;

/** Parses the attempt record kept by the stores: one JSON object per line. */
export function parseAttempts(history: string): Attempt[] {
  const attempts: Attempt[] = [];
  for (const line of history.split('\n')) {
    if (line.length === 0) continue;
    const r = JSON.parse(line) as { n: number; c: string; f: number; e: number; o: AttemptOutcome };
    attempts.push({ n: r.n, consumer: r.c, fetchedAt: new Date(r.f), endedAt: new Date(r.e), outcome: r.o });
  }
  return attempts;
}

/** One line of the attempt record. */
export function formatAttempt(
  n: number,
  consumer: string,
  fetchedAtMs: number,
  endedAtMs: number,
  outcome: AttemptOutcome,
): string {
  return `${JSON.stringify({ n, c: consumer, f: fetchedAtMs, e: endedAtMs, o: outcome })}\n`;
}

const DATE_FIELDS = ['clientTime', 'receivedAt', 'sendWhen', 'leasedUntil', 'fetchTime', 'dueAt'] as const;

/** A message as JSON travels (Dates become ISO strings); `reviveMessage` undoes it (both clients). */
export function reviveMessage<T extends MessageHeader = Message>(raw: unknown): T {
  const m: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
  for (const f of DATE_FIELDS) if (typeof m[f] === 'string') m[f] = new Date(m[f]);
  if (Array.isArray(m.attempts))
    m.attempts = (m.attempts as Record<string, unknown>[]).map((a): Attempt => ({
      ...(a as unknown as Attempt),
      fetchedAt: new Date(a.fetchedAt as string),
      endedAt: new Date(a.endedAt as string),
    }));
  return m as unknown as T;
}
