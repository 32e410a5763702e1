"""`make serve`'s prefetch without a hub: which models of a config it fetches, and how a download
looks on a terminal (tqdm) for files grown by hand. The fetch itself, through the hub's protocol,
is tests/engine/test_prefetch.py."""

from __future__ import annotations

import io
import re
from pathlib import Path

from deployments.engine.download_progress import Downloads, DownloadProgress, PlannedFile
from deployments.settings import DEFAULT_MODEL_REPO, DEFAULT_VOICE, DEFAULT_VOICE_REPO
from serve_app.download_display import DownloadDisplay
from serve_app.launch import read_config
from serve_app.prefetch import enabled, hub_models, prefetch

REPO = Path(__file__).resolve().parents[2]
STT_REPO = "kyutai/stt-1b-en_fr-candle"


def test_the_hub_models_of_each_config_and_nothing_local():
    model, stt = hub_models(read_config(REPO / "serve_config.yaml"), {})
    assert (model.name, model.repo, model.voice_repo, model.default_voice) == (
        "default", DEFAULT_MODEL_REPO, DEFAULT_VOICE_REPO, DEFAULT_VOICE)
    assert (stt.name, stt.repo) == ("stt", STT_REPO)  # production's speech-to-text model
    two = hub_models(read_config(REPO / "configs" / "two_models_one_gpu.yaml"), {})
    assert [(m.name, m.repo) for m in two] == [("main", DEFAULT_MODEL_REPO), ("hd", DEFAULT_MODEL_REPO)]
    # The demo's built test checkpoint, a local model (MODEL_PATH) and a fake engine: nothing.
    assert hub_models(read_config(REPO / "configs" / "demo.yaml"), {}) == []
    # MODEL_PATH replaces the TTS model only: the STT entry says model_path: null.
    assert [m.name for m in hub_models(read_config(REPO / "serve_config.yaml"), {"MODEL_PATH": "/models/tts"})] == ["stt"]
    config = read_config(REPO / "serve_config.yaml")
    config["applications"][0]["args"]["models"] = {"real": {}, "fake": {"test_engine": "fake-tts"}}
    assert [m.name for m in hub_models(config, {})] == ["real"]
    # HF_REPO names another hub model, as the app reads it.
    model, stt = hub_models(read_config(REPO / "serve_config.yaml"), {"HF_REPO": "org/other"})
    assert (model.repo, stt.repo) == ("org/other", STT_REPO)


def test_args_the_app_would_refuse_are_one_line_and_no_prefetch():
    config = read_config(REPO / "serve_config.yaml")
    config["applications"][0]["args"].update(n_q=99, models={"Bad Name": {}})
    [warning] = prefetch(config, {}, io.StringIO())
    assert warning.startswith("No model prefetch: the config's args are invalid (") and "\n" not in warning
    assert "n_q" in warning, warning


def test_tts_prefetch_turns_it_off():
    assert enabled({}) and enabled({"TTS_PREFETCH": "1"})
    assert not any(enabled({"TTS_PREFETCH": value}) for value in ("0", "false", "no", "off", " OFF "))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_download_is_a_tqdm_bar_with_bytes_rate_and_time_left(tmp_path):
    weights, tokenizer = tmp_path / "etag-w", tmp_path / "etag-t"
    progress = DownloadProgress("org/model", [PlannedFile("w.safetensors", 600_000, weights),
                                              PlannedFile("tok.model", 400_000, tokenizer)])
    downloads, terminal = Downloads(), Terminal()
    with DownloadDisplay(downloads, terminal, poll_s=0.01) as display:
        with downloads.tracking(progress):
            display.sync()
            weights.with_name(weights.name + ".incomplete").write_bytes(b"x" * 300_000)
            progress.measure()
            display.sync()
            weights.write_bytes(b"x" * 600_000)
            progress.finish("w.safetensors")
            tokenizer.write_bytes(b"x" * 400_000)
            progress.finish("tok.model")
    out = terminal.getvalue()
    assert out.startswith("\rorg/model (2 files):   0%|") and "0.00/1.00M" in out, out
    assert re.search(r"100%\|[#█]+\| 1.00M/1.00M \[\d\d:\d\d<\d\d:\d\d, +[\d.]+[kMG]?B/s\]\n$", out), out  # redrawn in place


def test_a_download_that_begins_and_ends_between_two_looks_is_still_shown(tmp_path):
    """The display looks every POLL_S: a small file (a voice) can be fetched in between. It gets its
    first and last lines all the same, after the download that was shown, in order."""
    model, voice = tmp_path / "etag-m", tmp_path / "etag-v"
    big = DownloadProgress("org/model", [PlannedFile("w.safetensors", 1000, model)])
    small = DownloadProgress("org/voices", [PlannedFile("v.safetensors", 10, voice)])
    downloads, out = Downloads(), io.StringIO()
    with DownloadDisplay(downloads, out, poll_s=3600) as display:  # looks only when synced
        with downloads.tracking(big):
            display.sync()
            with downloads.tracking(small):  # begins and ends while the model's is shown
                voice.write_bytes(b"x" * 10)
                small.finish("v.safetensors")
            model.write_bytes(b"x" * 1000)
            big.finish("w.safetensors")
        display.sync()
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0].strip() for line in lines] == [
        "Downloading org/model w.safetensors, 1.0 kB", "org/model",
        "Downloading org/voices v.safetensors, 10 B", "org/voices"], lines
    assert lines[1].endswith(": done") and lines[3].endswith(": done")
