import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Source } from '@switchyard/stream';
import { startPair, text } from './helpers.js';

// Flow control as a property: whatever the windows, frame sizes and consumer behaviour, every
// frame arrives once and in order, and the producer is never further ahead of the consumer
// than the windows allow.
test('property: credit bounds the producer and delivers every frame in order', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        frameWindow: fc.integer({ min: 1, max: 40 }),
        byteWindow: fc.integer({ min: 1, max: 6000 }),
        // The frame window given as streamWindowFrames, or derived from frameBufferSize and
        // the byte window (max(frameBufferSize, streamWindowBytes / 64)).
        derived: fc.boolean(),
        sizes: fc.array(fc.integer({ min: 0, max: 2500 }), { maxLength: 250 }),
        asyncProducer: fc.boolean(),
        batches: fc.boolean(),
        pauses: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 8 }),
      }),
      async ({ frameWindow: given, byteWindow, derived, sizes, asyncProducer, batches, pauses }) => {
        const frameWindow = derived ? Math.max(given, Math.floor(byteWindow / 64)) : given;
        let consumedFrames = 0;
        let consumedBytes = 0;
        let producedFrames = 0;
        let producedBytes = 0;
        const violations: string[] = [];
        const frame = (i: number): Uint8Array => {
          const b = new Uint8Array(sizes[i]!);
          b.fill(i % 251);
          return b;
        };
        const check = (i: number): void => {
          producedFrames++;
          producedBytes += sizes[i]!;
          if (producedFrames > consumedFrames + frameWindow) {
            violations.push(`frame ${i}: produced ${producedFrames}, consumed ${consumedFrames}`);
          }
          if (producedBytes - sizes[i]! >= consumedBytes + byteWindow) {
            violations.push(`frame ${i}: ${producedBytes} bytes produced, ${consumedBytes} consumed`);
          }
        };
        await using pair = await startPair(
          'memory',
          async function* () {
            yield {
              frames: asyncProducer
                ? (async function* () {
                    for (let i = 0; i < sizes.length; i++) {
                      if (i % 7 === 0) await new Promise((r) => setImmediate(r));
                      check(i);
                      yield frame(i);
                    }
                  })()
                : (function* () {
                    for (let i = 0; i < sizes.length; i++) {
                      check(i);
                      yield frame(i);
                    }
                  })(),
            };
          },
          {},
          derived
            ? { frameBufferSize: given, streamWindowBytes: byteWindow }
            : { streamWindowFrames: given, streamWindowBytes: byteWindow },
        );
        let index = 0;
        const take = (f: Uint8Array): void => {
          assert.equal(f.length, sizes[index], `frame ${index} size`);
          if (f.length > 0) assert.equal(f[0], index % 251, `frame ${index} content`);
          index++;
          consumedFrames++;
          consumedBytes += f.length;
        };
        let step = 0;
        const pause = async (): Promise<void> => {
          const p = pauses[step++ % pauses.length]!;
          for (let i = 0; i < p; i++) await new Promise((r) => setImmediate(r));
        };
        for await (const source of pair.client.post(pair.address, text('x'))) {
          const s: Source = source;
          if (batches) {
            for await (const batch of s.frames.batches()) {
              for (const f of batch) take(f);
              await pause();
            }
          } else {
            for await (const f of s.frames) {
              take(f);
              await pause();
            }
          }
        }
        assert.equal(index, sizes.length);
        assert.deepEqual(violations, []);
      },
    ),
    { numRuns: 40 },
  );
});
