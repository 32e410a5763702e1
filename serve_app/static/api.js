// Calls to the service's REST API. Paths are relative, so the page also works when the
// application is mounted under a route prefix. Failures become ApiError with the service's
// error fields ({"error": {"message", "type", "param", "code"}}) and Retry-After.

export class ApiError extends Error {
  constructor(status, message, { param = null, code = null, retryAfter = null } = {}) {
    super(message);
    this.status = status; // 0: the service could not be reached
    this.param = param;
    this.code = code;
    this.retryAfter = retryAfter;
  }
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

/** A POST whose successful answer is read by the caller (a stream of audio, for instance). */
export async function postForResponse(path, body) {
  const response = await send(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) await parse(response); // throws the ApiError
  return response;
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, String(exc?.message || exc));
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
