// The exported conformance suite on every transport this repo has today.
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after } from 'node:test';
import { memoryTransportPair, socketTransport, type TransportPair } from '@switchyard/wire';
import { streamConformance } from '@switchyard/stream';
import { makeTempDir } from '@switchyard/testkit';

/** Connected socket pairs from one listening server. */
async function socketPairs(
  listen: (server: Server) => void,
  dial: () => Socket,
): Promise<() => Promise<TransportPair>> {
  const accepted: Socket[] = [];
  const waiting: ((s: Socket) => void)[] = [];
  const server = createServer((socket) => {
    const w = waiting.shift();
    if (w !== undefined) w(socket);
    else accepted.push(socket);
  });
  listen(server);
  await once(server, 'listening');
  after(() => server.close());
  return async () => {
    const near = dial();
    await once(near, 'connect');
    const far = accepted.shift() ?? (await new Promise<Socket>((resolve) => waiting.push(resolve)));
    return { a: socketTransport(near), b: socketTransport(far) };
  };
}

await streamConformance('in-memory pair', () => {
  const [a, b] = memoryTransportPair();
  return Promise.resolve({ a, b });
});

let port = 0;
const tcp = await socketPairs(
  (server) => {
    server.listen(0, '127.0.0.1', () => (port = (server.address() as { port: number }).port));
  },
  () => connect(port, '127.0.0.1'),
);
await streamConformance('TCP', tcp);

const dir = makeTempDir('switchyard-stream-conf-');
after(() => dir[Symbol.dispose]());
const path = join(dir.path, 'c.sock');
const unix = await socketPairs(
  (server) => server.listen(path),
  () => connect(path),
);
await streamConformance('Unix socket', unix);
