"""The ASR socket's wire (serve_app/protocols/kyutai_asr.py): what parses, what is refused before
decoding, and the messages as Kyutai's clients read them."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from serve_app.protocols import kyutai_asr
from serve_app.protocols.kyutai_asr import Audio, End, Marker, ProtocolError, parse_frame

LIMIT = 24_000


def test_audio_markers_and_the_end_parse_as_kyutais_clients_send_them():
    audio = parse_frame(msgpack.packb({"type": "Audio", "pcm": [0.5, -0.25, 0]}, use_single_float=True), LIMIT)
    assert isinstance(audio, Audio) and audio.pcm.dtype == np.float32 and audio.pcm.tolist() == [0.5, -0.25, 0.0]
    assert parse_frame(msgpack.packb({"type": "Marker", "id": 3}), LIMIT) == Marker(3)
    assert parse_frame(b"\0", LIMIT) == End()


@pytest.mark.parametrize("frame, says", [
    (b"\x91" * (LIMIT * 9 + 257), "no valid message is larger than"),
    (msgpack.packb({"type": "Audio", "pcm": [0.0] * (LIMIT + 1)}), f"at most {LIMIT} samples"),
    (msgpack.packb({"type": "Audio", "pcm": [[0.0]] * 3}), "invalid message"),  # containers beyond one array
    (msgpack.packb({"type": "Audio", "pcm": ["a"]}), "list of numbers"),
    (msgpack.packb({"type": "Audio", "pcm": [True]}), "list of numbers"),
    (msgpack.packb({"type": "Audio", "pcm": [1e300]}), "finite"),
    (msgpack.packb({"type": "Marker", "id": "x"}), "integer"),
    (msgpack.packb({"type": "Marker", "id": -1}), "integer"),
    (msgpack.packb({"type": "Text", "text": "hi"}), "expected Audio or Marker"),
    (b"\xc1", "invalid message"),
    ("plain text", "text frames"),
])
def test_a_bad_or_oversized_frame_is_refused_with_a_clear_message(frame, says):
    with pytest.raises(ProtocolError, match=says):
        parse_frame(frame, LIMIT)


def test_server_messages_carry_the_fields_kyutais_clients_read():
    unpack = msgpack.unpackb
    assert unpack(kyutai_asr.ready()) == {"type": "Ready"}
    assert unpack(kyutai_asr.word("hello", 1.23456)) == {"type": "Word", "text": "hello", "start_time": 1.235}
    assert unpack(kyutai_asr.end_word(2.5)) == {"type": "EndWord", "stop_time": 2.5}
    step = unpack(kyutai_asr.step(4, [0.1, 0.2, 0.3, 0.4], 1920))
    assert step["type"] == "Step" and step["step_idx"] == 4 and len(step["prs"]) == 4 and step["buffered_pcm"] == 1920
    assert unpack(kyutai_asr.marker(9)) == {"type": "Marker", "id": 9}
    assert unpack(kyutai_asr.error("no free channels")) == {"type": "Error", "message": "no free channels"}
