"""Audio on the ingress: the output formats (`formats.py`: the one list) and their encoders, tempo, captions, and the
encoding meter. `serve_app.audio.FORMATS` / `encode` / `StreamEncoder` are the encoder API."""

from .encoding import StreamEncoder, costly, encode, to_int16
from .formats import FORMATS, AudioFormat, AudioFormatName, binary_content

__all__ = ["FORMATS", "AudioFormat", "AudioFormatName", "StreamEncoder", "binary_content", "costly", "encode",
           "to_int16"]
