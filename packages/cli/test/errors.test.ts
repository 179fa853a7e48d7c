import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as api from 'switchyard';
import { checkErrorRegistry } from '@switchyard/testkit';

test('the error registry, the exported classes and docs/errors.md agree', () => {
  checkErrorRegistry({
    packageName: 'switchyard',
    prefix: 'CLI',
    registry: api.CLI_ERROR_CODES,
    base: api.CliError,
    exports: api,
  });
});

test('an error carries its code, its class name and its cause', () => {
  const cause = new Error('root cause');
  const error = new api.CliInvalidArgumentError('option "x" must be a number', { cause });
  assert.equal(error.code, 'CLI_ERR_INVALID_ARGUMENT');
  assert.equal(error.name, 'CliInvalidArgumentError');
  assert.equal(error.cause, cause);
  assert.ok(error instanceof api.CliError);
  assert.ok(error instanceof Error);
  assert.match(String(error), /^CliInvalidArgumentError: option "x" must be a number/);
});

test('instanceof holds for an error from another copy of the package, by brand and code', () => {
  const foreign = Object.assign(new Error('from a second copy'), { code: 'CLI_ERR_INVALID_ARGUMENT' });
  Object.defineProperty(foreign, Symbol.for('switchyard.cli.error'), { value: true });
  assert.ok(foreign instanceof api.CliError);
  assert.ok(foreign instanceof api.CliInvalidArgumentError);
  assert.ok(!(new Error('plain') instanceof api.CliError));
  assert.ok(!(Object.assign(new Error('x'), { code: 'CLI_ERR_INVALID_ARGUMENT' }) instanceof api.CliError));
});
