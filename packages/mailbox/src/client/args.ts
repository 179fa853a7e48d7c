/**
 * Constructor checks the HTTP client and the binary client share. Internal: not exported from
 * the package index. Each client then applies its own rule on the URL's protocol.
 */
import { MailboxInvalidArgumentError } from '../errors.js';

/** Parses a client's `url` argument; throws MailboxInvalidArgumentError when it is not a URL. */
export function parseUrlArg(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new MailboxInvalidArgumentError(`url ${JSON.stringify(url)} is not a URL`);
  }
}

/** `token`, when given, must be a non-empty string. */
export function checkTokenArg(token: unknown): void {
  if (token !== undefined && (typeof token !== 'string' || token.length === 0))
    throw new MailboxInvalidArgumentError('token must be a non-empty string');
}
