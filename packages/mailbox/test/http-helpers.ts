/** Helpers of the HTTP tests: a server on a memory store, raw requests, store snapshots. */
import { request as httpRequest } from 'node:http';
import { MailboxServer } from '@switchyard/mailbox';
import type { MailboxServerOptions } from '@switchyard/mailbox';

export async function startServer(extra: Partial<MailboxServerOptions> = {}): Promise<MailboxServer> {
  return MailboxServer.start({ broker: { store: 'memory:', sweepIntervalMs: 100 }, port: 0, ...extra });
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** One HTTP/1.1 request with exactly these headers and body bytes. */
export function raw(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string | Buffer,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, url);
    const req = httpRequest(
      { host: u.hostname, port: u.port, method, path: u.pathname + u.search, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Go's `url.Values.Encode`: keys sorted, QueryEscape (space as +). */
export function goEncode(values: Record<string, string | string[]>): string {
  const esc = (s: string): string =>
    encodeURIComponent(s)
      .replace(/%20/g, '+')
      .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const parts: string[] = [];
  for (const k of Object.keys(values).sort()) {
    const v = values[k]!;
    for (const x of Array.isArray(v) ? v : [v]) parts.push(`${esc(k)}=${esc(x)}`);
  }
  return parts.join('&');
}

/** Go's `url.ParseQuery`. */
export function goParse(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [k, v] of new URLSearchParams(text)) out.set(k, [...(out.get(k) ?? []), v]);
  return out;
}

/** `http.Client.PostForm` as Go sends it. */
export function goPostForm(
  url: string,
  path: string,
  values: Record<string, string | string[]>,
): Promise<RawResponse> {
  const body = goEncode(values);
  return raw(
    url,
    'POST',
    path,
    {
      'User-Agent': 'Go-http-client/1.1',
      'Content-Length': String(Buffer.byteLength(body)),
      'Content-Type': 'application/x-www-form-urlencoded',
      'Accept-Encoding': 'gzip',
    },
    body,
  );
}

/** Go's `time.Now().Format(time.RFC3339Nano)` for a time (nanosecond digits, trailing zeros cut). */
export function goRfc3339Nano(d: Date, nanos = 123_456_789): string {
  const base = d.toISOString().slice(0, 19);
  const frac = String(nanos).padStart(9, '0').replace(/0+$/, '');
  return `${base}${frac.length > 0 ? `.${frac}` : ''}Z`;
}

/** What the store holds, for "nothing changed" checks. */
export async function snapshot(server: MailboxServer): Promise<string> {
  // The sweeper collects unreferenced blobs in the background: collect now, so a sweep between
  // two snapshots cannot look like a change.
  await server.broker.collect();
  const [mailboxes, stats] = await Promise.all([server.broker.mailboxes(), server.broker.stats()]);
  return JSON.stringify({
    // ready and delayed move between each other with time alone: compare their sum.
    mailboxes: mailboxes.map((m) => ({
      name: m.name,
      settings: m.settings,
      queued: m.ready + m.delayed,
      inFlight: m.inFlight,
      confirmed: m.confirmed,
    })),
    store: stats.store,
    sends: stats.sends,
    confirmed: stats.confirmed,
    rejected: stats.rejected,
    delivered: stats.delivered,
  });
}
