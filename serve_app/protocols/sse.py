"""Server-Sent Events framing: one JSON payload per `data:` event (the streamed REST and OpenAI
answers). What the events say is the streaming service's business (serve_app/service/streaming.py)."""

from __future__ import annotations

import json

from ..errors import APIError, error_body

SSE_MEDIA_TYPE = "text/event-stream"


def event_stream(event_model: type) -> dict:
    """The OpenAPI media type object of an SSE answer: each event's `data` is JSON, one
    `event_model` (a component of the document: serve_app/openapi.py adds it)."""
    return {"schema": {"type": "object", "required": ["data"], "properties": {"data": {
        "type": "string", "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"#/components/schemas/{event_model.__name__}"}}}}}


def sse(payload: dict) -> bytes:
    """One event: compact JSON, so a chunk of base64 audio costs no more bytes than it must."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def error_event(error: APIError) -> bytes:
    """`{"type": "error", "error": {...}}`: the service's one error shape, as an event (a stream
    that already sent its status line can only report a failure this way)."""
    return sse({"type": "error", **error_body(error.status, error.message, error.param, error.code)})
