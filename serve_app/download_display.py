"""Hub downloads shown in the launcher's terminal: a tqdm bar per download (bytes, rate, time left)
when the stream is a terminal, else one plain line every few seconds, so that a log stays readable.

It reads the `Downloads` the hub fetcher reports to (deployments/engine/download_progress.py: the
bytes on disk against the sizes the hub announced), from a thread of its own while the fetcher
works; downloads run one after the other, so one is shown at a time.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import TextIO

from deployments.engine.download_progress import DownloadProgress, Downloads, describe, format_size

POLL_S = 0.25
LINE_EVERY_S = 5.0  # without a terminal: a line per download this often, plus its first and last


class DownloadDisplay:
    """`with DownloadDisplay(downloads, stream):` shows the downloads that run inside the block."""

    def __init__(self, downloads: Downloads, stream: TextIO, line_every_s: float | None = None,
                 poll_s: float | None = None):
        self._downloads = downloads
        self._stream = stream
        self._terminal = bool(getattr(stream, "isatty", lambda: False)())
        self._line_every_s = LINE_EVERY_S if line_every_s is None else line_every_s
        self._poll_s = POLL_S if poll_s is None else poll_s
        self._shown: DownloadProgress | None = None
        # Every download is shown, one after the other: those begun and not shown yet wait here
        # (one that began and ended between two looks gets its first and last lines).
        self._seen, _ = downloads.history(after=sys.maxsize)
        self._unshown: collections.deque[DownloadProgress] = collections.deque(downloads.running())
        self._bar = None
        self._last_line = 0.0
        self._lock = threading.Lock()  # the drawing thread and sync()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-display", daemon=True)

    def __enter__(self) -> "DownloadDisplay":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._draw()  # the last download's final figures
            if self._shown is not None:
                self._end()

    def sync(self) -> None:
        """Draws the downloads as they are now (a download that ended, ended): before the caller
        prints a line of its own."""
        self._refresh()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            self._draw()

    def _draw(self) -> None:
        # The history before the running list: a download that begins in between is seen next time.
        self._seen, begun = self._downloads.history(after=self._seen)
        self._unshown.extend(begun)
        running = self._downloads.running()
        if self._shown is not None and self._shown not in running:
            self._end()
        while self._shown is None and self._unshown:
            self._begin(self._unshown.popleft())
            if self._shown not in running:  # over already
                self._end()
        if self._shown is not None:
            self._update()

    def _begin(self, progress: DownloadProgress) -> None:
        self._shown = progress
        snapshot = progress.snapshot()
        if self._terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=snapshot["bytes_total"], initial=snapshot["bytes_done"], desc=_label(progress),
                             unit="B", unit_scale=True, file=self._stream, dynamic_ncols=True, mininterval=0.5)
        else:
            total = f", {format_size(snapshot['bytes_total'])}" if snapshot["bytes_total"] else ""
            self._line(f"Downloading {_label(progress)}{total}")

    def _update(self) -> None:
        snapshot = self._shown.snapshot()
        if self._bar is not None:
            self._bar.update(snapshot["bytes_done"] - self._bar.n)
        elif time.monotonic() - self._last_line >= self._line_every_s:
            self._line(f"  {describe(snapshot)}")

    def _end(self) -> None:
        self._update()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            snapshot = self._shown.snapshot()
            whole = snapshot["files_done"] == snapshot["files_total"]
            self._line(f"  {describe(snapshot)}: {'done' if whole else 'stopped'}")
        self._shown = None

    def _line(self, text: str) -> None:
        print(text, file=self._stream, flush=True)
        self._last_line = time.monotonic()


def _label(progress: DownloadProgress) -> str:
    names = [f.name for f in progress.files]
    return f"{progress.repo} ({len(names)} files)" if len(names) > 1 else f"{progress.repo} {names[0].rsplit('/', 1)[-1]}"
