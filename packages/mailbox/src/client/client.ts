/**
 * `MailboxClient`: the broker's operations over the /v1/ JSON API, on the global `fetch` (no
 * native dependencies; importing it never loads SQLite). Errors are `MailboxError`s with the
 * server's code; an unreachable server or a non-API answer is MAILBOX_ERR_HTTP.
 *
 * `consume(receiver, handler, { concurrency, leaseMs })` runs `concurrency` workers that
 * long-poll, extend each lease while its handler runs, confirm when the handler resolves and
 * reject when it throws, until the signal aborts (in-flight handlers finish first).
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import {
  MAILBOX_ERROR_CODES,
  MailboxError,
  MailboxHttpError,
  MailboxInvalidArgumentError,
} from '../errors.js';
import type { MailboxErrorCode } from '../errors.js';
import type { Body, Message, MessageHeader } from '../message.js';
import { reviveMessage } from '../message.js';
import type { MailboxInfo, MailboxSettings } from '../store.js';
import { consumeSetup, runLeased } from './consume.js';
import { checkTokenArg, parseUrlArg } from './args.js';

export interface MailboxClientOptions {
  /** Bearer token. */
  readonly token?: string;
  /** Per-request timeout, not counting a long poll's wait (default 30 000 ms). */
  readonly timeoutMs?: number;
  /** A `fetch` to use instead of node:http (tests, proxies); default: node:http(s) with keep-alive. */
  readonly fetch?: typeof globalThis.fetch;
}

export interface ClientSendInput {
  readonly sender: string;
  readonly receiver: string;
  readonly body: Body;
  readonly delayMs?: number;
  readonly clientTime?: Date;
}

export interface ClientCallOptions {
  readonly signal?: AbortSignal;
}

export interface ClientHeadersOptions extends ClientCallOptions {
  /** Only messages received after this time (exclusive, in ms). Not with `cursor`. */
  readonly after?: Date;
  /** The `next` of an earlier page: continue after its last message. Not with `after`. */
  readonly cursor?: string;
  /** Most headers returned (1–1000, default 100). */
  readonly limit?: number;
}

export interface ClientHeadersPage {
  readonly messages: MessageHeader[];
  /** Pass as `cursor` for the page after this one; null when this page is the last. */
  readonly next: string | null;
}

export interface ClientFetchOptions extends ClientCallOptions {
  readonly leaseMs?: number;
  readonly waitMs?: number;
  readonly consumer?: string;
}

/** What a `consume` handler gets besides the message. */
export interface ConsumeContext {
  /** Aborts when the lease is lost (an extension failed) or consume stops. */
  readonly signal: AbortSignal;
}

export interface ConsumeOptions extends ClientCallOptions {
  /** Handlers running at once (default 1, at most 1000). */
  readonly concurrency?: number;
  /** Lease of each message (default 30 000 ms); extended every `leaseMs / 3` while the handler runs. */
  readonly leaseMs?: number;
  /** Long poll of each fetch (default 20 000 ms). */
  readonly waitMs?: number;
  /** Recorded in the attempt history. */
  readonly consumer?: string;
  /** Called with errors that do not stop consuming (a failed fetch, ack or extension). */
  readonly onError?: (error: unknown, message?: Message) => void;
  /** Pause after a failed fetch before the next (default 1000 ms). */
  readonly retryDelayMs?: number;
}

function reviveMailbox(raw: Record<string, unknown>): MailboxInfo {
  return { ...(raw as unknown as MailboxInfo), createdAt: new Date(raw.createdAt as string) };
}

export class MailboxClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #fetch: typeof globalThis.fetch | undefined;
  readonly #base: URL;
  readonly #basePath: string;
  readonly #agent: HttpAgent | HttpsAgent;

  constructor(url: string, options: MailboxClientOptions = {}) {
    const u = parseUrlArg(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new MailboxInvalidArgumentError('url must be http: or https:');
    this.url = u.toString().replace(/\/+$/, '');
    checkTokenArg(options.token);
    this.#token = options.token;
    const t = options.timeoutMs ?? 30_000;
    if (!Number.isInteger(t) || t < 1)
      throw new MailboxInvalidArgumentError('timeoutMs must be a positive integer');
    this.#timeoutMs = t;
    this.#fetch = options.fetch;
    this.#base = u;
    this.#basePath = u.pathname.replace(/\/+$/, '');
    this.#agent =
      u.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  /** One JSON request; resolves to the parsed answer (undefined for 204). */
  async request(
    method: string,
    path: string,
    body?: unknown,
    options: { signal?: AbortSignal; extraMs?: number } = {},
  ): Promise<unknown> {
    options.signal?.throwIfAborted();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const timeoutMs = this.#timeoutMs + (options.extraMs ?? 0);
    let res: { status: number; text: string };
    try {
      res =
        this.#fetch === undefined
          ? await this.#http(method, path, headers, payload, timeoutMs, options.signal)
          : await this.#viaFetch(this.#fetch, method, path, headers, payload, timeoutMs, options.signal);
    } catch (error) {
      if (options.signal?.aborted === true) throw options.signal.reason;
      throw new MailboxHttpError(`${method} ${path}: ${(error as Error).message}`, 0, { cause: error });
    }
    if (res.status === 204) return undefined;
    let parsed: unknown;
    try {
      parsed = res.text.length === 0 ? undefined : JSON.parse(res.text);
    } catch {
      throw new MailboxHttpError(
        `${method} ${path}: HTTP ${res.status} with a body that is not JSON`,
        res.status,
      );
    }
    if (res.status >= 200 && res.status < 300) return parsed;
    const e = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    if (e?.code !== undefined && Object.hasOwn(MAILBOX_ERROR_CODES, e.code))
      throw new MailboxError(e.code as MailboxErrorCode, e.message ?? e.code);
    throw new MailboxHttpError(`${method} ${path}: HTTP ${res.status}`, res.status);
  }

  /** One request on node:http(s) with a keep-alive agent (idle sockets do not hold the process). */
  #http(
    method: string,
    path: string,
    headers: Record<string, string>,
    payload: string | undefined,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    retried = false,
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const u = this.#base;
      const h: Record<string, string> =
        payload === undefined
          ? headers
          : { ...headers, 'content-length': String(Buffer.byteLength(payload)) };
      const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
        {
          protocol: u.protocol,
          hostname: u.hostname.replace(/^\[|\]$/g, ''),
          port: u.port,
          method,
          path: this.#basePath + path,
          headers: h,
          agent: this.#agent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            cleanup();
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', fail);
        },
      );
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      const onAbort = (): void =>
        void req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      let answered = false;
      req.once('response', () => (answered = true));
      const fail = (error: Error): void => {
        cleanup();
        // A keep-alive socket the server closed while idle resets the next request before the
        // server read it (Node's documented race): send it once more on a new connection.
        const code = (error as { code?: string }).code;
        if (
          !retried &&
          !answered &&
          req.reusedSocket &&
          (code === 'ECONNRESET' || code === 'EPIPE') &&
          signal?.aborted !== true
        )
          resolve(this.#http(method, path, headers, payload, timeoutMs, signal, true));
        else reject(error);
      };
      req.on('error', fail);
      req.end(payload);
    });
  }

  async #viaFetch(
    fetchFn: typeof globalThis.fetch,
    method: string,
    path: string,
    headers: Record<string, string>,
    payload: string | undefined,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; text: string }> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const res = await fetchFn(this.url + path, {
      method,
      headers,
      ...(payload === undefined ? {} : { body: payload }),
      signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
    });
    return { status: res.status, text: await res.text() };
  }

  /** Closes the idle keep-alive connections. The client stays usable (new requests reconnect). */
  async close(): Promise<void> {
    this.#agent.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async send(m: ClientSendInput, options: ClientCallOptions = {}): Promise<Message> {
    return reviveMessage<Message>(await this.request('POST', '/v1/messages', sendJson(m), options));
  }

  async sendMany(messages: readonly ClientSendInput[], options: ClientCallOptions = {}): Promise<Message[]> {
    const r = (await this.request(
      'POST',
      '/v1/messages/batch',
      { messages: messages.map(sendJson) },
      options,
    )) as {
      messages: Record<string, unknown>[];
    };
    return r.messages.map((m) => reviveMessage<Message>(m));
  }

  async fetch(receiver: string, options: ClientFetchOptions = {}): Promise<Message | null> {
    const [m] = await this.fetchMany(receiver, { ...options, max: 1 });
    return m ?? null;
  }

  async fetchMany(receiver: string, options: ClientFetchOptions & { max: number }): Promise<Message[]> {
    const body: Record<string, unknown> = { max: options.max };
    if (options.leaseMs !== undefined) body.leaseMs = options.leaseMs;
    if (options.waitMs !== undefined) body.waitMs = options.waitMs;
    if (options.consumer !== undefined) body.consumer = options.consumer;
    const r = (await this.request('POST', `/v1/mailboxes/${enc(receiver)}/fetch`, body, {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      extraMs: typeof options.waitMs === 'number' ? options.waitMs : 0,
    })) as { messages: Record<string, unknown>[] };
    return r.messages.map((m) => reviveMessage<Message>(m));
  }

  async ack(mid: string, lid: string, status: 1 | 2, options: ClientCallOptions = {}): Promise<void> {
    await this.request('POST', `/v1/messages/${enc(mid)}/ack`, { lid, status }, options);
  }

  /**
   * Acks many messages in one request (they share the broker's commits). Resolves to one result
   * per ack, in order: `{ mid, ok: true }`, or `{ mid, ok: false, error }` with the error as a
   * `MailboxError` (a stale lid fails alone; the others still apply).
   */
  async ackMany(
    acks: readonly { readonly mid: string; readonly lid: string; readonly status: 1 | 2 }[],
    options: ClientCallOptions = {},
  ): Promise<{ mid: string; ok: boolean; error?: MailboxError }[]> {
    const r = (await this.request('POST', '/v1/messages/acks', { acks }, options)) as {
      results: { mid: string; ok: boolean; error?: { code: string; message: string } }[];
    };
    return r.results.map((x) =>
      x.error === undefined
        ? { mid: x.mid, ok: x.ok }
        : {
            mid: x.mid,
            ok: false,
            error: new MailboxError(x.error.code as MailboxErrorCode, x.error.message),
          },
    );
  }

  async extend(mid: string, lid: string, leaseMs: number, options: ClientCallOptions = {}): Promise<Message> {
    return reviveMessage<Message>(
      await this.request('POST', `/v1/messages/${enc(mid)}/extend`, { lid, leaseMs }, options),
    );
  }

  async get(mid: string, options: ClientCallOptions = {}): Promise<Message | null> {
    try {
      return reviveMessage<Message>(
        await this.request('GET', `/v1/messages/${enc(mid)}`, undefined, options),
      );
    } catch (error) {
      if (error instanceof MailboxError && error.code === 'MAILBOX_ERR_NOT_FOUND') return null;
      throw error;
    }
  }

  /** Pending messages of `receiver`, without bodies, oldest first (see `headersPage` to page on). */
  async headers(receiver: string, options: ClientHeadersOptions = {}): Promise<MessageHeader[]> {
    return (await this.headersPage(receiver, options)).messages;
  }

  /** A page of `headers` with `next`: pass it back as `cursor` for the page after it (null: the last). */
  async headersPage(receiver: string, options: ClientHeadersOptions = {}): Promise<ClientHeadersPage> {
    return this.#headersPage(`/v1/mailboxes/${enc(receiver)}/headers`, options);
  }

  /** The dead letters of `receiver` (the pending messages of `<receiver>.dead`). */
  async deadLetters(receiver: string, options: ClientHeadersOptions = {}): Promise<MessageHeader[]> {
    return (await this.deadLettersPage(receiver, options)).messages;
  }

  /** A page of `deadLetters` with `next`, as `headersPage`. */
  async deadLettersPage(receiver: string, options: ClientHeadersOptions = {}): Promise<ClientHeadersPage> {
    return this.#headersPage(`/v1/mailboxes/${enc(receiver)}/dead`, options);
  }

  async #headersPage(path: string, options: ClientHeadersOptions): Promise<ClientHeadersPage> {
    const q = new URLSearchParams();
    if (options.after !== undefined) q.set('after', options.after.toISOString());
    if (options.cursor !== undefined) q.set('cursor', options.cursor);
    if (options.limit !== undefined) q.set('limit', String(options.limit));
    const qs = q.size > 0 ? `?${q.toString()}` : '';
    const r = (await this.request('GET', `${path}${qs}`, undefined, options)) as {
      messages: Record<string, unknown>[];
      next?: string | null;
    };
    return { messages: r.messages.map((m) => reviveMessage<MessageHeader>(m)), next: r.next ?? null };
  }

  async redrive(receiver: string, options: ClientCallOptions & { limit?: number } = {}): Promise<number> {
    const body = options.limit === undefined ? {} : { limit: options.limit };
    return (
      (await this.request('POST', `/v1/mailboxes/${enc(receiver)}/redrive`, body, options)) as {
        count: number;
      }
    ).count;
  }

  async purge(receiver: string, options: ClientCallOptions & { limit?: number } = {}): Promise<number> {
    const body = options.limit === undefined ? {} : { limit: options.limit };
    return (
      (await this.request('POST', `/v1/mailboxes/${enc(receiver)}/purge`, body, options)) as { count: number }
    ).count;
  }

  async configure(
    name: string,
    settings: Partial<MailboxSettings>,
    options: ClientCallOptions = {},
  ): Promise<MailboxInfo> {
    return reviveMailbox(
      (await this.request('PUT', `/v1/mailboxes/${enc(name)}`, settings, options)) as Record<string, unknown>,
    );
  }

  async mailboxes(options: ClientCallOptions = {}): Promise<MailboxInfo[]> {
    const r = (await this.request('GET', '/v1/mailboxes', undefined, options)) as {
      mailboxes: Record<string, unknown>[];
    };
    return r.mailboxes.map(reviveMailbox);
  }

  async reenqueue(options: ClientCallOptions = {}): Promise<number> {
    return ((await this.request('POST', '/v1/reenqueue', {}, options)) as { count: number }).count;
  }

  async stats(options: ClientCallOptions = {}): Promise<Record<string, unknown>> {
    return (await this.request('GET', '/v1/stats', undefined, options)) as Record<string, unknown>;
  }

  /**
   * Consumes `receiver` until `options.signal` aborts: each of `concurrency` workers long-polls
   * for a message, runs `handler` while extending the lease, then confirms (handler resolved)
   * or rejects (handler threw). Resolves once every worker stopped and in-flight handlers
   * finished. A lease lost meanwhile (extension failed) aborts the handler's signal; its ack
   * then fails with MAILBOX_ERR_LEASE_INVALID, reported to `onError` (the broker redelivers).
   */
  async consume(
    receiver: string,
    handler: (message: Message, context: ConsumeContext) => unknown,
    options: ConsumeOptions = {},
  ): Promise<void> {
    const { concurrency, leaseMs, retryDelayMs, stop, report } = consumeSetup(receiver, handler, options);
    const waitMs = options.waitMs ?? 20_000;
    const runOne = (m: Message): Promise<void> => runLeased(this, m, handler, stop, leaseMs, report);

    const worker = async (): Promise<void> => {
      while (!stop.aborted) {
        let m: Message | null;
        try {
          m = await this.fetch(receiver, {
            leaseMs,
            waitMs,
            signal: stop,
            ...(options.consumer === undefined ? {} : { consumer: options.consumer }),
          });
        } catch (error) {
          if (stop.aborted) return;
          report(error);
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, retryDelayMs);
            stop.addEventListener(
              'abort',
              () => {
                clearTimeout(t);
                resolve();
              },
              { once: true },
            );
          });
          continue;
        }
        if (m !== null) await runOne(m);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function sendJson(m: ClientSendInput): Record<string, unknown> {
  const out: Record<string, unknown> = { sender: m.sender, receiver: m.receiver, body: m.body };
  if (m.delayMs !== undefined) out.delayMs = m.delayMs;
  if (m.clientTime !== undefined) out.clientTime = m.clientTime.toISOString();
  return out;
}
