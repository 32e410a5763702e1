"""The `Ingress` deployment: one FastAPI app on one port for the whole cluster.

The FastAPI app is built inside the replica by `build_fastapi_app` (passed to `serve.ingress` as a
builder, so the app is never pickled: see DESIGN §2 on FastAPI >= 0.139.2). Serve calls the
deployment's constructor first, then the builder, in the same process: the constructor leaves the
context for the builder in `_context_for_builder`.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse
from ray import serve

from .routes import mcp as mcp_server
from .security.api_keys import ApiKeyGuard
from .context import IngressContext
from .security.cross_site import CrossSiteGuard, HostGuard
from .errors import error_response, install_error_handlers
from .routes import gpu, health, tts, ui, voices
from .routes import openai as openai_routes, websocket as websocket_routes
from .settings import AppSettings

log = logging.getLogger(__name__)

_context_for_builder: IngressContext | None = None

API_DESCRIPTION = """Kyutai TTS on Ray Serve: one endpoint for every GPU of the cluster.

Errors share one JSON shape: `{"error": {"message", "type", "param", "code"}}`. Status codes: 422 for
a malformed request (the field is named in `param`), 400 for an unknown or refused voice, 404 for an
unknown file, 413 for an oversized body, 503 (with `Retry-After`) when the model is unavailable or
every worker is saturated."""


class BodySizeLimit:
    """Refuses request bodies larger than `limit` bytes with 413: at once when Content-Length says
    so, and while reading when a chunked body grows past it (it is never read whole)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"request body larger than {self.limit} bytes")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = error_response(413, str(self._too_large().detail))  # same body as the raise below
            return await response(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._too_large()  # FastAPI passes it on to the error handlers
            return message

        return await self.app(scope, counting_receive, send)


def create_app(ctx: IngressContext) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with contextlib.AsyncExitStack() as stack:
            for hook in app.state.lifespan_hooks:
                await stack.enter_async_context(hook(app))
            yield

    app = FastAPI(title="Kyutai TTS on Ray Serve", version="0.1.0", description=API_DESCRIPTION,
                  docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.lifespan_hooks = []
    app.state.websocket_sessions = set()  # open Kyutai WebSocket sessions (capped per replica)
    install_error_handlers(app)
    for module in (health, tts, voices, gpu, ui, openai_routes, websocket_routes):
        app.include_router(module.router)
    ui.mount_static(app)  # the web page's scripts and styles at /static
    # MCP over streamable HTTP at /mcp; its session manager runs in the lifespan (DESIGN §5).
    mcp_server.mount(app)
    app.state.lifespan_hooks.append(mcp_server.lifespan)

    @app.get("/apidocs", include_in_schema=False)
    async def apidocs():  # the old service's docs address
        return RedirectResponse("/docs")

    # Bodies are JSON with at most max_text_chars characters (4 bytes each in UTF-8) plus fields.
    app.add_middleware(BodySizeLimit, limit=ctx.settings.max_text_chars * 4 + 64 * 1024)
    # Another site's page never reaches a route (serve_app/security/cross_site.py).
    app.add_middleware(CrossSiteGuard, allowed_origins=ctx.settings.allowed_origins)
    # Outermost but for the optional Host check: with api_keys set, a client without a key learns
    # nothing (no origin, body size or JSON rules), and its body is never read
    # (serve_app/security/api_keys.py).
    app.add_middleware(ApiKeyGuard, api_keys=ctx.settings.api_keys)
    if ctx.settings.check_host_everywhere:  # before all else: a rebound page learns nothing
        app.add_middleware(HostGuard, allowed_hosts=ctx.settings.allowed_hosts)
    return app


def build_fastapi_app() -> FastAPI:
    assert _context_for_builder is not None, "Ingress.__init__ runs before the app builder"
    return create_app(_context_for_builder)


# Replicas: the configs' autoscaling_config (one, when deployed without a config).
@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25},
                  max_ongoing_requests=200)
@serve.ingress(build_fastapi_app)
class Ingress:
    def __init__(self, worker_handle, settings: dict):
        # This class reaches the replica pickled by value (with a copy of this module's globals):
        # set the builder's context on the real module.
        from serve_app import ingress as this_module

        app_name = serve.get_replica_context().app_name
        this_module._context_for_builder = IngressContext.create(AppSettings(**settings), worker_handle, app_name)
