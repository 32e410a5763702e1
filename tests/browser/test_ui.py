"""The web page at `/`, driven by a real headless Chromium (Debian's package: `make browser`)
against the real Serve application with the tiny random-weight model."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgpack
import pytest
import websockets
from conftest import API_KEY
from helpers.browser import browser  # noqa: F401 (a fixture)
from helpers.speech_checks import wait_idle

pytestmark = [pytest.mark.serve, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 120_000  # generous: the CPU is shared; tests assert on events and content, not on time

AUDIO_STATE = """() => { const a = document.getElementById('audio');
  return {duration: a.duration, readyState: a.readyState, src: a.currentSrc, error: a.error && a.error.code}; }"""
AUDIO_PLAYABLE = "() => { const a = document.getElementById('audio'); return a.readyState >= 2 && a.duration > 0; }"


class Page:
    """A page in a fresh browser context (own storage, own locale) that records what it requested
    and any JavaScript error it raised."""

    def __init__(self, browser, url: str, locale: str = "en-US", wait: bool = True):
        self.context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.requests: list = []
        self.js_errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("pageerror", lambda exc: self.js_errors.append(str(exc)))
        self.open(url, wait)

    def open(self, url: str, wait: bool = True) -> None:
        self.page.goto(url)
        if wait:
            self.wait_for_voices()

    def wait_for_voices(self) -> None:
        self.page.wait_for_selector("#voice[data-state]", state="attached")  # loaded, or failed

    def tts_posts(self) -> list:
        return [r for r in self.requests if r.method == "POST" and r.url.endswith("/api/tts")]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser):
    pages: list[Page] = []

    def opener(url: str, locale: str = "en-US", wait: bool = True) -> Page:
        pages.append(Page(browser, url, locale, wait))
        return pages[-1]

    yield opener
    for page in pages:
        page.close()
    assert [e for p in pages for e in p.js_errors] == [], "the page raised JavaScript errors"


@pytest.fixture
def ui(open_page, base_url) -> Page:
    return open_page(f"{base_url}/")


def press_generate(ui: Page, text: str):
    """Types `text`, presses Generate and waits until the clip is complete and playable (the download
    link appears when the whole file is there). Returns the /api/tts response."""
    ui.page.fill("#text", text)
    with ui.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/tts")) as answer:
        ui.page.click("#generate")
    assert answer.value.status == 200, answer.value.text()
    ui.page.wait_for_selector("#download:not([hidden])")
    ui.page.wait_for_function(AUDIO_PLAYABLE)
    return answer.value


def sse_events(response) -> list[dict]:
    return [json.loads(line[len("data: "):]) for block in response.text().split("\n\n")
            for line in block.splitlines() if line.startswith("data: ")]


def check_word_highlighting(ui: Page, words: list[dict]) -> None:
    """The shown words are the answer's, in order; seeking into a word highlights it, and only it."""
    assert words
    assert ui.page.eval_on_selector_all("#words .word", "ws => ws.map(w => w.textContent)") == [w["word"] for w in words]
    ui.page.evaluate("() => document.getElementById('audio').pause()")
    for index in (0, len(words) // 2, len(words) - 1):
        middle = (words[index]["start_s"] + words[index]["end_s"]) / 2
        ui.page.evaluate("""t => new Promise(done => { const a = document.getElementById('audio');
          a.addEventListener('seeked', () => requestAnimationFrame(done), {once: true}); a.currentTime = t; })""", middle)
        assert ui.page.eval_on_selector_all("#words .word.current", "ws => ws.map(w => w.textContent)") == [words[index]["word"]]


def test_page_and_assets_come_from_the_service_only(ui, base_url):
    assert ui.page.title() == "Kyutai TTS"
    assert {r.resource_type for r in ui.requests} >= {"document", "script", "stylesheet", "fetch"}
    outside = [r.url for r in ui.requests if not r.url.startswith(base_url + "/") and not r.url.startswith("data:")]
    assert outside == []
    for path in ("/static/app.js", "/static/style.css", "/static/i18n.js"):
        assert httpx.get(base_url + path).status_code == 200
    assert httpx.get(base_url + "/static/nope.js").status_code == 404


def test_voices_load_into_the_grouped_searchable_picker(ui, client):
    listed = client.get("/api/voices").json()
    options = ui.page.eval_on_selector_all(
        "#voice option", "os => os.map(o => ({id: o.value, text: o.textContent, group: o.parentElement.label}))")
    assert sorted(o["id"] for o in options) == sorted(v["id"] for v in listed["voices"])
    by_id = {v["id"]: v for v in listed["voices"]}
    for option in options:
        assert option["group"] == by_id[option["id"]]["group"]
    english = [o for o in options if by_id[o["id"]]["language"] == "en"]
    assert english and all("English" in o["text"] for o in english)
    assert ui.page.input_value("#voice") == listed["default"]

    # Searching by name keeps only the matching voices, and selects one of them.
    target = next(v for v in listed["voices"] if v["group"] == "expresso")
    ui.page.fill("#voice-search", "expresso")
    assert ui.page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)") == [target["id"]]
    assert ui.page.input_value("#voice") == target["id"]
    # ... and by language name.
    ui.page.fill("#voice-search", "french")
    french = sorted(v["id"] for v in listed["voices"] if v["language"] == "fr")
    assert french and sorted(ui.page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)")) == french
    ui.page.fill("#voice-search", "no voice is called this")
    assert ui.page.eval_on_selector_all("#voice option", "os => os.length") == 0
    assert ui.page.text_content("#voice-count") == "No voice matches this search."


# Three sentences (over a hundred ticks of the tiny model): several pieces of audio, the first playing while
# the rest is generated.
STREAM_TEXT = ("Hello from the browser test. The audio starts playing while the rest is generated. "
               "Every word is highlighted as it is spoken.")


def test_generate_streams_audio_that_plays_as_it_arrives(ui, client):
    # The page's own order of events: the Generate button's busy state, the audio element's first
    # playable data and playback, and the moment the whole file is there (the download link).
    ui.page.evaluate("""() => { window.timeline = [];
      const note = (what) => window.timeline.push(what);
      new MutationObserver(() => note('busy=' + document.getElementById('generate').getAttribute('aria-busy')))
        .observe(document.getElementById('generate'), {attributes: true, attributeFilter: ['aria-busy']});
      new MutationObserver(() => document.getElementById('download').hidden || note('complete'))
        .observe(document.getElementById('download'), {attributes: true, attributeFilter: ['hidden']});
      for (const e of ['loadeddata', 'playing']) document.getElementById('audio').addEventListener(e, () => note(e), {once: true}); }""")
    assert ui.page.input_value("#format") == "mp3"  # the default: a format the browser plays as it streams
    response = press_generate(ui, STREAM_TEXT)
    assert json.loads(response.request.post_data) == {
        "text": STREAM_TEXT, "voice": client.get("/api/voices").json()["default"], "cfg_coef": 2, "format": "mp3",
        "stream": True, "timestamps": True}
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    done = events[-1]
    assert done["type"] == "done" and sum(e["type"] == "audio" for e in events) > 1

    timeline = ui.page.evaluate("window.timeline")
    assert timeline[0] == "busy=true" and timeline[-1] == "busy=false"
    # The clip was playing before it was complete.
    assert timeline.index("loadeddata") < timeline.index("playing") < timeline.index("complete")

    audio = ui.page.evaluate(AUDIO_STATE)
    assert audio["error"] is None and audio["readyState"] >= 2 and audio["src"].startswith("blob:")
    assert audio["duration"] == pytest.approx(done["duration_s"], abs=0.15)  # MP3 frames round it up a little
    # The download is the streamed file itself.
    assert ui.page.get_attribute("#download", "download").endswith(".mp3")
    size = ui.page.evaluate("async () => (await (await fetch(document.getElementById('download').href)).blob()).size")
    assert size == sum(len(base64.b64decode(e["audio"])) for e in events if e["type"] == "audio")
    info = ui.page.text_content("#result-info")
    assert done["replica"] in info and f"GPU {done['gpu']}" in info
    assert [w["word"] for w in done["words"]] == STREAM_TEXT.split()
    check_word_highlighting(ui, done["words"])

    # It really plays: time moves on, and the spoken word is highlighted.
    ui.page.evaluate("() => { const a = document.getElementById('audio'); a.currentTime = 0; return a.play(); }")
    ui.page.wait_for_function("() => document.getElementById('audio').currentTime > 0.2")
    ui.page.wait_for_function("() => document.querySelector('#words .word.current') !== null")

    ARTIFACTS.mkdir(exist_ok=True)
    ui.page.screenshot(path=str(ARTIFACTS / "ui-after-generation.png"), full_page=True)


def test_wav_is_saved_by_the_service_and_played_from_its_url(ui, client):
    ui.page.select_option("#format", "wav")
    response = press_generate(ui, "A clip kept on the server.")
    request = json.loads(response.request.post_data)
    assert request["save"] is True and "stream" not in request
    saved = response.json()
    audio = ui.page.evaluate(AUDIO_STATE)
    assert audio["error"] is None and audio["readyState"] >= 2
    assert audio["src"] == saved["url"]
    assert audio["duration"] == pytest.approx(saved["duration_s"], abs=0.05) and saved["duration_s"] > 0
    assert ui.page.get_attribute("#download", "href") == saved["url"]
    assert ui.page.get_attribute("#download", "download").endswith(".wav")
    download = client.get(saved["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "audio/wav"
    check_word_highlighting(ui, saved["words"])


def test_picked_voice_and_cfg_reach_the_request(ui, client):
    voice = next(v["id"] for v in client.get("/api/voices").json()["voices"] if v["group"] == "vctk")
    ui.page.fill("#voice-search", "vctk")
    ui.page.select_option("#cfg", "3")
    ui.page.select_option("#format", "aac")
    response = press_generate(ui, "A short line in another voice.")
    assert json.loads(response.request.post_data) == {
        "text": "A short line in another voice.", "voice": voice, "cfg_coef": 3, "format": "aac",
        "stream": True, "timestamps": True}
    done = sse_events(response)[-1]
    assert done["voice"] == voice and done["format"] == "aac"
    assert ui.page.get_attribute("#download", "download").endswith(".aac")
    assert ui.page.evaluate(AUDIO_STATE)["duration"] > 0


def test_cfg_choices_are_the_models_steps(ui):
    values = ui.page.eval_on_selector_all("#cfg option", "os => os.map(o => Number(o.value))")
    assert values == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert ui.page.input_value("#cfg") == "2"


LABELS = {  # a few labels in each language: the title, the Generate button, the GPU panel, the text field
    "zh": ("Kyutai 语音合成", "生成", "GPU 与副本", "文本"),
    "en": ("Kyutai TTS", "Generate", "GPUs and replicas", "Text"),
    "ja": ("Kyutai 音声合成", "生成", "GPU とレプリカ", "テキスト"),
}
LABEL_SELECTORS = ("h1", "#generate", "#gpu-title", "label[for=text]")


def labels(ui: Page) -> tuple:
    return tuple(ui.page.inner_text(selector).strip() for selector in LABEL_SELECTORS)


def test_language_switch_changes_the_labels_and_is_remembered(ui, base_url, client):
    assert labels(ui) == LABELS["en"]
    for code in ("zh", "ja", "en", "ja"):
        ui.page.select_option("#lang", code)
        assert labels(ui) == LABELS[code]
        assert ui.page.evaluate("document.documentElement.lang").startswith(code)
        # Text drawn by scripts follows too, and no label is left as a raw message key.
        keys = ui.page.eval_on_selector_all("[data-i18n]", "es => es.filter(e => e.textContent === e.dataset.i18n).length")
        assert keys == 0
    total = len(client.get("/api/voices").json()["voices"])
    assert ui.page.text_content("#voice-count") == f"{total} 件中 {total} 件を表示"
    # Remembered: a reload comes back in Japanese although the browser says English.
    ui.open(f"{base_url}/")
    assert labels(ui) == LABELS["ja"]
    assert ui.page.input_value("#lang") == "ja"


@pytest.mark.parametrize("locale, expected", [("zh-CN", "zh"), ("ja-JP", "ja"), ("en-GB", "en"), ("fr-FR", "en")])
def test_language_defaults_from_the_browser(open_page, base_url, locale, expected):
    ui = open_page(f"{base_url}/", locale=locale)
    assert labels(ui) == LABELS[expected]
    assert ui.page.input_value("#lang") == expected


def test_every_language_has_every_message(ui):
    keys = ui.page.evaluate("""async () => { const {MESSAGES} = await import('./static/i18n.js');
      return Object.fromEntries(Object.entries(MESSAGES).map(([lang, m]) => [lang, Object.keys(m).sort()])); }""")
    assert set(keys) == {"zh", "en", "ja"}
    assert keys["zh"] == keys["en"] == keys["ja"]


def test_empty_text_shows_an_error_next_to_the_text_area(ui):
    for text in ("", "  \n "):
        ui.page.fill("#text", text)
        ui.page.click("#generate")
        error = ui.page.locator(".field:has(#text) #text-error")
        assert error.is_visible()
        assert error.inner_text() == "Please type some text first."
    assert ui.tts_posts() == []  # refused in the page: nothing was sent
    ui.page.select_option("#lang", "zh")
    assert ui.page.inner_text("#text-error") == "请先输入文本。"  # the shown error follows the language
    ui.page.type("#text", "x")
    assert ui.page.locator("#text-error").is_hidden()  # typing clears it


def test_a_refused_voice_shows_the_services_message_next_to_the_picker(ui, client):
    # A voice the service does not know (added to the list by hand): the 400's message is shown
    # next to the voice picker, not as a generic failure.
    bogus = "nobody/unknown_voice.wav"
    expected = client.post("/api/tts", json={"text": "hi", "voice": bogus}).json()["error"]["message"]
    ui.page.evaluate("v => { const s = document.getElementById('voice'); s.add(new Option(v, v)); s.value = v; }", bogus)
    ui.page.fill("#text", "hi")
    ui.page.click("#generate")
    ui.page.wait_for_selector("#voice-error:not([hidden])")
    assert expected in ui.page.inner_text("#voice-error")
    assert ui.page.locator("#generate-error").is_hidden() and ui.page.locator("#text-error").is_hidden()
    assert ui.page.is_enabled("#generate")


def test_model_unavailable_is_said_in_plain_words_next_to_generate(open_page, broken_url):
    # An app whose model cannot be fetched (conftest's broken_url); its page lives under /broken/.
    ui = open_page(f"{broken_url}/")
    ui.page.fill("#text", "Hello?")
    with ui.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/tts")) as answer:
        ui.page.click("#generate")
    assert answer.value.status == 503
    ui.page.wait_for_selector("#generate-error:not([hidden])")
    message = ui.page.inner_text("#generate-error")
    assert message.startswith("The model is unavailable right now.")
    assert answer.value.json()["error"]["message"] in message
    assert ui.page.locator("#result").is_hidden()


def gpu_panel_replicas(ui: Page) -> list[dict]:
    return ui.page.eval_on_selector_all(
        "#gpu-list .replica", """rs => rs.map(r => ({replica: r.dataset.replica, gpu: r.closest('.gpu').dataset.gpu,
                                 state: r.querySelector('.badge').dataset.state}))""")


def test_gpu_panel_lists_every_gpu_and_replica_and_refreshes(ui, client):
    ui.page.wait_for_function("() => document.querySelectorAll('#gpu-list .replica').length === 2")
    status = client.get("/api/gpu/status").json()
    shown = gpu_panel_replicas(ui)
    assert sorted((r["replica"], r["gpu"]) for r in shown) == sorted((r["replica"], str(r["gpu"])) for r in status["replicas"])
    gpus = ui.page.eval_on_selector_all("#gpu-list .gpu", "gs => gs.map(g => g.dataset.gpu)")
    assert gpus == [str(i) for i in range(int(status["total_ray_gpus"]))]
    assert all(r["state"] in {"unloaded", "loading", "ready", "offloaded", "failed"} for r in shown)
    # It refreshes on its own, and only by reading /api/gpu/status, which never wakes a worker
    # deployment that scaled to zero (the page calls nothing else while nobody uses it).
    first = ui.page.text_content("#gpu-updated")
    polls_before = len([r for r in ui.requests if r.url.endswith("/api/gpu/status")])
    ui.page.wait_for_function("t => document.getElementById('gpu-updated').textContent !== t", arg=first)
    assert len([r for r in ui.requests if r.url.endswith("/api/gpu/status")]) > polls_before
    api_calls = {(r.method, r.url.split("/api/", 1)[1]) for r in ui.requests if "/api/" in r.url}
    assert api_calls == {("GET", "info"), ("GET", "voices"), ("GET", "gpu/status")}


def shown_slots(ui: Page) -> dict[str, dict]:
    return {r["replica"]: r for r in ui.page.eval_on_selector_all("#gpu-list .replica", """rs => rs.map(r => {
      const s = r.querySelector('.slots');
      return {replica: r.dataset.replica, busy: +s.dataset.busy, free: +s.dataset.free, total: +s.dataset.total,
              text: s.textContent}; })""")}


@contextmanager
def a_row_held(base_url: str):
    """A WebSocket session that has sent its first words and not its end: it keeps one slot of one
    replica busy (waiting for the rest of the text) until the block ends."""
    opened, stop, failed = threading.Event(), threading.Event(), []

    async def session():
        url = base_url.replace("http://", "ws://") + "/api/tts_streaming?format=PcmMessagePack"
        async with websockets.connect(url) as ws:
            assert msgpack.unpackb(await asyncio.wait_for(ws.recv(), 120))["type"] == "Ready"
            await ws.send(msgpack.packb({"type": "Text", "text": "Hello there"}))
            opened.set()
            while not stop.is_set():  # keep reading what it says, without ending the text
                try:
                    await asyncio.wait_for(ws.recv(), 0.2)
                except asyncio.TimeoutError:
                    pass

    def run():
        try:
            asyncio.run(session())
        except Exception as exc:  # reported by the test, not lost in the thread
            failed.append(exc)
            opened.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert opened.wait(120) and not failed, failed
        yield
    finally:
        stop.set()
        thread.join(30)
    assert not failed, failed


def test_gpu_panel_shows_busy_and_free_slots_per_replica(ui, client, base_url):
    """Each running replica's row shows its busy and free slots as /api/gpu/status reports them:
    all free at rest, one busy while a streamed session holds a row."""
    wait_idle()
    ui.page.wait_for_function("""() => { const s = [...document.querySelectorAll('#gpu-list .replica .slots')];
      return s.length === 2 && s.every(e => e.dataset.busy === '0'); }""")
    replicas = client.get("/api/gpu/status").json()["replicas"]
    shown = shown_slots(ui)
    assert set(shown) == {r["replica"] for r in replicas}
    for replica in replicas:
        assert (shown[replica["replica"]]["busy"], shown[replica["replica"]]["free"], shown[replica["replica"]]["total"]) \
            == (0, replica["max_batch_size"], replica["max_batch_size"])
        assert shown[replica["replica"]]["text"] == f"slots: 0 busy · {replica['max_batch_size']} free of {replica['max_batch_size']}"

    with a_row_held(base_url):
        ui.page.wait_for_function("""() => [...document.querySelectorAll('#gpu-list .slots')]
          .some(s => s.dataset.busy === '1')""")
        shown = shown_slots(ui)
        (busy,) = [replica for replica, slots in shown.items() if slots["busy"] == 1]
        reported = {r["replica"]: r for r in client.get("/api/gpu/status").json()["replicas"]}
        assert reported[busy]["active"] == 1 and reported[busy]["free_slots"] == reported[busy]["max_batch_size"] - 1
        assert shown[busy]["free"] == shown[busy]["total"] - 1 == reported[busy]["max_batch_size"] - 1
        assert all(slots["busy"] == 0 for replica, slots in shown.items() if replica != busy)
    # The slot is given back, and the panel says so at its next refresh.
    ui.page.wait_for_function("() => [...document.querySelectorAll('#gpu-list .slots')].every(s => s.dataset.busy === '0')")


def test_offload_button_offloads_the_loaded_model(ui, client):
    client.post("/api/tts", json={"text": "Load the model somewhere."}).raise_for_status()
    replicas = client.get("/api/gpu/status").json()["replicas"]
    loaded = [r["replica"] for r in replicas if r["state"] == "ready"]
    assert loaded
    ui.page.click("#offload-all")
    ui.page.wait_for_function("() => document.getElementById('gpu-message').textContent !== ''")
    assert ui.page.inner_text("#gpu-message").startswith(f"Offload asked of {len(replicas)} replica(s)")
    ui.page.wait_for_function(
        "ids => ids.every(id => document.querySelector(`.replica[data-replica='${id}'] .badge`)?.dataset.state === 'offloaded')",
        arg=loaded)
    assert ui.page.inner_text(f".replica[data-replica='{loaded[0]}'] .badge") == "offloaded"
    states = {r["replica"]: r["state"] for r in client.get("/api/gpu/status").json()["replicas"]}
    assert all(states[replica] == "offloaded" for replica in loaded)


def test_info_says_the_demo_model_is_a_test_model(ui, client):
    info = client.get("/api/info").json()
    assert info["test_model"] is True and info["version"]
    assert ui.page.locator("#test-model-note").is_visible()
    assert "noise" in ui.page.inner_text("#test-model-note")


def test_a_keyed_service_asks_for_the_key_and_sends_it_everywhere(open_page, keyed_url, client):
    ui = open_page(f"{keyed_url}/", wait=False)  # the voices wait for the key
    prompt = ui.page.locator("#key-form")
    prompt.wait_for(state="visible")
    assert ui.page.get_attribute("#voice", "data-state") is None  # nothing loaded without the key
    assert ui.page.locator("#key-error").is_hidden()
    key_box = ui.page.get_by_label("API key", exact=True)  # the field is labelled: an accessible form
    assert key_box.evaluate("e => e === document.activeElement")

    # A wrong key: the service refuses it, the prompt comes back saying so, still nothing loads.
    key_box.fill("wrong-key")
    ui.page.get_by_role("button", name="Use this key").click()
    ui.page.wait_for_selector("#key-error:not([hidden])")
    assert ui.page.inner_text("#key-error") == "This key was refused. Please check it and try again."
    assert prompt.is_visible() and ui.page.get_attribute("#voice", "data-state") is None
    ui.page.select_option("#lang", "zh")  # the prompt speaks the page's language
    assert ui.page.inner_text("#key-error") == "此密钥被拒绝。请检查后重试。"
    assert ui.page.inner_text("#key-title") == "需要 API 密钥"
    ui.page.select_option("#lang", "en")

    # The right key: the prompt goes away and every call waiting for it is answered.
    key_box.fill(API_KEY)
    key_box.press("Enter")
    ui.wait_for_voices()
    assert ui.page.get_attribute("#voice", "data-state") == "loaded"
    assert ui.page.locator("#voice option").count() == len(client.get("/api/voices").json()["voices"]) > 0
    assert prompt.is_hidden()
    ui.page.wait_for_function("() => document.getElementById('gpu-summary').textContent !== ''")
    assert ui.page.evaluate("() => sessionStorage.getItem('tts.apiKey')") == API_KEY
    calls = [r for r in ui.requests if "/api/" in r.url and r.resource_type == "fetch"]
    keyed = [r for r in calls if r.all_headers().get("authorization") == f"Bearer {API_KEY}"]
    assert {r.url.rsplit("/api/", 1)[1] for r in keyed} >= {"voices", "info", "gpu/status"}
    assert all(r.response().status == 401 for r in calls if r not in keyed)

    # A saved file plays in <audio src> with the key in its URL (saved by the main app: the apps
    # share the outputs directory, and the keyed app serves it to key holders only).
    saved = client.post("/api/tts", json={"text": "Audio behind a key.", "save": True})
    assert saved.status_code == 200, saved.text
    name = saved.json()["url"].rsplit("/", 1)[1]
    src = ui.page.evaluate("""async name => { const {withKey} = await import('./static/api.js');
      const audio = document.getElementById('audio'); audio.src = withKey(`api/outputs/${name}`);
      return audio.src; }""", name)
    assert src == f"{keyed_url}/api/outputs/{name}?auth_id={API_KEY}"
    ui.page.wait_for_function("() => document.getElementById('audio').duration > 0")

    # Reloaded in the same tab: the key is remembered, nothing is asked.
    ui.open(f"{keyed_url}/")
    assert ui.page.get_attribute("#voice", "data-state") == "loaded" and prompt.is_hidden()


def test_an_open_service_never_asks_for_a_key(ui):
    assert ui.page.get_attribute("#voice", "data-state") == "loaded"
    assert ui.page.locator("#key-form").is_hidden()
    assert all("authorization" not in r.all_headers() for r in ui.requests if "/api/" in r.url)




def test_gpu_panel_names_each_replicas_model_when_the_app_has_several(open_page, duo_url, ui):
    duo = open_page(f"{duo_url}/")
    duo.page.wait_for_function("() => document.querySelectorAll('#gpu-list .replica .model').length === 3")
    shown = duo.page.eval_on_selector_all("#gpu-list .replica", "rows => rows.map(r => [r.dataset.model, "
                                          "r.querySelector('.model').textContent])")
    assert sorted(shown) == [["ears", "ears"], ["first", "first"], ["second", "second"]]  # the STT model too
    # An app of one model says nothing of models.
    ui.page.wait_for_function("() => document.querySelectorAll('#gpu-list .replica').length === 2")
    assert ui.page.eval_on_selector_all("#gpu-list .replica .model", "labels => labels.length") == 0
