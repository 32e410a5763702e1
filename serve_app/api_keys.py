"""Optional API keys (setting `api_keys`; empty = open) for the OpenAI-compatible routes and the
Kyutai WebSocket. A key is read where each family of clients puts it: `Authorization: Bearer KEY`
(OpenAI SDKs), the `kyutai-api-key` header (Kyutai's clients), or the `auth_id` query parameter
(browsers cannot set WebSocket headers; Kyutai's server reads it too)."""

from __future__ import annotations

import hmac
from typing import Mapping

from fastapi import Request

from .errors import APIError

KYUTAI_HEADER = "kyutai-api-key"


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization") or ""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return headers.get(KYUTAI_HEADER) or query.get("auth_id")


def is_allowed(api_keys: list[str], key: str | None) -> bool:
    if not api_keys:
        return True
    # Compare against every key in constant time: no timing hint about which prefix matched.
    return key is not None and any(hmac.compare_digest(key.encode(), k.encode()) for k in api_keys)


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the keys are off or the request carries a valid one."""
    if not is_allowed(request.app.state.ctx.settings.api_keys, presented_key(request.headers, request.query_params)):
        raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>' or a "
                       f"'{KYUTAI_HEADER}' header", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
