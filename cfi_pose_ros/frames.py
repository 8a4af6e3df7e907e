"""Coordinate frames of the output, ROS-free: rigid transforms of lifted people, and the
TF frames (``body_<id>``, optionally one per joint) of every person.

* :class:`RigidTransform` ``target_from_camera``: a point ``p`` in the camera frame is
  ``R p + t`` in the target frame; a body orientation ``q`` becomes ``q_T * q``.
  :func:`transform_people` applies one to every person (keypoints, pelvis position and
  body orientation), so a ``HumanPose3DArray`` and the markers built from it are wholly
  in the target frame.
* :func:`person_frames` lists each person's TF frames as plain data (the node turns them
  into ``geometry_msgs/TransformStamped``): ``<prefix><id>`` at the pelvis with the body
  orientation (x forward, y left, z up; ros4hri's ``body_<id>`` convention), parent = the
  output frame; with ``joints=True`` also ``<prefix><id>_<joint>`` for every finite joint,
  child of the body frame, axes parallel to it (no per-joint orientation is estimated).
  People without a tracking id, or without an absolute position (root-relative poses),
  get no frame: a frame that changes meaning between messages, or that sits at the
  camera's origin, would mislead whoever looks it up. Nor does a frame whose name occurs twice
  in one input (an id given twice, ids that differ only in replaced characters, a joint frame
  named like another person's body frame) or is the parent's: such a frame would name either of
  them (a body frame left out takes its joint frames with it). Nor does anyone when the parent
  frame is empty (an input without ``header.frame_id``): tf2 rejects such a transform in every
  listener, once per message.
* :class:`OneCameraPerFrame` keeps a TF frame to the camera (input frame) whose people sent it
  within tf2's buffer: two cameras numbering people alike on one input would otherwise move it
  between their people every frame.
* :class:`OncePerStamp` lets each TF frame out once per stamp: tf2 ignores a transform at a stamp
  it already holds, with a ``TF_REPEATED_DATA`` warning in every listener, and an input that
  repeats its stamp (one frame sent twice) would cause one per frame.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .body_pose import IDENTITY_QUATERNION, quaternion_to_rotation_matrix
from .frame_ids import tf2_frame_id
from .pipeline import ROOT_RELATIVE, LiftedPerson
from .skeleton import H36M_17

__all__ = ["RigidTransform", "quaternion_multiply", "transform_people", "camera_up", "tf2_transform",
           "FrameTransform", "OneCameraPerFrame", "person_frames", "frame_name", "tf2_frame_id", "OPTICAL_UP"]

# "Up" in a camera optical frame (x right, y down, z forward): the markers' label offset.
OPTICAL_UP = np.array([0.0, -1.0, 0.0])
# A given quaternion may be off unit length by this much (rounded YAML values); farther is a mistake.
_QUATERNION_NORM_TOLERANCE = 1e-3
# A target_from_camera (static, or from tf2) farther than this is a typo or garbage (1e300 was
# accepted, and every person landed on the same float64 number): Earth-fixed frames (ECEF, UTM)
# stay under 1e7 m.
MAX_TRANSLATION_M = 1e8


def quaternion_norm(q: np.ndarray) -> float:
    """The length of a finite quaternion, for any components a double holds: numpy's norm squares
    them, so one past 1.3e154 overflowed (its RuntimeWarning in the node's log for a
    ``target_from_camera`` set to [0, 0, 0, 1e200, 0, 0, 1], refused all the same)."""
    return math.hypot(*(float(v) for v in q))


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of ``(..., 4)`` quaternions in ``(x, y, z, w)`` order."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


@dataclass(frozen=True, eq=False)
class RigidTransform:
    """``target_from_source``: rotation (unit quaternion ``x, y, z, w``) then translation (metres)."""
    translation: np.ndarray
    rotation_xyzw: np.ndarray

    def __post_init__(self) -> None:
        t = np.asarray(self.translation, dtype=np.float64).reshape(3)
        q = np.asarray(self.rotation_xyzw, dtype=np.float64).reshape(4)
        if not (np.isfinite(t).all() and np.isfinite(q).all()):
            raise ValueError(f"transform has non-finite values: translation {t.tolist()}, rotation {q.tolist()}")
        norm = quaternion_norm(q)
        if abs(norm - 1.0) > _QUATERNION_NORM_TOLERANCE:
            raise ValueError(f"rotation quaternion (x, y, z, w) = {q.tolist()} has norm {norm:.6g}, not 1")
        object.__setattr__(self, "translation", t)
        object.__setattr__(self, "rotation_xyzw", q / norm)
        object.__setattr__(self, "matrix", quaternion_to_rotation_matrix(q / norm))

    @classmethod
    def from_xyz_quaternion(cls, values: Sequence[float]) -> "RigidTransform":
        """From ``[x, y, z, qx, qy, qz, qw]`` (the ``target_from_camera`` parameter's layout)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape != (7,):
            raise ValueError(f"expected [x, y, z, qx, qy, qz, qw] (7 numbers), got {len(values)}")
        return cls(values[:3], values[3:])

    @classmethod
    def identity(cls) -> "RigidTransform":
        return cls(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points ``(..., 3)`` in the source frame -> the target frame (NaN stays NaN)."""
        return np.asarray(points, dtype=np.float64) @ self.matrix.T + self.translation

    def rotate(self, quaternions: np.ndarray) -> np.ndarray:
        """Orientations ``(..., 4)`` (x, y, z, w) in the source frame -> the target frame."""
        q = quaternion_multiply(self.rotation_xyzw, quaternions)
        return np.where(q[..., 3:4] < 0, -q, q)      # w >= 0, as body_pose publishes them


def static_target_transform(values) -> RigidTransform | None:
    """The ``target_from_camera`` parameter: ``[x, y, z, qx, qy, qz, qw]``; all zeros (the
    default; a zero quaternion is no rotation) = not given. Raises ValueError when malformed."""
    values = [float(v) for v in values]
    if len(values) == 7 and not any(values):
        return None
    return _within_reach(RigidTransform.from_xyz_quaternion(values))


def _within_reach(transform: RigidTransform) -> RigidTransform:
    if np.abs(transform.translation).max() > MAX_TRANSLATION_M:
        raise ValueError(f"translation {transform.translation.tolist()} m: more than {MAX_TRANSLATION_M:g} m "
                         "from the target frame's origin (Earth-fixed frames stay under 1e7 m)")
    return transform


def tf2_transform(translation: Sequence[float], rotation_xyzw: Sequence[float]) -> RigidTransform:
    """A transform as a tf2 buffer returns it. tf2 stores a quaternion as sent if its squared norm
    is within 0.01 of 1 (``static_transform_publisher --qz 0.71 --qw 0.71``: 1.0082), and composes
    such links, so it is normalised here, not refused as a parameter's would be: refused, the
    ValueError left the subscription callback and the lifter exited. ValueError for what tf2 lets
    through and no frame can use: inf or a translation past MAX_TRANSLATION_M, a zero quaternion."""
    q = np.asarray(rotation_xyzw, dtype=np.float64).reshape(4)
    norm = quaternion_norm(q)      # inf or nan for a non-finite component: refused below
    if not (np.isfinite(norm) and norm > 0.0):
        raise ValueError(f"rotation quaternion (x, y, z, w) = {q.tolist()} is no rotation")
    return _within_reach(RigidTransform(translation, q / norm))


def transform_people(people: list[LiftedPerson], transform: RigidTransform | None) -> list[LiftedPerson]:
    """Every person's keypoints, pelvis position and body orientation in the target frame
    (``transform`` = target_from_camera; None = stay in the camera frame)."""
    if transform is None:
        return people
    # root-relative joints stay relative to the pelvis (HumanPose3D: pelvis at the origin): rotated only
    return [dataclasses.replace(person, keypoints=_place(transform, person, person.keypoints),
                                position=_place(transform, person, person.position),
                                orientation_xyzw=_rotate_known(transform, person.orientation_xyzw))
            for person in people]


def _rotate_known(transform: RigidTransform, orientation_xyzw: np.ndarray) -> np.ndarray:
    """The body orientation in the target frame; the identity (HumanPose3D: "the facing direction
    cannot be computed") stays the identity, so consumers can still tell it from a real one."""
    q = np.asarray(orientation_xyzw, dtype=np.float64)
    return q if np.array_equal(q, IDENTITY_QUATERNION) else transform.rotate(q)


def _place(transform: RigidTransform, person: LiftedPerson, points: np.ndarray) -> np.ndarray:
    """Points of ``person`` in the target frame: rotated and translated, or only rotated when the
    person is root-relative (a pelvis at the origin of the camera is not a position)."""
    if person.root_source == ROOT_RELATIVE:
        return np.asarray(points, dtype=np.float64) @ transform.matrix.T
    return transform.apply(points)


def camera_up(transform: RigidTransform | None) -> np.ndarray:
    """The camera's "up" in the output frame: where marker labels float above the head, so
    markers in a target frame are exactly the camera-frame markers moved rigidly."""
    return OPTICAL_UP if transform is None else transform.matrix @ OPTICAL_UP


@dataclass(frozen=True, eq=False)
class FrameTransform:
    """One TF frame: ``child`` relative to ``parent`` (what a TransformStamped holds, minus the stamp)."""
    parent: str
    child: str
    translation: np.ndarray
    rotation_xyzw: np.ndarray


_FRAME_CHARS = re.compile(r"[^A-Za-z0-9_]")
TF_BUFFER_NS = 10 * 10**9      # tf2's default buffer length (tf2_ros.Buffer cache_time)


def ahead_of_clock(stamp_ns: int, now_ns: int, clock_ran: bool) -> bool:
    """Whether a transform stamped ``stamp_ns`` is more than tf2's buffer ahead of the sending
    node's clock, which reads ``now_ns``: every listener would keep it as its frame's newest and
    refuse each later one (``TF_OLD_DATA``). A clock at 0 that has not run (``clock_ran`` False: sim
    time before the first /clock, or with none) says nothing about the stamps; one that has run and
    is back at 0 (a simulator reset, often paused there) is a time like any other: a frame of the run
    before, late, had its transforms kept by every listener, cleared at the jump back, as the newest,
    and the new run's refused until its stamps came within the buffer of the old."""
    return (now_ns > 0 or clock_ran) and stamp_ns > now_ns + TF_BUFFER_NS


class OncePerStamp:
    """Which TF frames to send at a stamp: per child frame, a stamp not sent before. tf2 keeps one
    transform per stamp and frame: another at a stamp it holds is ignored with a
    ``TF_REPEATED_DATA`` warning in every listener on the robot (RViz included), once per message.
    A stamp older than the frame's newest is sent while it is within tf2's buffer of it (tf2 files a
    late transform in its place): letting out only stamps newer than the last let one input stamped
    a few seconds ahead (a driver's clock glitch) hold that person's frame back until the stamps
    caught up with it. A stamp more than tf2's buffer before the frame's newest (a bag played again:
    listeners on sim time clear their buffers at such a jump) starts the frame over.

    Per frame the stamps sent within the buffer of its newest are remembered, at most
    ``max_stamps`` (past that the oldest are forgotten, and a stamp not after the oldest one kept
    is not sent: it could repeat one forgotten). A frame not sent for twice tf2's buffer before
    the stamp at hand is forgotten: only a stamp within the buffer of its newest could repeat one,
    and the people who left (every new person is a new frame) would otherwise be held for as long
    as the node runs. At most ``max_frames`` are remembered in any case, the least recently sent
    forgotten first."""

    def __init__(self, max_frames: int = 65536, max_stamps: int = 1024):
        # child frame -> its stamps sent, ascending; least recently sent frame first
        self._sent_ns: OrderedDict[str, list[int]] = OrderedDict()
        self._max_frames = max_frames
        self._max_stamps = max_stamps

    def __len__(self) -> int:
        return len(self._sent_ns)

    def admit(self, stamp_ns: int, frames: list[FrameTransform]) -> list[FrameTransform]:
        admitted = []
        for frame in frames:
            sent = self._sent_ns.get(frame.child)
            if sent is None or stamp_ns < sent[-1] - TF_BUFFER_NS:
                sent = []
            else:
                at = bisect.bisect_left(sent, stamp_ns)
                if (at < len(sent) and sent[at] == stamp_ns) or (at == 0 and len(sent) >= self._max_stamps):
                    continue
            bisect.insort(sent, stamp_ns)
            # what tf2 has dropped can no longer be repeated
            del sent[:max(bisect.bisect_left(sent, sent[-1] - TF_BUFFER_NS), len(sent) - self._max_stamps)]
            self._sent_ns[frame.child] = sent
            self._sent_ns.move_to_end(frame.child)
            admitted.append(frame)
        _forget_least_recent(self._sent_ns, lambda sent: sent[-1], stamp_ns, self._max_frames)
        return admitted


class OneCameraPerFrame:
    """Which TF frames one input may send: none that another input frame's (another camera's) people
    sent within tf2's buffer of the stamp at hand. Two cameras' detectors numbering people alike
    (each from 1) on one keypoints topic sent ``body_1`` for one camera's person, then the other's,
    every frame: each tf2 lookup of it got either person (re-parented between the two camera frames,
    or, with a target frame, moved between them). The camera that sent a frame first keeps it until
    it has not sent it for more than tf2's buffer (by the inputs' stamps; a stamp more than that
    before its newest, a bag played again, also frees it); the joint frames of a body frame left
    out are left out with it.

    Keyed by the input's frame (the camera's), not the TF parent: with a target frame both cameras'
    people hang from it. At most ``max_frames`` are remembered, the least recently sent forgotten
    first, and a frame not sent for twice the buffer before the stamp at hand is forgotten."""

    def __init__(self, max_frames: int = 65536):
        # child frame -> (the input frame it was sent for, its newest stamp sent); least recently sent first
        self._owners: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._max_frames = max_frames

    def __len__(self) -> int:
        return len(self._owners)

    def admit(self, camera: str, stamp_ns: int,
              frames: list[FrameTransform]) -> tuple[list[FrameTransform], dict[str, str]]:
        """``(the frames camera's input may send, {frame left out: the camera it belongs to})``; the
        second names body frames only, not the joint frames that go with them."""
        admitted, taken, left_out = [], {}, set()
        for frame in frames:
            if frame.parent in left_out:
                left_out.add(frame.child)
                continue
            owner, newest = self._owners.get(frame.child, (camera, stamp_ns))
            if owner != camera and abs(stamp_ns - newest) <= TF_BUFFER_NS:
                taken[frame.child] = owner
                left_out.add(frame.child)
                continue
            if owner != camera:
                newest = stamp_ns
            self._owners[frame.child] = (camera, stamp_ns if stamp_ns < newest - TF_BUFFER_NS
                                         else max(newest, stamp_ns))
            self._owners.move_to_end(frame.child)
            admitted.append(frame)
        _forget_least_recent(self._owners, lambda owned: owned[1], stamp_ns, self._max_frames)
        return admitted, taken


def _forget_least_recent(frames: OrderedDict, newest_ns: Callable[[Any], int], stamp_ns: int,
                         max_frames: int) -> None:
    """What :class:`OncePerStamp` and :class:`OneCameraPerFrame` forget of ``frames`` (child frame ->
    what is remembered of it, least recently sent first; ``newest_ns`` its newest stamp sent): the
    least recently sent past ``max_frames``, and those not sent for twice tf2's buffer before
    ``stamp_ns`` (no stamp within the buffer can concern them any more)."""
    while frames and (len(frames) > max_frames
                      or newest_ns(next(iter(frames.values()))) < stamp_ns - 2 * TF_BUFFER_NS):
        frames.popitem(last=False)


def frame_name(prefix: str, track_id: str, joint: str = "") -> str:
    """``<prefix><id>`` or ``<prefix><id>_<joint>``; characters TF names should not hold
    (slashes, spaces, ...) in the id become ``_``."""
    name = prefix + _FRAME_CHARS.sub("_", track_id)
    return f"{name}_{joint}" if joint else name


def person_frames(people: list[LiftedPerson], parent: str, prefix: str = "body_", joints: bool = False,
                  joint_names: Sequence[str] = H36M_17.joint_names, taken: Sequence[str] = ()) -> list[FrameTransform]:
    """The TF frames of ``people`` (in the ``parent`` frame), see the module docstring; ``taken``:
    other frames of the tree no person's frame may be named (the camera's, where ``parent`` is a
    robot frame: a person of id ``camera`` under prefix ``head_`` re-parented ``head_camera``)."""
    frames = []
    # as tf2 names it (a leading slash goes, a trailing one is part of the name) and as the node
    # stamps the poses and markers
    parent_name = tf2_frame_id(parent)
    # the children too: tf2 drops one leading slash of a name it stores, so with a prefix `/` the
    # frame of id `camera` was `camera` under `camera` (TF_SELF_TRANSFORM in every listener), and
    # with `//body_` every frame was `/body_<id>`, which no lookup may name
    prefix = tf2_frame_id(prefix)
    if not parent_name:
        return frames
    placed = [person for person in people if person.track_id and person.root_source != ROOT_RELATIVE]
    # a frame name that two frames of one input would get (one id twice, two ids that differ only in
    # characters frame_name replaces, one person's joint frame and another's body frame: `3` and
    # `3_head` both give body_3_head) names no single frame: tf2 keeps one of the two transforms
    # and rejects the other, so the frame would be either; neither is sent, nor the joints of a body
    # frame left out (they would hang from the other one). A frame named like the parent would be a
    # self-transform or a loop in the tree.
    names = Counter([parent_name, *(tf2_frame_id(name) for name in taken)])
    for person in placed:
        names[frame_name(prefix, person.track_id)] += 1
        if joints:
            names.update(frame_name(prefix, person.track_id, name) for name in joint_names)
    for person in placed:
        body = frame_name(prefix, person.track_id)
        if names[body] > 1:
            continue
        position = np.asarray(person.position, dtype=np.float64)
        if not (np.isfinite(position).all() and np.isfinite(person.orientation_xyzw).all()):
            continue
        frames.append(FrameTransform(parent_name, body, position, np.asarray(person.orientation_xyzw, float)))
        if joints:
            # joint positions in the body frame: R_body^T (p - pelvis), i.e. the rows of R_body
            offsets = (np.asarray(person.keypoints, float) - position) @ quaternion_to_rotation_matrix(
                person.orientation_xyzw)
            for name, offset in zip(joint_names, offsets):
                child = frame_name(prefix, person.track_id, name)
                if np.isfinite(offset).all() and names[child] == 1:
                    frames.append(FrameTransform(body, child, offset, IDENTITY_QUATERNION))
    return frames
