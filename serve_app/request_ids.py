"""Every request has an id that joins what the ingress and the worker log about it.

Serve's HTTP proxy already gives each request one: it keeps the client's `X-Request-ID` header (or
makes one), puts it in the request's headers and echoes it in the response. It does not check it,
so this middleware (the outermost) does: an id must be 1 to 64 characters of `[A-Za-z0-9_-]`
(anything else is refused with 400 `invalid_request_id`: a client's tracing id may not carry
text into the service's logs). Outside Serve (in-process tests) an id is made here. The id is kept
in a context variable for the rest of the request: error bodies carry it (`errors.error_body`)
and the worker request carries it (`SynthesisRequest.request_id`), so the worker's log line about
the request names it. Serve's own access lines in the ingress replica's log carry it too (Serve
tags every "ray.serve" log record made during a request with the proxy's id, which is this one).
"""

from __future__ import annotations

import contextvars
import re
import uuid

from starlette.datastructures import Headers

from .protocols.error_shape import Refusal

HEADER = "x-request-id"
VALID_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
REFUSAL = Refusal("invalid_request_id", "X-Request-ID must be 1 to 64 characters of letters, digits, '_' and '-'",
                  "X-Request-ID")
# The header as the OpenAPI document declares it on every operation (serve_app/openapi.py).
HEADER_PARAMETER = {"name": "X-Request-ID", "in": "header", "required": False,
                    "description": "Your id for this request (kept, echoed, quoted in errors and logs); "
                                   "one is made when none is sent.",
                    "schema": {"type": "string", "pattern": f"^{VALID_ID.pattern}$"}}
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled (None outside one)."""
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: validates or makes the request's id and keeps it for the request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        presented = Headers(scope=scope).get(HEADER)
        if presented is not None and not VALID_ID.fullmatch(presented):
            return await _refuse(scope, receive, send)
        token = _current.set(presented or new_request_id())
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)


async def _refuse(scope, receive, send) -> None:
    from .errors import APIError, error_response, refuse_websocket

    error = APIError(400, REFUSAL.description, param=REFUSAL.param, code=REFUSAL.code)
    if scope["type"] == "websocket":
        from starlette.websockets import WebSocket

        return await refuse_websocket(WebSocket(scope, receive, send), error)
    await error_response(error.status, error.message, error.param, error.code)(scope, receive, send)
