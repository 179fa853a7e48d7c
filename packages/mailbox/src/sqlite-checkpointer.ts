/**
 * WAL checkpoints off the broker's event loop. SQLite's automatic checkpoint runs inside the
 * commit that crosses `wal_autocheckpoint` pages: it copies ~1 000 pages back into the database
 * file and fsyncs the WAL and the database, a stall of several milliseconds on the event loop
 * every second or so at 1 000 msg/s (not, as measured, what sets the latency tail; but no
 * fsync belongs on the event loop). Here the owner's connection has automatic checkpoints off and a worker thread (sqlite-checkpointer-worker.ts)
 * runs PASSIVE checkpoints on a second connection, concurrently with the owner's commits.
 *
 * A WAL restarts (is written again from its start) only when a write transaction begins after
 * every frame was copied. Under continuous writes the thread rarely finishes with nothing left,
 * so the WAL would grow without end; when the thread finds a large WAL (`restartFrames`) with
 * only a few frames left to copy (`catchUpFrames`), it hands over: it pauses, the owner copies
 * those few itself between two batches (nothing is appended meanwhile), answers, and its next
 * commit restarts the WAL. Past `maxFrames` the owner copies whatever is left. If the thread
 * fails, the owner turns SQLite's automatic checkpoints back on.
 */
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

export interface CheckpointerStats {
  /** Passes of the thread that found a WAL. */
  readonly threadPasses: number;
  /** Checkpoints the owner ran itself to let the WAL restart. */
  readonly ownerPasses: number;
  /** Frames in the WAL at the last report. */
  readonly walFrames: number;
  /** The thread failed and SQLite's automatic checkpoints are back on. */
  readonly fallback: boolean;
}

export interface CheckpointerOptions {
  /** Pause between passes when the WAL was fully copied (default 20 ms). */
  readonly idleMs?: number;
  /** WAL size (frames) from which the owner helps the WAL restart (default 4 096). */
  readonly restartFrames?: number;
  /** At most this many frames left to copy for the owner to copy them itself (default 128). */
  readonly catchUpFrames?: number;
  /** WAL size (frames) at which the owner copies whatever is left (default 65 536). */
  readonly maxFrames?: number;
}

interface Report {
  readonly log?: number;
  readonly done?: number;
  readonly handOver?: boolean;
  readonly error?: string;
  readonly closed?: boolean;
}

type CheckpointRow = { busy: number; log: number; checkpointed: number };

export class Checkpointer {
  readonly #db: Database.Database;
  readonly #worker: Worker;
  #threadPasses = 0;
  #ownerPasses = 0;
  #walFrames = 0;
  #fallback = false;
  #closing: Promise<void> | undefined;
  readonly #exited: Promise<void>;

  /** Starts checkpointing `path`, whose owner connection is `db` (in WAL mode, not exclusive). */
  constructor(db: Database.Database, path: string, options: CheckpointerOptions = {}) {
    this.#db = db;
    db.pragma('wal_autocheckpoint = 0');
    this.#worker = new Worker(new URL('./sqlite-checkpointer-worker.js', import.meta.url), {
      workerData: {
        path,
        idleMs: options.idleMs ?? 20,
        restartFrames: options.restartFrames ?? 4096,
        catchUpFrames: options.catchUpFrames ?? 128,
        maxFrames: options.maxFrames ?? 65_536,
      },
      // No flags: the thread runs plain compiled JS, and a flag the parent may carry (a V8 heap
      // option, `--input-type`) makes a Worker refuse to start (ERR_WORKER_INVALID_EXEC_ARGV).
      execArgv: [],
    });
    this.#worker.on('message', (m: Report) => this.#onReport(m));
    this.#worker.on('error', () => this.#fail());
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.once('exit', () => {
        if (this.#closing === undefined) this.#fail();
        resolve();
      });
    });
    // A forgotten store must not keep the process alive. After the listeners: adding a
    // 'message' listener refs the worker's port again.
    this.#worker.unref();
  }

  get stats(): CheckpointerStats {
    return {
      threadPasses: this.#threadPasses,
      ownerPasses: this.#ownerPasses,
      walFrames: this.#walFrames,
      fallback: this.#fallback,
    };
  }

  #onReport(m: Report): void {
    if (m.error !== undefined) {
      this.#fail();
      return;
    }
    if (m.log === undefined || m.done === undefined || this.#closing !== undefined) return;
    this.#threadPasses++;
    this.#walFrames = m.log;
    if (m.handOver !== true) return;
    this.#ownerPass();
    this.#worker.postMessage('resume');
  }

  /** Copies what is left on the owner's connection (between batches: never inside a transaction). */
  #ownerPass(): void {
    if (!this.#db.open || this.#db.inTransaction) return;
    try {
      const [r] = this.#db.pragma('wal_checkpoint(PASSIVE)') as CheckpointRow[];
      if (r !== undefined && r.busy === 0) this.#ownerPasses++;
    } catch {
      // Busy or failed: the next report tries again; the commit path reports real I/O errors.
    }
  }

  /** The thread is gone: SQLite checkpoints in the owner's commits again (SQLite's default). */
  #fail(): void {
    if (this.#fallback || this.#closing !== undefined) return;
    this.#fallback = true;
    if (this.#db.open) this.#db.pragma('wal_autocheckpoint = 1000');
    void this.#worker.terminate();
  }

  /** Stops the thread (its connection closed) before the owner closes the database. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Unref'd while it runs: keep the process alive until the thread closed its connection.
      this.#worker.ref();
      if (this.#fallback) void this.#worker.terminate();
      else this.#worker.postMessage('close');
      const timer = setTimeout(() => void this.#worker.terminate(), 5000);
      await this.#exited;
      clearTimeout(timer);
    })();
    return this.#closing;
  }
}
