/** Go durations as `time.ParseDuration` reads them and `Duration.String` prints them. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatGoDuration, parseGoDuration } from '@switchyard/mailbox';

test('parses what time.ParseDuration parses', () => {
  const cases: [string, number][] = [
    ['0', 0],
    ['0s', 0],
    ['1s', 1000],
    ['5m', 300_000],
    ['-24h', -86_400_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['500ms', 500],
    ['2h45m30.5s', 9_930_500],
    ['+3s', 3000],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['1500μs', 1.5],
    ['2000000ns', 2],
    ['.5s', 500],
    ['1.s', 1000],
    ['5m0s', 300_000],
    ['1h0m0s', 3_600_000],
  ];
  for (const [text, ms] of cases) assert.equal(parseGoDuration(text), ms, text);
});

test('rejects what time.ParseDuration rejects', () => {
  for (const bad of [
    '',
    '1',
    '10',
    's',
    '.s',
    '-',
    '+',
    '1d',
    '1 s',
    ' 1s',
    '1s ',
    '1S',
    '1e3s',
    '--1s',
    '1.2.3s',
    'abc',
    '1h-5m',
    '9999999999h',
  ])
    assert.equal(parseGoDuration(bad), undefined, JSON.stringify(bad));
  assert.equal(parseGoDuration('1'.repeat(200) + 's'), undefined);
});

test('formats as Duration.String and parses back', () => {
  assert.equal(formatGoDuration(0), '0s');
  assert.equal(formatGoDuration(300_000), '5m0s');
  assert.equal(formatGoDuration(5_400_000), '1h30m0s');
  assert.equal(formatGoDuration(1500), '1.5s');
  assert.equal(formatGoDuration(500), '500ms');
  assert.equal(formatGoDuration(-86_400_000), '-24h0m0s');
  assert.equal(formatGoDuration(0.0015), '1.5µs');
  fc.assert(
    fc.property(
      fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
      (ms) => parseGoDuration(formatGoDuration(ms)) === ms,
    ),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 12 }), (s) => {
      const v = parseGoDuration(s);
      return v === undefined || Number.isFinite(v);
    }),
  );
});
