"""MCP over streamable HTTP at `/mcp`: the service's actions as tools for AI agents.

The tools reuse the REST code paths (validation, synthesis, saved files, GPU status), so an agent
and a REST client get the same answers and the same errors. Errors become MCP tool errors
(`isError: true`) with the message a REST client would read; they never end the session.

Serving (ARCHITECTURE.md, "MCP inside Serve"): the MCP session manager needs a running task group, which only a lifespan can
provide, and Serve does not run the lifespan of a mounted sub-app. So `lifespan` (a hook of the
FastAPI app's own lifespan) builds the server and runs its session manager, and the `/mcp` routes
hand requests to whichever manager is running. The server is stateless: any ingress replica can
answer any request, since no session lives in one replica's memory.
"""

# No `from __future__ import annotations`: FastMCP reads the tools' annotations, whose descriptions
# are built from settings when the server is built.
import asyncio
import base64
import contextlib
import inspect
import json
import logging
import urllib.parse
from typing import Annotated, Any

from fastapi import FastAPI
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import AudioContent, CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError
from starlette.routing import Route

from deployments.protocol import SAMPLE_RATE

from .. import audio
from ..security.api_keys import use_key_of
from ..service import speech, transcription, voice_uploads
from ..context import IngressContext
from ..errors import APIError, error_response
from ..protocols.mcp import SpeechResult, VoiceList
from ..protocols.transcription import SpeechToTextResult, joined
from ..service.served_models import cfg_rules
from ..service.status import gpu_status
from ..service.voices import voice_listing
from ..audio.formats import AudioFormatName
from ..settings import AppSettings

log = logging.getLogger(__name__)

MCP_PATHS = ("/mcp", "/mcp/")

INSTRUCTIONS = """Text to speech with Kyutai TTS on a GPU cluster. Call list_voices to pick a voice,
then text_to_speech: it returns the audio itself (base64, with its MIME type), its duration, the word
timestamps and, unless called with save=false, a URL to download the same file. speech_to_text
transcribes audio (base64, or such a URL) into text with timed words. get_gpu_status and
offload_gpu inspect and free the GPUs (the model reloads by itself on the next request)."""


# ---- the server -----------------------------------------------------------------------------
def transport_security(settings: AppSettings) -> TransportSecuritySettings:
    """Host/Origin checks against DNS rebinding; "*" in allowed_hosts turns them off (for a
    deployment behind a proxy that checks hosts itself)."""
    if "*" in settings.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=list(settings.allowed_hosts),
                                     allowed_origins=list(settings.allowed_origins))


def tool_error(exc: APIError) -> ToolError:
    retry = exc.headers.get("Retry-After")
    return ToolError(f"{exc.message} (retry after {retry} s)" if retry else exc.message)


class TTSServer(FastMCP):
    api_keys: list[str] = []  # the service's (set by build_server)

    async def call_tool(self, name: str, arguments: dict[str, Any]):
        """Every failure as a tool error an agent can act on, and nothing internal: argument errors
        in one line per field ("cfg_coef: Input should be a multiple of 0.5", not pydantic's report
        with links), APIErrors with the message a REST client reads, anything unexpected as a
        generic message (details, which may hold paths or Ray ids, only in the server log)."""
        try:
            request = self.get_context().request_context.request
        except (LookupError, ValueError, AttributeError):  # not inside an HTTP request
            request = None
        if request is not None:  # who the caller is (its voices): its task is not the request's
            use_key_of(request.headers, request.query_params, self.api_keys)
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            cause = exc.__cause__  # FastMCP wraps whatever a tool raised in a ToolError
            if cause is None:
                raise  # FastMCP's own (unknown tool): says nothing internal
            if isinstance(cause, ValidationError):
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                                     for e in cause.errors())
                raise ToolError(f"invalid arguments for {name}: {problems}") from None
            if isinstance(cause, APIError):
                raise tool_error(cause) from None
            log.error("MCP tool %s failed", name, exc_info=cause)
            raise ToolError(f"{name} failed with an internal error; it is logged on the server. "
                            "Retry, or report it to the service's operators.") from None


def tool(server: FastMCP, **hints):
    """Registers a tool; its description is the function's docstring without the indentation."""
    def register(fn):
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__),
                        annotations=ToolAnnotations(openWorldHint=False, **hints))
        return fn
    return register


def cfg_field(ctx: IngressContext):
    """text_to_speech's cfg_coef as the app's models take it: their one rule stated exactly, or
    the bounds of several (each model's own values then checked with the request, a tool error
    naming them); the description says each model's values and default."""
    rules = cfg_rules(ctx.models.values())
    per_model = "; ".join(f"{m.name}: {m.cfg_rule.describe() if m.cfg_rule else 'none'}, default "
                          f"{m.settings.default_cfg_coef:g}" for m in ctx.models.values())
    description = f"How closely to follow the voice. Values and default depend on the model ({per_model})."
    if len(rules) == 1 and (rules[0].values is None or rules[0].step() is not None):
        return Field(ge=rules[0].low, le=rules[0].high, multiple_of=rules[0].step(), description=description)
    if rules:
        return Field(ge=min(r.low for r in rules), le=max(r.high for r in rules), description=description)
    return Field(description=description)


def build_server(ctx: IngressContext) -> FastMCP:
    settings = ctx.settings
    server = TTSServer("kyutai-tts", instructions=INSTRUCTIONS, stateless_http=True, json_response=True,
                       transport_security=transport_security(settings))
    server.api_keys = list(settings.api_keys)

    @tool(server, title="Text to speech", readOnlyHint=False, destructiveHint=False, idempotentHint=False)
    async def text_to_speech(
        text: Annotated[str, Field(description=(
            f"The text to speak, at most {settings.max_text_chars} characters. "
            'Pauses: <break time="0.5s"/>.'))],
        mcp_context: Context,
        voice: Annotated[str | None, Field(description=(
            f"Voice id from list_voices; default {settings.default_voice}."))] = None,
        format: Annotated[AudioFormatName, Field(description=(
            "Audio format. pcm is raw signed 16-bit little-endian, 24 kHz mono."))] = "wav",
        cfg_coef: Annotated[float | None, cfg_field(ctx)] = None,
        save: Annotated[bool, Field(description=(
            "true (default): also save the file on the server and return its download `url`, a "
            "short link to hand to a user or another tool instead of the audio bytes. false: no "
            "file is written and `url` is null; the audio comes only inline."))] = True,
        model: Annotated[str | None, Field(max_length=200, description=(
            f"A model's name or id (see list_voices' models); default {settings.default_model_name}."))] = None,
    ) -> Annotated[CallToolResult, SpeechResult]:
        """Speak a text: returns the audio itself (base64 audio content with its MIME type) and, as
        structured content, its duration, the voice used, word timestamps and (save=true, the
        default) a download URL, kept for a limited time. Pass the URL on rather than the base64
        audio, which is large (about 64 kB per second of WAV). With save=false nothing is stored
        on the server."""
        result = await speech.synthesize(ctx, text, voice, cfg_coef, model=model)  # APIErrors: see call_tool
        data, name = await asyncio.to_thread(speech.encode_and_maybe_save, ctx, result, format, save)
        request = mcp_context.request_context.request
        facts = SpeechResult(
            url=str(request.url_for("get_output", name=name)) if name else None, format=format,
            mime_type=audio.FORMATS[format].media_type, sample_rate=SAMPLE_RATE,
            duration_s=result.done.duration_s, voice=result.done.voice,
            gpu=result.served_by.get("gpu"), replica=result.served_by.get("replica"),
            words=[w.to_dict() for w in result.done.words],
        ).model_dump(mode="json")
        return CallToolResult(
            content=[AudioContent(type="audio", data=base64.b64encode(data).decode("ascii"),
                                  mimeType=facts["mime_type"]),
                     TextContent(type="text", text=json.dumps(facts))],
            structuredContent=facts,
        )

    @tool(server, title="List voices", readOnlyHint=True)
    async def list_voices(
        filter: Annotated[str | None, Field(max_length=100, description=(
            "Keep voices whose id contains this text (case-insensitive), or whose language is this "
            "code (e.g. fr). Omit for all voices."))] = None,
        model: Annotated[str | None, Field(max_length=200, description=(
            f"The model whose voices to list (a name from `models`); default {settings.default_model_name}."))] = None,
    ) -> VoiceList:
        """The voices text_to_speech accepts for a model, its default one, and every model's name."""
        listing = await voice_listing(ctx, filter, model=model)
        return VoiceList(default=listing["default"], voices=listing["voices"], model=listing["model"],
                         models=listing["models"], uploaded=listing["uploaded"],
                         uploads_allowed=listing["uploads_allowed"], attribution=listing.get("attribution"))

    @tool(server, title="Clone a voice", readOnlyHint=False, destructiveHint=False, idempotentHint=True)
    async def clone_voice(
        audio_base64: Annotated[str, Field(max_length=settings.mcp_max_body_bytes, description=(
            f"The clip, base64: any audio format FFmpeg reads, {settings.voice_clip_min_s:g} to "
            f"{settings.voice_clip_max_s:g} s of sound, at most {settings.max_voice_clip_bytes} bytes."))],
        name: Annotated[str, Field(min_length=1, max_length=voice_uploads.MAX_NAME_CHARS, description=(
            "A name for the voice."))],
        consent: Annotated[str, Field(min_length=1, max_length=voice_uploads.MAX_CONSENT_CHARS, description=(
            "Who agreed to have their voice cloned, and how (stored with the voice)."))],
        model: Annotated[str | None, Field(max_length=200, description=(
            "A cloning model's name (default: the first cloning model)."))] = None,
    ) -> dict[str, Any]:
        """Make a voice from an audio clip of a speaker who consented: returns {id, name, model,
        duration_s, created}; pass `id` as text_to_speech's `voice`. The voice is yours only (your
        API key's); list_voices shows it under `uploaded`."""
        try:
            data = base64.b64decode(audio_base64, validate=True)
        except ValueError:
            raise APIError(422, "audio_base64 is not base64", param="audio_base64", code="invalid_base64") from None
        if len(data) > settings.max_voice_clip_bytes:
            raise APIError(413, f"the clip is larger than {settings.max_voice_clip_bytes} bytes",
                           param="audio_base64", code="payload_too_large")
        record, _ = await voice_uploads.create_voice(ctx, data, name, consent, model)
        return record.public()

    @tool(server, title="Speech to text", readOnlyHint=True)
    async def speech_to_text(
        mcp_context: Context,
        audio_base64: Annotated[str | None, Field(max_length=settings.mcp_max_body_bytes, description=(
            f"The audio, base64: any format FFmpeg reads, at most {settings.max_transcription_bytes} bytes and "
            f"{settings.transcription_max_s:g} s. Give this or `url`."))] = None,
        url: Annotated[str | None, Field(max_length=2000, description=(
            "Instead of audio_base64: a file this service saved (the `url` text_to_speech returned). "
            "Other hosts are never fetched."))] = None,
        model: Annotated[str | None, Field(max_length=200, description=(
            "A speech-to-text model's name (default: the first one)."))] = None,
        language: Annotated[str | None, Field(max_length=20, description=(
            "ISO-639-1 code of a language the model hears (optional: it hears each of its own)."))] = None,
    ) -> SpeechToTextResult:
        """Transcribe speech: returns the text and each word with its start and end (seconds), the
        audio's duration and the model that heard it. The audio comes inline (base64) or as the URL
        of a file this service saved (so an agent can check what text_to_speech said)."""
        served = transcription.listening_model(ctx, model)
        transcription.check_language(served, language)
        request = mcp_context.request_context.request
        param = "url" if url is not None else "audio_base64"
        pcm = await transcription.decode_upload(ctx, _audio_argument(ctx, request, audio_base64, url), param)
        done = await transcription.transcribe(served, pcm, param)
        return SpeechToTextResult(text=joined([w.word for w in done.words]), duration_s=round(done.duration_s, 3),
                                  model=served.name, words=[w.to_dict() for w in done.words])

    @tool(server, title="GPU status", readOnlyHint=True)
    async def get_gpu_status() -> dict[str, Any]:
        """Every GPU of the cluster (nodes, NVML memory where available) and every TTSWorker replica:
        its GPU, model state (unloaded, loading, ready, offloaded, failed), idle seconds, VRAM and
        queue. Reading it never wakes workers that scaled to zero (then `replicas` is empty)."""
        return await gpu_status(ctx)

    @tool(server, title="Offload GPU", readOnlyHint=False, destructiveHint=False, idempotentHint=True)
    async def offload_gpu(
        gpu: Annotated[int | None, Field(ge=0, description=(
            "GPU index (see get_gpu_status); omit to offload every replica."))] = None,
    ) -> dict[str, Any]:
        """Move the model's weights out of VRAM on one GPU or all; the next request reloads them.
        Returns how many replicas were asked and each one's result. Workers at zero replicas are
        not woken (nothing to offload)."""
        return await ctx.cluster.offload(gpu=gpu)

    return server


def _audio_argument(ctx: IngressContext, request, audio_base64: str | None, url: str | None) -> bytes:
    """speech_to_text's audio: the base64 given, or the saved output a URL of this service names
    (read from the outputs folder: nothing is fetched, so no other host is ever reached)."""
    limit = ctx.settings.max_transcription_bytes
    if (audio_base64 is None) == (url is None):
        raise APIError(422, "give either audio_base64 or url", param="audio_base64", code="invalid_arguments")
    if audio_base64 is not None:
        try:
            data = base64.b64decode(audio_base64, validate=True)
        except ValueError:
            raise APIError(422, "audio_base64 is not base64", param="audio_base64", code="invalid_base64") from None
    else:
        path = ctx.outputs.path(_output_name(request, url))
        if path is None:
            raise APIError(404, "no such saved file (saved files are kept for outputs_max_age_s)", param="url",
                           code="output_not_found")
        data = path.read_bytes()[:limit + 1]
    if len(data) > limit:
        raise APIError(413, f"the audio is larger than {limit} bytes (max_transcription_bytes)",
                       param="audio_base64" if url is None else "url", code="payload_too_large")
    return data


def _output_name(request, url: str) -> str:
    """The saved file's name in a URL of this service's downloads (its host, or none)."""
    parsed = urllib.parse.urlsplit(url)
    example = urllib.parse.urlsplit(str(request.url_for("get_output", name="NAME")))
    prefix = example.path[:-len("NAME")]
    if (parsed.netloc and parsed.netloc != example.netloc) or not parsed.path.startswith(prefix) \
            or parsed.scheme not in ("", "http", "https"):
        raise APIError(422, f"url must be a file this service saved ({example.scheme}://{example.netloc}{prefix}"
                            "<name>); other hosts are never fetched", param="url", code="url_not_served_here")
    return parsed.path[len(prefix):]


# ---- wiring into the FastAPI app --------------------------------------------------------------
@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """Lifespan hook: build the MCP server and run its session manager while the app runs."""
    server = build_server(app.state.ctx)
    server.streamable_http_app()  # creates server.session_manager (the Starlette app is not used)
    async with server.session_manager.run():
        app.state.mcp_sessions = server.session_manager
        try:
            yield
        finally:
            app.state.mcp_sessions = None


class _Endpoint:
    """ASGI app (a class, so Starlette does not treat it as a request handler) passing requests to
    the running session manager."""

    async def __call__(self, scope, receive, send) -> None:
        manager = getattr(scope["app"].state, "mcp_sessions", None)
        if manager is None:  # the lifespan has not started (or has ended)
            response = error_response(503, "the MCP server is not running", code="mcp_unavailable")
            return await response(scope, receive, send)
        await manager.handle_request(scope, receive, send)


def mount(app: FastAPI) -> None:
    """Serve MCP at /mcp (and /mcp/), ahead of any catch-all route such as a UI mounted at /."""
    app.state.mcp_sessions = None
    for path in reversed(MCP_PATHS):
        app.router.routes.insert(0, Route(path, _Endpoint(), include_in_schema=False))
