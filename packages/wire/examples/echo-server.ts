// The seed's echo example, server side, on the `lines` codec: every line received is sent
// back. Answers `nc` and `socat` as well as echo-client.ts.
//
//   node packages/wire/dist-test/examples/echo-server.js [tcp://127.0.0.1:7000 | unix:/tmp/echo.sock]
//
// Prints `listening <address>` once bound; SIGTERM or SIGINT close it gracefully.
import { lines, ProtocolEngine } from '@switchyard/wire';

const address = process.argv[2] ?? 'tcp://127.0.0.1:7000';

const engine = new ProtocolEngine<string>({
  codec: lines,
  handler: {
    onReady: (conn) => console.log(`connected ${conn.remoteAddress}`),
    onFrame: (conn, line) => {
      conn.send(line);
    },
    onError: (conn, error) => console.error(`error ${conn.remoteAddress}: ${error.code} ${error.message}`),
    onClosed: (conn) => console.log(`disconnected ${conn.remoteAddress}`),
  },
});

const listener = await engine.listen(address);
console.log(`listening ${listener.address}`);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void engine.close().then(() => process.exit(0));
  });
}
