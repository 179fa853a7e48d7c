export { MAILBOX_ERROR_CODES, MailboxError, MailboxInvalidArgumentError } from './errors.js';
export type { MailboxErrorCode } from './errors.js';
