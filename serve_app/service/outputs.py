"""Saved audio files under the outputs directory, served back by name only (no paths).

Bounded twice: files older than `max_age_s` are pruned, and after each save the oldest files are
deleted until the folder holds at most `max_bytes`. Several ingress replicas may share the folder,
so any file may vanish between listing and use.
"""

from __future__ import annotations

import errno
import logging
import re
import time
import uuid
from pathlib import Path

from ..audio.formats import EXTENSIONS
from ..errors import APIError
from ..protocols.error_shape import Refusal

log = logging.getLogger(__name__)

# How `save` may fail (507), as the OpenAPI document states it.
OUTPUT_TOO_LARGE = Refusal("output_too_large", "save: the file alone is larger than outputs_max_bytes.")
DISK_FULL = Refusal("insufficient_storage", "save: the disk is full (nothing is left half-written).")
OUTPUT_NAME_PATTERN = r"^[0-9a-f]{32}\.(" + "|".join(EXTENSIONS) + ")$"  # the names `save` hands out
_NAME_RE = re.compile(OUTPUT_NAME_PATTERN)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"


class OutputStore:
    """Files live `max_age_s` seconds (None: forever) and take at most `max_bytes` together
    (None: no cap); older ones are pruned while saving."""

    PRUNE_EVERY_S = 60.0

    def __init__(self, directory: str | Path, max_age_s: float | None = None, max_bytes: int | None = None):
        self.directory = Path(directory)
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
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

    def _saved_files(self) -> list[tuple[float, str, int]]:
        """(mtime, name, size) of every saved file, oldest first."""
        files = []
        for path in self.directory.iterdir():
            if not _NAME_RE.match(path.name):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted meanwhile by another replica
                continue
            files.append((stat.st_mtime, path.name, stat.st_size))
        return sorted(files)

    def make_room(self, incoming: int = 0, keep: str | None = None) -> int:
        """Deletes the oldest saved files (never `keep`) until they and `incoming` more bytes fit
        in max_bytes; returns how many were deleted."""
        if self.max_bytes is None or not self.directory.is_dir():
            return 0
        files = self._saved_files()
        total = incoming + sum(size for _, _, size in files)
        removed = 0
        for _, name, size in files:
            if total <= self.max_bytes:
                break
            if name == keep:
                continue
            try:
                (self.directory / name).unlink()
                removed += 1
            except FileNotFoundError:  # another replica made room with it first
                pass
            total -= size
        if removed:
            log.info("deleted %d oldest output files to stay under %d bytes", removed, self.max_bytes)
        return removed

    def save(self, data: bytes, extension: str) -> str:
        """Writes `data` under a new name and returns the name. APIError 507 when the file alone
        exceeds max_bytes or the disk is full (nothing is left behind then)."""
        if self.max_bytes is not None and len(data) > self.max_bytes:
            raise APIError(507, f"the audio file ({_size_text(len(data))}) is larger than the space for saved "
                           f"files ({_size_text(self.max_bytes)}, outputs_max_bytes): ask without saving, "
                           "for a shorter text or a compressed format", code=OUTPUT_TOO_LARGE.code)
        if time.monotonic() - self._pruned_at > self.PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            self.prune()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.make_room(incoming=len(data))
        name = f"{uuid.uuid4().hex}.{extension}"
        temporary = self.directory / f".{name}.part"
        try:
            self._write(temporary, data)
            temporary.rename(self.directory / name)  # readers never see half a file
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            if exc.errno in _DISK_FULL:
                log.error("cannot save an output file in %s: %s", self.directory, exc)
                raise APIError(507, "the server has no space left to save the audio; retry later, or ask "
                               "without saving", code=DISK_FULL.code) from None
            raise
        # Other replicas may have saved meanwhile: trim again, keeping this file.
        self.make_room(keep=name)
        return name

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        with open(path, "wb") as file:
            file.write(data)

    def path(self, name: str) -> Path | None:
        """The file for a name this store gave out; None for anything else."""
        if not _NAME_RE.match(name):
            return None
        path = self.directory / name
        return path if path.is_file() else None
