/**
 * The thread of `Checkpointer` (sqlite-checkpointer.ts): a second connection to the store's
 * database that copies WAL frames back into the database file with PASSIVE checkpoints, so
 * neither the copy nor its two fsyncs run on the broker's event loop. It never writes a row.
 *
 * A pass: `wal_checkpoint(PASSIVE)` copies every frame the WAL holds (it waits for nobody: the
 * broker keeps committing meanwhile), syncs the WAL before and the database file after
 * (`synchronous=NORMAL`: SQLite sets the backfill mark only after that sync, so the WAL is
 * never reused over frames the database file does not durably hold). While frames are left the
 * next pass follows at once, otherwise after `idleMs`, doubled up to 1 s while the WAL stays
 * the same (an idle broker costs a pass a second). Each pass that saw a WAL reports
 * `{ log, done, handOver }` (frames in the WAL, frames copied); with `handOver` it waits for
 * the owner to copy the last few frames itself and answer 'resume' (see sqlite-checkpointer.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const port = parentPort!;
const { path, idleMs, restartFrames, catchUpFrames, maxFrames } = workerData as {
  path: string;
  idleMs: number;
  restartFrames: number;
  catchUpFrames: number;
  maxFrames: number;
};

let db: Database.Database;
try {
  db = new Database(path, { fileMustExist: true, timeout: 0 });
  db.pragma('synchronous = NORMAL');
} catch (error) {
  port.postMessage({ error: error instanceof Error ? error.message : String(error) });
  process.exit(0);
}

let closing = false;
let timer: NodeJS.Timeout | undefined;
/** The last report (frames in the WAL, copied): an idle WAL is not reported again. */
let reported = { log: -1, done: -1 };
/** The pause between passes: `idleMs`, doubled (up to 1 s) while the WAL does not change. */
let idle = idleMs;
/** Waiting for the owner to copy the last frames (it answers 'resume'); a timer bounds the wait. */
let handedOver = false;

function schedule(ms: number): void {
  if (timer !== undefined) clearTimeout(timer);
  timer = closing ? undefined : setTimeout(pass, ms);
}

function pass(): void {
  timer = undefined;
  handedOver = false;
  if (closing) return;
  let next = idle;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    const changed = r !== undefined && (r.log !== reported.log || r.checkpointed !== reported.done);
    // Nothing written since the last pass: look again later and later (a commit is seen at the
    // latest one pause after it), and say nothing.
    if (!changed) {
      idle = Math.min(idle * 2, Math.max(idleMs, 1000));
      next = idle;
    } else idle = next = idleMs;
    // busy: another checkpoint (the owner's) holds the lock; log -1: not in WAL mode.
    if (changed && r.busy === 0 && r.log > 0) {
      reported = { log: r.log, done: r.checkpointed };
      const left = r.log - r.checkpointed;
      // A large WAL with a few frames left: the owner copies them between two of its commits
      // (nothing can be appended meanwhile), so its next commit restarts the WAL. This thread
      // stays out of the way until it answers.
      const handOver = left > 0 && ((r.log >= restartFrames && left <= catchUpFrames) || r.log >= maxFrames);
      port.postMessage({ log: r.log, done: r.checkpointed, handOver });
      if (handOver) {
        handedOver = true;
        next = 1000;
      } else if (left > 0) next = 0;
    }
  } catch (error) {
    port.postMessage({ error: error instanceof Error ? error.message : String(error) });
  }
  schedule(next);
}

port.on('message', (m: unknown) => {
  if (m === 'resume') {
    if (handedOver) schedule(0);
    return;
  }
  if (m !== 'close') return;
  closing = true;
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  db.close();
  port.postMessage({ closed: true });
  port.close();
});

pass();
