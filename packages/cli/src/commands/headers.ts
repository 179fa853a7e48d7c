/** `switchyard headers <receiver>`: the pending messages of a mailbox, without bodies. */
import { Command } from 'commander';
import type { CliIo } from '../program.js';
import type { ClientOptions } from './mailboxes.js';
import { clientFrom, iso, positiveInt, run, table, withClientOptions } from './mailboxes.js';

const STATUS: Readonly<Record<number, string>> = {
  1: 'confirmed',
  2: 'rejected',
  4: 'timeout',
  8: 'notDelivered',
  16: 'dead',
};

export function registerHeadersCommand(
  program: Command,
  io: CliIo,
  setExitCode: (code: number) => void,
): void {
  withClientOptions(
    program
      .command('headers')
      .description('list the pending (queued or leased) messages of a mailbox, oldest first')
      .argument('<receiver>', 'mailbox (its dead letters: <name>.dead)')
      .option('--limit <n>', 'most messages (at most 1000)', positiveInt, 100)
      .option('--cursor <next>', 'continue after a previous page (the cursor it printed)'),
  ).action((receiver: string, o: ClientOptions & { limit: number; cursor?: string }) =>
    run('headers', io, setExitCode, async () => {
      const page = await clientFrom(o).headersPage(receiver, {
        limit: o.limit,
        ...(o.cursor === undefined ? {} : { cursor: o.cursor }),
      });
      const list = page.messages;
      // More to come: the cursor of the next page (on stderr with --json, so stdout stays the array).
      const more =
        page.next === null ? '' : `next page: switchyard headers ${receiver} --cursor ${page.next}\n`;
      if (o.json === true) {
        io.stdout(`${JSON.stringify(list)}\n`);
        if (more !== '') io.stderr(more);
        return;
      }
      if (list.length === 0) {
        io.stdout(`no pending messages in ${receiver}\n`);
        return;
      }
      const rows = [['MID', 'STATE', 'STATUS', 'DELIVERIES', 'RECEIVED', 'DUE', 'SENDER', 'BYTES']];
      for (const h of list)
        rows.push([
          h.mid,
          h.state,
          STATUS[h.status] ?? String(h.status),
          String(h.deliveryCount),
          iso(h.receivedAt),
          h.state === 'leased' ? `leased until ${iso(h.leasedUntil)}` : iso(h.dueAt),
          h.sender,
          String(h.bodyBytes),
        ]);
      io.stdout(table(rows) + more);
    }),
  );
}
