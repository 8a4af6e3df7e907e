"""Temporal smoothing of 3D skeletons: the One-Euro filter, and one filter per tracked person (per camera).

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
the new measurement). A timestamp that does not advance (``dt == 0``: a
driver that stamps every image alike; or by less than a millisecond,
``timeline.MIN_FRAME_INTERVAL``: steps of 1 ns froze the output the same way,
and float rounding of wall-clock stamps made some) says nothing about speed, and the
filter's limit there (``alpha -> 0``) would return the previous estimate
forever, freezing the output at the first pose: such a sample is passed
through unfiltered and the state is left as it was, so the output follows the
input (unsmoothed) until time advances again. The last sample again at its
time (a duplicated message) gets the output it got. A timestamp that
goes backwards (bag replay loop, simulated clock reset) restarts the filter
from the new sample.
"""
from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from typing import Sequence

import numpy as np

from . import timeline
from .frame_ids import MAX_CAMERAS, RecentlySeen

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
        self._last: tuple[np.ndarray, np.ndarray] | None = None     # the last (sample, output)

    @property
    def last_time(self) -> float | None:
        return self._t

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be finite, got {t}")
        x = np.array(x, dtype=np.float64)
        out = self._filter(t, x)
        self._last = (x, out)
        return out.copy()

    def _filter(self, t: float, x: np.ndarray) -> np.ndarray:
        finite = np.isfinite(x)
        if self._t is None or self._x.shape != x.shape or t < self._t:
            self._t = t
            self._x = np.where(finite, x, 0.0)
            self._dx = np.zeros_like(x)
            self._valid = finite
            return np.where(finite, x, np.nan)

        dt = t - self._t
        if dt < timeline.MIN_FRAME_INTERVAL:   # no time has passed: pass the sample through, keep the state
            if np.array_equal(x, self._last[0], equal_nan=True):
                return self._last[1]        # the same sample again (a duplicated message): its output
            return np.where(finite, x, np.nan)
        dx = (np.where(finite, x, self._x) - self._x) / dt
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
    """One :class:`OneEuroFilter` per tracking id and input camera frame, with bounded state.

    Call :meth:`smooth_frame` once per frame with every person's id and
    keypoints (``(N, 17, 3)`` in metres, typically) and the frame they are in
    (``frame_id``: the input's ``header.frame_id``, its camera); :meth:`smooth` is
    the one-person form.

    Each camera frame has a state of its own (its tracks and its timeline), as
    if it had a smoother to itself: two cameras publishing on one topic into
    one lifter, each numbering its people from 1, are smoothed each with their
    own filters, however their frames alternate. One smoother kept one frame
    and dropped every track whenever a frame came in the other camera's, so
    such an input was never smoothed at all (and two cameras' stamps a little
    out of order read as a bag loop too). At most ``max_cameras`` cameras are
    kept, the least recently seen dropped first, and a camera not seen for
    more than ``forget_after_frames`` frames (of any camera) is dropped: a
    driver restarted with another ``frame_id`` gets a fresh state and its
    old one ages out.

    The rules within one camera, each so that no input can make the output
    wrong or the state grow without bound:

    * An empty id means the person is not tracked: there is no identity to
      key a filter by, so the keypoints are returned unsmoothed.
    * An id that occurs more than once in one frame names no single person
      (a tracker's error, or two detectors merged): those people are returned
      unsmoothed and the id's filter is dropped, so neither inherits the
      other's history.
    * A track expires when it has not been seen for more than
      ``forget_after`` seconds (of the ``t`` passed in for its camera, in
      either direction, so a clock reset does not keep ghosts alive) or for
      more than ``forget_after_frames`` frames of its camera (calls to
      :meth:`smooth_frame`, for stamps that do not advance), and the least
      recently seen tracks are dropped beyond ``max_tracks`` (per camera). A
      re-used id then starts fresh. Expiry looks only at the oldest tracks
      (they are kept in the order they were last seen), so a frame costs the
      same after 100 000 ids as after ten.
    * A track whose ``mode`` changed (what its keypoints are relative to: the
      pipeline passes whether the person is placed in the camera frame or
      root-relative) starts fresh, so no output blends two frames.
    * A frame without a time (``t=None``: the pipeline passes it for a zero
      stamp, ROS's "not set") is returned unsmoothed and changes no track: one
      unstamped frame in a stamped stream is 0 s, a clock reset to every track,
      which expired them all, and the frames after it went unsmoothed while
      the filters started over.
    * A late frame (stamped at most ``timeline.LATE_FRAME_TOLERANCE``, 0.1 s,
      before its camera's newest one: out-of-order delivery) is returned
      unsmoothed and changes no track; a step further back is a new timeline
      (a bag loop): every track of that camera is dropped, those not in that
      frame too. A frame smoothed before delivered again late (a duplicate
      that arrives after newer frames) gets, person by person, the output it
      got: the last ``RECENT_FRAMES`` frames' people of each camera are kept
      for this, so such a duplicate gives no person two poses at one stamp.

    Smooth the absolute (camera-frame) joints rather than the root-relative
    ones so that the person's translation is smoothed too.
    """

    # frames remembered for late duplicates: at 30 Hz 0.1 s is 3 frames; a faster input's late
    # duplicates further back are passed through unsmoothed (bounded memory whatever the rate)
    RECENT_FRAMES = 8

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0,
                 forget_after: float = 1.0, forget_after_frames: int = 300, max_tracks: int = 4096,
                 max_cameras: int = MAX_CAMERAS):
        OneEuroFilter(min_cutoff, beta, d_cutoff)        # validate the parameters once
        _check_positive(forget_after=forget_after)
        for name, value in (("forget_after_frames", forget_after_frames), ("max_tracks", max_tracks),
                            ("max_cameras", max_cameras)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.forget_after = float(forget_after)
        self.forget_after_frames = forget_after_frames
        self.max_tracks = max_tracks
        # frame_id -> its state, least recently seen first; a tick per frame smoothed, of every camera
        self._cameras: RecentlySeen[_CameraTracks] = RecentlySeen(max_cameras, forget_after_frames)

    @property
    def cameras(self) -> tuple[str, ...]:
        """The camera frames with a state, least recently seen first."""
        return self._cameras.names()

    @property
    def track_ids(self) -> tuple[str, ...]:
        """Every camera's track ids (cameras least recently seen first; an id tracked in two
        cameras is there twice)."""
        return tuple(track_id for camera in self._cameras.records() for track_id in camera.tracks)

    def tracks_in(self, frame_id: str = "") -> tuple[str, ...]:
        """The track ids of one camera frame, least recently seen first."""
        camera = self._cameras.get(frame_id)
        return () if camera is None else tuple(camera.tracks)

    def __len__(self) -> int:
        return sum(len(camera.tracks) for camera in self._cameras.records())

    def __contains__(self, track_id: str) -> bool:
        return any(track_id in camera.tracks for camera in self._cameras.records())

    def forget(self, track_id: str, frame_id: str | None = None) -> None:
        """Drop a track: of one camera frame, or (``frame_id=None``) of every camera."""
        for name, camera in self._cameras.items():
            if frame_id is None or name == frame_id:
                camera.tracks.pop(track_id, None)

    def reset(self) -> None:
        self._cameras.clear()

    def forget_stale(self, t: float, frame_id: str = "") -> list[str]:
        """Drop one camera's tracks expired at its time ``t`` and frame (see the class docstring);
        returns their ids."""
        camera = self._cameras.get(frame_id)
        return [] if camera is None else camera.forget_stale(t)

    def smooth_frame(self, track_ids: Sequence[str], t: float | None, keypoints: np.ndarray,
                     modes: Sequence | None = None, frame_id: str = "") -> np.ndarray:
        """The people of one frame: ``keypoints`` ``(N, ...)``, one id each -> smoothed ``(N, ...)`` float64.

        ``modes`` (one per person, optional) says what the keypoints are relative to (the pipeline
        passes whether the person is placed in the camera frame or root-relative): a track whose
        mode changed restarts from the new sample, so no output blends values of two frames.
        ``frame_id``: the frame the keypoints are in (the input's camera); each has its own tracks
        and timeline. ``t=None``: a frame without a time, returned unsmoothed (see the class
        docstring)."""
        out = np.array(keypoints, dtype=np.float64)
        if len(track_ids) != len(out):
            raise ValueError(f"{len(track_ids)} ids for {len(out)} people")
        if modes is not None and len(modes) != len(out):
            raise ValueError(f"{len(modes)} modes for {len(out)} people")
        if t is None:
            return out
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be finite, got {t}")
        self._cameras.tick()
        camera = self._cameras.pop(frame_id) or _CameraTracks(self)
        self._cameras.put(frame_id, camera)        # now the most recently seen
        self._cameras.evict()                      # never the camera at hand: it is the last
        return camera.smooth_frame(track_ids, t, out, modes)

    def smooth(self, track_id: str, t: float, keypoints: np.ndarray, frame_id: str = "") -> np.ndarray:
        """One person alone in a frame (see :meth:`smooth_frame`)."""
        return self.smooth_frame([track_id], t, np.asarray(keypoints, dtype=np.float64)[None],
                                 frame_id=frame_id)[0]


class _CameraTracks:
    """One camera frame's tracks and timeline (the rules of :class:`PoseSmoother` within a camera)."""

    def __init__(self, smoother: PoseSmoother):
        self._smoother = smoother               # the parameters
        self._frame = 0                         # frames of this camera smoothed
        self._newest: float | None = None       # the newest frame time (late frames are behind it)
        # id -> (filter, frame last seen, mode), least recently seen first
        self.tracks: OrderedDict[str, tuple[OneEuroFilter, int, object]] = OrderedDict()
        # (time, {id: (input, output)}) of the last frames smoothed, for late duplicates
        self._recent: deque[tuple[float, dict]] = deque(maxlen=PoseSmoother.RECENT_FRAMES)

    def reset(self) -> None:
        self.tracks.clear()
        self._recent.clear()

    def forget_stale(self, t: float) -> list[str]:
        params, stale = self._smoother, []
        while self.tracks:
            track_id, (filt, last_frame, _) = next(iter(self.tracks.items()))
            if (len(self.tracks) <= params.max_tracks
                    and self._frame - last_frame <= params.forget_after_frames
                    and abs(float(t) - filt.last_time) <= params.forget_after):
                break
            del self.tracks[track_id]
            stale.append(track_id)
        return stale

    def smooth_frame(self, track_ids: Sequence[str], t: float, out: np.ndarray,
                     modes: Sequence | None) -> np.ndarray:
        """``out`` (this camera's people at ``t``, a copy of the input) smoothed in place."""
        params = self._smoother
        if timeline.is_late(self._newest, t):
            # late: restarting every filter for it would undo the smoothing; a person of a frame
            # smoothed before, delivered again, gets its output
            return self._as_answered_before(track_ids, t, out)
        if timeline.starts_over(self._newest, t):
            # a new timeline: a filter kept for a person not in this frame blended the last pass's
            # pose into its first output once the stamps passed the filter's time
            self.reset()
        self._newest = t
        self._frame += 1
        self.forget_stale(t)          # before filtering: an expired id starts fresh
        counts = Counter(track_ids)
        answered = {}
        # a frame at the newest time again: a person it gave an output before gets that output (the
        # filter compares a sample only with the one before it: M1, another message M2 at the same
        # stamp, then M1 again gave M1 a second pose)
        same_time = self._recent[-1][1] if self._recent and self._recent[-1][0] == t else {}
        for row, track_id in enumerate(track_ids):
            if not track_id:
                continue
            if counts[track_id] > 1:
                self.tracks.pop(track_id, None)
                continue
            mode = None if modes is None else modes[row]
            entry = self.tracks.pop(track_id, None)
            before = _answer_given(same_time, track_id, out[row])
            if before is not None and entry is not None:
                # the track as the messages at this time left it, whatever their modes: M1 of a
                # placed person, M2 of them root-relative, then M1 again gave M1 its input
                # unsmoothed, a second pose, as its mode no longer was the track's
                filt, mode = entry[0], entry[2]
                smoothed = before.copy()
            else:
                same_mode = entry is not None and entry[2] == mode
                filt = entry[0] if same_mode else OneEuroFilter(params.min_cutoff, params.beta, params.d_cutoff)
                # a copy either way (the filter returns one): out[row] is written below. A track
                # dropped since the answer (an id given twice at this time) starts from the sample
                smoothed = filt(t, out[row])
                if before is not None:
                    smoothed = before.copy()
            answered[track_id] = (out[row].copy(), smoothed)
            out[row] = smoothed
            self.tracks[track_id] = (filt, self._frame, mode)      # now the most recently seen
        if self._recent and self._recent[-1][0] == t:
            # the same time again (see OneEuroFilter): what the time's first frame got stays; at most
            # max_tracks people a time, as a clock that stands still (a paused bag, a driver that
            # stamps every frame alike) with ever new ids otherwise grew this without end
            same_time = self._recent[-1][1]
            for track_id, answer in answered.items():
                if len(same_time) >= params.max_tracks:
                    break
                same_time.setdefault(track_id, answer)
        else:
            self._recent.append((t, answered))
        self.forget_stale(t)          # and after: new ids may have passed max_tracks
        return out

    def _as_answered_before(self, track_ids: Sequence[str], t: float, out: np.ndarray) -> np.ndarray:
        """``out`` with each person whose id and keypoints at ``t`` were smoothed before given the
        output it got then; the rest as they are."""
        answered = next((people for time, people in self._recent if time == t), {})
        for row, track_id in enumerate(track_ids):
            before = _answer_given(answered, track_id, out[row])
            if before is not None:
                out[row] = before
        return out


def _answer_given(answered: dict, track_id: str, keypoints: np.ndarray) -> np.ndarray | None:
    """The output a person got at a time (``answered``: id -> (input, output)) when ``keypoints`` are
    the input it got it for, else None."""
    before = answered.get(track_id)
    if before is not None and np.array_equal(before[0], keypoints, equal_nan=True):
        return before[1]
    return None
