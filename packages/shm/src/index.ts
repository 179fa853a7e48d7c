export {
  SHM_ERROR_CODES,
  ShmError,
  ShmInvalidArgumentError,
  ShmUnsupportedError,
  ShmSystemError,
  ShmExistsError,
  ShmNoSpaceError,
  ShmRecordTooLargeError,
  ShmChannelFullError,
  ShmWriterTimeoutError,
  ShmClosedError,
  ShmCorruptError,
  ShmForeignFileError,
  ShmUnsupportedVersionError,
  ShmNotReadyError,
} from './errors.js';
export type { ShmErrorCode } from './errors.js';
export { isSupported, BINDING_ENV } from './native.js';
export { createJournal, JournalWriter } from './journal-writer.js';
export { openJournal, JournalReader } from './journal-reader.js';
export type { ReadOptions } from './journal-reader.js';
export { inspectJournal } from './journal-inspect.js';
export type { JournalInspection, JournalReaderSlot } from './journal-inspect.js';
export type { JournalHeader, TickUnit } from './journal-format.js';
export { JOURNAL_DEFAULTS, OPEN_JOURNAL_DEFAULTS, WAIT_STRATEGIES } from './options.js';
export type { JournalOptions, OpenJournalOptions, WaitStrategy } from './options.js';
