"""No cross-site control: another web site's page must not make a visitor's browser drive the
service (offload every GPU, spend GPU time, save files).

Browsers send `Origin` with every cross-site POST and WebSocket handshake. A request is refused
(403) when its Origin is neither the service's own (the `Host` it was sent to) nor matches
`allowed_origins`; clients that send no Origin (curl, SDKs, agents) are not browsers and pass.
State-changing REST calls must also carry a JSON body (415 otherwise): an HTML form or a bodiless
`fetch` cannot send `application/json` cross-site without a CORS preflight, which this service
never grants. `/mcp` keeps its own Host/Origin checks (serve_app/routes/mcp.py).

DNS rebinding defeats the Origin rule: serve_app/security/hosts.py is the answer to that.
"""

from __future__ import annotations

import fnmatch
from typing import Mapping
from urllib.parse import urlsplit

from ..errors import error_response

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def origin_allowed(origin: str | None, host: str | None, allowed_origins: list[str]) -> bool:
    """True for no Origin (not a browser), the service's own origin, or an allowed pattern."""
    if origin is None:
        return True
    if origin == "null":  # sandboxed frames, file:// pages: never the service's own page
        return False
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return True
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in allowed_origins)


def refusal(headers: Mapping[str, str], allowed_origins: list[str]) -> str | None:
    """Why a browser request with these headers must be refused, or None."""
    origin = headers.get("origin")
    if origin_allowed(origin, headers.get("host"), allowed_origins):
        return None
    return f"requests from the web page at {origin[:200]!r} are not allowed (allowed_origins)"


def relative_path(scope) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class CrossSiteGuard:
    """ASGI middleware applying the rules above to HTTP requests (the WebSocket route checks its
    handshake itself)."""

    def __init__(self, app, allowed_origins: list[str]):
        self.app, self.allowed_origins = app, list(allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or relative_path(scope).startswith("/mcp"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        reason = refusal(headers, self.allowed_origins)
        if reason is not None:
            return await error_response(403, reason, code="cross_origin")(scope, receive, send)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            response = error_response(415, "send the request as JSON (Content-Type: application/json), "
                                           "even an empty object {}", code="json_required")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
