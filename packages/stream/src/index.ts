export {
  STREAM_ERROR_CODES,
  StreamError,
  StreamInvalidArgumentError,
  StreamProtocolError,
  StreamFrameTooLargeError,
  StreamRemoteError,
  StreamTimeoutError,
  StreamCancelledError,
  StreamConnectionLostError,
  StreamKeepaliveTimeoutError,
  StreamGoawayError,
  StreamRefusedError,
  StreamNoEndpointError,
  StreamClosedError,
} from './errors.js';
export type { StreamErrorCode } from './errors.js';
export {
  CLIENT_DEFAULTS,
  SERVER_DEFAULTS,
  DEFAULT_MAX_FRAME_SIZE,
  resolveClientOptions,
  resolveServerOptions,
} from './options.js';
export type {
  ClientOptions,
  CommonOptions,
  Directory,
  ResolvedClientOptions,
  ResolvedServerOptions,
  ServerOptions,
} from './options.js';
export { StreamServer } from './server.js';
export { StreamClient, StaticDirectory, rendezvousOrder } from './client.js';
export type { PostOptions } from './client.js';
export type { Frames, Source } from './client-session.js';
export type { Request, ServeContext, SourceFunc, SourceInit } from './server-session.js';
export {
  FrameType,
  HEADER_SIZE,
  PAYLOAD_ALLOWANCE,
  PREFACE_SIZE,
  PROTOCOL_VERSION,
  RECORD_LZ4,
  createStreamCodec,
  encodedSize,
} from './frames.js';
export type { Frame, StreamCodecOptions } from './frames.js';
export { streamConformance } from './conformance.js';
