/**
 * The entry points to the PostgreSQL store that the package index exports: they load the store
 * (and the pg driver) on first use, so memory and SQLite users never load pg.
 */
import type { MigrateOptions, MigrateReport } from './migrate-sqlite.js';
import type { PostgresStore, PostgresStoreOptions } from './store.js';

/** Opens the PostgreSQL store at `url` (`postgres://user@host:port/db?schema=…`); see `PostgresStoreOptions`. */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  const { PostgresStore: Store } = await import('./store.js');
  return Store.open(url, options);
}

/** Copies a SQLite store into an empty PostgreSQL store (see `MigrateOptions`); loads pg on first use. */
export async function migrateSqliteToPostgres(
  sqlitePath: string,
  postgresUrl: string,
  options: MigrateOptions = {},
): Promise<MigrateReport> {
  const { migrateSqliteToPostgres: migrate } = await import('./migrate-sqlite.js');
  return migrate(sqlitePath, postgresUrl, options);
}
