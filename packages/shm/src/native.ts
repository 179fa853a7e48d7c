/**
 * The one binding loader. The addon is built by `npm install` (node-gyp) into
 * `build/Release/switchyard_shm.node`; `SWITCHYARD_SHM_BINDING` overrides the path (a debug
 * build, a copy elsewhere). Everything here validates its arguments before calling into C:
 * the C side only guards against crashes.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import {
  ShmExistsError,
  ShmInvalidArgumentError,
  ShmNoSpaceError,
  ShmSystemError,
  ShmUnsupportedError,
} from './errors.js';

/** The addon's surface, exactly as `native/shm.c` defines it. */
interface Binding {
  readonly sharedArrayBuffer: boolean;
  map(path: string, size: number, create: boolean, populate: boolean): ArrayBufferLike;
  unmap(buffer: ArrayBufferLike): boolean;
  msync(view: Uint8Array, offset: number, length: number, sync: boolean): number;
  futexWait(view: Uint8Array, offset: number, expected: number, timeoutMs: number): number;
  futexWake(view: Uint8Array, offset: number, count: number): number;
  fifoCreate(path: string): number;
  fifoOpen(path: string): number;
  eventfd(): number;
  ring(fd: number): number;
  closeFd(fd: number): number;
  watch(fd: number, callback: (status: number) => void): object;
  unwatch(handle: object): void;
  setWatchRef(handle: object, ref: boolean): void;
}

/** The environment variable that overrides where the addon is loaded from. */
export const BINDING_ENV = 'SWITCHYARD_SHM_BINDING';

let loaded: { binding: Binding } | { error: Error } | undefined;

function load(): { binding: Binding } | { error: Error } {
  if (process.platform !== 'linux') {
    return { error: new Error(`@switchyard/shm needs Linux (this is ${process.platform})`) };
  }
  const override = process.env[BINDING_ENV];
  const path =
    override !== undefined && override !== ''
      ? override
      : fileURLToPath(new URL('../build/Release/switchyard_shm.node', import.meta.url));
  try {
    const require = createRequire(import.meta.url);
    return { binding: require(path) as Binding };
  } catch (error) {
    return { error: error as Error };
  }
}

/** The loaded addon, or throws `ShmUnsupportedError`. Loaded once per thread. */
export function binding(): Binding {
  loaded ??= load();
  if ('error' in loaded) {
    throw new ShmUnsupportedError(
      `the @switchyard/shm native addon is not available: ${loaded.error.message}`,
      {
        cause: loaded.error,
      },
    );
  }
  return loaded.binding;
}

/** True when the native addon loaded: journals and channels can be used in this thread. */
export function isSupported(): boolean {
  loaded ??= load();
  return 'binding' in loaded;
}

interface NativeError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
}

const ERRNO_NAMES: Readonly<Record<number, string>> = Object.freeze({
  1: 'EPERM',
  2: 'ENOENT',
  6: 'ENXIO',
  9: 'EBADF',
  11: 'EAGAIN',
  13: 'EACCES',
  17: 'EEXIST',
  22: 'EINVAL',
  24: 'EMFILE',
  27: 'EFBIG',
  28: 'ENOSPC',
  32: 'EPIPE',
  122: 'EDQUOT',
});

/** The symbolic name of a negative errno returned by the addon. */
export function errnoName(negative: number): string {
  return ERRNO_NAMES[-negative] ?? `errno ${-negative}`;
}

/** Converts an error thrown by the addon's map() into this package's typed errors. */
function mapError(error: unknown, path: string): Error {
  const e = error as NativeError;
  const code = typeof e.code === 'string' ? e.code : 'EUNKNOWN';
  const syscall = typeof e.syscall === 'string' ? e.syscall : 'unknown';
  if (code === 'EEXIST') return new ShmExistsError(`${path} exists already`, { cause: error });
  if (code === 'ENOSPC' || code === 'EFBIG' || code === 'EDQUOT') {
    return new ShmNoSpaceError(`no space to reserve ${path} (${syscall}: ${code})`, { cause: error });
  }
  return new ShmSystemError(`${syscall} ${path} failed: ${code}`, code, syscall, { cause: error });
}

/** A mapped file: the buffer (unmapped when collected or by `unmapFile`) and a byte view. */
export interface Mapping {
  readonly buffer: ArrayBufferLike;
  readonly bytes: Uint8Array;
}

// mmap's length and a typed array's length both have limits; 2 GiB keeps every Int32Array
// index of the mapping a small integer.
export const MAX_MAPPING_BYTES = 2 ** 31;

/**
 * Creates `path` exclusively with `size` bytes reserved (posix_fallocate) and maps it;
 * `populate` prefaults every page (MAP_POPULATE) so first writes take no page fault.
 */
export function createMapping(path: string, size: number, populate = false): Mapping {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new ShmInvalidArgumentError('path must be a non-empty string without NUL');
  }
  if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_MAPPING_BYTES) {
    throw new ShmInvalidArgumentError(`size must be an integer in 1..${MAX_MAPPING_BYTES}, got ${size}`);
  }
  const native = binding();
  let buffer: ArrayBufferLike;
  try {
    buffer = native.map(path, size, true, populate === true);
  } catch (error) {
    throw mapError(error, path);
  }
  return { buffer, bytes: new Uint8Array(buffer) };
}

/** Maps an existing file whole, read-write (its size now: never past its end). */
export function openMapping(path: string): Mapping {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new ShmInvalidArgumentError('path must be a non-empty string without NUL');
  }
  const native = binding();
  let buffer: ArrayBufferLike;
  try {
    buffer = native.map(path, 0, false, false);
  } catch (error) {
    throw mapError(error, path);
  }
  return { buffer, bytes: new Uint8Array(buffer) };
}

/** Unmaps now where the runtime allows it (every view becomes empty); else at collection. */
export function unmapFile(mapping: Mapping): void {
  binding().unmap(mapping.buffer);
}

/** msync of `length` bytes at `offset` (page-aligned down by the addon). */
export function msync(mapping: Mapping, offset: number, length: number, sync = true): void {
  const size = mapping.bytes.byteLength;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new ShmInvalidArgumentError('msync offset and length must be non-negative integers');
  }
  if (offset + length > size) throw new ShmInvalidArgumentError('msync range is past the mapping');
  const rc = binding().msync(mapping.bytes, offset, length, sync);
  if (rc < 0) throw new ShmSystemError(`msync failed: ${errnoName(rc)}`, errnoName(rc), 'msync');
}

/** Result of `futexWait`. */
export type FutexWaitResult = 'woken' | 'not-equal' | 'timed-out' | 'interrupted';
const FUTEX_RESULTS: readonly FutexWaitResult[] = ['woken', 'not-equal', 'timed-out', 'interrupted'];

function checkWord(mapping: Mapping, byteOffset: number): void {
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset % 4 !== 0) {
    throw new ShmInvalidArgumentError('futex offset must be a non-negative multiple of 4');
  }
  if (byteOffset + 4 > mapping.bytes.byteLength) {
    throw new ShmInvalidArgumentError('futex offset is past the mapping');
  }
}

/** Blocks this thread while the 32-bit word at `byteOffset` equals `expected` (shared futex). */
export function futexWait(
  mapping: Mapping,
  byteOffset: number,
  expected: number,
  timeoutMs: number,
): FutexWaitResult {
  checkWord(mapping, byteOffset);
  if (!Number.isInteger(expected) || expected < -(2 ** 31) || expected >= 2 ** 31) {
    throw new ShmInvalidArgumentError('futex expected value must be an int32');
  }
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
    throw new ShmInvalidArgumentError('futex timeoutMs must be a number (negative: forever)');
  }
  const rc = binding().futexWait(mapping.bytes, byteOffset, expected, timeoutMs);
  const result = FUTEX_RESULTS[rc];
  if (result === undefined) {
    throw new ShmSystemError(`futex wait failed: ${errnoName(rc)}`, errnoName(rc), 'futex');
  }
  return result;
}

/** Wakes up to `count` waiters on the word at `byteOffset`; returns how many woke. */
export function futexWake(mapping: Mapping, byteOffset: number, count = 2 ** 31 - 1): number {
  checkWord(mapping, byteOffset);
  if (!Number.isInteger(count) || count < 1 || count >= 2 ** 31) {
    throw new ShmInvalidArgumentError('futex wake count must be a positive int32');
  }
  const rc = binding().futexWake(mapping.bytes, byteOffset, count);
  if (rc < 0) throw new ShmSystemError(`futex wake failed: ${errnoName(rc)}`, errnoName(rc), 'futex');
  return rc;
}

/**
 * The receiving end of a doorbell: a FIFO (by path, so another process can ring it) or an
 * eventfd (in this process), watched by this thread's event loop through uv_poll — never by
 * a threadpool thread. `arm(callback)`: the callback runs once per wake-up (the fd drained
 * first) and the watch keeps the event loop alive; `disarm()`: no callback, and the loop may
 * exit. The fd stays in epoll from the first `arm` to `close`, so parking costs no syscall.
 */
export class Doorbell {
  readonly #fd: number;
  readonly #path: string | undefined;
  #watch: object | undefined;
  #callback: (() => void) | undefined;
  #closed = false;

  private constructor(fd: number, path: string | undefined) {
    this.#fd = fd;
    this.#path = path;
  }

  /** A FIFO doorbell at `path` (created with mode 0600; `path` must not exist). */
  static fifo(path: string): Doorbell {
    if (typeof path !== 'string' || path === '' || path.includes('\0')) {
      throw new ShmInvalidArgumentError('doorbell path must be a non-empty string without NUL');
    }
    const fd = binding().fifoCreate(path);
    if (fd < 0) {
      if (errnoName(fd) === 'EEXIST') throw new ShmExistsError(`${path} exists already`);
      throw new ShmSystemError(`mkfifo ${path} failed: ${errnoName(fd)}`, errnoName(fd), 'mkfifo');
    }
    return new Doorbell(fd, path);
  }

  /** An eventfd doorbell for this process (worker threads can ring `fd`). */
  static eventfd(): Doorbell {
    const fd = binding().eventfd();
    if (fd < 0) throw new ShmSystemError(`eventfd failed: ${errnoName(fd)}`, errnoName(fd), 'eventfd');
    return new Doorbell(fd, undefined);
  }

  get fd(): number {
    return this.#fd;
  }

  get path(): string | undefined {
    return this.#path;
  }

  get armed(): boolean {
    return this.#callback !== undefined;
  }

  arm(callback: () => void): void {
    if (this.#closed) throw new ShmInvalidArgumentError('doorbell is closed');
    this.#callback = callback;
    if (this.#watch === undefined) {
      this.#watch = binding().watch(this.#fd, () => this.#ring());
    } else {
      binding().setWatchRef(this.#watch, true);
    }
  }

  disarm(): void {
    if (this.#callback === undefined) return;
    this.#callback = undefined;
    if (this.#watch !== undefined) binding().setWatchRef(this.#watch, false);
  }

  #ring(): void {
    // A ring that comes while disarmed (a late one for a wait already over) is just drained.
    this.#callback?.();
  }

  close(): void {
    if (this.#closed) return;
    this.#callback = undefined;
    this.#closed = true;
    if (this.#watch !== undefined) binding().unwatch(this.#watch);
    this.#watch = undefined;
    binding().closeFd(this.#fd);
  }
}

/** The ringing end of a FIFO doorbell opened by path. */
export function openRinger(path: string): number {
  const fd = binding().fifoOpen(path);
  return fd;
}

/** Rings `fd`: 0, or a negative errno (EPIPE/ENXIO: nobody listens any more). */
export function ring(fd: number): number {
  return binding().ring(fd);
}

/** Closes a ringer fd. */
export function closeRinger(fd: number): void {
  binding().closeFd(fd);
}
