"""The one error shape every route answers with (OpenAI's, plus the request's id) as the OpenAPI
document publishes it, and the response objects that reference it. serve_app/errors.py makes
the bodies; this module describes them (tests/unit/test_openapi.py checks that both agree)."""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel, Field

# OpenAI's error type of each status.
STATUS_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
                415: "invalid_request_error", 421: "invalid_request_error", 422: "invalid_request_error",
                429: "rate_limit_error", 503: "service_unavailable", 500: "server_error", 507: "server_error"}
ERROR_SCHEMA_REF = "#/components/schemas/ErrorResponse"
# Every 503 says when to retry, every 401 which scheme to use (the guards and routes set them).
STATUS_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Always `Bearer`.", "required": True, "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to do, in words a client may show.")
    type: str = Field(description="OpenAI's error type: invalid_request_error, permission_error, "
                      "not_found_error, rate_limit_error, service_unavailable, server_error.")
    param: str | None = Field(description="The request field at fault (422, 400), else null.")
    code: str | None = Field(description="What a client may branch on (json_required, unknown_voice, "
                             "overloaded, ...).")
    request_id: str | None = Field(description="The request's X-Request-ID: quote it when reporting a problem.")


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """`{"error": {message, type, param, code, request_id}}`, OpenAI's shape plus the request id."""

    error: ErrorDetail
    detail: list[ValidationIssue] | None = Field(
        None, description="With 422 validation_error only: every problem found, field by field.")


class Refusal(NamedTuple):
    """One way an operation may refuse a request: its error code, when, and the field it names."""
    code: str
    description: str
    param: str | None = None

    def example(self, status: int) -> dict:
        return {"summary": self.description, "value": {"error": {
            "message": self.description, "type": STATUS_TYPES.get(status, "error"), "param": self.param,
            "code": self.code, "request_id": "3f6c2b1e9d8a4c7b"}}}


# Every operation may answer these (serve_app/errors.py's handlers).
VALIDATION = Refusal("validation_error", "A malformed request (a wrong type, a value out of bounds, a field "
                                         "too long, invalid JSON): the field at fault is in `param`.")
INTERNAL = Refusal("internal_error", "Anything unexpected; the details are in the server log only.")


def refusal_response(status: int, refusals: list[Refusal]) -> dict:
    """The OpenAPI response object of `status` answering any of `refusals`: the error shape, one
    line and one example per refusal (what Swagger UI shows), the headers every such answer carries."""
    return {"description": "\n\n".join(f"`{r.code}`: {r.description}" for r in refusals),
            **({"headers": STATUS_HEADERS[status]} if status in STATUS_HEADERS else {}),
            "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF},
                                             "examples": {r.code: r.example(status) for r in refusals}}}}


def error_responses(refusals: dict[int, Refusal | list[Refusal]]) -> dict[int, dict]:
    """A route's `responses` entries for its own refusals (FastAPI adds the ErrorResponse schema
    from `model`; serve_app/openapi.py adds what the guards and handlers answer)."""
    return {status: {"model": ErrorResponse, **refusal_response(status, r if isinstance(r, list) else [r])}
            for status, r in refusals.items()}
