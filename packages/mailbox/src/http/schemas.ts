/**
 * JSON schemas of the /v1/ routes (validated by fastify, published in /v1/openapi.json) and
 * the form parameters of the pandora routes (documented only: pandora's routes take any field).
 */
import type { SendInput } from '../broker.js';
import { parseGoDuration } from '../client/duration.js';
import { MailboxInvalidArgumentError } from '../errors.js';
import type { Body } from '../message.js';

const mailboxName = {
  type: 'string',
  minLength: 1,
  maxLength: 205,
  pattern: '^[A-Za-z0-9@._\\-:/]+$',
} as const;
const hex = (n: string): object => ({ type: 'string', pattern: `^[0-9a-f]{${n}}$` });

export const bodySchema = {
  type: 'object',
  description: 'String fields; a field may repeat (an array of strings), as in Go url.Values.',
  additionalProperties: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
} as const;

export const sendBody = {
  type: 'object',
  required: ['sender', 'receiver', 'body'],
  additionalProperties: false,
  properties: {
    sender: { type: 'string', maxLength: 205 },
    receiver: mailboxName,
    body: bodySchema,
    delayMs: { type: 'integer', minimum: 0 },
    delay: {
      type: 'string',
      description: 'A Go duration (1s, 5m, 1h30m) instead of delayMs.',
      maxLength: 100,
    },
    clientTime: {
      type: 'string',
      format: 'date-time',
      description: 'With it the send is idempotent (same sender, receiver, clientTime, body: same mid).',
    },
  },
} as const;

export interface SendBody {
  sender: string;
  receiver: string;
  body: Body;
  delayMs?: number;
  delay?: string;
  clientTime?: string;
}

export function toSendInput(b: SendBody): SendInput {
  let delayMs = b.delayMs;
  if (b.delay !== undefined) {
    if (delayMs !== undefined) throw new MailboxInvalidArgumentError('give delay or delayMs, not both');
    const d = parseGoDuration(b.delay);
    if (d === undefined)
      throw new MailboxInvalidArgumentError(`delay ${JSON.stringify(b.delay)} is not a Go duration`);
    delayMs = Math.max(0, Math.ceil(d));
  }
  let clientTime: Date | undefined;
  if (b.clientTime !== undefined) {
    clientTime = new Date(b.clientTime);
    if (Number.isNaN(clientTime.getTime()))
      throw new MailboxInvalidArgumentError('clientTime is not a valid time');
  }
  return {
    sender: b.sender,
    receiver: b.receiver,
    body: b.body,
    ...(delayMs === undefined ? {} : { delayMs }),
    ...(clientTime === undefined ? {} : { clientTime }),
  };
}

export const batchBody = (max: number): object => ({
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: { messages: { type: 'array', minItems: 1, maxItems: max, items: sendBody } },
});

export const midParams = {
  type: 'object',
  required: ['mid'],
  properties: { mid: { type: 'string', pattern: '^[0-9a-f]{40}$|^[0-9a-f]{64}$' } },
} as const;

export const nameParams = { type: 'object', required: ['name'], properties: { name: mailboxName } } as const;

export const ackBody = {
  type: 'object',
  required: ['lid', 'status'],
  additionalProperties: false,
  properties: {
    lid: hex('32'),
    status: { type: 'integer', enum: [1, 2], description: '1 Confirmed, 2 Rejected' },
  },
} as const;

export const acksBody = (max: number): object => ({
  type: 'object',
  required: ['acks'],
  additionalProperties: false,
  properties: {
    acks: {
      type: 'array',
      minItems: 1,
      maxItems: max,
      items: {
        type: 'object',
        required: ['mid', 'lid', 'status'],
        additionalProperties: false,
        properties: {
          mid: { type: 'string', maxLength: 64 },
          lid: { type: 'string', maxLength: 64 },
          status: { type: 'integer', enum: [1, 2] },
        },
      },
    },
  },
});

export const extendBody = {
  type: 'object',
  required: ['lid', 'leaseMs'],
  additionalProperties: false,
  properties: { lid: hex('32'), leaseMs: { type: 'integer', minimum: 1 } },
} as const;

export const fetchBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    max: { type: 'integer', minimum: 1, description: 'Most messages (default 1).' },
    leaseMs: { type: 'integer', minimum: 1 },
    waitMs: { type: 'integer', minimum: 0, description: 'Long poll: wait up to this long for a message.' },
    consumer: { type: 'string', maxLength: 200, description: 'Recorded in the attempt history.' },
  },
} as const;

export const headersQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    after: {
      type: 'string',
      format: 'date-time',
      description:
        'Only messages received after this time (exclusive, millisecond resolution). Not with cursor: ' +
        'paging by time skips or repeats messages received in the same millisecond.',
    },
    cursor: {
      type: 'string',
      maxLength: 200,
      description:
        'Continue after the previous page: its `next`. Opaque; pages by (receivedAt, send order), so ' +
        'no message is skipped or repeated. Not with after.',
    },
    limit: {
      type: 'string',
      pattern: '^[1-9][0-9]{0,3}$',
      description: 'Most headers (1–1000, default 100).',
    },
  },
} as const;

export const limitBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1 } },
} as const;

export const settingsBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    maxDeliveries: { type: 'integer', minimum: 1 },
    retryDelayMs: { type: 'integer', minimum: 0 },
    retentionMs: { type: 'integer', minimum: 0 },
  },
} as const;

const formObject = (props: Record<string, string>, required: string[] = []): object => ({
  type: 'object',
  required,
  properties: Object.fromEntries(
    Object.entries(props).map(([k, d]) => [k, { type: 'string', description: d }]),
  ),
});

export const pandoraSend = {
  summary:
    'pandora Send: form fields sender, receiver, delay (Go duration), clientTime (RFC 3339) and any body fields; answers mid=<mid>.',
  body: formObject(
    {
      sender: 'sender mailbox',
      receiver: 'receiver mailbox',
      delay: 'Go duration, e.g. 1s, 5m, 1h30m',
      clientTime: 'RFC 3339 time; makes the send idempotent',
    },
    ['sender', 'receiver'],
  ),
};
export const pandoraFetch = {
  summary:
    'pandora Fetch: receiver, leaseTime (Go duration; default 5m), wait (Go duration, long poll); 204 when empty, else the body and header fields form-encoded.',
  body: formObject(
    { receiver: 'mailbox', leaseTime: 'Go duration', wait: 'Go duration (Switchyard extension)' },
    ['receiver'],
  ),
};
export const pandoraAck = {
  summary:
    'pandora Ack: mid, lid, statusCode (1 Confirmed, 2 Rejected); 200 with an empty body, 400 error=unable to change status.',
  body: formObject({ mid: 'message id', lid: 'lease id', statusCode: '1 or 2' }, [
    'mid',
    'lid',
    'statusCode',
  ]),
};
export const pandoraHeaders = {
  summary:
    'pandora admin/headers: receiver, receivedat (RFC 3339 or a Go duration from now, e.g. -24h); JSON list of url.Values (null when none).',
  query: formObject(
    { receiver: 'mailbox', receivedat: 'RFC 3339 time or Go duration', limit: 'default 10' },
    ['receiver'],
  ),
};
export const pandoraFetchBlob = {
  summary: 'pandora admin/fetchBlob: mid (a message mid or a blob key); the stored form-encoded body.',
  query: formObject({ mid: 'message mid or blob key' }, ['mid']),
};
export const pandoraReenqueue = {
  summary: 'pandora Reenqueue: end the expired leases (as of now, or `now` if earlier); answers count=<n>.',
  body: formObject({ now: 'RFC 3339 time (optional)' }),
};
