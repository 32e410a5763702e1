"""Guards every request passes before a route sees it, installed in one place and in one order.

Outermost first (each guard refuses before the next one reads anything):
1. `HostGuard` (hosts.py; only with `check_host_everywhere`): a page reaching the service by DNS
   rebinding learns nothing at all.
2. `ApiKeyGuard` (api_keys.py): with `api_keys` set, a client without a key learns nothing (no
   origin, body size or JSON rules), and its body is never read.
3. `CrossSiteGuard` (cross_site.py): another site's page cannot drive the service (Origin check,
   JSON-only state-changing POSTs; multipart-only on upload routes).
4. `BodySizeLimit` (body_limit.py): no body larger than a valid request (an upload route's own
   limit, /mcp's own).
Upload routes are declared with `@upload(setting)` on their endpoint (uploads.py); the guards read it.
`/mcp` adds its SDK's own Host/Origin checks (serve_app/routes/mcp.py).
"""

from __future__ import annotations

from ..protocols.error_shape import Refusal
from . import api_keys, body_limit, cross_site, hosts, uploads
from .api_keys import ApiKeyGuard
from .body_limit import BodySizeLimit
from .cross_site import CrossSiteGuard
from .hosts import HostGuard
from .uploads import upload

__all__ = ["guard_refusals", "install_guards", "upload"]


def install_guards(app, settings) -> None:
    """Adds the guards to a FastAPI app. Starlette runs the middleware added LAST first, so they
    are added innermost first."""
    app.add_middleware(BodySizeLimit, settings=settings)
    app.add_middleware(CrossSiteGuard, allowed_origins=settings.allowed_origins)
    app.add_middleware(ApiKeyGuard, api_keys=settings.api_keys)
    if settings.check_host_everywhere:
        app.add_middleware(HostGuard, allowed_hosts=settings.allowed_hosts)


def guard_refusals(method: str, path: str, settings, upload_limit: int | None = None) -> dict[int, Refusal]:
    """What the guards may answer instead of the route of an operation (`path` relative to the
    application; `upload_limit`: its body limit if it is an upload route), on the guards' own
    conditions: the OpenAPI document states them (serve_app/openapi.py). Which guards are
    installed depends on the settings, as above."""
    limit = upload_limit if upload_limit is not None else body_limit.json_limit(settings)
    refusals = {413: body_limit.REFUSAL._replace(description=f"The body is larger than {limit} bytes.")}
    if settings.check_host_everywhere and hosts.checks_host(path):
        refusals[421] = hosts.REFUSAL
    if settings.api_keys and api_keys.needs_key(path):
        refusals[401] = api_keys.REFUSAL
    if cross_site.checks_origin(method, path):
        refusals[403] = cross_site.CROSS_ORIGIN
    if cross_site.needs_json(method):  # a documented operation is one a route takes
        refusals[415] = uploads.MULTIPART_REQUIRED if upload_limit is not None else cross_site.JSON_REQUIRED
    return refusals
