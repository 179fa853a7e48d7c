/**
 * LZ4 per record, with lz4-napi (lz4_flex under napi-rs, prebuilt binaries shipped in npm
 * packages). Its block format with a prepended little-endian u32 uncompressed length is
 * exactly the stored form docs/wire-format.md §5.1 specifies.
 */
import { compressSync, uncompressSync } from 'lz4-napi';
import { StreamProtocolError } from './errors.js';
import { readU32LE } from './frames.js';

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The stored form of `record` when LZ4 makes it smaller, else null (send it as it is). */
export function compressRecord(record: Uint8Array): Uint8Array | null {
  const out = compressSync(asBuffer(record));
  return out.length < record.length ? out : null;
}

/** The application frame of an LZ4 record; its declared length was checked by the decoder. */
export function decompressRecord(stored: Uint8Array): Uint8Array {
  const declared = readU32LE(stored, 0);
  let out: Buffer;
  try {
    out = uncompressSync(asBuffer(stored));
  } catch (cause) {
    throw new StreamProtocolError('LZ4 record does not decompress', { cause });
  }
  if (out.length !== declared) {
    throw new StreamProtocolError(`LZ4 record decompressed to ${out.length} bytes, declared ${declared}`);
  }
  return out;
}
