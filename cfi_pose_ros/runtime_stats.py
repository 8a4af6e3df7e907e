"""Rolling runtime statistics for diagnostics: rates, latency percentiles, drop counts."""
from __future__ import annotations

from collections import Counter, deque

import numpy as np


class RollingStats:
    """The last ``window`` seconds of events (timestamps, latencies) and lifetime counters, and the
    drops since the previous :meth:`summary` (the previous diagnostics: what makes them WARN).

    ``started``: when counting began, on the callers' clock; rates in the first ``window`` seconds
    are then over the time since (a node 1 s old at 30 Hz read 6 Hz), else always over ``window``."""

    def __init__(self, window: float = 5.0, max_samples: int = 10000, started: float | None = None):
        self.window = window
        self.started = started
        # inputs counted in 50 slices of the window, not one entry each: 10,000 entries over 5 s
        # read any flood above 2000 Hz as 2000 Hz
        self._input_slice = window / 50
        self._inputs: deque[list] = deque()           # [slice index, inputs in it], oldest first
        self._outputs: deque[tuple[float, float, int]] = deque(maxlen=max_samples)  # (t, latency s, people)
        self.dropped: Counter = Counter()
        self._dropped_since_summary: Counter = Counter()
        self.total_inputs = 0
        self.total_outputs = 0
        self._listening_since: float | None = None
        self._last_input: float | None = None

    def listen(self, now: float | None) -> None:
        """Subscribed from ``now`` on (activate); ``None``: not listening (deactivate). Rates start
        over at ``now``: counted from the node's construction, 1 s of 30 Hz input after an activate
        (after a slow configure, or a deactivate) read 6 Hz for the window's first seconds, and
        inputs from before a deactivate were divided by the time since the activate. At ``None`` the
        window is emptied too: an inactive node takes no input, and its diagnostics said "inactive"
        beside the rates, latency and people of the period before, for another window (after a cleanup
        and configure, the old engine's latency beside the new backend)."""
        self._listening_since = now
        if now is not None:
            self.started = now
        self._inputs.clear()
        self._outputs.clear()

    def input(self, now: float) -> None:
        index = int(now // self._input_slice)
        if self._inputs and self._inputs[-1][0] == index:
            self._inputs[-1][1] += 1
        else:
            self._inputs.append([index, 1])
        self.total_inputs += 1
        self._last_input = now

    def seconds_without_input(self, now: float) -> float | None:
        """How long no input has arrived while listening (since activate or the last input,
        whichever is later); ``None`` while not listening."""
        if self._listening_since is None:
            return None
        return now - max(self._listening_since, self._last_input or self._listening_since)

    def output(self, now: float, latency: float, people: int) -> None:
        self._outputs.append((now, latency, people))
        self.total_outputs += 1

    def drop(self, reasons: Counter) -> None:
        self.dropped.update(reasons)
        self._dropped_since_summary.update(reasons)

    def _slice_before_window(self, index: int, now: float) -> bool:
        """Whether input slice ``index`` lies wholly before the window ending at ``now``. Inputs
        and outputs leave the window by this one rule: outputs trimmed to the exact instant left up
        to a slice (0.1 s) of inputs more in it, so a stream answered frame for frame read as
        dropping (14.8 Hz in, 14.2 out), and 100 frames of a burst 5.05 s back as 19.8 in, 0 out."""
        return (index + 1) * self._input_slice <= now - self.window

    def _trim(self, now: float) -> None:
        while self._inputs and self._slice_before_window(self._inputs[0][0], now):
            self._inputs.popleft()
        while self._outputs and self._slice_before_window(int(self._outputs[0][0] // self._input_slice), now):
            self._outputs.popleft()

    def summary(self, now: float) -> dict:
        """Rates, latencies and totals; ``dropped_since_last`` starts counting afresh after each call.
        The latencies are ``None`` when no output is in the window: there is none to measure."""
        self._trim(now)
        recent, self._dropped_since_summary = self._dropped_since_summary, Counter()
        latencies = np.array([lat for _, lat, _ in self._outputs]) * 1000.0
        span = self.window if self.started is None else min(self.window, max(now - self.started, 1e-3))
        return {
            "input_rate_hz": sum(count for _, count in self._inputs) / span,
            "output_rate_hz": len(self._outputs) / span,
            "latency_p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "latency_p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "people_last": self._outputs[-1][2] if self._outputs else 0,
            "inputs_total": self.total_inputs,
            "outputs_total": self.total_outputs,
            "dropped": dict(self.dropped),
            "dropped_since_last": dict(recent),
            "seconds_without_input": self.seconds_without_input(now),
        }


def ms_value(ms: float | None) -> str:
    """A duration in ms as a /diagnostics value: ``""`` where nothing was measured (no frame in the
    window, not listening). The key stays in every status, as diagnostic_updater's tasks keep
    theirs, so a monitor's rows and a plot's series do not come and go; the value was ``nan``,
    which tools that read values as numbers (``float()``, ``strtod``) took for a measurement."""
    return "" if ms is None else f"{ms:.2f}"
