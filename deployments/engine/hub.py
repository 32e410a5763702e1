"""Access to the Hugging Face hub with bounded waits and errors that tell the user what to do."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path


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


class HubFetcher:
    """Fetches files of one repo, failing fast when the hub is unreachable.

    huggingface_hub retries a refused or timed-out connection 5 times with back-off (~23 s per
    file, minutes with several files), and then moshi takes a missing config.json for a legacy
    Moshi repo and tries yet another file. So the hub is probed ONCE, with a single request
    bounded by `timeout_s`: when it does not answer, files come from the local HF cache only.
    """

    def __init__(self, repo: str, timeout_s: float = 20.0):
        self.repo = repo
        self.timeout_s = timeout_s
        self._cache_only: bool | None = None
        self._unreachable_reason = ""

    def fetch(self, filename: str) -> Path:
        from huggingface_hub import hf_hub_download

        if self._cache_only is None:
            self._cache_only = not self._probe(filename)
        try:
            if self._cache_only:
                return Path(hf_hub_download(self.repo, filename, local_files_only=True))
            return Path(hf_hub_download(self.repo, filename, etag_timeout=self.timeout_s))
        except ModelUnavailableError:
            raise
        except Exception as exc:
            if self._cache_only and _is_missing_locally(exc):
                raise ModelUnavailableError(public_hub_error(self.repo), detail=(
                    f"cannot fetch '{self.repo}': {self._unreachable_reason}, and '{filename}' is not "
                    f"in the local Hugging Face cache. {how_to_fix(self.repo)}")) from exc
            raise ModelUnavailableError(public_hub_error(self.repo), describe_hub_error(self.repo, exc)) from exc

    def _probe(self, filename: str) -> bool:
        """True when the hub answers for this file; raises when it says the repo/file is not there."""
        from huggingface_hub import constants, hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        if constants.HF_HUB_OFFLINE:
            self._unreachable_reason = "HF_HUB_OFFLINE is set"
            return False
        try:
            response = get_session().head(hf_hub_url(self.repo, filename), headers=build_hf_headers(),
                                          timeout=self.timeout_s, allow_redirects=False)
        except Exception as exc:  # refused, timed out, DNS failure, proxy error...
            self._unreachable_reason = (f"the hub at {_endpoint()} cannot be reached "
                                        f"({exc.__class__.__name__}, timeout {self.timeout_s:g}s)")
            return False
        if response.status_code >= 500:
            self._unreachable_reason = f"the hub at {_endpoint()} answered HTTP {response.status_code}"
            return False
        try:
            hf_raise_for_status(response)
        except Exception as exc:  # unknown repo, gated repo, missing file: no point in retrying
            raise ModelUnavailableError(public_hub_error(self.repo), describe_hub_error(self.repo, exc)) from exc
        return True


def _is_missing_locally(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(exc, LocalEntryNotFoundError)


def download_file(repo: str, filename: str, timeout_s: float = 20.0) -> Path:
    return HubFetcher(repo, timeout_s).fetch(filename)


def list_repo_files(repo: str, timeout_s: float = 20.0) -> list[str]:
    """The repo's files, from the hub; raises if it does not answer within `timeout_s`."""
    from huggingface_hub import HfApi

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(HfApi().list_repo_files, repo).result(timeout=timeout_s)
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
