"""Access to the Hugging Face hub with bounded waits and errors that tell the user what to do."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path


class ModelUnavailableError(RuntimeError):
    """The model (or a file it needs) cannot be fetched. The message says how to fix it."""


def how_to_fix(repo: str) -> str:
    return (
        f"To fix: point `model_path` at a local checkpoint directory; or fill the Hugging Face "
        f"cache on this machine first (`huggingface-cli download {repo}`) and set HF_HUB_OFFLINE=1; "
        f"or check that the repo id is right and the hub ({os.environ.get('HF_ENDPOINT', 'huggingface.co')}) "
        f"is reachable from every GPU node.")


def describe_hub_error(repo: str, exc: BaseException) -> str:
    reason = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        reason = "no space left on the device holding the Hugging Face cache"
    return f"cannot fetch '{repo}' from the Hugging Face hub ({reason}). {how_to_fix(repo)}"


def download_file(repo: str, filename: str, timeout_s: float = 20.0) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, etag_timeout=timeout_s))
    except Exception as exc:
        raise ModelUnavailableError(describe_hub_error(repo, exc)) from exc


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
