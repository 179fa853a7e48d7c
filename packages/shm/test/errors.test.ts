import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as api from '@switchyard/shm';
import { checkErrorRegistry } from '@switchyard/testkit';

test('the error registry, the exported classes and docs/errors.md agree', () => {
  checkErrorRegistry({
    packageName: '@switchyard/shm',
    prefix: 'SHM',
    registry: api.SHM_ERROR_CODES,
    base: api.ShmError,
    exports: api,
  });
});

test('an error carries its code, its class name and its cause', () => {
  const cause = new Error('root cause');
  const error = new api.ShmInvalidArgumentError('option "x" must be a number', { cause });
  assert.equal(error.code, 'SHM_ERR_INVALID_ARGUMENT');
  assert.equal(error.name, 'ShmInvalidArgumentError');
  assert.equal(error.cause, cause);
  assert.ok(error instanceof api.ShmError);
  assert.ok(error instanceof Error);
  assert.match(String(error), /^ShmInvalidArgumentError: option "x" must be a number/);
});

test('instanceof holds for an error from another copy of the package, by brand and code', () => {
  const foreign = Object.assign(new Error('from a second copy'), { code: 'SHM_ERR_INVALID_ARGUMENT' });
  Object.defineProperty(foreign, Symbol.for('switchyard.shm.error'), { value: true });
  assert.ok(foreign instanceof api.ShmError);
  assert.ok(foreign instanceof api.ShmInvalidArgumentError);
  assert.ok(!(new Error('plain') instanceof api.ShmError));
  assert.ok(!(Object.assign(new Error('x'), { code: 'SHM_ERR_INVALID_ARGUMENT' }) instanceof api.ShmError));
});
