"""Time to first audio against total time for a long text, measured through the service.

    .venv/bin/python benchmarks/time_to_first_audio.py                 # starts the tiny app on CPU
    .venv/bin/python benchmarks/time_to_first_audio.py --url http://127.0.0.1:8000   # a running one

For each path the clock starts when the request is sent and stops at the first audio byte (first
audio) and at the last one (total): the OpenAI route streamed as chunked PCM and as SSE, `/api/tts`
with and without `stream`, and the Kyutai WebSocket with the whole text at once and word by word
(as an LLM would send it). Every run is warm (one request first). With the tiny random-weight model
on CPU the audio is noise and its length per word is the model's maximum: compare first audio with
total, not durations with a real model.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import msgpack
import websockets

import local_app

TEXT = " ".join(f"This is sentence number {i} of a long text that the service reads aloud." for i in range(10))


def timed_http(client: httpx.Client, path: str, body: dict) -> tuple[float, float, int]:
    started = time.perf_counter()
    first, size = None, 0
    with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    total = time.perf_counter() - started
    return first if first is not None else total, total, size


async def timed_ws(url: str, word_by_word: bool) -> tuple[float, float, int]:
    ws_url = url.replace("http://", "ws://") + "/api/tts_streaming?format=PcmMessagePack"
    started = time.perf_counter()
    first, frames = None, 0
    async with websockets.connect(ws_url, max_size=None) as ws:
        assert msgpack.unpackb(await ws.recv())["type"] == "Ready"

        async def send_text():
            if word_by_word:
                for word in TEXT.split():
                    await ws.send(msgpack.packb({"type": "Text", "text": word}))
                    await asyncio.sleep(0.02)  # ~50 words/s, an LLM's pace
            else:
                await ws.send(msgpack.packb({"type": "Text", "text": TEXT}))
            await ws.send(msgpack.packb({"type": "Eos"}))

        sender = asyncio.create_task(send_text())
        async for raw in ws:
            message = msgpack.unpackb(raw)
            if message["type"] == "Audio":
                frames += 1
                if first is None:
                    first = time.perf_counter() - started
            elif message["type"] == "Error":
                raise RuntimeError(message["message"])
        await sender
    total = time.perf_counter() - started
    return first if first is not None else total, total, frames


def measure(url: str, runs: int) -> None:
    paths = {
        "POST /v1/audio/speech pcm (chunked)": lambda c: timed_http(c, "/v1/audio/speech", {
            "input": TEXT, "voice": "alloy", "response_format": "pcm"}),
        "POST /v1/audio/speech mp3, sse": lambda c: timed_http(c, "/v1/audio/speech", {
            "input": TEXT, "voice": "alloy", "response_format": "mp3", "stream_format": "sse"}),
        "POST /api/tts wav, stream: true": lambda c: timed_http(c, "/api/tts", {
            "text": TEXT, "format": "wav", "stream": True}),
        "POST /api/tts wav (whole file)": lambda c: timed_http(c, "/api/tts", {"text": TEXT, "format": "wav"}),
        "WS /api/tts_streaming, text at once": lambda c: asyncio.run(timed_ws(url, False)),
        "WS /api/tts_streaming, word by word": lambda c: asyncio.run(timed_ws(url, True)),
    }
    with httpx.Client(base_url=url, timeout=600) as client:
        client.post("/api/tts", json={"text": "warm up"}).raise_for_status()
        print(f"text: {len(TEXT.split())} words, {len(TEXT)} characters; median of {runs} runs")
        for name, run in paths.items():
            firsts, totals = [], []
            for _ in range(runs):
                first, total, _ = run(client)
                firsts.append(first)
                totals.append(total)
            f, t = statistics.median(firsts), statistics.median(totals)
            print(f"{name:40s} first audio {f * 1000:8.0f} ms   total {t * 1000:8.0f} ms   ({f / t:.1%} of total)")


def main() -> None:
    local_app.run(measure, __doc__.splitlines()[0], default_runs=3)


if __name__ == "__main__":
    main()
