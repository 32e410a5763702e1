"""`/api/asr-streaming`: Kyutai's moshi-server ASR WebSocket (the protocol: serve_app/protocols/kyutai_asr.py).

This route owns the socket: the handshake's checks (origin, model; API keys are checked before it,
serve_app/security/api_keys.py), the cap on open sessions per ingress replica (shared with the TTS
socket: `max_websocket_sessions`), and how a session ends. What happens within one
(service/asr_session.py) never sees the socket. WebSocket pings are the proxy's (uvicorn sends
one every 20 s on every socket, idle or not).
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deployments.protocol import FailureKind, TranscriptionRequest

from ..context import IngressContext
from ..errors import APIError, refuse_websocket
from ..protocols import kyutai, kyutai_asr
from ..service.asr_session import AsrSession, failure
from ..service.transcription import listening_model
from .websocket import Connection, cross_site_refusal, full_house

log = logging.getLogger(__name__)
router = APIRouter()
WARM_STATES = ("ready", "offloaded")


async def _end_with_error(websocket: WebSocket, kind: FailureKind, message: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_bytes(kyutai_asr.error(message))
        await websocket.close(code=kyutai.close_code(kind), reason=kyutai.close_reason(message))


@router.websocket("/api/asr-streaming")
async def asr_streaming(websocket: WebSocket) -> None:
    ctx: IngressContext = websocket.app.state.ctx
    if (refused := cross_site_refusal(websocket, ctx)) is not None:
        return await refuse_websocket(websocket, refused)
    try:
        model = listening_model(ctx, websocket.query_params.get("model") or None)
    except APIError as exc:
        return await refuse_websocket(websocket, exc)
    await websocket.accept()
    settings = ctx.settings
    if (full := full_house(websocket, ctx)) is not None:
        return await _end_with_error(websocket, FailureKind.OVERLOADED, full)
    open_sessions = websocket.app.state.websocket_sessions
    max_samples = settings.asr_max_samples_per_message
    connection = Connection(websocket, lambda frame: kyutai_asr.parse_frame(frame, max_samples))
    open_sessions.add(connection)

    async def warm() -> bool:
        """Every replica of the model is up with the model loaded: a wait for a row is a full house."""
        reports = [r for r in await ctx.cluster.replicas() if r.get("deployment") == model.deployment]
        return bool(reports) and all(r.get("model", {}).get("state") in WARM_STATES for r in reports)

    try:
        stream = model.workers.open_audio_stream(TranscriptionRequest(stream_audio=True, model=model.name))
        session = AsrSession(connection, stream, warm, free_row_wait_s=settings.asr_free_row_wait_s,
                             idle_timeout_s=settings.asr_idle_timeout_s, max_session_s=settings.asr_max_session_s)
        await session.run()
    except WebSocketDisconnect:
        log.info("asr-streaming: client went away; its stream was cancelled")
        return
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the client
        return await _end_with_error(websocket, *failure(exc))
    finally:
        open_sessions.discard(connection)
    if websocket.application_state == WebSocketState.CONNECTED:
        await websocket.close(code=1000)
