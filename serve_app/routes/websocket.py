"""`/api/tts_streaming`: Kyutai's moshi-server TTS WebSocket (the protocol: serve_app/protocols/kyutai.py).

This route owns the socket: the handshake's checks (origin, query; API keys are checked before it,
serve_app/security/api_keys.py), the cap on open sessions per ingress replica, and how a session
ends. What happens within one (service/kyutai_session.py) never sees the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Callable

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deployments.protocol import FailureKind

from ..context import IngressContext
from ..errors import APIError, refuse_websocket
from ..protocols import kyutai
from ..security import cross_site
from ..service import openai_voices, speech
from ..service.voice_store import is_clip_id
from ..service.kyutai_session import KyutaiSession, failure
from ..service.worker_client import TextStream

log = logging.getLogger(__name__)
router = APIRouter()


class Connection:
    """The socket as a session uses it: typed messages in, bytes out; WebSocketDisconnect once
    the client is gone."""

    def __init__(self, websocket: WebSocket, parse: Callable[[bytes | str], object]):
        self.websocket, self.parse = websocket, parse  # parse: a frame -> the protocol's message

    async def receive(self):
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        return self.parse((message.get("bytes") or b"") if text is None else text)

    async def send(self, data: bytes) -> None:
        try:
            await self.websocket.send_bytes(data)
        except (RuntimeError, OSError) as exc:  # the socket is closed or closing
            raise WebSocketDisconnect(1006) from exc


async def _end_with_error(connection: Connection, output: kyutai.OutputEncoder, kind: FailureKind,
                          message: str) -> None:
    """Tells the client why the session ends (if it is still there), then closes."""
    with contextlib.suppress(Exception):
        data = output.error(message)
        if data:
            await connection.send(data)
        await connection.websocket.close(code=kyutai.close_code(kind), reason=kyutai.close_reason(message))


def cross_site_refusal(websocket: WebSocket, ctx: IngressContext) -> APIError | None:
    """The 403 for a handshake from another site's page (both Kyutai sockets), else None."""
    reason = cross_site.refusal(websocket.headers, ctx.settings.allowed_origins)
    return APIError(403, reason, code="cross_origin") if reason is not None else None


def full_house(websocket: WebSocket, ctx: IngressContext) -> str | None:
    """Why a new session is refused when this ingress replica holds `max_websocket_sessions` of
    either socket already, else None."""
    cap = ctx.settings.max_websocket_sessions
    if len(websocket.app.state.websocket_sessions) >= cap:
        return f"this server holds {cap} sessions already; retry shortly"
    return None


@router.websocket("/api/tts_streaming")
async def tts_streaming(websocket: WebSocket) -> None:
    ctx: IngressContext = websocket.app.state.ctx
    # With api_keys set, a handshake without a valid key never gets here (serve_app/security/api_keys.py).
    if (refused := cross_site_refusal(websocket, ctx)) is not None:
        return await refuse_websocket(websocket, refused)
    try:
        options = kyutai.parse_query(websocket.query_params)
        await ctx.fetch_voice(options.voice)
        uploaded = options.model is None and options.voice is not None and is_clip_id(options.voice.strip())
        # An uploaded voice speaks with its own model when the query names none.
        model = ctx.model_for(ctx.uploaded_voice(options.voice.strip()).model if uploaded else options.model)
        model.check_cfg(options.cfg_coef, param="cfg_alpha", status=400)
    except APIError as exc:
        return await refuse_websocket(websocket, exc)
    await websocket.accept()
    max_text_chars = model.settings.max_text_chars
    connection = Connection(websocket, lambda frame: kyutai.parse_frame(frame, max_text_chars))
    output = kyutai.OutputEncoder(options.format)
    if (full := full_house(websocket, ctx)) is not None:
        return await _end_with_error(connection, output, FailureKind.OVERLOADED, full)
    open_sessions = websocket.app.state.websocket_sessions
    open_sessions.add(connection)
    try:
        voice = None  # the default voice
        if options.voice is not None:  # the catalog may ask the hub: not on the event loop
            voice = await asyncio.to_thread(openai_voices.resolve_voice, ctx, options.voice, model=model)

        def open_stream(first_words: str, voice_embedding: list | None) -> TextStream:
            request = speech.synthesis_request(ctx, first_words, voice, options.cfg_coef, model=model.name,
                                               stream_text=True, voice_embedding=voice_embedding,
                                               cfg_param="cfg_alpha")
            # Its audio streams to a player: paced to real time (deployments/engine/pacing.py).
            return model.workers.open_text_stream(dataclasses.replace(request, playback_rate=1.0))

        session = KyutaiSession(connection, output, open_stream, max_text_chars=model.settings.max_text_chars,
                                idle_timeout_s=ctx.settings.websocket_idle_timeout_s)
        await session.run()
    except WebSocketDisconnect:
        log.info("tts_streaming: client went away; its generation was cancelled")
        return
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the client
        return await _end_with_error(connection, output, *failure(exc))
    finally:
        open_sessions.discard(connection)
    if websocket.application_state == WebSocketState.CONNECTED:
        await websocket.close(code=1000)
