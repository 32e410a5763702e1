"""Prometheus metrics of a TTSWorker replica, exported through Ray's metrics endpoint (with the
deployment/replica tags Serve adds): time to first audio, real-time factor, outcomes, queue depth.
Every one carries `model`, the replica's model's name in the app's model table, so a dashboard
tells the models of an app apart without reading deployment names."""

from __future__ import annotations

import time

from ray.serve.metrics import Counter, Gauge, Histogram

from ..protocol import DEFAULT_MODEL_NAME

_SECONDS = [0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60]
_RATIOS = [0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20]
# One engine tick: a model step for every speaking slot (plus catch-up steps); 80 ms is real time.
# A stream's audio ahead of its real-time playback (pacing.py): at or under 0.1 s the player is
# about to run dry; the lead is capped by stream_lead_s (20 s by default). Behind playback counts
# in the first bucket (Ray's boundaries are positive) and in tts_audio_underruns.
_LEAD_SECONDS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30]
_STEP_SECONDS = [0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5]


class WorkerMetrics:
    def __init__(self, model: str = DEFAULT_MODEL_NAME):
        tagged = ("model",)
        self.requests = Counter("tts_requests", description="Synthesis requests by outcome.",
                                tag_keys=("outcome", *tagged))
        self.first_audio = Histogram("tts_time_to_first_audio_seconds", boundaries=_SECONDS, tag_keys=tagged,
                                     description="From the request reaching the worker to its first audio frame.")
        self.real_time_factor = Histogram("tts_real_time_factor", boundaries=_RATIOS, tag_keys=tagged,
                                          description="Seconds of audio per second of wall time, per request.")
        self.queue_depth = Gauge("tts_queue_depth", description="Requests waiting for a free slot.", tag_keys=tagged)
        self.active = Gauge("tts_active_requests", description="Busy slots: requests speaking now.", tag_keys=tagged)
        self.free_slots = Gauge("tts_free_slots", description="Slots free for a new request.", tag_keys=tagged)
        # Streamed audio made and not yet played (deployments/engine/pacing.py): what waits for
        # its clients in this worker, the ingress and Serve's proxy; at most stream_lead_s a stream.
        self.buffered_seconds = Gauge("tts_stream_buffered_audio_seconds", tag_keys=tagged,
                                      description="Seconds of streamed audio made ahead of its clients' real-time "
                                                  "playback, all streams of the replica.")
        self.buffered_bytes = Gauge("tts_stream_buffered_audio_bytes", tag_keys=tagged,
                                    description="The same audio in bytes, as the worker sends it (float32 PCM).")
        self.tick_seconds = Histogram("tts_step_seconds", boundaries=_STEP_SECONDS, tag_keys=tagged,
                                      description="Wall time of one engine tick (all speaking slots "
                                                  "advance one 80 ms step); above 0.08 s is slower than real time.")
        # Stutter (pacing.py): a stream whose generated audio fell behind its wall clock since its
        # first audio, its player waiting; one count when it starts. Never above 0 on a healthy replica.
        self.underruns = Counter("tts_audio_underruns", tag_keys=tagged,
                                 description="Streams whose generated audio fell behind real-time playback "
                                             "(the listener hears a gap): one count per gap.")
        self.stream_lead = Histogram("tts_stream_lead_seconds", boundaries=_LEAD_SECONDS, tag_keys=tagged,
                                     description="Each speaking stream's audio made ahead of its real-time "
                                                 "playback, sampled every second (behind: the first bucket).")
        # `max_batch_size: auto` (deployments/engine/sizing.py): the count chosen and why.
        self.slots_chosen = Gauge("tts_slots", tag_keys=tagged,
                                  description="Slots the replica admits (configured, or chosen by auto).")
        self.sizing_tick = Gauge("tts_slot_sizing_tick_p95_seconds", tag_keys=tagged,
                                 description="auto: the p95 tick measured at the chosen slot count.")
        self.sizing_budget = Gauge("tts_slot_sizing_tick_budget_seconds", tag_keys=tagged,
                                   description="auto: the tick the margin allows (realtime_margin x 80 ms).")
        for metric in (self.requests, self.first_audio, self.real_time_factor, self.queue_depth, self.active,
                       self.free_slots, self.buffered_seconds, self.buffered_bytes, self.tick_seconds,
                       self.underruns, self.stream_lead, self.slots_chosen, self.sizing_tick, self.sizing_budget):
            metric.set_default_tags({"model": model})

    def stream_leads(self, leads) -> None:
        for lead in leads:
            self.stream_lead.observe(max(0.0, lead))

    def slots(self, slots: int, sizing) -> None:
        """The slots admitted, and auto's measurement when it chose them (engine/sizing.py)."""
        self.slots_chosen.set(slots)
        if sizing is not None:
            self.sizing_budget.set(sizing.tick_budget_s)
            if sizing.tick_p95_s is not None:
                self.sizing_tick.set(sizing.tick_p95_s)


class RequestTimer:
    """Times one request's stream of events."""

    def __init__(self, metrics: WorkerMetrics):
        self.metrics = metrics
        self.started = time.perf_counter()
        self.first_audio_at: float | None = None

    def audio(self) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
            self.metrics.first_audio.observe(self.first_audio_at - self.started)

    def finished(self, outcome: str, audio_seconds: float = 0.0) -> None:
        self.metrics.requests.inc(tags={"outcome": outcome})
        elapsed = time.perf_counter() - self.started
        if outcome == "ok" and elapsed > 0 and audio_seconds > 0:
            self.metrics.real_time_factor.observe(audio_seconds / elapsed)
