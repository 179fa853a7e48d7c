// The receiving thread of the postMessage peer: counts messages, acks every 10 000.
import { parentPort, workerData } from 'node:worker_threads';

const { count } = workerData as { count: number };
let n = 0;
let first = 0n;
let bytes = 0;
parentPort?.on('message', (message: Uint8Array) => {
  if (n === 0) first = process.hrtime.bigint();
  bytes += message.length;
  n++;
  if (n % 10_000 === 0) parentPort?.postMessage({ ack: n });
  if (n === count) {
    const last = process.hrtime.bigint();
    parentPort?.postMessage({ read: n, bytes, elapsedNs: Number(last - first), lastNs: String(last) });
    parentPort?.close();
  }
});
