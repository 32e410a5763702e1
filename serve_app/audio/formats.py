"""The audio formats the service answers in: the one list every route, schema and store reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    container: str | None  # None: raw PCM, no container
    codec: str | None
    extension: str


FORMATS: dict[str, AudioFormat] = {f.name: f for f in [
    AudioFormat("wav", "audio/wav", "wav", "pcm_s16le", "wav"),
    AudioFormat("mp3", "audio/mpeg", "mp3", "libmp3lame", "mp3"),
    AudioFormat("opus", "audio/ogg; codecs=opus", "ogg", "libopus", "ogg"),
    AudioFormat("aac", "audio/aac", "adts", "aac", "aac"),
    AudioFormat("flac", "audio/flac", "flac", "flac", "flac"),
    # Raw signed 16-bit little-endian, 24 kHz mono: never labelled as WAV (nor as audio/L16,
    # which RFC 2586 defines as big-endian).
    AudioFormat("pcm", "audio/pcm; rate=24000; channels=1; encoding=s16le", None, None, "pcm"),
]}

# The `format` / `response_format` field of every API (REST, OpenAI, MCP), made from the list.
AudioFormatName = Literal[tuple(FORMATS)]
# File extensions of saved outputs (the store serves back only names it gave out).
EXTENSIONS = tuple(f.extension for f in FORMATS.values())


def binary_content() -> dict:
    """Every format as OpenAPI response content: the audio file's bytes."""
    return {f.media_type: {"schema": {"type": "string", "format": "binary"}} for f in FORMATS.values()}
