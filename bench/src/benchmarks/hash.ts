// Content hashing for mailbox ids and blob keys: SHA-1 (pandora's printed keys) against
// SHA-256 and MD5 on message-sized bodies. Decides what a content-derived mid costs per send.
import { createHash, randomBytes } from 'node:crypto';
import { opsPerSecond, progress, report, type Row } from '../lib/report.js';

export default async function hash(args: string[]): Promise<void> {
  const ms = Number(args[0] ?? 500);
  const sizes = [256, 4096, 262144];
  const algorithms = ['sha1', 'sha256', 'md5'];
  const bar = progress('hash', sizes.length * algorithms.length);
  const rows: Row[] = [];
  for (const size of sizes) {
    const body = randomBytes(size);
    const row: Row = { 'body bytes': size };
    for (const algorithm of algorithms) {
      row[`${algorithm} hashes/s`] = Math.round(
        opsPerSecond(() => createHash(algorithm).update(body).digest(), ms),
      );
      bar.tick();
    }
    rows.push(row);
  }
  bar.stop();
  report('hash', 'Content hashing (node:crypto, one process)', rows);
}
