/**
 * The worker thread of `SqliteThreadStore`: opens the `SqliteStore` named by `workerData` and
 * answers calls in the order they finish (batches finish in commit order: the store releases
 * results strictly after the WAL flush that covers them).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MailboxError } from './errors.js';
import { SqliteStore } from './sqlite-store.js';
import type { SqliteStoreOptions } from './sqlite-store.js';
import type { ThreadCall, ThreadError, ThreadReply } from './sqlite-thread.js';

const port = parentPort!;
const { path, options } = workerData as { path: string; options: SqliteStoreOptions };

function serialise(error: unknown): ThreadError {
  const cause = (error as { cause?: unknown }).cause;
  const causeText = cause instanceof Error ? `${cause.name}: ${cause.message}` : undefined;
  const base = {
    message: error instanceof Error ? error.message : String(error),
    ...(causeText === undefined ? {} : { cause: causeText }),
  };
  return error instanceof MailboxError ? { code: error.code, ...base } : base;
}

let store: SqliteStore;
try {
  store = await SqliteStore.open(path, options);
} catch (error) {
  port.postMessage({ error: serialise(error) });
  process.exit(0);
}
port.postMessage({ ready: { concurrentBatches: store.concurrentBatches } });

type Method = (...args: unknown[]) => Promise<unknown>;

port.on('message', (call: ThreadCall) => {
  const dot = call.method.indexOf('.');
  const target = (dot < 0 ? store : store.blobs) as unknown as Record<string, Method>;
  const name = dot < 0 ? call.method : call.method.slice(dot + 1);
  const fn = target[name];
  const run =
    typeof fn === 'function'
      ? (async () => fn.apply(target, call.args as unknown[]))()
      : Promise.reject(new Error(`unknown store method ${call.method}`));
  run.then(
    (value) => port.postMessage({ id: call.id, value } satisfies ThreadReply),
    (error: unknown) => port.postMessage({ id: call.id, error: serialise(error) } satisfies ThreadReply),
  );
});
