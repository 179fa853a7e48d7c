// The /v1/ client of the page: JSON in and out, the bearer token from sessionStorage, and one
// shared token prompt when the broker answers 401.

const TOKEN_KEY = 'switchyard.mailbox.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

let askToken = null;
let asking = null;

/**
 * `prompt(reason)` resolves with a token the user typed; it is asked once however many calls
 * were refused at the same time.
 */
export function onUnauthorized(prompt) {
  askToken = prompt;
}

async function once(method, path, body) {
  const headers = { accept: 'application/json' };
  const token = getToken();
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = data && typeof data === 'object' ? data.error : undefined;
    throw new ApiError(
      res.status,
      e?.code ?? 'HTTP_' + res.status,
      typeof e?.message === 'string' ? e.message : `${method} ${path}: HTTP ${res.status}`,
    );
  }
  return data;
}

/** Calls the API; on 401 asks for a token (again, if the stored one is refused) and retries. */
export async function api(method, path, body) {
  for (;;) {
    const used = getToken();
    try {
      return await once(method, path, body);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || askToken === null) throw error;
      // Another call got a new token while this one was on the wire: just retry with it.
      if (getToken() !== used && asking === null) continue;
      const hadToken = used !== null;
      if (hadToken && getToken() === used) setToken(null);
      asking ??= askToken(hadToken ? 'That token was refused; try another.' : '').finally(() => {
        asking = null;
      });
      setToken(await asking);
    }
  }
}

/** A path segment: mailbox names may hold `/` and `:`. */
export const seg = (s) => encodeURIComponent(s);
