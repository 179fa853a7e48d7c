import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';

export type Row = Record<string, string | number>;

/** Formats rows as a Markdown table (numbers right-aligned, thousands separated). */
export function formatTable(rows: readonly Row[]): string {
  const first = rows[0];
  if (first === undefined) return '(no rows)';
  const columns = Object.keys(first);
  const cell = (v: string | number | undefined): string =>
    typeof v === 'number' ? v.toLocaleString('en-US', { maximumFractionDigits: 2 }) : (v ?? '');
  const body = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...body.map((b) => (b[i] ?? '').length)));
  const numeric = columns.map((c) => rows.every((r) => typeof r[c] === 'number'));
  const line = (cells: string[]) =>
    '| ' +
    cells.map((v, i) => (numeric[i] ? v.padStart(widths[i] ?? 0) : v.padEnd(widths[i] ?? 0))).join(' | ') +
    ' |';
  const rule =
    '|' + widths.map((w, i) => (numeric[i] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|';
  return [line(columns), rule, ...body.map(line)].join('\n');
}

/** Prints the table with its date and environment, and keeps a JSON copy under bench/results/. */
export function report(
  name: string,
  title: string,
  rows: readonly Row[],
  notes: readonly string[] = [],
): void {
  const date = new Date().toISOString().slice(0, 10);
  const env = `Node ${process.version}, ${process.platform}/${process.arch}`;
  console.log(`\n${title} — ${date}, ${env}\n\n${formatTable(rows)}\n`);
  for (const note of notes) console.log(note);
  const dir = fileURLToPath(new URL('../../results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    `${dir}${name}-${date}.json`,
    JSON.stringify({ name, title, date, env, rows, notes }, null, 2),
  );
}

/** A progress bar on stderr for a phase of `total` steps; call `tick(n)`, then `stop()`. */
export function progress(label: string, total: number): { tick: (n?: number) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label.padEnd(40)} [{bar}] {percentage}% {eta_formatted}`,
      stream: process.stderr,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { tick: (n = 1) => bar.increment(n), stop: () => bar.stop() };
}

/** Runs `fn` repeatedly for about `ms` milliseconds and returns operations per second. */
export function opsPerSecond(fn: () => void, ms: number): number {
  let n = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 1000; i++) fn();
    n += 1000;
    now = process.hrtime.bigint();
  }
  return (n * 1e9) / Number(now - start);
}
