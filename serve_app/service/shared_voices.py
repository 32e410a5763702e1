"""One voice store per application, whichever ingress replica (and node) a request reaches.

Each ingress replica used to keep its own `VoiceStore` on its node's disk, so a voice uploaded
through one replica was unknown to another. Here the store's directory belongs to one small named
Ray actor per application (`voice-store-<app>` in the registry's namespace), placed on the head
node like the worker registry: Ray restarts it there if its process dies, so it finds the same
disk, and the store stays durable across ingress restarts, rolling updates and GPU nodes coming
and going. (Ray offers no cluster-wide durable key-value store to applications: its internal KV
lives in the GCS, lost with the head unless Redis backs it, and is not a public API.)

`VoiceStoreClient` is what the ingress calls: async methods over that actor, or over a
`VoiceStore` in the same process (tests without Ray, `shared=False`). Consistency: every request
that names an uploaded voice asks the store first (`fetch`: one small actor call, no clip), so a
voice deleted through one replica is refused by every other at once; the sync checks of the
request path (`get`) then read what `fetch` answered. Clips are immutable and named by content,
so their PCM is cached per replica by hash (`pcm`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
import ray

from deployments.serve.registry import HEAD_NODE, NAMESPACE

from ..errors import APIError
from ..protocols.error_shape import Refusal
from .voice_store import StoredVoice, VoiceStore, is_clip_id

log = logging.getLogger(__name__)

# Uploaded voices whose record and PCM one ingress replica keeps between a request's fetch and its
# use (a 10 s prompt is ~1 MB): the voices in use.
FETCHED_VOICES = 32
STORE_TIMEOUT_S = 10.0
STORE_UNAVAILABLE = Refusal("voice_store_unavailable",
                            "the voice store is not answering (Ray is restarting it); retry shortly")


@ray.remote(num_cpus=0, max_concurrency=8, max_restarts=-1)
class VoiceStoreActor:
    """The application's `VoiceStore`, on the head node's disk. Sync methods: they run on the
    actor's thread pool, and the store's own lock orders the writes."""

    def __init__(self, directory: str, max_voices_per_key: int, max_bytes: int):
        self.store = VoiceStore(directory, max_voices_per_key, max_bytes)

    def configure(self, max_voices_per_key: int, max_bytes: int) -> str:
        """Quotas as the newest ingress replica's settings say (a redeploy may change them); the
        directory is the one the actor was created with, which it returns."""
        self.store.max_voices_per_key, self.store.max_bytes = max_voices_per_key, max_bytes
        return str(self.store.root)

    def list(self, owner: str) -> list[StoredVoice]:
        return self.store.list(owner)

    def get(self, owner: str, voice_id: str) -> StoredVoice | None:
        return self.store.get(owner, voice_id)

    def pcm(self, record: StoredVoice) -> np.ndarray:
        return self.store.pcm(record)

    def add(self, owner: str, name: str, model: str, consent: str, pcm: np.ndarray) -> tuple[StoredVoice, bool] | dict:
        """(record, created), or a quota's refusal as plain data (an APIError does not pickle)."""
        try:
            return self.store.add(owner, name, model, consent, pcm)
        except APIError as exc:
            return {"refused": exc.status, "message": exc.message, "code": exc.code}

    def delete(self, owner: str, voice_id: str) -> StoredVoice | None:
        return self.store.delete(owner, voice_id)


def store_actor_name(app_name: str) -> str:
    return f"voice-store-{app_name}"


def get_store_actor(app_name: str, directory: str, max_voices_per_key: int, max_bytes: int):
    """The application's store actor, created on first use (detached: it outlives every ingress
    replica). A blocking call to Ray's control plane: made in a thread."""
    return VoiceStoreActor.options(name=store_actor_name(app_name), namespace=NAMESPACE, resources=HEAD_NODE,
                                   lifetime="detached", get_if_exists=True).remote(
        directory, max_voices_per_key, max_bytes)


class VoiceStoreClient:
    """An ingress replica's view of the application's voice store (see the module's docstring)."""

    def __init__(self, store: VoiceStore | None = None, app_name: str | None = None, directory: str = "",
                 max_voices_per_key: int = 1, max_bytes: int = 1):
        self.store = store  # the store in this process (no Ray), or None: the actor
        self._actor_args = (app_name, directory, max_voices_per_key, max_bytes)
        self._actor = None
        # What the last fetch of each voice id answered, and its PCM: the voices in use, newest last.
        self._fetched: OrderedDict[str, tuple[StoredVoice, np.ndarray]] = OrderedDict()

    @classmethod
    def local(cls, directory: str, max_voices_per_key: int, max_bytes: int) -> "VoiceStoreClient":
        return cls(store=VoiceStore(directory, max_voices_per_key, max_bytes))

    @classmethod
    def shared(cls, app_name: str, directory: str, max_voices_per_key: int, max_bytes: int) -> "VoiceStoreClient":
        return cls(app_name=app_name, directory=directory, max_voices_per_key=max_voices_per_key, max_bytes=max_bytes)

    async def _call(self, method: str, *args):
        if self.store is not None:
            return await asyncio.to_thread(getattr(self.store, method), *args)
        try:
            if self._actor is None:
                actor = await asyncio.to_thread(get_store_actor, *self._actor_args)
                root = await asyncio.wait_for(actor.configure.remote(*self._actor_args[2:]), STORE_TIMEOUT_S)
                if root != str(Path(self._actor_args[1]).expanduser()):
                    log.warning("the voice store keeps its voices in %s (where it was first created), not in "
                                "voice_store_dir %s: restart the app's store actor to move it", root,
                                self._actor_args[1])
                self._actor = actor
            return await asyncio.wait_for(getattr(self._actor, method).remote(*args), STORE_TIMEOUT_S)
        except (ray.exceptions.RayActorError, asyncio.TimeoutError) as exc:
            self._actor = None  # looked up again next time (Ray restarts it on the head node)
            log.warning("the voice store did not answer: %s: %s", exc.__class__.__name__, str(exc)[:300])
            raise APIError(503, STORE_UNAVAILABLE.description, code=STORE_UNAVAILABLE.code,
                           headers={"Retry-After": "2"}) from None

    async def fetch(self, owner: str, voice_id: str | None) -> StoredVoice | None:
        """The owner's voice `voice_id` as the store has it now (None: unknown, or another
        owner's), its PCM loaded too; `get` and `pcm` answer the same, without waiting, until the
        next fetch. Not a clip id: None, no call."""
        voice_id = (voice_id or "").strip()
        if not is_clip_id(voice_id):
            return None
        record = await self._call("get", owner, voice_id)
        if record is None:
            self._fetched.pop(voice_id, None)
            return None
        cached = self._fetched.get(voice_id)
        pcm = cached[1] if cached is not None and cached[0].clip == record.clip else await self._call("pcm", record)
        self._fetched[voice_id] = (record, pcm)
        self._fetched.move_to_end(voice_id)
        while len(self._fetched) > FETCHED_VOICES:
            self._fetched.popitem(last=False)
        return record

    def get(self, owner: str, voice_id: str) -> StoredVoice | None:
        """What the last `fetch` of `voice_id` answered, for `owner` only (sync: the request path's checks)."""
        cached = self._fetched.get(voice_id)
        return cached[0] if cached is not None and cached[0].owner == owner else None

    def pcm(self, record: StoredVoice) -> np.ndarray:
        """The voice's prompt (float32 mono PCM at 24 kHz, read-only) as its last `fetch` loaded it."""
        cached = self._fetched.get(record.id)
        if cached is None:  # evicted since this request's fetch: FETCHED_VOICES others came meanwhile
            raise APIError(503, STORE_UNAVAILABLE.description, code=STORE_UNAVAILABLE.code,
                           headers={"Retry-After": "1"})
        return cached[1]

    async def list(self, owner: str) -> list[StoredVoice]:
        return await self._call("list", owner)

    async def add(self, owner: str, name: str, model: str, consent: str, pcm: np.ndarray) -> tuple[StoredVoice, bool]:
        """Stores a validated prompt as the owner's voice: (record, created); 403 past a quota."""
        if self.store is not None:
            return await asyncio.to_thread(self.store.add, owner, name, model, consent, pcm)
        added = await self._call("add", owner, name, model, consent, pcm)
        if isinstance(added, dict):
            raise APIError(added["refused"], added["message"], code=added["code"])
        return added

    async def delete(self, owner: str, voice_id: str) -> StoredVoice | None:
        self._fetched.pop(voice_id, None)
        return await self._call("delete", owner, voice_id)
