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
