"""ModelManager with the real TTSEngine on the tiny checkpoint: lazy load, idle offload and reload,
offload deferred under a running generation, concurrent use from threads, failed loads and retries.

On CPU "offloading" moves the weights from CPU to CPU; what is tested is the manager's logic
(states, counters, when it acts), which is the same on a GPU.
"""

import concurrent.futures
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deployments.checkpoint import VOICE_NAMES, VOICE_SUFFIX, checkpoint_files
from deployments.engine.tts import TTSEngine
from deployments.engine.hub import ModelUnavailableError
from deployments.engine.model_manager import ModelManager, ModelState
from deployments.protocol import SAMPLE_RATE, AudioChunk, SynthesisDone, SynthesisRequest
from helpers.hub_script import run_hub_script

TEXT = "Offloading must wait until this sentence has been spoken, every word of it, to the end."


@pytest.fixture
def make_manager():
    managers = []

    def make(settings, **kwargs):
        manager = ModelManager(settings, engine_factory=TTSEngine, **kwargs)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.close()


def speak(engine, text: str) -> dict:
    [result] = engine.synthesize([SynthesisRequest(text)])
    assert [w.word for w in result["words"]] == text.split()
    return result


def wait_for_state(manager, state: ModelState, timeout_s: float = 60) -> None:
    """Waits for a state change made by the manager's own thread (the timeout only catches hangs)."""
    deadline = time.monotonic() + timeout_s
    while manager.state != state:
        assert time.monotonic() < deadline, f"still {manager.state.value}, expected {state.value}"
        time.sleep(0.05)


def test_nothing_is_loaded_before_the_first_request(make_manager, engine_settings):
    manager = make_manager(engine_settings, offload_after_s=None, gpu_index=0)
    assert manager.state == ModelState.UNLOADED and manager.engine is None
    status = manager.status()
    assert (status["state"], status["device"], status["loads"], status["error"]) == ("unloaded", None, 0, None)
    assert manager.offload() == "unloaded"  # nothing to offload, and offloading does not load

    with manager.acquire() as engine:
        assert isinstance(engine, TTSEngine) and manager.engine is engine
        assert manager.state == ModelState.READY
        assert manager.status()["active_generations"] == 1
        speak(engine, "Loaded on first use.")
    status = manager.status()
    assert (status["state"], status["device"], status["gpu_index"], status["loads"]) == ("ready", "cpu", 0, 1)
    assert status["load_seconds"] > 0 and status["active_generations"] == 0
    # The same engine serves the next request: no second load.
    with manager.acquire() as engine:
        assert engine is manager.engine
    assert manager.status()["loads"] == 1


def test_idle_weights_are_offloaded_after_the_configured_time_and_come_back(make_manager, engine_settings):
    manager = make_manager(engine_settings, offload_after_s=None)
    with manager.acquire() as engine:
        speak(engine, "Before going idle.")
    released = time.monotonic()
    assert manager.state == ModelState.READY  # no idle limit: stays
    # Set live, as the worker's reconfigure() does.
    manager.offload_after_s = 0.5
    wait_for_state(manager, ModelState.OFFLOADED)
    assert time.monotonic() - released >= 0.5  # not before the configured idle time
    status = manager.status()
    assert (status["offloads"], status["loads"], status["reloads"]) == (1, 1, 0)
    assert status["idle_seconds"] >= 0.5 and status["offload_seconds"] is not None

    with manager.acquire() as again:
        assert again is engine  # brought back, not rebuilt
        assert manager.state == ModelState.READY
        speak(again, "After coming back.")
    status = manager.status()
    assert (status["loads"], status["reloads"], status["offloads"]) == (1, 1, 1)
    assert status["reload_seconds"] is not None
    wait_for_state(manager, ModelState.OFFLOADED)  # and idles out again
    assert manager.status()["offloads"] == 2


def test_offload_is_never_done_under_a_generation(make_manager, engine_settings):
    manager = make_manager(engine_settings, offload_after_s=0.2)
    first_audio, go_on = threading.Event(), threading.Event()
    events = []

    def sink(event):
        events.append(event)
        if isinstance(event, AudioChunk) and not first_audio.is_set():
            first_audio.set()
            assert go_on.wait(120)  # hold the generation here until offload() has been called

    def generate():
        with manager.acquire() as engine:
            steps_before = engine.steps
            engine.ensure_slots(2)
            assert engine.admit(engine.prepare(SynthesisRequest(TEXT), sink))
            while engine.busy_rows:
                engine.tick()
            return engine.steps - steps_before

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        generation = pool.submit(generate)
        assert first_audio.wait(120)
        # Idle limit long passed (the idle thread looks at least once a second): a running
        # generation is not idle.
        time.sleep(1.5)
        assert manager.state == ModelState.READY and manager.status()["offloads"] == 0
        # On demand: deferred until the generation ends.
        assert manager.offload() == "deferred"
        assert manager.state == ModelState.READY  # not under a running generation
        assert manager.status()["offloads"] == 0
        go_on.set()
        steps = generation.result(timeout=300)

    assert steps > 16  # the generation went on past the offload request, and was not cut by it
    assert manager.state == ModelState.OFFLOADED and manager.status()["offloads"] == 1
    done = events[-1]
    assert isinstance(done, SynthesisDone) and [w.word for w in done.words] == TEXT.split()
    audio = np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])
    assert len(audio) == round(done.duration_s * SAMPLE_RATE) and done.words[-1].end_s == pytest.approx(done.duration_s)

    # Idle: offload() acts at once; repeated, it reports the state it stays in.
    with manager.acquire() as engine:
        speak(engine, "Back again.")
    assert manager.offload() == "offloaded" and manager.state == ModelState.OFFLOADED
    assert manager.offload() == "offloaded" and manager.status()["offloads"] == 2


def test_concurrent_requests_from_threads_share_one_load(make_manager, engine_settings):
    manager = make_manager(engine_settings, offload_after_s=None)
    threads = 4
    start = threading.Barrier(threads)
    inside = threading.Barrier(threads + 1)
    proceed = threading.Barrier(threads + 1)
    texts = [f"Thread number {i} says hello to the others." for i in range(threads)]

    def work(text):
        start.wait(60)  # every thread asks for the model at the same moment
        with manager.acquire() as engine:
            inside.wait(120)
            proceed.wait(120)
            return speak(engine, text)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work, text) for text in texts]
        inside.wait(120)
        status = manager.status()  # all four hold the model at once
        assert (status["active_generations"], status["loads"], status["state"]) == (threads, 1, "ready")
        proceed.wait(120)
        results = [f.result(timeout=300) for f in futures]

    assert len(results) == threads and all(r["duration_s"] > 0 for r in results)
    status = manager.status()
    assert (status["loads"], status["failures"], status["active_generations"]) == (1, 0, 0)


def test_status_reports_state_device_and_counters(make_manager, engine_settings):
    manager = make_manager(engine_settings, offload_after_s=123.0, gpu_index=1)
    with manager.acquire():
        pass
    status = manager.status()
    assert json.loads(json.dumps(status)) == status  # plain data, ready for the HTTP side
    assert {"state", "error", "device", "gpu_index", "active_generations", "idle_seconds",
            "offload_after_s", "loads", "load_seconds", "offloads", "offload_seconds", "reloads",
            "reload_seconds", "failures", "gpu", "torch_allocated_mib"} <= set(status)
    assert (status["state"], status["device"], status["gpu_index"], status["offload_after_s"]) == (
        "ready", "cpu", 1, 123.0)
    assert status["idle_seconds"] >= 0 and status["torch_allocated_mib"] is None  # CPU: no CUDA memory
    # No NVIDIA driver here: no GPU facts; with one, they describe GPU 1.
    assert status["gpu"] is None or status["gpu"]["index"] == 1
    first_idle = status["idle_seconds"]
    time.sleep(0.2)
    assert manager.status()["idle_seconds"] >= first_idle


def test_a_failed_load_is_reported_and_retried_by_the_next_request(make_manager, engine_settings, tmp_path):
    missing = tmp_path / "model"
    settings = engine_settings.model_copy(update={"model_path": str(missing)})
    manager = make_manager(settings, offload_after_s=None)
    for attempt in (1, 2):
        with pytest.raises(ModelUnavailableError) as info:
            with manager.acquire():
                pass
        # The client's message names the setting, the operator's (logged) the path and the fix.
        assert "model_path" in str(info.value) and str(missing) not in str(info.value)
        assert str(missing) in info.value.detail and "python -m deployments.checkpoint" in info.value.detail
        status = manager.status()
        assert (status["state"], status["failures"], status["loads"]) == ("failed", attempt, 0)
        assert status["error"] == str(info.value)
    # The model appears (copied in): the next request loads it.
    shutil.copytree(Path(engine_settings.model_path), missing)
    with manager.acquire() as engine:
        speak(engine, "Third time lucky.")
    status = manager.status()
    assert (status["state"], status["error"], status["loads"], status["failures"]) == ("ready", None, 1, 2)


def fill_hf_cache(hf_home: Path, repo: str, files: dict[str, Path]) -> None:
    """Lays files out as `huggingface-cli download` leaves them in the HF cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    for name, source in files.items():
        target = root / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)


def test_an_unreachable_model_repo_fails_fast_with_a_clear_error(tmp_path):
    repo = "kyutai-test/no-such-model"
    report, stderr = run_hub_script(tmp_path / "hf-home", repo, VOICE_NAMES[0])
    assert [kind for kind, _ in report["errors"]] == ["ModelUnavailableError"] * 2
    message = report["errors"][0][1]
    assert f"'{repo}'" in message and "model_path" in message and "HF_HUB_OFFLINE" in message
    assert f"huggingface-cli download {repo}" in message
    # Where the hub is and why it failed: in the worker's log, not in what clients read.
    assert "http://127.0.0.1:9" not in message and "http://127.0.0.1:9" in stderr
    # Fast: one refused connection, not huggingface_hub's retry loop (5 retries with back-off per
    # file), and not moshi's fallback to a legacy repo layout.
    assert "Retrying" not in stderr and "Assuming this is a Moshi" not in stderr
    # Failed, with the error; the second request tried again.
    assert report["status"] == {"state": "failed", "error": message, "failures": 2, "loads": 0}


def test_a_prefilled_hf_cache_serves_when_the_hub_is_unreachable(tmp_path, tiny_checkpoint):
    model_repo, voice_repo = "kyutai-test/tts-tiny", "kyutai/tts-voices"
    model_files = {p.relative_to(tiny_checkpoint).as_posix(): p for p in checkpoint_files(tiny_checkpoint)
                   if "voices" not in p.relative_to(tiny_checkpoint).parts}
    voice_files = {name + VOICE_SUFFIX: tiny_checkpoint / "voices" / (name + VOICE_SUFFIX) for name in VOICE_NAMES}
    fill_hf_cache(tmp_path / "hf-home", model_repo, model_files)
    fill_hf_cache(tmp_path / "hf-home", voice_repo, voice_files)

    report, stderr = run_hub_script(tmp_path / "hf-home", model_repo, VOICE_NAMES[1])
    assert report["errors"] == []
    assert report["words"] == ["Spoken", "from", "the", "cache."]
    assert {v["id"]: v["source"] for v in report["voices"]} == {name: "repo" for name in VOICE_NAMES}
    assert report["status"] == {"state": "ready", "error": None, "failures": 0, "loads": 1}
    assert "Retrying" not in stderr


class EngineWhoseFirstReloadFails(TTSEngine):
    """The real engine, except that bringing the weights back fails once, as a CUDA out-of-memory
    would on a GPU (which this machine does not have)."""

    failures_left = 1

    def move_to(self, device: str) -> None:
        offloaded = getattr(self, "_offloaded", False)  # moves alternate: offload, reload, ...
        if offloaded and type(self).failures_left:
            type(self).failures_left -= 1
            raise RuntimeError("CUDA out of memory (simulated)")
        self._offloaded = not offloaded
        super().move_to(device)


def test_a_failed_reload_fails_the_request_and_the_next_one_loads_afresh(engine_settings):
    from deployments.engine.scheduler import SlotScheduler, Submission
    from deployments.protocol import SynthesisFailed

    manager = ModelManager(engine_settings, offload_after_s=None, engine_factory=EngineWhoseFirstReloadFails)
    scheduler = SlotScheduler(manager, max_batch_size=4)

    def run(text: str):
        events, finished = [], threading.Event()

        def sink(event):
            events.append(event)
            if isinstance(event, (SynthesisDone, SynthesisFailed)):
                finished.set()

        scheduler.submit(Submission(SynthesisRequest(text), sink))
        assert finished.wait(120), "the request was never answered"
        return events[-1]

    try:
        assert isinstance(run("First words."), SynthesisDone)
        # "deferred" when the scheduler has not yet released the model after sending Done.
        assert manager.offload() in ("offloaded", "deferred")
        wait_for_state(manager, ModelState.OFFLOADED)
        failed = run("This reload fails.")
        assert isinstance(failed, SynthesisFailed) and failed.kind == "unavailable"
        assert "out of memory" in failed.message
        assert manager.state == ModelState.FAILED and manager.status()["failures"] == 1
        assert isinstance(run("A fresh load serves this one."), SynthesisDone)
        assert manager.state == ModelState.READY and manager.status()["loads"] == 2
    finally:
        scheduler.close()
        manager.close()


def test_offload_and_reload_during_a_stream_of_requests_lose_none(engine_settings):
    """Requests keep coming while offload is asked for again and again: each one is either
    deferred (rows speaking) or done between requests, the next request brings the weights back
    and rebuilds the slots, and every request ends with its whole text."""
    from deployments.engine.scheduler import SlotScheduler, Submission
    from deployments.protocol import SynthesisFailed

    manager = ModelManager(engine_settings, offload_after_s=None, engine_factory=TTSEngine)
    scheduler = SlotScheduler(manager, max_batch_size=3)
    texts = [f"Request number {i} is spoken whole, offload or not." for i in range(12)]
    results: dict[int, list] = {i: [] for i in range(len(texts))}
    finished = threading.Semaphore(0)

    def sink_for(i):
        def sink(event):
            results[i].append(event)
            if isinstance(event, (SynthesisDone, SynthesisFailed)):
                finished.release()
        return sink

    def wait_released():
        for _ in range(1200):
            if manager.status()["active_generations"] == 0:
                return
            time.sleep(0.05)
        raise AssertionError("the scheduler never released the model")

    answers = []
    try:
        for batch in range(4):
            for i in range(3 * batch, 3 * batch + 3):
                scheduler.submit(Submission(SynthesisRequest(texts[i]), sink_for(i)))
            if batch % 2:
                manager.offload()  # while rows speak: deferred (or a state, if not loaded yet)
            for _ in range(3):
                assert finished.acquire(timeout=120)
            wait_released()
            answers.append(manager.offload())  # idle: done now, or already done by the deferral
        for i, text in enumerate(texts):
            done = results[i][-1]
            assert isinstance(done, SynthesisDone), done
            assert [w.word for w in done.words] == text.split()
            audio = sum(len(e.pcm) for e in results[i] if isinstance(e, AudioChunk))
            assert audio == round(done.duration_s * SAMPLE_RATE) > 0
        assert answers == ["offloaded"] * 4
        status = manager.status()
        assert (status["loads"], status["offloads"], status["reloads"]) == (1, 4, 3)
    finally:
        scheduler.close()
        manager.close()
