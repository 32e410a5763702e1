// Calls to the service's REST API. Paths are relative, so the page also works when the
// application is mounted under a route prefix. Failures become ApiError with the service's
// error fields ({"error": {"message", "type", "param", "code"}}) and Retry-After.
//
// API keys: a service with `api_keys` set answers 401 (code invalid_api_key) to a request without a
// valid key. The page then asks for one (onKeyNeeded), keeps it for this tab (sessionStorage),
// sends it as `Authorization: Bearer` and retries. URLs the browser fetches by itself (an
// <audio src>, a download link) carry it as the `auth_id` query parameter (withKey).
// A service without keys never answers 401: nothing is asked, nothing is sent.

const KEY_STORAGE = "tts.apiKey";
let keyHandler = null; // async (refused) => key, from the page
let pendingKey = null; // the question being asked: every refused request waits for the same answer
let memoryKey = null; // the key where sessionStorage is off (private modes): kept until a reload

export class ApiError extends Error {
  constructor(status, message, { param = null, code = null, retryAfter = null } = {}) {
    super(message);
    this.status = status; // 0: the service could not be reached
    this.param = param;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** What a failure that reads the same in every panel says (an i18n key and its values): the
 * service out of reach, or every GPU busy; null for the others, which each panel words itself. */
export function sharedFailure(exc) {
  if (!(exc instanceof ApiError)) return null;
  if (exc.status === 0) return { key: "err_network", vars: {} };
  if (exc.status === 503 && exc.code === "overloaded") return { key: "err_overloaded", vars: { s: exc.retryAfter ?? 5 } };
  return null;
}

export async function getJSON(path) {
  return parse(await send(path, { method: "GET" }));
}

export async function postJSON(path, body) {
  return parse(await send(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body ?? {}),
  }));
}

/** A multipart POST (a file upload): the browser sets the Content-Type with its boundary. */
export async function postForm(path, form) {
  return parse(await send(path, { method: "POST", body: form }));
}

export async function deleteJSON(path) {
  return parse(await send(path, { method: "DELETE" }));
}

/** A POST whose successful answer is read by the caller (a stream of audio, for instance); `body`:
 * an object sent as JSON, or FormData sent as multipart. */
export async function postForResponse(path, body) {
  const response = await send(path, body instanceof FormData ? { method: "POST", body } : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) await parse(response); // throws the ApiError
  return response;
}

/** `handler(refused)` asks the user for a key (refused: the last one was refused); resolves with it. */
export function onKeyNeeded(handler) {
  keyHandler = handler;
}

export function apiKey() {
  try {
    return window.sessionStorage.getItem(KEY_STORAGE) ?? memoryKey;
  } catch {
    return memoryKey;
  }
}

/** `url` with the stored key as `auth_id` (for URLs the browser loads by itself), or unchanged. */
export function withKey(url) {
  const key = apiKey();
  if (!key) return url;
  const keyed = new URL(url, document.baseURI);
  keyed.searchParams.set("auth_id", key);
  return keyed.href;
}

function askForKey(refused) {
  pendingKey ??= keyHandler(refused)
    .then((key) => {
      memoryKey = key;
      try {
        window.sessionStorage.setItem(KEY_STORAGE, key);
      } catch {
        // storage off: memoryKey serves until the page is reloaded
      }
      return key;
    })
    .finally(() => (pendingKey = null));
  return pendingKey;
}

async function isKeyRefusal(response) {
  if (response.status !== 401 || !keyHandler) return false;
  try {
    return (await response.clone().json())?.error?.code === "invalid_api_key";
  } catch {
    return false;
  }
}

async function send(path, init) {
  let key = apiKey();
  for (;;) {
    const headers = key ? { ...init.headers, Authorization: `Bearer ${key}` } : init.headers;
    let response;
    try {
      response = await fetch(path, { ...init, headers });
    } catch (exc) {
      throw new ApiError(0, String(exc?.message || exc));
    }
    if (!(await isKeyRefusal(response))) return response;
    // Another request may have been given a new key meanwhile: try that one before asking.
    const stored = apiKey();
    key = stored && stored !== key ? stored : await askForKey(Boolean(key));
  }
}

async function parse(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.ok) return body;
  const error = body?.error ?? {};
  const retry = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  throw new ApiError(response.status, error.message || response.statusText || `HTTP ${response.status}`, {
    param: error.param ?? null,
    code: error.code ?? null,
    retryAfter: Number.isFinite(retry) ? retry : null,
  });
}
