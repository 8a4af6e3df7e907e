"""Temporal smoothing of 3D skeletons: the One-Euro filter, and one filter per tracked person.

One-Euro filter (Casiez, Roussel, Vogel, "1 Euro Filter: A Simple Speed-based
Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012): a first-order
low-pass filter whose cutoff frequency rises with the (itself low-passed) speed
of the signal::

    dx_hat  = lowpass(d_cutoff)(dx/dt)
    cutoff  = min_cutoff + beta * |dx_hat|
    x_hat   = lowpass(cutoff)(x)
    alpha(f_c, dt) = 1 / (1 + tau / dt),   tau = 1 / (2 pi f_c)

Slow motion gets a low cutoff (jitter removed), fast motion a high one (little
lag). Units: ``min_cutoff`` and ``d_cutoff`` in Hz; ``beta`` in Hz per unit of
speed (for metres: Hz per m/s). Tuning as the paper suggests: with ``beta = 0``
lower ``min_cutoff`` until a still person stops jittering, then raise ``beta``
until fast movements stop lagging.

Irregular timing: alpha is computed from each step's own ``dt``, so dropped
frames are handled naturally (a long gap gives alpha ~ 1: the filter follows
the new measurement). A repeated timestamp (``dt == 0``) is the limit
``alpha -> 0``: the previous estimate is returned and the state is unchanged.
A timestamp that goes backwards (bag replay loop, simulated clock reset)
restarts the filter from the new sample.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["OneEuroFilter", "PoseSmoother"]


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return dt / (dt + tau)          # == 1 / (1 + tau / dt), and 0 at dt == 0


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value}")


class OneEuroFilter:
    """One-Euro filter over an array of any shape, each element independent.

    Call ``f(t, x)`` with the sample time ``t`` (seconds) and the sample ``x``;
    it returns the filtered array (a new array, same shape, float64).

    Non-finite elements (NaN joints) pass through as NaN and reset that
    element's state: when the value comes back the element restarts from it.
    A change of shape restarts the whole filter.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        _check_positive(min_cutoff=min_cutoff, d_cutoff=d_cutoff)
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a non-negative finite number, got {beta}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self._t: float | None = None
        self._x: np.ndarray | None = None       # filtered value
        self._dx: np.ndarray | None = None      # filtered derivative
        self._valid: np.ndarray | None = None   # elements with a state

    @property
    def last_time(self) -> float | None:
        return self._t

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be finite, got {t}")
        x = np.array(x, dtype=np.float64)
        finite = np.isfinite(x)
        if self._t is None or self._x.shape != x.shape or t < self._t:
            self._t = t
            self._x = np.where(finite, x, 0.0)
            self._dx = np.zeros_like(x)
            self._valid = finite
            return np.where(finite, x, np.nan)

        dt = t - self._t
        if dt > 0:
            dx = (np.where(finite, x, self._x) - self._x) / dt
        else:
            dx = np.zeros_like(x)
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        a = _alpha(cutoff, dt)
        x_hat = a * np.where(finite, x, 0.0) + (1.0 - a) * self._x

        fresh = finite & ~self._valid            # (re)appearing elements start from the sample
        x_hat = np.where(fresh, x, x_hat)
        dx_hat = np.where(fresh, 0.0, dx_hat)
        self._x = np.where(finite, x_hat, 0.0)
        self._dx = np.where(finite, dx_hat, 0.0)
        self._valid = finite
        self._t = t
        return np.where(finite, x_hat, np.nan)


class PoseSmoother:
    """One :class:`OneEuroFilter` per tracking id.

    ``smooth(track_id, t, keypoints)`` returns the smoothed keypoints (same
    shape as given, typically ``(17, 3)`` in metres). Ids not seen for more
    than ``forget_after`` seconds (of the ``t`` passed in; in either direction,
    so a clock reset does not keep ghosts alive) are dropped, so a re-used id
    starts fresh. An empty id means the person is not tracked: there is no
    identity to key a filter by, so the keypoints are returned unsmoothed.

    Smooth the absolute (camera-frame) joints rather than the root-relative
    ones so that the person's translation is smoothed too.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0,
                 forget_after: float = 1.0):
        OneEuroFilter(min_cutoff, beta, d_cutoff)        # validate the parameters once
        _check_positive(forget_after=forget_after)
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.forget_after = float(forget_after)
        self._filters: dict[str, OneEuroFilter] = {}

    @property
    def track_ids(self) -> tuple[str, ...]:
        return tuple(self._filters)

    def __len__(self) -> int:
        return len(self._filters)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._filters

    def forget(self, track_id: str) -> None:
        self._filters.pop(track_id, None)

    def reset(self) -> None:
        self._filters.clear()

    def forget_stale(self, t: float) -> list[str]:
        """Drop ids last seen more than ``forget_after`` seconds from ``t``; returns them."""
        stale = [tid for tid, f in self._filters.items()
                 if abs(float(t) - f.last_time) > self.forget_after]
        for tid in stale:
            del self._filters[tid]
        return stale

    def smooth(self, track_id: str, t: float, keypoints: np.ndarray) -> np.ndarray:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be finite, got {t}")
        self.forget_stale(t)
        if not track_id:
            return np.array(keypoints, dtype=np.float64)
        filt = self._filters.get(track_id)
        if filt is None:
            filt = self._filters[track_id] = OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)
        return filt(t, keypoints)
