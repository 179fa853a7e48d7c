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

/** A connection's side of the write slab: the slab tells the owner of its tail to seal it. */
export interface SlabTenant {
  /** Stop writing into the current region; queue what was written. */
  sealWrite(): void;
}

/**
 * Write buffers shared by every connection of an engine, so memory follows bytes sent, not
 * connections: a connection that sends claims the tail of the current slab (a pooled buffer)
 * and encodes into it until another connection claims the tail (the first one's region is
 * sealed and queued) or the turn ends. 10 000 connections each sending a small frame in one
 * turn (a broadcast) share a few slabs instead of taking a buffer each.
 *
 * Reference counts: the slab holds one reference on the current slab; every claimed region
 * holds one, carried by its queued segment until the transport's write completes. A buffer
 * goes back to the pool when its count falls to zero — or is dropped (`forget`) if it was
 * poisoned because a destroyed transport may still read it.
 */
export class WriteSlab {
  readonly #pool: BufferPool;
  readonly #refs = new Map<Uint8Array, number>();
  readonly #poisoned = new Set<Uint8Array>();
  #slab: Uint8Array | null = null;
  #pos = 0;
  #owner: SlabTenant | null = null;

  constructor(pool: BufferPool) {
    this.#pool = pool;
  }

  /** Claims the tail of the current slab for `tenant`; returns [buffer, start]. */
  claim(tenant: SlabTenant): Uint8Array {
    let slab = this.#slab;
    if (slab === null) {
      slab = this.#slab = this.#pool.acquire(0);
      this.#refs.set(slab, 1);
      this.#pos = 0;
      this.#owner = null;
    }
    const owner = this.#owner;
    if (owner !== null && owner !== tenant) owner.sealWrite(); // moves #pos to its end
    this.#refs.set(slab, (this.#refs.get(slab) ?? 0) + 1);
    this.#owner = tenant;
    return slab;
  }

  /** Where a region claimed now starts. */
  get position(): number {
    return this.#pos;
  }

  /** The tenant sealed its region of `buf` at `end`. */
  sealed(tenant: SlabTenant, buf: Uint8Array, end: number): void {
    if (buf === this.#slab && this.#owner === tenant) {
      this.#pos = end;
      this.#owner = null;
    }
  }

  /** Stop handing out the current slab (at the end of a turn, or when it is full). The
   *  current owner keeps its region: nobody else claims from a retired slab. */
  retire(): void {
    const slab = this.#slab;
    if (slab === null) return;
    this.#slab = null;
    this.#owner = null;
    this.unref(slab);
  }

  /** A private buffer (a frame larger than a slab), counted like a region. */
  acquirePrivate(size: number): Uint8Array {
    const buf = this.#pool.acquire(size);
    this.#refs.set(buf, 1);
    return buf;
  }

  unref(buf: Uint8Array): void {
    const n = (this.#refs.get(buf) ?? 1) - 1;
    if (n > 0) {
      this.#refs.set(buf, n);
      return;
    }
    this.#refs.delete(buf);
    if (this.#poisoned.delete(buf)) this.#pool.forget(buf);
    else this.#pool.release(buf);
  }

  /** `buf` may still be read by a destroyed transport: never hand it out again. */
  poison(buf: Uint8Array): void {
    this.#poisoned.add(buf);
  }
}
