/**
 * The seam to every byte stream: a TCP or Unix socket, the in-memory pair, the shm duplex
 * channel. A transport moves bytes; the engine does framing, pooling, coalescing and
 * backpressure on top, so a transport stays small.
 */

/** Where a transport delivers what happens to it. The engine's connection is the sink. */
export interface TransportSink {
  /** Bytes arrived. `chunk` is only valid during the call: the transport may reuse its memory. */
  data(chunk: Uint8Array): void;
  /** The peer finished sending (end of stream). `closed` follows once both sides are done. */
  end(): void;
  /** The transport is closed and released; `error` when it failed. Called exactly once. */
  closed(error?: Error): void;
}

export interface Transport {
  /** Peer address for humans and logs, e.g. `127.0.0.1:5000`, `unix:/tmp/s.sock`, `memory:1`. */
  readonly remoteAddress: string;
  readonly localAddress: string;
  /** Attaches the sink and starts delivering. Called once, by the engine. */
  start(sink: TransportSink): void;
  /**
   * Writes the chunks, in order, as one batch (one `writev` where the stream has it). The
   * chunks stay owned by the caller but must not be touched until `done` is called: once
   * when the transport no longer needs them (handed to the OS, delivered, or failed).
   */
  write(chunks: readonly Uint8Array[], done: (error?: Error | null) => void): void;
  /** Stop delivering data (the peer then sees backpressure). */
  pause(): void;
  /** Start delivering again. */
  resume(): void;
  /** Half-close after everything written so far. */
  end(): void;
  /** Close at once, dropping unsent data. */
  destroy(error?: Error): void;
}
