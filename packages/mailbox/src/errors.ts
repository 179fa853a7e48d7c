/**
 * Errors of @switchyard/mailbox. Every error the package throws or reports is a `MailboxError`
 * with a stable `code`; callers branch on `code`, never on the message. The registry below
 * is the single list of codes, kept in step with `docs/errors.md` by a test. Codes are
 * never reused for another meaning.
 */

/** Every code this package can produce, with what it means. */
export const MAILBOX_ERROR_CODES = Object.freeze({
  MAILBOX_ERR_INVALID_ARGUMENT: 'An argument or option has the wrong type or is out of range.',
  MAILBOX_ERR_INVALID_MAILBOX:
    'A mailbox name is not 1–200 characters of letters, digits and `@ . _ - : /` (a dead-letter name may add `.dead`).',
  MAILBOX_ERR_MESSAGE_TOO_LARGE: 'The encoded body of a message is larger than `maxMessageBytes`.',
  MAILBOX_ERR_NOT_FOUND: 'No message has that mid (never sent, or collected after its retention).',
  MAILBOX_ERR_LEASE_INVALID:
    'The lid does not name the current, unexpired lease of the message (forged, stale, expired or already acked); nothing changed. pandora’s ErrUnableToChangeStatus.',
  MAILBOX_ERR_OVERLOADED:
    'A bounded queue is full (`maxPendingOps` operations waiting for a commit, or `maxWaiters` long polls); retry later.',
  MAILBOX_ERR_CLOSED: 'The broker or store was closed before or while the operation ran.',
  MAILBOX_ERR_STORE:
    'The store failed to apply a batch (I/O, corruption, disk full); the whole batch was rolled back.',
  MAILBOX_ERR_STORE_LOCKED: 'The SQLite database is owned by another process (one process owns a database).',
  MAILBOX_ERR_UNAUTHORIZED:
    'The HTTP request carried no bearer token, or one the server does not know (401); nothing changed.',
  MAILBOX_ERR_FORBIDDEN:
    'The bearer token is valid but not for this scope (send, receive, admin) or mailbox (403); nothing changed.',
  MAILBOX_ERR_HTTP:
    'The mailbox server could not be reached, or answered with something other than the API (`MailboxClient`).',
} as const);

export type MailboxErrorCode = keyof typeof MAILBOX_ERROR_CODES;

// A registered symbol, so `instanceof` holds across two copies of the package.
const BRAND: unique symbol = Symbol.for('switchyard.mailbox.error') as never;

/** Base class of every error of this package. */
export class MailboxError extends Error {
  readonly code: MailboxErrorCode;

  constructor(code: MailboxErrorCode, message: string, options?: ErrorOptions) {
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
export class MailboxInvalidArgumentError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_INVALID_ARGUMENT';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_INVALID_ARGUMENT', message, options);
  }
}

/** A mailbox name broke the naming rule; nothing happened. */
export class MailboxInvalidMailboxError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_INVALID_MAILBOX';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_INVALID_MAILBOX', message, options);
  }
}

/** The body was larger than `maxMessageBytes`; nothing was stored. */
export class MailboxMessageTooLargeError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_MESSAGE_TOO_LARGE';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_MESSAGE_TOO_LARGE', message, options);
  }
}

/** No message has that mid. */
export class MailboxNotFoundError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_NOT_FOUND';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_NOT_FOUND', message, options);
  }
}

/** The lid is not the current valid lease of the message; nothing changed. */
export class MailboxLeaseInvalidError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_LEASE_INVALID';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_LEASE_INVALID', message, options);
  }
}

/** A bounded queue was full. */
export class MailboxOverloadedError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_OVERLOADED';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_OVERLOADED', message, options);
  }
}

/** The broker or store was closed. */
export class MailboxClosedError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_CLOSED';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_CLOSED', message, options);
  }
}

/** The store failed; `cause` holds the underlying error. */
export class MailboxStoreError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_STORE';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_STORE', message, options);
  }
}

/** Another process owns the SQLite database. */
export class MailboxStoreLockedError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_STORE_LOCKED';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_STORE_LOCKED', message, options);
  }
}

/** An HTTP request had no valid bearer token (401). */
export class MailboxUnauthorizedError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_UNAUTHORIZED';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_UNAUTHORIZED', message, options);
  }
}

/** A valid token lacked the scope or mailbox an HTTP request needs (403). */
export class MailboxForbiddenError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_FORBIDDEN';
  constructor(message: string, options?: ErrorOptions) {
    super('MAILBOX_ERR_FORBIDDEN', message, options);
  }
}

/** The server was unreachable or its answer was not the API's; `status` is the HTTP status (0: no answer). */
export class MailboxHttpError extends MailboxError {
  static readonly code = 'MAILBOX_ERR_HTTP';
  readonly status: number;
  constructor(message: string, status: number, options?: ErrorOptions) {
    super('MAILBOX_ERR_HTTP', message, options);
    this.status = status;
  }
}
