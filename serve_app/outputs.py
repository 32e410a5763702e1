"""Saved audio files under the outputs directory, served back by name only (no paths)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[0-9a-f]{32}\.(wav|mp3|ogg|aac|flac|pcm)$")


class OutputStore:
    """Files live `max_age_s` seconds (None: forever); older ones are pruned while saving."""

    PRUNE_EVERY_S = 60.0

    def __init__(self, directory: str | Path, max_age_s: float | None = None):
        self.directory = Path(directory)
        self.max_age_s = max_age_s
        self._pruned_at = 0.0

    def prune(self) -> int:
        """Removes saved files older than max_age_s; returns how many."""
        if self.max_age_s is None or not self.directory.is_dir():
            return 0
        cutoff = time.time() - self.max_age_s
        removed = 0
        for path in self.directory.iterdir():
            try:
                if (_NAME_RE.match(path.name) or path.name.endswith(".part")) and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another ingress replica pruned it first
                pass
        if removed:
            log.info("pruned %d output files older than %.0f s", removed, self.max_age_s)
        return removed

    def save(self, data: bytes, extension: str) -> str:
        if time.monotonic() - self._pruned_at > self.PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            self.prune()
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.{extension}"
        temporary = self.directory / f".{name}.part"
        temporary.write_bytes(data)
        temporary.rename(self.directory / name)  # readers never see half a file
        return name

    def path(self, name: str) -> Path | None:
        """The file for a name this store gave out; None for anything else."""
        if not _NAME_RE.match(name):
            return None
        path = self.directory / name
        return path if path.is_file() else None
