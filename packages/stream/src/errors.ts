/**
 * Errors of @switchyard/stream. Every error the package throws or reports is a `StreamError`
 * with a stable `code`; callers branch on `code`, never on the message. The registry below
 * is the single list of codes, kept in step with `docs/errors.md` by a test. Codes are
 * never reused for another meaning.
 */

/** Every code this package can produce, with what it means. */
export const STREAM_ERROR_CODES = Object.freeze({
  STREAM_ERR_INVALID_ARGUMENT: 'An argument or option has the wrong type or is out of range.',
  STREAM_ERR_PROTOCOL: 'The peer sent bytes that break docs/wire-format.md; the connection is closed.',
  STREAM_ERR_FRAME_TOO_LARGE:
    'A frame, record, header or body is larger than maxFrameSize; refused before allocation.',
  STREAM_ERR_REMOTE:
    'The server’s source function or frame generator threw; `remoteCode` and the message come from it.',
  STREAM_ERR_TIMEOUT: 'A configured timeout expired; `timeout` names the option. The stream is cancelled.',
  STREAM_ERR_CANCELLED: 'The client cancelled the request or source (break, abort or a timeout).',
  STREAM_ERR_CONNECTION_LOST: 'The connection ended without GOAWAY while the stream was open.',
  STREAM_ERR_KEEPALIVE_TIMEOUT:
    'The peer did not answer a keepalive PING in time; the connection is destroyed.',
  STREAM_ERR_GOAWAY: 'The server is closing and did not take this request; it may be retried elsewhere.',
  STREAM_ERR_REFUSED: 'The server refused the request: maxConcurrentRequests is reached.',
  STREAM_ERR_NO_ENDPOINT: 'The directory has no endpoint for the service, or every endpoint is down.',
  STREAM_ERR_CLOSED: 'The client or server was closed.',
} as const);

export type StreamErrorCode = keyof typeof STREAM_ERROR_CODES;

// A registered symbol, so `instanceof` holds across two copies of the package.
const BRAND: unique symbol = Symbol.for('switchyard.stream.error') as never;

/** Base class of every error of this package. */
export class StreamError extends Error {
  readonly code: StreamErrorCode;

  constructor(code: StreamErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false });
    Object.defineProperty(this, BRAND, { value: true, enumerable: false });
  }

  /** Brand check: true for errors from any copy of this package; subclasses also match the code. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    if ((value as { [BRAND]?: unknown })[BRAND] !== true) return false;
    const code = (this as { code?: string }).code;
    return code === undefined || (value as { code?: unknown }).code === code;
  }
}

/** An argument or option was rejected before anything happened. */
export class StreamInvalidArgumentError extends StreamError {
  static readonly code = 'STREAM_ERR_INVALID_ARGUMENT';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_INVALID_ARGUMENT', message, options);
  }
}

/** The peer broke the wire format; the connection is closed. */
export class StreamProtocolError extends StreamError {
  static readonly code = 'STREAM_ERR_PROTOCOL';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_PROTOCOL', message, options);
  }
}

/** Something was larger than `maxFrameSize`; refused before it was allocated. */
export class StreamFrameTooLargeError extends StreamError {
  static readonly code = 'STREAM_ERR_FRAME_TOO_LARGE';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_FRAME_TOO_LARGE', message, options);
  }
}

/** The server-side source function or frame generator threw. */
export class StreamRemoteError extends StreamError {
  static readonly code = 'STREAM_ERR_REMOTE';
  /** The thrown error's string `code` on the server, or `ERROR`. */
  readonly remoteCode: string;
  constructor(remoteCode: string, message: string, options?: ErrorOptions) {
    super('STREAM_ERR_REMOTE', message, options);
    this.remoteCode = remoteCode;
  }
}

/** A configured timeout expired. */
export class StreamTimeoutError extends StreamError {
  static readonly code = 'STREAM_ERR_TIMEOUT';
  /** The option that expired, e.g. `frameReadTimeoutMs`. */
  readonly timeout: string;
  constructor(timeout: string, message: string, options?: ErrorOptions) {
    super('STREAM_ERR_TIMEOUT', message, options);
    this.timeout = timeout;
  }
}

/** The client cancelled (seen by the server as `request.signal.reason`). */
export class StreamCancelledError extends StreamError {
  static readonly code = 'STREAM_ERR_CANCELLED';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_CANCELLED', message, options);
  }
}

/** The connection ended without GOAWAY while the stream was open. */
export class StreamConnectionLostError extends StreamError {
  static readonly code = 'STREAM_ERR_CONNECTION_LOST';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_CONNECTION_LOST', message, options);
  }
}

/** The peer did not answer a keepalive PING in time. */
export class StreamKeepaliveTimeoutError extends StreamError {
  static readonly code = 'STREAM_ERR_KEEPALIVE_TIMEOUT';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_KEEPALIVE_TIMEOUT', message, options);
  }
}

/** The server sent GOAWAY before it took this request. */
export class StreamGoawayError extends StreamError {
  static readonly code = 'STREAM_ERR_GOAWAY';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_GOAWAY', message, options);
  }
}

/** The server refused the request (too many concurrent requests). */
export class StreamRefusedError extends StreamError {
  static readonly code = 'STREAM_ERR_REFUSED';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_REFUSED', message, options);
  }
}

/** No endpoint for the service, or all of them are down. */
export class StreamNoEndpointError extends StreamError {
  static readonly code = 'STREAM_ERR_NO_ENDPOINT';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_NO_ENDPOINT', message, options);
  }
}

/** The client or server was closed. */
export class StreamClosedError extends StreamError {
  static readonly code = 'STREAM_ERR_CLOSED';
  constructor(message: string, options?: ErrorOptions) {
    super('STREAM_ERR_CLOSED', message, options);
  }
}
