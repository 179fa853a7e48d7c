import { MailboxClient } from '../client/client.js';
import type { MailboxClientOptions } from '../client/client.js';
import { MailboxInvalidArgumentError } from '../errors.js';
import { MailboxBinaryClient } from './client.js';
import type { MailboxBinaryClientOptions } from './client.js';

/**
 * A client for `url`: `switchyard://host:port` gives a `MailboxBinaryClient` (the binary API),
 * `http(s)://…` a `MailboxClient`. Both have `send`, `sendMany`, `fetch`, `fetchMany`, `ack`,
 * `extend` and `consume` with the same shapes.
 */
export function connectMailbox(
  url: string,
  options: MailboxClientOptions & MailboxBinaryClientOptions = {},
): MailboxClient | MailboxBinaryClient {
  if (typeof url !== 'string') throw new MailboxInvalidArgumentError('url must be a string');
  if (url.startsWith('switchyard://')) {
    const o: MailboxBinaryClientOptions = {
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
      ...(options.maxQueued === undefined ? {} : { maxQueued: options.maxQueued }),
      ...(options.dialTimeoutMs === undefined ? {} : { dialTimeoutMs: options.dialTimeoutMs }),
    };
    return new MailboxBinaryClient(url, o);
  }
  return new MailboxClient(url, options);
}
