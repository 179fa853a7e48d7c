// What a source function receives is built so that it does not make V8 promote garbage: every
// request's `Request` and `ServeContext` share one hidden class. (Frozen object literals with a
// `get signal()` each got a hidden class of their own, linked from a shared one by a weak
// transition that scavenges keep: every request, and all it referenced, lived until the next
// mark-compact.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import type { Request, ServeContext } from '@switchyard/stream';
import { startPair, str, text } from './helpers.js';

setFlagsFromString('--allow-natives-syntax');
// A V8 intrinsic can only be reached from code compiled while the flag is on.
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
setFlagsFromString('--no-allow-natives-syntax');

test('every request and context a source function gets shares one hidden class, frozen, with a working signal', async () => {
  const seen: { request: Request; ctx: ServeContext }[] = [];
  await using pair = await startPair('tcp', async function* (request, ctx) {
    seen.push({ request, ctx });
    yield { frames: [request.body] };
  });
  for (let i = 0; i < 3; i++) {
    const echoed: string[] = [];
    for await (const source of pair.client.post(pair.address, text(`r${i}`), { tags: { n: String(i) } }))
      for await (const batch of source.frames.batches()) for (const f of batch) echoed.push(str(f));
    assert.deepEqual(echoed, [`r${i}`]);
  }
  assert.equal(seen.length, 3);
  const [a, b, c] = seen as [(typeof seen)[0], (typeof seen)[0], (typeof seen)[0]];
  assert.ok(
    haveSameMap(a.request, b.request) && haveSameMap(b.request, c.request),
    'requests share a hidden class',
  );
  assert.ok(haveSameMap(a.ctx, b.ctx) && haveSameMap(b.ctx, c.ctx), 'contexts share a hidden class');
  for (const [i, { request, ctx }] of seen.entries()) {
    assert.ok(Object.isFrozen(request) && Object.isFrozen(ctx));
    assert.equal(str(request.body), `r${i}`);
    assert.deepEqual([...request.tags], [['n', String(i)]]);
    assert.equal(request.remoteAddress, ctx.remoteAddress);
    assert.ok(request.signal instanceof AbortSignal);
    assert.equal(ctx.signal, request.signal, 'one signal per request');
    assert.throws(() => {
      (request as { body: unknown }).body = null;
    }, TypeError);
  }
});
