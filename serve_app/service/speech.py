"""Synthesis as the routes (REST, OpenAI, MCP, UI) use it: validated request in, audio out."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import numpy as np
from ray.serve.exceptions import BackPressureError

from deployments.protocol import FailureKind, SynthesisDone

from .. import audio
from ..context import IngressContext
from ..errors import APIError
from .worker_client import WorkerError

RETRY_AFTER_S = "5"


def voice_header(voice: str) -> str:
    """A voice id as an HTTP header value: headers are Latin-1, voice ids may be any script."""
    return urllib.parse.quote(voice, safe="/@._- ")


def api_error_for(exc: WorkerError) -> APIError:
    if exc.kind == FailureKind.INVALID:
        # Same statuses as the ingress's own checks: 400 for a voice, 422 for a malformed field.
        param = exc.param or "text"
        return APIError(400 if param == "voice" else 422, exc.message, param=param, code="invalid_request")
    if exc.kind == FailureKind.UNAVAILABLE:
        return APIError(503, f"the TTS model is unavailable: {exc.message}", code="model_unavailable",
                        headers={"Retry-After": "30"})
    if exc.kind == FailureKind.TIMEOUT:
        return APIError(503, exc.message, code="worker_timeout", headers={"Retry-After": "30"})
    if exc.kind == FailureKind.CRASHED:
        return APIError(503, exc.message, code="worker_failed", headers={"Retry-After": RETRY_AFTER_S})
    return APIError(500, exc.message, code="generation_failed")


OVERLOADED = APIError(503, "all TTS workers are busy and their queues are full; retry shortly",
                      code="overloaded", headers={"Retry-After": RETRY_AFTER_S})


@dataclass
class Speech:
    pcm: np.ndarray
    done: SynthesisDone

    @property
    def served_by(self) -> dict:
        return self.done.served_by

    def headers(self) -> dict:
        return {"X-TTS-GPU": str(self.served_by.get("gpu")), "X-TTS-Replica": str(self.served_by.get("replica")),
                "X-TTS-Node": str(self.served_by.get("node_id")),
                "X-TTS-Duration": f"{self.done.duration_s:.3f}", "X-TTS-Voice": voice_header(self.done.voice)}


def worker_request(ctx: IngressContext, text: str, voice: str | None, cfg_coef: float | None) -> dict:
    return {"text": ctx.check_text(text), "voice": ctx.check_voice(voice), "cfg_coef": cfg_coef}


async def synthesize(ctx: IngressContext, text: str, voice: str | None = None,
                     cfg_coef: float | None = None) -> Speech:
    """Whole-clip synthesis; raises APIError with the right status for every failure."""
    request = worker_request(ctx, text, voice, cfg_coef)
    try:
        pcm, done = await ctx.workers.synthesize(request)
    except WorkerError as exc:
        raise api_error_for(exc) from None
    except BackPressureError:
        raise OVERLOADED from None
    return Speech(pcm, done)


def encode_and_maybe_save(ctx: IngressContext, speech: Speech, fmt: str, save: bool) -> tuple[bytes, str | None]:
    data = audio.encode(speech.pcm, fmt)
    name = ctx.outputs.save(data, audio.FORMATS[fmt].extension) if save else None
    return data, name
