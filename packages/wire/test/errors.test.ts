import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as api from '@switchyard/wire';
import { checkErrorRegistry } from '@switchyard/testkit';

test('the error registry, the exported classes and docs/errors.md agree', () => {
  checkErrorRegistry({
    packageName: '@switchyard/wire',
    prefix: 'WIRE',
    registry: api.WIRE_ERROR_CODES,
    base: api.WireError,
    exports: api,
  });
});

test('an error carries its code, its class name and its cause', () => {
  const cause = new Error('root cause');
  const error = new api.WireInvalidArgumentError('option "x" must be a number', { cause });
  assert.equal(error.code, 'WIRE_ERR_INVALID_ARGUMENT');
  assert.equal(error.name, 'WireInvalidArgumentError');
  assert.equal(error.cause, cause);
  assert.ok(error instanceof api.WireError);
  assert.ok(error instanceof Error);
  assert.match(String(error), /^WireInvalidArgumentError: option "x" must be a number/);
});

test('instanceof holds for an error from another copy of the package, by brand and code', () => {
  const foreign = Object.assign(new Error('from a second copy'), { code: 'WIRE_ERR_INVALID_ARGUMENT' });
  Object.defineProperty(foreign, Symbol.for('switchyard.wire.error'), { value: true });
  assert.ok(foreign instanceof api.WireError);
  assert.ok(foreign instanceof api.WireInvalidArgumentError);
  assert.ok(!(new Error('plain') instanceof api.WireError));
  assert.ok(!(Object.assign(new Error('x'), { code: 'WIRE_ERR_INVALID_ARGUMENT' }) instanceof api.WireError));
});
