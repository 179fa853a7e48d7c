// The seed's echo example, client side, on the `lines` codec: connects, sends each message
// as a line, prints every line that comes back, and exits once all came back. Works against
// any line echo server, e.g. `socat TCP-LISTEN:7000,bind=127.0.0.1,fork EXEC:cat`.
//
//   node packages/wire/dist-test/examples/echo-client.js [address] [message …]
import { lines, ProtocolEngine } from '@switchyard/wire';

const address = process.argv[2] ?? 'tcp://127.0.0.1:7000';
const messages = process.argv.length > 3 ? process.argv.slice(3) : ['Supercalifragilisticexpialidocious!'];

let pending = messages.length;
let finished: () => void = () => {};
const closed = new Promise<void>((resolve) => (finished = resolve));
const engine = new ProtocolEngine<string>({
  codec: lines,
  handler: {
    onReady: (conn) => {
      console.log(`Connected to ${conn.remoteAddress}`);
      for (const message of messages) conn.send(message);
    },
    onFrame: (conn, line) => {
      console.log(`Received a message from ${conn.remoteAddress}: '${line}'`);
      if (--pending === 0) void conn.close();
    },
    onError: (conn, error) => console.error(`Error. ${conn.remoteAddress}, ${error.code}: ${error.message}`),
    onClosed: (conn) => {
      console.log(`Disconnected from ${conn.remoteAddress}`);
      finished();
    },
  },
});

try {
  await engine.connect(address, { signal: AbortSignal.timeout(5000) });
  await closed;
} catch (error) {
  console.error(`cannot connect: ${(error as Error).message}`);
}
await engine.close();
process.exitCode = pending === 0 ? 0 : 1;
