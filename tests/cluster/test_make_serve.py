"""`make serve`, the README's first command, on this machine as it is (few cores, maybe no GPU, no
model hub): the production config through the launcher, exactly the command `make serve` runs.

It starts its OWN local Ray cluster (address "local", in its own temp dir), so it neither joins nor
disturbs the test session's cluster from conftest.py. The hub "answers" from a closed local port and
the Hugging Face cache is empty, so the prefetch and the model load fail at once, deterministically.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from conftest import REPO, free_port, wait_for_replicas

HEALTH_WITHIN_S = 90  # the issue asks for 60 s on 2 cores; measured ~12 s, slack for a busy CI
STOP_WITHIN_S = 60
REPO_ID = "kyutai/tts-1.6b-en_fr"  # serve_config.yaml's model_repo


def _ray_processes(marker: str) -> list[int]:
    """Live processes that inherited the launcher's environment (its Ray cluster: GCS, raylet,
    dashboard, workers), found by the temp dir given only to it."""
    needle = f"RAY_TMPDIR={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def _wait_for_health(url: str, process: subprocess.Popen, log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < HEALTH_WITHIN_S:
        assert process.poll() is None, f"the launcher exited ({process.returncode}):\n{log.read_text()[-4000:]}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:  # not listening yet, or the proxy has no route yet
            pass
        time.sleep(0.25)
    raise AssertionError(f"/health did not answer within {HEALTH_WITHIN_S}s:\n{log.read_text()[-4000:]}")


def test_make_serve_comes_up_says_why_it_cannot_speak_and_stops_cleanly(tmp_path):
    # Short: Ray's unix sockets live under it, and their paths may not exceed 107 characters.
    ray_tmp = tempfile.mkdtemp(prefix="ms-", dir="/tmp")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PORT=str(port), RAY_TMPDIR=ray_tmp, HF_HOME=str(tmp_path / "hf"), PYTHONUNBUFFERED="1",
               HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_ETAG_TIMEOUT="3", HF_HUB_DOWNLOAD_TIMEOUT="3")
    log = tmp_path / "make-serve.log"
    url = f"http://127.0.0.1:{port}"
    # Its own process group, like a terminal's foreground job: Ctrl-C reaches the launcher and
    # every Ray process it started, and that is what the stop below sends.
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "serve_app.run", "serve_config.yaml"], cwd=REPO,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        up_after = _wait_for_health(url, process, log)
        print(f"/health answered after {up_after:.1f}s")
        deadline = time.monotonic() + 60  # the URL line: once every replica is up
        while f"is up: {url}/" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.25)

        # The prefetch found no hub: one line naming the setting, no traceback, and it started anyway.
        said = log.read_text()
        assert f"WARNING: Cannot prefetch model 'default' (`model_repo` '{REPO_ID}'): " in said, said[-4000:]
        assert "cannot be reached" in said and "Traceback" not in said

        page = httpx.get(f"{url}/", timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

        # The worker replicas (one per model: TTS and STT, on CPU here) report "unloaded": the
        # state in which /ready used to say ready after a failed load, until the replica's next report.
        wait_for_replicas(url, 2)
        tts = httpx.post(f"{url}/api/tts", json={"text": "Hello."}, timeout=120)
        assert tts.status_code == 503, tts.text
        assert REPO_ID in tts.json()["error"]["message"] and tts.headers.get("retry-after")

        # At once, without waiting for the replica's next status report: this used to say ready.
        ready = httpx.get(f"{url}/ready", timeout=30)
        assert ready.status_code == 503, ready.text
        assert ready.json()["ready"] is False and REPO_ID in ready.json()["reason"]

        assert _ray_processes(ray_tmp), "the leftover check below would find nothing"
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=STOP_WITHIN_S) == 0, log.read_text()[-4000:]
        deadline = time.monotonic() + 20  # the raylet reaps its workers a moment after it is told
        while (left := _ray_processes(ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"Ray processes left behind: {left}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in _ray_processes(ray_tmp):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
