"""serve_app/protocols/kyutai.py, the moshi-server TTS WebSocket's wire: frames in, messages out,
query and close codes (no Ray, no socket)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from deployments.protocol import FRAME_SAMPLES, VOICE_EMBEDDING_SHAPE, VOICE_EMBEDDING_SIZE, FailureKind, Word
from serve_app.errors import APIError
from serve_app.protocols import kyutai
from serve_app.protocols.kyutai import Eos, OutputEncoder, SessionError, Text, Voice, parse_frame

MAX_CHARS = 100


def packed(message) -> bytes:
    return msgpack.packb(message)


# ---- frames in ------------------------------------------------------------------------------------
def test_text_eos_and_plain_frames_become_typed_messages():
    assert parse_frame(packed({"type": "Text", "text": "Hello there"}), MAX_CHARS) == Text("Hello there")
    assert parse_frame("plain words", MAX_CHARS) == Text("plain words")  # a text frame counts as Text
    assert parse_frame(packed({"type": "Eos"}), MAX_CHARS) == Eos()
    assert parse_frame(b"\0", MAX_CHARS) == Eos()


def test_a_voice_message_carries_its_validated_embedding():
    values = np.zeros(VOICE_EMBEDDING_SIZE, np.float32).tolist()
    frame = msgpack.packb({"type": "Voice", "embeddings": values, "shape": list(VOICE_EMBEDDING_SHAPE)},
                          use_single_float=True)
    assert parse_frame(frame, MAX_CHARS) == Voice(values)
    with pytest.raises(SessionError, match="invalid Voice message"):
        parse_frame(packed({"type": "Voice", "embeddings": values, "shape": [1, 2, 3]}), MAX_CHARS)


def test_frames_larger_than_any_valid_message_are_refused_before_decoding():
    limit = kyutai.message_limit(MAX_CHARS)
    assert limit >= VOICE_EMBEDDING_SIZE * 4  # a Voice message always fits
    with pytest.raises(SessionError, match="refused"):
        parse_frame(b"\x90" * (limit + 1), MAX_CHARS)
    with pytest.raises(SessionError, match="refused"):
        parse_frame("x" * (limit + 1), MAX_CHARS)
    # Text longer than a session may send is refused by the decoder's string limit.
    with pytest.raises(SessionError, match="invalid message"):
        parse_frame(packed({"type": "Text", "text": "x" * (4 * MAX_CHARS + 1)}), MAX_CHARS)


def test_decoding_stops_at_too_many_containers():
    with pytest.raises(SessionError, match="invalid message"):
        parse_frame(packed({"type": "Text", "text": "hi", "junk": [[] for _ in range(10)]}), MAX_CHARS)
    with pytest.raises(SessionError, match="invalid message"):
        parse_frame(packed({"type": "Text", "text": "hi", "map": {str(i): i for i in range(17)}}), MAX_CHARS)


@pytest.mark.parametrize("frame, error", [
    (b"\xc1", "invalid message"),  # not MessagePack
    (b"", "invalid message"),
    (packed({"type": "Text", "text": 5}), "invalid message type 'Text'"),
    (packed({"type": "Audio"}), "invalid message type 'Audio'"),
    (packed(["Text", "hi"]), "invalid message type None"),
    (packed({"type": "Text", "text": b"bytes"}), "invalid message"),  # bin is refused outright
])
def test_malformed_or_unknown_messages_are_session_errors(frame, error):
    with pytest.raises(SessionError, match=error):
        parse_frame(frame, MAX_CHARS)


# ---- messages out ---------------------------------------------------------------------------------
def frames(count: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.5, 0.5, count * FRAME_SAMPLES).astype(np.float32)


def test_pcm_messagepack_sends_one_audio_message_per_frame_and_control_messages():
    output = OutputEncoder("PcmMessagePack")
    pcm = frames(3)
    messages = [msgpack.unpackb(m) for m in output.frames(pcm)]
    assert [m["type"] for m in messages] == ["Audio"] * 3
    assert np.array_equal(np.array(messages[1]["pcm"], np.float32), pcm[FRAME_SAMPLES:2 * FRAME_SAMPLES])
    assert msgpack.unpackb(output.ready()) == {"type": "Ready"}
    assert msgpack.unpackb(output.word(Word("hi", 0.12345, 0.5))) == {
        "type": "Text", "text": "hi", "start_s": 0.123, "stop_s": 0.5}
    assert msgpack.unpackb(output.error("bad")) == {"type": "Error", "message": "bad"}
    assert output.end() is None  # nothing held back


def test_raw_pcm_is_float32_little_endian_with_no_control_messages():
    output = OutputEncoder("Pcm")
    pcm = frames(2)
    assert b"".join(output.frames(pcm)) == pcm.astype("<f4").tobytes()
    assert output.ready() is None and output.error("bad") is None and output.word(Word("a", 0, 1)) is None
    assert output.end() is None


@pytest.mark.parametrize("fmt", ["OggOpus", "OggOpusMessagePack"])
def test_ogg_opus_formats_send_ogg_pages_raw_or_wrapped(fmt):
    output = OutputEncoder(fmt)
    sent = [*output.frames(frames(25)), output.end()]
    sent = [m for m in sent if m]
    if fmt == "OggOpus":
        assert output.ready() is None
        pages = b"".join(sent)
    else:
        assert msgpack.unpackb(output.ready()) == {"type": "Ready"}
        decoded = [msgpack.unpackb(m) for m in sent]
        assert {m["type"] for m in decoded} == {"OggOpus"}
        pages = b"".join(m["data"] for m in decoded)
    assert pages.startswith(b"OggS") and b"OpusHead" in pages[:100]


# ---- handshake and close --------------------------------------------------------------------------
def test_query_gives_format_voice_cfg_and_model():
    assert kyutai.parse_query({}) == ("PcmMessagePack", None, None, None)
    options = kyutai.parse_query({"format": "OggOpus", "voice": "nova", "cfg_alpha": "1.5", "seed": "4", "model": "fast"})
    assert (options.format, options.voice, options.cfg_coef, options.model) == ("OggOpus", "nova", 1.5, "fast")
    assert kyutai.parse_query({"voice": "", "cfg_alpha": "", "model": ""}) == ("PcmMessagePack", None, None, None)


# cfg_alpha outside every model's bounds; one outside the session's model's own values (1.2 for the
# 1.6B) is refused once the model is known (tests/unit/test_cfg_per_model.py).
@pytest.mark.parametrize("query, param", [({"format": "Wav"}, "format"), ({"cfg_alpha": "abc"}, "cfg_alpha"),
                                          ({"cfg_alpha": "0.5"}, "cfg_alpha"), ({"cfg_alpha": "9"}, "cfg_alpha"),
                                          ({"cfg_alpha": "nan"}, "cfg_alpha")])
def test_a_bad_query_is_a_400_naming_its_field(query, param):
    with pytest.raises(APIError) as refused:
        kyutai.parse_query(query)
    assert refused.value.status == 400 and refused.value.param == param


def test_close_codes_and_reasons():
    assert kyutai.close_code(FailureKind.INVALID) == 1008
    for busy in (FailureKind.OVERLOADED, FailureKind.UNAVAILABLE, FailureKind.TIMEOUT, FailureKind.CRASHED):
        assert kyutai.close_code(busy) == 1013
    assert kyutai.close_code(FailureKind.ERROR) == 1011
    reason = kyutai.close_reason("é" * 100)
    assert len(reason.encode()) <= 123 and reason == "é" * 60


def test_a_lone_surrogate_in_a_text_message_is_decoded_for_the_session_to_refuse_by_name():
    frame = msgpack.packb({"type": "Text", "text": "abc \udcff def"}, unicode_errors="surrogatepass")
    assert parse_frame(frame, MAX_CHARS) == Text("abc \udcff def")  # the session says what is wrong
