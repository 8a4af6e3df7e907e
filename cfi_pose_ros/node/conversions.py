"""Messages <-> the pipeline's plain data. Thin on purpose: all logic is in the ROS-free modules."""
from __future__ import annotations

import functools
import importlib

import numpy as np
from geometry_msgs.msg import Point
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from cfi_pose_ros.camera import LensDistortion, rescale_camera_matrix
from cfi_pose_ros.cdr import ARRAY, SEQUENCE, STRING, SerializedImage, read_image
from cfi_pose_ros.depth import DepthImageError, depth_image_to_array
from cfi_pose_ros.frame_ids import MAX_FRAME_ID_LENGTH, frame_name_problem, tf2_frame_id
from cfi_pose_ros.markers import MarkerSpec, lifetime_ns
from cfi_pose_ros.msg import HumanKeypoints2D, HumanPose3D, HumanPose3DArray
from cfi_pose_ros.pipeline import Frame2D, LiftedPerson, Person2D
from cfi_pose_ros.skeleton import LAYOUTS

LAYOUT_NAMES = {HumanKeypoints2D.LAYOUT_H36M_17: "h36m_17", HumanKeypoints2D.LAYOUT_COCO_17: "coco_17"}
LAYOUT_IDS = {name: layout_id for layout_id, name in LAYOUT_NAMES.items()}
_MARKER_TYPES = {"sphere_list": Marker.SPHERE_LIST, "line_list": Marker.LINE_LIST,
                 "text": Marker.TEXT_VIEW_FACING}
_MARKER_KINDS = {ros_type: kind for kind, ros_type in _MARKER_TYPES.items()}
DELETE_ALL_MARKER_ID = -1       # the skeletons' ids are person index x markers per person + k, >= 0
# A person with more keypoints than any layout has is dropped for its count (wrong_keypoint_count);
# converting all of them first cost 76 ms for one person of 100,000 keypoints.
_KEYPOINTS_CONVERTED = max(layout.num_joints for layout in LAYOUTS.values()) + 1


# Diagnostics drop reason (both nodes): header.stamp.sec < 0. The message's sec is signed, but no
# ROS time is negative: rclpy's Time.from_msg raises ValueError on such a stamp and rclcpp::Time
# throws (RViz's marker display makes one of every marker's stamp), so an output carrying it on
# broke its consumers.
NEGATIVE_STAMP = "negative_stamp"
# Diagnostics drop reason (both nodes): header.stamp.nanosec of 1e9 or more (builtin_interfaces/Time:
# [0, 1e9)). Read as seconds it jumped up to 4.3 s ahead (the smoother restarted every track), and
# two different stamps made one key of the stamp-keyed state.
BAD_STAMP_NANOSEC = "bad_stamp_nanosec"
# Diagnostics drop reason (both nodes): a header.frame_id longer than MAX_FRAME_ID_LENGTH (why:
# frame_ids.py).
FRAME_ID_TOO_LONG = "frame_id_too_long"
# Diagnostics drop reason (both nodes): a header.frame_id no tf2 tree holds (frame_ids.py's
# frame_name_problem: a space or control character, `a//b`, a trailing '/'), as target_frame refuses
# them. Every output carried it on (the poses, each marker, the /tf frames' parent) in a frame no tf2
# consumer, RViz included, can place. Judged as tf2 reads it: a leading '/' is dropped, and an empty
# frame_id (or '/' alone) names no frame, as before.
BAD_FRAME_ID = "bad_frame_id"


def frame_id_problem(header) -> tuple[str, str] | None:
    """``FRAME_ID_TOO_LONG`` or ``BAD_FRAME_ID`` with the words a warning gives, for a
    ``header.frame_id`` no output may carry on, or None."""
    length = len(header.frame_id)
    if length > MAX_FRAME_ID_LENGTH:
        return FRAME_ID_TOO_LONG, f"a header.frame_id of {length} characters (at most {MAX_FRAME_ID_LENGTH})"
    problem = frame_name_problem(tf2_frame_id(header.frame_id))
    if problem is not None:
        return BAD_FRAME_ID, f"header.frame_id {header.frame_id!r}: {problem}"
    return None


def check_frame_id(header) -> None:
    """ValueError with the words of :func:`frame_id_problem`."""
    problem = frame_id_problem(header)
    if problem is not None:
        raise ValueError(problem[1])


def stamp_problem(stamp) -> tuple[str, str] | None:
    """``NEGATIVE_STAMP`` or ``BAD_STAMP_NANOSEC`` with the words a warning gives, for a
    builtin_interfaces/Time that is no ROS time, or None."""
    if stamp.sec < 0:
        return NEGATIVE_STAMP, f"stamped {stamp.sec} s: before time 0, no ROS time"
    if stamp.nanosec >= 1_000_000_000:
        return BAD_STAMP_NANOSEC, f"stamped {stamp.nanosec} ns past the second: at most 999999999"
    return None


def header_problem(header) -> tuple[str, str] | None:
    """Why a message with this header is dropped before anything reads it, as (drop reason, the
    words a warning gives), or None."""
    return stamp_problem(header.stamp) or frame_id_problem(header)


def guard_clock_topic(node, warn) -> None:
    """Drop the /clock messages of ``node``'s time source (use_sim_time) that are no ROS time
    (:func:`stamp_problem`), each with ``warn(words)``, the clock left where it was. rclpy's
    ``TimeSource`` reads each with ``Time.from_msg``, whose ValueError for a negative time escaped
    the executor: one such /clock message (a simulator's or bridge's bug) ended the node with a
    traceback, and the tf2 listener's spin thread with it (its buffer was never filled again).

    Wraps the time source's ``clock_callback`` (its /clock subscription, made at ``use_sim_time``
    true, takes the instance's) and subscribes again where ``Node.__init__`` already did with the
    unwrapped one. A no-op where rclpy's internals differ."""
    source = getattr(node, "_time_source", None)
    take = getattr(source, "clock_callback", None)
    if take is None or not hasattr(source, "_subscribe_to_clock_topic"):
        return

    def clock_callback(msg) -> None:
        problem = stamp_problem(msg.clock)
        if problem is not None:
            warn(f"/clock message ignored, the node's clock stays at its time: {problem[1]}")
            return
        take(msg)

    source.clock_callback = clock_callback
    if getattr(source, "_clock_sub", None) is not None:
        node.destroy_subscription(source._clock_sub)
        source._clock_sub = None
        source._subscribe_to_clock_topic()


def header_drop_reason(header) -> str | None:
    """The drop reason of :func:`header_problem`, or None."""
    problem = header_problem(header)
    return problem and problem[0]


class RawImage(SerializedImage):
    """A ``sensor_msgs/Image`` as a node reads it, ``data`` a view of the bytes rmw took
    (``sensor_msgs.msg.Image`` would copy the pixels into an ``array.array``)."""

    @functools.cached_property
    def header(self) -> Header:         # a message's: the detector's keypoints carry it on
        header = Header(frame_id=self.frame_id)
        header.stamp.sec, header.stamp.nanosec = self.stamp_sec, self.stamp_nanosec
        return header


def image_from_serialized(serialized: bytes) -> RawImage | Image:
    """A raw image subscription's message from its bytes (:mod:`cfi_pose_ros.cdr`; the type
    support's for an encapsulation that reader does not lay out). ``ValueError`` for bytes that are
    not an image."""
    image = read_image(serialized, RawImage)
    return deserialize_message(serialized, Image) if image is None else image


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def depth_from_msg(msg) -> np.ndarray:
    """A ``sensor_msgs/Image`` depth image as an array (DepthImageError for one that is not a valid
    16UC1 / 32FC1 image, see :func:`cfi_pose_ros.depth.depth_image_to_array`, or whose header a
    keypoints message would be dropped for, see :func:`header_problem`: a stamp no ROS time holds
    paired the image with keypoints of another time, and one read as seconds ahead emptied the
    history of depth images kept for pairing)."""
    problem = header_problem(msg.header)
    if problem is not None:
        raise DepthImageError(problem[1], problem[0])
    return depth_image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


def stamp_ns(header) -> int:
    """A header's stamp as integer nanoseconds: the exact key that matches an output to its input."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def frame_from_msg(msg, camera_matrix: np.ndarray | None, fallback_size: tuple[int, int] | None,
                   lens: LensDistortion | None = None, people_msgs=None) -> Frame2D:
    """HumanKeypoints2DArray -> Frame2D (``lens``: the distortion of the image the keypoints are
    pixels of, undone by the pipeline; ``people_msgs``: the people of ``msg`` to convert, all by
    default). An unknown layout id becomes a name the pipeline rejects."""
    people = []
    for person in msg.people if people_msgs is None else people_msgs:
        rows = np.array([(kp.x, kp.y, kp.score) for kp in person.keypoints[:_KEYPOINTS_CONVERTED]],
                        dtype=np.float64).reshape(-1, 3)
        people.append(Person2D(keypoints=rows[:, :2], scores=rows[:, 2],
                               layout=LAYOUT_NAMES.get(person.layout, f"unknown({person.layout})"),
                               track_id=person.id, score=float(person.score)))
    width, height = msg.image_width, msg.image_height
    if (width == 0 or height == 0) and fallback_size is not None:
        width, height = fallback_size     # the CameraInfo's image size
    if camera_matrix is not None and fallback_size is not None and width and height \
            and (width, height) != tuple(fallback_size):
        # the keypoints come from an image of another size than the CameraInfo's (a detector's
        # resized input, a camera mode change): K is moved to the keypoints' pixels (the lens acts
        # on normalised coordinates, which the move keeps)
        camera_matrix = rescale_camera_matrix(camera_matrix, fallback_size, (width, height))
    return Frame2D(people=people, image_width=float(width), image_height=float(height),
                   stamp=stamp_seconds(msg.header.stamp), camera_matrix=camera_matrix, lens=lens,
                   frame_id=tf2_frame_id(msg.header.frame_id))


def poses_to_msg(header, people: list[LiftedPerson]) -> HumanPose3DArray:
    out = HumanPose3DArray(header=header)
    for person in people:
        # tolist() turns a whole array into Python floats at once (this runs for every person of
        # every frame; per-element float() calls cost more than the rest of the conversion).
        human = HumanPose3D(id=person.track_id, score=float(person.score),
                            root_source=int(person.root_source),
                            keypoints=[Point(x=x, y=y, z=z) for x, y, z in person.keypoints.tolist()],
                            keypoint_scores=person.keypoint_scores.tolist())
        p, q = human.body_pose.position, human.body_pose.orientation
        p.x, p.y, p.z = person.position.tolist()
        q.x, q.y, q.z, q.w = person.orientation_xyzw.tolist()
        out.humans.append(human)
    return out


def markers_to_msg(header, specs: list[MarkerSpec], clear: bool = False,
                   deleted: list[tuple[str, int]] = (), clear_namespace: str = "",
                   cleared: tuple[str, ...] | list[str] = ()) -> MarkerArray:
    """``clear``: start with a DELETEALL of ``clear_namespace``, so markers of people no longer seen
    go away even when the specs' lifetime is 0 (Marker.msg: "0 indicates forever") or, to RViz, as
    good as 0 (:func:`cfi_pose_ros.markers.lifetime_expires`). RViz2 deletes only that namespace's
    markers (every marker of the display for ""): another publisher's on the same topic stay.
    ``deleted``: ``(namespace, id)`` of markers to DELETE first (see
    :class:`cfi_pose_ros.markers.DrawnMarkers`); ``cleared``: namespaces to DELETEALL as well
    (other cameras' skeletons no longer recorded, see ``DrawnMarkers.evicted``)."""
    array = MarkerArray()
    # an id no marker has: RViz2 checks every marker of an array, a DELETEALL too, for another of
    # the same (ns, id), and person 0's first marker (id 0) put the display in Error every frame
    namespaces = dict.fromkeys([clear_namespace] if clear else [])
    namespaces.update(dict.fromkeys(cleared))       # each once: RViz2's duplicate check
    array.markers.extend(Marker(header=header, ns=namespace, id=DELETE_ALL_MARKER_ID, action=Marker.DELETEALL)
                         for namespace in namespaces)
    array.markers.extend(Marker(header=header, ns=namespace, id=int(marker_id), action=Marker.DELETE)
                         for namespace, marker_id in deleted)
    for spec in specs:
        marker = Marker(header=header, ns=spec.namespace, id=int(spec.id), type=_MARKER_TYPES[spec.type],
                        action=Marker.ADD, text=spec.text)
        marker.pose.orientation.w = 1.0
        marker.scale.x, marker.scale.y, marker.scale.z = (float(v) for v in spec.scale)
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = (float(c) for c in spec.color)
        # whole nanoseconds first: a fraction that rounds up to 1 s carries into sec (nanosec < 1e9)
        marker.lifetime.sec, marker.lifetime.nanosec = divmod(lifetime_ns(spec.lifetime), 1_000_000_000)
        if spec.type == "text":
            marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = (
                float(v) for v in spec.points[0])
        else:
            marker.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in spec.points]
        array.markers.append(marker)
    return array


def markers_from_msg(marker_array: MarkerArray) -> list[MarkerSpec]:
    """The inverse of :func:`markers_to_msg`, for rendering received markers as RViz would."""
    specs = []
    for m in marker_array.markers:
        if m.action != Marker.ADD or m.type not in _MARKER_KINDS:      # a DELETEALL draws nothing
            continue
        if m.type == Marker.TEXT_VIEW_FACING:
            points = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]])
        else:
            points = np.array([[p.x, p.y, p.z] for p in m.points]).reshape(-1, 3)
        specs.append(MarkerSpec(namespace=m.ns, id=m.id, type=_MARKER_KINDS[m.type], points=points,
                                color=(m.color.r, m.color.g, m.color.b, m.color.a),
                                scale=(m.scale.x, m.scale.y, m.scale.z), text=m.text,
                                lifetime=m.lifetime.sec + m.lifetime.nanosec * 1e-9))
    return specs


_PRIMITIVE_BYTES = {"boolean": 1, "octet": 1, "char": 1, "uint8": 1, "int8": 1, "int16": 2, "uint16": 2,
                    "int32": 4, "uint32": 4, "float": 4, "int64": 8, "uint64": 8, "double": 8}


@functools.lru_cache(maxsize=None)
def cdr_layout(msg_type) -> tuple | None:
    """``msg_type``'s fields as :func:`cfi_pose_ros.cdr.layout_problem` walks them, from its rosidl
    description; None for a type with a field that walk does not lay out (wide strings, long double)."""
    from rosidl_parser.definition import AbstractSequence, AbstractString, Array, BasicType, NamespacedType

    def field(slot):
        if isinstance(slot, BasicType):
            return _PRIMITIVE_BYTES.get(slot.typename)
        if isinstance(slot, AbstractString):
            return STRING if type(slot).__name__ in ("UnboundedString", "BoundedString") else None
        if isinstance(slot, NamespacedType):
            return cdr_layout(getattr(importlib.import_module(".".join(slot.namespaces)), slot.name))
        if isinstance(slot, (Array, AbstractSequence)):
            inner = field(slot.value_type)
            if inner is None:
                return None
            return (ARRAY, slot.size, inner) if isinstance(slot, Array) else (SEQUENCE, inner)
        return None

    fields = tuple(field(slot) for slot in msg_type.SLOT_TYPES)
    return None if any(f is None for f in fields) else fields
