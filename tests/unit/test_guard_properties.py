"""Headers and query strings through the guards in process (the real app, with API keys and the
Host check on, as a workstation would run it): for any method, path, Host, Origin, key (in any
of its three places, or a wrong one), X-Request-ID, content type and extra query parameters, the
answer is the one the rules in the README give, first refusal first, in the one error shape,
and never a 5xx. The rules are written out here on their own, not read from the guards."""

from __future__ import annotations

import urllib.parse

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import WebSocketDenialResponse

from helpers.inprocess_app import build_app

KEY = "the-key"
OWN_HOST = "127.0.0.1:8000"
PATHS = ["/health", "/ready", "/", "/docs", "/openapi.json", "/static/app.js", "/api/voices", "/api/info",
         "/api/gpu/status", "/api/gpu/offload", "/api/tts", "/api/outputs/0123456789abcdef0123456789abcdef.wav",
         "/v1/models", "/v1/models/tts-1", "/v1/audio/voices", "/v1/audio/speech", "/no/such/path"]
OPEN = {"/health", "/ready", "/", "/docs", "/openapi.json", "/static/app.js"}
POST_ROUTES = {"/api/gpu/offload", "/api/tts", "/v1/audio/speech"}
# A Host header: the service's own names, other names, and whatever a client may put there.
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
HOSTS = st.one_of(st.sampled_from([OWN_HOST, "localhost:3000", "[::1]:8000", "LOCALHOST:1", "evil.example",
                                   "127.0.0.1.evil.example:80", "localhost", ""]), PRINTABLE)
ORIGINS = st.one_of(st.none(), st.sampled_from([f"http://{OWN_HOST}", "http://localhost:5173", "null",
                                                "https://evil.example", "http://127.0.0.1.evil.example"]), PRINTABLE)
KEYS = st.sampled_from([None, ("authorization", f"Bearer {KEY}"), ("authorization", "Bearer wrong"),
                        ("kyutai-api-key", KEY), ("kyutai-api-key", ""), ("query", KEY), ("query", "wrong"),
                        ("authorization", KEY)])
REQUEST_IDS = st.one_of(st.none(), st.sampled_from(["trace-1", "x" * 64, "x" * 65, "bad id", ""]), PRINTABLE)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "HEAD"])
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/x-www-form-urlencoded", None])
EXTRA_QUERY = st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6), PRINTABLE, max_size=3)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("app"), api_keys=[KEY], check_host_everywhere=True)
    with TestClient(app) as test_client:
        yield test_client


def host_allowed(host: str) -> bool:
    """allowed_hosts' defaults: 127.0.0.1, localhost and [::1], any port, any case."""
    name = host.lower()
    return any(name == h or name.startswith(h + ":") for h in ("127.0.0.1", "localhost", "[::1]"))


def origin_allowed(origin: str | None, host: str) -> bool:
    """No Origin, the page's own, or allowed_origins' defaults (http on 127.0.0.1 / localhost)."""
    if origin is None:
        return True
    own = bool(host) and urllib.parse.urlsplit(origin).netloc.lower() == host.lower() and origin != "null"
    return own or any(origin.startswith(f"http://{name}:") for name in ("127.0.0.1", "localhost"))


def expected_refusal(method, path, host, origin, key, request_id, content_type) -> int | None:
    """The first refusal, in the README's order: request id, Host, key, Origin, JSON."""
    if request_id is not None and not (0 < len(request_id) <= 64 and all(
            c.isascii() and (c.isalnum() or c in "_-") for c in request_id)):
        return 400
    if path not in ("/health", "/ready") and not host_allowed(host):
        return 421
    if path not in OPEN and key not in (("authorization", f"Bearer {KEY}"), ("kyutai-api-key", KEY), ("query", KEY)):
        return 401
    if method not in ("GET", "HEAD", "OPTIONS") and not origin_allowed(origin, host):
        return 403
    if method == "POST" and path in POST_ROUTES and (content_type or "").split(";")[0] != "application/json":
        return 415
    return None


@settings(max_examples=150)
@given(method=METHODS, path=st.sampled_from(PATHS), host=HOSTS, origin=ORIGINS, key=KEYS, request_id=REQUEST_IDS,
       content_type=CONTENT_TYPES, extra_query=EXTRA_QUERY)
def test_the_guards_answer_by_the_rules_in_their_order(client, method, path, host, origin, key, request_id,
                                                       content_type, extra_query):
    headers = {"Host": host}
    for name, value in (("Origin", origin), ("X-Request-ID", request_id), ("Content-Type", content_type)):
        if value is not None:
            headers[name] = value
    query = dict(extra_query)
    if key is not None and key[0] == "query":
        query["auth_id"] = key[1]
    elif key is not None:
        headers[key[0]] = key[1]
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    response = client.request(method, path, params=query, headers=headers, content=body)

    assert response.status_code < 500, response.text[:300]
    refusal = expected_refusal(method, path, host, origin, key, request_id, content_type)
    if refusal is not None:
        assert response.status_code == refusal, (refusal, response.status_code, response.text[:300])
    else:  # past the guards: the route's own answer, or the router's
        assert response.status_code not in (400, 401, 403, 415, 421) or path in POST_ROUTES, response.text[:300]
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if response.status_code == 405:
        assert response.headers["allow"]
    if response.status_code >= 400 and method != "HEAD":
        assert set(response.json()["error"]) == {"message", "type", "param", "code", "request_id"}


@settings(max_examples=25)
@given(host=HOSTS, origin=ORIGINS, key=KEYS)
def test_the_websocket_handshake_follows_the_same_rules(client, host, origin, key):
    headers = {"Host": host, **({"Origin": origin} if origin is not None else {})}
    query = ""
    if key is not None and key[0] == "query":
        query = "?" + urllib.parse.urlencode({"auth_id": key[1]})
    elif key is not None:
        headers[key[0]] = key[1]
    refusal = expected_refusal("GET", "/api/tts_streaming", host, origin, key, None, None)
    if refusal is None and not origin_allowed(origin, host):
        refusal = 403  # a handshake is held to the Origin rule too (Unmute's page is a browser page)
    try:
        with client.websocket_connect(f"/api/tts_streaming{query}", headers=headers) as ws:
            ready = ws.receive_bytes()
        status = None
    except WebSocketDenialResponse as denied:
        status = denied.status_code
        assert set(denied.json()["error"]) == {"message", "type", "param", "code", "request_id"}
    assert status == refusal, (status, refusal)
    if status is None:
        assert ready  # the session's Ready
