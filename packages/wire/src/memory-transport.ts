import type { Transport, TransportSink } from './transport.js';

import { randomUUID } from 'node:crypto';

/**
 * One end of an in-memory pair. Writes are delivered to the other end on a later turn
 * (`setImmediate`), chunk by chunk, without copying; `done` is called once the other end
 * has taken the batch, so a paused reader holds the writer's buffers and the writer's
 * outbox grows, exactly as with a socket whose peer stops reading.
 */
class MemoryTransport implements Transport {
  readonly remoteAddress: string;
  readonly localAddress: string;
  peer!: MemoryTransport;
  #sink: TransportSink | undefined;
  #paused = false;
  #closed = false;
  #ended = false;
  #peerEnded = false;
  #scheduled = false;
  // Batches written to this end, waiting to be delivered to its sink.
  readonly #inbox: { chunks: readonly Uint8Array[]; done: (error?: Error | null) => void }[] = [];
  #endQueued = false;

  constructor(local: string, remote: string) {
    this.localAddress = local;
    this.remoteAddress = remote;
  }

  start(sink: TransportSink): void {
    this.#sink = sink;
    this.#schedule();
  }

  write(chunks: readonly Uint8Array[], done: (error?: Error | null) => void): void {
    if (this.#closed || this.#ended) {
      queueMicrotask(() => done(new Error('write after end or close')));
      return;
    }
    this.peer.#receive(chunks, done);
  }

  #receive(chunks: readonly Uint8Array[], done: (error?: Error | null) => void): void {
    if (this.#closed) {
      queueMicrotask(() => done(new Error('peer closed')));
      return;
    }
    this.#inbox.push({ chunks, done });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#paused || this.#sink === undefined || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => this.#deliver());
  }

  #deliver(): void {
    this.#scheduled = false;
    const sink = this.#sink;
    if (sink === undefined) return;
    while (!this.#paused && !this.#closed) {
      const batch = this.#inbox.shift();
      if (batch === undefined) break;
      for (const chunk of batch.chunks) {
        if (this.#closed) break;
        sink.data(chunk);
      }
      batch.done();
    }
    if (this.#inbox.length === 0 && this.#endQueued && !this.#paused && !this.#closed) {
      this.#endQueued = false;
      this.#peerEnded = true;
      sink.end();
      this.#maybeClose();
    }
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#schedule();
  }

  end(): void {
    if (this.#ended || this.#closed) return;
    this.#ended = true;
    this.peer.#endQueued = true;
    this.peer.#schedule();
    this.#maybeClose();
  }

  #maybeClose(): void {
    if (this.#ended && this.#peerEnded) this.#close(undefined);
  }

  #close(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const batch of this.#inbox.splice(0)) batch.done(new Error('transport closed'));
    const sink = this.#sink;
    if (sink !== undefined) queueMicrotask(() => sink.closed(error));
  }

  destroy(error?: Error): void {
    if (this.#closed) return;
    this.#close(error);
    // The peer sees what a socket peer sees: end of stream, then close.
    const peer = this.peer;
    setImmediate(() => {
      if (peer.#closed) return;
      peer.#peerEnded = true;
      peer.#sink?.end();
      peer.#close(undefined);
    });
  }
}

/** Two connected in-memory transports (for tests and in-process links). */
export function memoryTransportPair(): [Transport, Transport] {
  const id = randomUUID().slice(0, 8);
  const a = new MemoryTransport(`memory:${id}a`, `memory:${id}b`);
  const b = new MemoryTransport(`memory:${id}b`, `memory:${id}a`);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
