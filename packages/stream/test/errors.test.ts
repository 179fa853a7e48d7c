import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as api from '@switchyard/stream';
import { checkErrorRegistry } from '@switchyard/testkit';

test('the error registry, the exported classes and docs/errors.md agree', () => {
  checkErrorRegistry({
    packageName: '@switchyard/stream',
    prefix: 'STREAM',
    registry: api.STREAM_ERROR_CODES,
    base: api.StreamError,
    exports: api,
  });
});

test('an error carries its code, its class name and its cause', () => {
  const cause = new Error('root cause');
  const error = new api.StreamInvalidArgumentError('option "x" must be a number', { cause });
  assert.equal(error.code, 'STREAM_ERR_INVALID_ARGUMENT');
  assert.equal(error.name, 'StreamInvalidArgumentError');
  assert.equal(error.cause, cause);
  assert.ok(error instanceof api.StreamError);
  assert.ok(error instanceof Error);
  assert.match(String(error), /^StreamInvalidArgumentError: option "x" must be a number/);
});

test('instanceof holds for an error from another copy of the package, by brand and code', () => {
  const foreign = Object.assign(new Error('from a second copy'), { code: 'STREAM_ERR_INVALID_ARGUMENT' });
  Object.defineProperty(foreign, Symbol.for('switchyard.stream.error'), { value: true });
  assert.ok(foreign instanceof api.StreamError);
  assert.ok(foreign instanceof api.StreamInvalidArgumentError);
  assert.ok(!(new Error('plain') instanceof api.StreamError));
  assert.ok(
    !(Object.assign(new Error('x'), { code: 'STREAM_ERR_INVALID_ARGUMENT' }) instanceof api.StreamError),
  );
});
