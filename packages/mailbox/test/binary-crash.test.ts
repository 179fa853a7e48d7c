// A broker serving the binary API is SIGKILLed under push load (a producer sending, a
// subscriber acking) several times; across the restarts no resolved send is lost and no
// message whose ack resolved is ever delivered again.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Broker, MailboxBinaryClient } from '@switchyard/mailbox';
import { makeTempDir } from '@switchyard/testkit';

const CHILD = fileURLToPath(new URL('./helpers/binary-broker.js', import.meta.url));
const ROUNDS = 4;
const LEASE_MS = 500;

async function startBroker(path: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CHILD, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout.setEncoding('utf8');
  let buffered = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the broker exited (code ${code})`)));
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const m = /READY (\S+)\n/.exec(buffered);
      if (m !== null) resolve(m[1]!);
    });
  });
  return { child, url };
}

test(`SIGKILL under push load, ${ROUNDS} rounds: no resolved send lost, no confirmed message redelivered`, async (t) => {
  using dir = makeTempDir('switchyard-binary-crash-');
  const path = join(dir.path, 'crash.db');
  const sent = new Set<string>();
  const confirmed = new Set<string>();
  const delivered = new Set<string>();
  let n = 0;
  let redeliveredAfterConfirm = 0;
  let drainError: unknown;

  const consume = async (client: MailboxBinaryClient, stop: AbortSignal): Promise<void> => {
    try {
      for await (const m of client.subscribe('crash', { prefetch: 50, leaseMs: LEASE_MS, signal: stop })) {
        if (confirmed.has(m.mid)) redeliveredAfterConfirm++;
        delivered.add(m.mid);
        client.ack(m.mid, m.lid!, 1).then(
          () => confirmed.add(m.mid),
          () => {},
        );
      }
    } catch (error) {
      // the broker died under us
      drainError = error;
    }
  };

  for (let round = 0; round < ROUNDS; round++) {
    const { child, url } = await startBroker(path);
    const exited = once(child, 'exit');
    const producer = new MailboxBinaryClient(url);
    const consumer = new MailboxBinaryClient(url);
    const stop = new AbortController();
    let dead = false;
    const produce = async (): Promise<void> => {
      while (!dead) {
        const i = n++;
        try {
          const m = await producer.send({ sender: 'p', receiver: 'crash', body: { i: String(i) } });
          sent.add(m.mid);
        } catch {
          return;
        }
      }
    };
    const work = Promise.all([...Array.from({ length: 16 }, produce), consume(consumer, stop.signal)]);
    await new Promise((resolve) => setTimeout(resolve, 200 + Math.random() * 300));
    child.kill('SIGKILL');
    const [, signal] = (await exited) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL');
    dead = true;
    stop.abort();
    await work;
    await producer.close();
    await consumer.close();
  }
  assert.ok(sent.size > 100, `only ${sent.size} sends resolved`);
  assert.ok(confirmed.size > 50, `only ${confirmed.size} confirmed`);

  // Restart once more and drain: every resolved send is delivered (or was confirmed before),
  // and nothing confirmed comes back. Leases of the killed process run out first.
  const { child, url } = await startBroker(path);
  const client = new MailboxBinaryClient(url);
  const stop = new AbortController();
  const draining = consume(client, stop.signal);
  const deadline = Date.now() + 15_000;
  const missing = (): string[] => [...sent].filter((mid) => !confirmed.has(mid));
  // Drain until nothing has been delivered for three leases (leases of the killed process run
  // out and come back within one lease plus a sweep).
  let last = delivered.size;
  let quietSince = Date.now();
  while (Date.now() < deadline && Date.now() - quietSince < 3 * LEASE_MS) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (delivered.size !== last) {
      last = delivered.size;
      quietSince = Date.now();
    }
  }
  stop.abort();
  await draining;
  await client.close();
  child.kill('SIGTERM');
  await once(child, 'exit');
  // A send whose ack committed but whose answer died with the broker is confirmed in the store
  // though the client never heard it: that is not a loss. Anything else is.
  await using broker = await Broker.open({ store: `sqlite:${path}`, sweepIntervalMs: 0 });
  const states = await Promise.all(missing().map(async (mid) => (await broker.get(mid))?.state ?? 'lost'));
  const notConfirmed = states.filter((st) => st !== 'confirmed');
  assert.deepEqual(
    notConfirmed,
    [],
    `resolved sends not confirmed after the drain (drain: ${String(drainError)})`,
  );
  t.diagnostic(
    `${sent.size} sends resolved, ${confirmed.size} acks resolved, ${states.length} acks committed unheard, ${delivered.size} delivered`,
  );
  assert.equal(redeliveredAfterConfirm, 0, 'a message was delivered again after its ack resolved');
  assert.ok(delivered.size >= sent.size);
});
