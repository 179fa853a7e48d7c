/**
 * `switchyard migrate --from sqlite:<path> --to postgres://…`: moves a mailbox store from one
 * machine's SQLite file into PostgreSQL (mailboxes, messages with their state, leases and
 * attempts, blobs), in one transaction. Stop the broker that uses the SQLite file first.
 */
import { Command } from 'commander';
import { MailboxError, migrateSqliteToPostgres, type MigrateReport } from '@switchyard/mailbox';
import type { CliIo } from '../program.js';

function parseBatch(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100_000)
    throw new Error('--batch must be an integer from 1 to 100000');
  return n;
}

/** Adds the `migrate` command to `program`. */
export function registerMigrateCommand(
  program: Command,
  io: CliIo,
  setExitCode: (code: number) => void,
): void {
  program
    .command('migrate')
    .description('copy a SQLite mailbox store into an empty PostgreSQL store (stop its broker first)')
    .requiredOption('--from <url>', 'the SQLite store: sqlite:<path>')
    .requiredOption('--to <url>', 'the PostgreSQL store: postgres://user@host:port/db[?schema=name]')
    .option('--batch <rows>', 'rows per INSERT', '1000')
    .option('--json', 'print the report as one JSON object')
    .action(async (options: { from: string; to: string; batch: string; json?: boolean }) => {
      const fail = (message: string): void => {
        io.stderr(`switchyard migrate: ${message}\n`);
        setExitCode(1);
      };
      if (!options.from.startsWith('sqlite:') || options.from.length === 'sqlite:'.length) {
        fail(`--from must be sqlite:<path>, got ${options.from}`);
        return;
      }
      if (!/^postgres(ql)?:\/\//.test(options.to)) {
        fail(`--to must be a postgres:// URL, got ${options.to}`);
        return;
      }
      let batchSize: number;
      try {
        batchSize = parseBatch(options.batch);
      } catch (error) {
        fail((error as Error).message);
        return;
      }
      let report: MigrateReport;
      try {
        report = await migrateSqliteToPostgres(options.from.slice('sqlite:'.length), options.to, {
          batchSize,
        });
      } catch (error) {
        if (error instanceof MailboxError) {
          fail(`${error.message} (${error.code})`);
          return;
        }
        throw error;
      }
      if (options.json === true) io.stdout(`${JSON.stringify(report)}\n`);
      else
        io.stdout(
          `migrated ${report.mailboxes} mailboxes, ${report.messages} messages, ` +
            `${report.blobs} blobs (${report.blobBytes} bytes); fencing tokens continue above ${report.maxFence}\n`,
        );
    });
}
