"""Uploaded voices: clips of a cloning model's users, kept on disk by content, owned by an API key.

Layout of the store directory (setting `voice_store_dir`):
- `clips/<sha256>.f32`: a validated prompt (serve_app/audio/clips.py), float32 mono 24 kHz PCM,
  named by the SHA-256 of its bytes (two owners' identical clips are one file);
- `voices/<hash16>.json`: one voice's record {id, name, model, duration_s, created, owner, consent,
  clip}. `owner` is the SHA-256 of the API key (never the key; `anonymous` without keys).

Ids are `clip:<hash16>`, hash16 the first 16 hex digits of SHA-256(owner, clip): the same clip
uploaded by two keys is two voices, each private. A preset voice is a path of letters, digits and
`._-/ ` (deployments/engine/voices.py refuses `:`), so no id of this form can name a preset.

Every file is written once, atomically (a temporary file in the same folder, then `os.replace`):
a reader sees a whole file or none; two ingress replicas writing the same clip write the same
bytes. Durable across ingress restarts: everything is read back from the directory. No torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from deployments.protocol import SAMPLE_RATE

from ..errors import APIError
from ..protocols.error_shape import Refusal

PREFIX = "clip:"
ANONYMOUS = "anonymous"
NOT_FOUND = Refusal("voice_not_found", "No voice of yours has this id (another key's voices are not visible).",
                    "voice_id")
VOICE_QUOTA = Refusal("voice_quota", "This key holds voice_store_max_voices_per_key voices: delete one first.")
STORE_FULL = Refusal("voice_store_full", "The voice store holds voice_store_max_bytes of clips: delete voices "
                                         "or ask the operator to raise it.")


def owner_of(api_key: str | None) -> str:
    """Who owns an upload: the SHA-256 of its API key (the key itself is never stored)."""
    return hashlib.sha256(api_key.encode()).hexdigest() if api_key else ANONYMOUS


def is_clip_id(voice: str | None) -> bool:
    return isinstance(voice, str) and voice.startswith(PREFIX)


@dataclass(frozen=True)
class StoredVoice:
    id: str
    name: str
    model: str
    duration_s: float
    created: int     # Unix seconds
    owner: str
    consent: str
    clip: str        # SHA-256 of the clip's PCM bytes

    def public(self) -> dict:
        """What its owner is shown (no owner hash, no file name)."""
        return {"id": self.id, "name": self.name, "model": self.model, "duration_s": self.duration_s,
                "created": self.created}


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class VoiceStore:
    """The store directory's voices, with quotas: at most `max_voices_per_key` voices per owner,
    at most `max_bytes` of clips in all. Thread-safe within one process."""

    def __init__(self, directory: str | Path, max_voices_per_key: int, max_bytes: int):
        self.root = Path(directory).expanduser()
        self.clips, self.voices = self.root / "clips", self.root / "voices"
        for folder in (self.clips, self.voices):
            folder.mkdir(parents=True, exist_ok=True)
        self.max_voices_per_key, self.max_bytes = max_voices_per_key, max_bytes
        self._lock = threading.Lock()
        self._pcm = lru_cache(maxsize=16)(self._read_pcm)  # ~1 MB each: the voices in use

    # ---- reading -------------------------------------------------------------------------
    def _records(self) -> list[StoredVoice]:
        records = []
        for path in self.voices.glob("*.json"):
            try:
                records.append(StoredVoice(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # deleted meanwhile, or not a record of ours
        return records

    def list(self, owner: str) -> list[StoredVoice]:
        return sorted((r for r in self._records() if r.owner == owner), key=lambda r: (r.created, r.id))

    def get(self, owner: str, voice_id: str) -> StoredVoice | None:
        """The owner's voice `voice_id`, or None (unknown, or another owner's: the same answer)."""
        if not is_clip_id(voice_id) or not voice_id[len(PREFIX):].isalnum():
            return None
        try:
            record = StoredVoice(**json.loads((self.voices / f"{voice_id[len(PREFIX):]}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return record if record.owner == owner else None

    def pcm(self, record: StoredVoice) -> np.ndarray:
        """The voice's prompt: float32 mono PCM at SAMPLE_RATE (read-only)."""
        return self._pcm(record.clip)

    def _read_pcm(self, clip: str) -> np.ndarray:
        pcm = np.frombuffer((self.clips / f"{clip}.f32").read_bytes(), dtype=np.float32)
        pcm.flags.writeable = False
        return pcm

    def bytes_used(self) -> int:
        return sum(path.stat().st_size for path in self.clips.glob("*.f32"))

    # ---- writing -------------------------------------------------------------------------
    def add(self, owner: str, name: str, model: str, consent: str, pcm: np.ndarray) -> tuple[StoredVoice, bool]:
        """Stores a validated prompt as the owner's voice; (record, created). The same clip
        uploaded again by its owner is the voice it already has (created False). 403 past a quota."""
        data = np.ascontiguousarray(pcm, dtype=np.float32).tobytes()
        clip = hashlib.sha256(data).hexdigest()
        voice_hash = hashlib.sha256(f"{owner}\n{clip}".encode()).hexdigest()[:16]
        with self._lock:
            existing = self.get(owner, PREFIX + voice_hash)
            if existing is not None:
                return existing, False
            if len(self.list(owner)) >= self.max_voices_per_key:
                raise APIError(403, f"this key holds {self.max_voices_per_key} voices, the most it may "
                                    "(voice_store_max_voices_per_key): delete one first", code=VOICE_QUOTA.code)
            clip_path = self.clips / f"{clip}.f32"
            if not clip_path.exists():
                if self.bytes_used() + len(data) > self.max_bytes:
                    raise APIError(403, "the voice store is full (voice_store_max_bytes)", code=STORE_FULL.code)
                _write_atomic(clip_path, data)
            record = StoredVoice(PREFIX + voice_hash, name, model, round(len(pcm) / SAMPLE_RATE, 3),
                                 int(time.time()), owner, consent, clip)
            _write_atomic(self.voices / f"{voice_hash}.json", json.dumps(asdict(record)).encode())
        return record, True

    def delete(self, owner: str, voice_id: str) -> StoredVoice | None:
        """Deletes the owner's voice (None if it has none of that id); its clip goes with the last
        voice that uses it."""
        with self._lock:
            record = self.get(owner, voice_id)
            if record is None:
                return None
            (self.voices / f"{voice_id[len(PREFIX):]}.json").unlink(missing_ok=True)
            if not any(r.clip == record.clip for r in self._records()):
                (self.clips / f"{record.clip}.f32").unlink(missing_ok=True)
                self._pcm.cache_clear()
        return record
