/**
 * The mailbox HTTP server (fastify): pandora-compatible form routes under `/api/`, the JSON API
 * under `/v1/` (described at `/v1/openapi.json`), `/metrics`, `/healthz` and a minimal `/`.
 * Bearer-token auth is on by default whenever the server listens beyond loopback. Every error
 * is a 4xx/5xx with a clear message and changes nothing.
 */
import formbody from '@fastify/formbody';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import { channel } from 'node:diagnostics_channel';
import { Broker } from '../broker.js';
import type { HeadersOptions } from '../broker.js';
import { parseGoDuration } from '../client/duration.js';
import {
  MailboxError,
  MailboxForbiddenError,
  MailboxInvalidArgumentError,
  MailboxNotFoundError,
} from '../errors.js';
import type { Body } from '../message.js';
import { validateMailboxName } from '../message.js';
import type { BrokerOptions } from '../options.js';
import { checkInt } from '../options.js';
import type { Principal, Scope, TokenSpec } from './auth.js';
import { TokenTable, isLoopback, mayUseMailbox, requireMailbox, requireScope } from './auth.js';
import { HttpMetrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { registerUi } from './ui.js';
import type { RouteDoc } from './openapi.js';
import type { FormValues } from './pandora.js';
import { encodeForm, errorBody, first, headerValues, messageValues, parseRfc3339 } from './pandora.js';
import * as S from './schemas.js';

export interface MailboxServerOptions {
  /** A broker you opened (and close), or options to open one (closed with the server). */
  readonly broker: Broker | BrokerOptions;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 7420; 0 picks a free port. */
  readonly port?: number;
  /** Bearer tokens (strings get every scope and mailbox). */
  readonly tokens?: readonly (TokenSpec | string)[];
  /** Require a token (default: on unless `host` is loopback). On with no tokens is an error. */
  readonly auth?: boolean;
  /** Largest request body in bytes (default 4 MiB). */
  readonly bodyLimit?: number;
  /** Most messages in one batch send (default 1000). */
  readonly maxBatch?: number;
  /** Most mailboxes with their own series in /metrics (default 1000). */
  readonly metricsMaxMailboxes?: number;
  /** Time to let in-flight requests finish on close before connections are cut (default 10 000 ms). */
  readonly closeTimeoutMs?: number;
  /** fastify/pino logging (default off). */
  readonly logger?: boolean | Record<string, unknown>;
}

export const DEFAULT_SERVER_OPTIONS = Object.freeze({
  host: '127.0.0.1',
  port: 7420,
  bodyLimit: 4 * 1024 * 1024,
  maxBatch: 1000,
  metricsMaxMailboxes: 1000,
  closeTimeoutMs: 10_000,
});

const requestChannel = channel('switchyard:mailbox:http-request');

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** HTTP status of a mailbox error code. */
export function httpStatusOf(error: unknown): number {
  if (!(error instanceof MailboxError)) return 500;
  switch (error.code) {
    case 'MAILBOX_ERR_INVALID_ARGUMENT':
    case 'MAILBOX_ERR_INVALID_MAILBOX':
      return 400;
    case 'MAILBOX_ERR_UNAUTHORIZED':
      return 401;
    case 'MAILBOX_ERR_FORBIDDEN':
      return 403;
    case 'MAILBOX_ERR_NOT_FOUND':
      return 404;
    case 'MAILBOX_ERR_LEASE_INVALID':
      return 409;
    case 'MAILBOX_ERR_MESSAGE_TOO_LARGE':
      return 413;
    case 'MAILBOX_ERR_OVERLOADED':
    case 'MAILBOX_ERR_CLOSED':
      return 503;
    default:
      return 500;
  }
}

/** Maps fastify's own errors (validation, body parsing, limits) to a status and a mailbox code. */
function classify(error: unknown): { status: number; code: string; message: string } {
  if (error instanceof MailboxError)
    return { status: httpStatusOf(error), code: error.code, message: error.message };
  const e = error as { statusCode?: number; code?: string; message?: string; validation?: unknown };
  const message = e.message ?? String(error);
  if (e.validation !== undefined) return { status: 400, code: 'MAILBOX_ERR_INVALID_ARGUMENT', message };
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return { status: 413, code: 'MAILBOX_ERR_MESSAGE_TOO_LARGE', message: 'the request body is too large' };
  const status =
    typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  if (status < 500) return { status, code: 'MAILBOX_ERR_INVALID_ARGUMENT', message };
  return { status, code: 'MAILBOX_ERR_STORE', message: 'internal error' };
}

function ms(name: string, value: string, { allowNegative = false } = {}): number {
  const d = parseGoDuration(value);
  if (d === undefined)
    throw new MailboxInvalidArgumentError(
      `${name} ${JSON.stringify(value.slice(0, 40))} is not a Go duration (like 1s, 5m, 1h30m, 500ms)`,
    );
  if (d < 0 && !allowNegative) return 0;
  return d < 0 ? Math.floor(d) : Math.ceil(d);
}

function dateParam(name: string, value: string): Date {
  const d = parseRfc3339(value);
  if (d === undefined)
    throw new MailboxInvalidArgumentError(
      `${name} ${JSON.stringify(value.slice(0, 40))} is not an RFC 3339 time`,
    );
  return d;
}

function asDate(name: string, v: string | undefined): Date | undefined {
  return v === undefined ? undefined : dateParam(name, v);
}

interface HeadersQuery {
  after?: string;
  cursor?: string;
  limit?: string;
}

/** The query of a headers page as broker options (the broker checks the cursor and the limit). */
function headersOptions(q: HeadersQuery): HeadersOptions {
  const after = asDate('after', q.after);
  return {
    ...(after === undefined ? {} : { after }),
    ...(q.cursor === undefined ? {} : { cursor: q.cursor }),
    limit: Number(q.limit ?? 100),
  };
}

/** The running server. */
export class MailboxServer {
  readonly app: FastifyInstance;
  readonly broker: Broker;
  readonly host: string;
  readonly authRequired: boolean;
  readonly #ownsBroker: boolean;
  readonly #polls = new AbortController();
  readonly #closeTimeoutMs: number;
  #port = 0;
  #inFlight = 0;
  #closing: Promise<void> | undefined;

  private constructor(
    app: FastifyInstance,
    broker: Broker,
    owns: boolean,
    host: string,
    auth: boolean,
    closeTimeoutMs: number,
  ) {
    this.app = app;
    this.broker = broker;
    this.#ownsBroker = owns;
    this.host = host;
    this.authRequired = auth;
    this.#closeTimeoutMs = closeTimeoutMs;
  }

  /** The port it listens on. */
  get port(): number {
    return this.#port;
  }

  /** The URL it serves, e.g. http://127.0.0.1:7420 */
  get url(): string {
    return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.#port}`;
  }

  /** Validates the options, opens the broker if asked, and listens. */
  static async start(options: MailboxServerOptions): Promise<MailboxServer> {
    if (typeof options !== 'object' || options === null)
      throw new MailboxInvalidArgumentError('options must be an object');
    const d = DEFAULT_SERVER_OPTIONS;
    const host = options.host ?? d.host;
    if (typeof host !== 'string' || host.length === 0)
      throw new MailboxInvalidArgumentError('host must be a string');
    const port = checkInt('port', options.port ?? d.port, 0, 65535);
    const bodyLimit = checkInt('bodyLimit', options.bodyLimit ?? d.bodyLimit, 1024, 1024 * 1024 * 1024);
    const maxBatch = checkInt('maxBatch', options.maxBatch ?? d.maxBatch, 1, 100_000);
    const maxMailboxes = checkInt(
      'metricsMaxMailboxes',
      options.metricsMaxMailboxes ?? d.metricsMaxMailboxes,
      0,
      1e6,
    );
    const closeTimeoutMs = checkInt('closeTimeoutMs', options.closeTimeoutMs ?? d.closeTimeoutMs, 0, 600_000);
    const tokens = new TokenTable(
      (options.tokens ?? []).map((t) => (typeof t === 'string' ? { token: t } : t)),
    );
    const auth = options.auth ?? !isLoopback(host);
    if (typeof auth !== 'boolean') throw new MailboxInvalidArgumentError('auth must be a boolean');
    if (auth && tokens.size === 0)
      throw new MailboxInvalidArgumentError(
        isLoopback(host)
          ? 'auth is on but no tokens are configured'
          : `auth is on because host ${host} is not loopback, but no tokens are configured (give tokens, or auth: false)`,
      );
    const given = options.broker;
    const owns = !(given instanceof Broker);
    const broker = given instanceof Broker ? given : await Broker.open(given);
    let app: FastifyInstance | undefined;
    try {
      app = Fastify({
        bodyLimit,
        logger: options.logger ?? false,
        forceCloseConnections: 'idle',
        return503OnClosing: true,
        // No coercion: a number where a string belongs is a 400, not a silent conversion.
        ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
      });
      const server = new MailboxServer(app, broker, owns, host, auth, closeTimeoutMs);
      await server.#routes(app, tokens, auth, maxBatch, maxMailboxes, bodyLimit);
      app.server.on('request', (_req, res: ServerResponse) => {
        server.#inFlight++;
        res.once('close', () => server.#inFlight--);
      });
      await app.listen({ host, port });
      const addr = app.server.address();
      server.#port = typeof addr === 'object' && addr !== null ? addr.port : port;
      return server;
    } catch (error) {
      await app?.close().catch(() => {});
      if (owns) await broker.close();
      throw error;
    }
  }

  /**
   * Stops listening, ends long polls (they answer "no message"), lets in-flight requests
   * finish (up to `closeTimeoutMs`), then closes the broker if the server opened it.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const closing = this.app.close();
    this.#polls.abort();
    // Once no request is in flight, cut the remaining (idle keep-alive, or half-aborted)
    // connections: close waits for requests, never for a client's idle socket.
    let quietSince = performance.now();
    const sweep = setInterval(() => {
      this.app.server.closeIdleConnections();
      if (this.#inFlight > 0) quietSince = performance.now();
      else if (performance.now() - quietSince > 250) this.app.server.closeAllConnections();
    }, 20);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closing,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.app.server.closeAllConnections();
          resolve();
        }, this.#closeTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    clearInterval(sweep);
    if (this.#ownsBroker) await this.broker.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** A signal that aborts when the client goes away or the server closes. */
  #pollSignal(reply: FastifyReply): AbortSignal {
    const ac = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) ac.abort();
    });
    return AbortSignal.any([ac.signal, this.#polls.signal]);
  }

  async #routes(
    app: FastifyInstance,
    tokens: TokenTable,
    auth: boolean,
    maxBatch: number,
    maxMailboxes: number,
    bodyLimit: number,
  ): Promise<void> {
    const broker = this.broker;
    const metrics = new HttpMetrics();
    const docs: RouteDoc[] = [];

    await app.register(formbody, { bodyLimit, parser: (s: string) => parseQuery(s) });
    app.decorateRequest('principal', null);

    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched';
      metrics.observe(route, req.method, reply.statusCode, reply.elapsedTime / 1000);
      if (requestChannel.hasSubscribers)
        requestChannel.publish({
          method: req.method,
          route,
          status: reply.statusCode,
          ms: reply.elapsedTime,
        });
    });

    const isPandora = (req: FastifyRequest): boolean => req.url.startsWith('/api/');
    const sendError = (req: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply => {
      const c = classify(error);
      if (c.status >= 500) req.log.error({ err: error }, 'request failed');
      if (c.status === 401) void reply.header('www-authenticate', 'Bearer realm="switchyard"');
      if (isPandora(req))
        return reply
          .code(c.status)
          .type('application/x-www-form-urlencoded')
          .send(
            errorBody(c.status >= 500 && !(error instanceof MailboxError) ? 'internal error' : c.message),
          );
      return reply
        .code(c.status)
        .type('application/json')
        .send({ error: { code: c.code, message: c.message } });
    };
    app.setErrorHandler((error, req, reply) => sendError(req, reply, error));
    const postOnly = new Set(['/api/send', '/api/fetch', '/api/ack', '/api/admin/reenqueue']);
    app.setNotFoundHandler((req, reply) => {
      const path = req.url.split('?', 1)[0]!;
      if (postOnly.has(path))
        // pandora answers 405 "POST is required"
        return reply
          .code(405)
          .header('allow', 'POST')
          .type('application/x-www-form-urlencoded')
          .send(errorBody('POST is required'));
      return isPandora(req)
        ? reply.code(404).type('application/x-www-form-urlencoded').send(errorBody('not found'))
        : reply.code(404).send({
            error: {
              code: 'MAILBOX_ERR_NOT_FOUND',
              message: `no route ${req.method} ${path.slice(0, 100)}`,
            },
          });
    });

    /** Registers a route with its scope (checked before the handler) and records it for OpenAPI. */
    const route = <B = unknown, Q = unknown, P = unknown>(
      def: RouteDoc & { readonly scope: Scope | null },
      handler: (
        req: FastifyRequest<{ Body: B; Querystring: Q; Params: P }>,
        reply: FastifyReply,
      ) => Promise<unknown>,
    ): void => {
      docs.push(def);
      const schema: Record<string, unknown> = {};
      if (def.body !== undefined && def.form !== true) schema.body = def.body;
      if (def.query !== undefined && def.form !== true) schema.querystring = def.query;
      if (def.params !== undefined) schema.params = def.params;
      app.route({
        method: def.methods as ('GET' | 'POST' | 'PUT')[],
        url: def.url,
        schema,
        onRequest: async (req) => {
          if (!auth || def.scope === null) return;
          req.principal = tokens.authenticate(req.headers.authorization);
          requireScope(req.principal, def.scope);
        },
        handler: handler as never,
      });
    };

    /** Checks that the caller may touch the message `mid` (only scoped tokens pay for the lookup). */
    const checkMid = async (p: Principal | null, mid: string): Promise<void> => {
      if (p === null || p.everyMailbox) return;
      const m = await broker.get(mid);
      if (m === null) throw new MailboxNotFoundError(`no message has mid ${mid}`);
      if (!mayUseMailbox(p, m.mailbox))
        throw new MailboxForbiddenError(`${p.name} may not use mailbox ${m.mailbox}`);
    };

    // ---- pandora-compatible routes ------------------------------------------------------
    const form = (req: FastifyRequest): FormValues => {
      const q = (req.query ?? {}) as FormValues;
      const b = req.body;
      if (b !== undefined && b !== null && (typeof b !== 'object' || Buffer.isBuffer(b)))
        throw new MailboxInvalidArgumentError('the body must be application/x-www-form-urlencoded');
      // Go's req.Form: body values first, then the query's.
      const out: FormValues = Object.create(null) as FormValues;
      for (const src of [(b ?? {}) as FormValues, q])
        for (const key of Object.keys(src)) {
          const v = src[key];
          if (v === undefined) continue;
          const prev = out[key];
          const list = [
            ...(prev === undefined ? [] : Array.isArray(prev) ? prev : [prev]),
            ...(Array.isArray(v) ? v : [v]),
          ];
          out[key] = list.length === 1 ? list[0]! : list;
        }
      return out;
    };
    const formReply = (
      reply: FastifyReply,
      values: Record<string, string | readonly string[]>,
    ): FastifyReply => reply.code(200).type('application/x-www-form-urlencoded').send(encodeForm(values));

    route(
      {
        methods: ['POST'],
        url: '/api/send',
        scope: 'send',
        form: true,
        tag: 'pandora',
        summary: S.pandoraSend.summary,
        body: S.pandoraSend.body,
      },
      async (req, reply) => {
        const f = form(req);
        const sender = first(f, 'sender');
        const receiver = first(f, 'receiver');
        const delay = first(f, 'delay');
        const clientTime = first(f, 'clientTime');
        requireMailbox(req.principal, validateMailboxName(receiver, 'receiver'));
        const body: Body = Object.create(null) as Body;
        for (const key of Object.keys(f))
          // clientTime stays in the body, as in pandora: Go sends it with nanoseconds, and two
          // equal bodies sent in one millisecond must stay two messages (the mid hashes the body).
          if (key !== 'sender' && key !== 'receiver' && key !== 'delay') {
            const v = f[key]!;
            Object.defineProperty(body, key, {
              value: v,
              enumerable: true,
              writable: true,
              configurable: true,
            });
          }
        const m = await broker.send({
          sender,
          receiver,
          body,
          ...(delay === '' ? {} : { delayMs: ms('delay', delay) }),
          ...(clientTime === '' ? {} : { clientTime: dateParam('clientTime', clientTime) }),
        });
        return formReply(reply, { mid: m.mid });
      },
    );

    route(
      {
        methods: ['POST'],
        url: '/api/fetch',
        scope: 'receive',
        form: true,
        tag: 'pandora',
        summary: S.pandoraFetch.summary,
        body: S.pandoraFetch.body,
      },
      async (req, reply) => {
        const f = form(req);
        const receiver = validateMailboxName(first(f, 'receiver'), 'receiver');
        requireMailbox(req.principal, receiver);
        const lease = first(f, 'leaseTime');
        const wait = first(f, 'wait');
        const leaseMs = lease === '' ? 0 : ms('leaseTime', lease);
        const waitMs = wait === '' ? 0 : ms('wait', wait);
        const m = await broker
          .fetch(receiver, {
            ...(leaseMs > 0 ? { leaseMs } : {}), // pandora: zero or negative means the default lease
            waitMs,
            consumer: first(f, 'consumer').slice(0, 200),
            ...(waitMs > 0 ? { signal: this.#pollSignal(reply) } : {}),
          })
          .catch((e: unknown) => {
            if ((e as { name?: string }).name === 'AbortError') return null;
            throw e;
          });
        if (m === null) return reply.code(204).send();
        return formReply(reply, messageValues(m));
      },
    );

    route(
      {
        methods: ['POST'],
        url: '/api/ack',
        scope: 'receive',
        form: true,
        tag: 'pandora',
        summary: S.pandoraAck.summary,
        body: S.pandoraAck.body,
      },
      async (req, reply) => {
        const f = form(req);
        const mid = first(f, 'mid');
        const lid = first(f, 'lid');
        const code = first(f, 'statusCode');
        if (code !== '1' && code !== '2')
          throw new MailboxInvalidArgumentError(
            `statusCode must be 1 (Confirmed) or 2 (Rejected), got ${JSON.stringify(code.slice(0, 20))}`,
          );
        await checkMid(req.principal, mid).catch((e: unknown) => {
          if (e instanceof MailboxNotFoundError) return; // the broker says it below, after validating
          throw e;
        });
        try {
          await broker.ack(mid, lid, code === '1' ? 1 : 2);
        } catch (e) {
          if (
            e instanceof MailboxError &&
            (e.code === 'MAILBOX_ERR_LEASE_INVALID' || e.code === 'MAILBOX_ERR_NOT_FOUND')
          )
            throw new MailboxInvalidArgumentError(`unable to change status: ${e.message}`);
          throw e;
        }
        return reply.code(200).type('application/x-www-form-urlencoded').send('');
      },
    );

    route(
      {
        methods: ['GET', 'POST'],
        url: '/api/admin/headers',
        scope: 'admin',
        form: true,
        tag: 'pandora',
        summary: S.pandoraHeaders.summary,
        query: S.pandoraHeaders.query,
      },
      async (req, reply) => {
        const f = form(req);
        const receiver = validateMailboxName(first(f, 'receiver'), 'receiver');
        requireMailbox(req.principal, receiver);
        const at = first(f, 'receivedat');
        let after: Date | undefined;
        if (at !== '') {
          after = parseRfc3339(at);
          if (after === undefined) {
            const d = parseGoDuration(at);
            if (d === undefined)
              throw new MailboxInvalidArgumentError(
                `receivedat ${JSON.stringify(at.slice(0, 40))} is neither an RFC 3339 time nor a Go duration`,
              );
            after = new Date(Date.now() + d);
          }
        }
        const limitText = first(f, 'limit');
        const limit = limitText === '' ? 10 : Number(limitText);
        const headers = await broker.headers(receiver, { ...(after === undefined ? {} : { after }), limit });
        const list = headers.map((h) =>
          Object.fromEntries(Object.entries(headerValues(h)).map(([k, v]) => [k, [v]])),
        );
        return reply.type('application/json').send(JSON.stringify(list.length === 0 ? null : list) + '\n');
      },
    );

    route(
      {
        methods: ['GET', 'POST'],
        url: '/api/admin/fetchBlob',
        scope: 'admin',
        form: true,
        tag: 'pandora',
        summary: S.pandoraFetchBlob.summary,
        query: S.pandoraFetchBlob.query,
      },
      async (req, reply) => {
        const f = form(req);
        const key = first(f, 'mid') || first(f, 'key');
        if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(key))
          throw new MailboxInvalidArgumentError(
            'mid must be a 40- or 64-digit lowercase hex mid or blob key',
          );
        const m = await broker.get(key).catch(() => null);
        if (m !== null) requireMailbox(req.principal, m.mailbox);
        else if (req.principal !== null && !req.principal.everyMailbox)
          throw new MailboxForbiddenError('a token limited to mailboxes may fetch blobs only by mid');
        const data = await broker.store.blobs.get(m?.blobKey ?? key);
        if (data === null) throw new MailboxNotFoundError(`no message or blob has key ${key}`);
        return reply.type('application/x-www-form-urlencoded').send(data);
      },
    );

    route(
      {
        methods: ['POST'],
        url: '/api/admin/reenqueue',
        scope: 'admin',
        form: true,
        tag: 'pandora',
        summary: S.pandoraReenqueue.summary,
        body: S.pandoraReenqueue.body,
      },
      async (req, reply) => {
        const f = form(req);
        const now = first(f, 'now');
        const count = await broker.reenqueue(now === '' ? undefined : dateParam('now', now));
        return formReply(reply, { count: String(count) });
      },
    );

    // ---- JSON API -----------------------------------------------------------------------
    const msgView = (m: object): object => m;

    route<S.SendBody>(
      {
        methods: ['POST'],
        url: '/v1/messages',
        scope: 'send',
        tag: 'messages',
        summary: 'Send a message (idempotent with clientTime).',
        body: S.sendBody,
        response: 'Message',
        status: 201,
      },
      async (req, reply) => {
        requireMailbox(req.principal, validateMailboxName(req.body.receiver, 'receiver'));
        const m = await broker.send(S.toSendInput(req.body));
        return reply.code(201).send(msgView(m));
      },
    );

    route<{ messages: S.SendBody[] }>(
      {
        methods: ['POST'],
        url: '/v1/messages/batch',
        scope: 'send',
        tag: 'messages',
        summary: 'Send many messages; all are validated before any is stored.',
        body: S.batchBody(maxBatch),
        response: 'MessageList',
        status: 201,
      },
      async (req, reply) => {
        for (const m of req.body.messages)
          requireMailbox(req.principal, validateMailboxName(m.receiver, 'receiver'));
        const sent = await broker.sendMany(req.body.messages.map(S.toSendInput));
        return reply.code(201).send({ messages: sent });
      },
    );

    route<unknown, unknown, { mid: string }>(
      {
        methods: ['GET'],
        url: '/v1/messages/:mid',
        scope: 'receive',
        tag: 'messages',
        summary: 'One message with its body and the record of every delivery attempt.',
        params: S.midParams,
        response: 'Message',
      },
      async (req) => {
        const m = await broker.get(req.params.mid);
        if (m === null) throw new MailboxNotFoundError(`no message has mid ${req.params.mid}`);
        requireMailbox(req.principal, m.mailbox);
        return m;
      },
    );

    route<{ acks: { mid: string; lid: string; status: 1 | 2 }[] }>(
      {
        methods: ['POST'],
        url: '/v1/messages/acks',
        scope: 'receive',
        tag: 'messages',
        summary:
          'Confirm or reject many messages in one request (they share commits); each gets its own result.',
        body: S.acksBody(maxBatch),
        response: 'AckResults',
      },
      async (req) => {
        const results = await Promise.all(
          req.body.acks.map(async ({ mid, lid, status }) => {
            try {
              await checkMid(req.principal, mid);
              await broker.ack(mid, lid, status);
              return { mid, ok: true };
            } catch (error) {
              const c = classify(error);
              if (c.status >= 500) throw error;
              return { mid, ok: false, error: { code: c.code, message: c.message } };
            }
          }),
        );
        return { results };
      },
    );

    route<{ lid: string; status: 1 | 2 }, unknown, { mid: string }>(
      {
        methods: ['POST'],
        url: '/v1/messages/:mid/ack',
        scope: 'receive',
        tag: 'messages',
        summary: 'Confirm (1) or reject (2) a message under its lease.',
        params: S.midParams,
        body: S.ackBody,
        response: 'Empty',
        status: 204,
      },
      async (req, reply) => {
        await checkMid(req.principal, req.params.mid);
        await broker.ack(req.params.mid, req.body.lid, req.body.status);
        return reply.code(204).send();
      },
    );

    route<{ lid: string; leaseMs: number }, unknown, { mid: string }>(
      {
        methods: ['POST'],
        url: '/v1/messages/:mid/extend',
        scope: 'receive',
        tag: 'messages',
        summary: 'Extend a valid lease to leaseMs from now.',
        params: S.midParams,
        body: S.extendBody,
        response: 'Message',
      },
      async (req) => {
        await checkMid(req.principal, req.params.mid);
        return broker.extend(req.params.mid, req.body.lid, req.body.leaseMs);
      },
    );

    route<{ max?: number; leaseMs?: number; waitMs?: number; consumer?: string }, unknown, { name: string }>(
      {
        methods: ['POST'],
        url: '/v1/mailboxes/:name/fetch',
        scope: 'receive',
        tag: 'mailboxes',
        summary: 'Lease up to max due messages; long-poll up to waitMs for the first.',
        params: S.nameParams,
        body: S.fetchBody,
        response: 'MessageList',
      },
      async (req, reply) => {
        const name = validateMailboxName(req.params.name, 'mailbox');
        requireMailbox(req.principal, name);
        const b = req.body ?? {};
        const waitMs = b.waitMs ?? 0;
        const messages = await broker
          .fetchMany(name, {
            max: b.max ?? 1,
            ...(b.leaseMs === undefined ? {} : { leaseMs: b.leaseMs }),
            waitMs,
            ...(b.consumer === undefined ? {} : { consumer: b.consumer }),
            ...(waitMs > 0 ? { signal: this.#pollSignal(reply) } : {}),
          })
          .catch((e: unknown) => {
            if ((e as { name?: string }).name === 'AbortError') return [];
            throw e;
          });
        return { messages };
      },
    );

    route<unknown, HeadersQuery, { name: string }>(
      {
        methods: ['GET'],
        url: '/v1/mailboxes/:name/headers',
        scope: 'receive',
        tag: 'mailboxes',
        summary: 'Pending (queued or leased) messages, without bodies, oldest first.',
        params: S.nameParams,
        query: S.headersQuery,
        response: 'HeaderList',
      },
      async (req) => {
        const name = validateMailboxName(req.params.name, 'mailbox');
        requireMailbox(req.principal, name);
        return broker.headersPage(name, headersOptions(req.query));
      },
    );

    route<unknown, HeadersQuery, { name: string }>(
      {
        methods: ['GET'],
        url: '/v1/mailboxes/:name/dead',
        scope: 'receive',
        tag: 'mailboxes',
        summary: 'Dead letters of the mailbox (the pending messages of <name>.dead).',
        params: S.nameParams,
        query: S.headersQuery,
        response: 'HeaderList',
      },
      async (req) => {
        const name = validateMailboxName(req.params.name, 'mailbox');
        requireMailbox(req.principal, name);
        const dead = name.endsWith('.dead') ? name : `${name}.dead`;
        return broker.headersPage(dead, headersOptions(req.query));
      },
    );

    route<{ limit?: number } | undefined, unknown, { name: string }>(
      {
        methods: ['POST'],
        url: '/v1/mailboxes/:name/redrive',
        scope: 'admin',
        tag: 'mailboxes',
        summary: 'Move the dead letters of <name>.dead back to <name>, due now, with fresh delivery counts.',
        params: S.nameParams,
        body: S.limitBody,
        response: 'Count',
      },
      async (req) => {
        const name = validateMailboxName(req.params.name, 'mailbox');
        requireMailbox(req.principal, name);
        const dead = name.endsWith('.dead') ? name : `${name}.dead`;
        const limit = req.body?.limit;
        return { count: await broker.redrive(dead, limit === undefined ? {} : { limit }) };
      },
    );

    route<{ limit?: number } | undefined, unknown, { name: string }>(
      {
        methods: ['POST'],
        url: '/v1/mailboxes/:name/purge',
        scope: 'admin',
        tag: 'mailboxes',
        summary: 'Delete the queued messages of the mailbox (leased ones stay).',
        params: S.nameParams,
        body: S.limitBody,
        response: 'Count',
      },
      async (req) => {
        const name = validateMailboxName(req.params.name, 'mailbox');
        requireMailbox(req.principal, name);
        const limit = req.body?.limit;
        return { count: await broker.purge(name, limit === undefined ? {} : { limit }) };
      },
    );

    route<{ maxDeliveries?: number; retryDelayMs?: number; retentionMs?: number }, unknown, { name: string }>(
      {
        methods: ['PUT'],
        url: '/v1/mailboxes/:name',
        scope: 'admin',
        tag: 'mailboxes',
        summary: 'Create a mailbox or change its settings.',
        params: S.nameParams,
        body: S.settingsBody,
        response: 'Mailbox',
      },
      async (req) => {
        const name = validateMailboxName(req.params.name, 'mailbox');
        requireMailbox(req.principal, name);
        await broker.configure(name, req.body ?? {});
        const info = (await broker.mailboxes()).find((mb) => mb.name === name);
        return info;
      },
    );

    route<unknown, unknown, { name: string }>(
      {
        methods: ['GET'],
        url: '/v1/mailboxes/:name',
        scope: 'receive',
        tag: 'mailboxes',
        summary: 'One mailbox: settings and counts.',
        params: S.nameParams,
        response: 'Mailbox',
      },
      async (req) => {
        const name = validateMailboxName(req.params.name, 'mailbox');
        requireMailbox(req.principal, name);
        const info = (await broker.mailboxes()).find((mb) => mb.name === name);
        if (info === undefined) throw new MailboxNotFoundError(`no mailbox ${name}`);
        return info;
      },
    );

    route(
      {
        methods: ['GET'],
        url: '/v1/mailboxes',
        scope: 'receive',
        tag: 'mailboxes',
        summary: 'Every mailbox the token may see: settings and counts.',
        response: 'MailboxList',
      },
      async (req) => ({
        mailboxes: (await broker.mailboxes()).filter((mb) => mayUseMailbox(req.principal, mb.name)),
      }),
    );

    route(
      {
        methods: ['POST'],
        url: '/v1/reenqueue',
        scope: 'admin',
        tag: 'admin',
        summary: 'End every expired lease now (the sweep does it every second anyway).',
        response: 'Count',
      },
      async () => ({ count: await broker.reenqueue() }),
    );

    route(
      {
        methods: ['GET'],
        url: '/v1/stats',
        scope: 'admin',
        tag: 'admin',
        summary: 'Broker and store counters.',
        response: 'Stats',
      },
      async () => broker.stats(),
    );

    route(
      {
        methods: ['GET'],
        url: '/metrics',
        scope: 'admin',
        tag: 'admin',
        summary: 'Prometheus metrics.',
        response: 'Text',
      },
      async (_req, reply) =>
        reply
          .type('text/plain; version=0.0.4; charset=utf-8')
          .send(await metrics.render(broker, maxMailboxes)),
    );

    route(
      {
        methods: ['GET'],
        url: '/healthz',
        scope: null,
        tag: 'admin',
        summary: 'Liveness: 200 while the broker answers.',
        response: 'Health',
      },
      async (_req, reply) => {
        try {
          await broker.stats();
          return { ok: true };
        } catch (error) {
          return reply.code(503).send({ ok: false, error: (error as Error).message });
        }
      },
    );

    let openapi: object | undefined; // built at the first request, when every route is known
    route(
      {
        methods: ['GET'],
        url: '/v1/openapi.json',
        scope: null,
        tag: 'admin',
        summary: 'This document.',
        response: 'OpenApi',
      },
      async () => (openapi ??= buildOpenApi(docs, auth)),
    );

    registerUi(app);
  }
}
