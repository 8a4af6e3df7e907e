"""How the stateful per-stream parts (tracker, smoother, depth pairing) read a step back in stamps.

A stream's stamps can go back for two reasons that need opposite handling. Out-of-order delivery
(a driver publishing from two threads, a reordered burst) puts a frame a few milliseconds, at most a
frame period or two, behind the newest one: it is late, and what was learnt from the newer frames
stays. A bag replayed in a loop or a simulation reset goes back by the length of the bag or the run,
seconds: that is a new timeline, and state from the old one must not carry over. Restarting on any
step back gave every person a new id (and every filter a restart) for one frame that came 3 ms late.
"""
from __future__ import annotations

LATE_FRAME_TOLERANCE = 0.1      # seconds behind the newest frame that are still "late"
# Two stamps closer than this (seconds) are one instant: no frame source runs at a kilohertz, and a
# step of nanoseconds or microseconds (a frame republished with a new stamp, stamps from one trigger)
# is no time in which anything moved. Read as time, a box moved a few pixels was millions of pixels a
# second (the tracker's next box left the image), and a smoothing filter's gain over 1 ns was zero:
# its output froze on the first pose, and went back to it whenever float rounding made a step.
MIN_FRAME_INTERVAL = 1e-3
# Stamps are seconds as float64 (sec + nanosec * 1e-9, sec ~1.8e9): a frame exactly 100 ms behind
# came out 0.1 +- 1e-7 behind, and about half of them (one period of a 10 Hz detector) read as a new
# timeline, every id and filter restarted. A microsecond is far below any frame period.
_STAMP_ROUNDING = 1e-6


def is_late(newest: float | None, t: float) -> bool:
    """A frame at ``t`` arrived out of order, at most ``LATE_FRAME_TOLERANCE`` behind ``newest``."""
    return newest is not None and 0.0 < newest - t <= LATE_FRAME_TOLERANCE + _STAMP_ROUNDING


def starts_over(newest: float | None, t: float) -> bool:
    """A frame at ``t`` begins a new timeline: further behind ``newest`` than a late frame."""
    return newest is not None and newest - t > LATE_FRAME_TOLERANCE + _STAMP_ROUNDING
