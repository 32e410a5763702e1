"""Captions and the streamed body's shape, in process (no cluster): what the streaming routes build
from a worker's events."""

from __future__ import annotations

from serve_app.audio import captions


def test_captions_cut_at_sentence_ends_and_pauses():
    words = [{"word": "One", "start_s": 0.0, "end_s": 0.3}, {"word": "two.", "start_s": 0.3, "end_s": 0.8},
             {"word": "Three", "start_s": 0.9, "end_s": 1.2}, {"word": "four", "start_s": 2.5, "end_s": 3.0}]
    cues = captions.cues(words)
    assert [c.text for c in cues] == ["One two.", "Three", "four"]  # sentence end, then a 1.3 s pause
    assert captions.to_webvtt(words).splitlines()[2] == "00:00:00.000 --> 00:00:00.800"
    assert captions.to_srt(words).splitlines()[1] == "00:00:00,000 --> 00:00:00,800"


def test_each_worker_batch_leaves_as_one_body_message_with_its_words_first():
    """In-process, on the body generator the routes use: the frames of one worker batch (what
    the worker made in its flush interval) become ONE chunk of the body, in order, byte for byte;
    SSE sends the batch's words before that chunk."""
    import asyncio

    import numpy as np

    from deployments.protocol import AudioChunk, SynthesisDone, Word, WordSpoken
    from serve_app import audio
    from serve_app.service.streaming import SpeechStream, encoded_audio, sse_speech

    rng = np.random.default_rng(0)
    frames = [rng.uniform(-0.5, 0.5, 1920).astype(np.float32) for _ in range(6)]
    word = WordSpoken(Word("hello", 0.1, 0.4))
    done = SynthesisDone("r1", "voice", 6 * 0.08, [word.word])
    sent = [[AudioChunk(frames[0])], [AudioChunk(frames[1]), word, AudioChunk(frames[2]), AudioChunk(frames[3])],
            [AudioChunk(frames[4]), AudioChunk(frames[5]), done]]

    async def worker_batches():
        for batch in sent[1:]:
            yield batch

    async def body(make):
        return [chunk async for chunk in make(SpeechStream(worker_batches(), sent[0]))]

    chunks = asyncio.run(body(lambda stream: encoded_audio(stream, "pcm")))
    assert [len(c) for c in chunks] == [1920 * 2, 3 * 1920 * 2, 2 * 1920 * 2]
    assert b"".join(chunks) == audio.to_int16(np.concatenate(frames)).tobytes()

    events = asyncio.run(body(lambda stream: sse_speech(stream, "pcm", 1.0, audio_type="audio", word_type="word",
                                                        done=lambda d, words, n: {"type": "done", "frames": n})))
    kinds = [e.decode().split('"type":"')[1].split('"')[0] for e in events]
    assert kinds == ["audio", "word", "audio", "audio", "done"]
    assert b'"frames":6' in events[-1]
