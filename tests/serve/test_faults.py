"""A worker that dies or hangs under a request: every path answers in its own protocol, and the
service goes on.

Crashes are real: the replica's process is killed (SIGKILL) while it speaks. A hang is staged by
the real engine with the `test_faults` setting (deployments/engine/faults.py): a request whose text holds
"[[hang]]" stops the generation thread dead. Nothing here asserts durations: the waits below are
bounds against a hung test, and every check is about what the client received.
"""

from __future__ import annotations

import asyncio
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
VICTIMS = 4  # requests on the killed replica's rows at once: the app's slots, one row each
INTERNALS = ("Actor", "actor_id", "Traceback", "ray.", "Error:")


@pytest.fixture(scope="module")
def faults_url(serve_cluster, base_url) -> str:
    yield serve_cluster.deploy(
        APP, "/faults",
        args={"test_faults": True, "generation_stall_s": 4, "worker_timeout_s": 60},
        worker={"ray_actor_options": {"num_gpus": 0}, "health_check_period_s": 1, "graceful_shutdown_timeout_s": 2,
                "user_config": {"max_batch_size": VICTIMS},  # fixed (not auto): every victim on a row
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


async def sse_victim(url: str, audio_started: asyncio.Event) -> list[dict]:
    """An SSE stream (with timestamps) that has received audio when the worker dies: its events."""
    async with httpx.AsyncClient(timeout=BOUND_S) as http, http.stream(
            "POST", f"{url}/api/tts", json={"text": LONG_TEXT, "stream": True, "timestamps": True,
                                            "format": "pcm"}) as response:
        assert response.status_code == 200
        events = []
        async for line in response.aiter_lines():  # the body ends cleanly: no protocol error
            events.extend(sse_events([line]))
            if events and events[-1]["type"] == "audio":
                audio_started.set()
        return events


async def websocket_victim(url: str, audio_started: asyncio.Event) -> tuple[list[dict], int]:
    """A Kyutai WebSocket session that has received audio when the worker dies: its messages and
    close code."""
    async with websockets.connect(ws_url(url)) as ws:
        assert (await receive(ws))["type"] == "Ready"
        await ws.send(msgpack.packb({"type": "Text", "text": LONG_TEXT}))
        while (await receive(ws))["type"] != "Audio":
            pass
        audio_started.set()
        messages = await receive_all(ws, closed_by=websockets.ConnectionClosed)
        return [msgpack.unpackb(m) for m in messages], ws.close_code


async def mcp_victim(url: str) -> str:
    """An MCP tool call running when the worker dies: its error text."""
    async with mcp_session(f"{url}/mcp") as session:
        return error_text(await session.call_tool("text_to_speech", {"text": LONG_TEXT}))


def test_a_killed_worker_fails_each_protocol_in_its_own_terms(faults_url):
    """One replica killed under four requests at once, each on a row of it (the replica reports
    VICTIMS rows speaking; the streams have received audio): an SSE stream ends with an error
    event, a WebSocket with an Error message and 1013, a plain request gets a JSON 503 with
    Retry-After, an MCP call a tool error; none says more than "retry". One restart for all four."""
    before = live_replica()

    async def scenario():
        sse_audio, ws_audio = asyncio.Event(), asyncio.Event()
        sent = time.monotonic()
        async with httpx.AsyncClient(timeout=BOUND_S) as http:
            victims = (asyncio.create_task(sse_victim(faults_url, sse_audio)),
                       asyncio.create_task(websocket_victim(faults_url, ws_audio)),
                       asyncio.create_task(http.post(f"{faults_url}/api/tts", json={"text": LONG_TEXT})),
                       asyncio.create_task(mcp_victim(faults_url)))
            streaming = asyncio.gather(sse_audio.wait(), ws_audio.wait())
            done, _ = await asyncio.wait({streaming, *victims}, timeout=BOUND_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            assert streaming in done, [task.result() for task in done]  # a victim's own failure, if any
            await asyncio.to_thread(lambda: kill_replica(live_replica(min_active=VICTIMS, since=sent)))
            return await asyncio.gather(*victims)

    events, (messages, close_code), response, mcp_error = asyncio.run(scenario())
    # SSE: the stream ends with one error event, never "done".
    assert events[-1]["type"] == "error" and "done" not in [e["type"] for e in events]
    assert_clean(events[-1]["error"], "worker_failed")
    # WebSocket: exactly one Error, the last message, then "try again later".
    errors = [m for m in messages if m["type"] == "Error"]
    assert len(errors) == 1 and messages[-1] is errors[0]
    assert "retry" in errors[0]["message"] and not any(m in errors[0]["message"] for m in INTERNALS)
    assert close_code == 1013
    # Plain request: a JSON 503 that says when to retry.
    assert response.status_code == 503 and response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"]
    assert_clean(response.json()["error"], "worker_failed")
    # MCP: a tool error without internals.
    assert "retry" in mcp_error and not any(marker in mcp_error for marker in INTERNALS)
    assert served_again(faults_url) != before["replica"]


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
