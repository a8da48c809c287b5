// api.js — the /v1 calls the page makes, with the token the person entered (kept in
// this tab's sessionStorage only: gone when the tab closes, never sent anywhere else).

const KEY = 'cmdb.token';

export function token() {
  return sessionStorage.getItem(KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e ? e.message : 'HTTP ' + status);
    this.status = status;
    this.body = body;
  }
}

/* The path of a node's resource: /nodes/KIND/NAME, each part percent-encoded. */
export function nodePath(ref) {
  const i = ref.indexOf('/');
  return '/nodes/' + encodeURIComponent(ref.slice(0, i)) + '/' + encodeURIComponent(ref.slice(i + 1));
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const t = q.toString();
  return t ? '?' + t : '';
}

/* GET or POST /v1 + path → parsed JSON; throws ApiError on a non-2xx answer. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Authorization: 'Bearer ' + token() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch('/v1' + path, {
    method, headers, signal, cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/* The seq the server has applied (no token needed): where "recent" starts. */
export async function latestSeq(signal) {
  try {
    const res = await fetch('/readyz', { cache: 'no-store', signal });
    const body = await res.json();
    return Number(body.seq) || 0;
  } catch {
    return 0;
  }
}
