"""The STT model's persistent streaming state: B rows that each listen to their own stream.

`ListeningBatch` owns moshi's `LMGen` (temperature 0, as Kyutai's STT runs) and Mimi's encoder in
`streaming` mode for the life of the loaded model. A step takes one 80 ms frame per executing row:
Mimi encodes it in that row's streaming state, `LMGen.step` (or `step_with_extra_heads` when the
model has voice-activity heads) turns its codes into one text token per row. Rows not in the step
are frozen by the exec masks of both (their state does not move); a row joins by being reset. It
knows nothing of requests: `stt.py` decides which rows step and what the tokens mean.

Built for CUDA graphs (moshi graphs LMGen's main step on CUDA): the streaming state is built and
warmed up once per placement of the weights (`close()` before they move), input PCM goes through
one pinned host buffer per step (one non-blocking copy), and a step costs one host sync (tokens and
pause probabilities come back in one tensor).
"""

from __future__ import annotations

import contextlib

import torch

from ..protocol import FRAME_SAMPLES


class ListeningBatch:
    """`batch_size` rows of one streaming transcription. Not thread-safe: the engine's thread only."""

    def __init__(self, mimi, lm, batch_size: int):
        from moshi.models.lm import LMGen

        self.mimi, self.lm, self.batch_size = mimi, lm, batch_size
        self.device = lm.device
        self.vad_heads = len(lm.extra_heads)
        pinned = self.device.type == "cuda"
        # One host buffer per thing copied non-blocking: rewritten only after the step that read it.
        self._pcm_host = torch.zeros(batch_size, 1, FRAME_SAMPLES, dtype=torch.float32, pin_memory=pinned)
        self._exec_host = torch.zeros(batch_size, dtype=torch.bool, pin_memory=pinned)
        self.lm_gen = LMGen(lm, use_sampling=False, temp=0.0, temp_text=0.0, support_out_of_sync=True)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.lm_gen.streaming(batch_size))
        self._stack.enter_context(mimi.streaming(batch_size))
        self._warm_up()

    def _warm_up(self, steps: int = 3) -> None:
        """Steps every row a few times before any request (CUDA graphs are captured on their second
        call); rows are reset when a stream joins, so nothing of it remains."""
        rows = list(range(self.batch_size))
        silence = torch.zeros(self.batch_size, FRAME_SAMPLES)
        for _ in range(steps):
            self.step(rows, silence)

    def start_row(self, row: int) -> None:
        """Restarts `row` from step 0 (model and encoder state)."""
        mask = torch.zeros(self.batch_size, dtype=torch.bool)
        mask[row] = True
        mask = mask.to(self.device)
        self.lm_gen.reset_streaming(mask)
        self.mimi.reset_streaming(mask)

    def step(self, rows: list[int], pcm: torch.Tensor) -> tuple[list[int], list[list[float]] | None]:
        """One step for `rows`, with `pcm` [len(rows), FRAME_SAMPLES] their frames, in order.
        Returns each row's text token and (models with voice-activity heads) its pause
        probability per head, or None."""
        self._pcm_host.zero_()
        self._pcm_host[rows, 0] = pcm
        self._exec_host.zero_()
        self._exec_host[rows] = True
        exec_mask = self._exec_host.to(self.device, non_blocking=True)
        frames = self._pcm_host.to(self.device, non_blocking=True)
        self.mimi.set_exec_mask(exec_mask)
        self.lm_gen.set_exec_mask(exec_mask)
        codes = self.mimi.encode(frames)
        if self.vad_heads:
            out, heads = self.lm_gen.step_with_extra_heads(codes)
            # Softmax index 0 of each head: the probability of a pause (at its horizon).
            prs = torch.stack([head[:, 0, 0] for head in heads], dim=1).float()
        else:
            out, prs = self.lm_gen.step(codes), None
        tokens = out[:, 0, 0].float()[:, None]  # text ids < 2**24: exact in float32
        host = (tokens if prs is None else torch.cat([tokens, prs], dim=1)).cpu()  # the one host sync
        index = torch.tensor(rows)
        picked = host.index_select(0, index)
        row_tokens = [int(t) for t in picked[:, 0].tolist()]
        return row_tokens, (picked[:, 1:].tolist() if prs is not None else None)

    def close(self) -> None:
        """Leaves streaming mode (and drops CUDA graphs): before the weights move."""
        self._stack.close()
