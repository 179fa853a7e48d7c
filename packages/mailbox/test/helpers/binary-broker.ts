// A broker process serving the binary API on a SQLite database, for the SIGKILL test:
// prints `READY <switchyard://…>` once it listens, then serves until it is killed.
import { Broker, MailboxBinaryServer } from '@switchyard/mailbox';

const path = process.argv[2];
if (path === undefined) throw new Error('usage: binary-broker <sqlite path>');
const broker = await Broker.open({
  store: `sqlite:${path}`,
  sweepIntervalMs: 50,
  mailboxDefaults: { retryDelayMs: 0, maxDeliveries: 1000 },
});
const server = new MailboxBinaryServer(broker, { port: 0 });
const url = await server.listen();
process.stdout.write(`READY ${url}\n`);
process.on('SIGTERM', () => {
  void server.close().then(() => broker.close());
});
