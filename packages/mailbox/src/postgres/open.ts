/**
 * The entry points to the PostgreSQL store that the package index exports: they load the store
 * (and the pg driver) on first use, so memory and SQLite users never load pg.
 */
import type { PostgresStore, PostgresStoreOptions } from './store.js';

/** Opens the PostgreSQL store at `url` (`postgres://user@host:port/db?schema=…`); see `PostgresStoreOptions`. */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  const { PostgresStore: Store } = await import('./store.js');
  return Store.open(url, options);
}
