"""`make serve`'s prefetch (serve_app/prefetch.py) through the hub's own protocol: the production
configs' models and default voice, fetched by the real huggingface_hub client from
tests/helpers/hub_server.py (the tiny checkpoint under the real repo names), with the progress
printed; then a replica started offline finds everything it needs. Asserted in bytes and requests.
"""

from __future__ import annotations

import io
import re

import pytest

from deployments.checkpoint import VOICE_SUFFIX
from deployments.engine.tts import TTSEngine
from deployments.protocol import SynthesisRequest
from deployments.settings import DEFAULT_MODEL_REPO, DEFAULT_VOICE, DEFAULT_VOICE_REPO, EngineSettings
from helpers.hub_fixtures import hf_home, hub  # noqa: F401 (fixtures)
from helpers.hub_server import HubRepo, model_repo_files
from serve_app import download_display
from serve_app.launch import read_config
from serve_app.prefetch import prefetch
from conftest import REPO

PRODUCTION = read_config(REPO / "serve_config.yaml")
TWO_MODELS = read_config(REPO / "configs" / "two_models_one_gpu.yaml")
STT_REPO = "kyutai/stt-1b-en_fr-candle"  # serve_config.yaml's speech-to-text model


def run(config: dict, **environ: str) -> tuple[list[str], str]:
    out = io.StringIO()
    warnings = prefetch(config, environ, out)
    return warnings, out.getvalue()


def test_prefetch_fills_the_cache_with_progress_once_and_an_offline_start_needs_nothing_more(
        hub, hf_home, monkeypatch, tiny_stt_checkpoint):
    from collections import Counter

    from huggingface_hub import constants

    # Production's speech-to-text model, its tiny copy under the real name (its test clips left out).
    hub.repos[STT_REPO] = HubRepo({name: data for name, data in model_repo_files(tiny_stt_checkpoint).items()
                                   if not name.startswith("clips/")})
    hub.rate_bps = 1_600_000  # ~2 s for the tiny models' 3.2 MB: several progress lines
    monkeypatch.setattr(download_display, "LINE_EVERY_S", 0.3)
    warnings, out = run(PRODUCTION)
    assert warnings == []
    model_files = hub.repos[DEFAULT_MODEL_REPO].files
    voice = DEFAULT_VOICE + VOICE_SUFFIX
    # Every file the replicas read, each byte served once; the default voice and no other. (The
    # hub counts by file name, and the two tiny checkpoints name their files alike.)
    expected = Counter({name: len(data) for name, data in model_files.items()})
    expected.update({name: len(data) for name, data in hub.repos[STT_REPO].files.items()})
    assert hub.bytes_served == {**expected, voice: len(hub.repos[DEFAULT_VOICE_REPO].files[voice])}
    assert f"Model 'stt' ({STT_REPO}) is in the Hugging Face cache.\n" in out
    lines = out.splitlines()
    weights = f"Downloading {DEFAULT_MODEL_REPO} ({len(model_files) - 1} files)"
    assert any(line.startswith(weights) for line in lines), out
    shares = [int(m[1]) for line in lines if (m := re.search(r"(\d+)% of ", line))]
    assert any(0 < share < 100 for share in shares) and shares[-1] == 100, out  # the bar moved, then ended
    assert re.search(r"\d+(\.\d)? [kM]B/s", out), out  # a rate
    assert re.search(rf"{DEFAULT_MODEL_REPO}: 100% of .*: done\n", out), out
    assert f"Downloading {DEFAULT_VOICE_REPO} {voice.rsplit('/', 1)[-1]}" in out and f"{DEFAULT_VOICE_REPO}: 100% of " in out, out
    assert f"Model 'default' ({DEFAULT_MODEL_REPO}) is in the Hugging Face cache, with its default voice." in out

    # A second start offline: nothing is asked of the hub, nothing is downloaded; both configs.
    hub.reset_counts()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for config in (PRODUCTION, TWO_MODELS):
        warnings, out = run(config)
        assert warnings == [] and "Downloading" not in out and "in the Hugging Face cache" in out, out
    assert hub.requests == []

    # ...and a replica's engine, offline, loads the model and speaks with the default voice.
    engine = TTSEngine(EngineSettings(n_q=8, cpu_threads=1, device="cpu"), "cpu")
    try:
        [result] = engine.synthesize([SynthesisRequest("From the cache.")])
    finally:
        engine.close()
    assert result["words"] and hub.requests == []


def test_two_models_of_one_repo_are_fetched_once(hub, hf_home):
    warnings, out = run(TWO_MODELS)
    assert warnings == [] and "Model 'main'" in out and "Model 'hd'" in out
    assert all(served == len(hub.repos[DEFAULT_MODEL_REPO].files.get(name) or hub.repos[DEFAULT_VOICE_REPO].files[name])
               for name, served in hub.bytes_served.items())


def test_tts_prefetch_0_skips_it(hub, hf_home):
    warnings, out = run(PRODUCTION, TTS_PREFETCH="0")
    assert warnings == [] and "TTS_PREFETCH=0" in out
    assert hub.requests == []


@pytest.mark.parametrize("environ, setting, reason", [
    ({"HF_REPO": "kyutai/no-such-model"}, "`model_repo` 'kyutai/no-such-model'", "RepositoryNotFoundError"),
    ({}, f"`default_voice` 'no/such-voice.wav' in `voice_repo` '{DEFAULT_VOICE_REPO}'", "EntryNotFoundError"),
    ({"unreachable": "1"}, f"`model_repo` '{DEFAULT_MODEL_REPO}'", "cannot be reached"),
], ids=["missing repo", "missing voice", "hub unreachable"])
def test_what_cannot_be_fetched_is_one_line_naming_the_setting(hub, hf_home, monkeypatch, environ, setting, reason):
    from huggingface_hub import constants, file_download

    config = read_config(REPO / "serve_config.yaml")
    if setting.startswith("`default_voice`"):
        config["applications"][0]["args"]["default_voice"] = "no/such-voice.wav"
    if environ.pop("unreachable", None):
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    warnings, out = run(config, **environ)
    assert len(warnings) == 1, out
    [warning] = warnings
    assert "\n" not in warning and "Traceback" not in out
    assert warning.startswith(f"Cannot prefetch model 'default' ({setting}): ") and reason in warning, warning
    assert "TTS_PREFETCH=0" in warning and "To fix" in warning
