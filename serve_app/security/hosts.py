"""The Host check: DNS rebinding defeats the Origin rule (serve_app/security/cross_site.py), since a
page whose name is made to resolve to this service is "the service's own origin".

`/mcp` always checks `Host` against `allowed_hosts` (its SDK's own check); with
`check_host_everywhere`, `HostGuard` does so on every route (421 otherwise), for a service that
browsers can reach on a workstation or a LAN. It is off by default so that REST clients of a
cluster need no configuration; /health and /ready stay open for probes, which use any address.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from ..errors import APIError, error_response, refuse_websocket
from ..protocols.error_shape import Refusal
from .cross_site import relative_path

PROBE_PATHS = frozenset({"/health", "/ready"})
REFUSAL = Refusal("invalid_host", "check_host_everywhere is set and the Host header is not in allowed_hosts.")


def checks_host(path: str) -> bool:
    """Whether HostGuard (when installed) checks a request to `path`: all but the probes."""
    return path not in PROBE_PATHS


def host_allowed(host: str | None, allowed_hosts: list[str]) -> bool:
    """`host` (a Host header) against `allowed_hosts` as /mcp reads them: `name:port`, `name:*`
    for any port (or none), `*` for any host. Case-insensitive."""
    if "*" in allowed_hosts:
        return True
    host = (host or "").lower()
    for pattern in (p.lower() for p in allowed_hosts):
        if pattern.endswith(":*") and (host == pattern[:-2] or host.startswith(pattern[:-1])):
            return True
        if host == pattern:
            return True
    return False


class HostGuard:
    """ASGI middleware: HTTP requests and WebSocket handshakes whose Host is not in
    `allowed_hosts` get 421 (the answer /mcp gives), probes excepted."""

    def __init__(self, app, allowed_hosts: list[str]):
        self.app, self.allowed_hosts = app, list(allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not checks_host(relative_path(scope)):
            return await self.app(scope, receive, send)
        host = Headers(scope=scope).get("host")
        if host_allowed(host, self.allowed_hosts):
            return await self.app(scope, receive, send)
        error = APIError(421, f"this service does not answer to the host name {(host or '')[:200]!r} "
                              "(allowed_hosts)", code=REFUSAL.code)
        if scope["type"] == "websocket":
            from starlette.websockets import WebSocket

            return await refuse_websocket(WebSocket(scope, receive, send), error)
        return await error_response(error.status, error.message, code=error.code)(scope, receive, send)
