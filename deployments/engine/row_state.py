"""One row of moshi's streaming state, copied out and back in: how a voice's prompt is computed once
and then dropped into any row of any batch (deployments/engine/clone_slots.py).

A streaming module (the LM's transformer, Mimi's decoder) keeps its state in one `State` object per
submodule; what belongs to one batch row is every tensor whose batch dimension is that row: KV
ring caches ([2, B, heads, capacity, dim]: dim 1) and their end offsets, attention and transformer
offsets, convolution buffers ([B, ...]: dim 0). The walk below finds them by the state's own
`batch_size`, in moshi's module order, so that two states of one module at different batch sizes
line up tensor for tensor. Exec masks are the batch's, not a row's: never copied. Non-tensor
fields (`offset_cpu`) are shared by the whole batch and only drive per-step weights, which the
main transformer and Mimi do not use.
"""

from __future__ import annotations

import torch


def _tensors_of(state) -> list[torch.Tensor]:
    found = []
    for name, value in vars(state).items():
        if name == "exec_mask":
            continue
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif hasattr(value, "cache") and hasattr(value, "end_offset"):  # moshi's RingKVCache
            found.extend((value.cache, value.end_offset))
    return found


def row_views(states: list, batch_size: int) -> list[tuple[torch.Tensor, int]]:
    """(tensor, batch dim) of every per-row tensor of these states (in order)."""
    views = []
    for state in states:
        for tensor in _tensors_of(state):
            if _is_ring(tensor, batch_size):
                views.append((tensor, 1))  # a KV ring cache: keys and values first
            elif tensor.dim() >= 1 and tensor.shape[0] == batch_size:
                views.append((tensor, 0))
    return views


def _is_ring(tensor: torch.Tensor, batch_size: int) -> bool:
    return tensor.dim() == 5 and tensor.shape[0] == 2 and tensor.shape[1] == batch_size


def module_states(module) -> list:
    """The streaming states of a module and its (attached) streaming submodules, in moshi's order."""
    return [state for state in module.get_streaming_state().values() if state is not None]


def copy_rows(views: list[tuple[torch.Tensor, int]], rows: list[int], steps: int | None = None) -> list[torch.Tensor]:
    """A copy of `rows` of each view (the snapshot of those rows). `steps`: how many steps the
    rows have run since they were reset; a KV ring cache then keeps only the positions they wrote
    (the others are masked as not written: for the real model's 500-step context, a 10 s prompt
    is a quarter of the ring)."""
    index = None
    saved = []
    for tensor, dim in views:
        if index is None or index.device != tensor.device:
            index = torch.tensor(rows, device=tensor.device)
        rows_of = tensor.index_select(dim, index)
        if dim == 1 and steps is not None and steps < tensor.shape[3]:
            rows_of = rows_of[:, :, :, :steps]
        saved.append(rows_of.clone())
    return saved


def write_rows(views: list[tuple[torch.Tensor, int]], rows: list[int], saved: list[torch.Tensor]) -> None:
    """Writes a snapshot into `rows` of each view, in place (CUDA graphs keep the addresses)."""
    if len(views) != len(saved):
        raise ValueError(f"a row snapshot of {len(saved)} tensors cannot fill a state of {len(views)}")
    for (tensor, dim), rows_saved in zip(views, saved):
        for i, row in enumerate(rows):
            target = tensor.select(dim, row)
            if dim == 1:  # a ring cache, maybe only its first positions (copy_rows' `steps`)
                target = target[:, :, :rows_saved.shape[3]]
            target.copy_(rows_saved.select(dim, i))


def nbytes(saved: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in saved)
