"""API keys on every surface: with `api_keys` set, every route that costs GPU time, changes state or
describes the cluster needs a key (REST, OpenAI, MCP, saved files, the WebSocket); the health checks,
the page, its files and the docs stay open. Real requests against the real keyed app (`keyed_url` in
conftest.py: its worker scales to zero, and nothing here makes it generate)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import API_KEY
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.serve

BEARER = {"Authorization": f"Bearer {API_KEY}"}
WRONG = [{}, {"Authorization": "Bearer wrong"}, {"kyutai-api-key": "wrong"}, {"Authorization": "Basic c2VjcmV0LWtleQ=="}]
# (method, path, JSON body): the guarded routes. The bodies make the POSTs that would generate fail
# validation instead, so a right key shows as a non-401 answer without waking a worker.
GUARDED = [
    ("GET", "/api/info", None),
    ("GET", "/api/voices", None),
    ("GET", "/api/gpu/status", None),
    ("POST", "/api/gpu/offload", {}),
    ("POST", "/api/tts", {"text": ""}),
    ("GET", "/api/outputs/not-a-saved-file.wav", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/tts-1", None),
    ("GET", "/v1/audio/voices", None),
    ("POST", "/v1/audio/speech", {"model": "tts-1", "input": "", "voice": "alloy"}),
    ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ("POST", "/mcp/", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ("GET", "/not-a-route-yet", None),  # refused by default: a route added later cannot be forgotten
]
OPEN = ["/health", "/", "/static/app.js", "/static/i18n.js", "/docs", "/openapi.json", "/apidocs", "/favicon.ico"]
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def call(url: str, method: str, path: str, body, headers: dict | None = None, **params) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", json=body, params=params,
                         headers={**(MCP_HEADERS if path.startswith("/mcp") else {}), **(headers or {})},
                         timeout=60, follow_redirects=False)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.url, response.status_code, response.text)
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "Authorization: Bearer" in error["message"] and "auth_id" in error["message"]


@pytest.mark.parametrize("method,path,body", GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED])
def test_every_guarded_route_needs_the_key(keyed_url, method, path, body):
    for headers in WRONG:
        assert_refused(call(keyed_url, method, path, body, headers))
    assert_refused(call(keyed_url, method, path, body, auth_id="wrong"))
    for key in (BEARER, {"kyutai-api-key": API_KEY}, {"Authorization": f"bearer  {API_KEY}"}):
        answer = call(keyed_url, method, path, body, key)
        assert answer.status_code != 401, (path, key, answer.text)
    assert call(keyed_url, method, path, body, auth_id=API_KEY).status_code != 401


def test_the_right_key_gets_the_real_answers(keyed_url):
    voices = call(keyed_url, "GET", "/api/voices", None, BEARER)
    assert voices.status_code == 200 and voices.json()["voices"]
    assert call(keyed_url, "GET", "/api/voices", None, auth_id=API_KEY).json() == voices.json()
    assert call(keyed_url, "GET", "/api/info", None, BEARER).json()["max_text_chars"] == 2000
    assert "replicas" in call(keyed_url, "GET", "/api/gpu/status", None, BEARER).json()
    assert call(keyed_url, "POST", "/api/gpu/offload", {}, BEARER).status_code == 200
    empty = call(keyed_url, "POST", "/api/tts", {"text": ""}, BEARER)
    assert empty.status_code in (400, 422) and empty.json()["error"]["code"] != "invalid_api_key"
    assert call(keyed_url, "GET", "/api/outputs/not-a-saved-file.wav", None, BEARER).status_code == 404
    assert call(keyed_url, "GET", "/not-a-route-yet", None, BEARER).status_code == 404
    assert call(keyed_url, "GET", "/v1/models", None, BEARER).json()["object"] == "list"


def test_open_routes_stay_open(keyed_url, base_url):
    for path in OPEN:
        answer = call(keyed_url, "GET", path, None)
        assert answer.status_code in (200, 307, 404), (path, answer.status_code, answer.text)
        assert answer.status_code != 404 or path == "/favicon.ico"  # no favicon file: unknown, not refused
    assert call(keyed_url, "GET", "/", None).headers["content-type"].startswith("text/html")
    assert call(keyed_url, "GET", "/ready", None).status_code != 401  # 503 while scaled to zero is fine
    # Without api_keys (the main app) nothing asks for a key.
    for method, path, body in GUARDED[:3] + GUARDED[6:9]:
        assert call(base_url, method, path, body).status_code == 200, path


def test_the_key_is_checked_before_the_origin_and_the_body(keyed_url):
    foreign = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    # No key: 401 first, whatever else is wrong with the request (the body is never read).
    refused = httpx.post(f"{keyed_url}/api/tts", content=b"x" * 10_000_000, headers=foreign, timeout=60)
    assert_refused(refused)
    # With the key, the other guards still apply.
    assert httpx.post(f"{keyed_url}/api/tts", json={"text": "hi"}, timeout=60,
                      headers={**BEARER, "Origin": "https://evil.example"}).status_code == 403
    assert httpx.post(f"{keyed_url}/api/tts", content=b"{}", timeout=60,
                      headers={**BEARER, "Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(f"{keyed_url}/api/tts", content=b"x" * 10_000_000, timeout=60,
                      headers={**BEARER, "Content-Type": "application/json"}).status_code == 413


def test_saved_outputs_need_the_key_even_in_the_query(keyed_url, base_url):
    # A file saved through the (open) main app: the apps share the outputs directory, and the keyed
    # app serves it to a key holder only. `auth_id` is how an <audio src> or a link carries the key.
    saved = httpx.post(f"{base_url}/api/tts", json={"text": "Keys on every surface.", "save": True}, timeout=180)
    assert saved.status_code == 200, saved.text
    name = saved.json()["url"].rsplit("/", 1)[1]
    original = httpx.get(saved.json()["url"], timeout=60).content
    path = f"/api/outputs/{name}"
    assert_refused(call(keyed_url, "GET", path, None))
    assert_refused(call(keyed_url, "GET", path, None, auth_id="wrong"))
    for answer in (call(keyed_url, "GET", path, None, auth_id=API_KEY), call(keyed_url, "GET", path, None, BEARER)):
        assert answer.status_code == 200 and answer.content == original and original[:4] == b"RIFF"


def error_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (exception groups, causes)."""
    found = [exc]
    for inner in getattr(exc, "exceptions", ()):
        found += error_chain(inner)
    if exc.__cause__ is not None:
        found += error_chain(exc.__cause__)
    return found


def test_mcp_clients_need_the_key(keyed_url):
    async def tools_and_voices(headers: dict):
        async with httpx.AsyncClient(timeout=httpx.Timeout(60), headers=headers) as http:
            async with streamable_http_client(f"{keyed_url}/mcp", http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = {t.name for t in (await session.list_tools()).tools}
                    return tools, await session.call_tool("list_voices", {})

    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(Exception) as refused:
            asyncio.run(asyncio.wait_for(tools_and_voices(headers), 120))
        statuses = [e.response.status_code for e in error_chain(refused.value) if isinstance(e, httpx.HTTPStatusError)]
        assert statuses and set(statuses) == {401}, refused.value
    tools, voices = asyncio.run(asyncio.wait_for(tools_and_voices(BEARER), 120))
    assert tools == {"text_to_speech", "list_voices", "get_gpu_status", "offload_gpu", "clone_voice", "speech_to_text"}
    assert not voices.isError and voices.structuredContent["voices"]
    # What the client was refused with: a plain HTTP 401 with the service's error body.
    assert_refused(call(keyed_url, "POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))


def test_with_the_host_check_on_a_rebound_name_is_refused_on_every_route(keyed_url):
    """DNS rebinding: a page whose name was made to resolve to the service sends that name as
    Host and as its own Origin, so the Origin rule takes it for the service's own page. With
    `check_host_everywhere` (the keyed app) every route but the probes refuses a Host outside
    `allowed_hosts` with 421, even with a valid key; the service's real name keeps working."""
    rebound = {**BEARER, "Host": "rebound.example:8000", "Origin": "http://rebound.example:8000"}
    for method, path, body in [("GET", "/", None), ("GET", "/api/gpu/status", None), ("GET", "/api/info", None),
                               ("POST", "/api/tts", {"text": "Hello."}), ("POST", "/api/gpu/offload", {}),
                               ("GET", "/v1/models", None), ("POST", "/mcp", {})]:
        response = call(keyed_url, method, path, body, headers=rebound)
        assert response.status_code == 421, (path, response.status_code, response.text[:200])
        assert response.json()["error"]["code"] == "invalid_host", path
    for probe in ("/health", "/ready"):  # load balancers and kubelets probe by address
        assert call(keyed_url, "GET", probe, None, headers={"Host": "10.1.2.3:8000"}).status_code in (200, 503)
    assert call(keyed_url, "GET", "/api/gpu/status", None, headers=BEARER).status_code == 200
