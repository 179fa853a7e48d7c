/** `switchyard ack <mid> <lid> [--reject]`: confirm or reject a leased message. */
import { Command } from 'commander';
import type { CliIo } from '../program.js';
import type { ClientOptions } from './mailboxes.js';
import { clientFrom, run, withClientOptions } from './mailboxes.js';

export function registerAckCommand(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  withClientOptions(
    program
      .command('ack')
      .description('confirm (default) or reject a message under its lease')
      .argument('<mid>', 'message id')
      .argument('<lid>', 'lease id from the fetch')
      .option('--reject', 'reject instead of confirm: it is delivered again after the retry delay'),
  ).action((mid: string, lid: string, o: ClientOptions & { reject?: boolean }) =>
    run('ack', io, setExitCode, async () => {
      const status = o.reject === true ? 2 : 1;
      await clientFrom(o).ack(mid, lid, status);
      io.stdout(
        o.json === true
          ? `${JSON.stringify({ mid, status })}\n`
          : `${status === 1 ? 'confirmed' : 'rejected'} ${mid}\n`,
      );
    }),
  );
}
