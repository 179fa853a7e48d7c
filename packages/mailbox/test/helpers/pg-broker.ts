/**
 * A broker process on a PostgreSQL store, for the multi-process tests. argv[2] is a JSON config:
 *   { url, send, consumers, leaseMs, mailbox, sweepIntervalMs, delayMs?, tag?, holdMs? }
 * It prints one line per event, flushed before the next step:
 *   ready · S <mid> (send resolved) · D <mid> <fence> <fetchMs> <leasedUntilMs> (leased to us) ·
 *   A <mid> <fence> (confirm resolved) · X <mid> <code> (confirm refused) · done (sending finished)
 * It stops on SIGTERM (closing the broker) and is SIGKILLed by the crash test.
 */
import { Broker, MailboxError } from '@switchyard/mailbox';

interface Config {
  readonly url: string;
  readonly send: number;
  readonly consumers: number;
  readonly leaseMs: number;
  readonly mailbox: string;
  readonly sweepIntervalMs: number;
  readonly delayMs?: number;
  readonly tag?: string;
  /** How long a consumer works on a batch before acking it (default 0). */
  readonly holdMs?: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
const out: string[] = [];
let flushScheduled = false;
function emit(line: string): void {
  out.push(line);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(() => {
      flushScheduled = false;
      process.stdout.write(out.join('\n') + '\n');
      out.length = 0;
    });
  }
}

const broker = await Broker.open({ store: config.url, sweepIntervalMs: config.sweepIntervalMs });
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
  void broker.close().then(() => {
    process.stdout.write(out.join('\n') + (out.length > 0 ? '\n' : ''), () => process.exit(0));
  });
});
emit('ready');

async function consume(): Promise<void> {
  while (!stopping) {
    let got;
    try {
      got = await broker.fetchMany(config.mailbox, { max: 10, waitMs: 300, leaseMs: config.leaseMs });
    } catch (error) {
      if (stopping) return;
      throw error;
    }
    for (const m of got) emit(`D ${m.mid} ${m.fence} ${m.fetchTime!.getTime()} ${m.leasedUntil!.getTime()}`);
    if (config.holdMs !== undefined && got.length > 0)
      await new Promise((resolve) => setTimeout(resolve, config.holdMs));
    await Promise.all(
      got.map(async (m) => {
        try {
          await broker.ack(m.mid, m.lid!, 1);
          emit(`A ${m.mid} ${m.fence}`);
        } catch (error) {
          if (error instanceof MailboxError) emit(`X ${m.mid} ${error.code}`);
          else throw error;
        }
      }),
    );
  }
}

async function produce(): Promise<void> {
  const chunk = 50;
  for (let i = 0; i < config.send && !stopping; i += chunk) {
    const n = Math.min(chunk, config.send - i);
    const sent = await broker.sendMany(
      Array.from({ length: n }, (_, k) => ({
        sender: `p-${config.tag ?? process.pid}`,
        receiver: config.mailbox,
        body: { i: String(i + k) },
        ...(config.delayMs === undefined ? {} : { delayMs: config.delayMs }),
      })),
    );
    for (const m of sent) emit(`S ${m.mid}`);
  }
  emit('done');
}

await Promise.all([produce(), ...Array.from({ length: config.consumers }, () => consume())]);
