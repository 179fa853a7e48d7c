import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as api from '@switchyard/mailbox';
import { checkErrorRegistry } from '@switchyard/testkit';

test('the error registry, the exported classes and docs/errors.md agree', () => {
  checkErrorRegistry({
    packageName: '@switchyard/mailbox',
    prefix: 'MAILBOX',
    registry: api.MAILBOX_ERROR_CODES,
    base: api.MailboxError,
    exports: api,
  });
});

test('an error carries its code, its class name and its cause', () => {
  const cause = new Error('root cause');
  const error = new api.MailboxInvalidArgumentError('option "x" must be a number', { cause });
  assert.equal(error.code, 'MAILBOX_ERR_INVALID_ARGUMENT');
  assert.equal(error.name, 'MailboxInvalidArgumentError');
  assert.equal(error.cause, cause);
  assert.ok(error instanceof api.MailboxError);
  assert.ok(error instanceof Error);
  assert.match(String(error), /^MailboxInvalidArgumentError: option "x" must be a number/);
});

test('instanceof holds for an error from another copy of the package, by brand and code', () => {
  const foreign = Object.assign(new Error('from a second copy'), { code: 'MAILBOX_ERR_INVALID_ARGUMENT' });
  Object.defineProperty(foreign, Symbol.for('switchyard.mailbox.error'), { value: true });
  assert.ok(foreign instanceof api.MailboxError);
  assert.ok(foreign instanceof api.MailboxInvalidArgumentError);
  assert.ok(!(new Error('plain') instanceof api.MailboxError));
  assert.ok(
    !(Object.assign(new Error('x'), { code: 'MAILBOX_ERR_INVALID_ARGUMENT' }) instanceof api.MailboxError),
  );
});
