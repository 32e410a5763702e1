"""Admission follows the slots a replica chose (`max_batch_size: auto`), not Serve's
`max_ongoing_requests`: with every row busy, a further request waits in Serve's queue, not in the
replica's (deployments/routing.py). Real Serve, real HTTP and WebSocket, the scripted fake engine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import httpx
import msgpack
import websockets
from conftest import FAKE_CHOSEN_SLOTS as CHOSEN
from helpers.speech_checks import reports_after
from test_websocket import receive_all, ws_url

# The shared cluster's `fake_url` app: one replica whose auto sizing takes the smaller of its two
# candidates (a real-time margin no tick fits), below its max_ongoing_requests (8).


def replica_report(moment: float) -> dict:
    return reports_after(moment, "fake")[0]


def test_a_replica_full_at_its_chosen_slots_holds_no_further_request(fake_url):
    url = fake_url
    httpx.post(f"{url}/api/tts", json={"text": "warm up"}, timeout=120).raise_for_status()  # loads, sizes
    sizing = replica_report(time.monotonic())
    assert sizing["max_batch_size"] == CHOSEN and sizing["slot_sizing"]["slots"] == CHOSEN

    async def scenario() -> tuple[list[dict], int, list]:
        # CHOSEN streamed sessions hold every row: their text is not complete until they send Eos.
        sessions = [await websockets.connect(ws_url(url, format="PcmMessagePack")) for _ in range(CHOSEN)]
        for ws in sessions:
            assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
            await ws.send(msgpack.packb({"type": "Text", "text": "holding"}))
        for _ in range(60):  # reports a second apart; a bound against a hang only
            if (await asyncio.to_thread(replica_report, time.monotonic()))["active"] == CHOSEN:
                break
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            third = loop.run_in_executor(pool, lambda: httpx.post(f"{url}/api/tts", json={"text": "third"},
                                                                  timeout=120))
            sent = time.monotonic()
            # Three reports made after it was sent (a second apart): it is in neither a row nor the
            # replica's queue. Serve's cap (8) alone would have queued it there at once.
            while_full = []
            for _ in range(3):
                while_full.append(await asyncio.to_thread(replica_report, sent))
                sent = time.monotonic()
            still_waiting = not third.done()
            for ws in sessions:  # the rows free: the third request is served
                await ws.send(msgpack.packb({"type": "Eos"}))
            finished = [await receive_all(ws) for ws in sessions]
            response = await third
        assert still_waiting
        return while_full, response.status_code, finished

    while_full, third_status, finished = asyncio.run(scenario())
    assert [(r["active"], r["queued"]) for r in while_full] == [(CHOSEN, 0)] * 3
    assert third_status == 200
    assert all(any(msgpack.unpackb(m)["type"] == "Audio" for m in messages) for messages in finished)
    admitted = replica_report(time.monotonic())["admissions"] - sizing["admissions"]
    assert admitted == CHOSEN + 1  # the sessions, then the third
