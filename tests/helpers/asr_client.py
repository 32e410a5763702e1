"""The project's own client of Kyutai's ASR WebSocket (`/api/asr-streaming`), for the tests: audio
and markers out as MessagePack, the server's messages back as dicts."""

from __future__ import annotations

import msgpack
import numpy as np
import websockets

from deployments.protocol import FRAME_SAMPLES


def asr_url(http_url: str, **query) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return http_url.replace("http://", "ws://") + "/api/asr-streaming" + (f"?{params}" if params else "")


class AsrClient:
    def __init__(self, websocket):
        self.ws = websocket
        self.received: list[dict] = []

    @classmethod
    async def connect(cls, http_url: str, **query) -> "AsrClient":
        return cls(await websockets.connect(asr_url(http_url, **query), max_size=None))

    async def send_audio(self, pcm: np.ndarray, chunk: int = FRAME_SAMPLES) -> None:
        """`pcm` in messages of `chunk` samples, as fast as the socket takes them."""
        for start in range(0, len(pcm), chunk):
            piece = pcm[start:start + chunk]
            await self.ws.send(msgpack.packb({"type": "Audio", "pcm": [float(x) for x in piece]},
                                             use_single_float=True))

    async def marker(self, marker_id: int) -> None:
        await self.ws.send(msgpack.packb({"type": "Marker", "id": marker_id}))

    async def end(self) -> None:
        await self.ws.send(b"\0")

    async def next(self, timeout_s: float = 60) -> dict:
        import asyncio

        message = msgpack.unpackb(await asyncio.wait_for(self.ws.recv(), timeout_s))
        self.received.append(message)
        return message

    async def until(self, kind: str, timeout_s: float = 60) -> dict:
        """Reads messages until one of type `kind` (an Error on the way is returned too)."""
        while True:
            message = await self.next(timeout_s)
            if message["type"] in (kind, "Error"):
                return message

    async def rest(self, timeout_s: float = 60) -> list[dict]:
        """Every message until the server closes the socket."""
        try:
            while True:
                await self.next(timeout_s)
        except websockets.ConnectionClosed:
            return self.received

    async def close(self) -> None:
        await self.ws.close()
