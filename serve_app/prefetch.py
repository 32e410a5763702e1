"""`make serve`'s prefetch: every hub model of the config's model tables, and its default voice,
fetched into the Hugging Face cache before the application is deployed, with the progress shown
(serve_app/download_display.py).

It runs in the launcher process (serve_app.run) before Ray starts, through the replicas' own hub
fetcher (deployments/engine/hub.py: bounded waits, the stall bound, resumable downloads, Xet off),
so a replica that starts after it finds every file in the cache. It imports no torch and no moshi:
config.json is read as JSON. Not fetched: models given as a local path (`model_path`, the demo's
built test checkpoints) and fake engines. `TTS_PREFETCH=0` skips it, for clusters whose GPU nodes
do not share this machine's disk (their replicas fetch for themselves). A failure is one line that
names the setting; the service then starts anyway and a request retries (503 until then), as when
a replica cannot fetch the model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, TextIO

from pydantic import ValidationError

from deployments.engine.download_progress import Downloads
from deployments.engine.hub import HubFetcher, ModelUnavailableError
from deployments.engine.loading import fetch_hub_checkpoint, voice_file_suffix

from .download_display import DownloadDisplay

PREFETCH_VARIABLE = "TTS_PREFETCH"
APP_IMPORT_PATH = "serve_app.app:build_app"
_OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class HubModel:
    """A model of a config's table that comes from the hub, and what it needs fetched."""

    name: str            # its entry in the model table ("default" without a table)
    repo: str
    voice_repo: str | None
    default_voice: str | None
    voice_dirs: tuple[str, ...]
    timeout_s: float
    stall_s: float


def enabled(environ: Mapping[str, str]) -> bool:
    return (environ.get(PREFETCH_VARIABLE) or "1").strip().lower() not in _OFF


def hub_models(config: dict, environ: Mapping[str, str]) -> list[HubModel]:
    """The hub models of every application of ours in `config`, its args read as the app reads
    them (environment overrides included). Raises pydantic's ValidationError for args the app
    would refuse."""
    from .settings import load_settings

    models = []
    for app in config.get("applications", []):
        if app.get("import_path") != APP_IMPORT_PATH:
            continue
        settings = load_settings(app.get("args"), environ=dict(environ), dotenv_path=None)
        for name, engine in settings.model_table().items():
            if engine.model_path or engine.build_test_checkpoint or engine.test_engine:
                continue
            models.append(HubModel(name, engine.model_repo, engine.voice_repo, engine.default_voice or None,
                                   tuple(engine.voice_dirs), engine.hub_timeout_s, engine.hub_stall_s))
    return models


def prefetch(config: dict, environ: Mapping[str, str] | None = None, stream: TextIO | None = None,
             downloads: Downloads | None = None) -> list[str]:
    """Fetches what the config's hub models need, showing the progress on `stream`; returns the
    warnings to show (one line each: what failed, naming the setting, and what to do)."""
    environ = os.environ if environ is None else environ
    stream = stream or sys.stdout
    if not enabled(environ):
        print(f"{PREFETCH_VARIABLE}=0: no model prefetch; each replica fetches what it lacks itself.",
              file=stream, flush=True)
        return []
    try:
        models = hub_models(config, environ)
    except ValidationError as exc:  # the app refuses these args too, when it is deployed
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
        return [f"No model prefetch: the config's args are invalid ({problems})."]
    if not models:
        return []
    downloads = downloads or Downloads()
    fetched = _Fetched()
    with _quiet_hub_client(), DownloadDisplay(downloads, stream) as display:
        for model in models:
            try:
                voice = _fetch(model, downloads, fetched)
            except _PrefetchError as exc:
                display.sync()
                return [f"Cannot prefetch model '{model.name}' ({exc.setting}): {exc.detail} Starting anyway: "
                        f"a request for this model tries again (503 until it can); {PREFETCH_VARIABLE}=0 skips "
                        f"the prefetch."]
            display.sync()
            print(f"Model '{model.name}' ({model.repo}) is in the Hugging Face cache"
                  f"{', with its default voice' if voice else ''}.", file=stream, flush=True)
    return []


class _PrefetchError(Exception):
    def __init__(self, setting: str, detail: str):
        super().__init__(detail)
        self.setting, self.detail = setting, detail


@dataclass
class _Fetched:
    """What this prefetch has fetched already: two entries of one repo fetch it once."""

    configs: dict[str, dict] = field(default_factory=dict)  # repo -> its config.json
    voices: set[tuple[str, str]] = field(default_factory=set)  # (voice repo, file)


def _fetch(model: HubModel, downloads: Downloads, fetched: _Fetched) -> bool:
    """Fetches the model's files, then its default voice; True when it has one (found in a local
    voice folder or fetched)."""
    if model.repo not in fetched.configs:
        try:
            _, fetched.configs[model.repo], _ = fetch_hub_checkpoint(
                HubFetcher(model.repo, model.timeout_s, model.stall_s, downloads=downloads))
        except ModelUnavailableError as exc:
            raise _PrefetchError(f"`model_repo` {model.repo!r}", exc.detail) from exc
    config = fetched.configs[model.repo]
    if not (model.voice_repo and model.default_voice and "tts_config" in config):
        return False
    voice_file = model.default_voice + voice_file_suffix(config)
    if (model.voice_repo, voice_file) in fetched.voices or any(
            (Path(d) / voice_file).is_file() for d in model.voice_dirs):
        return True
    try:
        HubFetcher(model.voice_repo, model.timeout_s, model.stall_s, downloads=downloads).fetch(voice_file)
    except ModelUnavailableError as exc:
        raise _PrefetchError(f"`default_voice` {model.default_voice!r} in `voice_repo` {model.voice_repo!r}",
                             exc.detail) from exc
    fetched.voices.add((model.voice_repo, voice_file))
    return True


@contextlib.contextmanager
def _quiet_hub_client() -> Iterator[None]:
    """huggingface_hub's own per-file bars and the fetcher's log lines off while the display
    draws (they would interleave with it); both as before afterwards."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hub_log = logging.getLogger("deployments.engine.hub")
    level, bars_off = hub_log.level, are_progress_bars_disabled()
    hub_log.setLevel(logging.WARNING)
    disable_progress_bars()
    try:
        yield
    finally:
        hub_log.setLevel(level)
        if not bars_off:
            enable_progress_bars()
