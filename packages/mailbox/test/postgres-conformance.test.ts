import { test } from 'node:test';
import { openPostgresStore, storeConformance } from '@switchyard/mailbox';
import { dropSchema, freshSchema, pgUnavailable, pgUrl } from './helpers/pg-env.js';

const unavailable = await pgUnavailable();

if (unavailable !== undefined) {
  test('PostgreSQL store conformance', (t) => t.skip(unavailable));
} else {
  storeConformance('postgres', () => {
    const schema = freshSchema();
    return {
      durable: true,
      open: () => openPostgresStore(pgUrl(schema)),
      destroy: () => dropSchema(schema),
    };
  });
}
