import { WireInvalidArgumentError } from './errors.js';

/** Options of a `ProtocolEngine`. Every one has a default (`DEFAULT_ENGINE_OPTIONS`). */
export interface EngineOptions {
  /** Size in bytes of a pooled read/write buffer (mai's InitialBufferSize). Default 32 KiB. */
  initialBufferSize?: number;
  /** Buffers allocated into the pool when the engine starts (mai's InitialBufferPoolSize). Default 16. */
  initialBufferPoolSize?: number;
  /** Idle buffers the pool keeps; beyond it buffers are allocated and dropped. Default 128. */
  maxBufferPoolSize?: number;
  /** Largest encoded frame, header included, received or sent. Default 16 MiB. */
  maxFrameSize?: number;
  /** Outbox bytes at which `send()` starts returning false. Default 64 KiB. */
  highWaterMark?: number;
  /** Outbox bytes at or under which the connection is writable again (hysteresis). Default 32 KiB. */
  lowWaterMark?: number;
  /** Outbox bytes past which the connection is destroyed (`WIRE_ERR_OUTBOX_OVERFLOW`). Default 64 MiB. */
  maxOutboxSize?: number;
  /** Close a connection with no read or write for this long; 0 turns it off. Default 0. */
  idleTimeoutMs?: number;
  /** Disable Nagle on TCP sockets. Default true. */
  noDelay?: boolean;
  /** A graceful `close()` destroys the connection if the peer has not closed by then. Default 10 s. */
  closeTimeoutMs?: number;
  /** Connections the engine manages at once; accepts beyond it are refused. Default 100 000. */
  maxConnections?: number;
}

export type ResolvedEngineOptions = Readonly<Required<EngineOptions>>;

export const DEFAULT_ENGINE_OPTIONS: ResolvedEngineOptions = Object.freeze({
  initialBufferSize: 32 * 1024,
  initialBufferPoolSize: 16,
  maxBufferPoolSize: 128,
  maxFrameSize: 16 * 1024 * 1024,
  highWaterMark: 64 * 1024,
  lowWaterMark: 32 * 1024,
  maxOutboxSize: 64 * 1024 * 1024,
  idleTimeoutMs: 0,
  noDelay: true,
  closeTimeoutMs: 10_000,
  maxConnections: 100_000,
});

/** Validates an integer option; the message names the option. */
export function checkInteger(
  name: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new WireInvalidArgumentError(
      `option "${name}" must be an integer in [${min}, ${max}], got ${String(value)}`,
    );
  }
  return value;
}

/** Merges options over the defaults and validates every one; throws `WireInvalidArgumentError`. */
export function resolveOptions(options: EngineOptions = {}): ResolvedEngineOptions {
  if (typeof options !== 'object' || options === null) {
    throw new WireInvalidArgumentError('engine options must be an object');
  }
  for (const key of Object.keys(options)) {
    if (!(key in DEFAULT_ENGINE_OPTIONS)) throw new WireInvalidArgumentError(`unknown option "${key}"`);
  }
  const o = { ...DEFAULT_ENGINE_OPTIONS, ...options };
  checkInteger('initialBufferSize', o.initialBufferSize, 64, 64 * 1024 * 1024);
  checkInteger('initialBufferPoolSize', o.initialBufferPoolSize, 0, 1_000_000);
  checkInteger('maxBufferPoolSize', o.maxBufferPoolSize, 0, 1_000_000);
  if (o.initialBufferPoolSize > o.maxBufferPoolSize) {
    throw new WireInvalidArgumentError('option "initialBufferPoolSize" must not exceed "maxBufferPoolSize"');
  }
  checkInteger('maxFrameSize', o.maxFrameSize, 1, 2 ** 31);
  checkInteger('highWaterMark', o.highWaterMark, 1);
  checkInteger('lowWaterMark', o.lowWaterMark, 0);
  if (o.lowWaterMark > o.highWaterMark) {
    throw new WireInvalidArgumentError('option "lowWaterMark" must not exceed "highWaterMark"');
  }
  checkInteger('maxOutboxSize', o.maxOutboxSize, 1);
  if (o.maxOutboxSize < o.highWaterMark) {
    throw new WireInvalidArgumentError('option "maxOutboxSize" must be at least "highWaterMark"');
  }
  checkInteger('idleTimeoutMs', o.idleTimeoutMs, 0, 2 ** 31 - 1);
  if (typeof o.noDelay !== 'boolean')
    throw new WireInvalidArgumentError('option "noDelay" must be a boolean');
  checkInteger('closeTimeoutMs', o.closeTimeoutMs, 1, 2 ** 31 - 1);
  checkInteger('maxConnections', o.maxConnections, 1);
  return Object.freeze(o);
}
