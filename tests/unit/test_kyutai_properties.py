"""Kyutai's WebSocket protocol under any input (in process, no Ray): any frame is a typed message
or a SessionError (an Error message, close 1008), never another exception; any handshake query
gives options or a 400; any text through the real route (over the fake engine) ends a session
with its audio and a normal close, or an Error and 1008."""

from __future__ import annotations

import msgpack
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from deployments.engine.base import unicode_problem
from helpers.inprocess_app import build_app
from helpers.text_strategies import ANY_CHARACTER, TEXTS
from serve_app.errors import APIError
from serve_app.protocols import kyutai
from serve_app.protocols.kyutai import Eos, SessionError, Text, Voice, parse_frame

MAX_CHARS = 200
# MessagePack values of every kind, nested (what a confused or hostile client may pack).
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
                    st.text(ANY_CHARACTER, max_size=20), st.binary(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
MESSAGES = st.one_of(VALUES, st.fixed_dictionaries({"type": st.sampled_from(["Text", "Eos", "Voice", "Audio", ""])},
                                                   optional={"text": VALUES, "embeddings": VALUES, "shape": VALUES}))


def pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True, unicode_errors="surrogatepass")


def parsed(frame):
    try:
        return parse_frame(frame, MAX_CHARS)
    except SessionError as refused:
        assert str(refused)
        return refused


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), MESSAGES.map(pack), st.text(ANY_CHARACTER, max_size=50)))
def test_any_frame_is_a_message_or_a_session_error(frame):
    message = parsed(frame)
    assert isinstance(message, (Text, Eos, Voice, SessionError))
    if isinstance(message, Text):
        assert isinstance(message.text, str)


@settings(max_examples=100)
@given(TEXTS)
def test_a_text_message_carries_its_text_whatever_it_holds(text):
    message = parsed(pack({"type": "Text", "text": text}))
    if len(text.encode("utf-8", "surrogatepass")) <= 4 * MAX_CHARS:
        assert message == Text(text)  # what it holds is the session's to judge
    else:
        assert isinstance(message, SessionError)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["format", "voice", "cfg_alpha", "seed", "temperature", "auth_id", "x"]),
                       st.text(max_size=12), max_size=4))
def test_any_handshake_query_gives_options_or_a_400(query):
    try:
        options = kyutai.parse_query(query)
    except APIError as refused:
        assert refused.status == 400 and refused.param in ("format", "cfg_alpha")
        return
    assert options.format in kyutai.FORMATS


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(build_app(tmp_path_factory.mktemp("app"), max_text_chars=MAX_CHARS)) as test_client:
        yield test_client


@settings(max_examples=15)
@given(st.lists(TEXTS, min_size=1, max_size=3))
def test_any_text_ends_a_session_with_its_audio_or_an_error_and_1008(client, texts):
    messages, close_code = [], None
    with client.websocket_connect("/api/tts_streaming") as ws:
        assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
        for text in texts:
            ws.send_bytes(pack({"type": "Text", "text": text}))
        ws.send_bytes(pack({"type": "Eos"}))
        try:
            while True:
                messages.append(msgpack.unpackb(ws.receive_bytes()))
        except WebSocketDisconnect as closed:
            close_code = closed.code
    errors = [m for m in messages if m["type"] == "Error"]
    if close_code == 1000:
        assert not errors
    else:
        assert close_code == 1008 and len(errors) == 1 and messages[-1] == errors[0], (close_code, messages[-3:])
    if any(unicode_problem(t) for t in texts if t.strip()):
        assert close_code == 1008  # refused (by name when nothing else was wrong first: tests/serve/test_unspeakable_text.py)
