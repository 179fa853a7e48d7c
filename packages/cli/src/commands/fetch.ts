/** `switchyard fetch <receiver>`: lease the next due message(s) of a mailbox. */
import { Command } from 'commander';
import type { Message } from '@switchyard/mailbox';
import type { CliIo } from '../program.js';
import type { ClientOptions } from './mailboxes.js';
import { clientFrom, durationMs, iso, positiveInt, run, table, withClientOptions } from './mailboxes.js';

interface FetchOptions extends ClientOptions {
  lease?: number;
  wait?: number;
  max: number;
  consumer?: string;
}

function bodyText(m: Message): string {
  return new URLSearchParams(
    Object.entries(m.body).flatMap(([k, v]): [string, string][] =>
      Array.isArray(v) ? v.map((x): [string, string] => [k, x]) : [[k, v]],
    ),
  ).toString();
}

export function registerFetchCommand(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  withClientOptions(
    program
      .command('fetch')
      .description('lease the next due message(s) of a mailbox; ack them with switchyard ack <mid> <lid>')
      .argument('<receiver>', 'mailbox to fetch from')
      .option('--lease <duration>', 'lease length (Go duration; default: the server’s, 5m)', durationMs)
      .option('--wait <duration>', 'long poll: wait up to this long for a message', durationMs)
      .option('--max <n>', 'most messages', positiveInt, 1)
      .option('--consumer <name>', 'recorded in the delivery history'),
  ).action((receiver: string, o: FetchOptions) =>
    run('fetch', io, setExitCode, async () => {
      const messages = await clientFrom(o).fetchMany(receiver, {
        max: o.max,
        ...(o.lease === undefined ? {} : { leaseMs: o.lease }),
        ...(o.wait === undefined ? {} : { waitMs: o.wait }),
        ...(o.consumer === undefined ? {} : { consumer: o.consumer }),
      });
      if (o.json === true) {
        io.stdout(`${JSON.stringify(messages)}\n`);
        return;
      }
      if (messages.length === 0) {
        io.stdout(`no message due in ${receiver}\n`);
        return;
      }
      const rows = [['MID', 'LID', 'DELIVERY', 'LEASED UNTIL', 'SENDER', 'BODY']];
      for (const m of messages)
        rows.push([m.mid, m.lid ?? '-', String(m.deliveryCount), iso(m.leasedUntil), m.sender, bodyText(m)]);
      io.stdout(table(rows));
    }),
  );
}
