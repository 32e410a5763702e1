"""`/api/tts_streaming`: the WebSocket protocol of Kyutai's moshi-server TTS, so Kyutai's own clients
(Unmute, delayed-streams-modeling's scripts) work against this service unchanged.

Protocol (MessagePack, as moshi-server speaks it):
- Query: `voice` (a voice id, or an OpenAI name), `format` = `PcmMessagePack` (default here; moshi-server
  defaults to `OggOpus`, and Kyutai's clients always name it), `Pcm` (raw float32 LE frames),
  `OggOpus` (raw Ogg pages), `OggOpusMessagePack` (`{"type": "OggOpus", "data": bytes}`); `cfg_alpha`
  becomes cfg_coef; `seed`, `temperature`, `top_k`, `max_seq_len`, `voices` are accepted and ignored.
  With `api_keys` configured, the key comes in the `kyutai-api-key` header (or `auth_id` query), and
  a handshake without a valid one is refused with HTTP 401 (serve_app/security/api_keys.py).
- Client -> server: `{"type": "Text", "text": "..."}` (whole words, sent as they come: several per
  message are fine; `max_text_chars` in all), then `{"type": "Eos"}` (or the single byte 0). Plain
  text frames count as Text.
- Server -> client: `{"type": "Ready"}` once the voice is accepted; per 80 ms frame
  `{"type": "Audio", "pcm": [float32, ...]}` (24 kHz mono); per spoken word
  `{"type": "Text", "text", "start_s", "stop_s"}` (seconds in the audio sent on this socket);
  `{"type": "Error", "message"}` on any failure; then the server closes the socket. The raw formats
  (Pcm, OggOpus) carry audio only, as in moshi-server; their errors are in the close reason.

One session is one continuous generation on one worker slot, whatever the pace of the text: the
first Text message starts it (a `Voice` message with a custom speaker embedding may come before,
as Unmute sends it), and later words go straight into that running slot through the worker's text
inbox (deployments/serve/text_inbox.py). The model speaks a word once it has two more words of look-ahead
or the text is complete (Eos), so audio starts after the first three words, with no seams.
Whatever the client does, one session's text totals at most `max_text_chars` (`Error` beyond),
which bounds the work one socket can ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgpack
import numpy as np
from fastapi import APIRouter, WebSocket
from ray.serve.exceptions import BackPressureError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deployments.protocol import (CFG_COEFS, FRAME_SAMPLES, VOICE_EMBEDDING_SHAPE, VOICE_EMBEDDING_SIZE, AudioChunk,
                                  FailureKind, SynthesisDone, TextFeedOpened, WordSpoken)
from deployments.engine.voices import VoiceError, validate_voice_embedding

from .. import audio
from ..security import cross_site
from ..service import openai_voices
from ..context import IngressContext
from ..errors import APIError, refuse_websocket
from ..service.worker_client import WorkerError

log = logging.getLogger(__name__)
router = APIRouter()

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


def _unpack(data: bytes, max_str_len: int):
    built = 0

    def count(container):
        nonlocal built
        built += 1
        if built > _MAX_CONTAINERS:
            raise ValueError("too many arrays or maps")
        return container

    return msgpack.unpackb(data, max_str_len=max_str_len, list_hook=count, object_hook=count, **_UNPACK_LIMITS)


class SessionError(Exception):
    """Ends the session with an Error message carrying this text."""


class TooManySessions(Exception):
    """This ingress replica holds `max_websocket_sessions` already (close code 1013: try again later)."""


class OutputEncoder:
    """Messages in the negotiated format."""

    def __init__(self, fmt: str):
        self.msgpack = fmt.endswith("MessagePack")
        self.opus = audio.StreamEncoder("opus") if fmt.startswith("OggOpus") else None

    @staticmethod
    def _pack(message: dict, single_float: bool = False) -> bytes:
        # As moshi-server: pcm samples as float32, timestamps as float64.
        return msgpack.packb(message, use_single_float=single_float)

    def message(self, message: dict) -> bytes | None:
        """A control message (Ready, Text, Error); None in the raw formats, which have none."""
        return self._pack(message) if self.msgpack else None

    def audio(self, pcm: np.ndarray, final: bool = False) -> bytes | None:
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


def _reason(message: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return message.encode()[:120].decode(errors="ignore")


def _close_code(exc: BaseException) -> int:
    """1008 for the client's mistakes, 1013 (try again later) for busy, unavailable, silent or
    crashed workers, 1011 for the rest."""
    if isinstance(exc, (SessionError, APIError)) or (isinstance(exc, WorkerError) and exc.kind == FailureKind.INVALID):
        return 1008
    if isinstance(exc, (BackPressureError, TooManySessions)) or (
            isinstance(exc, WorkerError) and exc.kind in (FailureKind.UNAVAILABLE, FailureKind.TIMEOUT, FailureKind.CRASHED)):
        return 1013
    return 1011


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, WorkerError):
        return exc.message
    if isinstance(exc, BackPressureError):
        return "all TTS workers are busy and their queues are full; retry shortly"
    if isinstance(exc, (APIError, SessionError, TooManySessions)):
        return str(exc)
    return "internal error; it is logged on the server"


class KyutaiSession:
    def __init__(self, ctx: IngressContext, websocket: WebSocket, fmt: str, voice: str, cfg_coef: float | None):
        self.ctx, self.websocket = ctx, websocket
        self.voice, self.cfg_coef = voice, cfg_coef
        self.voice_embedding: list | None = None
        self.output = OutputEncoder(fmt)
        self.inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self.generation: asyncio.Task | None = None  # the worker request, once the first words came
        self.feed: TextFeedOpened | None = None  # where the session's next words go
        self.feed_open = asyncio.Event()
        self.generation_started = asyncio.Event()
        self.text_chars = 0
        self.last_input_at = 0.0  # loop time of the client's last words (or Voice, Eos)

    async def _send(self, data: bytes | None) -> None:
        if data:
            try:
                await self.websocket.send_bytes(data)
            except (RuntimeError, OSError) as exc:  # the socket is closed or closing
                raise WebSocketDisconnect(1006) from exc

    # ---- client -> words -----------------------------------------------------------------------
    async def _read(self) -> tuple[str, object]:
        """The next client message as ("text", words), ("voice", embedding) or ("eos", None)."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes") or b""
        text = message.get("text")
        limit = max(_VOICE_MESSAGE_BYTES, 4 * self.ctx.settings.max_text_chars + 1024)
        size = len(data) if text is None else len(text)
        if size > limit:
            raise SessionError(f"message of {size} bytes refused: no valid message is larger than {limit}")
        if text is not None:
            return "text", text
        if data == b"\0":
            return "eos", None
        try:
            decoded = _unpack(data, max_str_len=4 * self.ctx.settings.max_text_chars)
        except Exception:
            raise SessionError("invalid message: expected MessagePack {\"type\": \"Text\" | \"Eos\" | \"Voice\", ...}") from None
        kind = decoded.get("type") if isinstance(decoded, dict) else None
        if kind == "Text" and isinstance(decoded.get("text"), str):
            return "text", decoded["text"]
        if kind == "Eos":
            return "eos", None
        if kind == "Voice":
            try:
                validate_voice_embedding(decoded.get("embeddings"), decoded.get("shape"))
            except VoiceError as exc:
                raise SessionError(f"invalid Voice message: {exc}") from None
            return "voice", decoded["embeddings"]
        raise SessionError(f"invalid message type {kind!r}: expected Text, Eos or Voice")

    async def read_messages(self) -> None:
        """Reads every client message into `self.inbox`. It keeps reading after Eos (ignoring what
        comes) so that a client leaving is noticed at once and cancels the generation."""
        eos = False
        while True:
            kind, payload = await self._read()
            if not eos:
                self.inbox.put_nowait((kind, payload))
                eos = kind == "eos"

    async def receive_text(self) -> None:
        """Starts the generation with the first words, then sends it every later word, in order.
        A session that sends nothing but empty Text for `websocket_idle_timeout_s` ends."""
        idle_s = self.ctx.settings.websocket_idle_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + idle_s
        while True:
            try:
                kind, payload = await asyncio.wait_for(self.inbox.get(), timeout=max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise SessionError(f"no text for {idle_s:g} s before Eos") from None
            if kind != "text" or payload.strip():
                self.last_input_at = loop.time()
                deadline = self.last_input_at + idle_s
            if kind == "voice":
                if self.generation is not None:
                    raise SessionError("a Voice message must come before the first Text")
                self.voice_embedding = payload
                continue
            if kind == "eos":
                if self.generation is not None:
                    await self._feed(None, end=True)
                return
            if not payload.strip():
                continue  # nothing to say
            self.text_chars += len(payload)
            limit = self.ctx.settings.max_text_chars
            if self.text_chars > limit:
                raise SessionError(f"the text of one session is limited to {limit} characters "
                                   f"(max_text_chars); this one sent {self.text_chars}")
            if self.generation is None:
                self.generation = asyncio.create_task(self.forward(payload))
                self.generation_started.set()
            else:
                await self._feed(payload)

    async def _feed(self, text: str | None, end: bool = False) -> None:
        await self.feed_open.wait()
        await self.feed.inbox.put.remote(self.feed.session, text, end)

    # ---- worker events -> client ---------------------------------------------------------------
    async def forward(self, first_words: str) -> None:
        request = {"text": first_words, "voice": self.voice, "cfg_coef": self.cfg_coef, "stream_text": True}
        if self.voice_embedding is not None:
            request.update(voice_embedding=self.voice_embedding, voice_shape=list(VOICE_EMBEDDING_SHAPE))
        async for event in self.ctx.workers.stream(request, last_input=lambda: self.last_input_at):
            if isinstance(event, TextFeedOpened):
                self.feed = event
                self.feed_open.set()
            elif isinstance(event, AudioChunk):
                for start in range(0, event.pcm.shape[0], FRAME_SAMPLES):  # one message per frame
                    await self._send(self.output.audio(event.pcm[start:start + FRAME_SAMPLES]))
            elif isinstance(event, WordSpoken):
                await self._send(self.output.message({
                    "type": "Text", "text": event.word.word, "start_s": round(event.word.start_s, 3),
                    "stop_s": round(event.word.end_s, 3)}))
            elif isinstance(event, SynthesisDone):
                break

    async def run(self) -> None:
        await self._send(self.output.message({"type": "Ready"}))
        receiving = asyncio.create_task(self.receive_text())
        reader = asyncio.create_task(self.read_messages())
        # Wakes the loop below when the generation starts, so that a worker failure before the
        # client's Eos ends the session at once.
        started = asyncio.create_task(self.generation_started.wait())
        try:
            # Done when the text is complete and its audio sent; stopped by the first failure (a
            # client gone, a bad message, a worker error).
            pending = {receiving, reader, started}
            while not (receiving.done() and (self.generation is None or self.generation.done())):
                if self.generation is not None:
                    pending.add(self.generation)
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()
            await self._send(self.output.audio(np.zeros(0, np.float32), final=True))
        finally:
            tasks = [receiving, reader, started] + ([self.generation] if self.generation else [])
            for task in tasks:
                task.cancel()  # a cancelled generation closes its worker stream: the slot is freed
            await asyncio.gather(*tasks, return_exceptions=True)

    async def fail(self, exc: BaseException) -> None:
        """Tells the client why the session ends (if it is still there), then closes."""
        message = _error_text(exc)
        with contextlib.suppress(Exception):
            await self._send(self.output.message({"type": "Error", "message": message}))
            await self.websocket.close(code=_close_code(exc), reason=_reason(message))


def _parse_query(query) -> tuple[str, str | None, float | None]:
    """(format, voice name, cfg_coef) from the query; APIError(400) for a bad one."""
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
            cfg_coef = -1.0
        if cfg_coef not in CFG_COEFS:
            raise APIError(400, f"cfg_alpha must be one of {', '.join(f'{v:g}' for v in CFG_COEFS)}",
                           param="cfg_alpha", code="invalid_cfg")
    return fmt, query.get("voice") or None, cfg_coef


@router.websocket("/api/tts_streaming")
async def tts_streaming(websocket: WebSocket) -> None:
    ctx: IngressContext = websocket.app.state.ctx
    query = websocket.query_params
    # With api_keys set, a handshake without a valid key never gets here (serve_app/security/api_keys.py).
    reason = cross_site.refusal(websocket.headers, ctx.settings.allowed_origins)
    if reason is not None:
        return await refuse_websocket(websocket, APIError(403, reason, code="cross_origin"))
    try:
        fmt, voice_name, cfg_coef = _parse_query(query)
    except APIError as exc:
        return await refuse_websocket(websocket, exc)
    await websocket.accept()
    session = KyutaiSession(ctx, websocket, fmt, ctx.settings.default_voice, cfg_coef)
    open_sessions = websocket.app.state.websocket_sessions
    if len(open_sessions) >= ctx.settings.max_websocket_sessions:
        return await session.fail(TooManySessions(
            f"this server holds {ctx.settings.max_websocket_sessions} sessions already; retry shortly"))
    open_sessions.add(session)
    try:
        if voice_name is not None:  # the catalog may ask the hub: not on the event loop
            session.voice = await asyncio.to_thread(openai_voices.resolve_voice, ctx, voice_name)
        await session.run()
    except WebSocketDisconnect:
        log.info("tts_streaming: client went away; its generation was cancelled")
        return
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the client
        if not isinstance(exc, (SessionError, APIError, WorkerError, BackPressureError)):
            log.exception("tts_streaming session failed")
        return await session.fail(exc)
    finally:
        open_sessions.discard(session)
    if websocket.application_state == WebSocketState.CONNECTED:
        await websocket.close(code=1000)
