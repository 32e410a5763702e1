"""The wire of Kyutai's moshi-server ASR WebSocket (`/api/asr-streaming`), so Kyutai's own clients
(delayed-streams-modeling's `stt_from_file_rust_server.py`, Unmute's speech-to-text client) work
against this service unchanged. Codec and limits only: the session's rules are
serve_app/service/asr_session.py, the route routes/asr.py.

Protocol (MessagePack maps tagged by `type`, as moshi-server speaks it):
- Query: `model` (a speech-to-text model's name or id; none: the app's first one). With `api_keys`
  configured, the key comes in the `kyutai-api-key` header or the `auth_id` query.
- Client -> server: `{"type": "Audio", "pcm": [float, ...]}` (24 kHz mono float32, any length:
  buffered, heard 80 ms at a time), `{"type": "Marker", "id": int}`; the single byte 0 ends the
  audio (the last words are flushed, then the server closes).
- Server -> client: `Ready` once the stream holds a row; `Word {text, start_time}` once a word's
  text is complete, `EndWord {stop_time}` once its end is known; `Step {step_idx, prs,
  buffered_pcm}` per model step of a model with voice-activity heads (`prs`: pause probabilities;
  `buffered_pcm`: samples received and not yet heard). `step_idx` counts THIS stream's steps (1, 2,
  ...: x 80 ms = its audio heard so far, a silence prefix included), where moshi-server sends its
  batch loop's global counter. Kyutai's clients use it as no more than an increasing number
  (Unmute counts Steps as its clock, DSM's client skips them), which both are; a per-stream count
  also tells a client how much of its own audio was heard, which a global one cannot (it jumps
  by the steps other streams took while this one had no frame);
  `Marker {id}` once the audio sent before it has been heard, the model's delay included;
  `Error {message}` on any failure, then the server closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from .kyutai import unpack_bounded

# A MessagePack number is at most 9 bytes (float64; Kyutai's clients send float32, 5 bytes): the
# largest valid Audio message, decided before any decoding.
_BYTES_PER_SAMPLE = 9
_MESSAGE_OVERHEAD = 256
# A valid message is one map and at most one array: decoding stops at the first container beyond.
_MAX_CONTAINERS = 2
_MAX_MARKER_ID = 2 ** 63 - 1


class ProtocolError(Exception):
    """The client broke the protocol or a limit: the session ends with an Error message carrying
    this text (close code 1008)."""


@dataclass(frozen=True)
class Audio:
    pcm: np.ndarray  # float32, finite


@dataclass(frozen=True)
class Marker:
    id: int


@dataclass(frozen=True)
class End:
    """The audio is complete."""


ClientMessage = Audio | Marker | End


def message_limit(max_samples: int) -> int:
    """The largest frame a session accepts, in bytes."""
    return max_samples * _BYTES_PER_SAMPLE + _MESSAGE_OVERHEAD


def _unpack(data: bytes, max_samples: int):
    return unpack_bounded(data, _MAX_CONTAINERS, max_array_len=max_samples, max_map_len=8, max_str_len=64,
                          max_bin_len=0, max_ext_len=0)


def parse_frame(frame: bytes | str, max_samples: int) -> ClientMessage:
    """A received frame as a typed message; ProtocolError for a frame too large, undecodable, of an
    unknown type, or holding anything but numbers as audio."""
    limit = message_limit(max_samples)
    if len(frame) > limit:
        raise ProtocolError(f"message of {len(frame)} bytes refused: no valid message is larger than {limit} "
                            f"(at most {max_samples} samples a message)")
    if isinstance(frame, str):
        raise ProtocolError('text frames are not part of this protocol: send MessagePack {"type": "Audio", ...}')
    if frame == b"\0":
        return End()
    try:
        decoded = _unpack(frame, max_samples)
    except Exception:
        raise ProtocolError(f'invalid message: expected MessagePack {{"type": "Audio" | "Marker", ...}} '
                            f"with at most {max_samples} samples") from None
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    if kind == "Audio":
        return Audio(_samples(decoded.get("pcm")))
    if kind == "Marker":
        marker = decoded.get("id")
        if isinstance(marker, bool) or not isinstance(marker, int) or not 0 <= marker <= _MAX_MARKER_ID:
            raise ProtocolError(f"a Marker's id must be an integer from 0 to {_MAX_MARKER_ID}")
        return Marker(marker)
    raise ProtocolError(f"invalid message type {str(kind)[:40]!r}: expected Audio or Marker")


def _samples(pcm) -> np.ndarray:
    if not isinstance(pcm, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in pcm):
        raise ProtocolError("an Audio message's pcm must be a list of numbers (float32 samples at 24 kHz)")
    samples = np.asarray(pcm, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise ProtocolError("an Audio message's pcm must hold finite numbers")
    return samples


# ---- server -> client ---------------------------------------------------------------------------
def _pack(message: dict) -> bytes:
    return msgpack.packb(message)


def ready() -> bytes:
    return _pack({"type": "Ready"})


def word(text: str, start_s: float) -> bytes:
    return _pack({"type": "Word", "text": text, "start_time": round(start_s, 3)})


def end_word(stop_s: float) -> bytes:
    return _pack({"type": "EndWord", "stop_time": round(stop_s, 3)})


def step(step_idx: int, prs: list[float], buffered_pcm: int) -> bytes:
    return _pack({"type": "Step", "step_idx": step_idx, "prs": [float(p) for p in prs], "buffered_pcm": buffered_pcm})


def marker(marker_id: int) -> bytes:
    return _pack({"type": "Marker", "id": marker_id})


def error(message: str) -> bytes:
    return _pack({"type": "Error", "message": message})
