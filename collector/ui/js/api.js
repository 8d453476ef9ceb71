// The REST API and the signed-in session.
//
// The access token lives only in this module's memory; the refresh token is an HttpOnly
// cookie the page cannot read (the collector sets it when login asks for
// `refresh_cookie`). Neither is ever in localStorage or a URL. A reload restores the
// session by refreshing through the cookie; the access token is renewed before it
// expires, and once more when a request is refused as unauthorized.

let access = null;
let user = null;
let renewTimer = null;
let refreshing = null;
const listeners = new Set();

export class SignedOut extends Error {
  constructor() { super('signed out'); }
}

export const currentUser = () => user;
export const accessToken = () => access;
export const can = (role) => ROLES.indexOf(user?.role) >= ROLES.indexOf(role);
const ROLES = ['viewer', 'operator', 'admin'];

/** Calls `listener(user)` whenever the session starts, renews or ends. */
export function onSession(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function accept(tokens) {
  access = tokens.access_token;
  user = tokens.user;
  clearTimeout(renewTimer);
  renewTimer = setTimeout(refresh, Math.max(5, tokens.expires_in * 0.8) * 1000);
  listeners.forEach((listener) => listener(user));
}

function forget() {
  const had = access !== null;
  access = null;
  user = null;
  clearTimeout(renewTimer);
  if (had) listeners.forEach((listener) => listener(null));
}

async function failure(response) {
  try {
    const body = await response.json();
    return new Error(body.message || body.error || `${response.status} ${response.statusText}`);
  } catch {
    return new Error(`${response.status} ${response.statusText}`);
  }
}

/**
 * Waits before each new attempt of a request that got no answer at all (`fetch` rejects
 * with a TypeError). A browser aborts the requests in flight when its machine's network
 * changes (see boot.js), so one such failure says little about the collector.
 */
const RETRIES_MS = [250, 1000];

/**
 * `fetch`, tried again after a network failure. Only for requests that may run twice:
 * reads; a sign-in (a second session at worst); and a refresh. A refresh token works once,
 * but a lost answer also lost the cookie that replaces it, so the browser holds the spent
 * one either way: sent again, it ends the session now rather than at the next refresh,
 * while a request that never arrived succeeds. Other writes are not sent again: the
 * collector may have done them.
 */
async function fetchAgain(url, init) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await fetch(url, init);
    } catch (error) {
      if (!(error instanceof TypeError) || attempt >= RETRIES_MS.length) throw error;
      await new Promise((resolve) => setTimeout(resolve, RETRIES_MS[attempt]));
    }
  }
}

export async function signIn(email, password) {
  const response = await fetchAgain('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, refresh_cookie: true }),
    credentials: 'same-origin',
  });
  if (!response.ok) throw await failure(response);
  accept(await response.json());
}

async function renew() {
  try {
    const response = await fetchAgain('/api/v1/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-dockermon-client': 'web' },
      body: '{}',
      credentials: 'same-origin',
    });
    if (!response.ok) { forget(); return false; }
    accept(await response.json());
    return true;
  } catch {
    // The collector is unreachable: keep what we have and try again shortly.
    clearTimeout(renewTimer);
    renewTimer = setTimeout(refresh, RETRY_MS);
    return access !== null;
  }
}

const RETRY_MS = 10000;

/**
 * Renews the tokens through the cookie; false when there is no session to renew. A refresh
 * token works once, so tabs take turns (a Web Lock, where the browser has them: secure
 * contexts), and each sends the cookie the previous one left.
 */
export function refresh() {
  refreshing ??= (async () => {
    try {
      return navigator.locks
        ? await navigator.locks.request('dockermon-refresh', renew)
        : await renew();
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** Ends the session at the collector (renewing first if the token ran out) and here. */
export async function signOut() {
  try {
    await request('POST', '/auth/logout', undefined, undefined, 'same-origin');
  } catch {
    // Signed out already, or the collector is away: the cookie goes with the session.
  } finally {
    forget();
  }
}

/** `credentials` is `omit` except for logout, whose answer deletes the refresh cookie. */
function send(method, path, body, accept = 'application/json', credentials = 'omit') {
  const headers = { authorization: `Bearer ${access}`, accept };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return (method === 'GET' ? fetchAgain : fetch)(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials,
  });
}

/** A request as the signed-in user; JSON in and out. Throws `SignedOut` without a session. */
export async function request(method, path, body, accept, credentials) {
  if (!access && !(await refresh())) throw new SignedOut();
  let response = await send(method, path, body, accept, credentials);
  if (response.status === 401) {
    if (!(await refresh())) throw new SignedOut();
    response = await send(method, path, body, accept, credentials);
  }
  if (response.status === 401) { forget(); throw new SignedOut(); }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.blob();
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);
export const patch = (path, body) => request('PATCH', path, body);
export const del = (path) => request('DELETE', path);

/** `{a: 1, b: undefined}` → "?a=1". */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
