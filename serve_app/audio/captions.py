"""Captions from word timestamps: WebVTT and SRT.

Words are grouped into cues of a few seconds, cut after sentence ends, at pauses between words, or
when a cue grows too long to read comfortably.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployments.engine.text import SENTENCE_END_RE

FORMATS = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8"}

MAX_CUE_WORDS = 10
MAX_CUE_S = 4.0
PAUSE_S = 0.6  # a silence this long between two words starts a new cue


@dataclass
class Cue:
    start_s: float
    end_s: float
    text: str


def _word_fields(word) -> tuple[str, float, float]:
    if isinstance(word, dict):
        return str(word["word"]), float(word["start_s"]), float(word["end_s"])
    return str(word.word), float(word.start_s), float(word.end_s)


def cues(words) -> list[Cue]:
    """Groups words (dicts or objects with word/start_s/end_s) into cues."""
    result: list[Cue] = []
    current: list[tuple[str, float, float]] = []

    def close() -> None:
        if current:
            result.append(Cue(current[0][1], max(current[-1][2], current[0][1]),
                              " ".join(text for text, _, _ in current)))
            current.clear()

    for word in words:
        text, start_s, end_s = _word_fields(word)
        if current and (len(current) >= MAX_CUE_WORDS or end_s - current[0][1] > MAX_CUE_S
                        or start_s - current[-1][2] >= PAUSE_S):
            close()
        current.append((text, start_s, end_s))
        if SENTENCE_END_RE.search(text):
            close()
    close()
    return result


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(text: str) -> str:
    # "-->" would end a cue's timing line early in WebVTT; blank lines would end the cue.
    return " ".join(text.replace("-->", "->").split())


def to_webvtt(words) -> str:
    blocks = ["WEBVTT"]
    for cue in cues(words):
        blocks.append(f"{_timestamp(cue.start_s, '.')} --> {_timestamp(cue.end_s, '.')}\n{_cue_text(cue.text)}")
    return "\n\n".join(blocks) + "\n"


def to_srt(words) -> str:
    blocks = []
    for index, cue in enumerate(cues(words), start=1):
        blocks.append(f"{index}\n{_timestamp(cue.start_s, ',')} --> {_timestamp(cue.end_s, ',')}\n"
                      f"{_cue_text(cue.text)}")
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def render(words, fmt: str) -> str:
    """Captions in `fmt` ("vtt" or "srt")."""
    if fmt == "vtt":
        return to_webvtt(words)
    if fmt == "srt":
        return to_srt(words)
    raise ValueError(f"unknown captions format {fmt!r}; use one of {', '.join(FORMATS)}")
