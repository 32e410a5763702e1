"""One error shape for every route, OpenAI's: {"error": {"message", "type", "param", "code"}}, plus
the request's id (`request_id`, serve_app/request_ids.py) so a client can quote it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from .protocols.error_shape import STATUS_TYPES
from .request_ids import current_request_id
from .routes import flat_routes

log = logging.getLogger(__name__)

# The code of Starlette's own refusals (routing): a client can tell them apart from ours.
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": STATUS_TYPES.get(status, "error"),
                      "param": param, "code": code, "request_id": current_request_id()}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


async def refuse_websocket(websocket, error: APIError) -> None:
    """Refuses a WebSocket handshake with `error` as an HTTP response (its status and body), as
    moshi-server does, or closes it with 1008 (policy violation) where the server cannot send HTTP
    there (no Websocket Denial Response extension)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(error.status, error.message, error.param, error.code,
                                                            error.headers))
    else:  # a close reason fits in 123 bytes of UTF-8
        await websocket.close(code=1008, reason=error.message.encode()[:120].decode(errors="ignore"))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    return (f"{param}: {message}" if param else message), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        body = error_body(422, message, param, "validation_error")
        body["detail"] = jsonable_errors(exc)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # The details (paths, Ray ids, exception text) go to the log only.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error; it is logged on the server", code="internal_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return error_response(exc.status_code, str(exc.detail), code=HTTP_CODES.get(exc.status_code),
                              headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method the request's path takes. Starlette's 405 names only the first route of the
    path it met (GET /api/voices, not also its POST)."""
    methods = set()
    for route in flat_routes(request.app.routes):
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return ", ".join(sorted(methods))


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
