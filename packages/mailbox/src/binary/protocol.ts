/**
 * The mailbox binary API on `@switchyard/stream`: every call is a stream request on the one
 * connection a client keeps to the server. The request body is JSON `{ op, … }`; the token
 * travels in the `authorization` tag (`Bearer <token>`, the same tokens as HTTP). A call
 * answers with one source whose single frame is the JSON result; `subscribe` answers with one
 * source whose header names the subscription and whose frames are the leased messages, one
 * JSON message per frame. Failures are stream remote errors whose `remoteCode` is the
 * `MAILBOX_ERR_*` code; per-item failures of a batch travel inside the result.
 */
import { MAILBOX_ERROR_CODES, MailboxError, MailboxInvalidArgumentError } from '../errors.js';
import type { MailboxErrorCode } from '../errors.js';

export const BINARY_PROTOCOL_VERSION = 1;

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
