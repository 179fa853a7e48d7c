/**
 * `SqliteThreadStore`: the SQLite store on a worker thread of its own. Every statement, commit,
 * WAL flush and checkpoint runs there, so the broker's event loop never waits for SQLite: it
 * keeps reading requests, encoding answers and pushing messages while a batch commits. The
 * store is the same `SqliteStore` (same file format, same guarantees); this class forwards each
 * call as one message and rebuilds typed errors from their codes on the way back.
 *
 * Bounded: calls in flight are limited by the broker (`concurrentBatches` batches, plus its own
 * bounded queues); the worker answers in order. If the worker dies, every call in flight and
 * every later call fails with MAILBOX_ERR_STORE.
 */
import { Worker } from 'node:worker_threads';
import { MailboxClosedError, MailboxError, MailboxStoreError } from './errors.js';
import type { MailboxErrorCode } from './errors.js';
import type { Message } from './message.js';
import type { SqliteStoreOptions } from './sqlite-store.js';
import type {
  BlobStore,
  HeadersPosition,
  HeadersRows,
  MailboxInfo,
  MessageStore,
  StoreOp,
  StoreResult,
  StoreStats,
} from './store.js';

/** What the worker sends back for a call. */
export type ThreadReply =
  { readonly id: number; readonly value: unknown } | { readonly id: number; readonly error: ThreadError };

/** A serialised error: typed errors keep their code. */
export interface ThreadError {
  readonly code?: string;
  readonly message: string;
  readonly cause?: string;
}

/** A call to the worker: the method of the store (or of its blobs, as `blobs.x`) and its arguments. */
export interface ThreadCall {
  readonly id: number;
  readonly method: string;
  readonly args: readonly unknown[];
}

interface PendingCall {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

function reviveError(e: ThreadError): Error {
  const options = e.cause === undefined ? undefined : { cause: new Error(e.cause) };
  if (e.code !== undefined && e.code.startsWith('MAILBOX_ERR_'))
    return new MailboxError(e.code as MailboxErrorCode, e.message, options);
  return new MailboxStoreError(e.message, options);
}

/** A Buffer again (structured clone turns one into a plain Uint8Array). */
function toBuffer(value: unknown): Buffer | null {
  if (value === null || value === undefined) return null;
  const u8 = value as Uint8Array;
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

class ThreadBlobStore implements BlobStore {
  readonly #call: (method: string, args: readonly unknown[]) => Promise<unknown>;
  constructor(call: (method: string, args: readonly unknown[]) => Promise<unknown>) {
    this.#call = call;
  }
  async put(key: string, data: Uint8Array | string): Promise<void> {
    await this.#call('blobs.put', [key, data]);
  }
  async get(key: string): Promise<Buffer | null> {
    return toBuffer(await this.#call('blobs.get', [key]));
  }
  async refCount(key: string): Promise<number | null> {
    return (await this.#call('blobs.refCount', [key])) as number | null;
  }
  async updateRefCounts(deltas: ReadonlyMap<string, number>): Promise<void> {
    await this.#call('blobs.updateRefCounts', [deltas]);
  }
  async collect(limit: number): Promise<number> {
    return (await this.#call('blobs.collect', [limit])) as number;
  }
  async stats(): Promise<{ count: number; bytes: number }> {
    return (await this.#call('blobs.stats', [])) as { count: number; bytes: number };
  }
}

/** A `MessageStore` backed by a `SqliteStore` on its own worker thread. */
export class SqliteThreadStore implements MessageStore {
  readonly blobs: BlobStore;
  readonly path: string;
  readonly concurrentBatches: number;
  readonly splitBacklog = false;
  readonly #worker: Worker;
  readonly #pending = new Map<number, PendingCall>();
  #nextId = 1;
  #failure: Error | undefined;
  #closing: Promise<void> | undefined;

  private constructor(path: string, worker: Worker, concurrentBatches: number) {
    this.path = path;
    this.#worker = worker;
    this.concurrentBatches = concurrentBatches;
    this.blobs = new ThreadBlobStore((method, args) => this.#call(method, args));
    worker.on('message', (reply: ThreadReply) => this.#onReply(reply));
    worker.on('error', (error) =>
      this.#fail(new MailboxStoreError('the SQLite thread failed', { cause: error })),
    );
    worker.on('exit', (code) => {
      this.#fail(
        this.#closing === undefined
          ? new MailboxStoreError(`the SQLite thread exited (code ${code})`)
          : new MailboxClosedError('the SQLite store is closed'),
      );
    });
    // Only calls in flight keep the process alive, as the in-thread store's would.
    worker.unref();
  }

  /** Opens (creating if needed) the database at `path` on a new worker thread. */
  static async open(path: string, options: SqliteStoreOptions = {}): Promise<SqliteThreadStore> {
    const worker = new Worker(new URL('./sqlite-thread-worker.js', import.meta.url), {
      workerData: { path, options },
      // The parent's flags, but not `--input-type` (only valid for an eval'd entry point).
      // No flags: the thread runs plain compiled JS, and a flag the parent may carry (a V8 heap
      // option, `--input-type`) makes a Worker refuse to start (ERR_WORKER_INVALID_EXEC_ARGV).
      execArgv: [],
    });
    const ready = await new Promise<{ concurrentBatches: number }>((resolve, reject) => {
      const onMessage = (m: { ready?: { concurrentBatches: number }; error?: ThreadError }): void => {
        cleanup();
        if (m.error !== undefined) reject(reviveError(m.error));
        else resolve(m.ready!);
      };
      const onError = (error: Error): void => {
        cleanup();
        reject(new MailboxStoreError('the SQLite thread failed to start', { cause: error }));
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new MailboxStoreError(`the SQLite thread exited (code ${code}) while opening`));
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    return new SqliteThreadStore(path, worker, ready.concurrentBatches);
  }

  #call(method: string, args: readonly unknown[]): Promise<unknown> {
    if (this.#closing !== undefined)
      return Promise.reject(new MailboxClosedError('the SQLite store is closed'));
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, method, args } satisfies ThreadCall);
    });
  }

  #onReply(reply: ThreadReply): void {
    const p = this.#pending.get(reply.id);
    if (p === undefined) return;
    this.#pending.delete(reply.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if ('error' in reply) p.reject(reviveError(reply.error));
    else p.resolve(reply.value);
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const p of this.#pending.values()) p.reject(this.#failure);
    this.#pending.clear();
  }

  async apply(ops: readonly StoreOp[], nowMs: number): Promise<StoreResult[]> {
    return (await this.#call('apply', [ops, nowMs])) as StoreResult[];
  }

  async get(mid: string): Promise<Message | null> {
    return (await this.#call('get', [mid])) as Message | null;
  }

  async headers(mailbox: string, after: HeadersPosition, limit: number): Promise<HeadersRows> {
    return (await this.#call('headers', [mailbox, after, limit])) as HeadersRows;
  }

  async mailboxes(nowMs: number): Promise<MailboxInfo[]> {
    return (await this.#call('mailboxes', [nowMs])) as MailboxInfo[];
  }

  async stats(): Promise<StoreStats> {
    return (await this.#call('stats', [])) as StoreStats;
  }

  /** Waits for the calls in flight, closes the database and ends the thread. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#failure === undefined) {
        const id = this.#nextId++;
        this.#worker.ref();
        const closed = new Promise<unknown>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
        this.#worker.postMessage({ id, method: 'close', args: [] } satisfies ThreadCall);
        await closed.catch(() => {});
      }
      await this.#worker.terminate();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
