/** `switchyard stats`: broker and store counters of a mailbox server. */
import { Command } from 'commander';
import type { CliIo } from '../program.js';
import type { ClientOptions } from './mailboxes.js';
import { clientFrom, run, table, withClientOptions } from './mailboxes.js';

function flatten(prefix: string, value: unknown, out: string[][]): void {
  if (typeof value === 'object' && value !== null)
    for (const [k, v] of Object.entries(value)) flatten(prefix === '' ? k : `${prefix}.${k}`, v, out);
  else out.push([prefix, String(value)]);
}

export function registerStatsCommand(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  withClientOptions(program.command('stats').description('broker and store counters (admin scope)')).action(
    (o: ClientOptions) =>
      run('stats', io, setExitCode, async () => {
        const stats = await clientFrom(o).stats();
        if (o.json === true) {
          io.stdout(`${JSON.stringify(stats)}\n`);
          return;
        }
        const rows: string[][] = [];
        flatten('', stats, rows);
        io.stdout(table(rows));
      }),
  );
}
