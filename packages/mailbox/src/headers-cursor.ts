/**
 * The opaque cursor of a `headers` page: where the next page starts in a mailbox's
 * (receivedAt, seq) order. It is base64url text so callers treat it as a token, not a time;
 * decoding is strict (it must be exactly what `encodeHeadersCursor` made), so a mangled or
 * invented cursor is a clear `MAILBOX_ERR_INVALID_ARGUMENT`, never a silently wrong page.
 */
import { MailboxInvalidArgumentError } from './errors.js';
import type { HeadersPosition } from './store.js';

const VERSION = 'h1';
const CURSOR_RE = /^[A-Za-z0-9_-]{1,64}$/;
const BODY_RE = /^h1:(0|[1-9][0-9]{0,15}):(0|[1-9][0-9]{0,15})$/;

export function encodeHeadersCursor(p: HeadersPosition): string {
  return Buffer.from(`${VERSION}:${p.receivedAtMs}:${p.seq}`, 'latin1').toString('base64url');
}

export function decodeHeadersCursor(cursor: unknown): HeadersPosition {
  const bad = (): never => {
    throw new MailboxInvalidArgumentError('cursor must be a `next` value returned by a headers page');
  };
  if (typeof cursor !== 'string' || !CURSOR_RE.test(cursor)) return bad();
  const text = Buffer.from(cursor, 'base64url').toString('latin1');
  const m = BODY_RE.exec(text);
  if (m === null) return bad();
  const receivedAtMs = Number(m[1]);
  const seq = Number(m[2]);
  if (!Number.isSafeInteger(receivedAtMs) || !Number.isSafeInteger(seq)) return bad();
  // base64url decoding ignores stray trailing bits; only the canonical spelling is accepted.
  if (encodeHeadersCursor({ receivedAtMs, seq }) !== cursor) return bad();
  return { receivedAtMs, seq };
}
