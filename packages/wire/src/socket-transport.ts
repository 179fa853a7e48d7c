import type { Socket } from 'node:net';
import type { Transport, TransportSink } from './transport.js';

/** The transport over a connected `net.Socket` (TCP or Unix). */
export class SocketTransport implements Transport {
  readonly remoteAddress: string;
  readonly localAddress: string;
  readonly #socket: Socket;
  #error: Error | undefined;

  constructor(socket: Socket, names: { remoteAddress?: string; localAddress?: string } = {}) {
    this.#socket = socket;
    this.remoteAddress =
      names.remoteAddress ??
      (socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix');
    this.localAddress =
      names.localAddress ??
      (socket.localAddress !== undefined ? `${socket.localAddress}:${socket.localPort}` : 'unix');
  }

  start(sink: TransportSink): void {
    const socket = this.#socket;
    // A plain Uint8Array view of the chunk: subarray() on it (one per frame in the codecs)
    // is much cheaper than on a Buffer, whose subarray goes through the species constructor.
    socket.on('data', (chunk: Buffer) =>
      sink.data(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)),
    );
    socket.on('end', () => sink.end());
    socket.on('error', (error) => {
      this.#error ??= error;
    });
    socket.on('close', () => sink.closed(this.#error));
    if (socket.destroyed) queueMicrotask(() => sink.closed(this.#error));
  }

  write(chunks: readonly Uint8Array[], done: (error?: Error | null) => void): void {
    const socket = this.#socket;
    const n = chunks.length;
    if (n === 1) {
      socket.write(chunks[0] as Uint8Array, done);
      return;
    }
    // cork/uncork turns the batch into one writev.
    socket.cork();
    for (let i = 0; i < n - 1; i++) socket.write(chunks[i] as Uint8Array);
    socket.write(chunks[n - 1] as Uint8Array, done);
    socket.uncork();
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  end(): void {
    this.#socket.end();
  }

  destroy(error?: Error): void {
    if (error !== undefined) this.#error ??= error;
    this.#socket.destroy();
  }
}

/** Wraps a connected socket as a `Transport` (the engine does this for `listen` and `connect`). */
export function socketTransport(socket: Socket): Transport {
  return new SocketTransport(socket);
}
