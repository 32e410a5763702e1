"""The voices a request may name, as every protocol lists and checks them: a background-refreshed
index of ids (checks never wait on a directory walk or the hub) and the filtered listing of
/api/voices and MCP's list_voices."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING

from . import voice_uploads
from .cache import TTLCache

if TYPE_CHECKING:  # the context holds a VoiceIndex: no import cycle at run time
    from deployments.engine.voices import VoiceCatalog

    from ..context import IngressContext

log = logging.getLogger(__name__)


class VoiceIndex:
    """The voice ids known to the catalog, refreshed by a background thread: a request checks
    names against it without ever waiting on a directory walk or the hub."""

    REFRESH_S = 5.0

    def __init__(self, catalog: VoiceCatalog):
        self.catalog = catalog
        self.ids: frozenset[str] = frozenset()
        # A daemon thread: it lives as long as the ingress replica's process.
        threading.Thread(target=self._refresh_forever, name="voice-index", daemon=True).start()

    def _refresh_forever(self) -> None:
        while True:
            try:
                self.ids = frozenset(v.id for v in self.catalog.list_voices())
            except Exception:  # keep the last good index; the next round tries again
                log.exception("listing voices failed")
            time.sleep(self.REFRESH_S)


def filter_voices(voices: list[dict], query: str | None) -> list[dict]:
    if not query:
        return voices
    needle = query.lower()
    return [v for v in voices if needle in v["id"].lower() or needle == (v.get("language") or "")]


class ModelVoices:
    """One model's voices as the ingress checks and lists them: its catalog, the background index
    requests are checked against, and the listing (read in a thread, a directory walk and maybe the
    hub, at most every LIST_TTL_S, one read shared by concurrent callers)."""

    LIST_TTL_S = 5.0

    def __init__(self, catalog: VoiceCatalog, default_voice: str):
        self.catalog, self.default_voice = catalog, default_voice
        self.index = VoiceIndex(catalog)
        self.listing = TTLCache(lambda: asyncio.to_thread(catalog.list_voices), self.LIST_TTL_S)


async def voice_listing(ctx: IngressContext, query: str | None = None, model: str | None = None) -> dict:
    """{default, voices: [{id, group, language, source}], model, models, uploaded, attribution,
    warning?} of a model (None: the default one), filtered by `query`; `models`: the name of
    every model that speaks (has voices), the default one first; `uploaded`: the caller's own voices of that model;
    `uploads_allowed`: whether POST /api/voices can succeed here at all (the page says so up front); `attribution`:
    what the model's licence asks to be said where its voices are listed."""
    served = ctx.model_for(model)
    voices = served.voices
    listed = [v.to_dict() for v in await voices.listing.get()]
    names = sorted((name for name, m in ctx.models.items() if m.speaks),
                   key=lambda name: name != ctx.settings.default_model_name)
    body = {"default": voices.default_voice, "voices": filter_voices(listed, query), "model": served.name,
            "models": names, "uploaded": await voice_uploads.listed(ctx, served.name),
            "uploads_allowed": voice_uploads.uploads_allowed(ctx.settings),
            "attribution": served.spec.attribution}  # None where the licence asks for none
    if voices.catalog.repo_error:
        body["warning"] = voices.catalog.repo_error
    return body
