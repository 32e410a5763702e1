"""Optional API keys (setting `api_keys`; empty = open) for everything but the open routes.

With keys configured, every route that costs GPU time, changes state or describes the cluster needs
a valid key: all of `/api/*` (the Kyutai WebSocket included), `/v1/*` and `/mcp`. Only the routes a
load balancer or a browser needs before it can hold a key stay open (`OPEN_PATHS`, `OPEN_PREFIXES`):
the health checks, the web page and its static files, and the API docs. The guard is one ASGI
middleware that refuses by default, so a route added later is guarded without anyone remembering to.

A key is read where each family of clients puts it: `Authorization: Bearer KEY` (OpenAI SDKs, MCP
clients, the web page's fetches), the `kyutai-api-key` header (Kyutai's clients), or the `auth_id`
query parameter (browsers cannot set headers on a WebSocket or an `<audio src>`; Kyutai's server
reads it too). A refusal is a plain HTTP 401 with `WWW-Authenticate: Bearer` and the service's
error body (code `invalid_api_key`); a WebSocket handshake is refused the same way where the server
can send HTTP on it, else closed with 1008."""

from __future__ import annotations

import contextvars
import hmac
from typing import Mapping

from starlette.datastructures import Headers, QueryParams
from starlette.websockets import WebSocket

from .cross_site import relative_path
from ..errors import APIError, error_response, refuse_websocket
from ..protocols.error_shape import Refusal

KYUTAI_HEADER = "kyutai-api-key"
QUERY_PARAMETER = "auth_id"
# Open with keys configured: liveness/readiness, the web page and its files, the API docs.
OPEN_PATHS = frozenset({"", "/", "/health", "/ready", "/docs", "/docs/oauth2-redirect", "/openapi.json",
                        "/apidocs", "/static"})
OPEN_PREFIXES = ("/static/", "/favicon")
REFUSAL = Refusal("invalid_api_key", f"missing or invalid API key: send 'Authorization: Bearer <key>', a "
                                     f"'{KYUTAI_HEADER}' header or an '{QUERY_PARAMETER}' query parameter")
MESSAGE = REFUSAL.description
# The three ways to send a key, as the OpenAPI document names them (any one will do).
SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer"},
                    "kyutai_api_key": {"type": "apiKey", "in": "header", "name": KYUTAI_HEADER},
                    "auth_id": {"type": "apiKey", "in": "query", "name": QUERY_PARAMETER}}


# The API key of the request being served (None without one): who owns the voices it uploads,
# lists, deletes or speaks with (serve_app/service/voice_store.py). Set by ApiKeyGuard for HTTP and
# WebSocket routes; MCP tools set it from their request's headers (`use_key_of`).
_current_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("api_key", default=None)


def current_key() -> str | None:
    return _current_key.get()


def use_key_of(headers: Mapping[str, str], query: Mapping[str, str], api_keys: list[str]) -> None:
    """Makes the key these headers/query present the current one, as ApiKeyGuard does (MCP's
    tools, which run outside the request's task). Without keys configured there is none."""
    key = presented_key(headers, query)
    _current_key.set(key if api_keys and is_allowed(api_keys, key) else None)


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization") or ""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return headers.get(KYUTAI_HEADER) or query.get(QUERY_PARAMETER)


def is_allowed(api_keys: list[str], key: str | None) -> bool:
    if not api_keys:
        return True
    # Compare against every key in constant time: no timing hint about which prefix matched.
    return key is not None and any(hmac.compare_digest(key.encode(), k.encode()) for k in api_keys)


def needs_key(path: str) -> bool:
    """Whether a request to `path` (relative to the application's route prefix) needs a key."""
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


class ApiKeyGuard:
    """ASGI middleware: with keys configured, HTTP requests and WebSocket handshakes to any path
    but the open ones need a valid key (the request body is never read for a refusal)."""

    def __init__(self, app, api_keys: list[str]):
        self.app, self.api_keys = app, list(api_keys)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        key = presented_key(Headers(scope=scope), QueryParams(scope.get("query_string", b"")))
        _current_key.set(key if self.api_keys and is_allowed(self.api_keys, key) else None)
        if not self.api_keys or not needs_key(relative_path(scope)) or is_allowed(self.api_keys, key):
            return await self.app(scope, receive, send)
        error = APIError(401, MESSAGE, code=REFUSAL.code, headers={"WWW-Authenticate": "Bearer"})
        if scope["type"] == "websocket":
            return await refuse_websocket(WebSocket(scope, receive, send), error)
        response = error_response(error.status, error.message, error.param, error.code, error.headers)
        return await response(scope, receive, send)
