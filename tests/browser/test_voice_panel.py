"""The web page's "your own voice" panel (issue 20), in a real headless Chromium whose microphone
is Chromium's fake capture device fed a known file: the page records it, uploads it with the
consent box ticked, speaks with the new voice on the cloning model, and deletes it. The app is
conftest's `clone_url` (the cloning model beside the 1.6B-style one, anonymous uploads allowed)."""

from __future__ import annotations

import json

import httpx
import pytest
from helpers.browser import chromium
from helpers.clips import audio_file, tone
from test_ui import AUDIO_PLAYABLE, Page

pytestmark = [pytest.mark.serve, pytest.mark.browser]

RECORD_S = 4.0  # of the fake microphone: the service takes 3 to 30 s of sound
RECORDED = """() => { const m = document.getElementById('record-time').textContent.match(/([0-9.]+)/);
  return m && Number(m[1]) >= %s; }""" % RECORD_S


@pytest.fixture(scope="module")
def mic_browser(tmp_path_factory):
    # A 220 Hz tone as the microphone's sound (Chromium loops the file); no permission prompt.
    speaker = tmp_path_factory.mktemp("microphone") / "speaker.wav"
    speaker.write_bytes(audio_file(tone(6.0, rate=48000), rate=48000))
    with chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-audio-capture={speaker}") as launched:
        yield launched


@pytest.fixture
def page(mic_browser, clone_url):
    opened = Page(mic_browser, f"{clone_url}/")
    yield opened
    opened.close()
    assert opened.js_errors == [], "the page raised JavaScript errors"


def test_a_recorded_clip_becomes_a_voice_that_speaks_and_is_deleted(page, clone_url):
    p = page.page
    p.wait_for_selector("#my-voices:not([hidden])")
    assert "CC-BY 4.0" in p.inner_text("#attribution")  # the model's licence, where its voices are listed
    assert p.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == ["default", "clone"]
    p.click("#record")
    p.wait_for_function(RECORDED)
    p.click("#record")
    p.wait_for_selector("#clip-preview:not([hidden])")
    p.fill("#clip-voice-name", "Fake microphone")
    p.click("#upload")  # the consent box is not ticked: refused in the page, nothing sent
    assert p.inner_text("#upload-error") == "Please confirm that the speaker agreed."
    assert not [r for r in page.requests if r.method == "POST" and r.url.endswith("/api/voices")]

    p.check("#consent")
    with p.expect_response(lambda r: r.url.endswith("/api/voices") and r.request.method == "POST") as answer:
        p.click("#upload")
    assert answer.value.status == 201 and "multipart/form-data" in answer.value.request.headers["content-type"]
    voice = answer.value.json()
    assert voice["name"] == "Fake microphone" and voice["model"] == "clone" and voice["duration_s"] >= 3.0
    p.wait_for_selector(f"#my-voice-list li[data-voice='{voice['id']}']")
    # Selected to speak with: its model and it (once the picker has reloaded the model's voices).
    p.wait_for_function("id => document.getElementById('voice').value === id", arg=voice["id"])
    assert p.input_value("#model") == "clone"
    assert p.locator(f"#voice optgroup[label='Your voices'] option[value='{voice['id']}']").count() == 1

    p.fill("#text", "Hello.")
    with p.expect_response(lambda r: r.url.endswith("/api/tts")) as spoken:
        p.click("#generate")
    assert spoken.value.status == 200
    sent = json.loads(spoken.value.request.post_data)
    assert sent["voice"] == voice["id"] and sent["model"] == "clone"
    p.wait_for_function(AUDIO_PLAYABLE)
    assert page.page.locator("#generate-error").is_hidden()

    p.select_option("#lang", "ja")  # the panel follows the language
    assert p.inner_text("#my-voices-title") == "あなた自身の声"
    assert p.inner_text("#upload-status") == "声「Fake microphone」の準備ができました。読み上げ用に選択されています。"
    p.click(f"#my-voice-list button[data-voice='{voice['id']}']")
    p.wait_for_selector("#my-voice-empty:not([hidden])")
    p.wait_for_function("id => !document.querySelector(`#voice option[value='${id}']`)", arg=voice["id"])
    listing = httpx.get(f"{clone_url}/api/voices", params={"model": "clone"}, timeout=30).json()
    assert listing["uploaded"] == []
    p.select_option("#lang", "en")


def test_with_uploads_off_the_panel_says_so_before_any_upload(mic_browser, tmp_path):
    """A service without API keys or anonymous uploads (the in-process app: its settings are this
    test's, no Serve app deployed): the panel's notice is shown and nothing can be recorded or sent."""
    from helpers.inprocess_app import build_app, cloning_models, served_over_http

    app = build_app(tmp_path, models=cloning_models(tmp_path), default_model="first")
    with served_over_http(app) as url:
        page = Page(mic_browser, f"{url}/")
        try:
            p = page.page
            p.wait_for_selector("#uploads-off:not([hidden])")
            assert p.inner_text("#uploads-off").startswith("This service takes no uploads")
            assert all(p.is_disabled(control) for control in ("#record", "#clip-file", "#consent", "#upload"))
            p.select_option("#lang", "zh")
            assert p.inner_text("#uploads-off").startswith("此服务不接受上传")
            assert not [r for r in page.requests if r.method == "POST"]
        finally:
            page.close()
        assert page.js_errors == [], "the page raised JavaScript errors"
