"""Changing the speed of speech without changing its pitch: FFmpeg's `atempo` filter, via PyAV.

Kyutai's model has no speed input, so OpenAI's `speed` (0.25 to 4.0) is honoured by time-stretching
the generated audio. It works frame by frame, so streamed audio stays streamed (the filter holds back
at most a frame or two). `atempo` takes factors between 0.5 and 2.0 per instance (its quality is
best there), so larger changes chain several instances.
"""

from __future__ import annotations

import av
import av.filter
import numpy as np

from deployments.protocol import SAMPLE_RATE

MIN_SPEED, MAX_SPEED = 0.25, 4.0


def atempo_factors(speed: float) -> list[float]:
    """`speed` as a product of factors each within [0.5, 2.0]."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}")
    factors = []
    while speed < 0.5:
        factors.append(0.5)
        speed /= 0.5
    while speed > 2.0:
        factors.append(2.0)
        speed /= 2.0
    return factors + [speed]


class Tempo:
    """`process(pcm)` returns the time-stretched audio available so far; `flush()` the rest.
    Speed 1.0 passes audio through untouched."""

    def __init__(self, speed: float = 1.0):
        self.speed = float(speed)
        self._graph = None
        self._pts = 0
        if self.speed != 1.0:
            graph = av.filter.Graph()
            nodes = [graph.add_abuffer(format="flt", sample_rate=SAMPLE_RATE, layout="mono",
                                       time_base=f"1/{SAMPLE_RATE}")]
            nodes += [graph.add("atempo", f"{factor:.6f}") for factor in atempo_factors(self.speed)]
            nodes.append(graph.add("abuffersink"))
            for upstream, downstream in zip(nodes, nodes[1:]):
                upstream.link_to(downstream)
            graph.configure()
            self._graph = graph

    def _drain(self) -> np.ndarray:
        out = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break
            out.append(frame.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        if self._graph is None or pcm.size == 0:
            return pcm
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, np.float32)[None, :],
                                           format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += pcm.shape[0]
        self._graph.push(frame)
        return self._drain()

    def flush(self) -> np.ndarray:
        if self._graph is None:
            return np.zeros(0, np.float32)
        self._graph.push(None)
        rest = self._drain()
        self._graph = None
        return rest
