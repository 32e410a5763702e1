"""Fixtures for tests that run the hub's protocol (tests/engine/test_hub_downloads.py, test_prefetch.py):
imported by those modules."""

from __future__ import annotations

import pytest

from helpers.hub_server import HubServer, kyutai_repos, use_test_hub


@pytest.fixture
def hub(tiny_checkpoint):
    """The tiny checkpoint served as `kyutai/tts-1.6b-en_fr` and its voices as `kyutai/tts-voices`."""
    with HubServer(kyutai_repos(tiny_checkpoint)) as server:
        yield server


@pytest.fixture
def hf_home(tmp_path, hub, monkeypatch):
    """This process's huggingface_hub pointed at the test hub and an empty cache."""
    return use_test_hub(monkeypatch, hub, tmp_path / "hf-home")
