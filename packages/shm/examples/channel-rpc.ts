// crossbar's ShmChannel example, as two Node processes: the server listens on "rpc", the
// client connects, sends a request and reads the response. Run: node examples/channel-rpc.js
// (it starts the client itself as a child process):
//   node packages/shm/dist-test/examples/channel-rpc.js
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ShmChannel } from '@switchyard/shm';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
// A name of our own, so two runs at once do not meet (crossbar's example uses "rpc").
const name = process.argv[3] ?? `rpc-${process.pid}`;

if (process.argv[2] === 'client') {
  // Process B (client)
  const cli = await ShmChannel.connect(name, {}, 5_000);
  cli.send(encoder.encode('request'));
  const reply = await cli.recv();
  console.log(`client got: ${decoder.decode(reply.bytes)}`);
  reply.release();
  cli.close();
} else {
  // Process A (server, started first)
  const client = fork(fileURLToPath(import.meta.url), ['client', name]);
  const srv = await ShmChannel.listen(name, {}, 30_000);
  const msg = await srv.recv();
  console.log(`server got: ${decoder.decode(msg.bytes)}`);
  msg.release();
  srv.send(encoder.encode('response'));
  await new Promise((resolve) => client.once('exit', resolve));
  srv.close();
}
