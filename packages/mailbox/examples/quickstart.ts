// A broker on SQLite: send, fetch with a lease, confirm one message and reject another,
// then look at the record of attempts. Run: node packages/mailbox/dist-test/examples/quickstart.js [dir]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AckStatus, Broker } from '@switchyard/mailbox';

export async function main(dir: string): Promise<string[]> {
  const lines: string[] = [];
  await using broker = await Broker.open({
    store: `sqlite:${join(dir, 'mailbox.db')}`,
    mailboxDefaults: { maxDeliveries: 3, retryDelayMs: 0 },
  });
  const order = await broker.send({
    sender: 'shop',
    receiver: 'billing',
    body: { order: '1001', items: ['book', 'pen'] },
    clientTime: new Date('2026-01-01T00:00:00Z'), // with a clientTime, resending is idempotent
  });
  const again = await broker.send({
    sender: 'shop',
    receiver: 'billing',
    body: { order: '1001', items: ['book', 'pen'] },
    clientTime: new Date('2026-01-01T00:00:00Z'),
  });
  lines.push(`sent ${order.mid}; the resend has the same mid: ${again.mid === order.mid}`);

  const m = await broker.fetch('billing', { leaseMs: 30_000, consumer: 'worker-1' });
  if (m === null) throw new Error('expected a message');
  lines.push(`fetched order ${String(m.body.order)} with lease ${m.lid} (fence ${m.fence})`);
  await broker.ack(m.mid, m.lid!, AckStatus.Rejected); // comes back after the retry delay
  const retry = await broker.fetch('billing', { consumer: 'worker-2' });
  await broker.ack(retry!.mid, retry!.lid!, AckStatus.Confirmed);
  const record = await broker.get(m.mid);
  for (const a of record?.attempts ?? []) lines.push(`attempt ${a.n} by ${a.consumer}: outcome ${a.outcome}`);
  lines.push(`status ${record?.status} (Confirmed = ${AckStatus.Confirmed})`);
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'switchyard-quickstart-'));
  try {
    for (const line of await main(dir)) console.log(line);
  } finally {
    if (process.argv[2] === undefined) rmSync(dir, { recursive: true, force: true });
  }
}
