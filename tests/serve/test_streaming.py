"""Streaming on the service's own API (`POST /api/tts` with stream / timestamps / captions / speed),
end to end through the real Serve app, and what streaming means for the workers: the first audio
leaves while the generation runs, and a client that goes away stops its generation."""

from __future__ import annotations

import base64
import re
import time

import httpx
import pytest
from helpers.speech_checks import (
    CODEC_SLACK_S,
    DECODED_RATES,
    FRAME_S,
    LONG_TEXT,
    LONG_TEXT_WORDS,
    decode,
    pcm_seconds,
    reports_after,
    sse_events,
    total_admissions,
    total_steps,
    wait_idle,
)

from serve_app.audio import captions

TEXT = "Streaming makes the first words audible early. Then the rest follows."
SHORT_TEXT = "Streaming makes words audible early."  # where a few words of audio prove as much


def words_of(text: str) -> list[str]:
    return [re.sub(r"\W", "", w.lower()) for w in text.split()]


def check_words(words: list[dict], text: str, duration_s: float) -> None:
    assert [re.sub(r"\W", "", w["word"].lower()) for w in words] == words_of(text)
    for previous, word in zip([None] + words, words):
        assert 0 <= word["start_s"] <= word["end_s"] <= duration_s + FRAME_S
        if previous:
            assert previous["start_s"] <= word["start_s"]


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_stream_true_sends_the_audio_as_a_chunked_body(client, fmt):
    with client.stream("POST", "/api/tts", json={"text": TEXT, "format": fmt, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        chunks = [chunk for chunk in response.iter_raw() if chunk]
    data = b"".join(chunks)
    assert len(chunks) > 1
    if fmt == "pcm":
        assert response.headers["content-type"].startswith("audio/pcm")
        assert not data.startswith(b"RIFF")  # raw PCM is never labelled, nor shaped, as WAV
        assert len(data) % 2 == 0 and pcm_seconds(data) > 0
    else:
        # A stream cannot know its length up front: the WAV header says "unknown" (0xFFFFFFFF).
        assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff"
        rate, seconds = decode(data)
        assert rate == 24_000 and seconds > 0


def test_timestamps_return_the_audio_and_its_words(client):
    response = client.post("/api/tts", json={"text": TEXT, "format": "flac", "timestamps": True})
    assert response.status_code == 200, response.text
    body = response.json()
    rate, seconds = decode(base64.b64decode(body["audio"]))
    assert rate == DECODED_RATES["flac"] and body["media_type"] == "audio/flac"
    assert seconds == pytest.approx(body["duration_s"], abs=0.01)
    check_words(body["words"], TEXT, body["duration_s"])
    assert body["gpu"] in (0, 1) and body["replica"]


@pytest.mark.parametrize("fmt", ["vtt", "srt"])
def test_captions_cover_every_word_in_time_order(client, fmt):
    response = client.post("/api/tts", json={"text": TEXT, "captions": fmt})
    assert response.status_code == 200, response.text
    body = response.json()
    text = body["captions"]
    assert text == captions.render(body["words"], fmt)  # the same words as the JSON's
    stamp = r"(\d\d):(\d\d):(\d\d)[.,](\d\d\d)"
    times = [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
             for h, m, s, ms in re.findall(stamp, text)]
    assert times and times == sorted(times) and times[-1] <= body["duration_s"] + FRAME_S
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n") and re.search(r"\d\d:\d\d:\d\d\.\d\d\d --> ", text)
    else:
        assert text.startswith("1\n") and re.search(r"\d\d:\d\d:\d\d,\d\d\d --> ", text)
    spoken = " ".join(line for line in text.splitlines() if line and "-->" not in line
                      and not line.isdigit() and line != "WEBVTT")
    assert words_of(spoken) == words_of(TEXT)




def test_stream_with_timestamps_sends_sse_audio_word_and_done_events(client):
    with client.stream("POST", "/api/tts", json={"text": TEXT, "format": "mp3", "stream": True,
                                                 "timestamps": True, "captions": "vtt"}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "error" not in kinds
    assert kinds.count("audio") > 1 and kinds.index("audio") < kinds.index("done")
    done = events[-1]
    streamed_words = [{k: e[k] for k in ("word", "start_s", "end_s")} for e in events if e["type"] == "word"]
    assert streamed_words == done["words"]
    check_words(done["words"], TEXT, done["duration_s"])
    assert done["captions"] == captions.to_webvtt(done["words"])
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "audio")
    rate, seconds = decode(audio)
    assert rate == 24_000 and seconds == pytest.approx(done["duration_s"], abs=CODEC_SLACK_S)


def test_speed_time_stretches_the_audio_and_its_timestamps(client):
    body = client.post("/api/tts", json={"text": SHORT_TEXT, "format": "wav", "speed": 2.0, "timestamps": True}).json()
    rate, seconds = decode(base64.b64decode(body["audio"]))
    assert rate == 24_000 and seconds == pytest.approx(body["duration_s"], abs=0.05)
    # The worker's frames (80 ms each) before stretching are in the SSE variant; here the words
    # must fit the stretched clip.
    assert body["words"][-1]["end_s"] <= seconds + FRAME_S
    with client.stream("POST", "/api/tts", json={"text": SHORT_TEXT, "format": "pcm", "stream": True, "speed": 0.5,
                                                 "timestamps": True}) as response:
        events = sse_events(response.iter_lines())
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "audio")
    assert pcm_seconds(audio) == pytest.approx(events[-1]["duration_s"], abs=0.05)
    words = events[-1]["words"]
    assert words and words[-1]["end_s"] <= pcm_seconds(audio) + 2 * FRAME_S


def test_refusals_come_before_the_stream_with_their_status(client):
    response = client.post("/api/tts", json={"text": TEXT, "voice": "nobody/none.wav", "stream": True})
    assert response.status_code == 400 and response.json()["error"]["param"] == "voice"
    response = client.post("/api/tts", json={"text": TEXT, "stream": True, "save": True})
    assert response.status_code == 422 and "save" in response.json()["error"]["message"]
    response = client.post("/api/tts", json={"text": TEXT, "speed": 9})
    assert response.status_code == 422 and response.json()["error"]["param"] == "speed"
    response = client.post("/api/tts", json={"text": TEXT, "captions": "ass"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "captions"


def test_first_audio_leaves_while_the_generation_is_still_running(client):
    wait_idle()
    with client.stream("POST", "/api/tts", json={"text": LONG_TEXT, "format": "pcm", "stream": True}) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        assert next(chunks)
        first_audio_at = time.monotonic()
        # Reports the workers made AFTER the first audio reached us: the generation still runs.
        reports = reports_after(first_audio_at)
        assert sum(r["active"] for r in reports) >= 1, reports
        assert next(chunks)  # and more audio follows (leaving the block then cancels the rest)


def test_a_client_that_disconnects_stops_its_generation_and_frees_the_worker(base_url):
    before = wait_idle()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        with client.stream("POST", "/api/tts", json={"text": LONG_TEXT, "format": "mp3", "stream": True}) as response:
            assert response.status_code == 200
            assert next(response.iter_raw())
        # Leaving the block closed the connection after the first chunk.
    reports = wait_idle()
    steps = total_steps(reports) - total_steps(before)
    # One generation, stopped early: the whole text would take at least a step per word.
    assert total_admissions(reports) - total_admissions(before) == 1, reports
    assert 1 <= steps < LONG_TEXT_WORDS, reports
    # The freed worker serves the next request.
    response = httpx.post(f"{base_url}/api/tts", json={"text": "Still here.", "format": "wav"}, timeout=120)
    assert response.status_code == 200 and decode(response.content)[1] > 0


