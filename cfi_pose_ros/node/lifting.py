"""One ``HumanKeypoints2DArray`` through the lifting pipeline into output messages: the step the
lift node runs for every input, and offline lifting (:mod:`cfi_pose_ros.offline`) runs for every
frame of a bag or a video, so both give the same ``HumanPose3DArray``, markers and TF frames.

Message conversion only; the computation is in :mod:`cfi_pose_ros.pipeline` and
:mod:`cfi_pose_ros.frames`.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from cfi_pose_ros.camera import (MIN_IMAGE_SIDE_PX, LensDistortion, check_lens_over_image, is_resized_view,
                                  lens_distortion, published_image_matrix)
from cfi_pose_ros.depth import DepthHistory, DepthImageError, PairedDepth, check_depth_frame, check_depth_registration
from cfi_pose_ros.frame_ids import (MAX_CAMERAS, MAX_FRAME_ID_LENGTH, RecentlySeen, frame_name_problem,
                                    other_camera_frame)
from cfi_pose_ros.frames import RigidTransform, camera_up, person_frames, tf2_frame_id, transform_people
from cfi_pose_ros.markers import DrawnMarkers, MarkerSpec, camera_namespace, lifetime_expires, skeleton_markers
from cfi_pose_ros.msg import HumanKeypoints2D, HumanKeypoints2DArray, HumanPose3DArray
from cfi_pose_ros.node.conversions import (BAD_FRAME_ID, BAD_STAMP_NANOSEC, FRAME_ID_TOO_LONG, LAYOUT_NAMES,
                                           NEGATIVE_STAMP, cdr_layout, check_frame_id, frame_from_msg, frame_id_problem,
                                           header_drop_reason, markers_to_msg, poses_to_msg, stamp_seconds)
from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME, lifter_options
from cfi_pose_ros.pipeline import (MAX_TRACK_ID_LENGTH, ROOT_RELATIVE, Frame2D, LiftedPerson, LiftingPipeline,
                                   PipelineConfig)
from cfi_pose_ros.root_solver import validate_camera_matrix
from cfi_pose_ros.skeleton import LAYOUTS

NO_TRANSFORM = "no_transform"   # diagnostics drop reason: the output frame's transform is unknown
STALE_DEPTH = "stale_depth"     # diagnostics drop reason: no depth image taken with the frame (placed without)
# Drops after which nothing can be said about a frame, not even that it is empty.
UNPUBLISHABLE = frozenset({"bad_image_size", NEGATIVE_STAMP, BAD_STAMP_NANOSEC, FRAME_ID_TOO_LONG, BAD_FRAME_ID})


# Parameters passed on by name, so a new one is live with its table entry alone: those named like
# a PipelineConfig field make its config; `smoothing_<x>` are PoseSmoother's <x> (`smoothing` = on).
PIPELINE_PARAMETERS = frozenset(f.name for f in fields(PipelineConfig)) & frozenset(PARAMETERS_BY_NAME)
SMOOTHER_PARAMETERS = frozenset(name for name in PARAMETERS_BY_NAME if name.startswith("smoothing_"))


def pipeline_config(value) -> PipelineConfig:
    """The pipeline's settings from the lift node's parameters of the same names (``value(name)``);
    fields without a parameter keep their defaults."""
    return PipelineConfig(**{name: value(name) for name in PIPELINE_PARAMETERS})


def pose_smoother(value):
    """The One-Euro smoother from the ``smoothing`` parameters, or None when ``smoothing`` is off."""
    from cfi_pose_ros.smoothing import PoseSmoother

    if not value("smoothing"):
        return None
    return PoseSmoother(**{name.removeprefix("smoothing_"): value(name) for name in SMOOTHER_PARAMETERS})


def create_publishing_lifter(value, log=None):
    """The lifter of the lift node's parameters (``value(name)``), refused (``WeightsError`` naming
    the weights file) unless it lifts standing adults to upright people in metres
    (:func:`~cfi_pose_ros.inference.reference.not_people_in_metres`). The check is here, where
    weights are used to publish people, not in ``create_lifter``: weights in millimetres loaded
    without a word, and the node published people a kilometre tall (placed by their size 1000
    times too far, with ``body_size_prior`` 0), while tests and benchmarks create lifters of
    freshly initialised models, which lift no one in metres."""
    from cfi_pose_ros.inference import create_lifter
    from cfi_pose_ros.inference.reference import check_lifts_people_in_metres

    options = lifter_options(value)
    lifter = create_lifter(**options, log=log)
    try:
        check_lifts_people_in_metres(lifter.lift, options["weights"])
    except BaseException:
        lifter.close()
        raise
    return lifter


def build_pipeline(value, log=None) -> LiftingPipeline:
    """Lifter (weights, backend, batch sizes, threads), smoother and pipeline settings from the lift
    node's parameters: what the node builds at configure. Raises with the reason on bad weights."""
    return LiftingPipeline(create_publishing_lifter(value, log=log), pipeline_config(value), pose_smoother(value))


def marker_namespace(node_name: str) -> str:
    """The marker namespace of the lifter of fully qualified name ``node_name``: its name without
    the leading '/' (``cfi_pose_lifter``, ``cam_left/cfi_pose_lifter``). Two lifters whose markers go
    to one topic (remapped for one RViz display) drew in one namespace with the same ids, each
    overwriting the other's skeletons, and the DELETEALL of one cleared the other's."""
    return node_name.lstrip("/")


# the lift node's default name in the root namespace, as offline lifting stands in for it
LIFTER_MARKER_NAMESPACE = marker_namespace("/cfi_pose_lifter")


def camera_from_info(msg, keypoints_image: str = "raw") -> tuple[np.ndarray, LensDistortion | None,
                                                                  tuple[int, int] | None]:
    """``(K, lens, (width, height) or None)`` of the image a ``CameraInfo`` describes, for keypoints
    that are pixels of its ``keypoints_image`` (the lift node's parameter); ValueError (with the
    reason) when its matrix cannot place people (all zeros, non-finite, ...) or its distortion
    cannot be undone (non-finite, no real lens's, an unknown model, one that folds inside its image
    or shrinks it: see :func:`cfi_pose_ros.camera.check_lens_over_image`).

    ``raw``: K, and the lens (``d``, ``distortion_model``; None when ``d`` is all zero) the pipeline
    undoes. ``rectified``: no distortion, and the rectified image's own camera matrix, ``p``'s left
    3x3 (K where ``p`` is all zero, as uncalibrated drivers leave it).

    ``k``, ``p``, ``width`` and ``height`` are the full sensor's; the published image is its ``roi``
    (full-resolution pixels; all zero = the whole sensor) reduced by ``binning_x`` x ``binning_y``
    (0 = 1), and the keypoints are in that image's pixels: the matrix and the size are moved to it,
    as image_geometry's PinholeCameraModel does (the lens acts on normalised coordinates, which
    that move keeps: undistorting with the moved K is undistorting on the sensor). One whose
    ``header.frame_id`` is no frame name (``FRAME_ID_TOO_LONG``, ``BAD_FRAME_ID``), whose roi reaches
    outside the sensor or whose image is smaller than MIN_IMAGE_SIDE_PX is refused too."""
    check_frame_id(msg.header)
    # judged against the sensor's size (a ROI can put the principal point of the published image
    # far outside it)
    sensor_size = (msg.width, msg.height) if msg.width and msg.height else None
    projection = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3]
    if keypoints_image == "rectified":
        matrix = validate_camera_matrix(projection if np.any(projection) else msg.k, sensor_size)
        lens = None
    else:
        matrix = validate_camera_matrix(msg.k, sensor_size)
        lens = lens_distortion(msg.distortion_model, msg.d)
        if lens is not None:
            # judged on the sensor, whose K it is; a CameraInfo of no size, on the image centred on
            # its principal point
            check_lens_over_image(lens, matrix, sensor_size or (2.0 * matrix[0, 2], 2.0 * matrix[1, 2]))
    size = image_size_from_info(msg)
    _check_published_region(msg, size)
    roi = msg.roi
    offset = (roi.x_offset, roi.y_offset) if roi.width and roi.height else (0, 0)
    return published_image_matrix(matrix, offset, _binning(msg)), lens, size


def camera_or_size_from_info(msg, keypoints_image: str = "raw"):
    """:func:`camera_from_info` as ``(K, lens, size, None)``; for a CameraInfo it refuses,
    ``(None, None, size, the ValueError)`` with the size of its image where that is one: an
    uncalibrated camera leaves K zeroed (CameraInfo.msg), and its size still is the size of a
    ``HumanKeypoints2DArray`` that gives 0. A size its roi and binning checks refuse is none: a roi
    of 4294967295 pixels a side, refused for the roi, was kept as the size of every such frame, and
    people lifted over it were 0.1 m off, published without a word."""
    try:
        return (*camera_from_info(msg, keypoints_image), None)
    except ValueError as exc:
        size = image_size_from_info(msg)
        try:
            _check_published_region(msg, size)
        except ValueError:
            size = None
        return None, None, size, exc


def _check_published_region(msg, size: tuple[int, int] | None) -> None:
    """ValueError for a ``roi`` that reaches outside the sensor (its offset moves the principal
    point: a roi a few sensor widths away placed people 28 m to the side, passing the check of K,
    which is against the sensor) or a roi and binning that leave an image (of ``size``, what
    :func:`image_size_from_info` gives) of fewer than MIN_IMAGE_SIDE_PX pixels a side."""
    roi = msg.roi
    if roi.width and roi.height and msg.width and msg.height and (
            roi.x_offset + roi.width > msg.width or roi.y_offset + roi.height > msg.height):
        raise ValueError(f"roi {roi.width}x{roi.height} at ({roi.x_offset}, {roi.y_offset}) reaches outside the "
                         f"{msg.width}x{msg.height} sensor")
    width, height = _region_size(msg)
    # A binning wider than the region leaves a side of 0 pixels, which image_size_from_info reads as
    # "no size given": such a message was taken, with K divided by the binning, and a person 20 m
    # away placed 1.4 cm from the camera.
    if width and height and (size is None or min(size) < MIN_IMAGE_SIDE_PX):
        bin_x, bin_y = _binning(msg)
        binned = size or (width // bin_x, height // bin_y)
        raise ValueError(f"roi and binning ({msg.binning_x}, {msg.binning_y}) leave a {binned[0]}x{binned[1]} "
                         f"image (at least {MIN_IMAGE_SIDE_PX} pixels a side)")


def _region_size(msg) -> tuple[int, int]:
    """``(width, height)`` of a ``CameraInfo``'s roi, or of its sensor when it has none, before binning."""
    roi = msg.roi
    return (roi.width, roi.height) if roi.width and roi.height else (msg.width, msg.height)


def _binning(msg) -> tuple[int, int]:
    """A ``CameraInfo``'s binning, 0 read as 1 (CameraInfo.msg)."""
    return max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)


def image_size_from_info(msg) -> tuple[int, int] | None:
    """``(width, height)`` of the published image a ``CameraInfo`` describes (its ``roi`` reduced by
    its binning, see :func:`camera_from_info`), or None when it gives none. Whatever its K: an
    uncalibrated camera leaves K zeroed (CameraInfo.msg), and its size still is the size of a
    ``HumanKeypoints2DArray`` that gives 0 (lifted root-relative)."""
    bin_x, bin_y = _binning(msg)
    width, height = _region_size(msg)
    width, height = width // bin_x, height // bin_y
    return (width, height) if width and height else None


class CameraModel(NamedTuple):
    """What :func:`camera_or_size_from_info` gave for one CameraInfo: the pinhole ``matrix`` (K, or
    P's left 3x3) and ``lens`` (None where refused), the image ``size``, and its ``frame_id``."""
    matrix: np.ndarray | None = None
    lens: LensDistortion | None = None
    size: tuple[int, int] | None = None
    frame_id: str = ""


class CameraInfoByFrame:
    """The last CameraInfo of each camera frame (tf2's name), so that keypoints of several cameras
    on one topic (their CameraInfo on one topic too) are each lifted with their own camera's: the
    newest alone, whichever camera's it was, placed a camera's people only when no other camera's
    CameraInfo had come since, and refused the others (bad_camera_info, root-relative). At most
    ``frame_ids.MAX_CAMERAS`` frames are kept, the least recently received given up first."""

    # A camera whose CameraInfo and keypoints have not come for this many keypoint messages (10 s at
    # 30 Hz, as the smoother and the markers forget one) is no longer said to be unplaced. Its
    # CameraInfo is still kept for its keypoints: a driver may send its CameraInfo once, latched.
    UNSEEN_AFTER_KEYPOINTS = 300

    def __init__(self) -> None:
        self._cameras: RecentlySeen[CameraModel] = RecentlySeen(MAX_CAMERAS)
        # frames whose CameraInfo or keypoints came lately, ticked by keypoint messages: a driver
        # restarted calibrated under another frame name left the old name's zero K kept, and the
        # status WARN "no valid CameraInfo ... for <old name>" for good while every person was placed
        self._seen: RecentlySeen[None] = RecentlySeen(MAX_CAMERAS, self.UNSEEN_AFTER_KEYPOINTS)
        self.newest = CameraModel()     # whatever its frame (one naming none is kept only here)

    def add(self, camera: CameraModel) -> None:
        """Keep ``camera`` as its frame's and the newest, unless its frame_id names no frame a tf2
        tree holds (:func:`~cfi_pose_ros.frame_ids.frame_name_problem`): no keypoints can be of that
        frame (they are dropped for it), and kept under the name it was a camera that could not place
        people for as long as the node ran: every status said so, naming it, whatever its length."""
        name = tf2_frame_id(camera.frame_id)
        if len(camera.frame_id) > MAX_FRAME_ID_LENGTH or frame_name_problem(name) is not None:
            return
        self.newest = camera
        if name:
            self._cameras.put(name, camera)
            self._cameras.evict()
            self._seen.put(name, None)
            self._seen.evict()

    def for_keypoints(self, frame_id: str) -> CameraModel:
        """The camera of keypoints of ``frame_id``: that frame's own where one came, else the newest
        (which the pipeline refuses for keypoints of another frame, saying so)."""
        name = tf2_frame_id(frame_id)
        self._seen.tick()
        if name in self._cameras:
            self._seen.put(name, None)
        self._seen.evict()
        return self._cameras.get(name, self.newest) if name else self.newest

    def unplaced(self) -> list[str] | None:
        """The frames of the cameras kept that cannot place people (a size alone, or a CameraInfo
        refused), least recently received first, of those whose CameraInfo or keypoints came in the
        last UNSEEN_AFTER_KEYPOINTS keypoint messages; None where no CameraInfo has come at all (or
        the newest, naming no frame, cannot place either)."""
        if not self._cameras and self.newest.matrix is None:
            return None
        return [name for name, camera in self._cameras.items() if camera.matrix is None and name in self._seen]

    def clear(self) -> None:
        self._cameras.clear()
        self._seen.clear()
        self.newest = CameraModel()


@dataclass
class LiftedFrame:
    """One input's result, in the output frame."""
    header: Header                       # the input's stamp; the output frame's id
    people: list[LiftedPerson]           # keypoints, positions, orientations in the output frame
    dropped: Counter = field(default_factory=Counter)
    up: np.ndarray = field(default_factory=lambda: camera_up(None))   # camera up in the output frame
    source: Frame2D | None = None        # the 2D input as the pipeline saw it
    warnings: dict[str, str] = field(default_factory=dict)     # for the log, throttled by key
    # lifted with intrinsics and solve_root on: a root-relative person then is one that could not be
    # placed, not the frame's way of showing everyone
    places_people: bool = False

    @property
    def publishable(self) -> bool:
        """False when nothing can be said about the frame, not even that it is empty."""
        return not UNPUBLISHABLE & self.dropped.keys()

    def poses_msg(self) -> HumanPose3DArray:
        return poses_to_msg(self.header, self.people)

    def camera_marker_namespace(self, namespace: str = LIFTER_MARKER_NAMESPACE) -> str:
        """The namespace this frame's skeletons are drawn in: the input camera's in the lifter's
        ``namespace`` (:func:`cfi_pose_ros.markers.camera_namespace`), so that two cameras on one
        keypoints topic keep each other's skeletons."""
        return camera_namespace(namespace, self.source.frame_id if self.source is not None else "")

    def marker_specs(self, lifetime: float, namespace: str = LIFTER_MARKER_NAMESPACE) -> list[MarkerSpec]:
        """The skeletons' markers, in the input camera's namespace of ``namespace``, the lifter's own
        (see :func:`marker_namespace` and :meth:`camera_marker_namespace`). Where the frame places people,
        those it could not place (root-relative) are not drawn."""
        namespace = self.camera_marker_namespace(namespace)
        specs = []
        # the person's index in the input, as draw_people_2d colours them: dropped people must not
        # shift the colour and the "person <index>" label of the untracked people after them
        for person in self.people:
            if self.places_people and person.root_source == ROOT_RELATIVE:
                # its pelvis at the output frame's origin is no position: drawn there, it stood
                # inside the camera (or at base_link's origin) beside the people placed
                continue
            specs.extend(skeleton_markers(person.source_index, person.track_id, person.keypoints,
                                          lifetime=lifetime, up=self.up, namespace=namespace))
        return specs

    def markers_msg(self, lifetime: float, specs: list[MarkerSpec] | None = None,
                    drawn: DrawnMarkers | None = None, namespace: str = LIFTER_MARKER_NAMESPACE) -> MarkerArray:
        """The markers (``specs``: :meth:`marker_specs` already built for ``lifetime`` and
        ``namespace``); with the publisher's ``drawn``, DELETEs for its markers of people no longer
        drawn by this frame's camera (another camera's are left as they are), and a DELETEALL of
        each camera's namespace it gives up (see ``DrawnMarkers.evicted``)."""
        specs = self.marker_specs(lifetime, namespace) if specs is None else specs
        namespace = self.camera_marker_namespace(namespace)
        gone = drawn.gone(specs, namespace) if drawn is not None else []
        evicted = drawn.evicted() if drawn is not None else []
        # a lifetime RViz never expires (0, or <= 100 us) needs a DELETEALL for people who left,
        # which deletes those too
        clear = not lifetime_expires(lifetime)
        return markers_to_msg(self.header, specs, clear=clear, deleted=[] if clear else gone,
                              clear_namespace=namespace, cleared=evicted)

    def tf_frames(self, prefix: str, joints: bool):
        camera = (self.source.frame_id,) if self.source is not None else ()
        return person_frames(self.people, self.header.frame_id, prefix, joints, taken=camera)


# Of a message with more people than this many times max_people, only the highest-scored this many
# times max_people are read: converting and judging each costs about 50 us, so a message of 20,000
# people (4.7 MB) held the executor another 1.1 s beside rclpy's 0.8 s of deserialising it, for 64
# people kept. The rest are counted as too_many_people, as those past max_people are.
PEOPLE_READ_PER_KEPT = 4
MOST_PEOPLE_READ = PEOPLE_READ_PER_KEPT * PARAMETERS_BY_NAME["max_people"].max_value     # of any one message
# diagnostics drop reason: a message of more people than MOST_PEOPLE_READ, not deserialized
TOO_MANY_PEOPLE_TO_DECODE = "too_many_people_to_decode"
# ... and of more keypoints than that many people have in any layout
TOO_MANY_KEYPOINTS_TO_DECODE = "too_many_keypoints_to_decode"
MOST_KEYPOINTS_READ = MOST_PEOPLE_READ * max(layout.num_joints for layout in LAYOUTS.values())
# where, in a HumanKeypoints2DArray's layout (cfi_pose_ros.cdr.walk_layout), the people are, and each one's keypoints
PEOPLE_PATH = (list(HumanKeypoints2DArray.get_fields_and_field_types()).index("people"),)
KEYPOINTS_PATH = PEOPLE_PATH + (list(HumanKeypoints2D.get_fields_and_field_types()).index("keypoints"),)


def keypoints_not_to_decode(serialized) -> tuple[str | None, str] | None:
    """Why the bytes of a ``HumanKeypoints2DArray`` are not to be deserialized, from one walk of
    them (:func:`cfi_pose_ros.cdr.walk_layout`), or None: ``(drop reason, words)`` for one of more
    people than any max_people reads (:data:`MOST_PEOPLE_READ`: TOO_MANY_PEOPLE_TO_DECODE), or of
    more keypoints than that many people have in any layout (:data:`MOST_KEYPOINTS_READ`:
    TOO_MANY_KEYPOINTS_TO_DECODE); ``(None, where)`` for bytes whose lengths run past their end (no
    message: the node counts them undeserializable, offline lifting undecodable). Only what is read
    is cut to the highest scores (and a person of another keypoint count refused): deserializing
    costs every keypoint the message holds (about 36 bytes of memory a byte), and one message of
    100,000 people (24.8 MB) held the lifter's executor 8 s and grew it by 340 MB, for 64 people
    kept; one person of 2,000,000 keypoints (24 MB) held it 5.7 s. No detector sends so many (its
    max_people is at most 1000); offline lifting skips such a message of a bag by this rule too."""
    from cfi_pose_ros.cdr import walk_layout

    walked = walk_layout(serialized, cdr_layout(HumanKeypoints2DArray),
                         {PEOPLE_PATH: MOST_PEOPLE_READ, KEYPOINTS_PATH: None})
    if walked.over == PEOPLE_PATH:
        return TOO_MANY_PEOPLE_TO_DECODE, (f"it holds {walked.lengths[PEOPLE_PATH]} people, more than the lifter "
                                           f"reads of a message ({MOST_PEOPLE_READ}); not decoded")
    if walked.problem is not None:
        return None, walked.problem
    if walked.lengths[KEYPOINTS_PATH] > MOST_KEYPOINTS_READ:
        return TOO_MANY_KEYPOINTS_TO_DECODE, (f"it holds {walked.lengths[KEYPOINTS_PATH]} keypoints, more than the "
                                              f"lifter reads of a message ({MOST_KEYPOINTS_READ}); not decoded")
    return None


def _people_worth_reading(people, config: PipelineConfig) -> tuple[list, list[int] | None]:
    """``people`` in their order, cut to the ``PEOPLE_READ_PER_KEPT * config.max_people`` highest
    scores, and the indices in ``people`` of those kept (None: all are). People the pipeline refuses
    on the message's fields rank last (see :func:`_claim_to_be_read` and :func:`_keypoints_refused`),
    and so do those with fewer keypoints above ``min_keypoint_score`` than ``min_valid_joints``
    (:func:`_too_few_seen`): the pipeline drops those too."""
    bound = PEOPLE_READ_PER_KEPT * config.max_people
    if len(people) <= bound:
        return people, None
    scores = np.fromiter((_claim_to_be_read(person) for person in people), dtype=np.float64, count=len(people))
    order = np.argsort(-scores, kind="stable").tolist()
    # keypoints are judged in the order people would be read, until enough pass: a crowd of good
    # people costs what is read, each person refused for a keypoint costs one look at their keypoints
    good = list(itertools.islice((i for i in order if scores[i] > -np.inf and not _keypoints_refused(people[i])
                                  and not _too_few_seen(people[i], config)), bound))
    if len(good) < bound:
        taken = set(good)
        good += [i for i in order if i not in taken][:bound - len(good)]
    keep = sorted(good)
    return [people[i] for i in keep], keep


def _claim_to_be_read(person) -> float:
    """A person's score, or -inf for one the pipeline refuses on the message's fields alone (an
    unknown layout, a keypoint count not its layout's, a score outside [0, 1] or NaN, a track id too
    long): 256 such people of score 1 filled every place to be read, and the message's good people
    were never read (counted as too_many_people, a routine drop: no warning either)."""
    layout = LAYOUTS.get(LAYOUT_NAMES.get(person.layout, ""))
    score = float(person.score)
    if (layout is None or len(person.keypoints) != layout.num_joints or not 0.0 <= score <= 1.0
            or len(person.id) > MAX_TRACK_ID_LENGTH):
        return -np.inf
    return score


def _keypoints_refused(person) -> bool:
    """Whether the pipeline refuses a person (of the right keypoint count) for a keypoint: an
    infinite coordinate or a score outside [0, 1] or NaN (NaN coordinates mark a missing joint).
    Left out of :func:`_claim_to_be_read`, 256 people of score 1 each with one such keypoint took
    every place to be read, the message's good people dropped as too_many_people."""
    return not all(0.0 <= kp.score <= 1.0 and abs(kp.x) != np.inf and abs(kp.y) != np.inf for kp in person.keypoints)


def _too_few_seen(person, config: PipelineConfig) -> bool:
    """Whether a person (of the right keypoint count) has fewer keypoints with finite coordinates and
    a score above ``min_keypoint_score`` than ``min_valid_joints``: the pipeline then drops them
    (too_few_joints; counted in the person's own layout, so a COCO person may still be dropped
    after its conversion). Left out of :func:`_people_worth_reading`, people seen in part (a few
    joints, as at the image's border) of higher scores took every place to be read: with
    max_people 1, four such people in front of one seen whole left nobody published."""
    threshold = float(np.float32(config.min_keypoint_score))    # as the pipeline compares (float32)
    seen = sum(1 for kp in person.keypoints if kp.score > threshold and abs(kp.x) < np.inf and abs(kp.y) < np.inf)
    return seen < config.min_valid_joints


def dropped_warning_key(reason: str) -> str:
    """The log's throttling key of the warning about inputs dropped for ``reason``: one per reason,
    so that one kind of bad input does not hide another for the throttle's period."""
    return f"dropped_{reason}"


def depth_warning_key(kind: str) -> str:
    """The log's throttling key of the warning about a depth image not used for a fault of ``kind``
    (:class:`cfi_pose_ros.depth.DepthImageError`): one per kind, as :func:`dropped_warning_key`."""
    return f"{dropped_warning_key('bad_depth_image')}:{kind}"


def warned_about(warnings: dict[str, str], reason: str) -> bool:
    """Whether ``warnings`` (a LiftedFrame's) tell of the drops for ``reason`` in their own words,
    under its key or the key of one kind of it (:func:`depth_warning_key`): the generic "dropped
    malformed input" line is then not logged as well."""
    key = dropped_warning_key(reason)
    return any(name == key or name.startswith(key + ":") for name in warnings)


def _camera_info_not_for(msg, camera_frame_id: str, camera_size: tuple[int, int] | None,
                         camera_matrix: np.ndarray | None) -> tuple[str, str] | None:
    """``(warning key, reason)`` when a CameraInfo is not for the keypoints of ``msg`` (see
    :func:`lift_keypoints`), else None."""
    if other_camera_frame(camera_frame_id, msg.header.frame_id):
        return "camera_info_frame", (f"it is for frame {tf2_frame_id(camera_frame_id)!r}, the keypoints are in "
                                     f"{tf2_frame_id(msg.header.frame_id)!r} (camera_info_topic another camera's?)")
    width, height = msg.image_width, msg.image_height
    if camera_matrix is not None and camera_size is None and min(width, height) > 0:
        # a CameraInfo of no size (width and height 0): its K was judged against no image, and a
        # principal point 5e5 px off placed people 2 km to the side. It is the keypoints' image's.
        try:
            validate_camera_matrix(camera_matrix, (width, height))
        except ValueError as exc:
            return "camera_info_matrix", f"it gives no image size, and for the keypoints' {width}x{height} image {exc}"
    if camera_size is not None and min(width, height) > 0 and not is_resized_view((width, height), camera_size):
        info_width, info_height = camera_size
        return "camera_info_size", (
            f"the keypoints are pixels of a {width}x{height} image (aspect {width / height:.3f}), its image is "
            f"{info_width}x{info_height} (aspect {info_width / info_height:.3f}): not the same view resized "
            "(keypoints of a letterboxed or cropped detector input, or image_width/height of the network's input?)")
    return None


def dropped_frame_markers(input_header, lifetime: float, drawn: DrawnMarkers, header,
                          namespace: str = LIFTER_MARKER_NAMESPACE) -> MarkerArray | None:
    """The markers for an input of ``input_header`` dropped whole (nothing published for it: a stamp
    no ROS time holds, no image size, no transform, lifting failed), or None. With a lifetime RViz
    expires its camera's skeletons go by it; with one it never expires they stayed on RViz's screen,
    frozen, for as long as the camera's frames were dropped, where a frame whose every person was
    dropped clears them: a DELETEALL (marker header ``header``) of the camera's namespace in
    ``namespace`` (the lifter's), where ``drawn`` says it has markers. An input whose frame_id names
    no frame names no camera: nothing."""
    if lifetime_expires(lifetime) or frame_id_problem(input_header) is not None:
        return None
    camera = camera_namespace(namespace, tf2_frame_id(input_header.frame_id))
    return markers_to_msg(header, [], cleared=[camera]) if drawn.cleared(camera) else None


def undecoded_frame_header(serialized) -> Header | None:
    """The header of a keypoints message dropped undecoded (``serialized``, its bytes:
    :func:`keypoints_not_to_decode` gave a drop reason), read from its bytes, for
    :func:`dropped_frame_markers`: such a frame is dropped whole too, and with a lifetime RViz never
    expires the skeletons of the camera's last decoded frame stayed on screen, frozen, for as long
    as its messages were too big to decode. None where the header cannot be read from the bytes."""
    from cfi_pose_ros.cdr import read_header

    read = read_header(serialized)
    if read is None:
        return None
    sec, nanosec, frame_id = read
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


def paired_depth(history: DepthHistory, header, max_age: float, received: float,
                 camera_frame_id: str = "") -> PairedDepth:
    """The depth image of ``history`` for a keypoints frame of ``header`` that arrived at
    ``received`` (:meth:`DepthHistory.paired`, by the frame's camera, else ``camera_frame_id``, the
    CameraInfo's). None for a frame :func:`lift_keypoints` drops for its header, and not counted
    as a frame of its camera: a bad frame_id is no camera (16 of them pushed every real camera
    out of the history's bounded record of stamps standing still), and a stamp no ROS time holds
    is no stamp of the camera's (one restarted a paused camera's count, and its next 30 frames
    were paired with the last depth image again)."""
    if header_drop_reason(header) is not None:
        return PairedDepth(None, False)
    return history.paired(stamp_seconds(header.stamp), max_age, received, header.frame_id or camera_frame_id)


def lift_keypoints(pipeline: LiftingPipeline, msg, camera_matrix: np.ndarray | None,
                   camera_size: tuple[int, int] | None, depth: np.ndarray | None = None,
                   target_frame: str = "", target_from_camera: RigidTransform | None = None,
                   lens: LensDistortion | None = None, depth_frame_id: str = "",
                   camera_frame_id: str = "", depth_stale: bool = False) -> LiftedFrame:
    """Lift one ``HumanKeypoints2DArray`` (``camera_matrix``, ``lens``, ``camera_size``: what
    :func:`camera_from_info` gives; ``depth``: the depth image paired with it, registered to the
    CameraInfo's image). With ``target_frame`` the result is expressed in it through
    ``target_from_camera`` (the caller resolved it: static, or a tf2 lookup).

    A depth image whose aspect ratio is not the CameraInfo's image's (the keypoints' image's without
    a CameraInfo size), or whose ``depth_frame_id`` names another frame than the keypoints' (the
    CameraInfo's where they name none; both given), is not registered to it: not used, and counted
    as ``bad_depth_image``. Alike a CameraInfo
    whose ``camera_frame_id`` names another frame than the keypoints' (both given): another camera's
    intrinsics (camera_info_topic of the stereo pair's other camera, of the depth sensor) placed people
    by another lens; not used (root-relative poses), counted as ``bad_camera_info``. So is a
    CameraInfo whose image is not the keypoints' image resized (another aspect ratio than rounding
    explains): K moved to the keypoints' size by two factors placed people of a letterboxed detector
    input, or of a message giving the network's input size, 1.7 m off without a word.

    ``depth_stale``: depth images have come, but none taken with this frame (see
    :class:`cfi_pose_ros.depth.PairedDepth`); counted as ``stale_depth`` only where the frame's
    people would have been placed from one: a frame dropped for its header, lifted root-relative for
    its CameraInfo (or without one) or with nobody left to place is counted under its own reasons alone."""
    refused_header = header_drop_reason(msg.header)
    if refused_header is not None:
        return LiftedFrame(Header(stamp=msg.header.stamp), [], Counter({refused_header: max(len(msg.people), 1)}))
    refused, warnings = Counter(), {}
    # a CameraInfo that gives a size alone (no K) is judged alike where the frame takes that size
    # (it gives 0): another camera's size was used
    info_used = camera_matrix is not None or (camera_size is not None and not (msg.image_width and msg.image_height))
    unusable = _camera_info_not_for(msg, camera_frame_id, camera_size, camera_matrix) if info_used else None
    if unusable is not None:
        camera_matrix = lens = camera_size = depth = None
        refused["bad_camera_info"] += 1
        key, reason = unusable
        warnings[key] = f"CameraInfo not used: {reason}: their poses are root-relative"
    people, read_indices = _people_worth_reading(msg.people, pipeline.config)
    if read_indices is not None:
        refused["too_many_people"] += len(msg.people) - len(people)
    frame = frame_from_msg(msg, camera_matrix, camera_size, lens, people)
    frame.depth = depth
    # judged where the depth image can be used (with K); a frame of no size is refused for that
    registered_to = camera_size or (frame.image_width, frame.image_height)
    if depth is not None and frame.camera_matrix is not None and min(registered_to) > 0:
        try:
            check_depth_frame(depth_frame_id, msg.header.frame_id, camera_frame_id)
            check_depth_registration(depth.shape, registered_to)
        except DepthImageError as exc:
            frame.depth = None
            refused["bad_depth_image"] += 1
            warnings[depth_warning_key(exc.kind)] = f"depth image not used: {exc}"
    result = pipeline.process(frame)
    # lifted with intrinsics and solve_root on: its people are placed, or could not be (LiftedFrame)
    places_people = frame.camera_matrix is not None and pipeline.config.solve_root
    # the caller counted stale_depth before its fate was known, and a frame dropped for its header
    # was counted twice (stale_depth and negative_stamp ...), on /diagnostics as two bad frames
    if depth_stale and places_people and result.people and "bad_camera_info" not in result.dropped:
        refused[STALE_DEPTH] += 1
        warnings[dropped_warning_key(STALE_DEPTH)] = (
            "no depth image stamped within depth_max_age of the keypoints: their people are placed from the "
            "intrinsics (the depth stream stopped, or runs late or on another clock?)")
    if read_indices is not None:
        # the index in the message, as the markers' ids, colours and "person <index>" labels say:
        # the pipeline's counts the people read only
        for person in result.people:
            person.source_index = read_indices[person.source_index]
    result.dropped.update(refused)
    warnings.update((dropped_warning_key(reason), f"dropped malformed input ({reason}): {words}")
                    for reason, words in result.problems.items())
    # the output frame as tf2 names it (see tf2_frame_id): the input's `/camera` is `camera`
    header = Header(stamp=msg.header.stamp, frame_id=tf2_frame_id(target_frame or msg.header.frame_id))
    if target_frame:
        return LiftedFrame(header, transform_people(result.people, target_from_camera), result.dropped,
                           camera_up(target_from_camera), frame, warnings, places_people)
    return LiftedFrame(header, result.people, result.dropped, source=frame, warnings=warnings,
                       places_people=places_people)
