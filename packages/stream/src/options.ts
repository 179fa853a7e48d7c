import type { Transport } from '@switchyard/wire';
import { StreamInvalidArgumentError } from './errors.js';

/** chanserv's FrameSizeLimit: the largest frame, source header or request body (100 MiB). */
export const DEFAULT_MAX_FRAME_SIZE = 100 * 1024 * 1024;

/** A service name resolver: chanserv's discovery. */
export interface Directory {
  /** The endpoints ("tcp://…", "unix:…", …) serving `service`; empty when none. */
  resolve(service: string, signal?: AbortSignal): readonly string[] | Promise<readonly string[]>;
}

/** Options shared by client and server. */
export interface CommonOptions {
  /** Largest application frame, source header or request body in bytes. Default 100 MiB. */
  maxFrameSize?: number;
  /** Bytes the peer may have in flight to us (the preface window). Default 16 MiB. */
  connectionWindowBytes?: number;
  /** Send a PING after this long without receiving anything; 0 disables. Default 10 s. */
  keepaliveIntervalMs?: number;
  /** Destroy the connection if nothing arrives this long after a PING. Default 5 s. */
  keepaliveTimeoutMs?: number;
}

export interface ClientOptions extends CommonOptions {
  /** Connecting to an endpoint. Default 10 s. */
  dialTimeoutMs?: number;
  /** Waiting for the next frame of a source while the consumer waits; 0 = off (default). */
  frameReadTimeoutMs?: number;
  /** Waiting for the next source announcement while the consumer waits; 0 = off (default). */
  masterReadTimeoutMs?: number;
  /** Writing the request (outbox drain) after it was queued; 0 = off (default). */
  masterWriteTimeoutMs?: number;
  /**
   * chanserv's frame channel: frames of one source the client holds decoded for the
   * application, and the most `frames.batches()` hands over at once (a single DATA frame of
   * more is handed over whole). Also the least frame window (`streamWindowFrames`). Default 1024.
   */
  frameBufferSize?: number;
  /**
   * Frame window per source: frames the server may send on a source before it must wait for
   * credit (the REQUEST's frame window). 0 (default) derives it from the byte window:
   * max(`frameBufferSize`, `streamWindowBytes` / 64), so frames of 64 bytes and more are
   * bounded by the byte window alone (4 MiB: 65 536 frames of 64 B), the way a TCP window
   * bounds one of chanserv's per-source connections; smaller frames by count.
   */
  streamWindowFrames?: number;
  /** Source window per request: announced sources buffered before the server waits. Default 128. */
  sourceBufferSize?: number;
  /** Byte window per source (stored bytes). Default 4 MiB. */
  streamWindowBytes?: number;
  /** Most requests open at once per connection; beyond it a further connection is opened. Default 16 384. */
  maxConcurrentRequests?: number;
  /** A dead endpoint is skipped for this long, then tried again. Default 5 s. */
  deadEndpointRetryMs?: number;
  /** Resolves service names; literal addresses ("tcp://", "unix:", "memory:", "shm:") bypass it. */
  directory?: Directory;
  /** Called with connection-level errors (the iterators get their own errors too). */
  onError?: (error: Error) => void;
  /**
   * Opens a transport to an endpoint the engine cannot dial itself (`memory:…`, `shm:…`);
   * `tcp://` and `unix:` endpoints are dialled by `@switchyard/wire`.
   */
  dial?: (endpoint: string, signal: AbortSignal) => Promise<Transport> | Transport;
}

export interface ServerOptions extends CommonOptions {
  /** Waiting for the client to accept an announced source (source credit). Default 30 s. */
  chanAcceptTimeoutMs?: number;
  /** Waiting to write a frame (frame credit or outbox drain); 0 = off (default). */
  frameWriteTimeoutMs?: number;
  /** A new connection must send its first request within this; 0 = off (default). */
  masterReadTimeoutMs?: number;
  /** Writing a source announcement (outbox drain); 0 = off (default). */
  masterWriteTimeoutMs?: number;
  /** Deadline for a request and every source it announced; 0 = off (default). */
  servingTimeoutMs?: number;
  /** The source function must announce all its sources within this; 0 = off (default). */
  sourcingTimeoutMs?: number;
  /** Sequential serving errors before backing off and calling `onMaxErrorMass`. Default 10. */
  maxErrorMass?: number;
  /** Called when the error mass is reached, with the back-off about to be applied. */
  onMaxErrorMass?: (mass: number, error: Error, backoffMs: number) => void;
  /** First back-off delay after the error mass is reached; doubles on each further error. Default 100 ms. */
  errorBackoffBaseMs?: number;
  /** Upper bound of the back-off delay. Default 10 s. */
  errorBackoffMaxMs?: number;
  /** LZ4-compress frames (only those that get smaller). Default false. */
  useCompression?: boolean;
  /** Frames smaller than this are never compressed. Default 128 bytes. */
  compressionMinBytes?: number;
  /** Most requests served at once per connection; more are refused. Default 16 384. */
  maxConcurrentRequests?: number;
  /** How long `close()` lets in-flight streams finish after GOAWAY. Default 10 s. */
  closeTimeoutMs?: number;
  /** Called with a source function (master) error. */
  onError?: (error: Error) => void;
  /** Called with a frame generator (chan) error. */
  onChanError?: (error: Error) => void;
}

type Hooks = 'onError' | 'onChanError' | 'onMaxErrorMass' | 'directory' | 'dial';
export type ResolvedClientOptions = Readonly<Required<Omit<ClientOptions, Hooks>>> &
  Readonly<Pick<ClientOptions, 'onError' | 'directory' | 'dial'>>;
export type ResolvedServerOptions = Readonly<Required<Omit<ServerOptions, Hooks>>> &
  Readonly<Pick<ServerOptions, 'onError' | 'onChanError' | 'onMaxErrorMass'>>;

const COMMON_DEFAULTS = {
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  connectionWindowBytes: 16 * 1024 * 1024,
  keepaliveIntervalMs: 10_000,
  keepaliveTimeoutMs: 5_000,
};

export const CLIENT_DEFAULTS: Readonly<Required<Omit<ClientOptions, Hooks>>> = Object.freeze({
  ...COMMON_DEFAULTS,
  dialTimeoutMs: 10_000,
  frameReadTimeoutMs: 0,
  masterReadTimeoutMs: 0,
  masterWriteTimeoutMs: 0,
  frameBufferSize: 1024,
  streamWindowFrames: 0,
  sourceBufferSize: 128,
  streamWindowBytes: 4 * 1024 * 1024,
  maxConcurrentRequests: 16_384,
  deadEndpointRetryMs: 5_000,
});

export const SERVER_DEFAULTS: Readonly<Required<Omit<ServerOptions, Hooks>>> = Object.freeze({
  ...COMMON_DEFAULTS,
  chanAcceptTimeoutMs: 30_000,
  frameWriteTimeoutMs: 0,
  masterReadTimeoutMs: 0,
  masterWriteTimeoutMs: 0,
  servingTimeoutMs: 0,
  sourcingTimeoutMs: 0,
  maxErrorMass: 10,
  errorBackoffBaseMs: 100,
  errorBackoffMaxMs: 10_000,
  useCompression: false,
  compressionMinBytes: 128,
  maxConcurrentRequests: 16_384,
  closeTimeoutMs: 10_000,
});

const MAX_WINDOW = 0x7fffffff;

/**
 * The derived frame window gives a source one frame of window per this many bytes of its
 * byte window: at and above this frame size the byte window is what binds.
 */
export const WINDOW_BYTES_PER_FRAME = 64;

function checkInt(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new StreamInvalidArgumentError(
      `option "${name}" must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return value;
}

function checkFunction<T>(name: string, value: T | undefined): T | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new StreamInvalidArgumentError(`option "${name}" must be a function`);
  }
  return value;
}

function resolveNumbers<D extends Record<string, number | boolean>>(
  defaults: D,
  options: Record<string, unknown>,
  ranges: Partial<Record<keyof D, [number, number]>>,
): D {
  const out: Record<string, number | boolean> = { ...defaults };
  for (const key of Object.keys(defaults)) {
    const value = options[key];
    if (value === undefined) continue;
    if (typeof defaults[key] === 'boolean') {
      if (typeof value !== 'boolean')
        throw new StreamInvalidArgumentError(`option "${key}" must be a boolean`);
      out[key] = value;
    } else {
      const [min, max] = ranges[key] ?? [0, MAX_WINDOW];
      out[key] = checkInt(key, value, min, max);
    }
  }
  return out as D;
}

function checkKnown(options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new StreamInvalidArgumentError(`unknown option "${key}"`);
  }
}

/** Validates client options and fills in the defaults; messages name the option. */
export function resolveClientOptions(options: ClientOptions = {}): ResolvedClientOptions {
  if (typeof options !== 'object' || options === null) {
    throw new StreamInvalidArgumentError('client options must be an object');
  }
  checkKnown(options, [...Object.keys(CLIENT_DEFAULTS), 'onError', 'directory', 'dial']);
  const numbers = resolveNumbers(CLIENT_DEFAULTS, options as Record<string, unknown>, {
    maxFrameSize: [1, 0x7fffffff - 65_536],
    connectionWindowBytes: [1, MAX_WINDOW],
    frameBufferSize: [1, MAX_WINDOW],
    streamWindowFrames: [0, MAX_WINDOW],
    sourceBufferSize: [1, MAX_WINDOW],
    streamWindowBytes: [1, MAX_WINDOW],
    maxConcurrentRequests: [1, 1 << 30],
  });
  const directory = options.directory;
  if (directory !== undefined && (typeof directory !== 'object' || typeof directory.resolve !== 'function')) {
    throw new StreamInvalidArgumentError('option "directory" must have a resolve(service) method');
  }
  const onError = checkFunction('onError', options.onError);
  const dial = checkFunction('dial', options.dial);
  const streamWindowFrames =
    numbers.streamWindowFrames > 0
      ? numbers.streamWindowFrames
      : Math.max(numbers.frameBufferSize, Math.floor(numbers.streamWindowBytes / WINDOW_BYTES_PER_FRAME));
  return Object.freeze({
    ...numbers,
    streamWindowFrames,
    ...(onError === undefined ? {} : { onError }),
    ...(directory === undefined ? {} : { directory }),
    ...(dial === undefined ? {} : { dial }),
  });
}

/** Validates server options and fills in the defaults; messages name the option. */
export function resolveServerOptions(options: ServerOptions = {}): ResolvedServerOptions {
  if (typeof options !== 'object' || options === null) {
    throw new StreamInvalidArgumentError('server options must be an object');
  }
  checkKnown(options, [...Object.keys(SERVER_DEFAULTS), 'onError', 'onChanError', 'onMaxErrorMass']);
  const numbers = resolveNumbers(SERVER_DEFAULTS, options as Record<string, unknown>, {
    maxFrameSize: [1, 0x7fffffff - 65_536],
    connectionWindowBytes: [1, MAX_WINDOW],
    maxErrorMass: [1, MAX_WINDOW],
    maxConcurrentRequests: [1, 1 << 30],
  });
  if (numbers.errorBackoffMaxMs < numbers.errorBackoffBaseMs) {
    throw new StreamInvalidArgumentError('option "errorBackoffMaxMs" must be >= "errorBackoffBaseMs"');
  }
  const onError = checkFunction('onError', options.onError);
  const onChanError = checkFunction('onChanError', options.onChanError);
  const onMaxErrorMass = checkFunction('onMaxErrorMass', options.onMaxErrorMass);
  return Object.freeze({
    ...numbers,
    ...(onError === undefined ? {} : { onError }),
    ...(onChanError === undefined ? {} : { onChanError }),
    ...(onMaxErrorMass === undefined ? {} : { onMaxErrorMass }),
  });
}
