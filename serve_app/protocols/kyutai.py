"""The wire of Kyutai's moshi-server TTS WebSocket (`/api/tts_streaming`), so Kyutai's own clients
(Unmute, delayed-streams-modeling's scripts) work against this service unchanged. Codec and limits
only: the session's rules are serve_app/service/kyutai_session.py, the route routes/websocket.py.

Protocol (MessagePack, as moshi-server speaks it):
- Query: `voice` (a voice id, or an OpenAI name), `format` = `PcmMessagePack` (default here; moshi-server
  defaults to `OggOpus`, and Kyutai's clients always name it), `Pcm` (raw float32 LE frames),
  `OggOpus` (raw Ogg pages), `OggOpusMessagePack` (`{"type": "OggOpus", "data": bytes}`); `cfg_alpha`
  becomes cfg_coef (the values of the session's model: a 400 at the handshake otherwise); `seed`, `temperature`, `top_k`, `max_seq_len`, `voices` are accepted and ignored.
  With `api_keys` configured, the key comes in the `kyutai-api-key` header (or `auth_id` query), and
  a handshake without a valid one is refused with HTTP 401 (serve_app/security/api_keys.py).
- Client -> server: `{"type": "Text", "text": "..."}` (whole words, sent as they come: several per
  message are fine; `max_text_chars` in all), then `{"type": "Eos"}` (or the single byte 0). Plain
  text frames count as Text. A `{"type": "Voice", "embeddings": [...], "shape": [1, 512, 125]}`
  (a custom speaker embedding, as Unmute sends it) may come before the first Text.
- Server -> client: `{"type": "Ready"}` once the voice is accepted; per 80 ms frame
  `{"type": "Audio", "pcm": [float32, ...]}` (24 kHz mono); per spoken word
  `{"type": "Text", "text", "start_s", "stop_s"}` (seconds in the audio sent on this socket);
  `{"type": "Error", "message"}` on any failure; then the server closes the socket. The raw formats
  (Pcm, OggOpus) carry audio only, as in moshi-server; their errors are in the close reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import msgpack
import numpy as np

from deployments.engine.models import CFG_BOUNDS
from deployments.engine.voices import VoiceError, validate_voice_embedding
from deployments.protocol import FRAME_SAMPLES, VOICE_EMBEDDING_SIZE, FailureKind, Word

from .. import audio
from ..errors import APIError

FORMATS = ("PcmMessagePack", "Pcm", "OggOpus", "OggOpusMessagePack")
DEFAULT_FORMAT = "PcmMessagePack"

# The largest valid message: a Voice message's 64,000 numbers as float64 MessagePack, or a Text
# of the whole session's characters (4 bytes each at most in UTF-8). Larger frames are refused
# before they are decoded.
_VOICE_MESSAGE_BYTES = VOICE_EMBEDDING_SIZE * 9 + 1024

# MessagePack limits: a Voice message holds 64,000 numbers; nothing else needs more than a few
# keys, and text longer than a session may send is refused before it is decoded.
_UNPACK_LIMITS = {"max_array_len": VOICE_EMBEDDING_SIZE, "max_map_len": 16, "max_ext_len": 0, "max_bin_len": 0}
# A valid message is one map holding at most two arrays (a Voice's numbers and shape). A frame of
# many small containers is cheap to send and dear to build (a 576 KB frame of empty arrays
# decodes into ~40 MB of lists): decoding stops at the first container beyond this count.
_MAX_CONTAINERS = 8

# Close codes: 1008 (policy violation) for the client's mistakes, 1013 (try again later) for busy,
# unavailable, silent or crashed workers and streams that fell behind their playback (expired),
# 1011 (internal error) for the rest.
_CLOSE_CODES = {FailureKind.INVALID: 1008, FailureKind.OVERLOADED: 1013, FailureKind.UNAVAILABLE: 1013,
                FailureKind.TIMEOUT: 1013, FailureKind.CRASHED: 1013, FailureKind.EXPIRED: 1013}


class SessionError(Exception):
    """The client broke the protocol or a limit: the session ends with an Error message carrying
    this text (close code 1008)."""


# ---- client -> server ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Eos:
    """The text is complete."""


@dataclass(frozen=True)
class Voice:
    embedding: list  # VOICE_EMBEDDING_SIZE numbers, already validated


ClientMessage = Text | Eos | Voice


def message_limit(max_text_chars: int) -> int:
    """The largest frame a session accepts, in bytes (characters for a text frame)."""
    return max(_VOICE_MESSAGE_BYTES, 4 * max_text_chars + 1024)


def unpack_bounded(data: bytes, max_containers: int, **limits):
    """MessagePack decoding that stops at the first container beyond `max_containers` (and at
    msgpack's own `limits`): a frame of many small containers is cheap to send and dear to build."""
    built = 0

    def count(container):
        nonlocal built
        built += 1
        if built > max_containers:
            raise ValueError("too many arrays or maps")
        return container

    return msgpack.unpackb(data, list_hook=count, object_hook=count, **limits)


def _unpack(data: bytes, max_str_len: int):
    # surrogatepass: a lone surrogate in a Text is then refused as such, naming the text (the
    # session's check), rather than as an undecodable frame.
    return unpack_bounded(data, _MAX_CONTAINERS, max_str_len=max_str_len, unicode_errors="surrogatepass",
                          **_UNPACK_LIMITS)


def parse_frame(frame: bytes | str, max_text_chars: int) -> ClientMessage:
    """A received frame as a typed message: a text frame is Text, the single byte 0 is Eos, else
    MessagePack. SessionError for a frame too large, undecodable, or of an unknown type."""
    limit = message_limit(max_text_chars)
    if len(frame) > limit:
        raise SessionError(f"message of {len(frame)} bytes refused: no valid message is larger than {limit}")
    if isinstance(frame, str):
        return Text(frame)
    if frame == b"\0":
        return Eos()
    try:
        decoded = _unpack(frame, max_str_len=4 * max_text_chars)
    except Exception:
        raise SessionError('invalid message: expected MessagePack {"type": "Text" | "Eos" | "Voice", ...}') from None
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    if kind == "Text" and isinstance(decoded.get("text"), str):
        return Text(decoded["text"])
    if kind == "Eos":
        return Eos()
    if kind == "Voice":
        try:
            validate_voice_embedding(decoded.get("embeddings"), decoded.get("shape"))
        except VoiceError as exc:
            raise SessionError(f"invalid Voice message: {exc}") from None
        return Voice(decoded["embeddings"])
    raise SessionError(f"invalid message type {kind!r}: expected Text, Eos or Voice")


# ---- server -> client ---------------------------------------------------------------------------
class OutputEncoder:
    """Messages in the negotiated format. The control messages (Ready, Text, Error) are None in
    the raw formats, which have none."""

    def __init__(self, fmt: str):
        self.msgpack = fmt.endswith("MessagePack")
        self.opus = audio.StreamEncoder("opus") if fmt.startswith("OggOpus") else None

    @staticmethod
    def _pack(message: dict, single_float: bool = False) -> bytes:
        # As moshi-server: pcm samples as float32, timestamps as float64.
        return msgpack.packb(message, use_single_float=single_float)

    def message(self, message: dict) -> bytes | None:
        return self._pack(message) if self.msgpack else None

    def ready(self) -> bytes | None:
        return self.message({"type": "Ready"})

    def word(self, word: Word) -> bytes | None:
        return self.message({"type": "Text", "text": word.word, "start_s": round(word.start_s, 3),
                             "stop_s": round(word.end_s, 3)})

    def error(self, message: str) -> bytes | None:
        return self.message({"type": "Error", "message": message})

    def audio(self, pcm: np.ndarray, final: bool = False) -> bytes | None:
        """One message of audio (None when the Ogg encoder holds it back, or there is none)."""
        if self.opus is not None:
            data = self.opus.feed(pcm) + (self.opus.finish() if final else b"")
            if not data:
                return None
            return self._pack({"type": "OggOpus", "data": data}) if self.msgpack else data
        if pcm.size == 0:
            return None
        if self.msgpack:
            return self._pack({"type": "Audio", "pcm": pcm.astype(np.float32).tolist()}, single_float=True)
        return pcm.astype("<f4").tobytes()

    def frames(self, pcm: np.ndarray) -> Iterator[bytes]:
        """One message per 80 ms frame, as moshi-server sends them."""
        for start in range(0, pcm.shape[0], FRAME_SAMPLES):
            data = self.audio(pcm[start:start + FRAME_SAMPLES])
            if data:
                yield data

    def end(self) -> bytes | None:
        """What the encoder still holds (the last Ogg page) once the audio is complete."""
        return self.audio(np.zeros(0, np.float32), final=True)


# ---- handshake and close ------------------------------------------------------------------------
class Options(NamedTuple):
    format: str
    voice: str | None  # as the client named it (a voice id or an OpenAI name); None: the default
    cfg_coef: float | None
    model: str | None = None  # a model's name or id (GET /v1/models); None: the default model


def parse_query(query) -> Options:
    """The session's options from the handshake's query; APIError(400) for a bad one."""
    fmt = query.get("format") or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise APIError(400, f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}", param="format",
                       code="invalid_format")
    cfg = query.get("cfg_alpha")
    cfg_coef = None
    if cfg not in (None, ""):
        try:
            cfg_coef = float(cfg)
        except ValueError:
            cfg_coef = math.nan
        # The widest bounds of any model here; the model's own values once it is known (the route).
        if not CFG_BOUNDS[0] <= cfg_coef <= CFG_BOUNDS[1]:
            raise APIError(400, f"cfg_alpha must be a number from {CFG_BOUNDS[0]:g} to {CFG_BOUNDS[1]:g}, and one "
                           "the session's model takes", param="cfg_alpha", code="invalid_cfg")
    return Options(fmt, query.get("voice") or None, cfg_coef, query.get("model") or None)


def close_code(kind: FailureKind) -> int:
    return _CLOSE_CODES.get(kind, 1011)


def close_reason(message: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return message.encode()[:120].decode(errors="ignore")
