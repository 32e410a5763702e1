"""The cloning model's rows: `SlotBatch` (slots.py) with audio prompts instead of speaker embeddings,
and real classifier-free guidance with one coefficient per row.

What moshi's reference (`TTSModel.generate` with `prefixes`) does to one request, done here per row:
- the prompt: P steps with the text forced to "zero" and each audio codebook forced to the clip's
  codes, delayed by the 16-step audio delay plus the codebook's delay. Those P steps depend on the
  voice alone. A new voice runs them in its own row of the shared batch (`start_filling_row`, then
  ordinary steps of that row, a few per tick: the engine decides), and the row's state after them
  is kept (`snapshot_prompt`); a known voice's state is copied into the row when a request joins
  (`start_prompted_row`). Either way the row goes on from step P, where moshi's state machine
  takes over; the clip's codes still force the audio until they run out.
- real CFG: the model is not CFG-distilled, so moshi doubles the batch: internal rows B..2B-1 are
  the null half (text always "zero", audio "zero" until P + 16 + the codebook's delay) and the
  depformer mixes the two logits. moshi takes one float; `_RowCfgLMGen` holds one per row, and a
  row at cfg 1 gets its own logits untouched (exactly moshi's cfg-1 run).
Every per-row write is in place (CUDA graphs hold these addresses).
"""

from __future__ import annotations

import contextlib

import torch
from moshi.models.lm import LMGen
from moshi.utils.sampling import sample_token

from . import row_state
from .prompts import PromptState
from .slots import SlotBatch

# Any value but 1 makes moshi's LMGen run the doubled (CFG) batch; the coefficient each row gets
# is `_RowCfgLMGen.row_cfg`.
_CFG_ON = 2.0


class _RowCfgLMGen(LMGen):
    """moshi's LMGen with real CFG whose coefficient is a [B] buffer instead of one float
    (`guided=False`: moshi's LMGen without CFG, every row at cfg 1)."""

    def __init__(self, lm, batch_size: int, guided: bool = True, **kwargs):
        super().__init__(lm, cfg_coef=_CFG_ON if guided else 1.0, cfg_is_no_text=True,
                         cfg_is_masked_until=[0] * batch_size, **kwargs)
        self.row_cfg = torch.ones(batch_size, 1, 1, 1, device=lm.device, dtype=torch.float32)

    def depformer_step(self, text_token: torch.Tensor, transformer_out: torch.Tensor) -> torch.Tensor:
        """As moshi's, with `row_cfg` mixing each row's logits; a row at 1 keeps its own."""
        if self.cfg_coef == 1.0:
            return super().depformer_step(text_token, transformer_out)
        lm = self.lm_model
        B = text_token.shape[0]
        keep = self.row_cfg == 1
        previous, tokens = text_token, []
        with lm.depformer.streaming(2 * B):
            for codebook in range(lm.dep_q):
                logits = lm.forward_depformer(codebook, previous[:, None, None].repeat(2, 1, 1), transformer_out)
                cond, null = logits.chunk(2)
                guided = torch.where(keep, cond, null + (cond - null) * self.row_cfg.to(cond.dtype))
                previous = sample_token(guided.float(), self.use_sampling, self.temp, self.top_k)[:, 0, 0]
                tokens.append(previous)
        return torch.stack(tokens, dim=1)


class CloneSlotBatch(SlotBatch):
    """`batch_size` rows of the cloning model (2 x batch_size inside, for CFG)."""

    def __init__(self, tts, batch_size: int, on_text, guided: bool = True):
        # guided: real CFG, two internal rows per row (the voice's, then its null twin B rows on).
        self.guided = guided
        self._twins = 2 if guided else 1
        self._forced: dict[int, torch.Tensor] = {}  # row -> its prompt's delayed codes
        self._offsets_host = [0] * batch_size       # each row's step, as the hooks need it
        super().__init__(tts, batch_size, on_text)
        self._lm_views = row_state.row_views(row_state.module_states(tts.lm), self._twins * batch_size)
        self._codec_views = row_state.row_views(row_state.module_states(tts.mimi), batch_size)

    def _make_lm_gen(self, batch_size: int):
        tts = self.tts
        return _RowCfgLMGen(tts.lm, batch_size, self.guided, temp=tts.temp, temp_text=tts.temp, on_text_hook=self._text_hook,
                            on_audio_hook=self._audio_hook, support_out_of_sync=True)

    def _force(self, audio_tokens: torch.Tensor, row: int, offset: int, delayed: torch.Tensor | None) -> None:
        """moshi's rule for row `row` at step `offset`: silence before each codebook's delay,
        then the prompt's codes where it has them."""
        silent = offset < self._audio_start[0]
        audio_tokens[row].masked_fill_(silent, self.tts.machine.token_ids.zero)
        if delayed is not None and offset < delayed.shape[1]:
            codes = delayed[:, offset]
            audio_tokens[row] = torch.where(codes != self.tts.machine.token_ids.ungenerated, codes, audio_tokens[row])

    # ---- rows --------------------------------------------------------------------------------
    def start_filling_row(self, row: int, prompt: PromptState, cfg_coef: float) -> None:
        """Restarts `row` at step 0 of a new voice's prompt: its next P steps (text-only, in the
        shared batch like catch-up steps: no other graph shape) are the prompt's, forced by the
        hooks; `snapshot_prompt` then keeps what they left in the row."""
        self._restart_row(row, prompt, cfg_coef)
        self._offsets_host[row] = 0

    def start_prompted_row(self, row: int, prompt: PromptState, cfg_coef: float) -> None:
        """Restarts `row` at step P of a known voice's prompt (its state copied in), with this cfg."""
        self._restart_row(row, prompt, cfg_coef)
        row_state.write_rows(self._lm_views, self._internal_rows(row), prompt.lm_rows)
        state = self.lm_gen._streaming_state
        cache, offsets = prompt.gen_rows
        state.cache[row].copy_(cache[0])
        state.offsets[row].copy_(offsets[0])
        self._offsets_host[row] = prompt.frames

    def snapshot_prompt(self, row: int, prompt: PromptState) -> None:
        """Stores in `prompt` what `row` holds after its P prompt steps (voice and null rows)."""
        state = self.lm_gen._streaming_state
        prompt.lm_rows = row_state.copy_rows(self._lm_views, self._internal_rows(row), steps=prompt.frames)
        prompt.gen_rows = [state.cache[row:row + 1].clone(), state.offsets[row:row + 1].clone()]

    def _internal_rows(self, row: int) -> list[int]:
        return [row, row + self.batch_size][:self._twins]

    def _restart_row(self, row: int, prompt: PromptState, cfg_coef: float) -> None:
        """Resets `row` and writes what every start writes: the codec's prompt state, the null
        twin's masking, the row's cfg and the codes that force its audio."""
        mask = torch.zeros(self.batch_size, dtype=torch.bool)
        mask[row] = True
        self.lm_gen.reset_streaming(mask)
        self.tts.mimi.reset_streaming(mask)
        row_state.write_rows(self._codec_views, [row], prompt.codec_rows)
        self.lm_gen._streaming_state.cfg_is_masked_until[row] = prompt.frames + self.audio_delay_steps
        self.lm_gen.row_cfg[row] = cfg_coef
        self._forced[row] = prompt.delayed

    def _audio_hook(self, audio_tokens: torch.Tensor) -> None:
        super()._audio_hook(audio_tokens)  # silence before each codebook's delay, every row
        for row in self._rows:
            delayed = self._forced.get(row)
            if delayed is not None and self._offsets_host[row] < delayed.shape[1]:
                self._force(audio_tokens, row, self._offsets_host[row], delayed)

    def step(self, rows: list[int], text_only: bool) -> torch.Tensor:
        frame = super().step(rows, text_only)
        for row in rows:
            self._offsets_host[row] += 1
        return frame

    def conditioning(self, voice, cfg_coef):  # the 1.6B's cross-attention voices
        raise NotImplementedError("the cloning model takes audio prompts (start_prompted_row)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._forced.clear()
        super().close()
