/**
 * The PostgreSQL the tests use: `SWITCHYARD_PG_URL` (default the local test database). Each
 * test run works in schemas of its own (dropped afterwards). When PostgreSQL cannot be reached
 * the tests are skipped with a message, except under `CI=true`, where they fail.
 */
import pg from 'pg';

export const PG_URL = process.env['SWITCHYARD_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

let counter = 0;
/** A fresh schema name for this process. */
export function freshSchema(prefix = 'sy_test'): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`;
}

/** The store URL for `schema`. */
export function pgUrl(schema: string): string {
  const u = new URL(PG_URL);
  u.searchParams.set('schema', schema);
  return u.toString();
}

/** Runs one statement on a short-lived connection. */
export async function pgExec(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await pgExec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/**
 * Why the PostgreSQL tests cannot run (undefined: they can). Under CI=true an unreachable
 * database is an error, not a reason.
 */
export async function pgUnavailable(): Promise<string | undefined> {
  try {
    await pgExec('SELECT 1');
    return undefined;
  } catch (error) {
    const why = `PostgreSQL at ${PG_URL} is unreachable (${error instanceof Error ? error.message : String(error)}); set SWITCHYARD_PG_URL`;
    if (process.env['CI'] === 'true')
      throw new Error(`${why} (CI=true: the PostgreSQL tests must run)`, { cause: error });
    return why;
  }
}
