/**
 * Errors of @switchyard/wire. Every error the package throws or reports is a `WireError`
 * with a stable `code`; callers branch on `code`, never on the message. The registry below
 * is the single list of codes, kept in step with `docs/errors.md` by a test. Codes are
 * never reused for another meaning.
 */

/** Every code this package can produce, with what it means. */
export const WIRE_ERROR_CODES = Object.freeze({
  WIRE_ERR_INVALID_ARGUMENT: 'An argument or option has the wrong type or is out of range.',
  WIRE_ERR_PROTOCOL: 'The peer sent bytes the codec cannot decode (malformed frame); the connection closes.',
  WIRE_ERR_FRAME_TOO_LARGE:
    'A frame (received or sent) is larger than maxFrameSize; a received one closes that connection before any large allocation.',
  WIRE_ERR_TRUNCATED_FRAME: 'The peer ended the stream in the middle of a frame.',
  WIRE_ERR_IDLE_TIMEOUT: 'Nothing was read or written for idleTimeoutMs; the connection was closed.',
  WIRE_ERR_OUTBOX_OVERFLOW:
    'The outbox grew past maxOutboxSize because send() was called after it returned false; the connection was destroyed.',
  WIRE_ERR_HANDLER_FAILED:
    'A Handler callback threw; the connection was destroyed with the thrown value as cause.',
  WIRE_ERR_TRANSPORT: 'The underlying transport (socket) failed or was reset; the cause is the system error.',
  WIRE_ERR_CONNECTION_CLOSED:
    'The connection closed before the operation (a wait for writable, a close) completed.',
  WIRE_ERR_CONNECT_FAILED:
    'connect() could not open a connection to the address; the cause is the system error.',
  WIRE_ERR_LISTEN_FAILED: 'listen() could not bind the address; the cause is the system error.',
  WIRE_ERR_ENGINE_CLOSED: 'The engine is closed: it accepts no new connections, listeners or timers.',
} as const);

export type WireErrorCode = keyof typeof WIRE_ERROR_CODES;

// A registered symbol, so `instanceof` holds across two copies of the package.
const BRAND: unique symbol = Symbol.for('switchyard.wire.error') as never;

/** Base class of every error of this package. */
export class WireError extends Error {
  readonly code: WireErrorCode;

  constructor(code: WireErrorCode, message: string, options?: ErrorOptions) {
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
export class WireInvalidArgumentError extends WireError {
  static readonly code = 'WIRE_ERR_INVALID_ARGUMENT';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_INVALID_ARGUMENT', message, options);
  }
}

/** Malformed input: what a Codec throws from `decode` (the spec's "ProtocolError"). */
export class WireProtocolError extends WireError {
  static readonly code = 'WIRE_ERR_PROTOCOL';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_PROTOCOL', message, options);
  }
}

/** A frame over `maxFrameSize`. */
export class WireFrameTooLargeError extends WireError {
  static readonly code = 'WIRE_ERR_FRAME_TOO_LARGE';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_FRAME_TOO_LARGE', message, options);
  }
}

/** End of stream inside a frame. */
export class WireTruncatedFrameError extends WireError {
  static readonly code = 'WIRE_ERR_TRUNCATED_FRAME';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_TRUNCATED_FRAME', message, options);
  }
}

/** No traffic for `idleTimeoutMs`. */
export class WireIdleTimeoutError extends WireError {
  static readonly code = 'WIRE_ERR_IDLE_TIMEOUT';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_IDLE_TIMEOUT', message, options);
  }
}

/** The outbox passed `maxOutboxSize`. */
export class WireOutboxOverflowError extends WireError {
  static readonly code = 'WIRE_ERR_OUTBOX_OVERFLOW';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_OUTBOX_OVERFLOW', message, options);
  }
}

/** A Handler callback threw. */
export class WireHandlerError extends WireError {
  static readonly code = 'WIRE_ERR_HANDLER_FAILED';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_HANDLER_FAILED', message, options);
  }
}

/** The transport failed. */
export class WireTransportError extends WireError {
  static readonly code = 'WIRE_ERR_TRANSPORT';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_TRANSPORT', message, options);
  }
}

/** The connection closed first. */
export class WireConnectionClosedError extends WireError {
  static readonly code = 'WIRE_ERR_CONNECTION_CLOSED';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_CONNECTION_CLOSED', message, options);
  }
}

/** connect() failed. */
export class WireConnectError extends WireError {
  static readonly code = 'WIRE_ERR_CONNECT_FAILED';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_CONNECT_FAILED', message, options);
  }
}

/** listen() failed. */
export class WireListenError extends WireError {
  static readonly code = 'WIRE_ERR_LISTEN_FAILED';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_LISTEN_FAILED', message, options);
  }
}

/** The engine is closed. */
export class WireEngineClosedError extends WireError {
  static readonly code = 'WIRE_ERR_ENGINE_CLOSED';
  constructor(message: string, options?: ErrorOptions) {
    super('WIRE_ERR_ENGINE_CLOSED', message, options);
  }
}
