"""A light multi-person tracker: box IoU + Hungarian assignment (ROS-free).

Each frame's person boxes are matched to the live tracks by maximising the
total IoU (``scipy.optimize.linear_sum_assignment`` on ``1 - IoU``) between
the new boxes and each track's box predicted to the frame's time with a
constant-velocity model (a track missed since the last frame, or met again after a pause, by the
better of that box and its last one: it may have stood still); a pair counts only when its IoU is at
least ``min_iou``. Unmatched boxes start tentative tracks; a track is confirmed,
and given its id, once matched in ``min_hits`` consecutive frames (1: at once).
A tentative track dies on its first miss, a confirmed one when it has not
been matched for more than ``max_age``: seconds since it was last seen when
the caller passes time stamps, missed frames when it doesn't (SORT's
convention); or, while the stamps stand still, when missed in more than
``MAX_STALLED_MISSES`` frames. A track matched in the previous frame has missed
none, however far apart the two frames' stamps are, while the frames come at the
stream's pace (at most twice the gap before); after a longer pause ``max_age``
holds. Each ``frame_id`` (camera) has tracks of its own. Ids are never reused, and
nothing is remembered to ensure it (the
state is the live tracks only, however many people have passed): ``int`` ids
count up; ``ros4hri`` ids are that count sent through a seeded permutation of
the 26^5 five-letter names, so the first 11.8 million are all distinct.
"""
from __future__ import annotations

import math
import random
import string
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import timeline
from .detectors.decode import box_iou
from .frame_ids import MAX_CAMERAS, RecentlySeen, tf2_frame_id

_ROS4HRI_NAMES = 26 ** 5          # five lowercase letters
# Two stamps closer than this are one instant to the motion model (see timeline): a box moved over a
# microsecond predicted the next box off the image, and the person got a new id. On the frame clock
# (unstamped input) every gap is >= 1.
MIN_MOTION_INTERVAL = timeline.MIN_FRAME_INTERVAL
# While the stamps stand still (a paused simulation or bag clock stamping a live camera) no time
# passes and max_age never retires a track: the id of someone long gone went to whoever next stood
# there, and every false detection stayed a track (one more per frame). A confirmed track missed in
# more than this many frames at an unchanged stamp is retired instead: about a second of camera
# frames, the default max_age (the lifter's smoother has the same kind of fallback).
MAX_STALLED_MISSES = 30
# Most tracks kept per camera (the least recently seen dropped first), as the lifter's smoother keeps
# at most 4096: with tracker_max_age up to an hour, a false detection in a new place every frame would
# otherwise make every frame's matching work through 100 000 dead tracks.
MAX_TRACKS = 4096


@dataclass
class TrackerConfig:
    """``id_style``: ``"int"`` gives ``"1"``, ``"2"``, ...; ``"ros4hri"`` gives 5 random lowercase
    letters (the ROS4HRI convention for body ids), reproducible with ``seed``."""
    min_iou: float = 0.3
    min_hits: int = 1
    max_age: float = 1.0
    predict_motion: bool = True
    velocity_smoothing: float = 0.5  # weight of the previous velocity estimate, 0..1
    id_style: str = "int"
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {self.max_age}")
        if self.id_style not in ("int", "ros4hri"):
            raise ValueError(f"id_style must be 'int' or 'ros4hri', got {self.id_style!r}")


@dataclass
class Track:
    box: np.ndarray            # (4,) x1, y1, x2, y2 at last_seen
    last_seen: float
    hits: int = 1
    id: str = ""               # "" while tentative
    stalled_misses: int = 0    # frames missed at an unchanged stamp since last matched
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box units per unit of t

    @property
    def confirmed(self) -> bool:
        return bool(self.id)


def predicted_boxes(tracks: list[Track], t: float, use_velocity: bool) -> np.ndarray:
    """``(len(tracks), 4)``: each track's box moved to time ``t`` by its centre's velocity, its size
    kept: a rate of change of the size, measured from a few frames of detector jitter and carried
    over a miss of up to max_age, shrank a person standing still out of their own box (a new id
    when they came back). In one array operation for all tracks: predicted one track at a time, the
    MAX_TRACKS a long max_age can hold took 48 ms of every frame's 58 ms update."""
    boxes = np.array([track.box for track in tracks], dtype=np.float64).reshape(-1, 4)
    if not use_velocity:
        return boxes
    velocity = np.array([track.velocity for track in tracks], dtype=np.float64).reshape(-1, 4)
    elapsed = t - np.array([track.last_seen for track in tracks], dtype=np.float64)
    centre = (velocity[:, :2] + velocity[:, 2:]) / 2
    return boxes + np.tile(centre, 2) * elapsed[:, None]


def _camera_name(frame_id: str | None) -> str | None:
    """The camera ``frame_id`` names, as tf2 reads it (a ROS 1 style leading '/' aside): `/cam` and
    `cam` were two cameras here, each with tracks of its own, while the lifter (as tf2) takes them
    for one."""
    return None if frame_id is None else tf2_frame_id(frame_id)


@dataclass
class _CameraTracks:
    """The tracks and timeline of one camera (one ``frame_id``), as at its first frame."""
    frame_id: str | None = None
    tracks: list[Track] = field(default_factory=list)
    frame: int = 0
    last_t: float | None = None
    period: float | None = None       # the gap between the last two frames of different times
    image_size: tuple[int, int] | None = None

    def shift_times(self, delta: float) -> None:
        for track in self.tracks:
            track.last_seen += delta
        if self.last_t is not None:
            self.last_t += delta


class MultiPersonTracker:
    """Stable string ids for the person boxes of successive frames."""

    def __init__(self, config: TrackerConfig | None = None, *,
                 ids_after: "MultiPersonTracker | None" = None, **overrides):
        """``ids_after``: a tracker this one succeeds (the same node configured again): its ids go on
        where the last tracker of this id style and seed before it (ids_after or one it succeeds)
        ended, never giving one of their ids again (with another style or seed the names differ
        anyway)."""
        if config is None:
            config = TrackerConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a TrackerConfig or keyword options, not both")
        self.config = config
        rng = random.Random(config.seed)
        # ros4hri: id k is letters((a * k + b) mod 26^5), a bijection of the names when a is
        # coprime to 26^5 = 2^5 * 13^5
        self._scramble = rng.randrange(_ROS4HRI_NAMES // 4, _ROS4HRI_NAMES)
        while math.gcd(self._scramble, _ROS4HRI_NAMES) != 1:
            self._scramble += 1
        self._offset = rng.randrange(_ROS4HRI_NAMES)
        self._counter = 0           # ids given out so far: never reset, so never reused
        # (id style, seed) -> (scramble, offset, counter) of the trackers this one succeeds, the last
        # of each: from ids_after's alone, a configure with int ids, then ros4hri, then int again
        # restarted at "1" (ids_after being the ros4hri one) and gave the first configure's ids again
        self._earlier_ids: dict[tuple[str, int | None], tuple[int, int, int]] = {}
        if ids_after is not None:
            self._earlier_ids = {**ids_after._earlier_ids, ids_after._id_key(): ids_after._id_state()}
        if self._id_key() in self._earlier_ids:
            self._scramble, self._offset, self._counter = self._earlier_ids[self._id_key()]
        self._stamp_anchor: tuple[float, float] | None = None     # (last stamp, monotonic time it came)
        self._clock_last: float | None = None                   # what clock() last returned
        self.reset()

    def _id_key(self) -> tuple[str, int | None]:
        return self.config.id_style, self.config.seed

    def _id_state(self) -> tuple[int, int, int]:
        return self._scramble, self._offset, self._counter

    def reset(self) -> None:
        """Forget every track, every camera's (ids already given out are still never reused)."""
        self._camera = _CameraTracks()                  # the camera of the last frame
        # the others' (with the camera at hand, MAX_CAMERAS), least recently seen first
        self._cameras: RecentlySeen[_CameraTracks] = RecentlySeen(MAX_CAMERAS - 1)

    def _switch_camera(self, frame_id: str | None) -> None:
        """Keep the last camera's tracks aside and go on with those of ``frame_id``'s (fresh for one
        not seen, or dropped, before): two cameras' images alternating on one topic started the
        tracker over at each frame, and everyone in view of either got a new id every frame."""
        if frame_id is None or self._camera.frame_id is None or frame_id == self._camera.frame_id:
            return
        self._cameras.put(self._camera.frame_id, self._camera)
        self._camera = self._cameras.pop(frame_id) or _CameraTracks()
        self._cameras.evict()

    @property
    def tracks(self) -> list[Track]:
        """The confirmed live tracks."""
        return [track for track in self._camera.tracks if track.confirmed]

    def _new_id(self) -> str:
        self._counter += 1
        if self.config.id_style == "int":
            return str(self._counter)
        code = (self._scramble * self._counter + self._offset) % _ROS4HRI_NAMES
        letters = []
        for _ in range(5):
            code, digit = divmod(code, 26)
            letters.append(string.ascii_lowercase[digit])
        return "".join(letters)

    def clock(self, stamp_s: float | None) -> float:
        """The time to :meth:`update` a frame stamped ``stamp_s`` (s) with: the stamp itself; for a
        frame without one (None or <= 0), the last stamp advanced by the monotonic time since it came
        (the monotonic clock while no frame has had one; the tracks' times move onto the stamps' at
        the first). So one unstamped frame in a stamped stream neither sends the clock back (which
        starts over) nor moves it so far that every track expires.
        A stamp behind such an estimate but not behind the last stamp did not go back in time (a bag
        played slower than real time: wall time outruns its stamps) and returns the estimate again, so
        only the stamps themselves going back read as a bag loop."""
        now = time.monotonic()
        anchor = self._stamp_anchor
        if stamp_s is not None and stamp_s > 0:
            stamp = float(stamp_s)
            if anchor is None and self._clock_last is not None:
                # the first stamp after frames without one (a camera driver on sim time stamps 0 until
                # its first /clock): their times, the monotonic clock, move onto the stamps' as if this
                # frame came now. Read as a step back (or hours on), everyone in view got a new id.
                self._shift_times(stamp - now)
            self._stamp_anchor = (stamp, now)
            t = stamp if anchor is None or stamp < anchor[0] else max(stamp, self._clock_last)
        elif anchor is None:
            t = now
        else:
            t = max(anchor[0] + (now - anchor[1]), self._clock_last)
        self._clock_last = t
        return t

    def _shift_times(self, delta: float) -> None:
        """Move every time the tracks hold, every camera's, by ``delta`` seconds (onto another clock)."""
        for camera in (self._camera, *self._cameras.records()):
            camera.shift_times(delta)

    def _assign(self, boxes: np.ndarray, t: float, missed: np.ndarray | None = None) -> dict[int, Track]:
        """Box index -> the track it continues (most total IoU with the tracks predicted to ``t``,
        over the pairs that overlap at least ``min_iou``). A track ``missed`` marks (``(tracks,)``
        bool: not seen in the last frame, or that frame came after a pause) overlaps a box by the
        better of its predicted and its last box."""
        cfg = self.config
        assigned: dict[int, Track] = {}
        if self._camera.tracks and len(boxes):
            tracks = self._camera.tracks
            iou = box_iou(predicted_boxes(tracks, t, cfg.predict_motion), boxes)
            if cfg.predict_motion and missed is not None and missed.any():
                # The velocity is measured from detector jitter too (9 px between two frames 33 ms
                # apart is 270 px/s), and carried over a miss or a pause it moved a person standing
                # still out of their predicted box: a new id after half a second. By then the person
                # may have walked on or stood still; each is looked for in both places. (A track
                # followed at the stream's pace is looked for where it moves alone: two people passing
                # each other each stand where the other stood a frame before.)
                last = box_iou(np.array([track.box for track in tracks])[missed], boxes)
                iou[missed] = np.maximum(iou[missed], last)
            # A pair that cannot match must not weigh in the sum: A-box1 0.6, B-box1 0.5, A-box2 0.29
            # (below min_iou) summed more as B-box1 + A-box2, so box 1 took B's id and A lost its
            # person. Such pairs cost more than any assignment of possible ones can gain.
            possible = (iou >= cfg.min_iou) & (iou > 0)
            rows, cols = linear_sum_assignment(np.where(possible, 1.0 - iou, 1.0 + iou.size))
            for r, c in zip(rows, cols):
                if possible[r, c]:
                    assigned[int(c)] = self._camera.tracks[int(r)]
        return assigned

    def starts_over(self, t: float, frame_id: str | None = None,
                    image_size: tuple[int, int] | None = None) -> bool:
        """Whether a frame at time ``t`` begins a new timeline (further back than a late frame), is
        in another ``frame_id`` than the last (where given: another camera publishing on the topic, a
        driver restarted with another frame), or is of another ``image_size`` (width, height; where
        given), or comes after a pause no track outlives, on which :meth:`update` forgets every track
        (another camera's frame: sets the last camera's tracks aside and goes on with that camera's
        own): what else follows people from frame to frame (the top-down detector's boxes, of the
        last frame only) starts over with it.
        :meth:`update` asks this very question, so its callers cannot keep state that the tracker has
        dropped."""
        frame_id = _camera_name(frame_id)
        # Boxes in the pixels of another image size (a driver switched mode, binning) do not compare
        # with the tracks': one person's new box could overlap another's old one and take their id.
        size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        resized = size is not None and self._camera.image_size is not None and size != self._camera.image_size
        # Boxes of another camera (another frame_id) neither: the lifter's smoothing starts over on it too.
        other_camera = frame_id is not None and self._camera.frame_id is not None and frame_id != self._camera.frame_id
        return resized or other_camera or timeline.starts_over(self._camera.last_t, t) or self._resumes_after_pause(t)

    def _resumes_after_pause(self, t: float) -> bool:
        """Whether a frame at ``t`` comes after a pause that no track of the camera outlives (more
        than ``max_age`` after the last frame, and off the stream's pace: see :meth:`update`). Its
        tracks are all retired then, and the top-down detector's boxes, followed from the last
        frame's keypoints, were cropped where people stood before the pause: the person who had
        walked on in 2 s was not published in the first frame after it."""
        last_t, period = self._camera.last_t, self._camera.period
        if last_t is None or period is None or t <= last_t:
            return False
        gap = t - last_t
        return gap > self.config.max_age and gap > 2.0 * period

    def update(self, boxes: np.ndarray, t: float | None = None,
               image_size: tuple[int, int] | None = None, frame_id: str | None = None) -> list[str]:
        """Match ``boxes`` ``(P, 4)`` (x1, y1, x2, y2) of the frame at time ``t`` to the tracks.

        Returns one id per input box, in the input's order; ``""`` for a box
        whose track is still tentative (``min_hits > 1``). Without ``t`` the
        frame count is the clock (``max_age`` in missed frames); use one clock
        or the other for a tracker's whole life. A ``t`` earlier than the newest frame's by more
        than ``timeline.LATE_FRAME_TOLERANCE`` (a replayed bag, a simulation reset) starts over; by
        less, the frame is late (out of order): its boxes get the ids of the tracks they match
        (``""`` for the others) and no track changes. A frame of another ``image_size`` (width, height) than its
        camera's previous one starts over too. Each ``frame_id`` (camera) has tracks and a timeline
        of its own (at most :data:`MAX_CAMERAS`, the least recently seen dropped first; a frame of a
        camera not seen, or dropped, before starts that camera afresh), so frames of two cameras
        alternating on one topic keep each camera's ids.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not np.all(np.isfinite(boxes)):
            raise ValueError("boxes contain NaN or inf")
        frame_id = _camera_name(frame_id)
        self._switch_camera(frame_id)
        self._camera.frame += 1
        frame_clock = t is None
        t = float(self._camera.frame if frame_clock else t)
        size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        if self.starts_over(t, frame_id, size):
            self._camera = _CameraTracks(frame=1)
            if frame_clock:     # the first frame of the new timeline (the old count read as going back)
                t = 1.0
        elif self._camera.last_t is not None and t < self._camera.last_t:
            # Late: the tracks already hold newer boxes, and a velocity over a negative interval
            # means nothing, so the frame is matched (tracks predicted back to its time) and
            # changes nothing; the next in-order frame goes on from the newest state.
            assigned = self._assign(boxes, t)
            return [assigned[c].id if c in assigned else "" for c in range(len(boxes))]
        if size is not None:
            self._camera.image_size = size
        if frame_id is not None:
            self._camera.frame_id = frame_id
        previous_t, self._camera.last_t = self._camera.last_t, t
        stalled = t == previous_t
        cfg = self.config
        # On the frame clock, a gap of n frames means n - 1 missed frames. A track seen in the previous
        # frame is not lost while the frames come at the stream's pace (at most twice the gap before):
        # with stamps, a max_age below the frame period (0, its least value, too) retired it before
        # every match, a new id for everyone every frame, as did the default 1 s for a detector that
        # takes more than a second a frame. A pause (the camera stopped, the node deactivated) longer
        # than max_age still retires it: whoever stands there afterwards may be someone else.
        allowed = cfg.max_age + (1.0 if frame_clock else 0.0)
        gap = None if previous_t is None else t - previous_t
        at_pace = gap is not None and (self._camera.period is None or gap <= 2.0 * self._camera.period)
        if gap:
            self._camera.period = gap
        self._camera.tracks = [tr for tr in self._camera.tracks
                               if ((at_pace and tr.last_seen == previous_t) or t - tr.last_seen <= allowed)
                               and tr.stalled_misses <= MAX_STALLED_MISSES]

        missed = np.array([not (at_pace and tr.last_seen == previous_t) for tr in self._camera.tracks], dtype=bool)
        assigned = self._assign(boxes, t, missed)
        matched_tracks = {id(tr) for tr in assigned.values()}
        # Tentative tracks die on their first miss; confirmed ones wait for max_age.
        self._camera.tracks = [tr for tr in self._camera.tracks if id(tr) in matched_tracks or tr.confirmed]
        if stalled:
            for tr in self._camera.tracks:
                if id(tr) not in matched_tracks:
                    tr.stalled_misses += 1
        ids: list[str] = []
        for c, box in enumerate(boxes):
            track = assigned.get(c)
            if track is None:
                track = Track(box=box.copy(), last_seen=t)
                self._camera.tracks.append(track)
            else:
                dt = t - track.last_seen
                if dt >= MIN_MOTION_INTERVAL:
                    velocity = (box - track.box) / dt
                    a = cfg.velocity_smoothing if track.hits > 1 else 0.0
                    track.velocity = a * track.velocity + (1.0 - a) * velocity
                track.box = box.copy()
                track.last_seen = t
                track.hits += 1
                track.stalled_misses = 0
            if not track.confirmed and track.hits >= cfg.min_hits:
                track.id = self._new_id()
            ids.append(track.id)
        if len(self._camera.tracks) > MAX_TRACKS:
            self._camera.tracks = sorted(self._camera.tracks, key=lambda tr: tr.last_seen)[-MAX_TRACKS:]
        return ids
