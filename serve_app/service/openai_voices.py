"""OpenAI's voice names mapped to Kyutai voices.

OpenAI clients only know names like `alloy` or `nova`; Kyutai's voices are files of the
`kyutai/tts-voices` collection. The `openai_voices` setting maps one to the other. Its defaults
spread the names over the collection's folders (a rough match of the OpenAI voice's character, not
a copy of it); entries given in the application's config replace the defaults name by name. Real
voice ids (`vctk/p225_023.wav`) are accepted as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import APIError
from ..protocols.openai import DEFAULT_OPENAI_VOICES

if TYPE_CHECKING:
    from ..context import IngressContext
    from .served_models import ServedModel

def voice_table(ctx: IngressContext) -> dict[str, str]:
    """The effective table: defaults, overridden by the configured entries."""
    configured = {name.lower(): target for name, target in (ctx.settings.openai_voices or {}).items()}
    return {**DEFAULT_OPENAI_VOICES, **configured}


def resolve_voice(ctx: IngressContext, voice: str, param: str = "voice", model: ServedModel | None = None) -> str:
    """The Kyutai voice id for an OpenAI voice name or a real voice id of `model` (None: the
    default model); 400 when it does not exist there, naming both the OpenAI name and what it
    maps to."""
    name = voice.strip()
    table = voice_table(ctx)
    target = table.get(name.lower())
    if target is None:
        return ctx.check_voice(name, param=param, model=model)
    try:
        return ctx.check_voice(target, param=param, model=model)
    except APIError as exc:
        raise APIError(400, f"voice '{name}' maps to '{target}' (setting openai_voices), which is not "
                       f"available on this server: {exc.message}", param=param, code="unknown_voice") from None


def list_voices(ctx: IngressContext, voices: list) -> list[dict]:
    """OpenAI names whose voice exists here (`voice` says which), then every real voice id, from
    `voices` (the catalog's listing, `await ctx.voices.listing.get()`)."""
    available = [v.id for v in voices]
    known = set(available)
    aliases = [{"id": name, "name": name, "voice": target}
               for name, target in voice_table(ctx).items() if not known or target in known]
    return aliases + [{"id": voice_id, "name": voice_id.rsplit("/", 1)[-1].rsplit(".", 1)[0], "voice": voice_id}
                      for voice_id in sorted(available)]
