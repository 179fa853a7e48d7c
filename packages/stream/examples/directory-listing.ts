// Serves a directory listing as sources: one source per file, its name as the header and its
// contents as frames (64 KiB each). Run: node dist-test/examples/directory-listing.js [dir]
import { open, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamClient, StreamServer, type SourceFunc } from '@switchyard/stream';

const CHUNK_BYTES = 64 * 1024;

/** Frames of a file, read as the consumer pulls (backpressure reaches the disk reads). */
async function* fileFrames(path: string, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const file = await open(path, 'r');
  try {
    for (;;) {
      signal.throwIfAborted();
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      const { bytesRead } = await file.read(buffer, 0, CHUNK_BYTES, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}

/** A source function listing `root`: the request body names a subdirectory ('' for the root). */
export function serveDirectory(root: string): SourceFunc {
  const base = resolve(root);
  return async function* (request) {
    const dir = resolve(base, Buffer.from(request.body).toString());
    if (dir !== base && !dir.startsWith(base + '/')) throw new Error('outside the served directory');
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (!entry.isFile()) continue;
      yield { header: Buffer.from(entry.name), frames: fileFrames(join(dir, entry.name), request.signal) };
    }
  };
}

/** Lists `dir` through a server and a client on loopback TCP: name and size of every file. */
export async function listDirectory(dir: string): Promise<{ name: string; bytes: number }[]> {
  await using server = new StreamServer();
  await server.listen('tcp://127.0.0.1:0', serveDirectory(dir));
  await using client = new StreamClient();
  const files: { name: string; bytes: number }[] = [];
  for await (const source of client.post(server.address, new Uint8Array(0))) {
    let bytes = 0;
    for await (const batch of source.frames.batches()) for (const frame of batch) bytes += frame.length;
    files.push({ name: Buffer.from(source.header).toString(), bytes });
  }
  return files;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of await listDirectory(process.argv[2] ?? '.')) console.log(`${file.bytes}\t${file.name}`);
}
