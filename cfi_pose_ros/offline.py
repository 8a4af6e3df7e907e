"""Offline lifting: a recorded bag, a video or photos in; an MCAP bag of the results and a
rendered video out. No DDS and no waiting: every frame is lifted as fast as the machine allows,
through the same per-frame code as the nodes (:func:`cfi_pose_ros.node.lifting.lift_keypoints`,
the lift node's parameters and defaults; images through
:func:`cfi_pose_ros.detectors.frame.detect_and_track`, as the detector node runs them).

    python -m cfi_pose_ros.offline recording.mcap --out outputs/offline
    python -m cfi_pose_ros.offline cfi_pose_ros/data/demo_clip_h36m_s9.npz --out outputs/offline_clip
    python -m cfi_pose_ros.offline walk.mp4 --intrinsics 1145 1144 512 515 \\
        --person-detector-model rtmdet_nano_person.onnx --keypoint-model movenet_singlepose_lightning.onnx
    python -m cfi_pose_ros.offline photos/ --hfov 60 --person-detector-model ... --keypoint-model ...

Inputs:

* an MCAP bag: its ``HumanKeypoints2DArray`` topic is lifted (with its ``CameraInfo`` topic);
  a bag with images and no 2D keypoints (``Image`` / ``CompressedImage``) goes through the 2D
  detector first. ``--keypoints-topic`` / ``--image-topic`` / ``--camera-info-topic`` choose
  when a bag has several. An aligned depth image topic (``--depth-topic``, or the params file's
  ``depth_topic``) places people from depth as the node does.
* a bundled-format clip (``.npz``, e.g. the demo clip): the messages the demo replays.
* a video file, or image files / a folder of photos (each photo its own scene: the person
  detector runs on every one), through the 2D detector, with the camera's intrinsics from
  ``--intrinsics FX FY CX CY`` (pixels) or ``--hfov DEG`` (centred principal point), and the
  lens's ``--distortion`` (``--distortion-model``, plumb_bob by default), undone before lifting as
  the node undoes a CameraInfo's; without intrinsics, poses are root-relative.

Outputs in ``--out``: ``lifted.mcap`` (the 2D input, ``CameraInfo``, ``/human_pose_3d`` and
its markers, on the lift node's default topics, logged at the input's times), ``lifted.mp4``
(``lifted.gif`` where OpenCV cannot write MP4; ``--no-video`` skips it): the 2D keypoints on the
image beside the 3D skeletons, and ``summary.json``. A progress bar runs while lifting, and a
closing summary gives frames, people and poses per second (lifting alone, and the whole pass).
``--target-frame`` with ``--target-from-camera X Y Z QX QY QZ QW`` writes the poses in a robot
frame (a static transform: offline there is no tf2 buffer).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import stat
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

if __name__ == "__main__":
    # a codec that crashes on a bag's image says where; a stop signal during the imports below
    # (numpy, then rclpy, torch) ends the command in one line, 130 or 143, until main() takes over
    from cfi_pose_ros.interrupts import exit_quietly_on_stop_signals
    from cfi_pose_ros.node.startup import tell_where_a_crash_happened
    tell_where_a_crash_happened()
    exit_quietly_on_stop_signals("offline")

import numpy as np  # noqa: E402

from cfi_pose_ros.arguments import folders_to_make, remove_empty  # noqa: E402
from cfi_pose_ros.camera import DISTORTION_COEFFICIENTS, check_lens_over_image  # noqa: E402
from cfi_pose_ros.params_file import read_params_file  # noqa: E402
from cfi_pose_ros.root_solver import validate_camera_matrix  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
KEYPOINTS_TYPE = "cfi_pose_ros/msg/HumanKeypoints2DArray"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DEPTH_TYPE = "sensor_msgs/msg/Image"
PANEL_HEIGHT = 560
# the frame rates a video file may state: one frame an hour (a time-lapse) to 1000 (high-speed
# cameras); outside it is no camera's (a broken container, or its time base taken for a rate)
MIN_VIDEO_FPS, MAX_VIDEO_FPS = 1.0 / 3600.0, 1000.0
MAX_STAMP_NS = (2**31 - 1) * 10**9      # builtin_interfaces/Time: int32 seconds
# 2D joints drawn on the image: detectors give occluded joints low scores (guesses); display only,
# the lifter's own threshold is the node's min_keypoint_score.
DRAW_MIN_SCORE = 0.3
RUN_OUTPUTS = ("lifted.mcap", "lifted.mp4", "lifted.gif", "summary.json")    # what a run writes in --out
PANEL_3D_WIDTH = 640


@dataclass(frozen=True)
class Unread:
    """A message or file of a source that could not be read. Passed on to the lifting pass rather
    than skipped where it was found: it is counted in the run's dropped counts (summary.json) and
    told once per reason; skipped, 75 of 150 frames that did not decode left "dropped": {}, exit 0,
    and one stderr line each."""
    reason: str       # its dropped count: undecodable, non_cdr_channel, unreadable_image, bad_depth_image
    detail: str       # which one and why, for the first of its reason
    frame: bool       # one of the frames the progress bar counts
    # a keypoints message dropped undecoded (too many people or keypoints): its bytes, whose header
    # names the camera whose skeletons that frame, dropped whole, clears (lifting.undecoded_frame_header)
    serialized: bytes | memoryview | None = None


@dataclass
class Item:
    """One event of a source, in time order: a CameraInfo, a 2D keypoints message, an image, an
    aligned depth image, or something that could not be read."""
    log_time_ns: int
    camera_info: object | None = None
    keypoints: object | None = None     # HumanKeypoints2DArray
    image: np.ndarray | None = None     # BGR
    header: object | None = None        # the image's header (stamp, frame id), an unreadable image's too
    depth: tuple[float, np.ndarray, str] | None = None     # an aligned depth image: (stamp s, pixels, header.frame_id)
    unread: Unread | None = None


@dataclass
class Source:
    """A re-iterable input: ``items()`` yields :class:`Item` s in time order."""
    description: str
    detect: bool                          # images -> 2D detector; else 2D keypoints messages
    frames: int | None                    # frames to lift (for the progress bar)
    fps: float | None                     # None: the frames' own rate, measured while lifting
    items: Callable[[bool], Iterator[Item]]   # items(for_video): the lifting pass's, or the video's
    scene_per_frame: bool = False         # photos: every frame its own scene


def _header(stamp_ns: int, frame_id: str):
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return header


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def root_namespace_topic(name: str) -> str:
    """A node's (relative) topic name as the node in the root namespace resolves it."""
    return "/" + name.lstrip("/")


def _pick_topic(topics: dict, types: tuple[str, ...], chosen: str | None, what: str) -> str | None:
    if chosen:
        if chosen not in topics:
            raise ValueError(f"the bag has no topic {chosen} (it has {sorted(topics)})")
        if topics[chosen].type_name not in types:
            # a channel without a schema: it was "holds , not ..."
            held = topics[chosen].type_name or "messages of no schema (their type unknown)"
            raise ValueError(f"--{what}-topic {chosen} holds {held}, not {' or '.join(types)}")
        return chosen
    found = sorted(t for t, info in topics.items() if info.type_name in types)
    if len(found) > 1:
        raise ValueError(f"the bag has several {what} topics {found}: choose one with --{what}-topic")
    return found[0] if found else None


def _image_pixel_bound(max_image_pixels: int | None) -> int:
    """The detector's ``max_image_pixels`` for an input's images, its default where None."""
    from cfi_pose_ros.image import DEFAULT_MAX_IMAGE_PIXELS

    return max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS


def bag_source(path: Path, keypoints_topic=None, image_topic=None, camera_info_topic=None,
               depth_topic=None, max_image_pixels: int | None = None) -> Source:
    """``max_image_pixels``: the detector's, for its compressed images (None: its default)."""
    from cfi_pose_ros.bag import MESSAGE_ENCODING, bag_summary, read_bag
    from cfi_pose_ros.node.lifting import keypoints_not_to_decode
    from cfi_pose_ros.node.conversions import depth_from_msg, stamp_seconds
    from cfi_pose_ros.node.detect_node import image_to_bgr

    topics, (start, end) = bag_summary(path)
    kp_topic = _pick_topic(topics, (KEYPOINTS_TYPE,), keypoints_topic, "keypoints")
    if depth_topic:
        _pick_topic(topics, (DEPTH_TYPE,), depth_topic, "depth")
    # the depth images are no colour image to detect people in or draw on
    img_topic = _pick_topic({name: info for name, info in topics.items() if name != depth_topic},
                            IMAGE_TYPES, image_topic, "image")
    info_topic = _pick_topic(topics, (CAMERA_INFO_TYPE,), camera_info_topic, "camera-info")
    if kp_topic is None and img_topic is None:
        raise ValueError(f"{path}: no 2D keypoints ({KEYPOINTS_TYPE}) and no image topic to lift")
    detect = kp_topic is None
    frame_topic = img_topic if detect else kp_topic
    frames = topics[frame_topic].count
    if frames == 0 and _no_messages(path, frame_topic):
        # lifted, it was "0 frames", exit 1 and a summary.json, with no word of why
        held = ", ".join(f"{name} ({info.count})" for name, info in sorted(topics.items()) if info.count)
        raise ValueError(f"{path}: no messages on {frame_topic} (the bag's topics with messages: {held or 'none'})")

    def items(for_video: bool) -> Iterator[Item]:
        # the video draws on the images and places nobody: its pass decoded every depth image again
        wanted = [t for t in (kp_topic, info_topic, None if for_video else depth_topic,
                              img_topic if (detect or for_video) else None) if t]
        for message in read_bag(path, wanted, every_encoding=True):
            where = f"a message on {message.topic} at {message.log_time_ns} ns"
            frame = message.topic == frame_topic
            if message.message_encoding != MESSAGE_ENCODING:
                yield Item(message.log_time_ns, unread=Unread(
                    "non_cdr_channel", f"{where}: its channel is {message.message_encoding!r}, not ROS 2 "
                    f"{MESSAGE_ENCODING!r}", frame))
                continue
            # a message of more people (or keypoints) than the lifter reads of one (a detector's
            # max_people is at most 1000), or whose lengths run past its end, is not deserialized:
            # see lifting.keypoints_not_to_decode
            reason, why = (keypoints_not_to_decode(message.data) if message.topic == kp_topic else None) or (None, None)
            if reason is not None:          # a crowd, or too many keypoints: counted under its own name
                yield Item(message.log_time_ns, unread=Unread(reason, f"{where}: {why}", frame, message.data))
                continue
            if why is None:                 # the walk found the bytes in order (or did not look)
                try:
                    msg = message.decode(walked=message.topic == kp_topic)       # walked for the crowd screen
                except (RuntimeError, ValueError) as exc:    # rclpy's RMWError: bytes not of the schema's type
                    why = str(exc).splitlines()[0]
            if why is not None:
                yield Item(message.log_time_ns, unread=Unread(
                    "undecodable", f"{where}: it does not decode as {message.type_name} ({why})", frame))
                continue
            if message.topic == kp_topic:
                yield Item(message.log_time_ns, keypoints=msg)
            elif message.topic == info_topic:
                yield Item(message.log_time_ns, camera_info=msg)
            elif message.topic == depth_topic:
                try:
                    depth = depth_from_msg(msg)
                except ValueError as exc:        # the name the node counts it under
                    yield Item(message.log_time_ns, unread=Unread("bad_depth_image", f"{where}: {exc}", False))
                    continue
                yield Item(message.log_time_ns, depth=(stamp_seconds(msg.header.stamp), depth, msg.header.frame_id))
            else:
                try:
                    image = image_to_bgr(msg, None, _image_pixel_bound(max_image_pixels))
                except ValueError as exc:          # UnsupportedEncoding is a ValueError too
                    yield Item(message.log_time_ns, unread=Unread("unreadable_image", f"{where}: {exc}", frame),
                               header=msg.header)
                    continue
                yield Item(message.log_time_ns, image=image, header=msg.header)

    # fps None: the frame topic's own rate, from the lifting pass (other topics, CameraInfo, /tf,
    # may cover much more of the bag than the frames do)
    return Source(f"{path} ({kp_topic or img_topic})", detect, frames, None, items)


def _no_messages(path: Path, topic: str) -> bool:
    """Whether the bag holds no message on ``topic``, read from the file: its summary's counts are
    0 where it has no statistics record."""
    from cfi_pose_ros.bag import read_bag

    messages = read_bag(path, [topic], every_encoding=True)
    try:
        return next(messages, None) is None
    finally:
        messages.close()


def clip_source(path: Path, rate_hz: float = 30.0, frame_id: str = "camera_optical_frame") -> Source:
    """A clip in the bundled format, as the demo replays it: CameraInfo, then each frame's 2D people."""
    from cfi_pose_ros.node.replay import Clip, camera_info_msg, keypoints_msg

    try:
        clip = Clip.load(path)
    except (KeyError, ValueError) as exc:       # not an .npz, or not the bundled clip format
        raise ValueError(f"{path}: not a clip in the bundled format ({exc})") from exc
    period_ns = int(round(1e9 / rate_hz))

    def items(for_video: bool) -> Iterator[Item]:
        start = period_ns
        info = camera_info_msg(clip.camera_matrix, clip.image_size, frame_id)
        info.header = _header(start, frame_id)
        yield Item(start, camera_info=info)
        for t in range(len(clip.pixels)):
            stamp = start + t * period_ns
            yield Item(stamp, keypoints=keypoints_msg(clip.pixels[t], clip.scores[t], clip.ids, clip.image_size,
                                                      clip.layout, frame_id, stamp))

    return Source(f"{path} (clip)", False, len(clip.pixels), rate_hz, items)


def camera_matrix_for(size: tuple[int, int], intrinsics=None, hfov_deg: float | None = None) -> np.ndarray | None:
    """K from ``(fx, fy, cx, cy)``, or from a horizontal field of view with the principal point
    at the image centre; None when neither is given."""
    if intrinsics is not None:
        fx, fy, cx, cy = (float(v) for v in intrinsics)
    elif hfov_deg is not None:
        fx = fy = size[0] / 2.0 / math.tan(math.radians(hfov_deg) / 2.0)
        cx, cy = size[0] / 2.0, size[1] / 2.0
    else:
        return None
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _image_items(frames: Iterator[tuple[int, np.ndarray | Unread]], frame_id: str, intrinsics, hfov_deg,
                 lens=None) -> Iterator[Item]:
    """(stamp ns, image, or the Unread of a frame that could not be read) -> Items, with a CameraInfo
    (K, and ``lens``: the camera's distortion) before the first image and whenever the size changes."""
    from cfi_pose_ros.node.replay import camera_info_msg

    size = None
    for stamp, image in frames:
        header = _header(stamp, frame_id)
        if isinstance(image, Unread):
            yield Item(stamp, unread=image, header=header)
            continue
        image_size = (image.shape[1], image.shape[0])
        matrix = camera_matrix_for(image_size, intrinsics, hfov_deg)
        if matrix is not None and image_size != size:
            # checked against the images' size only here, where it is known: the pass counted one
            # bad_camera_info and went on root-relative without a word (e.g. the intrinsics of a
            # 1000 px camera given with a video of another size)
            try:
                validate_camera_matrix(matrix, image_size)
            except ValueError as exc:
                given = ("--intrinsics " + " ".join(f"{v:.10g}" for v in intrinsics) if intrinsics is not None
                         else f"--hfov {hfov_deg:.10g}")
                raise ValueError(f"{given}: {exc}") from None
            if lens is not None:
                # as the node judges a CameraInfo's lens over its image (see check_lens_over_image):
                # one no lens of these images could have was counted as one bad_camera_info at the
                # end of a pass that lifted everyone root-relative
                try:
                    check_lens_over_image(lens, matrix, image_size)
                except ValueError as exc:
                    given = " ".join(f"{v:.10g}" for v in lens.coefficients)
                    raise ValueError(f"--distortion {given}: {exc}") from None
            info = camera_info_msg(matrix, image_size, frame_id, lens)
            info.header = _header(stamp, frame_id)
            yield Item(stamp, camera_info=info)
            size = image_size
        yield Item(stamp, image=image, header=header)


def video_source(path: Path, intrinsics=None, hfov_deg=None, frame_id="camera_optical_frame", lens=None,
                 max_image_pixels: int | None = None) -> Source:
    """A video's frames; ValueError when OpenCV cannot open it, reads no frame from it, or its frames
    are larger than ``max_image_pixels`` (the detector's; None: its default)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot open the video {path}")
    # the size the container states, before any frame is decoded: frames of 16000 x 16000 in a 4 MB
    # MJPEG took 3.2 GB, where the node and a bag's or a folder's images are held to max_image_pixels
    max_pixels = _image_pixel_bound(max_image_pixels)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > max_pixels:
        capture.release()
        raise ValueError(f"{path}: frames of {width}x{height} = {width * height} pixels, more than the detector's "
                         f"max_image_pixels = {max_pixels} (--detect-params-file); not decoded")
    stated_fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    # as a bag with no message to lift: a video of no frame was lifted into "0 frames", exit 1, with
    # a summary.json
    has_frames = capture.grab()
    capture.release()
    if not has_frames:
        raise ValueError(f"{path}: OpenCV opens it but reads no frame from it (a video of 0 frames)")
    # the frames are stamped at the rate the container states; one that is no camera's (0 or NaN:
    # unknown; 1e-9: frame 3 stamped past ROS time's int32 seconds, frame 19 past MCAP's uint64 ns, a
    # struct.error traceback; 2e9: every frame stamped 0) is taken as unknown
    fps = stated_fps if MIN_VIDEO_FPS <= stated_fps <= MAX_VIDEO_FPS else 30.0
    if fps != stated_fps and stated_fps != 0:
        print(f"{path} states {stated_fps:g} frames per second, no camera's: stamping its frames at {fps:g}",
              file=sys.stderr)

    period_ns = int(round(1e9 / fps))

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        """Each frame at its own time in the video, one period after the start (a stamp of 0 is
        "now" to the lifter). A phone's variable-rate video was stamped at its average rate:
        10 Hz frames around a 2 s pause came out 3 Hz apart, the pause gone. A time that is
        unknown, goes back or leaves ROS time's range is the last one plus a period."""
        capture = cv2.VideoCapture(str(path))
        stamp = 0
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                own = period_ns + capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6 if fps == stated_fps else math.nan
                stamp = int(round(own)) if stamp < own < MAX_STAMP_NS else stamp + period_ns
                yield stamp, image
        finally:
            capture.release()

    return Source(f"{path} (video)", True, count, fps,
                  lambda for_video: _image_items(frames(), frame_id, intrinsics, hfov_deg, lens))


def photos_source(paths: list[Path], intrinsics=None, hfov_deg=None, frame_id="camera_optical_frame",
                  fps: float = 1.0, lens=None, max_image_pixels: int | None = None) -> Source:
    """Photos, each decoded by :func:`cfi_pose_ros.image.decode_photo`: one that declares more than
    ``max_image_pixels`` pixels (the detector's; None: its default), is damaged or is no image is an
    Unread."""
    from cfi_pose_ros.image import decode_photo

    max_pixels = _image_pixel_bound(max_image_pixels)

    files = []
    for path in paths:
        # regular files only: a FIFO named like a photo hung the pass, a folder named so is none
        files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                        ) if path.is_dir() else [path]
    if not files:
        from cfi_pose_ros.bag import folder_without_metadata

        raise ValueError(next(filter(None, map(folder_without_metadata, paths)), None)
                         or f"no images in {[str(p) for p in paths]}")

    period_ns = int(round(1e9 / fps))

    def frames() -> Iterator[tuple[int, np.ndarray | Unread]]:
        """Each photo stamped one period after the last one read."""
        read = 0
        for file in files:
            try:
                image = decode_photo(file.read_bytes(), max_pixels)
            except (ValueError, OSError) as exc:         # ImageTooLarge is a ValueError too
                yield read * period_ns, Unread("unreadable_image", f"{file}: {exc}", True)
                continue
            read += 1
            yield read * period_ns, image

    return Source(f"{len(files)} photos", True, len(files), fps,
                  lambda for_video: _image_items(frames(), frame_id, intrinsics, hfov_deg, lens),
                  scene_per_frame=True)


def _input_problem(path: Path) -> str | None:
    """Why ``path`` can be no clip, video, photo or folder of photos, or None. A path that is not
    there was taken for a photo OpenCV could not read: the models loaded and an empty result came
    out (exit 1). A FIFO waits for a writer, on open as on read: the pass hung there."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:                       # missing, a dangling link, a symlink loop
        from cfi_pose_ros.files import unreadable

        return unreadable(path, exc)                # in the words of a bag that is not there
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        from cfi_pose_ros.files import special_file_kind

        return f"{path}: {special_file_kind(mode)}, not a file or folder"
    return None


def _not_a_photo(path: Path) -> str | None:
    """What ``path``, one of several inputs, is where it is no photo or folder of photos, or None."""
    from cfi_pose_ros.bag import is_recorded_folder

    suffix = path.suffix.lower()
    if suffix in (".mcap", ".db3") or (path.is_dir() and is_recorded_folder(path)):
        return "a bag is lifted alone"
    if suffix == ".npz":
        return "a clip is lifted alone"
    if path.is_file() and suffix not in IMAGE_SUFFIXES:
        return f"no photo's name ({' '.join(sorted(IMAGE_SUFFIXES))}), and a video is lifted alone"
    return None


def _flags_given(args, names: tuple[str, ...]) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]


def open_source(inputs: list[Path], args, depth_topic: str | None = None,
                max_image_pixels: int | None = None) -> Source:
    # a flag the input has no use for is refused, not dropped: --intrinsics with a bag of images
    # and no CameraInfo gave root-relative poses, as if the camera had not been given
    first = inputs[0]
    # RUN.MCAP is a bag too (cameras and Windows tools name files in capitals): it was opened as a video
    suffix = first.suffix.lower() if len(inputs) == 1 else None
    from cfi_pose_ros.bag import is_recorded_folder

    # a folder of ros2 bag record is a bag (it was read as a folder of photos: "no images in [...]")
    # a .db3 (rosbag2's sqlite3 storage) is a bag the reader refuses in words (it was opened as a video:
    # "OpenCV cannot open the video x.db3")
    bag = suffix in (".mcap", ".db3") or (len(inputs) == 1 and is_recorded_folder(first))
    clip = suffix == ".npz"
    problem = None if bag else next(filter(None, map(_input_problem, inputs)), None)
    if problem:
        raise ValueError(problem)
    if len(inputs) > 1:
        # several inputs are photos: each file named was read as one, so two bags (or a photo and a
        # clip) were "2 photos" needing a 2D detector, and with one each bag an unreadable photo
        for path in inputs:
            kind = _not_a_photo(path)
            if kind:
                raise ValueError(f"{path}: {kind} (one bag, clip or video a run); several inputs are photos "
                                 f"or folders of them")
    camera_flags = _flags_given(args, ("intrinsics", "hfov", "distortion"))
    if (bag or clip) and camera_flags:
        raise ValueError(f"{' and '.join(camera_flags)}: for videos and photos; a {'bag' if bag else 'clip'}'s "
                         f"camera is {'its CameraInfo topic' if bag else 'the one it holds'}")
    topic_flags = _flags_given(args, ("keypoints_topic", "image_topic", "camera_info_topic", "depth_topic"))
    if not bag and topic_flags:
        raise ValueError(f"{' and '.join(topic_flags)}: for an .mcap bag, and {first} is none")
    if bag:
        return bag_source(first, args.keypoints_topic, args.image_topic, args.camera_info_topic, depth_topic,
                          max_image_pixels)
    if clip:
        return clip_source(first)
    if len(inputs) == 1 and first.is_file() and first.suffix.lower() not in IMAGE_SUFFIXES:
        return video_source(first, args.intrinsics, args.hfov, lens=lens_from_args(args),
                            max_image_pixels=max_image_pixels)
    return photos_source(inputs, args.intrinsics, args.hfov, lens=lens_from_args(args),
                         max_image_pixels=max_image_pixels)


def lens_from_args(args):
    """The camera's lens distortion from ``--distortion`` / ``--distortion-model`` (None: none)."""
    from cfi_pose_ros.camera import lens_distortion

    return lens_distortion(args.distortion_model, args.distortion) if args.distortion else None


# ------------------------------------------------------------------------------------ parameters

def parameter_values(specs, params_file=None, node_name: str = "", overrides: dict | None = None,
                     other_nodes=(), flag: str = "") -> dict:
    """name -> value: each spec's default, then the parameters file, then ``overrides``.

    A name of the file that is no parameter of this node but one of ``other_nodes`` (spec lists) is
    left out with a note on stderr, as the node leaves it out with a WARN: a ``/**`` section may be
    meant for both nodes (one file for ``--params-file`` and ``--detect-params-file`` was refused,
    "unknown parameter(s) ['image_topic'] for cfi_pose_lifter", where both nodes started on it).
    Any other unknown name is refused. A file that cannot be read as one is refused named by
    ``flag`` (``--params-file``), the option that gave it."""
    names = {spec.name for spec in specs}
    others = {spec.name for other in other_nodes for spec in other} - names
    values = {spec.name: spec.default for spec in specs}
    try:
        from_file = read_params_file(params_file, node_name)
    except ValueError as exc:
        # the file's own path alone did not say which of the two options named it
        raise ValueError(f"{flag} {exc}" if flag else str(exc)) from None
    skipped = sorted(set(from_file) & others)
    if skipped:
        print(f"offline: {node_name} has no parameter {', '.join(skipped)} (another node's): ignored",
              file=sys.stderr)
    values.update({k: v for k, v in from_file.items() if k not in others})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {node_name}")
    from cfi_pose_ros.node.parameters import parameter_problem

    for spec in specs:                   # the node's own start-up check: type, range, choices
        problem = parameter_problem(spec, values[spec.name])
        if problem:
            raise ValueError(f"parameter {spec.name}={values[spec.name]!r} for {node_name}: {problem}")
    return values


# ------------------------------------------------------------------------------------ lifting

@dataclass
class FrameRecord:
    """What the video needs of one lifted frame."""
    index: int                 # the frame's position in the source (stamps may repeat or be zero)
    stamp_ns: int
    people_2d: list            # (keypoints (K, 2), scores (K,), layout name, id)
    image_size: tuple[int, int]
    markers: list              # MarkerSpec, in the output frame


@dataclass
class OfflineResult:
    records: list[FrameRecord] = field(default_factory=list)
    frames: int = 0
    people: int = 0
    lift_s: float = 0.0            # the lift node's per-frame work: lift_keypoints + building the messages
    detect_s: float = 0.0
    pass_s: float = 0.0            # the whole first pass: reading, detecting, lifting, writing the bag
    dropped: Counter = field(default_factory=Counter)
    messages_written: int = 0
    first_frame_ns: int | None = None     # the first and last lifted frame's log time
    last_frame_ns: int | None = None

    @property
    def frame_rate(self) -> float:
        """Frames per second of the lifted frames' log times (30 where they span no time)."""
        span_ns = (self.last_frame_ns or 0) - (self.first_frame_ns or 0)
        return (self.frames - 1) / (span_ns * 1e-9) if self.frames > 1 and span_ns > 0 else 30.0


def _say(text: str) -> None:
    """A line on stderr that leaves a running progress bar whole (a plain print split it)."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def _count_unread(unread: Unread, dropped: Counter, say: Callable[[str], None]) -> None:
    """Counts ``unread`` in ``dropped``, telling the first of each reason: one line each for a
    million bad messages buried what else the run said; the summary gives how many."""
    if not dropped[unread.reason]:
        say(f"skipping {unread.detail}; counted as dropped {unread.reason} (the closing summary says how many)")
    dropped[unread.reason] += 1


def _tell_once(told: set, key: str, text: str, say: Callable[[str], None]) -> None:
    """Says ``text`` the first time ``key`` (a warning's key, as the node throttles its log by) comes:
    the words the node logs for an input it does not use. Offline they were dropped: a depth image of
    another camera's frame, or another size, was only "bad_depth_image x3" in the closing summary."""
    if key not in told:
        told.add(key)
        say(f"{text} (told once; the closing summary says how many)")


def lift_source(source: Source, out_bag: Path, lift_values: dict, detect_values: dict | None = None,
                target_frame: str = "", target_from_camera=None, progress: bool = True,
                log=None, keep_records: bool = True, before_writing: Callable[[], None] | None = None) -> OfflineResult:
    """Pass 1: lift every frame of ``source`` and write ``out_bag`` (``keep_records``: and keep
    what the video needs). ``before_writing`` is called once the models are loaded, just before
    ``out_bag`` is opened."""
    from tqdm import tqdm

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.depth import DepthHistory
    from cfi_pose_ros.markers import DrawnMarkers, lifetime_expires
    from cfi_pose_ros.node.conversions import markers_to_msg
    from cfi_pose_ros.node.lifting import (CameraInfoByFrame, CameraModel, build_pipeline, camera_or_size_from_info,
                                           dropped_frame_markers, lift_keypoints, paired_depth,
                                           undecoded_frame_header)

    value = lift_values.__getitem__
    pipeline = build_pipeline(value, log=log)
    detector = tracker = None
    publish_ids = True
    if source.detect:
        from cfi_pose_ros.detectors import create_detector
        from cfi_pose_ros.detectors.frame import detect_and_track
        from cfi_pose_ros.node.detect_node import keypoints_to_msg
        from cfi_pose_ros.node.detect_parameters import detector_config, tracker_config
        from cfi_pose_ros.tracking import MultiPersonTracker, TrackerConfig

        detect_values = dict(detect_values or {})
        if source.scene_per_frame:      # unrelated photos: boxes cannot follow keypoints, ids mean nothing
            detect_values.update(person_detector_every=1, tracking=False)
        detector = create_detector(detector_config(detect_values))
        # run whatever `tracking` says, as the detect node runs it: it tells a bag loop or a stamp jump,
        # where the detector's followed boxes start over (without it a loop's first image was cropped
        # where the last pass's people had stood); with tracking off only its ids are left out
        tracker = MultiPersonTracker(TrackerConfig(**tracker_config(detect_values)))
        publish_ids = detect_values.get("tracking", True)
    topics = {name: root_namespace_topic(value(name))
              for name in ("input_topic", "camera_info_topic", "output_topic", "markers_topic")}
    result = OfflineResult()
    cameras = CameraInfoByFrame()      # as the node: each camera frame's last CameraInfo, and the newest
    depth_images = DepthHistory()      # paired with each frame by stamp, as the node pairs them
    drawn_markers = DrawnMarkers()     # as the node: people who left are deleted from the bag's markers
    last_markers = None                # (header, log time) of the last markers written
    say = log or _say
    told: set[str] = set()
    started = time.perf_counter()
    if before_writing is not None:
        before_writing()
    bar = tqdm(total=source.frames, unit="frame", desc="lifting", disable=not progress, file=sys.stderr)
    _STOP.writing()
    def clear_dropped_camera(input_header, log_time_ns: int) -> None:
        """As the node: a frame dropped whole takes its camera's never-expiring skeletons."""
        if input_header is None or last_markers is None or not value("publish_markers"):
            return
        clear = dropped_frame_markers(input_header, value("marker_lifetime"), drawn_markers, last_markers[0])
        if clear is not None:
            writer.write(topics["markers_topic"], clear, log_time_ns)

    with BagWriter(out_bag) as writer:
        for item in source.items(False):
            _STOP.at_frame_boundary()
            if item.camera_info is not None:
                writer.write(topics["camera_info_topic"], item.camera_info, item.log_time_ns)
                matrix, lens, size, refused = camera_or_size_from_info(item.camera_info, value("keypoints_image"))
                cameras.add(CameraModel(matrix, lens, size, item.camera_info.header.frame_id))
                if refused is not None:
                    result.dropped["bad_camera_info"] += 1
                    _tell_once(told, "camera_info", f"a CameraInfo at {item.log_time_ns} ns not used: {refused}; "
                               "its camera's poses are root-relative", say)
                continue
            if item.unread is not None:
                _count_unread(item.unread, result.dropped, say)
                if item.header is not None:
                    # an image the detector could not read is a frame dropped whole too: with a lifetime
                    # RViz never expires, the last frame's skeletons stayed on screen, frozen, for as long
                    # as the camera's images were unreadable
                    clear_dropped_camera(item.header, item.log_time_ns)
                elif item.unread.serialized is not None:
                    clear_dropped_camera(undecoded_frame_header(item.unread.serialized), item.log_time_ns)
                if item.unread.frame:
                    bar.update(1)
                continue
            if item.depth is not None:
                depth_images.add(*item.depth, received=item.log_time_ns * 1e-9)
                continue
            msg = item.keypoints
            if item.image is not None:
                t0 = time.perf_counter()
                people, ids, _ = detect_and_track(detector, tracker, item.image, _stamp_ns(item.header) * 1e-9,
                                                  item.header.frame_id)
                if not publish_ids:
                    ids = [""] * len(ids)
                msg = keypoints_to_msg(item.header, (item.image.shape[1], item.image.shape[0]), people.keypoints,
                                       people.scores, people.boxes, people.box_scores, ids)
                result.detect_s += time.perf_counter() - t0
            if msg is None:
                continue
            if result.first_frame_ns is None:
                result.first_frame_ns = item.log_time_ns
            result.last_frame_ns = item.log_time_ns
            writer.write(topics["input_topic"], msg, item.log_time_ns)
            t0 = time.perf_counter()
            camera = cameras.for_keypoints(msg.header.frame_id)
            depth = paired_depth(depth_images, msg.header, value("depth_max_age"), item.log_time_ns * 1e-9,
                                 camera.frame_id)
            lifted = lift_keypoints(pipeline, msg, camera.matrix, camera.size, depth.image, target_frame,
                                    target_from_camera, camera.lens, depth.frame_id, camera.frame_id, depth.stale)
            poses = lifted.poses_msg() if lifted.publishable else None
            markers = lifted.marker_specs(value("marker_lifetime")) if poses is not None and (
                keep_records or value("publish_markers")) else []
            markers_msg = (lifted.markers_msg(value("marker_lifetime"), markers, drawn_markers)
                           if poses is not None and value("publish_markers") else None)
            result.lift_s += time.perf_counter() - t0
            result.dropped.update(lifted.dropped)
            for key, text in lifted.warnings.items():
                _tell_once(told, key, f"the frame at {item.log_time_ns} ns: {text}", say)
            result.frames += 1
            bar.update(1)
            if poses is None:
                clear_dropped_camera(msg.header, item.log_time_ns)
                continue
            result.people += len(poses.humans)
            writer.write(topics["output_topic"], poses, item.log_time_ns)
            if markers_msg is not None:
                writer.write(topics["markers_topic"], markers_msg, item.log_time_ns)
                last_markers = (markers_msg.markers[0].header, item.log_time_ns) if markers_msg.markers else last_markers
            if keep_records:
                result.records.append(FrameRecord(
                    result.frames - 1, _stamp_ns(msg.header), [(p.keypoints, p.scores, p.layout, p.track_id)
                                            for p in lifted.source.people],
                    (int(msg.image_width), int(msg.image_height)), markers))
        if last_markers is not None and drawn_markers.namespaces and not lifetime_expires(value("marker_lifetime")):
            # as the node clears at its stop: skeletons RViz never expires stayed on its screen after
            # the bag's end, the last frame's people for good
            writer.write(topics["markers_topic"], markers_to_msg(last_markers[0], [], cleared=drawn_markers.namespaces),
                         last_markers[1])
        result.messages_written = writer.count
    bar.close()
    result.pass_s = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------------ video

def _panel(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` x ``height``, centred on a dark background (a video's
    frames must all have one size, and photos differ)."""
    import cv2

    scale = min(height / image.shape[0], width / image.shape[1])
    w, h = max(1, int(round(image.shape[1] * scale))), max(1, int(round(image.shape[0] * scale)))
    panel = np.full((height, width, 3), 32, np.uint8)
    x, y = (width - w) // 2, (height - h) // 2
    panel[y:y + h, x:x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return panel


def partial_path(path: Path) -> Path:
    """Where an output is written until it is whole: ``lifted.partial.mp4`` for ``lifted.mp4``
    (the suffix kept: OpenCV picks the container by it)."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _run_output_names() -> list[str]:
    """The files a run writes in --out, whole and while written."""
    return [*RUN_OUTPUTS, *(partial_path(Path(name)).name for name in RUN_OUTPUTS)]


class VideoOut:
    """MP4 through OpenCV (``mp4v``); where OpenCV cannot write one, an animated GIF through pillow
    at half the size, written as the frames come (:class:`cfi_pose_ros.render.GifStream`).

    Written as ``<stem>.partial.<suffix>`` and renamed at ``close``: a run interrupted or failing
    mid-video left a playable ``lifted.mp4`` of some of the frames under the final name."""

    def __init__(self, path_stem: Path, fps: float):
        self.path_stem, self.fps = path_stem, fps
        self._writer = None
        self._gif = None                    # a render.GifStream
        self._frames = 0
        self.path: Path | None = None       # the final name

    def add(self, frame_bgr: np.ndarray) -> None:
        import cv2

        if self.path is None:
            path = self.path_stem.with_suffix(".mp4")
            writer = cv2.VideoWriter(str(partial_path(path)), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                     (frame_bgr.shape[1], frame_bgr.shape[0]))
            if writer.isOpened():
                self._writer, self.path = writer, path
            else:
                from cfi_pose_ros.render import GifStream

                self.path = self.path_stem.with_suffix(".gif")
                self._gif = GifStream(partial_path(self.path), self.fps)
        self._frames += 1
        if self._writer is not None:
            self._writer.write(frame_bgr)
        else:
            half = cv2.resize(frame_bgr, (frame_bgr.shape[1] // 2, frame_bgr.shape[0] // 2))
            self._gif.write(cv2.cvtColor(half, cv2.COLOR_BGR2RGB))

    def close(self) -> Path | None:
        if self._writer is not None:
            self._writer.release()
            self._check_written(partial_path(self.path))
        elif self._gif is not None:
            self._gif.close()
        else:
            return None
        from cfi_pose_ros.files import sync_file

        sync_file(partial_path(self.path))       # on the disk before its name says it is whole
        os.replace(partial_path(self.path), self.path)
        return self.path

    def _check_written(self, path: Path) -> None:
        """``OSError`` unless the video OpenCV wrote at ``path`` holds every frame added. OpenCV's
        writer says nothing of a write that failed (a full disk: one WARN line per frame on stderr):
        a 500 kB cut of a video with no index was renamed ``lifted.mp4`` and named in summary.json,
        exit 0."""
        import cv2

        capture = cv2.VideoCapture(str(path))
        try:
            written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        finally:
            capture.release()
        if written != self._frames:
            raise OSError(f"{path}: OpenCV wrote {written} of the video's {self._frames} frames "
                          "(is the disk full?)")


def render_video(source: Source, records: list[FrameRecord], out_stem: Path, optical_frame: bool,
                 fps: float, progress: bool = True, camera_pose=None) -> Path | None:
    """Pass 2: each lifted frame's image (or a blank canvas of its size) with the 2D skeletons,
    beside the 3D skeletons (fixed axes over the whole video); ``camera_pose``: the camera's optical
    frame in the output frame, where that is not the camera's (see render.SceneRenderer)."""
    import cv2
    from tqdm import tqdm

    from cfi_pose_ros.render import SceneRenderer, draw_people_2d

    if not records:
        return None
    renderer = SceneRenderer([r.markers for r in records], (PANEL_3D_WIDTH, PANEL_HEIGHT),
                             optical_frame=optical_frame, camera_pose=camera_pose)
    video = VideoOut(out_stem, min(max(fps, 1.0), 60.0))
    aspect = max(w / h for w, h in (r.image_size for r in records) if w > 0 and h > 0) if any(
        min(r.image_size) > 0 for r in records) else 1.0
    left_width = 2 * int(round(PANEL_HEIGHT * min(max(aspect, 0.5), 2.0) / 2))   # even: video codecs want it
    by_index = {r.index: r for r in records}
    latest_image = None
    done = 0
    index = -1
    bar = tqdm(total=len(records), unit="frame", desc="rendering", disable=not progress, file=sys.stderr)
    for item in source.items(True):
        _STOP.at_frame_boundary()
        if item.image is not None:
            latest_image = (_stamp_ns(item.header), item.image)
        if (item.image is not None) if source.detect else (item.keypoints is not None):
            index += 1                           # the same frames, in the same order, as lift_source counts
        else:
            continue
        record = by_index.pop(index, None)
        if record is None:
            continue
        if latest_image is not None and latest_image[0] <= record.stamp_ns:
            canvas = latest_image[1]
        else:
            w, h = record.image_size if min(record.image_size) > 0 else (PANEL_3D_WIDTH, PANEL_HEIGHT)
            canvas = np.full((h, w, 3), 48, np.uint8)
        left = _panel(draw_people_2d(canvas, record.people_2d, DRAW_MIN_SCORE), left_width, PANEL_HEIGHT)
        right = cv2.cvtColor(renderer.render(record.markers, f"3D  {done + 1}/{len(records)}"), cv2.COLOR_RGB2BGR)
        video.add(np.hstack([left, right]))
        done += 1
        bar.update(1)
    bar.close()
    return video.close()


def run_offline(source: Source, out: Path, lift_values: dict, detect_values: dict | None = None,
                target_frame: str = "", target_from_camera=None, video: bool = True, progress: bool = True,
                log=None) -> dict:
    if not target_frame and lift_values.get("target_frame"):
        # the lift node's target_frame / target_from_camera parameters (a --params-file), as the node
        # reads them: offline there is no tf2 buffer, so the static transform is needed
        from cfi_pose_ros.frames import static_target_transform

        target_frame = lift_values["target_frame"]
        target_from_camera = static_target_transform(lift_values["target_from_camera"])
        if target_from_camera is None:
            raise ValueError(f"target_frame {target_frame!r} needs target_from_camera offline (no tf2 buffer)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # it was the bare "[Errno 17] File exists: 'out'", naming neither --out nor that it is a file
        what = "a file, not a folder" if out.exists() and not out.is_dir() else f"cannot make it ({exc.strerror})"
        raise ValueError(f"--out {out}: {what}") from None

    def remove_earlier_outputs() -> None:
        # the folder holds one run: an earlier run's summary (150 frames) and video stayed beside this
        # run's outputs when it was interrupted or failed, and read as its own. Removed once the models
        # are loaded, as this run's bag is opened: a run that failed before it wrote anything (a
        # --weights typo) removed them too, and left the folder empty.
        for name in _run_output_names():
            (out / name).unlink(missing_ok=True)

    result = lift_source(source, out / "lifted.mcap", lift_values, detect_values, target_frame,
                         target_from_camera, progress, log, keep_records=video, before_writing=remove_earlier_outputs)
    started = time.perf_counter()
    video_path = (render_video(source, result.records, out / "lifted", optical_frame=not target_frame,
                               fps=source.fps or result.frame_rate, progress=progress,
                               camera_pose=target_from_camera) if video else None)
    summary = {
        "input": source.description, "frames": result.frames, "people": result.people,
        "people_per_frame": result.people / result.frames if result.frames else 0.0,
        "lift_seconds": result.lift_s,
        "lift_poses_per_second": result.people / result.lift_s if result.lift_s > 0 else 0.0,
        "lift_frames_per_second": result.frames / result.lift_s if result.lift_s > 0 else 0.0,
        "detect_ms_per_frame": 1e3 * result.detect_s / result.frames if source.detect and result.frames else None,
        "pass_seconds": result.pass_s,
        "pass_frames_per_second": result.frames / result.pass_s if result.pass_s > 0 else 0.0,
        "render_seconds": time.perf_counter() - started if video else 0.0,
        "dropped": dict(result.dropped), "output_frame": target_frame or "the input's camera frame",
        "bag": str(out / "lifted.mcap"), "bag_messages": result.messages_written,
        "video": str(video_path) if video_path else None,
    }
    # last: a summary.json says the run was whole, so what it names is on the disk before it (the bag,
    # the video: see VideoOut.close), it is itself before its rename, and the folder's entries after
    # it. Unsynced, a power loss could leave a summary.json (or an empty one) beside an empty or cut
    # lifted.mcap: the rename, unlike the data, is soon on the disk (files.sync_file).
    from cfi_pose_ros.files import sync_directory, sync_file

    sync_file(out / "lifted.mcap")
    partial = partial_path(out / "summary.json")
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    sync_file(partial)
    os.replace(partial, out / "summary.json")
    sync_directory(out)
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['frames']} frames, {summary['people']} people "
             f"({summary['people_per_frame']:.2f} per frame) from {summary['input']}",
             f"lifting: {summary['lift_seconds']:.2f} s, {summary['lift_poses_per_second']:.0f} poses/s, "
             f"{summary['lift_frames_per_second']:.0f} frames/s"]
    if summary["detect_ms_per_frame"] is not None:
        lines.append(f"2D detection: {summary['detect_ms_per_frame']:.1f} ms per frame")
    lines.append(f"whole pass (read, detect, lift, write): {summary['pass_seconds']:.2f} s, "
                 f"{summary['pass_frames_per_second']:.0f} frames/s")
    if summary["dropped"]:
        lines.append("dropped: " + ", ".join(f"{k} x{v}" for k, v in sorted(summary["dropped"].items())))
    lines.append(f"wrote {summary['bag']} ({summary['bag_messages']} messages)"
                 + (f", {summary['video']} (rendered in {summary['render_seconds']:.1f} s)" if summary["video"] else ""))
    return "\n".join(lines)


class _StopBetweenFrames:
    """SIGINT and SIGTERM during a pass: a ``KeyboardInterrupt(signum)`` at the next frame the pass
    takes, not wherever the signal lands. Raised inside rclpy's deserializer calling back into
    Python, it came out as pybind11's ``TypeError`` (a traceback and exit 1, in a CI run). A second
    signal raises at once. Once the pass is ending, further signals are ignored: one raised inside
    the bag's closing left it without its summary, unreadable, and one after ``main`` put back the
    default handlers ended the process in a KeyboardInterrupt (exit -2) after "offline: interrupted".

    Until the output bag is opened (:meth:`writing`) nothing needs closing, and a signal ends the
    process at once, as :func:`cfi_pose_ros.interrupts.exit_quietly_on_stop_signals` does before
    the imports: it was only remembered for a first frame still far off, so a SIGTERM (``timeout``)
    did not end a pass loading its models, or one hung opening its inputs (a --params-file FIFO)."""

    def __init__(self):
        self.reset()

    def reset(self, made: list[Path] | None = None) -> None:
        self.made = made or []          # the --out folders this run made (see main)
        self.pending: int | None = None
        self.ending = False
        self.loading = True

    def writing(self) -> None:
        """The output bag is about to be opened: from now on a signal waits for a frame boundary."""
        self.loading = False

    def request(self, signum, frame) -> None:
        if self.ending:
            return
        if self.loading:
            self.ending = True
            if __name__ == "__main__":       # the command: out at once, in one line (a cache lock: the kernel's)
                from cfi_pose_ros.interrupts import end_at_once

                remove_empty(self.made)      # main's finally does not run: the --out it made stayed, empty
                end_at_once("offline", signum)
            raise KeyboardInterrupt(signum)  # main() called from Python: the caller's to handle
        if self.pending is not None:
            self.ending = True
            raise KeyboardInterrupt(signum)
        self.pending = signum

    def at_frame_boundary(self) -> None:
        if self.pending is not None:
            self.ending = True
            raise KeyboardInterrupt(self.pending)


_STOP = _StopBetweenFrames()


def _input_errors() -> tuple:
    """What a bad input file, path, parameter or model raises (a bug's TypeError or
    AttributeError still shows its traceback)."""
    import yaml
    from mcap.exceptions import McapError

    return (ValueError, OSError, RuntimeError, KeyError, yaml.YAMLError, McapError)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="an .mcap bag (or a folder of ros2 bag record), an .npz clip, a video, "
                             "or photos / a folder of them")
    parser.add_argument("--out", type=Path, default=Path("outputs/offline"))
    parser.add_argument("--no-video", action="store_true", help="only the MCAP and the summary")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    lift = parser.add_argument_group("lifting (the lift node's parameters; defaults as config/lift.yaml)")
    lift.add_argument("--params-file", help="a lift node parameters file (its /** or cfi_pose_lifter section)")
    lift.add_argument("--weights", default=None)
    lift.add_argument("--backend", default=None)
    lift.add_argument("--threads", type=int, default=None)
    lift.add_argument("--target-frame", default="", help="express the output in this frame")
    lift.add_argument("--target-from-camera", nargs=7, type=float, metavar=("X", "Y", "Z", "QX", "QY", "QZ", "QW"),
                      help="the camera -> target_frame transform (needed with --target-frame)")
    camera = parser.add_argument_group("videos and photos")
    camera.add_argument("--intrinsics", nargs=4, type=float, metavar=("FX", "FY", "CX", "CY"))
    camera.add_argument("--hfov", type=float, default=None, help="horizontal field of view (degrees) instead")
    camera.add_argument("--distortion", nargs="+", type=float, metavar="D",
                        help="the lens's distortion, as CameraInfo.d (with --intrinsics or --hfov): k1 k2 p1 p2 [k3] "
                             "for plumb_bob, k1 k2 p1 p2 k3 k4 k5 k6 for rational_polynomial, k1 k2 k3 k4 for "
                             "equidistant; undone before lifting")
    camera.add_argument("--distortion-model", default="plumb_bob", choices=tuple(DISTORTION_COEFFICIENTS),
                        help="the model --distortion is of (default plumb_bob)")
    camera.add_argument("--detect-params-file", help="a detector node parameters file (its /** or cfi_pose_detector section)")
    camera.add_argument("--person-detector-model")
    camera.add_argument("--keypoint-model")
    camera.add_argument("--keypoint-model-type", choices=("movenet", "rtmpose"))
    camera.add_argument("--yolo-pose-model")
    bags = parser.add_argument_group("bags")
    bags.add_argument("--keypoints-topic")
    bags.add_argument("--image-topic")
    bags.add_argument("--camera-info-topic")
    bags.add_argument("--depth-topic", help="an aligned depth image topic (default: the params file's depth_topic)")
    args = parser.parse_args(argv)

    if args.target_frame and args.target_from_camera is None:
        parser.error("--target-frame needs --target-from-camera (offline there is no tf2 buffer)")
    if args.target_from_camera is not None and not args.target_frame:
        parser.error("--target-from-camera needs --target-frame (the frame the transform leads to)")
    if args.target_frame:
        from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME, parameter_problem

        problem = parameter_problem(PARAMETERS_BY_NAME["target_frame"], args.target_frame)   # the node's check
        if problem:
            parser.error(f"--target-frame: {problem}")
        from cfi_pose_ros.frames import static_target_transform

        given = " ".join(f"{v:.10g}" for v in args.target_from_camera)
        try:
            transform = static_target_transform(args.target_from_camera)
        except ValueError as exc:
            parser.error(f"--target-from-camera {given}: {exc}")
        if transform is None:
            # all zeros is the parameter's "not given": the poses were stamped in --target-frame with
            # the camera frame's coordinates
            parser.error(f"--target-from-camera {given}: a zero quaternion is no rotation (none is "
                         "X Y Z 0 0 0 1)")
    if args.hfov is not None and not 0.0 < args.hfov < 180.0:
        parser.error(f"--hfov must be a field of view in degrees, 0 < hfov < 180, got {args.hfov}")
    if args.intrinsics is not None:
        try:
            validate_camera_matrix(camera_matrix_for((0, 0), args.intrinsics))
        except ValueError as exc:
            parser.error(f"--intrinsics FX FY CX CY {' '.join(f'{v:.10g}' for v in args.intrinsics)}: {exc}")
    if args.distortion is not None:
        if args.intrinsics is None and args.hfov is None:
            parser.error("--distortion needs --intrinsics or --hfov (the camera matrix it is undone with)")
        try:
            lens_from_args(args)
        except ValueError as exc:
            parser.error(f"--distortion {' '.join(f'{v:.10g}' for v in args.distortion)}: {exc}")
    # SIGTERM (systemd, docker stop, timeout) stops the pass as Ctrl-C does, so the bag is closed
    # with its summary: killed by the default handler, nothing lifted so far could be read back
    # ("not a complete MCAP file"), and a video being rendered was left without its index.
    made = folders_to_make(args.out)
    _STOP.reset(made)
    previous = {signum: signal.signal(signum, _STOP.request) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args)
    except KeyboardInterrupt as exc:
        print("offline: interrupted", file=sys.stderr)
        return 128 + (exc.args[0] if exc.args else signal.SIGINT)
    except _input_errors() as exc:
        text = str(exc).strip().splitlines()
        print(f"offline: error: {text[0] if text else type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        # --out is made before the models load: a run refused or stopped before it wrote anything
        # there (a --weights typo) left it behind, empty. Only the folders this run made, and only
        # while empty (a finished run's holds its bag and summary).
        remove_empty(made)
        for signum, handler in previous.items():
            # an interrupted run ignores further signals to its end (see _StopBetweenFrames)
            signal.signal(signum, signal.SIG_IGN if _STOP.ending and __name__ == "__main__" else handler)


def _output_over_input(inputs: list[Path], out: Path) -> str | None:
    """Why ``--out`` must not be used with ``inputs``, or None: one of the files written there is
    an input. Lifting out/lifted.mcap again into out truncated the bag before it was read (a
    303 kB bag became 321 bytes, and the run failed); a video there was overwritten while read."""
    for name in _run_output_names():
        output = out / name
        for path in inputs:
            if output.exists() and path.is_file() and os.path.samefile(path, output):
                return f"--out {out} would overwrite the input {path} with its {name}: choose another --out"
    return None


def _missing_detector_models(detect_values: dict) -> list[str]:
    """The model flags the detector named by ``detect_values`` needs and does not have."""
    needed = (("yolo_pose_model",) if detect_values["detector"] == "yolo_pose"
              else ("person_detector_model", "keypoint_model"))
    return ["--" + name.replace("_", "-") for name in needed if not detect_values[name]]


def _run(args) -> int:
    from cfi_pose_ros.node.detect_parameters import DETECT_NODE_PARAMETERS
    from cfi_pose_ros.frames import static_target_transform
    from cfi_pose_ros.node.parameters import LIFT_NODE_PARAMETERS

    target = static_target_transform(args.target_from_camera) if args.target_from_camera else None
    lift_values = parameter_values(LIFT_NODE_PARAMETERS, args.params_file, "cfi_pose_lifter",
                                   {"weights": args.weights, "backend": args.backend, "threads": args.threads},
                                   other_nodes=(DETECT_NODE_PARAMETERS,), flag="--params-file")
    detect_values = parameter_values(DETECT_NODE_PARAMETERS, args.detect_params_file, "cfi_pose_detector", {
        "person_detector_model": args.person_detector_model, "keypoint_model": args.keypoint_model,
        "keypoint_model_type": args.keypoint_model_type, "yolo_pose_model": args.yolo_pose_model,
        "detector": "yolo_pose" if args.yolo_pose_model else None}, other_nodes=(LIFT_NODE_PARAMETERS,),
        flag="--detect-params-file")
    depth_topic = args.depth_topic or (root_namespace_topic(lift_values["depth_topic"])
                                       if lift_values["depth_topic"] else None)
    problem = _output_over_input(args.inputs, args.out)
    if problem:
        raise ValueError(problem)
    for name in _run_output_names():
        # found only at the end of the pass, as a bare "[Errno 21] Is a directory", the bag written
        # and no summary: the whole pass lost
        if (args.out / name).is_dir():
            raise ValueError(f"--out {args.out}: {args.out / name} is a directory, where a run writes its "
                             f"{name}; move it or choose another --out")
    source = open_source(args.inputs, args, depth_topic, detect_values["max_image_pixels"])
    missing = _missing_detector_models(detect_values) if source.detect else []
    if missing:
        # said before the lifter loads, by the flags' names (it was "RTMDetConfig.model_path is empty")
        raise ValueError(f"{source.description}: images need a 2D detector, and {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not given (or name them in --detect-params-file)")
    print(f"input: {source.description}", file=sys.stderr)
    summary = run_offline(source, args.out, lift_values, detect_values, args.target_frame, target,
                          video=not args.no_video, progress=not args.quiet, log=_say)
    print(format_summary(summary))
    return 0 if summary["frames"] else 1


if __name__ == "__main__":
    sys.exit(main())
