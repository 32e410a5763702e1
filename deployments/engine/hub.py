"""Access to the Hugging Face hub with bounded waits, downloads whose progress can be read and
whose stalls fail, and errors that tell the user what to do."""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .download_progress import DOWNLOADS, DownloadProgress, Downloads, PlannedFile, describe

log = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """The model (or a file it needs) cannot be fetched or loaded. The message is what clients
    read (what they, or the operator, can do: no server paths, no exception text); `detail` is the
    whole story (paths, the cause), for the worker's log only."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail or message


def public_hub_error(repo: str) -> str:
    """What a client reads when `repo` cannot be fetched (the cause is in the worker's log)."""
    return (f"'{repo}' cannot be fetched from the Hugging Face hub; retry later. If it persists, the "
            f"operator must fix the model setting: point `model_path` at a local checkpoint, or fill the "
            f"Hugging Face cache (`huggingface-cli download {repo}`) and set HF_HUB_OFFLINE=1, or check "
            f"the repo id and that the hub is reachable from every GPU node (details in the worker's log).")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT  # read by huggingface_hub from HF_ENDPOINT when it is imported


def how_to_fix(repo: str) -> str:
    return (
        f"To fix: point `model_path` at a local checkpoint directory; or fill the Hugging Face "
        f"cache on this machine first (`huggingface-cli download {repo}`) and set HF_HUB_OFFLINE=1; "
        f"or check that the repo id is right and the hub ({_endpoint()}) "
        f"is reachable from every GPU node.")


def describe_hub_error(repo: str, exc: BaseException) -> str:
    reason = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        reason = "no space left on the device holding the Hugging Face cache"
    return f"cannot fetch '{repo}' from the Hugging Face hub ({reason}). {how_to_fix(repo)}"


# huggingface_hub reads DOWNLOAD_CHUNK_SIZE bytes per read (10 MiB) and urllib3 blocks until a
# read is full, so the `.incomplete` file grew in 10 MiB steps: a small file showed 0% until done,
# and below ~170 kB/s one step outlasts the stall bound. With 256 KiB reads the file grows every
# 256 KiB and the download is no slower (measured on localhost against tests/helpers/hub_server.py,
# 200 MB: 220 MB/s with 10 MiB reads, 560 MB/s with 256 KiB). A resumed download re-fetches the
# part of a read that a cut connection lost: at most one read (measured: cut at 300000 bytes, the
# partial file held 262144, the resume asked for `bytes=262144-`).
READ_CHUNK_BYTES = 256 * 1024
POLL_S = 0.25  # how often a download's bytes on disk are measured


def _tune_client() -> bool:
    """Sets huggingface_hub up for downloads we can measure and bound; True when Xet is in use.

    Xet (the hub's chunked storage, used whenever `hf_xet` is installed: huggingface_hub >= 0.32
    installs it) is turned off unless HF_HUB_DISABLE_XET is set in the environment: the files then
    come over plain HTTP (the hub's "LFS bridge" serves Xet-backed files to clients without Xet),
    the path the tests run, whose `.incomplete` file grows as bytes arrive and is resumed with a
    Range request. Xet assembles files from its own chunk cache, so neither the progress nor the
    stall bound here could be trusted with it: with HF_HUB_DISABLE_XET=0 the stall bound is off.
    Both constants are read by huggingface_hub at call time.
    """
    from huggingface_hub import constants

    constants.DOWNLOAD_CHUNK_SIZE = READ_CHUNK_BYTES
    if "HF_HUB_DISABLE_XET" not in os.environ:
        constants.HF_HUB_DISABLE_XET = True
    return not constants.HF_HUB_DISABLE_XET and importlib.util.find_spec("hf_xet") is not None


class HubFetcher:
    """Fetches files of one repo, failing fast when the hub is unreachable and failing (not hanging)
    when a download stalls; a download's progress is in `downloads` while it runs.

    huggingface_hub retries a refused or timed-out connection 5 times with back-off (~23 s per
    file, minutes with several files), and then moshi takes a missing config.json for a legacy
    Moshi repo and tries yet another file. So each file is asked for ONCE with a single request
    bounded by `timeout_s` (which also gives its size and its place in the cache): when the hub
    does not answer, files come from the local HF cache only. A download that puts no byte on disk
    for `stall_s` fails with an error saying so; the next attempt resumes its `.incomplete` file.
    """

    def __init__(self, repo: str, timeout_s: float = 20.0, stall_s: float = 60.0,
                 downloads: Downloads = DOWNLOADS):
        self.repo = repo
        self.timeout_s = timeout_s
        self.stall_s = stall_s
        self._downloads = downloads
        self._cache_only: bool | None = None
        self._unreachable_reason = ""

    def fetch(self, filename: str) -> Path:
        return self.fetch_all([filename])[filename]

    def fetch_all(self, filenames: list[str]) -> dict[str, Path]:
        """The files, downloaded one after the other where the cache lacks them."""
        xet = _tune_client()
        plan = self._plan(filenames)
        if plan is None:
            return {name: self._from_cache(name) for name in filenames}
        progress = DownloadProgress(self.repo, plan)
        if not progress.needs_download():
            return {name: self._download(name, progress, None if xet else self.stall_s) for name in filenames}
        started = time.monotonic()
        log.info("downloading from the hub: %s (%s)", describe(progress.snapshot()), ", ".join(filenames))
        with self._downloads.tracking(progress):
            paths = {name: self._download(name, progress, None if xet else self.stall_s) for name in filenames}
        log.info("downloaded %s in %.1fs", describe(progress.snapshot()), time.monotonic() - started)
        return paths

    def _plan(self, filenames: list[str]) -> list[PlannedFile] | None:
        """Each file's size and place in the cache, from the hub; None when it does not answer."""
        if self._cache_only:
            return None
        plan = []
        for name in filenames:
            response = self._head(name)
            if response is None:
                self._cache_only = True
                return None
            plan.append(self._planned(name, response))
        self._cache_only = False
        return plan

    def _from_cache(self, filename: str) -> Path:
        from huggingface_hub import hf_hub_download

        with self._errors_explained(filename):
            return Path(hf_hub_download(self.repo, filename, local_files_only=True))

    def _download(self, filename: str, progress: DownloadProgress, stall_s: float | None) -> Path:
        from huggingface_hub import hf_hub_download

        progress.begin(filename)
        with self._errors_explained(filename):
            path = self._watched(lambda: hf_hub_download(self.repo, filename, etag_timeout=self.timeout_s,
                                                         endpoint=_endpoint()), filename, progress, stall_s)
        progress.finish(filename)
        return Path(path)

    def _watched(self, download: Callable[[], str], filename: str, progress: DownloadProgress,
                 stall_s: float | None) -> str:
        """Runs `download` on a helper thread and gives up once no byte has reached the disk for
        `stall_s`. A Python thread cannot be stopped: the helper ends by itself, when
        huggingface_hub's read timeout gives up on the silent connection (HF_HUB_DOWNLOAD_TIMEOUT,
        10 s, tried 6 times: ~66 s; measured 17 s with it set to 2), or it finishes the file."""
        if stall_s is None:
            return download()
        outcome: dict = {}
        finished = threading.Event()

        def run() -> None:
            try:
                outcome["path"] = download()
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc
            finally:
                finished.set()

        threading.Thread(target=run, name="hub-download", daemon=True).start()
        while not finished.wait(POLL_S):
            progress.measure()
            if progress.idle_s() >= stall_s:
                snapshot = progress.snapshot()
                raise ModelUnavailableError(public_stall_error(self.repo, stall_s, snapshot), detail=(
                    f"downloading '{filename}' of '{self.repo}' from {_endpoint()} stalled: no data for "
                    f"{stall_s:g}s at {snapshot['bytes_done']} of {snapshot['bytes_total']} bytes. "
                    f"{how_to_fix(self.repo)}"))
        if "error" in outcome:
            raise outcome["error"]
        return outcome["path"]

    @contextlib.contextmanager
    def _errors_explained(self, filename: str) -> Iterator[None]:
        try:
            yield
        except ModelUnavailableError:
            raise
        except Exception as exc:
            if self._cache_only and _is_missing_locally(exc):
                raise ModelUnavailableError(public_hub_error(self.repo), detail=(
                    f"cannot fetch '{self.repo}': {self._unreachable_reason}, and '{filename}' is not "
                    f"in the local Hugging Face cache. {how_to_fix(self.repo)}")) from exc
            raise ModelUnavailableError(public_hub_error(self.repo), describe_hub_error(self.repo, exc)) from exc

    def _head(self, filename: str):
        """The hub's answer for this file, or None when it does not answer; raises when it says
        the repo/file is not there."""
        from huggingface_hub import constants, hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        if constants.HF_HUB_OFFLINE:
            self._unreachable_reason = "HF_HUB_OFFLINE is set"
            return None
        headers = {**build_hf_headers(), "Accept-Encoding": "identity"}  # the file's real size
        try:
            response = get_session().head(hf_hub_url(self.repo, filename, endpoint=_endpoint()), headers=headers,
                                          timeout=self.timeout_s, allow_redirects=False)
        except Exception as exc:  # refused, timed out, DNS failure, proxy error...
            self._unreachable_reason = (f"the hub at {_endpoint()} cannot be reached "
                                        f"({exc.__class__.__name__}, timeout {self.timeout_s:g}s)")
            return None
        if response.status_code >= 500:
            self._unreachable_reason = f"the hub at {_endpoint()} answered HTTP {response.status_code}"
            return None
        try:
            hf_raise_for_status(response)
        except Exception as exc:  # unknown repo, gated repo, missing file: no point in retrying
            raise ModelUnavailableError(public_hub_error(self.repo), describe_hub_error(self.repo, exc)) from exc
        return response

    def _planned(self, filename: str, response) -> PlannedFile:
        """Size and blob as huggingface_hub reads them: an LFS file's answer is a redirect to its
        CDN whose `X-Linked-*` headers describe the file (its own would describe the redirect)."""
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        direct = response.status_code == 200
        size = response.headers.get("X-Linked-Size") or (response.headers.get("Content-Length") if direct else None)
        etag = response.headers.get("X-Linked-Etag") or (response.headers.get("ETag") if direct else None)
        blob = None
        if etag:
            etag = etag.removeprefix("W/").strip('"')
            blob = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=self.repo, repo_type="model") / "blobs" / etag
        return PlannedFile(filename, int(size) if size and size.isdigit() else None, blob)


def public_stall_error(repo: str, stall_s: float, download: dict) -> str:
    """What a client reads when a download of `repo` stopped receiving data."""
    return (f"downloading '{repo}' from the Hugging Face hub stalled: no data for {stall_s:g} s "
            f"({describe(download)}). Retry: the next request resumes the download where it stopped. If "
            f"it persists, the operator must check that the hub is reachable from every GPU node, or fill "
            f"the Hugging Face cache (`huggingface-cli download {repo}`) and set HF_HUB_OFFLINE=1 "
            f"(details in the worker's log).")


def _is_missing_locally(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(exc, LocalEntryNotFoundError)


def download_file(repo: str, filename: str, timeout_s: float = 20.0, stall_s: float = 60.0) -> Path:
    return HubFetcher(repo, timeout_s, stall_s).fetch(filename)


def list_repo_files(repo: str, timeout_s: float = 20.0) -> list[str]:
    """The repo's files, from the hub; raises if it does not answer within `timeout_s`, or at
    once with HF_HUB_OFFLINE set (the callers then read the cache)."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise ConnectionError("HF_HUB_OFFLINE is set")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(HfApi(endpoint=_endpoint()).list_repo_files, repo).result(timeout=timeout_s)
    finally:
        pool.shutdown(wait=False)


def cached_repo_files(repo: str) -> list[str]:
    """Files of `repo` present in the local HF cache (newest snapshot), or [] when none."""
    from huggingface_hub import snapshot_download

    try:
        root = Path(snapshot_download(repo, local_files_only=True))
    except Exception:
        return []
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
