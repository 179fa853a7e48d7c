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
  ShmPoolExhaustedError,
  ShmDataTooLargeError,
  ShmPublisherDeadError,
  ShmWouldBlockError,
  ShmTimeoutError,
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
export { Publisher, Loan } from './pubsub-publisher.js';
export type { PublisherStats } from './pubsub-publisher.js';
export { Subscriber, Sample } from './pubsub-subscriber.js';
export type { DrainCallback, RecvOptions, RecvSyncOptions } from './pubsub-subscriber.js';
export { ShmChannel } from './pubsub-channel.js';
export type { ChannelOptions } from './pubsub-channel.js';
export { ShmTransport, listenShmTransport, connectShmTransport } from './pubsub-transport.js';
export type { ShmTransportOptions } from './pubsub-transport.js';
export { inspectRegionFile, listRegions } from './pubsub-inspect.js';
export type { RegionInspection, RegionListing, RegionSubscriber } from './pubsub-inspect.js';
export { removeRegionFiles } from './pubsub-publisher.js';
export { regionPath, REGION_PREFIX } from './pubsub-format.js';
export type { RegionHeader, SlowSubscriberPolicy } from './pubsub-format.js';
export { PUBSUB_DEFAULTS, SUBSCRIBER_DEFAULTS } from './options.js';
export type { PubSubConfig, SubscriberOptions } from './options.js';
