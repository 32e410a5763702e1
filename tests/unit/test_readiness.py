"""Readiness from replica reports (WorkerClient.model_error), without a cluster."""

from __future__ import annotations

from serve_app.service.worker_client import WorkerClient


def test_ready_trusts_only_reports_made_since_the_last_outcome_seen():
    """Replicas report every second: a report from before a request's outcome must not override it."""
    workers = WorkerClient(handle=None, app_name="unit")
    unloaded = {"reported_s_ago": 0.5, "model": {"state": "unloaded", "error": None}}
    assert workers.model_error([unloaded]) is None  # never failed: a request would load it
    workers.note_outcome("cannot fetch 'org/model'")
    assert workers.model_error([unloaded]) == "cannot fetch 'org/model'"  # the report predates it
    assert workers.model_error([]) == "cannot fetch 'org/model'"  # scaled to zero: still true
    failed = {"reported_s_ago": 0.0, "model": {"state": "failed", "error": "disk full"}}
    assert workers.model_error([failed]) == "disk full"  # a report since: it knows best
    workers.note_outcome(None)
    stale_failed = {"reported_s_ago": 0.5, "model": {"state": "failed", "error": "disk full"}}
    assert workers.model_error([stale_failed]) is None  # it spoke since that report
    workers.note_outcome("cannot fetch 'org/model'")
    loaded = {"reported_s_ago": 0.0, "model": {"state": "offloaded", "error": None}}
    assert workers.model_error([failed, loaded]) is None and workers.last_model_error is None


def test_ready_says_no_with_the_progress_while_a_first_download_runs():
    from serve_app.service.status import first_download

    download = {"repo": "kyutai/tts-1.6b-en_fr", "file": "dsm_tts_1e68beda@240.safetensors", "files_done": 0,
                "files_total": 3, "bytes_done": 1_554_000_000, "bytes_total": 3_700_000_000,
                "rate_bps": 35_000_000, "eta_s": 61.3}
    loading = {"model": {"state": "loading", "download": download}}
    assert first_download([loading]) == ("downloading the model: kyutai/tts-1.6b-en_fr: 42% of 3.7 GB "
                                         "at 35.0 MB/s, about 61 s left")
    # A replica that has the model serves meanwhile (another one may download a voice).
    assert first_download([loading, {"model": {"state": "offloaded", "download": None}}]) is None
    assert first_download([{"model": {"state": "loading", "download": None}}]) is None  # loading from the cache
    assert first_download([]) is None
    unknown_size = {**download, "bytes_total": None, "rate_bps": None, "eta_s": None}
    assert first_download([{"model": {"state": "loading", "download": unknown_size}}]) == \
        "downloading the model: kyutai/tts-1.6b-en_fr: 1.6 GB"
