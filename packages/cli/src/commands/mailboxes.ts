/**
 * `switchyard mailboxes` (and the helpers every mailbox client command shares: server URL,
 * token, --json, tables, errors).
 */
import { Command, InvalidArgumentError } from 'commander';
import { MailboxClient, MailboxError, parseGoDuration } from '@switchyard/mailbox';
import type { CliIo } from '../program.js';

export interface ClientOptions {
  url: string;
  token?: string;
  json?: boolean;
}

export const DEFAULT_URL = 'http://127.0.0.1:7420';

/** Adds --url, --token and --json (defaults from SWITCHYARD_URL and SWITCHYARD_TOKEN). */
export function withClientOptions(cmd: Command): Command {
  return cmd
    .option(
      '--url <url>',
      'the mailbox server (env SWITCHYARD_URL)',
      process.env.SWITCHYARD_URL ?? DEFAULT_URL,
    )
    .option('--token <token>', 'bearer token (env SWITCHYARD_TOKEN)', process.env.SWITCHYARD_TOKEN)
    .option('--json', 'print JSON instead of a table');
}

export function clientFrom(o: ClientOptions): MailboxClient {
  return new MailboxClient(o.url, o.token === undefined || o.token === '' ? {} : { token: o.token });
}

/** A Go duration (1s, 5m, 1h30m) as milliseconds, for commander. */
export function durationMs(value: string): number {
  const ms = parseGoDuration(value);
  if (ms === undefined || ms < 0)
    throw new InvalidArgumentError('must be a Go duration like 500ms, 30s, 5m, 1h30m');
  return Math.ceil(ms);
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Left-aligned columns. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return (
    rows
      .map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
      .join('\n') + '\n'
  );
}

export const iso = (d: Date | null | undefined): string =>
  d === null || d === undefined ? '-' : d.toISOString();

/** Runs a client command: prints errors as `switchyard <name>: <code>: <message>` and sets exit code 1. */
export async function run(
  name: string,
  io: CliIo,
  setExitCode: (code: number) => void,
  fn: () => Promise<void>,
): Promise<void> {
  try {
    await fn();
  } catch (error) {
    const code = error instanceof MailboxError ? `${error.code}: ` : '';
    io.stderr(`switchyard ${name}: ${code}${error instanceof Error ? error.message : String(error)}\n`);
    setExitCode(1);
  }
}

export function registerMailboxesCommand(
  program: Command,
  io: CliIo,
  setExitCode: (code: number) => void,
): void {
  withClientOptions(
    program
      .command('mailboxes')
      .description('list mailboxes with their depth, delayed, in-flight and confirmed counts'),
  ).action((o: ClientOptions) =>
    run('mailboxes', io, setExitCode, async () => {
      const list = await clientFrom(o).mailboxes();
      if (o.json === true) {
        io.stdout(`${JSON.stringify(list)}\n`);
        return;
      }
      if (list.length === 0) {
        io.stdout('no mailboxes\n');
        return;
      }
      const rows = [['NAME', 'READY', 'DELAYED', 'IN FLIGHT', 'CONFIRMED', 'MAX DELIVERIES', 'RETRY DELAY']];
      for (const m of list)
        rows.push([
          m.name,
          String(m.ready),
          String(m.delayed),
          String(m.inFlight),
          String(m.confirmed),
          String(m.settings.maxDeliveries),
          `${m.settings.retryDelayMs}ms`,
        ]);
      io.stdout(table(rows));
    }),
  );
}
