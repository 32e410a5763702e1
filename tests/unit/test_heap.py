"""Handing freed heap back to the kernel (deployments/engine/heap.py), on this process: memory
freed in the middle of glibc's heap stays resident until the trim, and leaves with it."""

from __future__ import annotations

import ctypes
import platform

import pytest

from deployments.engine.heap import release_free_heap

BLOCK = 100_000  # bytes: under glibc's mmap threshold, so the blocks come from its heap
BLOCKS = 400


def resident_anon_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_holes_in_the_heap_go_back_to_the_kernel_when_trimmed():
    blocks = [ctypes.create_string_buffer(BLOCK) for _ in range(BLOCKS)]
    del blocks[::2]  # every other block freed: holes that glibc keeps, the heap's top still in use
    freed_mb = BLOCKS // 2 * BLOCK / 2**20
    held = resident_anon_mb()
    assert release_free_heap()
    assert held - resident_anon_mb() > freed_mb / 2, "the holes stayed resident"
    del blocks
