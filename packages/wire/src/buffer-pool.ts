/** A snapshot of an engine's buffer pool. */
export interface BufferPoolStats {
  /** Size of a standard pooled buffer (`initialBufferSize`). */
  readonly bufferSize: number;
  /** Buffers waiting in the pool. */
  readonly idle: number;
  /** Buffers handed out and not yet returned (held by connections or by writes in flight). */
  readonly leased: number;
  /** Bytes of the buffers waiting in the pool. */
  readonly idleBytes: number;
  /** Bytes of the buffers handed out. */
  readonly leasedBytes: number;
  /** Buffers allocated since the engine started. */
  readonly allocated: number;
  /** Buffers dropped because the pool was full. */
  readonly dropped: number;
}

/**
 * mai's buffer pool. Standard buffers have `bufferSize` bytes; a frame larger than that takes
 * a larger buffer (a multiple of `bufferSize`). The pool keeps at most `maxIdle` standard
 * buffers and, for large ones, at most `maxIdle * bufferSize` bytes, so what it retains is
 * bounded by the options; beyond that buffers are allocated and dropped (left to the GC).
 */
export class BufferPool {
  readonly #size: number;
  readonly #maxIdle: number;
  readonly #maxLargeBytes: number;
  readonly #free: Uint8Array[] = [];
  readonly #large: Uint8Array[] = [];
  #largeBytes = 0;
  #leased = 0;
  #leasedBytes = 0;
  #allocated = 0;
  #dropped = 0;

  constructor(bufferSize: number, initialCount: number, maxIdle: number) {
    this.#size = bufferSize;
    this.#maxIdle = maxIdle;
    this.#maxLargeBytes = maxIdle * bufferSize;
    for (let i = 0; i < initialCount; i++) this.#free.push(this.#allocate(bufferSize));
  }

  get bufferSize(): number {
    return this.#size;
  }

  #allocate(size: number): Uint8Array {
    this.#allocated++;
    // A plain Uint8Array of its own (not a Buffer: views of it are cheaper to make). Pooled,
    // so the zero-fill is paid once.
    return new Uint8Array(size);
  }

  /** A buffer of at least `minSize` bytes. */
  acquire(minSize: number): Uint8Array {
    let buf: Uint8Array | undefined;
    if (minSize <= this.#size) {
      buf = this.#free.pop() ?? this.#allocate(this.#size);
    } else {
      const large = this.#large;
      for (let i = 0; i < large.length; i++) {
        const candidate = large[i];
        if (candidate !== undefined && candidate.length >= minSize) {
          large[i] = large[large.length - 1] as Uint8Array;
          large.pop();
          this.#largeBytes -= candidate.length;
          buf = candidate;
          break;
        }
      }
      buf ??= this.#allocate(Math.ceil(minSize / this.#size) * this.#size);
    }
    this.#leased++;
    this.#leasedBytes += buf.length;
    return buf;
  }

  /** Returns a buffer taken with `acquire`. */
  release(buf: Uint8Array): void {
    this.#leased--;
    this.#leasedBytes -= buf.length;
    if (buf.length === this.#size) {
      if (this.#free.length < this.#maxIdle) this.#free.push(buf);
      else this.#dropped++;
    } else if (this.#largeBytes + buf.length <= this.#maxLargeBytes) {
      this.#large.push(buf);
      this.#largeBytes += buf.length;
    } else {
      this.#dropped++;
    }
  }

  /** Forgets a leased buffer that may still be referenced elsewhere (a write lost with its socket). */
  forget(buf: Uint8Array): void {
    this.#leased--;
    this.#leasedBytes -= buf.length;
    this.#dropped++;
  }

  stats(): BufferPoolStats {
    return {
      bufferSize: this.#size,
      idle: this.#free.length + this.#large.length,
      leased: this.#leased,
      idleBytes: this.#free.length * this.#size + this.#largeBytes,
      leasedBytes: this.#leasedBytes,
      allocated: this.#allocated,
      dropped: this.#dropped,
    };
  }
}
