import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  StaticDirectory,
  StreamClient,
  StreamNoEndpointError,
  StreamServer,
  rendezvousOrder,
  type SourceFunc,
} from '@switchyard/stream';
import { str, text } from './helpers.js';

async function servers(n: number): Promise<{ list: StreamServer[]; addresses: string[] }> {
  const list: StreamServer[] = [];
  for (let i = 0; i < n; i++) {
    const server = new StreamServer();
    const name = `s${i}`;
    const fn: SourceFunc = async function* () {
      yield { header: text(name), frames: [] };
    };
    await server.listen('tcp://127.0.0.1:0', fn);
    list.push(server);
  }
  return { list, addresses: list.map((s) => s.address) };
}

async function who(client: StreamClient, service: string, bucket?: string): Promise<string> {
  const options = bucket === undefined ? {} : { tags: { bucket } };
  for await (const s of client.post(service, text('x'), options)) return str(s.header);
  throw new Error('no source');
}

test('StaticDirectory resolves names; an unknown name is STREAM_ERR_NO_ENDPOINT', async () => {
  const dir = new StaticDirectory({ a: ['tcp://127.0.0.1:1'] });
  assert.deepEqual(dir.resolve('a'), ['tcp://127.0.0.1:1']);
  assert.deepEqual(dir.resolve('b'), []);
  const client = new StreamClient({ directory: dir });
  await assert.rejects(
    client.post('b', text('x'))[Symbol.asyncIterator]().next(),
    (e) => e instanceof StreamNoEndpointError && e.code === 'STREAM_ERR_NO_ENDPOINT',
  );
  const bare = new StreamClient();
  await assert.rejects(bare.post('service', text('x'))[Symbol.asyncIterator]().next(), StreamNoEndpointError);
  await client.close();
  await bare.close();
});

test('round robin over several endpoints', async () => {
  const { list, addresses } = await servers(3);
  const client = new StreamClient({ directory: new StaticDirectory({ svc: addresses }) });
  const hits = new Map<string, number>();
  for (let i = 0; i < 9; i++) {
    const name = await who(client, 'svc');
    hits.set(name, (hits.get(name) ?? 0) + 1);
  }
  assert.deepEqual([...hits].sort(), [
    ['s0', 3],
    ['s1', 3],
    ['s2', 3],
  ]);
  await client.close();
  await Promise.all(list.map((s) => s.close()));
});

test('the bucket tag routes by rendezvous hashing: same key, same endpoint; minimal movement', async () => {
  const { list, addresses } = await servers(4);
  const client = new StreamClient({
    directory: new StaticDirectory({ svc: addresses }),
    deadEndpointRetryMs: 60_000,
  });
  const keys = Array.from({ length: 40 }, (_, i) => `key-${i}`);
  const before = new Map<string, string>();
  for (const k of keys) before.set(k, await who(client, 'svc', k));
  for (const k of keys.slice(0, 10))
    assert.equal(await who(client, 'svc', k), before.get(k), 'same key, same endpoint');
  assert.ok(new Set(before.values()).size >= 3, 'keys spread over the endpoints');
  // s1 leaves (killed: its address stays in the directory and is found dead).
  await list[1]!.close();
  let moved = 0;
  for (const k of keys) {
    const now = await who(client, 'svc', k);
    assert.notEqual(now, 's1');
    if (before.get(k) === 's1') moved++;
    else assert.equal(now, before.get(k), `${k} moved although its endpoint is alive`);
  }
  assert.equal(moved, [...before.values()].filter((v) => v === 's1').length);
  await client.close();
  await Promise.all(list.map((s) => s.close()));
});

test('rendezvousOrder: removing an endpoint moves only its keys', () => {
  const endpoints = ['a', 'b', 'c', 'd', 'e'];
  const keys = Array.from({ length: 1000 }, (_, i) => `k${i}`);
  const home = new Map(keys.map((k) => [k, rendezvousOrder(k, endpoints)[0]!]));
  const counts = new Map<string, number>();
  for (const h of home.values()) counts.set(h, (counts.get(h) ?? 0) + 1);
  for (const c of counts.values())
    assert.ok(c > 120 && c < 280, `uneven spread ${JSON.stringify([...counts])}`);
  const without = endpoints.filter((e) => e !== 'c');
  for (const k of keys) {
    const after = rendezvousOrder(k, without)[0];
    if (home.get(k) !== 'c') assert.equal(after, home.get(k));
  }
});

test('a dead endpoint is skipped, and tried again after deadEndpointRetryMs', async () => {
  const { list, addresses } = await servers(1);
  const probe = new StreamServer();
  await probe.listen('tcp://127.0.0.1:0', async function* () {
    yield { frames: [] };
  });
  const deadAddress = probe.address;
  await probe.close();
  const client = new StreamClient({
    directory: new StaticDirectory({ svc: [deadAddress, addresses[0]!] }),
    deadEndpointRetryMs: 100,
  });
  for (let i = 0; i < 4; i++) assert.equal(await who(client, 'svc'), 's0');
  // Bring the dead address back to life: after the retry period it is used again.
  const revived = new StreamServer();
  const port = Number(deadAddress.split(':').pop());
  await revived.listen(`tcp://127.0.0.1:${port}`, async function* () {
    yield { header: text('revived'), frames: [] };
  });
  await new Promise((r) => setTimeout(r, 150));
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(await who(client, 'svc'));
  assert.deepEqual([...seen].sort(), ['revived', 's0']);
  await client.close();
  await revived.close();
  await Promise.all(list.map((s) => s.close()));
});

test('a directory that fails is STREAM_ERR_NO_ENDPOINT with the cause', async () => {
  const cause = new Error('registry down');
  const client = new StreamClient({
    directory: {
      resolve: () => {
        throw cause;
      },
    },
  });
  await assert.rejects(
    client.post('svc', text('x'))[Symbol.asyncIterator]().next(),
    (e) => e instanceof StreamNoEndpointError && e.cause === cause,
  );
  await client.close();
});
