export {
  MAILBOX_ERROR_CODES,
  MailboxError,
  MailboxInvalidArgumentError,
  MailboxInvalidMailboxError,
  MailboxMessageTooLargeError,
  MailboxNotFoundError,
  MailboxLeaseInvalidError,
  MailboxOverloadedError,
  MailboxClosedError,
  MailboxStoreError,
  MailboxStoreLockedError,
  MailboxUnauthorizedError,
  MailboxForbiddenError,
  MailboxHttpError,
} from './errors.js';
export type { MailboxErrorCode } from './errors.js';
export { Broker } from './broker.js';
export type {
  BrokerStats,
  CallOptions,
  FetchManyOptions,
  FetchOptions,
  HeadersOptions,
  HeadersPage,
  LimitOptions,
  MailboxPoll,
  SendInput,
} from './broker.js';
export { ManualClock, systemClock } from './clock.js';
export type { CancelTimer, Clock } from './clock.js';
export {
  AckStatus,
  MessageStatus,
  decodeBody,
  encodeBody,
  deadLetterName,
  validateMailboxName,
} from './message.js';
export type {
  Attempt,
  AttemptOutcome,
  Body,
  HashAlgorithm,
  Message,
  MessageHeader,
  MessageState,
  MessageStatusValue,
} from './message.js';
export { DEFAULT_BROKER_OPTIONS, DEFAULT_MAILBOX_SETTINGS, resolveOptions } from './options.js';
export type { BrokerOptions, ResolvedBrokerOptions } from './options.js';
export { afterAttempt } from './store.js';
export type {
  BlobStore,
  HeadersPosition,
  HeadersRows,
  LeaseOutcome,
  MailboxInfo,
  MailboxSettings,
  MessageStore,
  NewMessage,
  StoreOp,
  StoreResult,
  StoreStats,
} from './store.js';
export { MemoryStore, MemoryStoreData } from './memory-store.js';
export { SqliteStore } from './sqlite-store.js';
export type { SqliteStoreOptions } from './sqlite-store.js';
export { SqliteThreadStore } from './sqlite-thread.js';
export { migrateSqliteToPostgres, openPostgresStore } from './postgres/open.js';
export type { MigrateOptions, MigrateReport } from './postgres/migrate-sqlite.js';
export type { PostgresStore, PostgresStoreOptions } from './postgres/store.js';
export type { DatabaseClock } from './postgres/db-clock.js';
export { MailboxClient } from './client/client.js';
export type {
  ClientCallOptions,
  ClientFetchOptions,
  ClientHeadersOptions,
  ClientHeadersPage,
  ClientSendInput,
  ConsumeContext,
  ConsumeOptions,
  MailboxClientOptions,
} from './client/client.js';
export { formatGoDuration, parseGoDuration } from './client/duration.js';
export { DEFAULT_SERVER_OPTIONS, MailboxServer, httpStatusOf } from './http/server.js';
export type { MailboxServerOptions } from './http/server.js';
export { SCOPES } from './http/auth.js';
export type { Scope, TokenSpec } from './http/auth.js';
export { storeConformance } from './conformance.js';
export type { StoreHarness } from './conformance.js';
export { MailboxBinaryServer, DEFAULT_BINARY_SERVER_OPTIONS } from './binary/server.js';
export type { MailboxBinaryServerOptions } from './binary/server.js';
export { MailboxBinaryClient } from './binary/client.js';
export type {
  BinaryCallOptions,
  BinaryConsumeContext,
  BinaryConsumeOptions,
  BinaryFetchOptions,
  BinarySendInput,
  MailboxBinaryClientOptions,
  SubscribeOptions,
} from './binary/client.js';
export { connectMailbox } from './binary/connect.js';
export { DEFAULT_BINARY_PORT } from './binary/protocol.js';
