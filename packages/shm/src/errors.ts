/**
 * Errors of @switchyard/shm. Every error the package throws or reports is a `ShmError`
 * with a stable `code`; callers branch on `code`, never on the message. The registry below
 * is the single list of codes, kept in step with `docs/errors.md` by a test. Codes are
 * never reused for another meaning.
 */

/** Every code this package can produce, with what it means. */
export const SHM_ERROR_CODES = Object.freeze({
  SHM_ERR_INVALID_ARGUMENT: 'An argument or option has the wrong type or is out of range.',
  SHM_ERR_UNSUPPORTED:
    'The native addon is not available on this platform or failed to load (see `isSupported()`).',
  SHM_ERR_SYSTEM: 'A system call failed; `errno` and `syscall` say which and why.',
  SHM_ERR_EXISTS: 'The file to create already exists (journals are created exclusively).',
  SHM_ERR_NO_SPACE:
    'The file system cannot hold the file (ENOSPC, EFBIG or EDQUOT from posix_fallocate); nothing was mapped.',
  SHM_ERR_RECORD_TOO_LARGE: "The record is longer than the journal's maxMessageLength.",
  SHM_ERR_CHANNEL_FULL: 'The journal has no room left for this record; a smaller record may still fit.',
  SHM_ERR_WRITER_TIMEOUT:
    'No record or heartbeat arrived from the writer within the journal timeout: the writer is presumed dead.',
  SHM_ERR_CLOSED: 'The writer or reader was closed.',
  SHM_ERR_CORRUPT: 'The file is truncated or a header field or record is invalid.',
  SHM_ERR_FOREIGN_FILE: 'The file is not a Switchyard journal or pub/sub region (wrong signature).',
  SHM_ERR_UNSUPPORTED_VERSION:
    'The journal or region was written in a format version this package does not read.',
  SHM_ERR_NOT_READY:
    'The journal or region header has not been published yet (the writer is still creating it).',
  SHM_ERR_POOL_EXHAUSTED:
    'Every block of the pub/sub pool is out (held by samples, loans or unread ring entries); release some and retry.',
  SHM_ERR_DATA_TOO_LARGE: "The message is larger than the region's blockSize.",
  SHM_ERR_PUBLISHER_DEAD:
    "The publisher's heartbeat is older than staleTimeoutMs: the publisher process is presumed dead.",
  SHM_ERR_WOULD_BLOCK:
    "slowSubscriber 'block': publishing now would overwrite a message a live subscriber has not read yet; wait with `writable()`.",
  SHM_ERR_TIMEOUT: 'The other side did not appear (or no message came) within the given time.',
} as const);

export type ShmErrorCode = keyof typeof SHM_ERROR_CODES;

// A registered symbol, so `instanceof` holds across two copies of the package.
const BRAND: unique symbol = Symbol.for('switchyard.shm.error') as never;

/** Base class of every error of this package. */
export class ShmError extends Error {
  readonly code: ShmErrorCode;

  constructor(code: ShmErrorCode, message: string, options?: ErrorOptions) {
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
export class ShmInvalidArgumentError extends ShmError {
  static readonly code = 'SHM_ERR_INVALID_ARGUMENT';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_INVALID_ARGUMENT', message, options);
  }
}

/** The native addon cannot be used here. */
export class ShmUnsupportedError extends ShmError {
  static readonly code = 'SHM_ERR_UNSUPPORTED';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_UNSUPPORTED', message, options);
  }
}

/** A system call failed; `errno` is its symbolic name (`ENOENT`, …), `syscall` the call. */
export class ShmSystemError extends ShmError {
  static readonly code = 'SHM_ERR_SYSTEM';
  readonly errno: string;
  readonly syscall: string;
  constructor(message: string, errno: string, syscall: string, options?: ErrorOptions) {
    super('SHM_ERR_SYSTEM', message, options);
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** The file to create exists already. */
export class ShmExistsError extends ShmError {
  static readonly code = 'SHM_ERR_EXISTS';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_EXISTS', message, options);
  }
}

/** The file system is full (or a file size limit was hit) while reserving the file. */
export class ShmNoSpaceError extends ShmError {
  static readonly code = 'SHM_ERR_NO_SPACE';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_NO_SPACE', message, options);
  }
}

/** The record exceeds maxMessageLength. */
export class ShmRecordTooLargeError extends ShmError {
  static readonly code = 'SHM_ERR_RECORD_TOO_LARGE';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_RECORD_TOO_LARGE', message, options);
  }
}

/** No room left for this record; a smaller one may still fit. */
export class ShmChannelFullError extends ShmError {
  static readonly code = 'SHM_ERR_CHANNEL_FULL';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_CHANNEL_FULL', message, options);
  }
}

/** The writer has been silent for longer than the journal timeout. */
export class ShmWriterTimeoutError extends ShmError {
  static readonly code = 'SHM_ERR_WRITER_TIMEOUT';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_WRITER_TIMEOUT', message, options);
  }
}

/** The writer or reader was closed. */
export class ShmClosedError extends ShmError {
  static readonly code = 'SHM_ERR_CLOSED';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_CLOSED', message, options);
  }
}

/** Truncated file, invalid header field or invalid record. */
export class ShmCorruptError extends ShmError {
  static readonly code = 'SHM_ERR_CORRUPT';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_CORRUPT', message, options);
  }
}

/** Not a journal: the signature does not match. */
export class ShmForeignFileError extends ShmError {
  static readonly code = 'SHM_ERR_FOREIGN_FILE';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_FOREIGN_FILE', message, options);
  }
}

/** A journal format version this package does not read. */
export class ShmUnsupportedVersionError extends ShmError {
  static readonly code = 'SHM_ERR_UNSUPPORTED_VERSION';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_UNSUPPORTED_VERSION', message, options);
  }
}

/** The header is not published yet. */
export class ShmNotReadyError extends ShmError {
  static readonly code = 'SHM_ERR_NOT_READY';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_NOT_READY', message, options);
  }
}

/** Every block of the pool is out. */
export class ShmPoolExhaustedError extends ShmError {
  static readonly code = 'SHM_ERR_POOL_EXHAUSTED';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_POOL_EXHAUSTED', message, options);
  }
}

/** The message exceeds the block size. */
export class ShmDataTooLargeError extends ShmError {
  static readonly code = 'SHM_ERR_DATA_TOO_LARGE';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_DATA_TOO_LARGE', message, options);
  }
}

/** The publisher's heartbeat went stale. */
export class ShmPublisherDeadError extends ShmError {
  static readonly code = 'SHM_ERR_PUBLISHER_DEAD';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_PUBLISHER_DEAD', message, options);
  }
}

/** Publishing would overwrite an unread message of a live subscriber (slowSubscriber 'block'). */
export class ShmWouldBlockError extends ShmError {
  static readonly code = 'SHM_ERR_WOULD_BLOCK';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_WOULD_BLOCK', message, options);
  }
}

/** The peer did not appear, or nothing came, in time. */
export class ShmTimeoutError extends ShmError {
  static readonly code = 'SHM_ERR_TIMEOUT';
  constructor(message: string, options?: ErrorOptions) {
    super('SHM_ERR_TIMEOUT', message, options);
  }
}
