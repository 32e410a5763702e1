"""Moving a model's weights between the GPU and host RAM (idle offload and back), for every engine.

Offloading copies each device tensor into a page-locked host buffer, allocated at the first
offload and reused after: allocating 4 GB of pinned memory costs seconds (an H100 offload took
5.8-7.3 s when it went through pageable memory and pinned it afterwards), a copy into existing
pinned buffers runs at PCIe speed, and so does the way back.
"""

from __future__ import annotations


def move_modules(modules: dict, device: str, pinned: dict) -> None:
    """Moves each named module to `device`; to host RAM through `pinned` (name, index) -> buffer
    when a GPU is present (kept by the caller across offloads)."""
    import torch

    to_host = device == "cpu" and torch.cuda.is_available()
    for name, module in modules.items():
        if to_host:
            _offload_pinned(name, module, pinned)
        else:
            module.to(device, non_blocking=True)
    if to_host:
        torch.cuda.synchronize()  # the copies into pinned memory are asynchronous
        torch.cuda.empty_cache()


def _offload_pinned(name: str, module, pinned: dict) -> None:
    import torch

    for index, tensor in enumerate(list(module.parameters()) + list(module.buffers())):
        if tensor.device.type == "cpu":
            continue
        key = (name, index)
        host = pinned.get(key)
        if host is None or host.shape != tensor.shape or host.dtype != tensor.dtype:
            host = pinned[key] = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=True)
        host.copy_(tensor.data, non_blocking=True)
        tensor.data = host
