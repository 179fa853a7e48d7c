/** `switchyard send <receiver> [field=value…]`: send a message to a mailbox server. */
import { Command, InvalidArgumentError } from 'commander';
import type { Body } from '@switchyard/mailbox';
import type { CliIo } from '../program.js';
import type { ClientOptions } from './mailboxes.js';
import { clientFrom, durationMs, run, withClientOptions } from './mailboxes.js';

interface SendOptions extends ClientOptions {
  from: string;
  delay?: number;
  body?: string;
  clientTime?: string;
}

/** `key=value` pairs into a body; a repeated key collects its values in order. */
export function parseFields(fields: readonly string[], json: string | undefined): Body {
  const body: Body = {};
  if (json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      throw new InvalidArgumentError('--body must be a JSON object of string fields');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new InvalidArgumentError('--body must be a JSON object of string fields');
    Object.assign(body, parsed);
  }
  for (const f of fields) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`field ${JSON.stringify(f)} must be key=value`);
    const key = f.slice(0, eq);
    const value = f.slice(eq + 1);
    const prev = Object.hasOwn(body, key) ? body[key] : undefined;
    body[key] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
  }
  return body;
}

export function registerSendCommand(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  withClientOptions(
    program
      .command('send')
      .description('send a message: switchyard send <receiver> key=value [key=value…]')
      .argument('<receiver>', 'mailbox to send to')
      .argument('[fields...]', 'body fields as key=value (a repeated key is multi-valued)')
      .option('--from <sender>', 'sender mailbox', process.env.USER ?? 'cli')
      .option('--delay <duration>', 'deliver after this Go duration (e.g. 30s, 5m)', durationMs)
      .option('--body <json>', 'body fields as a JSON object (fields given as key=value are added)')
      .option('--client-time <time>', 'RFC 3339 client time: makes the send idempotent'),
  ).action((receiver: string, fields: string[], o: SendOptions) =>
    run('send', io, setExitCode, async () => {
      const body = parseFields(fields, o.body);
      let clientTime: Date | undefined;
      if (o.clientTime !== undefined) {
        clientTime = new Date(o.clientTime);
        if (Number.isNaN(clientTime.getTime()))
          throw new InvalidArgumentError('--client-time must be an RFC 3339 time');
      }
      const m = await clientFrom(o).send({
        sender: o.from,
        receiver,
        body,
        ...(o.delay === undefined ? {} : { delayMs: o.delay }),
        ...(clientTime === undefined ? {} : { clientTime }),
      });
      io.stdout(
        o.json === true
          ? `${JSON.stringify(m)}\n`
          : `sent ${m.mid} to ${m.receiver} (due ${m.sendWhen.toISOString()})\n`,
      );
    }),
  );
}
