"""Request ids in process (serve_app/request_ids.py): a valid X-Request-ID is kept and quoted in
error bodies, a missing one is made, an invalid one is refused with 400 before any route runs."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve_app.errors import APIError, install_error_handlers
from serve_app.request_ids import RequestIds, current_request_id

seen: list[str | None] = []


@pytest.fixture
def client():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/echo")
    async def echo():
        seen.append(current_request_id())
        return {"request_id": current_request_id()}

    @app.get("/fail")
    async def fail():
        raise APIError(404, "no such thing", code="not_found")

    app.add_middleware(RequestIds)
    seen.clear()
    with TestClient(app) as test_client:
        yield test_client


def test_a_valid_id_is_kept_for_the_request_and_quoted_in_errors(client):
    assert client.get("/echo", headers={"X-Request-ID": "trace_01-AB"}).json() == {"request_id": "trace_01-AB"}
    error = client.get("/fail", headers={"X-Request-ID": "trace_02"}).json()["error"]
    assert error["request_id"] == "trace_02" and error["code"] == "not_found"
    assert current_request_id() is None  # nothing leaks out of a request


def test_a_missing_id_is_made_and_differs_per_request(client):
    first = client.get("/echo").json()["request_id"]
    second = client.get("/fail").json()["error"]["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second) and first != second


@pytest.mark.parametrize("bad", ["a" * 65, "has space", "semi;colon", "dots.are.out", "", "slash/es", "quote\"d"])
def test_an_invalid_id_is_refused_before_the_route(client, bad):
    response = client.get("/echo", headers={"X-Request-ID": bad})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request_id" and error["param"] == "X-Request-ID"
    assert error["request_id"] is None and seen == []


def test_64_characters_is_the_longest_id_kept(client):
    longest = "x" * 64
    assert client.get("/echo", headers={"X-Request-ID": longest}).json() == {"request_id": longest}
