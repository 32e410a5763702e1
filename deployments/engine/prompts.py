"""Voice prompts of the cloning model: a clip encoded into Mimi codes, the state a row has once the
model has heard it, and a bounded cache of both.

A voice of `kyutai/tts-0.75b-en-public` is an audio clip the model continues. moshi reads the
whole clip at 24 kHz, encodes it with Mimi and drops the last two frames: P frames of codes, which
the model is then fed as its first P steps (text forced to "zero"). Everything a row holds after
those steps depends on the clip alone, so it is computed once per voice and copied into any row
that speaks with it (clone_slots.py): the LM side on the generation thread, the codec side here.

`PromptCodec` is a private, non-streaming copy of Mimi for the threads that prepare requests (the
model's own Mimi decodes every row in streaming mode on the generation thread: encoding a clip
there would mix states). It encodes a clip and decodes its P frames through a one-row stream: the
decoder state a row needs so that its first generated frame is decoded as in moshi's reference,
which decodes the prompt's frames before the generated ones.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import row_state


@dataclass(eq=False)
class PromptState:
    """One voice's prompt: its codes (delayed as the model is fed them) and the row snapshots."""
    key: str
    frames: int                              # P
    delayed: torch.Tensor                    # [n_q, P + delays] codes by step, "ungenerated" elsewhere
    codec_rows: list[torch.Tensor]           # Mimi's row after decoding the P frames
    lm_rows: list[torch.Tensor] | None = None  # the LM's rows (voice, null) after P steps
    gen_rows: list[torch.Tensor] | None = None  # LMGen's token cache and offset after P steps
    nbytes: int = 0

    def measure(self) -> int:
        parts = [self.delayed] + self.codec_rows + (self.lm_rows or []) + (self.gen_rows or [])
        self.nbytes = row_state.nbytes(parts)
        return self.nbytes


def clip_key(path: Path) -> str:
    """A voice's cache key: its file's content (a clip replaced under the same name is new)."""
    return "clip:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:24]


def delayed_codes(codes: torch.Tensor, delays: list[int], fill: int) -> torch.Tensor:
    """codes [K, P] laid out by step: codebook k's frame t is fed at step t + delays[k]."""
    K, P = codes.shape
    out = torch.full((K, P + max(delays)), fill, dtype=torch.long, device=codes.device)
    for k, delay in enumerate(delays):
        out[k, delay:delay + P] = codes[k]
    return out


class PromptCodec:
    """Encodes clips and computes the decoder's prompt state, off the generation thread."""

    # moshi drops the last two encoded frames of a prompt (`TTSModel.get_prefix`).
    DROPPED_FRAMES = 2

    def __init__(self, mimi, lm, delay_steps: int, ungenerated: int):
        self._mimi = copy.deepcopy(mimi)  # before the model's Mimi enters streaming mode
        self._lock = threading.Lock()
        self.device = lm.device
        self._delays = [d + delay_steps for d in lm.delays[lm.audio_offset:lm.audio_offset + lm.dep_q]]
        self._ungenerated = ungenerated

    def to(self, device) -> None:
        with self._lock:
            self._mimi.to(device)
            self.device = torch.device(device)

    def prompt(self, key: str, path: Path) -> PromptState:
        """Reads, encodes and decodes one clip (seconds of work for a long clip on CPU)."""
        import sphn

        wav, _ = sphn.read(str(path), sample_rate=self._mimi.sample_rate)
        return self.prompt_pcm(key, wav[0])

    def prompt_pcm(self, key: str, wav) -> PromptState:
        """Encodes and decodes a clip given as mono float PCM at Mimi's sample rate (an uploaded
        voice, validated and resampled by the ingress)."""
        with self._lock, torch.no_grad():
            pcm = torch.as_tensor(wav, dtype=torch.float32).reshape(1, 1, -1).to(self.device)
            codes = self._mimi.encode(pcm)[0, :, :-self.DROPPED_FRAMES]
            if codes.shape[-1] < 1:
                raise ValueError("the clip is too short to be a voice prompt")
            codec_rows = self._decoder_rows(codes)
        state = PromptState(key, codes.shape[-1], delayed_codes(codes, self._delays, self._ungenerated), codec_rows)
        state.measure()
        return state

    def _decoder_rows(self, codes: torch.Tensor) -> list[torch.Tensor]:
        from moshi.utils.compile import CUDAGraphed

        with self._mimi.streaming(1):
            states = row_state.module_states(self._mimi)
            for state in states:  # one short stream per voice: capturing graphs would cost more
                for value in vars(state).values():
                    if isinstance(value, CUDAGraphed):
                        value.disable = True
            for t in range(codes.shape[-1]):
                self._mimi.decode(codes[None, :, t:t + 1])
            return row_state.copy_rows(row_state.row_views(states, 1), [0])


class PromptCache:
    """Voice prompts by key, least recently used first out, bounded in bytes. Thread-safe."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[str, PromptState] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> PromptState | None:
        with self._lock:
            state = self._items.get(key)
            if state is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return state

    def put(self, state: PromptState) -> None:
        """Adds (or re-measures) a prompt, then evicts the oldest beyond the bound (never the
        one just added: a row is about to use it)."""
        state.measure()
        with self._lock:
            self._items[state.key] = state
            self._items.move_to_end(state.key)
            while self.bytes > self.max_bytes and len(self._items) > 1:
                self._items.popitem(last=False)

    def discard(self, key: str) -> bool:
        with self._lock:
            return self._items.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    @property
    def bytes(self) -> int:
        return sum(state.nbytes for state in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items
