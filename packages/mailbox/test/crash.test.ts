// Kills a broker process with SIGKILL at random moments under load, 20 times, and checks after
// each reopen that every send that had resolved is stored and every message that had been
// confirmed is never delivered again. Rounds take turns between WAL checkpoint modes (see
// fixtures/crash-child.ts), so a kill also lands in a checkpoint pass, a hand-over or a WAL
// restart, and a database left by one mode is opened by the other.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Broker, MessageStatus } from '@switchyard/mailbox';
import { makeTempDir } from '@switchyard/testkit';

const CHILD = fileURLToPath(new URL('./fixtures/crash-child.js', import.meta.url));
const ROUNDS = 20;

interface Round {
  readonly sent: string[];
  readonly confirmed: string[];
}

async function runAndKill(path: string, round: number): Promise<Round> {
  const child = spawn(process.execPath, [CHILD, path, String(round)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const sent: string[] = [];
  const confirmed: string[] = [];
  let buffered = '';
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (line === 'READY') ready();
      else if (line.startsWith('S ')) sent.push(line.slice(2));
      else if (line.startsWith('C ')) confirmed.push(line.slice(2));
    }
  });
  const exited = once(child, 'exit');
  await isReady;
  // Kill at a random moment of the load: 30–330 ms after the broker opened.
  await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 300));
  child.kill('SIGKILL');
  const [code, signal] = (await exited) as [number | null, string | null];
  assert.equal(signal, 'SIGKILL', `the child exited by itself (code ${code})`);
  // A torn last line (no newline) was never reported as resolved; drop it.
  return { sent, confirmed };
}

test(`SIGKILL under load, ${ROUNDS} rounds: resolved sends survive, confirmed messages never come back`, async (t) => {
  using dir = makeTempDir('switchyard-crash-');
  const path = join(dir.path, 'crash.db');
  const allSent = new Set<string>();
  const allConfirmed = new Set<string>();
  let progressRounds = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const r = await runAndKill(path, round);
    for (const mid of r.sent) allSent.add(mid);
    for (const mid of r.confirmed) allConfirmed.add(mid);
    if (r.sent.length > 0 && r.confirmed.length > 0) progressRounds++;

    const broker = await Broker.open({
      store: `sqlite:${path}`,
      sweepIntervalMs: 0,
      mailboxDefaults: { maxDeliveries: 1_000_000, retryDelayMs: 0 },
    });
    try {
      for (const mid of r.sent)
        assert.ok(await broker.get(mid), `resolved send ${mid} is lost (round ${round})`);
      for (const mid of r.confirmed) {
        const m = await broker.get(mid);
        assert.equal(
          m?.status,
          MessageStatus.Confirmed,
          `confirmed ${mid} is not confirmed (round ${round})`,
        );
      }
      // Let the child's leases (100 ms) run out, then take everything deliverable: no confirmed mid may appear.
      await new Promise((resolve) => setTimeout(resolve, 110));
      await broker.reenqueue();
      for (;;) {
        const batch = await broker.fetchMany('crash', { max: 1000, leaseMs: 1 });
        for (const m of batch) assert.ok(!allConfirmed.has(m.mid), `confirmed ${m.mid} delivered again`);
        if (batch.length < 1000) break;
      }
    } finally {
      await broker.close();
    }
  }
  t.diagnostic(
    `${allSent.size} resolved sends, ${allConfirmed.size} confirmations, ${progressRounds}/${ROUNDS} rounds killed mid-load`,
  );
  assert.ok(
    progressRounds >= ROUNDS / 2,
    `only ${progressRounds} rounds had sends and confirmations when killed`,
  );
  assert.ok(allSent.size > ROUNDS * 10, `too little load: ${allSent.size} sends`);
  const broker = await Broker.open({ store: `sqlite:${path}`, sweepIntervalMs: 0 });
  try {
    const stats = await broker.stats();
    assert.ok(stats.store.messages >= allSent.size);
  } finally {
    await broker.close();
  }
});
