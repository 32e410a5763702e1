"""A Kyutai socket's client as a session sees it (serve_app/routes/websocket.py's Connection), for
the session unit tests: typed messages in, the server's MessagePack messages kept decoded."""

from __future__ import annotations

import asyncio

import msgpack


class FakeConnection:
    """The client: `messages` arrive in order, then nothing (it stays connected)."""

    def __init__(self, *messages):
        self.incoming: asyncio.Queue = asyncio.Queue()
        for message in messages:
            self.incoming.put_nowait(message)
        self.sent: list[dict] = []

    async def receive(self):
        return await self.incoming.get()

    async def send(self, data: bytes) -> None:
        self.sent.append(msgpack.unpackb(data))
