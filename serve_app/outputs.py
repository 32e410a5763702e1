"""Saved audio files under the outputs directory, served back by name only (no paths)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

_NAME_RE = re.compile(r"^[0-9a-f]{32}\.(wav|mp3|ogg|aac|flac|pcm)$")


class OutputStore:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def save(self, data: bytes, extension: str) -> str:
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
