"""`/api/tts_streaming`: the WebSocket protocol of Kyutai's moshi-server TTS, so Kyutai's own clients
(Unmute, delayed-streams-modeling's scripts) work against this service unchanged.

Protocol (MessagePack, as moshi-server speaks it):
- Query: `voice` (a voice id, or an OpenAI name), `format` = `PcmMessagePack` (default here; moshi-server
  defaults to `OggOpus`, and Kyutai's clients always name it), `Pcm` (raw float32 LE frames),
  `OggOpus` (raw Ogg pages), `OggOpusMessagePack` (`{"type": "OggOpus", "data": bytes}`); `cfg_alpha`
  becomes cfg_coef; `seed`, `temperature`, `top_k`, `max_seq_len`, `voices` are accepted and ignored.
  With `api_keys` configured, the key comes in the `kyutai-api-key` header (or `auth_id` query).
- Client -> server: `{"type": "Text", "text": "..."}` (whole words, sent as they come: several per
  message are fine; `max_text_chars` in all), then `{"type": "Eos"}` (or the single byte 0). Plain
  text frames count as Text.
- Server -> client: `{"type": "Ready"}` once the voice is accepted; per 80 ms frame
  `{"type": "Audio", "pcm": [float32, ...]}` (24 kHz mono); per spoken word
  `{"type": "Text", "text", "start_s", "stop_s"}` (seconds in the audio sent on this socket);
  `{"type": "Error", "message"}` on any failure; then the server closes the socket. The raw formats
  (Pcm, OggOpus) carry audio only, as in moshi-server; their errors are in the close reason.

How text arriving word by word becomes speech (and what it costs in latency): the workers take a whole
text per request, and Kyutai's model reads ahead of what it says, so words are buffered here and sent
to the workers in pieces, each a separate generation, whose audio is forwarded in order as it comes.
A piece is cut at a sentence end, at a comma after a few words, after `FIRST_PIECE_MAX_WORDS` words for
the first piece (to start talking early) and `PIECE_MAX_WORDS` later, when no text came for
`IDLE_FLUSH_S`, or at Eos. So the first audio waits for the first few words (or a short pause from the
client) plus the model's own start-up (its 2-word look-ahead and audio delay), instead of the whole
text. Short pieces start sooner but each seam is a fresh generation, with its own start and end
silence and intonation; sentence-sized pieces sound natural, hence the rules above. Up to
`PIECES_AHEAD` pieces are generated ahead of the one being sent, so seams do not wait for a worker:
a piece's slot frees only once its last message has been sent, so while a send blocks no further
piece starts. (Behind Ray Serve a send returns once the replica has queued the message for the
proxy, which applies no back-pressure: a client that stops reading does not block it, and its audio
waits in Serve's queues.) Whatever the client does, one session's text totals at most
`max_text_chars` (`Error` beyond), which bounds the work one socket can ask for.
True word-by-word input (feeding words into a running generation) would need per-slot streaming in
moshi's LMGen on the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import msgpack
import numpy as np
from fastapi import APIRouter, WebSocket
from ray.serve.exceptions import BackPressureError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deployments.synthesis import FRAME_SAMPLES, SAMPLE_RATE, AudioChunk, SynthesisDone, WordSpoken
from deployments.text_chunks import CLAUSE_END_RE, SENTENCE_END_RE

from .. import audio, openai_voices
from ..api_keys import is_allowed, presented_key
from ..context import IngressContext
from ..errors import APIError, error_response
from ..schemas import CFG_VALUES
from ..workers import WorkerError

log = logging.getLogger(__name__)
router = APIRouter()

FORMATS = ("PcmMessagePack", "Pcm", "OggOpus", "OggOpusMessagePack")
DEFAULT_FORMAT = "PcmMessagePack"
FIRST_PIECE_MAX_WORDS = 8
PIECE_MAX_WORDS = 30
CLAUSE_MIN_WORDS = 4  # a comma cuts a piece only after this many words
IDLE_FLUSH_S = 0.3
PIECES_AHEAD = 2
RECEIVE_TIMEOUT_S = 60.0  # no message for this long before Eos ends the session (moshi-server: 30 s)

# Words, keeping `<break time="..."/>` tags whole.
_WORD_RE = re.compile(r'<break\s+time="[^"]*"\s*/?>|\S+')


class SessionError(Exception):
    """Ends the session with an Error message carrying this text."""


class TextSegmenter:
    """Collects words as they arrive and cuts them into the pieces sent to the workers."""

    def __init__(self):
        self.words: list[str] = []
        self.pieces_cut = 0

    def _limit(self) -> int:
        return FIRST_PIECE_MAX_WORDS if self.pieces_cut == 0 else PIECE_MAX_WORDS

    def _cut(self, count: int) -> str:
        piece, self.words = " ".join(self.words[:count]), self.words[count:]
        self.pieces_cut += 1
        return piece

    def add(self, text: str) -> list[str]:
        """Adds words; returns the pieces now complete."""
        ready = []
        for word in _WORD_RE.findall(text):
            self.words.append(word)
            count = len(self.words)
            if (SENTENCE_END_RE.search(word) or count >= self._limit()
                    or (count >= CLAUSE_MIN_WORDS and CLAUSE_END_RE.search(word))):
                ready.append(self._cut(count))
        return ready

    def flush(self) -> str | None:
        """Whatever is buffered, as a piece (at an idle gap or at the end)."""
        return self._cut(len(self.words)) if self.words else None


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


class PieceRun:
    """One piece generating on a worker; its events are queued until the sender reaches it."""

    _END = object()

    def __init__(self, ctx: IngressContext, request: dict):
        self.events: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.create_task(self._pump(ctx, request))

    async def _pump(self, ctx: IngressContext, request: dict) -> None:
        try:
            async for event in ctx.workers.stream(request):
                self.events.put_nowait(event)
        except Exception as exc:  # noqa: BLE001 - WorkerError, BackPressureError...: the sender raises it
            self.events.put_nowait(exc)
        finally:  # a cancelled task closed the worker stream above: the worker dropped the request
            self.events.put_nowait(self._END)

    async def drain(self):
        """The piece's events (or the exception that ended it), as they come."""
        while (event := await self.events.get()) is not self._END:
            yield event


def _reason(message: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return message.encode()[:120].decode(errors="ignore")


def _close_code(exc: BaseException) -> int:
    """1008 for the client's mistakes, 1013 (try again later) for busy or unavailable workers,
    1011 for the rest."""
    if isinstance(exc, (SessionError, APIError)) or (isinstance(exc, WorkerError) and exc.kind == "invalid"):
        return 1008
    if isinstance(exc, BackPressureError) or (isinstance(exc, WorkerError) and exc.kind == "unavailable"):
        return 1013
    return 1011


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, WorkerError):
        return exc.message
    if isinstance(exc, BackPressureError):
        return "all TTS workers are busy and their queues are full; retry shortly"
    if isinstance(exc, (APIError, SessionError)):
        return str(exc)
    return f"internal error: {exc.__class__.__name__}"


class KyutaiSession:
    def __init__(self, ctx: IngressContext, websocket: WebSocket, fmt: str, voice: str, cfg_coef: float | None):
        self.ctx, self.websocket = ctx, websocket
        self.voice, self.cfg_coef = voice, cfg_coef
        self.output = OutputEncoder(fmt)
        self.inbox: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue()
        self.pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self.runs: asyncio.Queue[PieceRun | None] = asyncio.Queue()
        # The piece being sent and PIECES_AHEAD more; `forward` frees a slot once a piece is sent.
        self.slots = asyncio.Semaphore(PIECES_AHEAD + 1)
        self.started: set[PieceRun] = set()
        self.samples_sent = 0
        self.text_chars = 0

    async def _send(self, data: bytes | None) -> None:
        if data:
            try:
                await self.websocket.send_bytes(data)
            except (RuntimeError, OSError) as exc:  # the socket is closed or closing
                raise WebSocketDisconnect(1006) from exc

    # ---- client -> pieces --------------------------------------------------------------------
    async def _read(self) -> tuple[str, str | None]:
        """The next client message as ("text", words) or ("eos", None)."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("text") is not None:
            return "text", message["text"]
        data = message.get("bytes") or b""
        if data == b"\0":
            return "eos", None
        try:
            decoded = msgpack.unpackb(data)
        except Exception:
            raise SessionError("invalid message: expected MessagePack {\"type\": \"Text\" | \"Eos\", ...}") from None
        kind = decoded.get("type") if isinstance(decoded, dict) else None
        if kind == "Text" and isinstance(decoded.get("text"), str):
            return "text", decoded["text"]
        if kind == "Eos":
            return "eos", None
        if kind == "Voice":
            raise SessionError("Voice messages (custom voice embeddings) are not supported: "
                               "choose a voice with the voice query parameter")
        raise SessionError(f"invalid message type {kind!r}: expected Text or Eos")

    async def read_messages(self) -> None:
        """Reads every client message into `self.inbox`. It keeps reading after Eos (ignoring what
        comes) so that a client leaving is noticed at once and cancels the generation. All reads
        happen in this task: the idle-gap timer below never cancels a read midway."""
        eos = False
        while True:
            kind, text = await self._read()
            if not eos:
                self.inbox.put_nowait((kind, text))
                eos = kind == "eos"

    async def receive_text(self) -> None:
        segmenter = TextSegmenter()
        while True:
            # While words wait in the buffer, a pause from the client sends them on.
            wait = IDLE_FLUSH_S if segmenter.words else RECEIVE_TIMEOUT_S
            try:
                kind, text = await asyncio.wait_for(self.inbox.get(), timeout=wait)
            except asyncio.TimeoutError:
                if not segmenter.words:
                    raise SessionError(f"no message for {RECEIVE_TIMEOUT_S:g} s before Eos") from None
                await self.pieces.put(segmenter.flush())
                continue
            if kind == "eos":
                rest = segmenter.flush()
                if rest:
                    await self.pieces.put(rest)
                await self.pieces.put(None)
                return
            self.text_chars += len(text)
            limit = self.ctx.settings.max_text_chars
            if self.text_chars > limit:
                raise SessionError(f"the text of one session is limited to {limit} characters "
                                   f"(max_text_chars); this one sent {self.text_chars}")
            for piece in segmenter.add(text):
                await self.pieces.put(piece)

    # ---- pieces -> worker requests, a few ahead ------------------------------------------------
    async def launch(self) -> None:
        while (piece := await self.pieces.get()) is not None:
            request = {"text": self.ctx.check_text(piece), "voice": self.voice, "cfg_coef": self.cfg_coef}
            await self.slots.acquire()  # released by `forward` once the piece has been sent
            run = PieceRun(self.ctx, request)
            self.started.add(run)
            await self.runs.put(run)
        await self.runs.put(None)

    # ---- worker events -> client, in order -----------------------------------------------------
    async def forward(self) -> None:
        while (run := await self.runs.get()) is not None:
            offset_s = self.samples_sent / SAMPLE_RATE
            async for event in run.drain():
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, AudioChunk):
                    self.samples_sent += event.pcm.shape[0]
                    for start in range(0, event.pcm.shape[0], FRAME_SAMPLES):  # one message per frame
                        await self._send(self.output.audio(event.pcm[start:start + FRAME_SAMPLES]))
                elif isinstance(event, WordSpoken):
                    await self._send(self.output.message({
                        "type": "Text", "text": event.word.word, "start_s": round(offset_s + event.word.start_s, 3),
                        "stop_s": round(offset_s + event.word.end_s, 3)}))
                elif isinstance(event, SynthesisDone):
                    break
            self.started.discard(run)
            self.slots.release()  # this piece is out: one more may start generating
        await self._send(self.output.audio(np.zeros(0, np.float32), final=True))

    async def run(self) -> None:
        await self._send(self.output.message({"type": "Ready"}))
        work = [asyncio.create_task(coro) for coro in (self.receive_text(), self.launch(), self.forward())]
        reader = asyncio.create_task(self.read_messages())
        try:
            # Done when the last piece is sent; stopped by the first failure of any task (a client
            # gone, a bad message, a worker error).
            pending = {*work, reader}
            while not all(task.done() for task in work):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()
        finally:
            for task in (*work, reader):
                task.cancel()
            for run in list(self.started):
                run.task.cancel()  # closes its worker stream: the worker drops the request
            await asyncio.gather(*work, reader, *(run.task for run in self.started), return_exceptions=True)

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
        if cfg_coef not in CFG_VALUES:
            raise APIError(400, f"cfg_alpha must be one of {', '.join(f'{v:g}' for v in CFG_VALUES)}",
                           param="cfg_alpha", code="invalid_cfg")
    return fmt, query.get("voice") or None, cfg_coef


async def _refuse(websocket: WebSocket, error: APIError) -> None:
    """Refuses the upgrade with an HTTP error, as moshi-server does (401 for a bad key, 400 for a
    bad query), or closes with a policy-violation code where the server cannot send HTTP here."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(error.status, error.message, error.param, error.code))
    else:
        await websocket.close(code=1008, reason=_reason(error.message))


@router.websocket("/api/tts_streaming")
async def tts_streaming(websocket: WebSocket) -> None:
    ctx: IngressContext = websocket.app.state.ctx
    query = websocket.query_params
    if not is_allowed(ctx.settings.api_keys, presented_key(websocket.headers, query)):
        return await _refuse(websocket, APIError(401, "missing or invalid API key (kyutai-api-key header)",
                                                 code="invalid_api_key"))
    try:
        fmt, voice_name, cfg_coef = _parse_query(query)
    except APIError as exc:
        return await _refuse(websocket, exc)
    await websocket.accept()
    session = KyutaiSession(ctx, websocket, fmt, ctx.settings.default_voice, cfg_coef)
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
    if websocket.application_state == WebSocketState.CONNECTED:
        await websocket.close(code=1000)
