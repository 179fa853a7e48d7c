/**
 * `switchyard serve`: the mailbox broker over HTTP. Embedded SQLite under ./data by default,
 * 127.0.0.1:7420; options from flags, then SWITCHYARD_* environment variables, then a JSON
 * config file (--config or SWITCHYARD_CONFIG), then defaults. Auth is on by default when the
 * host is not loopback. SIGINT/SIGTERM: in-flight requests finish, the store closes.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { MailboxBinaryServer, MailboxError, MailboxServer } from '@switchyard/mailbox';
import type { BrokerOptions, TokenSpec } from '@switchyard/mailbox';
import type { CliIo } from '../program.js';

interface ServeFlags {
  host?: string;
  port?: number;
  data?: string;
  store?: string;
  token?: string[];
  config?: string;
  auth?: boolean;
  maxMessageBytes?: number;
  bodyLimit?: number;
  sync?: 'full' | 'normal';
  binaryPort?: number;
  log?: boolean;
}

/** The config file's shape (every key optional). */
export interface ServeConfig {
  host?: string;
  port?: number;
  data?: string;
  store?: string;
  tokens?: (string | TokenSpec)[];
  auth?: boolean;
  maxMessageBytes?: number;
  bodyLimit?: number;
  sync?: 'full' | 'normal';
  /** Port of the binary API (default 7421; 0 when `port` is 0). */
  binaryPort?: number;
  /** Further broker options (mailboxDefaults, defaultLeaseMs, maxWaitMs, …). */
  broker?: Partial<BrokerOptions>;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number 0–65535');
  return n;
}

function bytes(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive number of bytes');
  return n;
}

function collect(value: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), value];
}

function bool(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new InvalidArgumentError(`${name} must be true or false`);
}

/** Merges flags > environment > config file > defaults into server options. */
export function resolveServe(
  flags: ServeFlags,
  env: NodeJS.ProcessEnv,
): {
  host: string;
  port: number;
  binaryPort: number;
  store: string;
  dataDir: string | undefined;
  tokens: (string | TokenSpec)[];
  auth: boolean | undefined;
  bodyLimit: number | undefined;
  broker: BrokerOptions;
} {
  const configPath = flags.config ?? env.SWITCHYARD_CONFIG;
  let config: ServeConfig = {};
  if (configPath !== undefined && configPath !== '') {
    let text: string;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (error) {
      throw new InvalidArgumentError(
        `cannot read the config file ${configPath}: ${(error as Error).message}`,
      );
    }
    try {
      config = JSON.parse(text) as ServeConfig;
    } catch (error) {
      throw new InvalidArgumentError(
        `the config file ${configPath} is not JSON: ${(error as Error).message}`,
      );
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config))
      throw new InvalidArgumentError(`the config file ${configPath} must hold a JSON object`);
  }
  const envNum = (name: string, parse: (v: string) => number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    try {
      return parse(v);
    } catch (error) {
      throw new InvalidArgumentError(`${name} ${(error as Error).message}`);
    }
  };
  const host = flags.host ?? env.SWITCHYARD_HOST ?? config.host ?? '127.0.0.1';
  const portN = flags.port ?? envNum('SWITCHYARD_PORT', port) ?? config.port ?? 7420;
  // The binary API listens next to HTTP: 7421 by default, any free port when HTTP's is 0.
  const binaryPort =
    flags.binaryPort ??
    envNum('SWITCHYARD_BINARY_PORT', port) ??
    config.binaryPort ??
    (portN === 0 ? 0 : 7421);
  const explicitStore = flags.store ?? env.SWITCHYARD_STORE ?? config.store;
  const data = flags.data ?? env.SWITCHYARD_DATA ?? config.data ?? './data';
  const envTokens = (env.SWITCHYARD_TOKENS ?? '').split(',').filter((t) => t.length > 0);
  if (env.SWITCHYARD_TOKEN !== undefined && env.SWITCHYARD_TOKEN !== '') envTokens.push(env.SWITCHYARD_TOKEN);
  const tokens = [...(flags.token ?? []), ...envTokens, ...(config.tokens ?? [])];
  const auth = flags.auth ?? bool('SWITCHYARD_AUTH', env.SWITCHYARD_AUTH) ?? config.auth;
  const maxMessageBytes =
    flags.maxMessageBytes ?? envNum('SWITCHYARD_MAX_MESSAGE_BYTES', bytes) ?? config.maxMessageBytes;
  const bodyLimit = flags.bodyLimit ?? envNum('SWITCHYARD_BODY_LIMIT', bytes) ?? config.bodyLimit;
  const sync = flags.sync ?? (env.SWITCHYARD_SYNC as 'full' | 'normal' | undefined) ?? config.sync;
  if (sync !== undefined && sync !== 'full' && sync !== 'normal')
    throw new InvalidArgumentError('sync must be full or normal');
  const dataDir = explicitStore === undefined ? resolve(data) : undefined;
  const store = explicitStore ?? `sqlite:${resolve(data, 'mailbox.db')}`;
  const broker: BrokerOptions = {
    ...(config.broker ?? {}),
    store,
    ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
    ...(sync === undefined ? {} : { sqlite: { ...(config.broker?.sqlite ?? {}), synchronous: sync } }),
  };
  return { host, port: portN, binaryPort, store, dataDir, tokens, auth, bodyLimit, broker };
}

export function registerServeCommand(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  program
    .command('serve')
    .description('run the mailbox broker over HTTP (embedded SQLite under ./data, on http://127.0.0.1:7420/)')
    .option('--host <host>', 'address to listen on (env SWITCHYARD_HOST; default 127.0.0.1)')
    .option('--port <port>', 'port (env SWITCHYARD_PORT; default 7420; 0 picks one)', port)
    .option(
      '--binary-port <port>',
      'port of the binary API, switchyard:// (env SWITCHYARD_BINARY_PORT; default 7421, 0 with --port 0)',
      port,
    )
    .option('--data <dir>', 'data directory of the SQLite store (env SWITCHYARD_DATA; default ./data)')
    .option(
      '--store <url>',
      "store URL instead: 'sqlite:<path>', 'memory:' or 'postgres://…' (env SWITCHYARD_STORE)",
    )
    .option(
      '--token <token>',
      'a bearer token with every scope; repeat for more (env SWITCHYARD_TOKENS, comma-separated)',
      collect,
    )
    .option(
      '--config <file>',
      'JSON config file (env SWITCHYARD_CONFIG): host, port, data, store, tokens, auth, …',
    )
    .option('--auth', 'require a token even on loopback (default: only beyond loopback)')
    .option('--no-auth', 'never require a token (also beyond loopback: be sure)')
    .option('--max-message-bytes <n>', 'largest message body (default 262144)', bytes)
    .option('--body-limit <n>', 'largest HTTP request body (default 4194304)', bytes)
    .option('--sync <mode>', 'SQLite durability: full (fsync per commit, default) or normal')
    .option('--log', 'log every request as JSON lines (pino) on stdout (env SWITCHYARD_LOG)')
    .action(async (flags: ServeFlags) => {
      // Signal handlers first: a signal that arrives while starting (or just after the URL is
      // printed) must close gracefully, never kill the process with the default action.
      let pending: string | undefined;
      let stop: ((signal: string) => void) | undefined;
      const onSignal = (signal: string): void => {
        if (stop === undefined) pending ??= signal;
        else stop(signal);
      };
      const onInt = (): void => onSignal('SIGINT');
      const onTerm = (): void => onSignal('SIGTERM');
      process.once('SIGINT', onInt);
      process.once('SIGTERM', onTerm);
      let server: MailboxServer;
      let binary: MailboxBinaryServer;
      try {
        const o = resolveServe(flags, process.env);
        if (o.dataDir !== undefined) mkdirSync(o.dataDir, { recursive: true });
        server = await MailboxServer.start({
          broker: o.broker,
          host: o.host,
          port: o.port,
          tokens: o.tokens,
          ...(o.auth === undefined ? {} : { auth: o.auth }),
          ...(o.bodyLimit === undefined ? {} : { bodyLimit: o.bodyLimit }),
          logger: flags.log === true || bool('SWITCHYARD_LOG', process.env.SWITCHYARD_LOG) === true,
        });
        try {
          binary = new MailboxBinaryServer(server.broker, {
            host: o.host,
            port: o.binaryPort,
            tokens: o.tokens,
            auth: server.authRequired,
          });
          await binary.listen();
        } catch (error) {
          await server.close();
          throw error;
        }
        io.stdout(
          `switchyard mailbox broker on ${server.url}/ and ${binary.address} (store ${o.store}, auth ${server.authRequired ? 'on' : 'off'})\n`,
        );
      } catch (error) {
        const code = error instanceof MailboxError ? `${error.code}: ` : '';
        io.stderr(`switchyard serve: ${code}${error instanceof Error ? error.message : String(error)}\n`);
        setExitCode(1);
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        return;
      }
      await new Promise<void>((done) => {
        stop = (signal: string): void => {
          process.off('SIGINT', onInt);
          process.off('SIGTERM', onTerm);
          io.stdout(`switchyard serve: ${signal}, closing\n`);
          binary
            .close()
            .then(() => server.close())
            .then(
              () => {
                io.stdout('switchyard serve: closed\n');
                done();
              },
              (error: unknown) => {
                io.stderr(`switchyard serve: close failed: ${String(error)}\n`);
                setExitCode(1);
                done();
              },
            );
        };
        if (pending !== undefined) stop(pending);
      });
    });
}
