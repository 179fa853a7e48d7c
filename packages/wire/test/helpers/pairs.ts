import { once } from 'node:events';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { makeTempDir } from '@switchyard/testkit';
import { memoryTransportPair, socketTransport, type TransportPair } from '@switchyard/wire';

async function socketPair(
  listenArgs: { host: string; port: number } | { path: string },
): Promise<[Socket, Socket, () => Promise<void>]> {
  const server = createServer();
  server.listen(listenArgs);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const address = server.address();
  const client =
    'path' in listenArgs
      ? createConnection({ path: listenArgs.path })
      : createConnection({
          host: '127.0.0.1',
          port: typeof address === 'object' && address ? address.port : 0,
        });
  await once(client, 'connect');
  const [serverSide] = await accepted;
  client.setNoDelay(true);
  serverSide.setNoDelay(true);
  return [
    client,
    serverSide,
    async () => {
      client.destroy();
      serverSide.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  ];
}

export async function tcpPair(): Promise<TransportPair> {
  const [a, b, close] = await socketPair({ host: '127.0.0.1', port: 0 });
  return { a: socketTransport(a), b: socketTransport(b), close };
}

export async function unixPair(): Promise<TransportPair> {
  const dir = makeTempDir('wire-unix-');
  const [a, b, close] = await socketPair({ path: join(dir.path, 's.sock') });
  return {
    a: socketTransport(a),
    b: socketTransport(b),
    close: async () => {
      await close();
      dir[Symbol.dispose]();
    },
  };
}

export async function memoryPair(): Promise<TransportPair> {
  const [a, b] = memoryTransportPair();
  return { a, b };
}
