"""Methods a path does not have (in process, the real app): 405 with `Allow` from the router, not
a guard's refusal; the JSON rule is for POSTs a route takes, the Origin rule for every
state-changing method (serve_app/security/cross_site.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from helpers.inprocess_app import build_app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(build_app(tmp_path_factory.mktemp("app"))) as test_client:
        yield test_client


@pytest.mark.parametrize("method, path, allowed", [
    ("TRACE", "/v1/models", {"GET"}), ("PUT", "/v1/models", {"GET"}), ("DELETE", "/api/tts", {"POST"}),
    ("PATCH", "/api/gpu/offload", {"POST"}), ("POST", "/v1/models", {"GET"}), ("POST", "/health", {"GET"}),
    ("PUT", "/api/outputs/abc.wav", {"GET"}), ("TRACE", "/v1/audio/speech", {"POST"}),
])
def test_a_method_the_path_does_not_have_is_a_405_naming_the_ones_it_has(client, method, path, allowed):
    response = client.request(method, path)  # no JSON body: the JSON rule is not what answers
    assert response.status_code == 405, response.text
    assert set(response.headers["allow"].replace(" ", "").split(",")) == allowed
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed" and error["type"] == "invalid_request_error"


def test_unknown_paths_are_404_whatever_the_method(client):
    for method in ("GET", "POST", "TRACE"):
        response = client.request(method, "/no/such/path")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_post_a_route_takes_still_needs_json(client):
    for path in ("/api/tts", "/v1/audio/speech", "/api/gpu/offload"):
        response = client.post(path, content=b"{}", headers={"Content-Type": "text/plain"})
        assert response.status_code == 415 and response.json()["error"]["code"] == "json_required"


def test_another_sites_page_is_refused_whatever_the_method(client):
    for method, path in (("POST", "/api/tts"), ("PUT", "/api/tts"), ("DELETE", "/v1/models"), ("TRACE", "/nowhere")):
        response = client.request(method, path, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "cross_origin"
