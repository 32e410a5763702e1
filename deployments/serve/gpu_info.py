"""NVIDIA GPU facts through NVML (`pynvml` from nvidia-ml-py). Every function returns empty results
on a machine without an NVIDIA driver instead of raising."""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)
_init_lock = threading.Lock()
_nvml_ready: bool | None = None

MIB = 1024 * 1024


def _nvml():
    """The initialised pynvml module, or None when there is no NVIDIA driver."""
    global _nvml_ready
    with _init_lock:
        if _nvml_ready is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_ready = True
            except Exception as exc:  # no library, no driver, no GPU
                log.info("NVML unavailable (%s): no NVIDIA GPU facts", exc.__class__.__name__)
                _nvml_ready = False
        if not _nvml_ready:
            return None
        import pynvml

        return pynvml


def _as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_facts(index: int) -> dict | None:
    """Name, memory and utilisation of the GPU with NVML index `index` (the physical index,
    which is what Ray reports in `ray.get_gpu_ids()`)."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilisation = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        except nvml.NVMLError:
            utilisation = None
        return {
            "index": index,
            "name": _as_text(nvml.nvmlDeviceGetName(handle)),
            "uuid": _as_text(nvml.nvmlDeviceGetUUID(handle)),
            "memory_used_mib": round(memory.used / MIB),
            "memory_total_mib": round(memory.total / MIB),
            "utilization_percent": utilisation,
        }
    except Exception as exc:
        log.warning("NVML query of GPU %s failed: %s", index, exc)
        return None


def node_gpus() -> list[dict]:
    """Every NVIDIA GPU of this machine ([] without NVIDIA GPUs)."""
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception:
        return []
    return [facts for facts in (gpu_facts(i) for i in range(count)) if facts]


def node_report() -> dict:
    return {"node": socket.gethostname(), "pid": os.getpid(), "gpus": node_gpus()}
