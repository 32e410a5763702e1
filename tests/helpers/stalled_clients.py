"""Clients that ask for a long stream and then stop reading while keeping their connection open,
as a stalled phone or a stuck player does: raw TCP sockets with a small receive buffer, so that
the server's writes stop at once (an HTTP library or a WebSocket client would keep reading into
its own buffers). Used by tests/serve/test_stream_pacing.py and benchmarks/stalled_clients.py."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit

import msgpack

RECEIVE_BUFFER = 4096  # bytes: the kernel rounds it up a little; the window closes after that


def _connect(url: str) -> tuple[socket.socket, str]:
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connect: the window
    sock.settimeout(30)
    sock.connect((parts.hostname, parts.port or 80))
    return sock, f"{parts.hostname}:{parts.port or 80}"


def stalled_post(url: str, path: str, body: dict) -> socket.socket:
    """POSTs `body` as JSON to `url` + `path` and reads nothing of the answer."""
    sock, host = _connect(url)
    data = json.dumps(body).encode()
    sock.sendall(f"POST {urlsplit(url).path.rstrip('/')}{path} HTTP/1.1\r\nHost: {host}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def _masked_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One final WebSocket frame from a client (clients mask theirs, RFC 6455 5.3)."""
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x80 | opcode])
    if size < 126:
        header += bytes([0x80 | size])
    elif size < 1 << 16:
        header += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stalled_websocket(url: str, text: str) -> socket.socket:
    """Opens Kyutai's TTS WebSocket at `url`, sends `text` and its end (Eos), and reads nothing
    after the handshake's answer."""
    sock, host = _connect(url)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {urlsplit(url).path.rstrip('/')}/api/tts_streaming HTTP/1.1\r\nHost: {host}\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("the server closed the WebSocket handshake")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"the WebSocket handshake was refused: {answer[:200]!r}")
    for message in ({"type": "Text", "text": text}, {"type": "Eos"}):
        sock.sendall(_masked_frame(msgpack.packb(message)))
    return sock


def close_all(sockets: list[socket.socket]) -> None:
    """The clients leave (an abortive close: nothing more is read or sent)."""
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
