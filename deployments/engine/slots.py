"""The model's persistent streaming state: B rows ("slots") that each speak their own request.

`SlotBatch` owns moshi's `LMGen` and the Mimi decoder in `streaming` mode for the life of the
loaded model (ARCHITECTURE.md, "moshi's streaming API"). Rows are independent: each has its own offset, voice (cross-attention
K/V), cfg conditioning and moshi text `State`; a row joins by being reset and written, and rows
that are free or waiting for words are frozen by the exec mask. It knows nothing of requests:
`deployments/engine/tts.py` decides which rows step and what their outputs mean.

Built for CUDA graphs: every per-row write is in place (the graphs hold these addresses), the
streaming state is built and warmed up once per placement of the weights (`close()` before they
move), and a step costs two host syncs (the sampled text tokens, then the decoded audio).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from ..protocol import VOICE_EMBEDDING_SHAPE



@dataclass
class Voice:
    """A speaker embedding ready for the model; `key` names it in the K/V cache."""
    key: str
    embedding: torch.Tensor  # float32 VOICE_EMBEDDING_SHAPE, on the host


def voice_attributes(tts, voice: Voice, cfg_coef: float | None):
    """moshi ConditionAttributes for one voice embedding (as `make_condition_attributes` builds
    them from a file), so file voices and client-sent embeddings take the same path."""
    from moshi.conditioners import ConditionAttributes, TensorCondition

    emb = voice.embedding
    speakers = torch.zeros(1, tts.max_speakers, emb.shape[2], emb.shape[1])
    mask = torch.zeros(1, tts.max_speakers, emb.shape[2], dtype=torch.bool)
    speakers[:, 0] = emb.transpose(1, 2)
    mask[:, 0] = True
    text = {"control": "ok", "cfg": None if cfg_coef is None else format(cfg_coef, ".1f")}
    return ConditionAttributes(text=text, tensor={"speaker_wavs": TensorCondition(
        speakers.view(1, -1, emb.shape[1]), mask.view(1, -1))})


class SlotBatch:
    """`batch_size` rows of one streaming generation. Not thread-safe: the engine's thread only."""

    def __init__(self, tts, batch_size: int, on_text: Callable[[list[int], list[int]], list[int]]):
        """`on_text(rows, tokens)` is called during each step with the rows that execute and the
        text tokens the model sampled (on the host); it returns the tokens to feed back."""
        from moshi.modules.transformer import StreamingMultiheadAttention

        self.tts = tts
        self.batch_size = batch_size
        lm = tts.lm
        lm.dep_q = tts.n_q  # as TTSModel.generate: generate only the codebooks asked for
        self.device = lm.device
        self._on_text = on_text
        self._rows: list[int] = []
        zero = tts.machine.token_ids.zero
        self.audio_delay_steps = tts.delay_steps
        # Codebook delays of the audio streams: a row's audio token q is silence ("zero") until
        # the row's offset reaches delay[q] + delay_steps, as in TTSModel.generate.
        audio_delays = torch.tensor(lm.delays[lm.audio_offset:lm.audio_offset + lm.dep_q], device=self.device)
        self._audio_start = (audio_delays + tts.delay_steps)[None, :]
        self._zero_input = torch.full((batch_size, lm.n_q - lm.dep_q, 1), zero, dtype=torch.long, device=self.device)
        self._no_depformer = torch.full((batch_size, lm.dep_q, 1), zero, dtype=torch.long, device=self.device)
        pinned = self.device.type == "cuda"
        # One host buffer per exec mask: a pinned buffer must not be rewritten while its
        # non-blocking copy to the GPU may still be pending.
        self._lm_exec_host = torch.zeros(batch_size, dtype=torch.bool, pin_memory=pinned)
        self._mimi_exec_host = torch.zeros(batch_size, dtype=torch.bool, pin_memory=pinned)
        self._tokens_host = torch.zeros(batch_size, dtype=torch.long, pin_memory=pinned)

        self.lm_gen = self._make_lm_gen(batch_size)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.lm_gen.streaming(batch_size))
        self._stack.enter_context(tts.mimi.streaming(batch_size))
        self._cross = [m for m in lm.modules()
                       if isinstance(m, StreamingMultiheadAttention) and m.cross_attention and m.is_streaming]
        self.max_delay = self.lm_gen.max_delay
        # A row's step t (counted from 0) yields a decodable frame from this many steps on.
        self.first_audio_step = tts.delay_steps + self.max_delay
        self._warm_up()

    def _make_lm_gen(self, batch_size: int):
        """moshi's LMGen for the rows: every row conditioned (a silent voice until a request
        writes its own), cfg a conditioning input."""
        from moshi.models.lm import LMGen

        tts = self.tts
        silent = Voice("silence", torch.zeros(VOICE_EMBEDDING_SHAPE))
        conditions = tts.lm.condition_provider.prepare_and_provide(
            [voice_attributes(tts, silent, self._any_cfg())] * batch_size)
        return LMGen(tts.lm, temp=tts.temp, temp_text=tts.temp, condition_tensors=conditions,
                     on_text_hook=self._text_hook, on_audio_hook=self._audio_hook, support_out_of_sync=True)

    def _warm_up(self, steps: int = 3) -> None:
        """Runs every kind of step on every row before any request: CUDA graphs are captured
        here (on their second call), and the cross-attention K/V buffers the rows are written
        into come to exist. Rows are reset when a request joins, so nothing of this remains."""
        on_text, pad = self._on_text, self.tts.machine.token_ids.pad
        self._on_text = lambda rows, tokens: [pad] * len(tokens)
        try:
            rows = list(range(self.batch_size))
            for _ in range(steps):
                self.step(rows, text_only=True)
            for _ in range(steps):
                self.decode(self.step(rows, text_only=False), rows)
        finally:
            self._on_text = on_text

    def _any_cfg(self) -> float | None:
        valid = sorted(self.tts.valid_cfg_conditionings)
        return valid[0] if valid else None

    # ---- rows --------------------------------------------------------------------------------
    def conditioning(self, voice: Voice, cfg_coef: float | None) -> tuple[torch.Tensor, list]:
        """(sum row [1, 1, D], per cross-attention layer (k, v) rows) for a voice and cfg: the
        inputs a row needs, computed once and cached by the engine."""
        lm = self.tts.lm
        tensors = lm.condition_provider.prepare_and_provide([voice_attributes(self.tts, voice, cfg_coef)])
        cond_sum = lm.fuser.get_sum(tensors)
        cross = lm.fuser.get_cross(tensors).to(lm.dtype)
        kv = [module._compute_cross_attention(cross, cross) for module in self._cross]
        return cond_sum.to(lm.dtype), kv

    def start_row(self, row: int, cond_sum: torch.Tensor, kv: list) -> None:
        """Restarts `row` from step 0 with this voice and cfg (written in place)."""
        mask = torch.zeros(self.batch_size, dtype=torch.bool)
        mask[row] = True
        self.lm_gen.reset_streaming(mask)
        self.tts.mimi.reset_streaming(mask)
        state = self.lm_gen._streaming_state
        state.condition_sum[row].copy_(cond_sum[0])
        for module, (k, v) in zip(self._cross, kv):
            module._streaming_state.k_cross[row].copy_(k[0])
            module._streaming_state.v_cross[row].copy_(v[0])

    # ---- steps -------------------------------------------------------------------------------
    def _mask(self, host: torch.Tensor, rows: list[int]) -> torch.Tensor:
        host.zero_()
        host[rows] = True
        return host.to(self.device, non_blocking=True)

    def _text_hook(self, text_tokens: torch.Tensor) -> None:
        tokens = text_tokens.tolist()  # host sync 1: the state machines run on the host
        fed = self._on_text(self._rows, tokens)
        self._tokens_host.copy_(torch.tensor(fed, dtype=torch.long))
        text_tokens.copy_(self._tokens_host.to(text_tokens.device, non_blocking=True))

    def _audio_hook(self, audio_tokens: torch.Tensor) -> None:
        offsets = self.lm_gen._streaming_state.offsets  # before this step, one per row
        silent = offsets[:, None] < self._audio_start
        audio_tokens.masked_fill_(silent, self.tts.machine.token_ids.zero)

    def step(self, rows: list[int], text_only: bool) -> torch.Tensor:
        """One model step for `rows` (the others stay frozen). `text_only` skips the depformer:
        only for rows that are all still inside their audio delay (their audio is silence).
        Returns the frame [B, 1 + dep_q, 1] (only rows that executed are meaningful)."""
        self._rows = rows
        self.lm_gen.set_exec_mask(self._mask(self._lm_exec_host, rows))
        frame = self.lm_gen.step(self._zero_input, depformer_replace_tokens=self._no_depformer if text_only else None)
        assert frame is not None  # support_out_of_sync: a frame every step
        return frame

    def decode(self, frame: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """PCM [len(rows), 1920] float32 on the host for `rows`, whose frames are complete."""
        mimi = self.tts.mimi
        mimi.set_exec_mask(self._mask(self._mimi_exec_host, rows))
        codes = frame[:, 1:].clamp(min=0)  # frozen rows may hold "not generated yet" markers
        pcm = mimi.decode(codes)[:, 0].clamp(-1, 1)
        index = torch.tensor(rows, device=pcm.device)
        return pcm.index_select(0, index).float().cpu()  # host sync 2

    def close(self) -> None:
        """Leaves streaming mode (and drops CUDA graphs): before the weights move."""
        self._stack.close()
