/** Builds the OpenAPI 3.1 document of the routes the server registered. */

export interface RouteDoc {
  readonly methods: readonly string[];
  readonly url: string;
  readonly tag: string;
  readonly summary: string;
  readonly body?: object;
  readonly query?: object;
  readonly params?: object;
  /** Form-encoded (pandora) rather than JSON. */
  readonly form?: boolean;
  /** Name of the response shape in components.schemas (or Text/Empty). */
  readonly response?: string;
  readonly status?: number;
}

const date = { type: 'string', format: 'date-time' };
const nullableDate = { type: ['string', 'null'], format: 'date-time' };

const header = {
  type: 'object',
  properties: {
    mid: { type: 'string' },
    sender: { type: 'string' },
    receiver: { type: 'string' },
    mailbox: { type: 'string', description: 'receiver, or <receiver>.dead once dead-lettered' },
    clientTime: date,
    receivedAt: date,
    sendWhen: date,
    delayMs: { type: 'integer' },
    state: { enum: ['queued', 'leased', 'confirmed'] },
    status: {
      enum: [1, 2, 4, 8, 16],
      description: '1 Confirmed, 2 Rejected, 4 Timeout, 8 NotDelivered, 16 Dead',
    },
    deliveryCount: { type: 'integer' },
    lid: { type: ['string', 'null'] },
    fence: { type: ['integer', 'null'] },
    leasedUntil: nullableDate,
    fetchTime: nullableDate,
    dueAt: nullableDate,
    blobKey: { type: 'string' },
    bodyBytes: { type: 'integer' },
    attempts: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          n: { type: 'integer' },
          consumer: { type: 'string' },
          fetchedAt: date,
          endedAt: date,
          outcome: { enum: [1, 2, 4] },
        },
      },
    },
  },
};

const schemas: Record<string, object> = {
  Error: {
    type: 'object',
    properties: {
      error: {
        type: 'object',
        properties: {
          code: { type: 'string', description: 'A MAILBOX_ERR_* code (docs/errors.md)' },
          message: { type: 'string' },
        },
      },
    },
  },
  Header: header,
  Message: {
    allOf: [
      { $ref: '#/components/schemas/Header' },
      { type: 'object', properties: { body: { type: 'object', additionalProperties: true } } },
    ],
  },
  MessageList: {
    type: 'object',
    properties: { messages: { type: 'array', items: { $ref: '#/components/schemas/Message' } } },
  },
  HeaderList: {
    type: 'object',
    properties: {
      messages: { type: 'array', items: { $ref: '#/components/schemas/Header' } },
      next: {
        type: ['string', 'null'],
        description: 'Pass as `cursor` for the next page; null when this page is the last.',
      },
    },
  },
  Mailbox: {
    type: 'object',
    properties: {
      name: { type: 'string' },
      settings: {
        type: 'object',
        properties: {
          maxDeliveries: { type: 'integer' },
          retryDelayMs: { type: 'integer' },
          retentionMs: { type: 'integer' },
        },
      },
      createdAt: date,
      ready: { type: 'integer' },
      delayed: { type: 'integer' },
      inFlight: { type: 'integer' },
      confirmed: { type: 'integer' },
    },
  },
  MailboxList: {
    type: 'object',
    properties: { mailboxes: { type: 'array', items: { $ref: '#/components/schemas/Mailbox' } } },
  },
  Count: { type: 'object', properties: { count: { type: 'integer' } } },
  AckResults: {
    type: 'object',
    properties: {
      results: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            mid: { type: 'string' },
            ok: { type: 'boolean' },
            error: { $ref: '#/components/schemas/Error/properties/error' },
          },
        },
      },
    },
  },
  Stats: { type: 'object', additionalProperties: true },
  Health: { type: 'object', properties: { ok: { type: 'boolean' } } },
  OpenApi: { type: 'object' },
};

export function buildOpenApi(routes: readonly RouteDoc[], auth: boolean): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const item = (paths[path] ??= {});
    const parameters: object[] = [];
    const params = (r.params as { properties?: Record<string, object> } | undefined)?.properties ?? {};
    for (const [name, schema] of Object.entries(params))
      parameters.push({ name, in: 'path', required: true, schema });
    for (const m of r.methods) {
      const op: Record<string, unknown> = {
        tags: [r.tag],
        summary: r.summary,
        operationId: `${m.toLowerCase()}${path.replace(/[^A-Za-z0-9]+/g, '_')}`,
      };
      const q =
        (r.query as { properties?: Record<string, object>; required?: string[] } | undefined) ?? undefined;
      const p = [...parameters];
      if (q?.properties !== undefined && (m === 'GET' || r.body === undefined))
        for (const [name, schema] of Object.entries(q.properties))
          p.push({ name, in: 'query', required: q.required?.includes(name) ?? false, schema });
      if (p.length > 0) op.parameters = p;
      if (r.body !== undefined && m !== 'GET')
        op.requestBody = {
          required: !(r.body as { type?: unknown }).type?.toString().includes('null'),
          content: {
            [r.form === true ? 'application/x-www-form-urlencoded' : 'application/json']: { schema: r.body },
          },
        };
      const status = String(r.status ?? 200);
      const res = r.response ?? 'Text';
      const content =
        r.form === true
          ? { 'application/x-www-form-urlencoded': { schema: { type: 'string' } } }
          : res === 'Text'
            ? { 'text/plain': { schema: { type: 'string' } } }
            : res === 'Empty'
              ? undefined
              : { 'application/json': { schema: { $ref: `#/components/schemas/${res}` } } };
      op.responses = {
        [status]: content === undefined ? { description: 'OK' } : { description: 'OK', content },
        ...(r.url.endsWith('/fetch') && r.form === true
          ? { 204: { description: 'No message is due.' } }
          : {}),
        '4XX': {
          description: 'A bad request, token, scope, lid or mailbox; nothing changed.',
          content:
            r.form === true
              ? {
                  'application/x-www-form-urlencoded': {
                    schema: { type: 'string', description: 'error=<message>' },
                  },
                }
              : { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      };
      item[m.toLowerCase()] = op;
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Switchyard mailbox broker',
      version: '1',
      description:
        'Durable mailboxes: send, fetch with a lease, ack. /v1/ is JSON; /api/ is pandora-compatible (form-encoded).',
    },
    servers: [{ url: '/' }],
    ...(auth ? { security: [{ bearer: [] }] } : {}),
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}
