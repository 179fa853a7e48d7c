import {
  ProtocolEngine,
  type Codec,
  type Connection,
  type EngineOptions,
  type Transport,
  type TransportSink,
  type WireError,
} from '@switchyard/wire';

/** A transport driven by the test: `feed()` delivers chunks synchronously, writes are recorded. */
export class ScriptedTransport implements Transport {
  readonly remoteAddress = 'scripted:peer';
  readonly localAddress = 'scripted:local';
  sink: TransportSink | undefined;
  readonly written: Uint8Array[] = [];
  writes = 0;
  paused = false;
  ended = false;
  destroyed = false;
  /** When false, writes stay "in flight" until `completeWrites()`. */
  autoComplete = true;
  readonly #waiting: ((error?: Error | null) => void)[] = [];

  start(sink: TransportSink): void {
    this.sink = sink;
  }
  write(chunks: readonly Uint8Array[], done: (error?: Error | null) => void): void {
    this.writes++;
    for (const c of chunks) this.written.push(c.slice());
    if (this.autoComplete) queueMicrotask(() => done());
    else this.#waiting.push(done);
  }
  completeWrites(): void {
    for (const done of this.#waiting.splice(0)) done();
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  end(): void {
    this.ended = true;
    queueMicrotask(() => this.sink?.closed());
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    queueMicrotask(() => this.sink?.closed());
  }
  feed(chunk: Uint8Array): void {
    this.sink?.data(chunk);
  }
  writtenBytes(): Buffer {
    return Buffer.concat(this.written);
  }
}

/** An engine over one scripted transport, recording frames (copied if bytes) and errors. */
export function scripted<F>(
  codec: () => Codec<F>,
  options: EngineOptions = {},
): {
  engine: ProtocolEngine<F>;
  conn: Connection<F>;
  transport: ScriptedTransport;
  frames: F[];
  errors: WireError[];
  closed: { error: WireError | undefined } | undefined;
} {
  const frames: F[] = [];
  const errors: WireError[] = [];
  const state: { closed: { error: WireError | undefined } | undefined } = { closed: undefined };
  const engine = new ProtocolEngine<F>(
    {
      codec,
      handler: {
        onFrame: (_c, f) => {
          frames.push(f instanceof Uint8Array ? (f.slice() as F) : f);
        },
        onError: (_c, e) => {
          errors.push(e);
        },
        onClosed: (_c, e) => {
          state.closed = { error: e };
        },
      },
    },
    options,
  );
  const transport = new ScriptedTransport();
  const conn = engine.manage(transport);
  return {
    engine,
    conn,
    transport,
    frames,
    errors,
    get closed() {
      return state.closed;
    },
  };
}

/** Cuts `bytes` at the given sorted cut points. */
export function cut(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const sorted = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of sorted) {
    if (p > prev) out.push(bytes.slice(prev, p));
    prev = Math.max(prev, p);
  }
  if (prev < bytes.length) out.push(bytes.slice(prev));
  return out;
}
