import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const CHILD = fileURLToPath(new URL('./fixtures/journal-child.js', import.meta.url));

/** A child process speaking JSON lines on stdout. */
export class Child {
  readonly process: ChildProcess;
  readonly #lines: object[] = [];
  readonly #waiters: (() => void)[] = [];
  stderr = '';

  constructor(args: string[], options: { shell?: string } = {}) {
    this.process =
      options.shell !== undefined
        ? spawn('/bin/sh', ['-c', `${options.shell} exec "$0" "$@"`, process.execPath, CHILD, ...args], {
            stdio: ['ignore', 'pipe', 'pipe'],
          })
        : spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.process.stdout! }).on('line', (line) => {
      this.#lines.push(JSON.parse(line) as object);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.process.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
  }

  /** The first message with `key`, waiting for it. */
  async message<T = Record<string, unknown>>(key: string, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.#lines.find((l) => key in l);
      if (found !== undefined) return found as T;
      if (Date.now() > deadline) throw new Error(`no "${key}" message; stderr: ${this.stderr}`);
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(
          `child exited (${this.process.exitCode ?? this.process.signalCode}) without "${key}": ${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async exit(): Promise<number | null> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return this.process.exitCode;
    const [code] = (await once(this.process, 'exit')) as [number | null];
    return code;
  }
}
