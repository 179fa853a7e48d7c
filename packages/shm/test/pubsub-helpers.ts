import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Publisher, Subscriber, type PubSubConfig } from '@switchyard/shm';

export const PUBSUB_CHILD = fileURLToPath(new URL('./fixtures/pubsub-child.js', import.meta.url));

/** A scratch directory under /dev/shm for region files, removed on dispose. */
export function shmDir(): { path: string } & Disposable {
  const path = mkdtempSync('/dev/shm/switchyard-test-');
  return {
    path,
    [Symbol.dispose]() {
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** A publisher and a subscriber of region `name` in `dir`; disposing closes both. */
export function pair(
  dir: string,
  name: string,
  config: PubSubConfig = {},
): { publisher: Publisher; subscriber: Subscriber } & Disposable {
  const publisher = Publisher.create(name, { dir, ...config });
  const subscriber = Subscriber.open(name, { dir });
  return {
    publisher,
    subscriber,
    [Symbol.dispose]() {
      subscriber.close();
      publisher.close();
    },
  };
}

/** Message `seq`: `length` bytes, the first four the sequence, the rest derived from it. */
export function pattern(seq: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  if (length >= 4) new DataView(out.buffer).setUint32(0, seq, true);
  for (let i = Math.min(4, length); i < length; i++) out[i] = (seq * 7 + i) & 0xff;
  return out;
}

/** The `received` line of the fixture's `sub` command. */
export interface SubSummary {
  received: number;
  missed: number;
  bad: number;
  firstError: string;
  ended: string;
  lastSeq: number;
  /** The subscriber's first sequence (messages before it were published before it attached). */
  start: number;
}

/** A child process speaking JSON lines on stdout and taking commands on stdin. */
export class PubSubChild {
  readonly process: ChildProcess;
  readonly #lines: Record<string, unknown>[] = [];
  #wake: (() => void) | undefined;
  stderr = '';

  constructor(args: string[], env: NodeJS.ProcessEnv = process.env) {
    this.process = spawn(process.execPath, [PUBSUB_CHILD, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    createInterface({ input: this.process.stdout! }).on('line', (line) => {
      this.#lines.push(JSON.parse(line) as Record<string, unknown>);
      this.#wake?.();
    });
    this.process.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
  }

  send(command: string): void {
    this.process.stdin!.write(command + '\n');
  }

  /** The first message with `key` not taken yet, waiting for it. */
  async message<T = Record<string, unknown>>(key: string, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#lines.findIndex((l) => key in l);
      if (index >= 0) return this.#lines.splice(index, 1)[0] as T;
      if (Date.now() > deadline) throw new Error(`no "${key}" message; stderr: ${this.stderr}`);
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(
          `child exited (${this.process.exitCode ?? this.process.signalCode}) without "${key}": ${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  async exit(): Promise<number | null> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return this.process.exitCode;
    const [code] = (await once(this.process, 'exit')) as [number | null];
    return code;
  }

  kill(): void {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL');
  }
}

/**
 * One child publishes `count` messages of `name` with `config` (`pubRole`: 'pub' loans,
 * 'pubsend' sends), another reads them all from the oldest (adaptive wait); the publisher
 * closes once the reader has them. Returns the reader's summary and exit code.
 */
export async function runPubSub(
  pubRole: 'pub' | 'pubsend',
  name: string,
  config: { readonly dir: string } & Record<string, unknown>,
  count: number,
): Promise<{ summary: SubSummary; subExit: number | null }> {
  const pub = new PubSubChild([pubRole, name, JSON.stringify(config), String(count), 'close', '0']);
  try {
    await pub.message('created');
    const sub = new PubSubChild([
      'sub',
      name,
      JSON.stringify({ dir: config.dir, from: 'oldest' }),
      String(count),
      'adaptive',
      '0',
    ]);
    const summary = await sub.message<SubSummary>('received', 60_000);
    await pub.message('published');
    pub.send('close');
    return { summary, subExit: await sub.exit() };
  } finally {
    pub.kill();
  }
}
