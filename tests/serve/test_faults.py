"""A worker that dies or hangs under a request: every path answers in its own protocol, and the
service goes on.

Crashes are real: the replica's process is killed (SIGKILL) while it speaks. A hang is staged by
the real engine with the `test_faults` setting (deployments/engine/faults.py): a request whose text holds
"[[hang]]" stops the generation thread dead. Nothing here asserts durations: the waits below are
bounds against a hung test, and every check is about what the client received.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time

import httpx
import msgpack
import pytest
import ray
import websockets
from helpers.speech_checks import LONG_TEXT, sse_events, worker_reports
from test_mcp import error_text, mcp_session
from test_websocket import receive, receive_all, ws_url

APP = "faults"
BOUND_S = 180  # against a hung test only
INTERNALS = ("Actor", "actor_id", "Traceback", "ray.", "Error:")


@pytest.fixture(scope="module")
def faults_url(serve_cluster, base_url) -> str:
    yield serve_cluster.deploy(
        APP, "/faults",
        args={"test_faults": True, "generation_stall_s": 4, "worker_timeout_s": 60},
        worker={"ray_actor_options": {"num_gpus": 0}, "health_check_period_s": 1, "graceful_shutdown_timeout_s": 2,
                "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}})
    serve_cluster.remove(APP)


def live_replica(min_active: int = 0, since: float | None = None) -> dict:
    """The app's replica report once it is up and, when asked, once a report made after `since`
    (time.monotonic()) counts `min_active` rows speaking: the request sent then is on a row."""
    since = time.monotonic() if since is None else since
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        asked, reports = worker_reports(APP)
        fresh = [r for r in reports if r.get("active", 0) >= min_active
                 and (min_active == 0 or asked - r["reported_s_ago"] > since)]
        if fresh:
            return fresh[0]
        time.sleep(0.2)
    raise AssertionError(f"no replica of {APP} reported {min_active} active rows")


def kill_replica(report: dict) -> None:
    os.kill(report["pid"], signal.SIGKILL)


def served_again(url: str) -> str:
    """The next request succeeds (on a replica Serve started in place of the dead one); returns
    the replica that served it."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        response = httpx.post(f"{url}/api/tts", json={"text": "Back again."}, timeout=BOUND_S)
        if response.status_code == 200:
            return response.headers["X-TTS-Replica"]
        assert response.status_code == 503, response.text  # the replica is being replaced
        time.sleep(1)
    raise AssertionError("the service did not come back")


def assert_clean(error: dict, code: str) -> None:
    assert error["code"] == code, error
    assert not any(marker in error["message"] for marker in INTERNALS), error


def test_a_killed_worker_ends_an_sse_stream_with_an_error_event(faults_url):
    before = live_replica()
    sent = time.monotonic()
    with httpx.stream("POST", f"{faults_url}/api/tts", timeout=BOUND_S,
                      json={"text": LONG_TEXT, "stream": True, "timestamps": True, "format": "pcm"}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        events = []
        for line in lines:
            events.extend(sse_events([line]))
            if events and events[-1]["type"] == "audio":
                break
        kill_replica(live_replica(min_active=1, since=sent))
        events.extend(sse_events(lines))  # the body ends cleanly: no protocol error
    assert events[-1]["type"] == "error" and "done" not in [e["type"] for e in events]
    assert_clean(events[-1]["error"], "worker_failed")
    assert served_again(faults_url) != before["replica"]


def test_a_killed_worker_gives_a_non_streamed_request_a_json_503(faults_url):
    served_again(faults_url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = time.monotonic()
        pending = pool.submit(httpx.post, f"{faults_url}/api/tts", json={"text": LONG_TEXT}, timeout=BOUND_S)
        kill_replica(live_replica(min_active=1, since=sent))
        response = pending.result()
    assert response.status_code == 503 and response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"]
    assert_clean(response.json()["error"], "worker_failed")
    served_again(faults_url)


def test_a_killed_worker_ends_a_websocket_with_an_error_message(faults_url):
    served_again(faults_url)

    async def scenario():
        async with websockets.connect(ws_url(faults_url)) as ws:
            sent = time.monotonic()
            assert (await receive(ws))["type"] == "Ready"
            await ws.send(msgpack.packb({"type": "Text", "text": LONG_TEXT}))
            while (await receive(ws))["type"] != "Audio":
                pass
            await asyncio.to_thread(lambda: kill_replica(live_replica(min_active=1, since=sent)))
            messages = await receive_all(ws, closed_by=websockets.ConnectionClosed)
            return [msgpack.unpackb(m) for m in messages], ws.close_code

    messages, close_code = asyncio.run(scenario())
    errors = [m for m in messages if m["type"] == "Error"]
    assert len(errors) == 1 and messages[-1] is errors[0]
    assert "retry" in errors[0]["message"] and not any(m in errors[0]["message"] for m in INTERNALS)
    assert close_code == 1013  # try again later
    served_again(faults_url)


def test_a_killed_worker_is_an_mcp_tool_error_without_internals(faults_url):
    served_again(faults_url)

    async def scenario():
        async with mcp_session(f"{faults_url}/mcp") as session:
            sent = time.monotonic()
            call = asyncio.create_task(session.call_tool("text_to_speech", {"text": LONG_TEXT}))
            await asyncio.to_thread(lambda: kill_replica(live_replica(min_active=1, since=sent)))
            failed = await call
            return failed

    message = error_text(asyncio.run(scenario()))
    assert "retry" in message and not any(marker in message for marker in INTERNALS)
    served_again(faults_url)


def test_a_hung_generation_thread_fails_health_checks_and_is_replaced(faults_url):
    before = served_again(faults_url)
    with httpx.stream("POST", f"{faults_url}/api/tts", timeout=BOUND_S,
                      json={"text": "This one hangs [[hang]] forever.", "stream": True, "timestamps": True}) as response:
        # The hang comes before the first audio: Serve replaces the replica once its health
        # check fails (generation_stall_s), and the ingress answers with the documented 503.
        body = response.read()
    assert response.status_code == 503, body
    assert_clean(response.json()["error"], "worker_failed")
    assert served_again(faults_url) != before


def test_a_restarted_registry_makes_ready_say_so_then_recovers(faults_url):
    from deployments.serve.registry import get_registry

    served_again(faults_url)
    ray.kill(get_registry(APP), no_restart=False)  # Ray restarts it (max_restarts=-1)
    answers = []
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        response = httpx.get(f"{faults_url}/ready", timeout=BOUND_S)
        answers.append((response.status_code, response.json()))
        if response.status_code == 200 and response.json()["replicas"]:
            break
        time.sleep(0.2)
    assert answers[-1][0] == 200, answers[-1]
    for status, body in answers:  # never a 500: ready, or not ready with a reason
        assert status in (200, 503) and (status == 200 or body["reason"]), (status, body)
