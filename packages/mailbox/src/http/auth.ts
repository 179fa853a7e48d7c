/**
 * Bearer-token auth: tokens scoped to mailboxes (exact names or `prefix*` patterns) and to
 * the send / receive / admin scopes. Tokens are compared by their SHA-256, so a lookup takes
 * the same time whatever the token.
 */
import { createHash } from 'node:crypto';
import { MailboxForbiddenError, MailboxInvalidArgumentError, MailboxUnauthorizedError } from '../errors.js';
import { isDeadLetterName } from '../message.js';

export type Scope = 'send' | 'receive' | 'admin';
export const SCOPES: readonly Scope[] = Object.freeze(['send', 'receive', 'admin']);

/** A token and what it may do. */
export interface TokenSpec {
  readonly token: string;
  /** A name for logs and errors (never the token itself). */
  readonly name?: string;
  /** Default: all three. */
  readonly scopes?: readonly Scope[];
  /** Mailbox names or `prefix*` patterns (default `['*']`: every mailbox). `<name>.dead` follows `<name>`. */
  readonly mailboxes?: readonly string[];
}

/** Who made a request (null when auth is off: everything is allowed). */
export interface Principal {
  readonly name: string;
  readonly scopes: ReadonlySet<Scope>;
  readonly patterns: readonly string[];
  readonly everyMailbox: boolean;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

function matches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

export function mayUseMailbox(p: Principal | null, mailbox: string): boolean {
  if (p === null || p.everyMailbox) return true;
  const base = isDeadLetterName(mailbox) ? mailbox.slice(0, -'.dead'.length) : undefined;
  return p.patterns.some((pat) => matches(pat, mailbox) || (base !== undefined && matches(pat, base)));
}

/** Validates token specs (messages name the option) and indexes them by hash. */
export class TokenTable {
  readonly #byHash = new Map<string, Principal>();

  constructor(specs: readonly TokenSpec[]) {
    if (!Array.isArray(specs)) throw new MailboxInvalidArgumentError('tokens must be an array');
    specs.forEach((spec, i) => {
      const where = `tokens[${i}]`;
      const s = (typeof spec === 'string' ? { token: spec } : spec) as TokenSpec;
      if (typeof s !== 'object' || s === null)
        throw new MailboxInvalidArgumentError(`${where} must be an object`);
      if (typeof s.token !== 'string' || s.token.length < 8 || s.token.length > 512 || /\s/.test(s.token))
        throw new MailboxInvalidArgumentError(`${where}.token must be 8–512 characters without spaces`);
      const scopes = s.scopes ?? SCOPES;
      if (!Array.isArray(scopes) || scopes.length === 0 || scopes.some((x) => !SCOPES.includes(x as Scope)))
        throw new MailboxInvalidArgumentError(
          `${where}.scopes must be a non-empty list of send, receive, admin`,
        );
      const patterns: unknown = s.mailboxes ?? ['*'];
      if (
        !Array.isArray(patterns) ||
        patterns.length === 0 ||
        patterns.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 210)
      )
        throw new MailboxInvalidArgumentError(
          `${where}.mailboxes must be a non-empty list of names or prefix* patterns`,
        );
      const name = s.name ?? `token #${i + 1}`;
      if (typeof name !== 'string') throw new MailboxInvalidArgumentError(`${where}.name must be a string`);
      const hash = sha256(s.token);
      if (this.#byHash.has(hash)) throw new MailboxInvalidArgumentError(`${where}.token is listed twice`);
      this.#byHash.set(hash, {
        name,
        scopes: new Set(scopes),
        patterns: (patterns as string[]).slice(),
        everyMailbox: (patterns as string[]).includes('*'),
      });
    });
  }

  get size(): number {
    return this.#byHash.size;
  }

  /** The principal of an `Authorization` header value; throws 401 errors. */
  authenticate(header: string | undefined): Principal {
    if (header === undefined || header.length === 0)
      throw new MailboxUnauthorizedError('authentication required: send "Authorization: Bearer <token>"');
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (m === null) throw new MailboxUnauthorizedError('the Authorization header must be "Bearer <token>"');
    const p = this.#byHash.get(sha256(m[1]!));
    if (p === undefined) throw new MailboxUnauthorizedError('unknown token');
    return p;
  }
}

/** Throws 403 unless `p` has `scope`. */
export function requireScope(p: Principal | null, scope: Scope): void {
  if (p !== null && !p.scopes.has(scope))
    throw new MailboxForbiddenError(`${p.name} may not ${scope} (its scopes: ${[...p.scopes].join(', ')})`);
}

/** Throws 403 unless `p` may use `mailbox`. */
export function requireMailbox(p: Principal | null, mailbox: string): void {
  if (!mayUseMailbox(p, mailbox))
    throw new MailboxForbiddenError(`${p!.name} may not use mailbox ${JSON.stringify(mailbox.slice(0, 64))}`);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
