"""A fresh replica's first start through the Hugging Face hub's own protocol: the real
huggingface_hub client, our fetcher and moshi's loaders against tests/helpers/hub_server.py,
which serves the tiny checkpoint as `kyutai/tts-1.6b-en_fr` and its voices as `kyutai/tts-voices`.

Progress is asserted in bytes (what the hub served, what the status says), never in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deployments.checkpoint import VOICE_NAMES, VOICE_SUFFIX
from deployments.engine import download_progress
from deployments.engine.hub import READ_CHUNK_BYTES, ModelUnavailableError
from deployments.engine.model_manager import ModelManager
from deployments.engine.tts import TTSEngine
from deployments.protocol import SynthesisRequest
from deployments.settings import DEFAULT_MODEL_REPO, DEFAULT_VOICE, DEFAULT_VOICE_REPO, EngineSettings
from helpers.hub_script import run_hub_script
from helpers.hub_fixtures import hf_home, hub  # noqa: F401 (fixtures)
from helpers.leaks import assert_client_safe

WEIGHTS = "dsm_tts_random.safetensors"


@pytest.fixture
def make_manager():
    managers = []

    def make(**settings):
        manager = ModelManager(EngineSettings(**{"n_q": 8, "cpu_threads": 1, "device": "cpu", **settings}),
                               offload_after_s=None, engine_factory=TTSEngine)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.close()


@pytest.fixture
def tracked(monkeypatch):
    """Every DownloadProgress the fetcher shows, kept after it ends."""
    seen = []
    track = download_progress.DOWNLOADS.tracking
    monkeypatch.setattr(download_progress.DOWNLOADS, "tracking", lambda progress: (seen.append(progress), track(progress))[1])
    return seen


def load_in_background(manager: ModelManager, voice: str | None = None):
    """Loads the model (and speaks once) on a thread; returns (thread, outcome)."""
    outcome = {}

    def run():
        try:
            with manager.acquire() as engine:
                [outcome["result"]] = engine.synthesize([SynthesisRequest("First words.", voice=voice)])
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def model_files(hub) -> dict[str, int]:
    """The model repo's files the fetcher downloads after config.json, with their sizes."""
    files = hub.repos[DEFAULT_MODEL_REPO].files
    return {name: len(data) for name, data in files.items() if name != "config.json"}


def voice_file(name: str) -> str:
    return name + VOICE_SUFFIX


def test_a_first_start_downloads_the_model_with_its_progress_in_the_status(hub, hf_home, make_manager, tracked):
    hub.rate_bps = 400_000  # ~4 s for the 1.6 MB of the tiny model: several status reads per file
    manager = make_manager()
    thread, outcome = load_in_background(manager)
    seen = []
    while thread.is_alive():
        status = manager.status()
        if status["download"] and status["download"]["files_total"] > 1:
            seen.append((status["state"], status["download"]))
        time.sleep(0.02)
    thread.join()
    assert "error" not in outcome, outcome
    expected = model_files(hub)
    assert set(seen_download["repo"] for _, seen_download in seen) == {DEFAULT_MODEL_REPO}
    assert {state for state, _ in seen} == {"loading"}
    done = [d["bytes_done"] for _, d in seen]
    assert all(d["bytes_total"] == sum(expected.values()) for _, d in seen)
    assert done == sorted(done) and done[0] == 0  # from nothing, only ever growing
    assert any(0 < n < sum(expected.values()) for n in done)  # seen while it ran
    assert {d["file"] for _, d in seen} >= {WEIGHTS}
    assert any(d["rate_bps"] and d["eta_s"] is not None for _, d in seen)
    # ... up to the whole model, each byte served once; then the status shows no download.
    [config, model] = [p for p in tracked if p.repo == DEFAULT_MODEL_REPO]
    final = model.snapshot()
    assert (final["bytes_done"], final["files_done"]) == (sum(expected.values()), len(expected))
    assert {name: hub.bytes_served[name] for name in expected} == expected
    status = manager.status()
    assert (status["state"], status["download"], status["loads"]) == ("ready", None, 1)
    # The default voice was not in the cache: the first request fetched it from the voice repo.
    assert hub.bytes_served[voice_file(DEFAULT_VOICE)] == len(hub.repos[DEFAULT_VOICE_REPO].files[voice_file(DEFAULT_VOICE)])


def test_a_voice_not_yet_downloaded_is_fetched_on_demand(hub, hf_home, make_manager):
    manager = make_manager()
    with manager.acquire() as engine:
        listed = {v.id: v.source for v in engine.voices.list_voices()}  # the voice repo's tree listing
        assert listed == {name: "repo" for name in VOICE_NAMES}
        other = VOICE_NAMES[1]
        assert voice_file(other) not in hub.bytes_served
        [result] = engine.synthesize([SynthesisRequest("Another voice.", voice=other)])
    assert result["voice"] == other
    assert hub.bytes_served[voice_file(other)] == len(hub.repos[DEFAULT_VOICE_REPO].files[voice_file(other)])
    assert any(path == f"/api/models/{DEFAULT_VOICE_REPO}/tree/main" for _, path, _ in hub.requests)


def wait_for_abandoned_downloads(timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s  # only catches a hang
    while any(t.name == "hub-download" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the abandoned download never ended"
        time.sleep(0.05)


def partial_bytes(hf_home) -> int:
    [partial] = (hf_home / "hub").rglob("*.incomplete")
    return partial.stat().st_size


def test_a_stalled_download_fails_within_the_bound_and_the_next_request_resumes_it(hub, hf_home, make_manager):
    stall_s = 1.5
    size = model_files(hub)[WEIGHTS]
    hub.stall_after[WEIGHTS] = 300_000  # the hub goes silent mid-file, connection open
    manager = make_manager(hub_stall_s=stall_s)
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as failure:
        with manager.acquire():
            pass
    # Our bound, not huggingface_hub's: it would wait out 6 reads of HF_HUB_DOWNLOAD_TIMEOUT (10 s).
    assert time.monotonic() - started < stall_s + 8
    message = str(failure.value)
    assert f"'{DEFAULT_MODEL_REPO}'" in message and f"no data for {stall_s:g} s" in message
    assert "resumes the download" in message and f"huggingface-cli download {DEFAULT_MODEL_REPO}" in message
    assert_client_safe(message)
    status = manager.status()
    assert (status["state"], status["error"], status["download"]) == ("failed", message, None)

    hub.release_stalls()  # the hub answers again (the stalled connection is closed)
    wait_for_abandoned_downloads()  # it sees its connection cut and lets go of the file
    on_disk = partial_bytes(hf_home)
    assert 0 < on_disk <= 300_000
    served_before = hub.bytes_served[WEIGHTS]
    with manager.acquire():
        pass
    assert manager.status()["state"] == "ready"
    assert hub.bytes_served[WEIGHTS] - served_before == size - on_disk  # only the rest


def test_a_cut_download_is_resumed_by_the_next_request_from_its_partial_file(hub, hf_home, make_manager):
    size = model_files(hub)[WEIGHTS]
    hub.cut_after[WEIGHTS] = 600_000  # the connection closes mid-file (once)
    manager = make_manager()
    with pytest.raises(ModelUnavailableError) as failure:
        with manager.acquire():
            pass
    assert f"'{DEFAULT_MODEL_REPO}' cannot be fetched" in str(failure.value)
    on_disk = partial_bytes(hf_home)
    # What the cut lost is the part of one read not yet written.
    assert hub.bytes_served[WEIGHTS] == 600_000 and 600_000 - READ_CHUNK_BYTES < on_disk <= 600_000
    hub.reset_counts()
    with manager.acquire():
        pass
    assert hub.bytes_served[WEIGHTS] == size - on_disk
    assert ("GET", f"/{DEFAULT_MODEL_REPO}/resolve/main/{WEIGHTS}", f"bytes={on_disk}-") in hub.requests


def test_an_offline_second_start_loads_from_the_filled_cache(hub, hf_home, make_manager):
    manager = make_manager()
    with manager.acquire() as engine:
        engine.synthesize([SynthesisRequest("Filling the cache.", voice=VOICE_NAMES[1])])
    hub.reset_counts()
    report, stderr = run_hub_script(hf_home, DEFAULT_MODEL_REPO, VOICE_NAMES[1],
                                    HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1")
    assert report["errors"] == [] and report["words"] == ["Spoken", "from", "the", "cache."]
    assert report["status"] == {"state": "ready", "error": None, "failures": 0, "loads": 1}
    # The cached voice is listed (the listing too comes from the cache), and the hub saw nothing.
    assert [v["id"] for v in report["voices"]] == [VOICE_NAMES[1]]
    assert hub.requests == []


def test_a_cache_filled_by_huggingface_cli_download_serves_offline(hub, hf_home):
    """The README's way to fill the cache before a first start, then HF_HUB_OFFLINE."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1"}
    cli = Path(sys.executable).with_name("huggingface-cli")
    for args in ([DEFAULT_MODEL_REPO], [DEFAULT_VOICE_REPO, "--include", "unmute-prod-website/*"]):
        subprocess.run([str(cli), "download", *args], env=env, check=True, capture_output=True, timeout=120)
    hub.reset_counts()
    report, _ = run_hub_script(hf_home, DEFAULT_MODEL_REPO, DEFAULT_VOICE, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1")
    assert report["errors"] == [] and report["status"]["state"] == "ready"
    assert [v["id"] for v in report["voices"]] == [DEFAULT_VOICE]
    assert hub.requests == []
