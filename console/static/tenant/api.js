// The public API, called like any client: the tenant is named by x-tenant-id and/or authenticated
// by x-api-key, both read from sessionStorage (never from or into a URL, never logged). Failures
// throw ApiError carrying the envelope's code and message.
const CREDS = 'crispy.console.creds';
const ERRORS = 'crispy.console.errors';
const RATE = 'crispy.console.ratelimit';
const MAX_ERRORS = 20;

export class ApiError extends Error {
  constructor(status, code, message, traceId) {
    super(message);
    this.status = status;
    this.code = code;
    this.traceId = traceId || '';
  }
}

export function creds() {
  try { return JSON.parse(sessionStorage.getItem(CREDS)) || null; } catch { return null; }
}

export function setCreds(c) { sessionStorage.setItem(CREDS, JSON.stringify(c)); }

export function signOut() {
  sessionStorage.removeItem(CREDS);
  sessionStorage.removeItem(ERRORS);
  sessionStorage.removeItem(RATE);
}

export function authHeaders(extra = {}) {
  const c = creds() || {};
  const hdr = {...extra};
  if (c.tenantId) hdr['x-tenant-id'] = c.tenantId;
  if (c.key) hdr['x-api-key'] = c.key;
  return hdr;
}

// recentErrors are the errors this console received in this browser session, newest first.
export function recentErrors() {
  try { return JSON.parse(sessionStorage.getItem(ERRORS)) || []; } catch { return []; }
}

function noteError(route, e) {
  const list = recentErrors();
  list.unshift({time: Date.now(), route, status: e.status, code: e.code, message: e.message, traceId: e.traceId});
  sessionStorage.setItem(ERRORS, JSON.stringify(list.slice(0, MAX_ERRORS)));
}

// rateLimit is the last rate-limit state the API reported (x-ratelimit-* headers).
export function rateLimit() {
  try { return JSON.parse(sessionStorage.getItem(RATE)) || null; } catch { return null; }
}

function noteRateLimit(route, res) {
  const limit = res.headers.get('x-ratelimit-limit');
  if (limit === null) return;
  sessionStorage.setItem(RATE, JSON.stringify({
    route, limit: Number(limit), remaining: Number(res.headers.get('x-ratelimit-remaining')),
    resetAt: Number(res.headers.get('x-ratelimit-reset')), retryAfter: res.headers.get('retry-after'), seen: Date.now(),
  }));
}

// errorFrom turns a failed response into an ApiError with the envelope's message.
export async function errorFrom(res) {
  let code = 'http_' + res.status, message = res.statusText || 'request failed', traceId = res.headers.get('x-trace-id');
  try {
    const env = await res.json();
    if (env && env.error) { code = env.error.code; message = env.error.message; traceId = env.traceId || traceId; }
  } catch { /* not JSON */ }
  return new ApiError(res.status, code, message, traceId);
}

// raw sends a request and returns the Response when it is 2xx, else throws ApiError.
export async function raw(method, path, {body, json, signal, headers = {}} = {}) {
  const init = {method, headers: authHeaders(headers), signal, credentials: 'omit', cache: 'no-store'};
  if (json !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const route = method + ' ' + path.split('?')[0];
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    const e = new ApiError(0, 'network', 'the server could not be reached: ' + err.message);
    noteError(route, e);
    throw e;
  }
  noteRateLimit(route, res);
  if (!res.ok) {
    const e = await errorFrom(res);
    noteError(route, e);
    throw e;
  }
  return res;
}

// call returns the envelope's data.
export async function call(method, path, opts) {
  const res = await raw(method, path, opts);
  const env = await res.json();
  return env.data;
}

export const get = (path, opts) => call('GET', path, opts);
export const post = (path, json, opts) => call('POST', path, {...opts, json});
export const del = (path, opts) => call('DELETE', path, opts);
