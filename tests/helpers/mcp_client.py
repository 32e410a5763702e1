"""An MCP session with the official client over streamable HTTP (tests/serve's MCP tests)."""

from __future__ import annotations

import contextlib

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


@contextlib.asynccontextmanager
async def mcp_session(url: str):
    async with httpx.AsyncClient(timeout=httpx.Timeout(180)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session
