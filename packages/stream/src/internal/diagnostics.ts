import { channel, type Channel } from 'node:diagnostics_channel';

/**
 * Observability: `switchyard:stream:<event>` channels. Events: `request` (opened, either
 * side), `source` (announced by a server), `error` (a request or source failed on a server),
 * `backoff` (the error mass was reached), `connection` (a session started or ended).
 */
const channels = new Map<string, Channel>();

export function publish(event: string, message: object): void {
  let ch = channels.get(event);
  if (ch === undefined) {
    ch = channel(`switchyard:stream:${event}`);
    channels.set(event, ch);
  }
  if (ch.hasSubscribers) ch.publish(message);
}
