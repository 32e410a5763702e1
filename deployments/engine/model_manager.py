"""One model per process (per GPU): lazy load, idle offload to host RAM, reload on demand.

States: `unloaded` -> `loading` -> `ready` <-> `offloaded`; `failed` (with the error) when a load
fails, retried by the next request. While files come from the hub (the model's while `loading`,
a voice's at any time) the status carries the download's progress (`download`). Offloading never happens under a running generation: it is
deferred until the last one ends.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from typing import Callable, Iterator

from .base import EngineFactory, SlotEngine
from .download_progress import DOWNLOADS
from .hub import ModelUnavailableError
from .loading import pick_device
from .models import ModelKind, model_kind
from ..settings import EngineSettings

log = logging.getLogger(__name__)
HOST = "cpu"


class ModelState(str, enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    OFFLOADED = "offloaded"
    FAILED = "failed"


class ModelManager:
    def __init__(self, settings: EngineSettings, offload_after_s: float | None = 300.0,
                 gpu_index: int | None = None, engine_factory: EngineFactory | None = None,
                 gpu_facts: Callable[[int], dict | None] | None = None):
        self.settings = settings
        self.gpu_index = gpu_index
        # The device's facts for status reports (the worker passes NVML's; none without it).
        self._gpu_facts = gpu_facts or (lambda index: None)
        self._offload_after_s = offload_after_s
        self._engine_factory = engine_factory or _default_engine_factory
        self._cond = threading.Condition()
        self._state = ModelState.UNLOADED
        self._engine: SlotEngine | None = None
        self._device: str | None = None
        self._error: str | None = None  # for clients; `_error_detail` for the log
        self._error_detail: str | None = None
        self._active = 0
        self._offload_requested = False
        self._last_used = time.monotonic()
        self._stats = {"loads": 0, "load_seconds": None, "offloads": 0, "offload_seconds": None,
                       "reloads": 0, "reload_seconds": None, "failures": 0}
        self._closed = False
        self._idle_thread = threading.Thread(target=self._idle_loop, name="model-idle-offload", daemon=True)
        self._idle_thread.start()

    # ---- use -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def acquire(self) -> Iterator[SlotEngine]:
        """Yields the engine, resident on its device, for one generation (loads/reloads first)."""
        engine = self._make_resident()
        try:
            yield engine
        finally:
            with self._cond:
                self._active -= 1
                self._last_used = time.monotonic()
                if self._active == 0 and self._offload_requested:
                    self._offload_locked()
                self._cond.notify_all()

    def _make_resident(self) -> SlotEngine:
        with self._cond:
            waited_for_load = False
            while self._state == ModelState.LOADING:
                waited_for_load = True
                self._cond.wait()
            if self._state == ModelState.FAILED and waited_for_load:
                # The load this request waited for failed: report it rather than retry at once.
                raise ModelUnavailableError(self._error, self._error_detail)
            if self._state in (ModelState.UNLOADED, ModelState.FAILED):
                self._state = ModelState.LOADING
                self._cond.release()
                try:
                    self._load()
                finally:
                    self._cond.acquire()
                    self._cond.notify_all()
                if self._state == ModelState.FAILED:
                    raise ModelUnavailableError(self._error, self._error_detail)
            elif self._state == ModelState.OFFLOADED:
                self._reload_locked()
            self._active += 1
            self._offload_requested = False
            self._last_used = time.monotonic()
            return self._engine

    def _load(self) -> None:
        """Runs WITHOUT the lock (loading takes seconds); publishes the outcome under it."""
        started = time.monotonic()
        try:
            device = pick_device(self.settings.device)
            engine = self._engine_factory(self.settings, device)
        except Exception as exc:
            # Clients read `message` (status reports, 503s): what to do, nothing internal. The
            # operator reads the rest here.
            if isinstance(exc, ModelUnavailableError):
                message, detail = str(exc), exc.detail
                log.error("model load failed: %s", detail)
            else:
                message = ("the model could not be loaded on this worker (details in its log); retry "
                           "later, and if it persists the operator must check the model settings")
                detail = f"{exc.__class__.__name__}: {exc}"
                log.error("model load failed", exc_info=exc)
            with self._cond:
                self._state, self._error, self._error_detail = ModelState.FAILED, message, detail
                self._stats["failures"] += 1
            return
        with self._cond:
            self._engine, self._device, self._error, self._error_detail = engine, device, None, None
            self._state = ModelState.READY
            self._stats["loads"] += 1
            self._stats["load_seconds"] = round(time.monotonic() - started, 3)
            self._last_used = time.monotonic()
        log.info("model loaded on %s in %.2fs", device, time.monotonic() - started)

    def _fail_locked(self, message: str, exc: Exception) -> None:
        """A move of the weights failed half way (e.g. CUDA out of memory): drop the engine, so
        the next request loads a fresh one, and report the failure (`message` for clients, the
        exception in the log)."""
        log.error("%s", message, exc_info=exc)
        self._engine = None
        self._state, self._error = ModelState.FAILED, message
        self._error_detail = f"{message}: {exc.__class__.__name__}: {exc}"
        self._stats["failures"] += 1

    def _reload_locked(self) -> None:
        started = time.monotonic()
        try:
            self._engine.move_to(self._device)
        except Exception as exc:
            self._fail_locked(f"bringing the model back to {self._device} failed ({_why(exc)}); "
                              f"retry: the next request loads it afresh", exc)
            raise ModelUnavailableError(self._error, self._error_detail) from exc
        self._state = ModelState.READY
        self._stats["reloads"] += 1
        self._stats["reload_seconds"] = round(time.monotonic() - started, 3)

    # ---- offload -------------------------------------------------------------------------
    def offload(self) -> str:
        """Moves the weights to host RAM now, or as soon as running generations end.
        Returns "offloaded", "deferred", or the state it stayed in ("unloaded", "offloaded"...)."""
        with self._cond:
            if self._state != ModelState.READY:
                return self._state.value
            if self._active:
                self._offload_requested = True
                return "deferred"
            self._offload_locked()
            return "offloaded"

    def _offload_locked(self) -> None:
        started = time.monotonic()
        try:
            self._engine.move_to(HOST)
        except Exception as exc:
            self._fail_locked(f"offloading the model failed ({_why(exc)}); the next request loads it afresh", exc)
            return
        self._state = ModelState.OFFLOADED
        self._offload_requested = False
        self._stats["offloads"] += 1
        self._stats["offload_seconds"] = round(time.monotonic() - started, 3)
        log.info("model offloaded to host RAM in %.2fs", time.monotonic() - started)

    @property
    def offload_after_s(self) -> float | None:
        return self._offload_after_s

    @offload_after_s.setter
    def offload_after_s(self, seconds: float | None) -> None:
        with self._cond:
            self._offload_after_s = seconds
            self._cond.notify_all()

    def _idle_loop(self) -> None:
        with self._cond:
            while not self._closed:
                timeout = 1.0
                limit = self._offload_after_s
                if self._state == ModelState.READY and self._active == 0 and limit is not None:
                    idle = time.monotonic() - self._last_used
                    if idle >= limit:
                        self._offload_locked()
                    else:
                        timeout = min(timeout, limit - idle)
                self._cond.wait(timeout=max(timeout, 0.05))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ---- reporting -----------------------------------------------------------------------
    @property
    def state(self) -> ModelState:
        return self._state

    @property
    def engine(self) -> SlotEngine | None:
        return self._engine

    @property
    def device(self) -> str | None:
        return self._device

    def status(self) -> dict:
        with self._cond:
            report = {
                "state": self._state.value,
                "error": self._error,
                "device": self._device,
                "gpu_index": self.gpu_index,
                "active_generations": self._active,
                "idle_seconds": round(time.monotonic() - self._last_used, 1) if self._active == 0 else 0.0,
                "offload_after_s": self._offload_after_s,
                **self._stats,
            }
        # {repo, file, files_done, files_total, bytes_done, bytes_total, rate_bps, eta_s} or None.
        report["download"] = DOWNLOADS.current()
        report["gpu"] = self._gpu_facts(self.gpu_index) if self.gpu_index is not None else None
        report["torch_allocated_mib"] = _torch_allocated_mib(report["device"])
        return report


def _why(exc: Exception) -> str:
    """Why moving the weights failed, in words a client may read (no exception text)."""
    if "out of memory" in str(exc).lower():
        return "the GPU is out of memory"
    return "details in the worker's log"


def _torch_allocated_mib(device: str | None) -> int | None:
    if not device or not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.memory_allocated() / (1024 * 1024))


def _default_engine_factory(settings: EngineSettings, device: str) -> SlotEngine:
    if settings.test_engine:  # tests only
        from .fakes import FAKE_ENGINES

        engine_class = FAKE_ENGINES[settings.test_engine]
    elif settings.test_faults and model_kind(settings) is ModelKind.TTS_EMBEDDING_VOICES:
        # The staged hang is the 1.6B engine's only: another model of the same app keeps its own.
        from .faults import FaultyEngine as engine_class
    elif model_kind(settings) is ModelKind.TTS_AUDIO_PROMPT:
        from .clone import CloneEngine as engine_class
    elif model_kind(settings) is ModelKind.STT:
        from .stt import STTEngine as engine_class
    else:
        from .tts import TTSEngine as engine_class
    return engine_class(settings, device)
