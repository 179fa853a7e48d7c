import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  MemoryStore,
  MemoryStoreData,
  SqliteStore,
  SqliteThreadStore,
  storeConformance,
} from '@switchyard/mailbox';
import { makeTempDir } from '@switchyard/testkit';

storeConformance('memory', () => {
  const data = new MemoryStoreData();
  return { durable: true, open: async () => new MemoryStore(data), destroy: async () => {} };
});

storeConformance('sqlite', () => {
  const dir = makeTempDir('switchyard-mailbox-');
  return {
    durable: true,
    open: () => SqliteStore.open(join(dir.path, 'mailbox.db')),
    destroy: async () => rmSync(dir.path, { recursive: true, force: true }),
  };
});

storeConformance('sqlite, synchronous normal', () => {
  const dir = makeTempDir('switchyard-mailbox-');
  return {
    durable: true,
    open: () => SqliteStore.open(join(dir.path, 'mailbox.db'), { synchronous: 'normal' }),
    destroy: async () => rmSync(dir.path, { recursive: true, force: true }),
  };
});

storeConformance('sqlite on its worker thread', () => {
  const dir = makeTempDir('switchyard-mailbox-');
  return {
    durable: true,
    open: () => SqliteThreadStore.open(join(dir.path, 'mailbox.db')),
    destroy: async () => rmSync(dir.path, { recursive: true, force: true }),
  };
});
