"""Kyutai's ASR WebSocket protocol under any input (in process, no Ray): any frame a client may send,
bytes or MessagePack of any shape and nesting, is a typed message (Audio with finite float32
samples, Marker with an id in range, End) or a ProtocolError (an Error message, close 1008), never
another exception. The socket's session rules over real rows are tests/serve/test_asr_served.py's."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from serve_app.protocols.kyutai_asr import Audio, End, Marker, ProtocolError, message_limit, parse_frame
from test_kyutai_properties import VALUES, pack

MAX_SAMPLES = 64
NUMBERS = st.one_of(st.floats(), st.integers(-2**63, 2**64 - 1), st.booleans(), st.none())
FRAMES = st.one_of(
    st.binary(max_size=message_limit(MAX_SAMPLES) + 8),
    st.text(max_size=20),
    VALUES.map(pack),
    st.fixed_dictionaries({"type": st.sampled_from(["Audio", "Marker", "audio", ""])},
                          optional={"pcm": st.one_of(st.lists(NUMBERS, max_size=MAX_SAMPLES + 2), VALUES),
                                    "id": st.one_of(NUMBERS, VALUES)}).map(pack),
)


def parsed(frame):
    try:
        return parse_frame(frame, MAX_SAMPLES)
    except ProtocolError as refused:
        return refused


@settings(max_examples=400, deadline=None)
@given(FRAMES)
def test_any_frame_is_a_typed_message_or_a_protocol_error(frame):
    message = parsed(frame)
    assert isinstance(message, (Audio, Marker, End, ProtocolError)), message
    if isinstance(message, Audio):
        assert message.pcm.dtype == np.float32 and message.pcm.ndim == 1
        assert len(message.pcm) <= MAX_SAMPLES and np.isfinite(message.pcm).all()
    if isinstance(message, Marker):
        assert isinstance(message.id, int) and not isinstance(message.id, bool) and 0 <= message.id < 2**63
    if isinstance(message, ProtocolError):
        assert str(message)  # what the Error message will say


@given(st.lists(st.floats(-1, 1, width=32), max_size=MAX_SAMPLES), st.integers(0, 2**63 - 1))
def test_valid_audio_and_markers_are_taken_as_sent(samples, marker_id):
    audio = parsed(pack({"type": "Audio", "pcm": samples}))
    assert isinstance(audio, Audio) and audio.pcm.tolist() == samples
    assert parsed(pack({"type": "Marker", "id": marker_id})) == Marker(marker_id)
