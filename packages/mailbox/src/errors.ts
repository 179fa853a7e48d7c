/**
 * Errors of @switchyard/mailbox. Every error the package throws or reports is a `MailboxError`
 * with a stable `code`; callers branch on `code`, never on the message. The registry below
 * is the single list of codes, kept in step with `docs/errors.md` by a test. Codes are
 * never reused for another meaning.
 */

/** Every code this package can produce, with what it means. */
export const MAILBOX_ERROR_CODES = Object.freeze({
  MAILBOX_ERR_INVALID_ARGUMENT: 'An argument or option has the wrong type or is out of range.',
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
