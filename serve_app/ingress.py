"""The `Ingress` deployment: one FastAPI app on one port for the whole cluster.

The FastAPI app is built inside the replica by `build_fastapi_app` (passed to `serve.ingress` as a
builder, so the app is never pickled: FastAPI >= 0.139.2 apps cannot be pickled by Ray 2.53). Serve calls the
deployment's constructor first, then the builder, in the same process: the constructor leaves the
context for the builder in `_context_for_builder`.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from ray import serve

from .context import IngressContext
from .errors import install_error_handlers
from .openapi import install_openapi
from .routes import gpu, health, tts, ui, voices
from .routes import mcp as mcp_routes
from .routes import openai as openai_routes
from .routes import asr as asr_routes
from .routes import websocket as websocket_routes
from .request_ids import RequestIds
from .security import install_guards
from .settings import AppSettings

log = logging.getLogger(__name__)

_context_for_builder: IngressContext | None = None

API_DESCRIPTION = """Kyutai TTS on Ray Serve: one endpoint for every GPU of the cluster.

Errors share one JSON shape, OpenAI's plus the request's id: `{"error": {"message", "type", "param",
"code", "request_id"}}` (`ErrorResponse`); each operation lists every status it may answer and the
`code`s of each. In short: 422 for a malformed request (the field is named in `param`), 400 for an
unknown or refused voice or a malformed `X-Request-ID`, 404 for an unknown file or path, 405 (with
`Allow`) for a method a path does not have, 413 for an oversized body, 415 for a POST without JSON,
403 for another site's page, 401 / 421 when API keys / the Host check are configured, 503 (always
with `Retry-After`) when the model is unavailable or every worker is saturated.

Also served, outside this document: Kyutai's WebSocket protocol at `/api/tts_streaming` and MCP at
`/mcp` (see the README)."""


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
    for module in (health, tts, voices, gpu, ui, openai_routes, websocket_routes, asr_routes):
        app.include_router(module.router)
    ui.mount_static(app)  # the web page's scripts and styles at /static
    # MCP over streamable HTTP at /mcp; its session manager runs in the lifespan (ARCHITECTURE.md,
    # "MCP inside Serve").
    mcp_routes.mount(app)
    app.state.lifespan_hooks.append(mcp_routes.lifespan)

    @app.get("/apidocs", include_in_schema=False)
    async def apidocs():  # the old service's docs address
        return RedirectResponse("/docs")

    install_guards(app, ctx.settings)  # serve_app/security/__init__.py says which, and in what order
    install_openapi(app, ctx.settings, ctx.models)  # states what the guards and handlers answer too
    app.add_middleware(RequestIds)  # outermost: every answer, refusals included, knows its id
    return app


def build_fastapi_app() -> FastAPI:
    assert _context_for_builder is not None, "Ingress.__init__ runs before the app builder"
    return create_app(_context_for_builder)


# Replicas: the configs' autoscaling_config (one, when deployed without a config).
@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25},
                  max_ongoing_requests=200)
@serve.ingress(build_fastapi_app)
class Ingress:
    def __init__(self, worker_handles: dict, settings: dict):
        """`worker_handles`: model name -> its worker deployment's handle (serve_app/app.py)."""
        # This class reaches the replica pickled by value (with a copy of this module's globals):
        # set the builder's context on the real module.
        from serve_app import ingress as this_module

        app_name = serve.get_replica_context().app_name
        this_module._context_for_builder = IngressContext.create(AppSettings(**settings), worker_handles, app_name,
                                                                       shared_store=True)
