"""Request bodies are bounded: a client cannot make the ingress read (or hold) more than a valid
request can be. Three limits, by where the request goes:

- an upload route (declared with `@upload`, serve_app/security/uploads.py): its own setting
  (voice clips: `max_voice_clip_bytes`);
- `/mcp`: `mcp_max_body_bytes`, sized for a clip sent as base64 in a tool call;
- anything else: a JSON body of `max_text_chars` characters (4 bytes each in UTF-8) plus its fields.
"""

from __future__ import annotations

from fastapi import HTTPException

from ..errors import error_response
from ..protocols.error_shape import Refusal
from . import uploads
from .cross_site import relative_path

REFUSAL = Refusal("body_too_large", "The body is larger than any valid request (max_text_chars and the fields; "
                                    "an upload route's own limit; mcp_max_body_bytes on /mcp).")
# A JSON body's fields besides its text.
JSON_FIELDS_BYTES = 64 * 1024


def json_limit(settings) -> int:
    return settings.max_text_chars * 4 + JSON_FIELDS_BYTES


def limit_for(scope, settings) -> int:
    """The body limit of the request in `scope` (the rules above)."""
    setting = uploads.limit_setting(uploads.route_for(scope))
    if setting is not None:
        return getattr(settings, setting)
    if relative_path(scope).startswith("/mcp"):
        return settings.mcp_max_body_bytes
    return json_limit(settings)


class BodySizeLimit:
    """Refuses request bodies larger than the request's limit (`limit_for`) with 413: at once when
    Content-Length says so, and while reading when a chunked body grows past it (it is never read
    whole)."""

    def __init__(self, app, settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = limit_for(scope, self.settings)
        too_large = HTTPException(413, f"request body larger than {limit} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            # The body the raise below gets from the error handlers (serve_app/errors.py's HTTP_CODES).
            response = error_response(413, str(too_large.detail), code=REFUSAL.code)
            return await response(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large  # FastAPI passes it on to the error handlers
            return message

        return await self.app(scope, counting_receive, send)
