export {
  WIRE_ERROR_CODES,
  WireError,
  WireInvalidArgumentError,
  WireProtocolError,
  WireFrameTooLargeError,
  WireTruncatedFrameError,
  WireIdleTimeoutError,
  WireOutboxOverflowError,
  WireHandlerError,
  WireTransportError,
  WireConnectionClosedError,
  WireConnectError,
  WireListenError,
  WireEngineClosedError,
} from './errors.js';
export type { WireErrorCode } from './errors.js';
export { DEFAULT_ENGINE_OPTIONS, resolveOptions } from './options.js';
export type { EngineOptions, ResolvedEngineOptions } from './options.js';
export { INSUFFICIENT_BUFFER, INCOMPLETE, incomplete } from './codec.js';
export type { Codec, CodecFactory, Decoded, Incomplete } from './codec.js';
export type { BufferPoolStats } from './buffer-pool.js';
export type { Connection, Handler, TimerId } from './connection.js';
export { ProtocolEngine, parseAddress } from './engine.js';
export type { Address, Listener, ListenOptions, Protocol } from './engine.js';
export type { Transport, TransportSink } from './transport.js';
export { SocketTransport, socketTransport } from './socket-transport.js';
export { memoryTransportPair } from './memory-transport.js';
export { lengthPrefixed } from './codecs/length-prefixed.js';
export type { FrameWindow, LengthHeader, LengthPrefixedOptions } from './codecs/length-prefixed.js';
export { lines } from './codecs/lines.js';
export type { LinesOptions } from './codecs/lines.js';
export { json } from './codecs/json.js';
export { transportConformance } from './conformance.js';
export type { TransportPair, MakeTransportPair } from './conformance.js';
