"""Request ids on the running service: the id a client gives (X-Request-ID) comes back in the
response and in error bodies, and both the ingress's and the worker's log files name it; an
invalid one is refused before any route runs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx


def serve_logs() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve"


def log_files_naming(text: str, timeout_s: float = 20.0) -> set[str]:
    """The deployments ('Ingress', 'TTSWorker') whose replica log files hold `text` (Serve's
    file handlers flush each line; the wait covers a busy machine)."""
    deadline = time.monotonic() + timeout_s
    found: set[str] = set()
    while time.monotonic() < deadline and found != {"Ingress", "TTSWorker"}:
        for path in serve_logs().glob("replica_tts_*.log"):
            if text in path.read_text(errors="replace"):
                found.add("TTSWorker" if "_TTSWorker_" in path.name else "Ingress")
        time.sleep(0.5)
    return found


def test_a_clients_id_comes_back_and_joins_the_ingress_and_worker_logs(client):
    request_id = f"it-{uuid.uuid4().hex}"
    response = client.post("/api/tts", json={"text": "Good morning."}, headers={"X-Request-ID": request_id})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id
    assert log_files_naming(request_id) == {"Ingress", "TTSWorker"}


def test_an_error_body_quotes_the_requests_id(client):
    response = client.post("/api/tts", json={"text": "  "}, headers={"X-Request-ID": "err-1234"})
    assert response.status_code == 422
    assert response.json()["error"]["request_id"] == "err-1234" == response.headers["x-request-id"]
    made = client.post("/api/tts", json={"text": ""})  # no id given: Serve's proxy makes one
    assert made.json()["error"]["request_id"] == made.headers["x-request-id"] != "err-1234"


def test_an_invalid_id_is_refused_with_400(base_url):
    for bad in ("x" * 65, "no spaces", "semi;colon"):
        response = httpx.post(f"{base_url}/api/tts", json={"text": "Hi."}, headers={"X-Request-ID": bad}, timeout=60)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_request_id"
