"""Nothing internal reaches clients: a model that cannot load, and Serve's messages, explained
without server paths, exception text or Ray ids (in process; the running app's answers are
tests/serve/test_leaks_served.py)."""

from __future__ import annotations

import pytest
from helpers.leaks import assert_client_safe


def test_a_local_model_that_cannot_load_names_no_path(engine_settings, tmp_path):
    from deployments.engine.hub import ModelUnavailableError
    from deployments.engine.model_manager import ModelManager

    missing = tmp_path / "nowhere" / "model"
    manager = ModelManager(engine_settings.model_copy(update={"model_path": str(missing)}), offload_after_s=None)
    try:
        with pytest.raises(ModelUnavailableError) as info:
            with manager.acquire():
                pass
    finally:
        manager.close()
    assert "model_path" in str(info.value) and "config.json" in str(info.value)
    assert_client_safe(str(info.value))
    assert_client_safe(manager.status()["error"])
    assert str(missing) in info.value.detail  # the operator's version (logged) says where


@pytest.mark.parametrize("message, expected", [
    ("The deployment failed to start 3 times in a row. This may be due to a problem with its constructor "
     "or initial health check failing. See controller logs for details. Error:\nTraceback (most recent call "
     "last):\n  File \"/home/u/app/deployments/worker.py\", line 3\nRuntimeError: boom",
     "The deployment failed to start 3 times in a row. This may be due to a problem with its constructor "
     "or initial health check failing. See controller logs for details."),
    ("A replica failed to start with exception. Retrying 2 more time(s). Error:\nValueError: /tmp/x",
     "A replica failed to start with exception. Retrying 2 more time(s)."),
    ("Upscaling from 0 to 1 replicas.", "Upscaling from 0 to 1 replicas."),
    ("replica 0123456789abcdef0123456789abcdef reads '/srv/models/tts' (see http://host/docs)",
     "replica <id> reads '<path>' (see http://host/docs)"),
    ("", ""), (None, ""),
])
def test_serve_messages_are_cut_to_a_safe_summary(message, expected):
    from serve_app.service.cluster import public_summary

    assert public_summary(message) == expected
    assert len(public_summary("x" * 1000)) == 240
