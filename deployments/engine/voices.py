"""Voice catalog: which voices a request may name, and where their embedding files are.

A voice is named by its path inside a voice collection without the model suffix, exactly as in
Kyutai's `kyutai/tts-voices` repo, e.g. `expresso/ex03-ex01_happy_001_channel1_334s.wav`; the file
is `<name>.<sig>@<epoch>.safetensors`. Names come from two places only: configured local voice
directories and the configured voice repo. Anything else (absolute paths, `..`, symlinks leading
out of a voice directory, unknown names) is refused with a `VoiceError`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..protocol import VOICE_EMBEDDING_SHAPE, VOICE_EMBEDDING_SIZE

log = logging.getLogger(__name__)

# `.<signature>@<epoch>.safetensors`, e.g. `.1e68beda@240.safetensors`.
# Voice prompts of the cloning model: audio files moshi reads (through sphn).
CLIP_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg")
MODEL_SUFFIX_RE = re.compile(r"\.[0-9a-zA-Z]+@\d+\.safetensors$")
MAX_NAME_LEN = 256
# Letters/digits of any script, and . _ - / and spaces inside names; no other punctuation.
_NAME_CHARS_RE = re.compile(r"[\w][\w .\-/]*", re.UNICODE)

# Top-level folders of kyutai/tts-voices and the language of their speakers, where known.
FOLDER_LANGUAGES = {
    "alba-mackenna": "en",
    "cml-tts": "fr",
    "ears": "en",
    "expresso": "en",
    "vctk": "en",
    "unmute-prod-website": "en",
}


class VoiceError(ValueError):
    """The voice name is refused or unknown. The message is safe to show to the caller."""


_EMBEDDING_VALUE_LIMIT = 1e4  # real embeddings are O(1); anything huge is not a voice


def validate_voice_embedding(values: object, shape: object) -> np.ndarray:
    """A client-sent embedding as float32 VOICE_EMBEDDING_SHAPE, or VoiceError saying what is wrong."""
    if not isinstance(shape, (list, tuple)) or list(shape) != list(VOICE_EMBEDDING_SHAPE):
        raise VoiceError(f"voice embedding shape must be {list(VOICE_EMBEDDING_SHAPE)}")
    if not isinstance(values, (list, tuple)) or len(values) != VOICE_EMBEDDING_SIZE:
        raise VoiceError(f"voice embedding must hold {VOICE_EMBEDDING_SIZE} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise VoiceError("voice embedding must hold numbers only")
    array = np.asarray(values, dtype=np.float32)
    if not np.isfinite(array).all() or np.abs(array).max() > _EMBEDDING_VALUE_LIMIT:
        raise VoiceError("voice embedding values must be finite and of a voice's magnitude")
    return array.reshape(VOICE_EMBEDDING_SHAPE)


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    group: str | None
    language: str | None
    source: str  # "local" or "repo"

    def to_dict(self) -> dict:
        return asdict(self)


def validate_voice_name(name: object) -> str:
    """Checks the *shape* of a voice name and returns it normalised (suffix removed)."""
    if not isinstance(name, str):
        raise VoiceError("voice must be a string")
    name = unicodedata.normalize("NFC", name.strip())
    name = MODEL_SUFFIX_RE.sub("", name)
    if not name:
        raise VoiceError("voice must not be empty")
    if len(name) > MAX_NAME_LEN:
        raise VoiceError(f"voice name is longer than {MAX_NAME_LEN} characters")
    if name.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise VoiceError("voice must be a voice name, not an absolute path")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise VoiceError("voice name must not contain '..', '.' or empty path segments")
    if not _NAME_CHARS_RE.fullmatch(name):
        raise VoiceError("voice name contains characters that are not allowed")
    return name


def voice_info(voice_id: str, source: str) -> VoiceInfo:
    group = voice_id.split("/", 1)[0] if "/" in voice_id else None
    return VoiceInfo(id=voice_id, group=group, language=FOLDER_LANGUAGES.get(group or ""), source=source)


def _strip_suffix(relative: str) -> str | None:
    return MODEL_SUFFIX_RE.sub("", relative) if MODEL_SUFFIX_RE.search(relative) else None


class VoiceCatalog:
    """Lists and resolves voices from local directories and an optional Hugging Face repo.

    `suffix` is the model's `.<sig>@<epoch>.safetensors`; with `None` (the ingress, which does not
    load the model) any model suffix is listed. `clips`: the voices are audio clips (the cloning
    model's prompts, `.wav` files of `kyutai/tts-voices`), named by their path, suffix included.
    """

    REPO_LISTING_TTL_S = 300.0

    def __init__(self, voice_dirs: list[str | Path], voice_repo: str | None = None,
                 suffix: str | None = None, hub_timeout_s: float = 20.0, hub_stall_s: float = 60.0,
                 clips: bool = False):
        self.clips = clips
        self.voice_dirs = [Path(d).expanduser() for d in voice_dirs]
        self.voice_repo = voice_repo
        self.suffix = suffix
        self.hub_timeout_s = hub_timeout_s
        self.hub_stall_s = hub_stall_s
        self._repo_files: list[str] | None = None
        # Why the voice repo could not be listed last time (None when it could).
        self.repo_error: str | None = None
        self._repo_listed_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    # ---- listing -------------------------------------------------------------------------
    def list_voices(self) -> list[VoiceInfo]:
        seen: dict[str, VoiceInfo] = {}
        for directory in self.voice_dirs:
            for relative in self._local_files(directory):
                voice_id = self._id_of(relative)
                if voice_id and voice_id not in seen:
                    seen[voice_id] = voice_info(voice_id, "local")
        for relative in self._repo_listing():
            voice_id = self._id_of(relative)
            if voice_id and voice_id not in seen:
                seen[voice_id] = voice_info(voice_id, "repo")
        return sorted(seen.values(), key=lambda v: v.id)

    def _id_of(self, relative: str) -> str | None:
        return relative if self.clips else _strip_suffix(relative)

    def _matches_suffix(self, filename: str) -> bool:
        if self.clips:
            return filename.lower().endswith(CLIP_EXTENSIONS)
        return filename.endswith(self.suffix) if self.suffix else bool(MODEL_SUFFIX_RE.search(filename))

    def _local_files(self, directory: Path) -> list[str]:
        if not directory.is_dir():
            return []
        root = directory.resolve()
        files = []
        for path in directory.rglob("*" if self.clips else "*.safetensors"):
            # Symlinks pointing outside the directory are neither listed nor resolvable.
            if path.is_file() and path.resolve().is_relative_to(root) and self._matches_suffix(path.name):
                files.append(path.relative_to(directory).as_posix())
        return files

    def _repo_listing(self) -> list[str]:
        """Files of the voice repo: from the hub when reachable, else from the local HF cache.
        Only the first listing is waited for; a stale one is served while a background thread
        refreshes it, so no caller (the generation thread included) waits on the hub again."""
        if not self.voice_repo:
            return []
        with self._lock:
            if self._repo_files is None:
                self._store_listing(self._list_repo_files())
            elif time.monotonic() - self._repo_listed_at >= self.REPO_LISTING_TTL_S and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh_listing, name="voice-repo-listing", daemon=True).start()
            return self._repo_files

    def _store_listing(self, files: list[str]) -> None:
        self._repo_files = [f for f in files if self._matches_suffix(f)]
        self._repo_listed_at = time.monotonic()

    def _refresh_listing(self) -> None:
        try:
            files = self._list_repo_files()  # the slow part, without the lock
            with self._lock:
                self._store_listing(files)
        finally:
            self._refreshing = False

    def _list_repo_files(self) -> list[str]:
        from .hub import cached_repo_files, list_repo_files

        try:
            files = list_repo_files(self.voice_repo, timeout_s=self.hub_timeout_s)
            self.repo_error = None
            return files
        except Exception as exc:  # offline, unknown repo, ...: fall back to what is cached
            cached = cached_repo_files(self.voice_repo)
            self.repo_error = (f"voice repo {self.voice_repo} is unreachable; "
                               f"{len(cached)} voice files found in the local Hugging Face cache")
            log.warning("cannot list voice repo %s (%s: %s); %d cached voice files", self.voice_repo,
                        exc.__class__.__name__, str(exc)[:300], len(cached))
            return cached

    # ---- resolution ----------------------------------------------------------------------
    def resolve(self, name: object) -> Path:
        """Path of the voice's embedding file. Raises VoiceError when refused or unknown."""
        voice_id = validate_voice_name(name)
        for directory in self.voice_dirs:
            path = self._resolve_local(directory, voice_id)
            if path is not None:
                return path
        if self.voice_repo and (self.suffix or self.clips):
            filename = voice_id if self.clips else voice_id + self.suffix
            if filename in self._repo_listing():
                from .hub import download_file

                return download_file(self.voice_repo, filename, timeout_s=self.hub_timeout_s,
                                     stall_s=self.hub_stall_s)
        raise VoiceError(f"unknown voice '{voice_id}': GET /api/voices lists the available voices")

    def _resolve_local(self, directory: Path, voice_id: str) -> Path | None:
        if not directory.is_dir():
            return None
        root = directory.resolve()
        if self.clips:
            candidates = [directory / voice_id] if self._matches_suffix(voice_id) else []
        elif self.suffix:
            candidates = [directory / (voice_id + self.suffix)]
        else:
            candidates = [directory / relative for relative in self._local_files(directory)
                          if _strip_suffix(relative) == voice_id]
        for candidate in candidates:
            if not candidate.is_file():
                continue
            resolved = candidate.resolve()
            if not resolved.is_relative_to(root):
                raise VoiceError(f"voice '{voice_id}' points outside its voice directory")
            return resolved
        return None
