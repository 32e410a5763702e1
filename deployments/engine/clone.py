"""The voice-cloning engine: Kyutai's `kyutai/tts-0.75b-en-public`, whose voices are audio clips.

Everything a request goes through is the 1.6B engine's (`TTSEngine`, tts.py: text, word streaming,
budgets, rows, catch-up steps, emission); what differs is the voice and the cfg:
- a voice is a `.wav` clip (a name in the voice folders or repo, as for the 1.6B, without a
  suffix). `prepare` resolves it, then encodes it on a private codec (prompts.py), off the
  generation thread; the result is cached per clip content (`PromptCache`, `prompt_cache_mb`).
- at admission a known voice's prompt state is copied into the row (clone_slots.py): the row
  starts at step P like a 1.6B row at step 0, and its first audio comes as many steps after
  admission as a preset 1.6B voice's. A new voice's row runs the P prompt steps itself first
  (P = 123 for a 10 s clip), `prompt_steps_per_tick` of them per tick as text-only steps beside
  the rows that speak (each of which still gets its one step per tick), and its state is then
  kept for the next request; the row speaks ceil(P / prompt_steps_per_tick) ticks later than a
  known voice's would. Two rows filling the same new voice: the first to finish hands its
  state to the other.
- cfg is real classifier-free guidance with one coefficient per row (default 2.0, as Kyutai runs
  the model); every row has its null twin whatever its cfg (one batch, one set of CUDA graphs).
"""

from __future__ import annotations

import logging
import numbers
import threading
from dataclasses import dataclass

from ..protocol import REAL_CFG, CfgRule, SynthesisRequest, clip_prompt_key
from ..settings import EngineSettings
from .base import InvalidRequest
from .prompts import PromptCache, PromptCodec, PromptState, clip_key
from .tts import SynthesisJob, TTSEngine
from .voices import VoiceError

log = logging.getLogger(__name__)


class CloneEngine(TTSEngine):
    """Kyutai's cloning TTS on one device: voices from audio prompts, real CFG per row."""

    fixed_n_q = True  # its prompts hold every codebook: it runs with all of them
    # Real CFG for every row (2B rows inside, each row's coefficient its own). False: B rows and
    # cfg 1 only, the cost of guidance taken away (benchmarks/clone_first_audio.py measures both).
    guided = True

    def __init__(self, settings: EngineSettings, device: str):
        super().__init__(settings, device)
        tts = self.tts
        if tts.multi_speaker:
            raise ValueError("this checkpoint takes speaker embeddings: it is a 1.6B-style model (TTSEngine)")
        self.codec = PromptCodec(tts.mimi, tts.lm, tts.delay_steps, tts.machine.token_ids.ungenerated)
        self.prompts = PromptCache(int(settings.prompt_cache_mb * 1024 * 1024))
        self._codec_lock = threading.Lock()
        self.prompt_steps_run = 0  # row-steps spent on new voices' prompts (not the rows' own steps)
        self._filling: dict[int, _Filling] = {}  # row -> the new voice's prompt it runs
        self._filling_at_tick: set[int] = set()

    # ---- placement -----------------------------------------------------------------------
    def _move_weights(self, device: str) -> None:
        """The cached prompts live on the old device: dropped with the slots."""
        self.prompts.clear()
        super()._move_weights(device)
        self.codec.to(device)

    def _build_slots(self, rows: int) -> None:
        import torch

        from .clone_slots import CloneSlotBatch

        with torch.no_grad(), self._compile_setting():
            self.slots = CloneSlotBatch(self.tts, rows, self._on_text, guided=self.guided)

    # ---- requests (any thread) -----------------------------------------------------------
    @property
    def cfg_rule(self) -> CfgRule:
        """Real guidance takes any coefficient in REAL_CFG's bounds (the ingress checks the same
        rule, ModelSpec.cfg_rule); an engine built without guidance only 1."""
        return REAL_CFG if self.guided else CfgRule.one_of((1.0,))

    def _cfg_coef(self, request: SynthesisRequest) -> float:
        cfg_coef = self.settings.default_cfg_coef if request.cfg_coef is None else request.cfg_coef
        # bool is an int to Python: refused with anything that is not a number.
        if isinstance(cfg_coef, bool) or not isinstance(cfg_coef, numbers.Real) or not self.cfg_rule.allows(cfg_coef):
            raise InvalidRequest(f"cfg_coef must be {self.cfg_rule.describe()}", param="cfg_coef")
        return float(cfg_coef)

    def _voice(self, request: SynthesisRequest) -> tuple[str, PromptState]:
        if request.voice_embedding is not None:
            raise InvalidRequest("this model takes its voices from audio clips, not speaker embeddings",
                                 param="voice")
        name = request.voice or self.settings.default_voice
        if request.voice_clip is not None:  # an uploaded voice: its prompt came with the request
            return name, self._prompt_for_pcm(request.voice_clip)
        return name, self._prompt_for(self._voice_path(name))

    def _prompt_for_pcm(self, pcm) -> PromptState:
        import numpy as np

        pcm = np.asarray(pcm, dtype=np.float32)
        if pcm.ndim != 1 or not pcm.size or not np.isfinite(pcm).all():
            raise InvalidRequest("voice_clip must be finite mono PCM", param="voice")
        key = clip_prompt_key(pcm)  # computed here: the cache never trusts a key it is sent
        return self._cached_prompt(key, lambda: self.codec.prompt_pcm(key, pcm), "voice clip")

    def forget_clip(self, key: str) -> bool:
        """Drops an uploaded voice's cached prompt (`clip_prompt_key`); True if it was cached."""
        return self.prompts.discard(key)

    def _prompt_for(self, path) -> PromptState:
        key = clip_key(path)
        return self._cached_prompt(key, lambda: self.codec.prompt(key, path), f"voice {path.name}")

    def _cached_prompt(self, key: str, make, what: str) -> PromptState:
        """The prompt cached under `key`, else made (`make`) and cached; VoiceError naming `what`."""
        prompt = self.prompts.get(key)
        if prompt is None:
            try:
                prompt = make()
            except ValueError as exc:
                raise VoiceError(f"{what}: {exc}") from None
            except Exception as exc:  # sphn cannot read it
                raise VoiceError(f"{what} is not a readable audio file") from exc
            self.prompts.put(prompt)
        return prompt

    def forget_voice(self, name: str) -> bool:
        """Drops a voice's cached prompt (its file was replaced or deleted); True if it was cached."""
        with self._host_lock:
            path = self._voice_paths.pop(name, None)
        if path is None:
            try:
                path = self.voices.resolve(name)
            except VoiceError:
                return False
        try:
            return self.prompts.discard(clip_key(path))
        except OSError:
            return False

    # ---- the generation thread -----------------------------------------------------------
    def close_slots(self) -> None:
        self._filling.clear()
        super().close_slots()

    def _start_row(self, row: int, job: SynthesisJob) -> None:
        import torch

        prompt: PromptState = job.voice
        self._filling.pop(row, None)  # a row freed by fail_all may still be listed
        job.prompt_steps = prompt.frames
        with torch.no_grad():
            if prompt.lm_rows is None:  # a new voice: the row hears its prompt first
                self.slots.start_filling_row(row, prompt, job.cfg_coef)
                self._filling[row] = _Filling(prompt, job)
                return
            self.slots.start_prompted_row(row, prompt, job.cfg_coef)
        job.state = self.tts.machine.new_state(job.entries)

    def runnable(self, job: SynthesisJob) -> bool:
        return job.state is None or super().runnable(job)  # a prompt needs no words

    def _accept_input(self, job: SynthesisJob, incoming: list) -> None:
        if job.state is None:  # still hearing its prompt: the words wait for its state machine
            job.entries.extend(incoming)
        else:
            super()._accept_input(job, incoming)

    def _release(self, job) -> None:
        self._filling.pop(job.row, None)
        super()._release(job)

    def _advance(self, rows: list[int]) -> None:
        """As the 1.6B's, with rows hearing a new voice's prompt taking up to
        `prompt_steps_per_tick` of the tick's steps (the main one, then text-only extra ones)."""
        self._filling_at_tick = {row for row in rows if row in self._filling}
        super()._advance(rows)

    def _extra_steps(self) -> int:
        if not self._filling_at_tick:
            return super()._extra_steps()
        return max(super()._extra_steps(), self.settings.prompt_steps_per_tick - 1)

    def _needs_extra(self, row: int, extra: int) -> bool:
        if row in self._filling_at_tick:  # its prompt's steps; once done, it speaks from the next tick
            return row in self._filling and extra < self.settings.prompt_steps_per_tick - 1
        return super()._needs_extra(row, extra)

    def _on_text(self, rows: list[int], tokens: list[int]) -> list[int]:
        """Rows hearing a prompt are fed "zero" (moshi's text during a prompt); the others'
        tokens go through their state machines."""
        if self._filling:
            zero = self.tts.machine.token_ids.zero
            for row in rows:
                if row in self._filling:
                    tokens[row] = zero
            rows = [row for row in rows if row not in self._filling]
        return super()._on_text(rows, tokens)

    def _count_step(self, rows: list[int]) -> None:
        """A prompt step is a model step, not one of the row's own (its times start after it)."""
        self.steps += 1
        heard = []
        for row in rows:
            filling = self._filling.get(row)
            if filling is None:
                self._jobs[row].steps += 1
                continue
            filling.done += 1
            self.prompt_steps_run += 1
            if filling.done == filling.prompt.frames:
                heard.append((row, filling))
        for row, filling in heard:
            if row in self._filling:  # not handed another row's state just now
                self._prompt_heard(row, filling)

    def _prompt_heard(self, row: int, filling: _Filling) -> None:
        """A new voice's prompt is done in `row`: its state is kept and cached, the row's state
        machine starts, and rows filling the same voice get the state at once."""
        prompt = filling.prompt
        self.slots.snapshot_prompt(row, prompt)
        if prompt.key in self.prompts:  # re-put with its state (its bytes counted), unless the voice
            self.prompts.put(prompt)    # was forgotten (deleted) or evicted while it filled
        for other, pending in list(self._filling.items()):
            if pending.prompt is prompt:
                del self._filling[other]
                if other != row:
                    self.slots.start_prompted_row(other, prompt, pending.job.cfg_coef)
                pending.job.state = self.tts.machine.new_state(pending.job.entries)


@dataclass(eq=False)
class _Filling:
    """A row hearing a new voice's prompt: the prompt, its job, and the prompt steps done."""
    prompt: PromptState
    job: SynthesisJob
    done: int = 0
