"""Giving the process's freed heap back to the kernel once its rows go idle.

Measured (issue 25, `benchmarks/stalled_clients.py --engine fake-tts --diagnose`): after stalled
streams end, the Python objects they made are gone (tracemalloc after a collection: under 2 MB in
the worker, the ingress and Serve's proxy), yet resident memory stays near its peak: glibc keeps
the freed pages for later. `malloc_trim(0)` hands them back (the worker's 9 MB there; the rest of
its growth is Ray's object store, shared memory mapped into the process, a bounded pool).

Where glibc is not the C library (macOS, musl) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)


def _find_malloc_trim():
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def release_free_heap() -> bool:
    """Returns the heap's free pages to the kernel (all of glibc's arenas). True: some were given
    back. Costs a walk over the free chunks (milliseconds on a GB heap), and holds each arena's lock
    meanwhile: call it where nothing waits on it, not per step."""
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))
