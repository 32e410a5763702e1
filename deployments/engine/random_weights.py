"""Whether a checkpoint is one of the project's random-weight test models (deployments/checkpoint.py
writes them): their audio is noise, and every surface that names the model says so.

Read as plain JSON, without torch, so the ingress can ask too."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_NAME = "config.json"


def random_weights_marker(config: dict | str | Path) -> dict | None:
    """The `model_id.test_model` marker of a config (a dict, a config.json path or a checkpoint
    folder), or None for a real checkpoint. Raises OSError / ValueError for an unreadable file."""
    if not isinstance(config, dict):
        path = Path(config)
        if path.is_dir():
            path = path / CONFIG_NAME
        config = json.loads(path.read_text())
    marker = (config.get("model_id") or {}).get("test_model")
    return marker if isinstance(marker, dict) else None


def is_random_weights_checkpoint(folder: str | Path) -> bool:
    """True when the checkpoint folder's config carries the marker; False for a real checkpoint
    and for a folder without a readable config (the worker reports that one)."""
    try:
        return random_weights_marker(Path(folder)) is not None
    except (OSError, ValueError):
        return False
