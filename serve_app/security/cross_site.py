"""No cross-site control: another web site's page must not make a visitor's browser drive the
service (offload every GPU, spend GPU time, save files).

Browsers send `Origin` with every cross-site POST and WebSocket handshake. A request is refused
(403) when its Origin is neither the service's own (the `Host` it was sent to) nor matches
`allowed_origins`; clients that send no Origin (curl, SDKs, agents) are not browsers and pass.
A POST that a route takes must also carry a JSON body (415 otherwise): an HTML form or a bodiless
`fetch` cannot send `application/json` cross-site without a CORS preflight, which this service
never grants. An upload route (serve_app/security/uploads.py) takes multipart/form-data instead
(415 otherwise), which a foreign page CAN send: the Origin rule is what stops one there. POST is the one state-changing method a page may send without a preflight, so the
other methods need only the Origin check. A request no route takes (an unknown path, or a method
its path does not have) goes on to the router, which answers 404, or 405 with `Allow`. `/mcp`
keeps its own Host/Origin checks (serve_app/routes/mcp.py).

DNS rebinding defeats the Origin rule: serve_app/security/hosts.py is the answer to that.
"""

from __future__ import annotations

import fnmatch
from typing import Mapping
from urllib.parse import urlsplit

from ..errors import error_response
from ..protocols.error_shape import Refusal
from . import uploads

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CROSS_ORIGIN = Refusal("cross_origin", "A browser page whose Origin is neither the service's own nor in "
                                       "allowed_origins (clients that send no Origin pass).")
JSON_REQUIRED = Refusal("json_required", "send the request as JSON (Content-Type: application/json), "
                                         "even an empty object {}")


def checks_origin(method: str, path: str) -> bool:
    """Whether a request is held to the Origin rule: every state-changing method, but on /mcp
    (whose SDK checks Host and Origin itself)."""
    return method not in SAFE_METHODS and not path.startswith("/mcp")


def needs_json(method: str) -> bool:
    """Whether a request that a route takes must carry JSON (or, to an upload route, a multipart
    form): POST, the one state-changing method a page may send cross-site without a preflight (an
    HTML form). DELETE and the others need no body."""
    return method == "POST"


def required_content_type(scope) -> tuple[str, Refusal] | None:
    """The content type a request must carry, and the refusal if it does not: JSON for a POST a
    route takes, multipart/form-data for a POST to an upload route; None for anything else (a
    request no route takes goes on to the router's 404 / 405)."""
    if not needs_json(scope["method"]):
        return None
    route = uploads.route_for(scope)
    if route is None:
        return None
    if uploads.limit_setting(route) is not None:
        return uploads.MULTIPART, uploads.MULTIPART_REQUIRED
    return "application/json", JSON_REQUIRED


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
        if scope["type"] != "http" or not checks_origin(scope["method"], relative_path(scope)):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        reason = refusal(headers, self.allowed_origins)
        if reason is not None:
            return await error_response(403, reason, code=CROSS_ORIGIN.code)(scope, receive, send)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        required = required_content_type(scope)
        if required is not None and content_type != required[0]:
            response = error_response(415, required[1].description, code=required[1].code)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
