"""Pacing of streamed output: a row makes its audio at most `lead_s` ahead of real-time playback,
and a stream that falls too far behind its playback ends.

Why at the row: in Ray Serve 2.53 nothing downstream waits for a client (the ingress's ASGI `send`
appends to an unbounded queue toward the proxy, and no Serve streaming call sets generator
back-pressure; ARCHITECTURE.md, "Facts"). Audio made faster than it is played piles up in the
worker, the ingress and Serve's proxy; made at playback speed after a lead, what any stream can
hold is bounded by the lead plus what a client has actually taken.

The clock starts at a row's first output (its time to first audio is never paced). Playback runs
at `playback_rate` seconds of the row's output per wall second (a client's `speed`); a job whose
request has none is not paced (whole-clip responses, transcriptions).
"""

from __future__ import annotations

from dataclasses import dataclass


# How far behind its playback a stream must be to count as an underrun: a millisecond, so that a
# stream exactly at real time (its lead 0, give or take a float's rounding) is not one.
UNDERRUN_TOLERANCE_S = 0.001


@dataclass(frozen=True)
class Pacing:
    """The rule, for one engine: `lead_s` of output ahead of playback at most; a stream more than
    `lead_s + grace_s` behind its playback is overdue (cancelled)."""

    lead_s: float = 20.0
    grace_s: float = 10.0

    @staticmethod
    def played_s(job, now: float) -> float | None:
        """Seconds of the job's output a real-time player has played by `now` (None: not paced,
        or no output yet)."""
        rate = job.playback_rate
        if rate is None or job.first_output_at is None:
            return None
        return max(0.0, now - job.first_output_at) * rate

    def lead(self, job, now: float) -> float | None:
        """Seconds of output made ahead of playback (below zero: behind it, the player ran dry);
        None: not paced, or no output yet."""
        played = self.played_s(job, now)
        return None if played is None else job.output_s - played

    def buffered_s(self, job, now: float) -> float:
        """Output made and not yet played: what waits somewhere between the row and the ear."""
        lead = self.lead(job, now)
        return 0.0 if lead is None else max(0.0, lead)

    @staticmethod
    def underran(job, lead: float | None) -> bool:
        """Marks whether a running stream's playback has caught up with its output (`lead` below
        zero: the client's player waits for audio, the listener hears a gap). True once per
        underrun: when it starts, not while it lasts. (A row waiting for its client's input is
        not asked: `wait_for_input` keeps its player waiting with it.)"""
        behind = lead is not None and lead < -UNDERRUN_TOLERANCE_S
        started = behind and not job.behind
        job.behind = behind
        return started

    def ahead(self, job, now: float) -> bool:
        """The row is more than the lead ahead of playback: frozen until the clock catches up."""
        played = self.played_s(job, now)
        return played is not None and job.output_s - played > self.lead_s

    def overdue(self, job, now: float) -> bool:
        """The stream's wall time since its first output exceeds its output's duration + the lead
        + the grace period: playback would have run dry long ago, and the row is better given to
        another. (Time a row waits for its client's input does not count: `wait_for_input`.)"""
        played = self.played_s(job, now)
        return played is not None and (played - job.output_s) / job.playback_rate > self.lead_s + self.grace_s

    @staticmethod
    def wait_for_input(job, now: float) -> None:
        """A row that waits for input (streamed text, audio) whose playback has run dry: the player
        waits with it, so its clock restarts where the output ends (a slow typist's row is
        neither overdue nor given a lead it never had)."""
        played = Pacing.played_s(job, now)
        if played is not None and played > job.output_s:
            job.first_output_at = now - job.output_s / job.playback_rate
