"""Voice clips through serve_app/audio/clips.py, on files of many kinds encoded with FFmpeg: what
is kept (mono, 24 kHz, quiet ends cut, trimmed to the prompt length) and what is refused, with
which code; bounded work on a decompression bomb and a deadline; any bytes at all give a clip or
a 4xx refusal, never another exception."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.clips import audio_file, count_decoding, silence_bomb, tone
from serve_app.audio.clips import Clip, ClipLimits, ClipRefused, decode_clip

LIMITS = ClipLimits(min_s=3.0, max_s=30.0, prompt_s=10.0)


@pytest.mark.parametrize("container, codec", [("wav", "pcm_s16le"), ("flac", "flac"), ("mp3", "libmp3lame"),
                                              ("ogg", "libopus"), ("adts", "aac"), ("wav", "pcm_f32le")])
def test_any_format_ffmpeg_reads_becomes_a_24_khz_mono_prompt(container, codec):
    rate = 48000 if codec == "libopus" else 44100
    clip = decode_clip(audio_file(np.stack([tone(5, rate), tone(5, rate)]), rate, container, codec), LIMITS)
    assert clip.pcm.dtype == np.float32 and clip.pcm.ndim == 1
    assert abs(clip.duration_s - 5.0) < 0.15 and clip.source.startswith(container.replace("adts", "aac"))
    # The 220 Hz tone survives the resampling (its peak frequency at 24 kHz) at its level.
    spectrum = np.abs(np.fft.rfft(clip.pcm[:24000]))
    assert abs(np.argmax(spectrum) - 220) <= 2
    assert 0.15 < np.sqrt(np.mean(clip.pcm ** 2)) < 0.25


def test_channels_are_mixed_down_not_picked():
    # Opposite channels cancel in a mixdown; keeping either channel alone would be a loud clip.
    with pytest.raises(ClipRefused) as refused:
        decode_clip(audio_file(np.stack([tone(5), -tone(5)])), LIMITS)
    assert refused.value.code == "clip_silent"


def test_quiet_ends_are_cut_and_the_prompt_is_trimmed():
    quiet = np.zeros(2 * 24000, np.float32)
    clip = decode_clip(audio_file(np.concatenate([quiet, tone(4), quiet])), LIMITS)
    assert abs(clip.sound_s - 4.0) < 0.05 and abs(clip.duration_s - 4.0) < 0.05
    long_clip = decode_clip(audio_file(tone(25)), LIMITS)
    assert long_clip.duration_s == 10.0 and abs(long_clip.sound_s - 25.0) < 0.05


@pytest.mark.parametrize("data, code", [
    (b"", "clip_not_audio"), (b"hello, I am a text file\n" * 40, "clip_not_audio"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "clip_not_audio"), (b"RIFF" + bytes(100), "clip_not_audio"),
    (audio_file(tone(2)), "clip_too_short"), (audio_file(np.zeros(24000 * 5, np.float32)), "clip_silent"),
    (audio_file(tone(5, amplitude=0.001)), "clip_silent"),  # -60 dBFS: below the -50 dBFS floor
    (audio_file(tone(31)), "clip_too_long"), (silence_bomb(), "clip_too_long"),
    (audio_file(tone(5, rate=2000), rate=2000), "clip_decode_limit"),
    (audio_file(np.tile(tone(5), (16, 1)), layout="hexadecagonal"), "clip_decode_limit"),
])
def test_bad_clips_are_refused_with_their_code(data, code):
    with pytest.raises(ClipRefused) as refused:
        decode_clip(data, LIMITS)
    assert refused.value.code == code and refused.value.status in (415, 422), refused.value.message


def test_a_decompression_bomb_is_refused_after_bounded_work(monkeypatch):
    decoded = count_decoding(monkeypatch)
    bomb = silence_bomb()  # an hour
    with pytest.raises(ClipRefused) as refused:
        decode_clip(bomb, LIMITS)
    assert refused.value.code == "clip_too_long"
    assert len(bomb) < 1_000_000 and decoded[0] <= LIMITS.max_s + 1.0  # of the hour it holds


def test_decoding_has_a_deadline():
    ticks = itertools.count(step=1.0)  # a clock that moves one second each time it is read
    with pytest.raises(ClipRefused) as refused:
        decode_clip(audio_file(tone(5)), ClipLimits(decode_timeout_s=2.5), clock=lambda: next(ticks))
    assert refused.value.code == "clip_decode_limit"


def test_a_lying_wav_header_is_read_for_what_it_holds():
    wav = bytearray(audio_file(tone(5)))
    wav[4:8] = struct.pack("<I", 0xFFFFFFF0)  # RIFF size: 4 GB
    data_at = wav.index(b"data")
    wav[data_at + 4:data_at + 8] = struct.pack("<I", 0xFFFFFFF0)  # data size: 4 GB
    clip = decode_clip(bytes(wav), LIMITS)
    assert abs(clip.duration_s - 5.0) < 0.05


VALID = [audio_file(tone(4)), audio_file(tone(4), container="mp3", codec="libmp3lame"),
         audio_file(tone(4), container="flac", codec="flac")]


@st.composite
def damaged_clips(draw) -> bytes:
    """A valid file with bytes overwritten, cut short, or both."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data[:draw(st.integers(0, len(data)))])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=2048), damaged_clips()))
def test_any_bytes_give_a_clip_or_a_clear_refusal(data):
    try:
        clip = decode_clip(data, ClipLimits(min_s=0.5, decode_timeout_s=2.0))
    except ClipRefused as refused:
        assert refused.status in (415, 422) and refused.code.startswith("clip_") and refused.message
    else:
        assert isinstance(clip, Clip) and clip.pcm.ndim == 1 and np.isfinite(clip.pcm).all()
        assert 0.5 <= clip.sound_s and clip.duration_s <= 10.0
