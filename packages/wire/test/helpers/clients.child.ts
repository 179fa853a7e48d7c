// Child process for the reliability tests: opens plain TCP connections to the port in argv,
// and on each writes what argv says; then idles until killed.
//   clients.child.js <port> idle <count>     one complete 8-byte frame each, then idle
//   clients.child.js <port> partial          two frames and half of a third, then idle
import { connect, type Socket } from 'node:net';

const [portArg, mode, countArg] = process.argv.slice(2);
const port = Number(portArg);
const frame = Uint8Array.of(0, 0, 0, 4, 1, 2, 3, 4);
const sockets: Socket[] = [];

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

if (mode === 'idle') {
  const count = Number(countArg);
  for (let i = 0; i < count; i += 250) {
    const batch = await Promise.all(Array.from({ length: Math.min(250, count - i) }, open));
    for (const s of batch) {
      s.write(frame);
      sockets.push(s);
    }
  }
} else {
  const s = await open();
  s.write(Buffer.concat([frame, frame, Uint8Array.of(0, 0, 0, 100, 1, 2, 3)]));
  sockets.push(s);
}
process.send?.('ready');
setInterval(() => {}, 1 << 30);
