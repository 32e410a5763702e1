"""Audio on the ingress: the output formats and their encoders, tempo, captions, and the
encoding meter. `serve_app.audio.FORMATS` / `encode` / `StreamEncoder` are the encoder API."""

from .encoding import FORMATS, AudioFormat, StreamEncoder, costly, encode, to_int16

__all__ = ["FORMATS", "AudioFormat", "StreamEncoder", "costly", "encode", "to_int16"]
