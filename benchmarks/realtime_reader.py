"""A long stream read at real time through Serve's real HTTP proxy: does its player ever wait?
(issue 25: pacing must never starve a client that reads at playback speed.)

    .venv/bin/python benchmarks/realtime_reader.py [--url URL] [--minutes 5] [--buffer-s 1]

Starts the demo app with the scripted fake engine on a local Ray cluster (or measures `--url`),
asks `POST /v1/audio/speech` (`pcm`) for `--minutes` of speech (the fake says a word in 2 frames,
0.16 s) and reads it as a player does: it plays from the first byte at real time and reads only
while it holds less than `--buffer-s` of audio not yet played, so the stream's pacing
(`stream_lead_s`, default 20 s) is reached and then held. Printed: the largest gap between when a
byte was needed for playback and when it arrived (0: the player never ran dry; a reader that
comes late itself, on a loaded CPU, is not counted against the stream but printed), the stream's
length and its wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

SAMPLE_RATE = 24_000
BYTES_PER_S = SAMPLE_RATE * 2  # pcm: 16-bit mono
WORD_S = 0.16  # the fake's two frames per word
CHUNK = 4096


def read_at_real_time(url: str, seconds: float, buffer_s: float) -> None:
    words = int(seconds / WORD_S)
    text = " ".join(["word"] * words)
    received = 0
    worst_gap = 0.0  # the longest the player waited for bytes past when it needed them
    reader_late = 0.0  # the longest this process itself came late to read (its own CPU), not the stream's doing
    started = time.monotonic()
    with httpx.stream("POST", f"{url}/v1/audio/speech", json={"input": text, "response_format": "pcm"},
                      timeout=httpx.Timeout(60.0, read=60.0)) as response:
        response.raise_for_status()
        first = None
        asked = time.monotonic()
        for chunk in response.iter_bytes(CHUNK):
            now = time.monotonic()
            if first is None:
                first = asked = now  # playback starts with the first byte
            need = first + received / BYTES_PER_S  # when playback reaches this chunk's first sample
            worst_gap = max(worst_gap, now - max(need, asked))
            reader_late = max(reader_late, asked - need)
            received += len(chunk)
            ahead = first + received / BYTES_PER_S - time.monotonic() - buffer_s
            if ahead > 0:
                time.sleep(ahead)  # a player holding `buffer_s` reads no more than it plays
            asked = time.monotonic()
    audio_s = received / BYTES_PER_S
    print(f"{words} words, {audio_s:.1f} s of audio ({received} bytes) read at real time with a "
          f"{buffer_s:g} s buffer through the proxy in {time.monotonic() - started:.1f} s wall; "
          f"time to first audio {first - started:.2f} s")
    print(f"largest gap between playback need and arrival: {worst_gap * 1000:.0f} ms "
          f"(the reader itself came at most {reader_late * 1000:.0f} ms late to read, its own CPU's doing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--buffer-s", type=float, default=1.0)
    options, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    import local_app

    seconds = options.minutes * 60
    local_app.run(lambda url, runs: [read_at_real_time(url, seconds, options.buffer_s) for _ in range(runs)],
                  __doc__.split("\n\n")[0], default_runs=1,
                  app_args={"max_text_chars": int(seconds / WORD_S) * 5 + 100, "max_audio_s": seconds * 2,
                            "test_engine": "fake-tts"})


if __name__ == "__main__":
    main()
