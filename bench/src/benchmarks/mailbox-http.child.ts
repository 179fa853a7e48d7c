// A process of the mailbox-http benchmark: the Switchyard server, or a fetch+ack consumer.
// Talks to the parent by lines: READY <url> / RESULT <json>.
//
//   node mailbox-http.child.js server <dataDir>
//   node mailbox-http.child.js consume <url> <mailbox> <workers> <batch> <maxMs> [batchAcks]
import { join } from 'node:path';
import { MailboxClient, MailboxServer } from '@switchyard/mailbox';

const out = (line: string): void => void process.stdout.write(`${line}\n`);

async function server(dir: string): Promise<void> {
  const s = await MailboxServer.start({
    broker: { store: `sqlite:${join(dir, 'bench.db')}`, sqlite: { synchronous: 'full' } },
    port: 0,
  });
  out(`READY ${s.url}`);
  process.on('SIGTERM', () => {
    void s.close().then(() => process.exit(0));
  });
}

/** `workers` loops of fetch (up to `batch`) then one ack per message, until empty or `maxMs`. */
async function consume(
  url: string,
  mailbox: string,
  workers: number,
  batch: number,
  maxMs: number,
  batchAcks: boolean,
): Promise<void> {
  const client = new MailboxClient(url);
  let n = 0;
  const started = performance.now();
  const deadline = started + maxMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const ms = await client.fetchMany(mailbox, { max: batch, leaseMs: 60_000 });
      if (ms.length === 0) return;
      if (batchAcks) await client.ackMany(ms.map((m) => ({ mid: m.mid, lid: m.lid!, status: 1 as const })));
      else await Promise.all(ms.map((m) => client.ack(m.mid, m.lid!, 1)));
      n += ms.length;
    }
  };
  out('READY consumer');
  await Promise.all(Array.from({ length: workers }, worker));
  out(`RESULT ${JSON.stringify({ n, ms: performance.now() - started })}`);
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') await server(rest[0]!);
else if (mode === 'consume')
  await consume(rest[0]!, rest[1]!, Number(rest[2]), Number(rest[3]), Number(rest[4]), rest[5] === 'batch');
else throw new Error(`unknown mode ${mode}`);
