"""The web page's listen panel (issue 22), in a real headless Chromium whose microphone is
Chromium's fake capture device fed one of the tiny STT checkpoint's test clips. The app is
conftest's `duo_url` (the speech-to-text model "ears", 2 rows, beside two TTS models): the
microphone streams over the real `/api/asr-streaming` socket and the words the page shows are the
ones the service sent on it; a chosen file's transcript equals the same file transcribed by
`POST /v1/audio/transcriptions` (the model decodes greedily: the same audio, the same words)."""

from __future__ import annotations

import contextlib

import httpx
import msgpack
import numpy as np
import pytest
from conftest import EARS_ROWS
from helpers.browser import chromium
from helpers.clips import audio_file, checkpoint_clip
from test_ui import ARTIFACTS, Page
from websockets.sync.client import connect

from deployments.protocol import FRAME_SAMPLES, SAMPLE_RATE

pytestmark = [pytest.mark.serve, pytest.mark.browser]

CLIP = "clips/fast_high.wav"  # 2.0 s: the tiny model hears at least 3 words in it
DEVICE_RATE = 48000  # the fake microphone's file: at a device's rate, so the page's 24 kHz is a resampling
HEARD_S = 2.0  # of the looped clip, streamed in real time before Stop
WORDS = "() => [...document.querySelectorAll('#listen-words .heard')].map(w => w.textContent)"
DONE = "() => document.getElementById('listen-status').textContent.startsWith('%s')"


@pytest.fixture(scope="module")
def mic_browser(tmp_path_factory, tiny_stt_checkpoint):
    microphone = tmp_path_factory.mktemp("microphone") / "speech.wav"
    microphone.write_bytes(audio_file(checkpoint_clip(tiny_stt_checkpoint, CLIP, DEVICE_RATE), rate=DEVICE_RATE))
    with chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-audio-capture={microphone}") as launched:
        yield launched


@pytest.fixture(scope="module")
def page(mic_browser, duo_url):
    """One page for the module's tests (each run of the panel starts afresh)."""
    opened = Page(mic_browser, f"{duo_url}/", wait=False)
    opened.page.wait_for_selector("#listen:not([hidden])")
    yield opened
    opened.close()
    assert opened.js_errors == [], "the page raised JavaScript errors"


class SocketLog:
    """Every frame the page's ASR socket sent and received, decoded."""

    def __init__(self, page):
        self.sent: list = []
        self.received: list[dict] = []
        page.on("websocket", self.opened)

    def opened(self, ws) -> None:
        if "/api/asr-streaming" in ws.url:
            self.url = ws.url
            ws.on("framesent", lambda data: self.sent.append(data if data == b"\0" else msgpack.unpackb(data)))
            ws.on("framereceived", lambda data: self.received.append(msgpack.unpackb(data)))

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.received if m["type"] == kind]


def best_correlation(heard: np.ndarray, original: np.ndarray) -> float:
    """The largest normalised correlation of `heard` with the looped `original` at any shift."""
    looped = np.tile(original, 2 + len(heard) // len(original))
    n = len(looped) + len(heard)
    dots = np.fft.irfft(np.fft.rfft(looped, n) * np.conj(np.fft.rfft(heard, n)), n)[:len(looped) - len(heard)]
    running = np.concatenate([[0.0], np.cumsum(looped.astype(np.float64) ** 2)])
    energy = np.sqrt((running[len(heard):] - running[:-len(heard)])[:len(dots)] * np.sum(heard ** 2))
    return float(np.max(dots / np.maximum(energy, 1e-9)))


def test_the_microphone_streams_over_the_socket_and_its_words_appear(page, tiny_stt_checkpoint):
    p = page.page
    assert p.eval_on_selector_all("#listen-model option", "os => os.map(o => o.value)") == ["ears"]
    log = SocketLog(p)
    p.click("#listen-mic")
    p.wait_for_function("s => { const m = document.getElementById('listen-status').textContent"
                        ".match(/([0-9.]+) s sent/); return m && Number(m[1]) >= s; }", arg=HEARD_S)
    p.wait_for_function(f"() => ({WORDS})().length > 0")  # words appear while it listens
    p.click("#listen-mic")  # Stop: the end of the audio, then the last words
    p.wait_for_function(DONE % "Done:")
    assert "model=ears" in log.url

    # The page sent the microphone as 24 kHz mono float32 in 80 ms frames, then the end byte.
    assert log.sent[-1] == b"\0" and all(m["type"] == "Audio" for m in log.sent[:-1])
    frames = [np.asarray(m["pcm"], np.float32) for m in log.sent[:-1]]
    assert {len(f) for f in frames[:-1]} == {FRAME_SAMPLES} and 0 < len(frames[-1]) <= FRAME_SAMPLES
    sent = np.concatenate(frames)
    assert len(sent) >= HEARD_S * SAMPLE_RATE
    # ... and it is the clip, looped by the fake device, resampled by the browser from 48 kHz.
    # Each 0.1 s of it is somewhere in the clip (the median: a loaded CPU may drop a few ms of the
    # fake device's sound, and the browser's resampler is not sphn's).
    tenth = SAMPLE_RATE // 10
    original = checkpoint_clip(tiny_stt_checkpoint, CLIP)
    found = [best_correlation(sent[i:i + tenth], original) for i in range(0, len(sent) - tenth, tenth)]
    assert np.median(found) > 0.95, found

    # What the page shows is what the service said on the socket.
    kinds = [m["type"] for m in log.received]
    assert kinds[0] == "Ready" and "Error" not in kinds and log.of("Step")
    words = [m["text"] for m in log.of("Word")]
    assert p.evaluate(WORDS) == words and len(words) >= 1
    ends = [m["stop_time"] for m in log.of("EndWord")]
    assert p.eval_on_selector_all("#listen-words .heard[data-end]", "ws => ws.map(w => Number(w.dataset.end))") == ends
    steps = log.of("Step")
    heard_s = steps[-1]["step_idx"] * FRAME_SAMPLES / SAMPLE_RATE
    assert p.inner_text("#listen-status") == f"Done: {len(words)} word(s) in {heard_s:.1f} s of audio."
    pause = round(steps[-1]["prs"][2] * 100)  # the voice-activity head Unmute reads
    assert p.inner_text("#listen-pause").endswith(f"{pause}%)")
    ARTIFACTS.mkdir(exist_ok=True)
    p.locator("#listen").screenshot(path=str(ARTIFACTS / "listen-panel.png"))

    p.select_option("#lang", "ja")  # the panel follows the language
    assert p.inner_text("#listen-title") == "聞き取り"
    assert p.inner_text("#listen-status") == f"完了：{heard_s:.1f} 秒の音声から {len(words)} 語。"
    p.select_option("#lang", "en")


def test_a_chosen_file_is_transcribed_as_the_openai_route_transcribes_it(page, duo_url, tiny_stt_checkpoint):
    path = tiny_stt_checkpoint / CLIP
    expected = httpx.post(f"{duo_url}/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())},
                          data={"model": "ears", "response_format": "verbose_json",
                                "timestamp_granularities[]": "word"}, timeout=60).json()
    words = [w["word"] for w in expected["words"]]
    assert words
    p = page.page
    with p.expect_response(lambda r: r.url.endswith("/v1/audio/transcriptions")) as answer:
        p.set_input_files("#listen-file", str(path))
    assert answer.value.status == 200 and answer.value.headers["content-type"].startswith("text/event-stream")
    p.wait_for_function(DONE % path.name)
    assert p.evaluate(WORDS) == words
    assert p.inner_text("#listen-status") == f"{path.name}: {len(words)} word(s) in {expected['duration']:.1f} s of audio."


def test_busy_channels_a_blocked_microphone_and_an_app_without_speech_to_text_are_explained(
        page, duo_url, base_url, mic_browser):
    p = page.page
    socket = duo_url.replace("http://", "ws://") + "/api/asr-streaming?model=ears"
    with contextlib.ExitStack() as stack:  # every row of the model held by another client
        holders = [stack.enter_context(connect(socket)) for _ in range(EARS_ROWS)]
        assert [msgpack.unpackb(h.recv(timeout=60))["type"] for h in holders] == ["Ready"] * EARS_ROWS
        p.click("#listen-mic")
        p.wait_for_selector("#listen-error:not([hidden])")
    assert p.inner_text("#listen-error") == "Every speech-to-text channel is busy. Please try again in a moment."
    assert p.inner_text("#listen-mic-label") == "Listen" and p.is_enabled("#listen-mic")

    p.evaluate("() => { navigator.mediaDevices.getUserMedia = () => Promise.reject("
               "new DOMException('Permission denied', 'NotAllowedError')); }")  # as a browser that was told no
    p.click("#listen-mic")
    p.wait_for_function("() => document.getElementById('listen-error').textContent.startsWith('The microphone is blocked')")
    p.select_option("#lang", "zh")
    assert p.inner_text("#listen-error") == "麦克风被禁止使用。请在浏览器中允许本网站使用麦克风，然后重试。"
    p.select_option("#lang", "en")

    tts_only = Page(mic_browser, f"{base_url}/", wait=False)
    try:  # once /api/info is in (the footer names the model), the panel stays hidden
        tts_only.page.wait_for_function("() => document.getElementById('model-name').textContent !== ''")
        assert tts_only.page.is_hidden("#listen")
    finally:
        tts_only.close()
