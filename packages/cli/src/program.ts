import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerAckCommand } from './commands/ack.js';
import { registerFetchCommand } from './commands/fetch.js';
import { registerHeadersCommand } from './commands/headers.js';
import { registerJournalCommands } from './commands/journal.js';
import { registerMailboxesCommand } from './commands/mailboxes.js';
import { registerSendCommand } from './commands/send.js';
import { registerServeCommand } from './commands/serve.js';
import { registerStatsCommand } from './commands/stats.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerShmCommands } from './commands/shm.js';

/** Where the CLI writes; tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const defaultIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

/**
 * The `switchyard` command tree. Each command's action returns its exit code through
 * `setExitCode`, so `main` can be called from tests without exiting the process.
 */
export function createProgram(
  io: CliIo = defaultIo,
  setExitCode: (code: number) => void = () => {},
): Command {
  const program = new Command('switchyard')
    .description('Switchyard: move a message wherever it has to go.')
    .version(packageVersion(), '-v, --version', 'print the version')
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride()
    .showHelpAfterError();

  registerServeCommand(program, io, setExitCode);
  registerSendCommand(program, io, setExitCode);
  registerFetchCommand(program, io, setExitCode);
  registerAckCommand(program, io, setExitCode);
  registerHeadersCommand(program, io, setExitCode);
  registerMailboxesCommand(program, io, setExitCode);
  registerStatsCommand(program, io, setExitCode);

  registerJournalCommands(program, io, setExitCode);
  registerShmCommands(program, io, setExitCode);
  registerMigrateCommand(program, io, setExitCode);

  return program;
}

/** Runs the CLI on `argv` (without the node and script paths) and resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = defaultIo): Promise<number> {
  let exitCode = 0;
  const program = createProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    io.stderr(`switchyard: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
