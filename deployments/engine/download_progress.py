"""How far a hub download has got: bytes on disk against the sizes the hub announced, the rate and
the time left. The replica's status carries it (so /api/gpu/status, MCP's status tool, the UI's
GPU panel and /ready show it), and the hub fetcher's stall bound reads it.

Measured from the files huggingface_hub writes (`blobs/<etag>.incomplete` in the HF cache, the
layout its documentation describes), not from its progress bars: `hf_hub_download` (0.36) takes no
progress callback, its tqdm bars are internal, and what is on disk is what a resumed download
really has. The file grows by whole read chunks (hub.py sets their size), so the figure lags the
socket by at most one chunk. No torch, no Ray: the ingress imports `describe`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

RATE_WINDOW_S = 10.0  # the rate is the mean over this window: steady, yet it follows a change


@dataclass(frozen=True)
class PlannedFile:
    """One file of a download: its size as the hub announced it and where huggingface_hub puts it."""

    name: str
    size: int | None
    blob: Path | None  # the finished file in the HF cache; `<blob>.incomplete` while it downloads

    def bytes_on_disk(self) -> int:
        if self.blob is None:
            return 0
        for path in (self.blob, self.blob.with_name(self.blob.name + ".incomplete")):
            with contextlib.suppress(OSError):
                return path.stat().st_size
        return 0

    def is_cached(self) -> bool:
        return self.blob is not None and self.blob.is_file()


class DownloadProgress:
    """The files of one repo being fetched, one after the other. `measure()` reads the disk (the
    fetcher calls it while it waits); `snapshot()` reports the last measure (any thread)."""

    def __init__(self, repo: str, files: list[PlannedFile], clock: Callable[[], float] = time.monotonic):
        self.repo = repo
        self.files = files
        self._clock = clock
        self._lock = threading.Lock()
        self._current: str | None = None
        self._finished = {f.name for f in files if f.is_cached()}
        self._bytes = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._last_growth = clock()
        self.measure()

    def needs_download(self) -> bool:
        return len(self._finished) < len(self.files)

    def begin(self, name: str) -> None:
        with self._lock:
            self._current = name

    def finish(self, name: str) -> None:
        with self._lock:
            self._finished.add(name)
        self.measure()

    def measure(self) -> int:
        """Bytes on disk now, across the files; records when they last grew (the stall bound)."""
        done = sum((f.size or f.bytes_on_disk()) if f.name in self._finished else f.bytes_on_disk()
                   for f in self.files)
        now = self._clock()
        with self._lock:
            if done > self._bytes or not self._samples:
                self._last_growth = now
            self._bytes = done
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
                self._samples.popleft()
        return done

    def idle_s(self) -> float:
        """Seconds since the bytes on disk last grew."""
        with self._lock:
            return self._clock() - self._last_growth

    def snapshot(self) -> dict:
        with self._lock:
            sizes = [f.size for f in self.files]
            total = sum(sizes) if None not in sizes else None
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
            rate = (b1 - b0) / (t1 - t0) if t1 - t0 >= 1.0 else None
            eta = (total - self._bytes) / rate if rate and total is not None else None
            return {"repo": self.repo, "file": self._current, "files_done": len(self._finished),
                    "files_total": len(self.files), "bytes_done": self._bytes, "bytes_total": total,
                    "rate_bps": round(rate) if rate is not None else None,
                    "eta_s": round(eta, 1) if eta is not None else None}


# Downloads kept after they end, for a display that looks now and then (history()).
HISTORY_KEPT = 32


class Downloads:
    """The downloads running in this process: the model's, and voices fetched on demand."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: list[DownloadProgress] = []
        self._begun = 0
        self._history: deque[tuple[int, DownloadProgress]] = deque(maxlen=HISTORY_KEPT)

    @contextlib.contextmanager
    def tracking(self, progress: DownloadProgress) -> Iterator[DownloadProgress]:
        with self._lock:
            self._running.append(progress)
            self._begun += 1
            self._history.append((self._begun, progress))
        try:
            yield progress
        finally:
            with self._lock:
                self._running.remove(progress)

    def running(self) -> list[DownloadProgress]:
        """The downloads running now, oldest first."""
        with self._lock:
            return list(self._running)

    def history(self, after: int) -> tuple[int, list[DownloadProgress]]:
        """How many downloads have begun so far, and those that began after the `after`-th (running
        or over, oldest first; the last HISTORY_KEPT at most): a small file can begin and end
        between two looks of a display."""
        with self._lock:
            return self._begun, [progress for number, progress in self._history if number > after]

    def current(self) -> dict | None:
        """The running download with the most bytes left (the one worth waiting for), or None."""
        snapshots = [p.snapshot() for p in self.running()]
        if not snapshots:
            return None
        return max(snapshots, key=lambda s: (s["bytes_total"] or 0) - s["bytes_done"])


DOWNLOADS = Downloads()  # one per process: one model per process, its status reads this


def describe(download: dict) -> str:
    """A snapshot in words, e.g. "kyutai/tts-1.6b-en_fr: 42% of 3.7 GB at 35 MB/s, about 1 min left"."""
    done, total = download.get("bytes_done") or 0, download.get("bytes_total")
    text = (f"{download.get('repo')}: {100 * done // total}% of {format_size(total)}" if total
            else f"{download.get('repo')}: {format_size(done)}")
    if download.get("rate_bps"):
        text += f" at {format_size(download['rate_bps'])}/s"
    if download.get("eta_s"):  # none when unknown, and nothing left to say at 0
        text += f", about {_duration(download['eta_s'])} left"
    return text


def format_size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"
