"""Request bodies are bounded: a client cannot make the ingress read (or hold) more than a valid
request can be."""

from __future__ import annotations

from fastapi import HTTPException

from ..errors import error_response
from ..protocols.error_shape import Refusal

REFUSAL = Refusal("body_too_large", "The body is larger than any valid request (max_text_chars and the fields).")


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
            # The body the raise below gets from the error handlers (serve_app/errors.py's HTTP_CODES).
            response = error_response(413, str(self._too_large().detail), code=REFUSAL.code)
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
