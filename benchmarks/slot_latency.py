"""Through the service, one replica: does a newcomer speak at once while others are speaking?

    .venv/bin/python benchmarks/slot_latency.py            # starts the demo app (tiny model, CPU, 1 replica)
    .venv/bin/python benchmarks/slot_latency.py --url http://127.0.0.1:8000   # a running service

Prints, side by side in one run (medians):
- first audio of a short request on an idle replica, and while a long request streams on it
  (and their ratio);
- first audio of a Kyutai WebSocket session whose client sends one word every 100 ms (as Unmute
  forwards an LLM's words), counted from its first word;
- aggregate throughput of 8 concurrent 4-sentence requests through /v1/audio/speech (pcm).
With the tiny random-weight model on CPU the audio is noise: compare ratios and first audio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import threading
import time

import httpx
import msgpack
import websockets

import local_app


SHORT = "Hello there, this is a short answer."
LONG = " ".join(f"This is sentence number {i} of a long text that keeps the replica busy." for i in range(40))
FOUR_SENTENCES = ("The morning was cold and bright. A train left the station on time. "
                  "Nobody noticed the cat on the roof. It slept until the evening came.")


def first_audio_s(client: httpx.Client, text: str) -> float:
    started = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json={"input": text, "voice": "alloy",
                                                         "response_format": "pcm"}) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if chunk:
                return time.perf_counter() - started
    raise RuntimeError("no audio")


def while_long_streams(client: httpx.Client, url: str) -> float:
    """First audio of SHORT, sent once a LONG request on the same replica is streaming audio."""
    streaming, stop = threading.Event(), threading.Event()

    def long_request():
        with httpx.Client(base_url=url, timeout=600) as other:
            with other.stream("POST", "/v1/audio/speech", json={"input": LONG, "response_format": "pcm"}) as response:
                for chunk in response.iter_raw():
                    streaming.set()
                    if stop.is_set():
                        return  # closing the stream cancels the long request

    thread = threading.Thread(target=long_request)
    thread.start()
    assert streaming.wait(300)
    time.sleep(0.5)  # well into it
    try:
        return first_audio_s(client, SHORT)
    finally:
        stop.set()
        thread.join()


async def websocket_word_by_word(url: str, gap_s: float = 0.1) -> float:
    ws_url = url.replace("http://", "ws://") + "/api/tts_streaming?format=PcmMessagePack"
    async with websockets.connect(ws_url, max_size=None) as ws:
        assert msgpack.unpackb(await ws.recv())["type"] == "Ready"
        first_word_at = time.perf_counter()

        async def send():
            for word in FOUR_SENTENCES.split():
                await ws.send(msgpack.packb({"type": "Text", "text": word}))
                await asyncio.sleep(gap_s)
            await ws.send(msgpack.packb({"type": "Eos"}))

        sender = asyncio.create_task(send())
        first = None
        async for raw in ws:
            message = msgpack.unpackb(raw)
            if message["type"] == "Audio" and first is None:
                first = time.perf_counter() - first_word_at
            elif message["type"] == "Error":
                raise RuntimeError(message["message"])
        await sender
        return first


def aggregate(url: str, concurrent_requests: int = 8) -> tuple[float, float]:
    """(audio seconds, wall seconds) for concurrent 4-sentence pcm requests."""
    def one(_):
        with httpx.Client(base_url=url, timeout=600) as client:
            response = client.post("/v1/audio/speech", json={"input": FOUR_SENTENCES, "response_format": "pcm"})
            response.raise_for_status()
            return len(response.content) / 2 / 24_000

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrent_requests) as pool:
        audio = sum(pool.map(one, range(concurrent_requests)))
    return audio, time.perf_counter() - started


def measure(url: str, runs: int) -> None:
    with httpx.Client(base_url=url, timeout=600) as client:
        first_audio_s(client, "warm up")
        idle = statistics.median(first_audio_s(client, SHORT) for _ in range(runs))
        busy = statistics.median(while_long_streams(client, url) for _ in range(runs))
    ws = statistics.median(asyncio.run(websocket_word_by_word(url)) for _ in range(runs))
    audio, wall = aggregate(url)
    print(f"medians of {runs} runs; one replica")
    print(f"short request, first audio: idle {idle * 1000:.0f} ms, while a long one streams {busy * 1000:.0f} ms "
          f"({busy / idle:.2f}x idle)")
    print(f"WebSocket, a word every 100 ms: first audio {ws * 1000:.0f} ms after the first word")
    print(f"8 concurrent 4-sentence requests (pcm): {audio:.1f} s of audio in {wall:.1f} s "
          f"({audio / wall:.1f}x real time)")


def main() -> None:
    # The demo config's limits (configs/demo.yaml: 8 slots, max_text_chars 5000), one replica.
    local_app.run(measure, __doc__.splitlines()[0], default_runs=5, app_args={"max_text_chars": 5000, "max_audio_s": 600})


if __name__ == "__main__":
    main()
