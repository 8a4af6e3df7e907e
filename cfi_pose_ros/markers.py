"""RViz skeleton markers as plain data (no ROS): the node turns each
:class:`MarkerSpec` into a ``visualization_msgs/Marker`` one field at a time.

Per person three markers, all in the keypoints' frame (normally the camera
optical frame, in which "up" is ``-y``):

* ``k = 0``: a ``sphere_list`` of the finite joints (``scale`` = sphere diameter),
* ``k = 1``: a ``line_list`` with two points per bone whose both ends are
  finite (``scale[0]`` = line width),
* ``k = 2``: a ``text`` label (the track id, or ``person <index>`` when the
  id is empty or only whitespace) floating above the head (``scale[2]`` = text height).

Marker ids are ``person_index * MARKERS_PER_PERSON + k`` so they never collide
between people in one message; with a short ``lifetime`` RViz drops the
markers of people who disappear without an explicit DELETE.

Colours are deterministic: the track id is hashed with CRC-32 (stable across
runs and machines, unlike Python's ``hash``) to a hue, at fixed saturation and
value; an untracked person's hue comes from their index instead.
"""
from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass

import numpy as np

from .frame_ids import MAX_CAMERAS, RecentlySeen, shows_nothing
from .skeleton import H36M_17, JointLayout

__all__ = ["MarkerSpec", "MARKER_TYPES", "MARKERS_PER_PERSON", "RVIZ_MIN_LIFETIME_NS", "DrawnMarkers", "lifetime_ns",
           "lifetime_expires", "camera_namespace", "track_color", "skeleton_markers"]

MARKER_TYPES = ("sphere_list", "line_list", "text")
MARKERS_PER_PERSON = 3
# golden-ratio hue steps spread consecutive person indices around the wheel
_GOLDEN = 0.618033988749895
_SATURATION = 0.65
_VALUE = 0.95
# RViz2 (rviz_default_plugins marker_common.cpp, configureMarker) lets a marker expire only when its
# lifetime is over 100 us; a shorter one, like 0, keeps it until it is replaced or deleted.
RVIZ_MIN_LIFETIME_NS = 100_000


@dataclass(eq=False)
class MarkerSpec:
    """One RViz marker as plain data.

    ``points`` is ``(K, 3)`` float64: the points of a sphere/line list, or one
    point, the label's position, for ``text``. ``color`` is RGBA in ``[0, 1]``.
    ``scale`` maps to ``Marker.scale`` (x, y, z). ``lifetime`` is in seconds
    (0 = forever).
    """
    namespace: str
    id: int
    type: str
    points: np.ndarray
    color: tuple[float, float, float, float]
    scale: tuple[float, float, float]
    text: str = ""
    lifetime: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in MARKER_TYPES:
            raise ValueError(f"marker type must be one of {MARKER_TYPES}, got {self.type!r}")
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        if len(self.color) != 4:
            raise ValueError(f"color must be RGBA, got {self.color}")
        self.color = tuple(float(c) for c in self.color)
        self.scale = tuple(float(s) for s in self.scale)
        if len(self.scale) != 3:
            raise ValueError(f"scale must have 3 entries, got {self.scale}")
        if self.type == "line_list" and len(self.points) % 2:
            raise ValueError("a line_list needs an even number of points")


def lifetime_ns(lifetime: float) -> int:
    """A lifetime in seconds as the whole nanoseconds a ``Marker.lifetime`` carries."""
    return int(round(float(lifetime) * 1e9))


def lifetime_expires(lifetime: float) -> bool:
    """Whether RViz removes markers of this lifetime (s) by itself. When it does not (0, or a
    lifetime of 100 us or less, which RViz also keeps forever), the publisher must clear the
    previous frame's markers itself, or the skeletons of people who left stay for good."""
    return lifetime_ns(lifetime) > RVIZ_MIN_LIFETIME_NS


def camera_namespace(namespace: str, camera_frame: str) -> str:
    """The marker namespace of the skeletons seen by the camera of frame ``camera_frame`` (an
    input's ``header.frame_id`` as tf2 names it) in a lifter's ``namespace``: ``<namespace>/<frame>``,
    ``namespace`` itself for an input without a frame id. Ids go by the person's index in the
    input, so two cameras on one keypoints topic drew their people under the same ids of one
    namespace: each frame of one camera replaced (or, with a lifetime RViz never expires, cleared)
    the other camera's skeletons, and RViz showed one camera's people at a time."""
    return f"{namespace}/{camera_frame}" if camera_frame else namespace


class DrawnMarkers:
    """The ``(namespace, id)`` of every marker a publisher's last array of each namespace drew, so
    that the next array drawing in that namespace deletes those it does not draw again. Ids go by
    the person's index in the input: when a person left, or fell past ``max_people``, the ids the
    next array did not reuse kept that person's last skeleton on RViz's screen for the whole
    lifetime, beside the people still there (for a second with ``marker_lifetime: 1.0``, what a
    camera at a few Hz needs).

    At most ``MAX_NAMESPACES`` namespaces (cameras) are kept, the least recently drawn given up
    first, and one not drawn in for ``FORGET_AFTER_ARRAYS`` arrays is given up too (:meth:`evicted`:
    the caller clears them): a driver restarted with ever new frame ids cannot grow the record
    without end, and the skeletons of a camera whose stream stopped (or that now has another frame
    id), which a lifetime RViz never expires kept on screen, go while the other cameras draw on."""

    MAX_NAMESPACES = MAX_CAMERAS
    FORGET_AFTER_ARRAYS = 300   # as the smoother's forget_after_frames: 10 s at 30 Hz

    def __init__(self) -> None:
        # namespace -> ids drawn, least recently drawn first; a tick per array
        self._drawn: RecentlySeen[set[int]] = RecentlySeen(self.MAX_NAMESPACES, self.FORGET_AFTER_ARRAYS)

    def gone(self, specs: list[MarkerSpec], namespace: str | None = None) -> list[tuple[str, int]]:
        """The markers drawn before that ``specs`` do not draw (sorted); ``specs`` are what is drawn
        now. ``namespace``: the one namespace the array draws in (a camera's, see
        :func:`camera_namespace`); other namespaces' markers are left as they are. None: the array
        speaks for every namespace."""
        self._drawn.tick()
        drawn: dict[str, set[int]] = {}
        for spec in specs:
            drawn.setdefault(spec.namespace, set()).add(spec.id)
        names = set(self._drawn.names()) | set(drawn) if namespace is None else {namespace, *drawn}
        gone = []
        for name in names:
            before = self._drawn.pop(name, set())
            gone.extend((name, marker_id) for marker_id in before - drawn.get(name, set()))
            if drawn.get(name):
                self._drawn.put(name, drawn[name])       # now the most recently drawn
        return sorted(gone)

    def cleared(self, namespace: str) -> bool:
        """``namespace``'s markers are being deleted (a DELETEALL of it): forgotten; whether it had any."""
        return bool(self._drawn.pop(namespace, set()))

    def evicted(self) -> list[str]:
        """The namespaces past ``MAX_NAMESPACES`` or not drawn in for ``FORGET_AFTER_ARRAYS``
        arrays, least recently drawn first, now forgotten: their markers are to be cleared (a
        DELETEALL each), or they would stay on screen unrecorded."""
        return [name for name, _ in self._drawn.evict()]

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces with markers drawn, least recently drawn first."""
        return self._drawn.names()

    def forget(self) -> None:
        """Nothing is drawn any more (a DELETEALL of every namespace went out)."""
        self._drawn.clear()


def track_color(track_id: str, person_index: int = 0, alpha: float = 1.0,
                ) -> tuple[float, float, float, float]:
    """Deterministic RGBA colour for a track id (or for ``person_index`` when the id is empty)."""
    if track_id:
        hue = zlib.crc32(track_id.encode("utf-8")) / 2 ** 32
    else:
        hue = (person_index * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, _SATURATION, _VALUE)
    return (r, g, b, float(alpha))


def _label_anchor(keypoints: np.ndarray, finite: np.ndarray, layout: JointLayout,
                  up: np.ndarray) -> np.ndarray:
    """The head joint if the layout has a finite one, else the highest finite joint."""
    for name in ("head", "nose"):
        if name in layout.joint_names:
            j = layout.index(name)
            if finite[j]:
                return keypoints[j]
    candidates = keypoints[finite]
    return candidates[np.argmax(candidates @ up)]


def skeleton_markers(person_index: int, track_id: str, keypoints: np.ndarray,
                     layout: JointLayout = H36M_17, lifetime: float = 0.25,
                     joint_scale: float = 0.05, line_width: float = 0.02, *,
                     namespace: str = "skeleton", text_height: float = 0.12,
                     label_offset: float = 0.2, up: tuple[float, float, float] = (0.0, -1.0, 0.0),
                     ) -> list[MarkerSpec]:
    """Markers for one person's ``(J, 3)`` keypoints (see the module docstring).

    ``up`` is the scene's up direction in the keypoints' frame (``-y`` in a
    camera optical frame); the label is placed ``label_offset`` metres along it
    above the head. Returns ``[]`` when no joint is finite; otherwise always the
    three markers (the line list may be empty when no bone has two finite ends).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (layout.num_joints, 3):
        raise ValueError(f"expected ({layout.num_joints}, 3) keypoints for {layout.name}, got {kp.shape}")
    finite = np.isfinite(kp).all(axis=-1)
    if not finite.any():
        return []
    up_dir = np.asarray(up, dtype=np.float64)
    up_dir = up_dir / np.linalg.norm(up_dir)
    color = track_color(track_id, person_index)
    base = person_index * MARKERS_PER_PERSON

    bones = [(a, b) for a, b in layout.edges if finite[a] and finite[b]]
    line_points = kp[np.array(bones, dtype=np.int64).reshape(-1)] if bones else np.zeros((0, 3))
    # A label with nothing to draw is never sent: RViz2's MovableText (rviz_rendering) skips only an
    # empty caption and gives one of only spaces / newlines a zero-vertex buffer (an Ogre exception
    # that ended ROS 1 RViz before its whitespace fix; RViz 1 rejected such text markers as errors).
    # An id that shows nothing (a detector's " ", a zero-width space) would be an invisible label.
    label = f"person {person_index}" if shows_nothing(track_id) else track_id
    anchor = _label_anchor(kp, finite, layout, up_dir) + label_offset * up_dir

    return [
        MarkerSpec(namespace, base + 0, "sphere_list", kp[finite], color,
                   (joint_scale, joint_scale, joint_scale), lifetime=lifetime),
        MarkerSpec(namespace, base + 1, "line_list", line_points, color,
                   (line_width, 0.0, 0.0), lifetime=lifetime),
        MarkerSpec(namespace, base + 2, "text", anchor[None], color,
                   (0.0, 0.0, text_height), text=label, lifetime=lifetime),
    ]
