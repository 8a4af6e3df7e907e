"""Replay a 2D keypoint clip into the lifter and collect what comes back.

Used by the demo, the end-to-end benchmark and the tests: one rclpy node that
publishes ``HumanKeypoints2DArray`` frames (and the clip's ``CameraInfo``) at a
fixed rate and records every ``HumanPose3DArray`` / ``MarkerArray`` it receives,
matched to its frame by the header stamp.
"""
from __future__ import annotations

import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from visualization_msgs.msg import MarkerArray

from cfi_pose_ros.camera import LensDistortion
from cfi_pose_ros.msg import HumanKeypoints2D, HumanKeypoints2DArray, HumanPose3DArray, Keypoint2D
from cfi_pose_ros.node.conversions import LAYOUT_IDS, stamp_ns
from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME
from cfi_pose_ros.pipeline import MAX_TRACK_ID_LENGTH
from cfi_pose_ros.skeleton import LAYOUTS

DEFAULT_CLIP = Path(__file__).resolve().parents[1] / "data" / "demo_clip_h36m_s9.npz"
# The bundled demo clip holds 0.2 MB of arrays, an hour of ten people at 30 fps 450 MB (float32). A zip
# member is never read past the size the archive states for it, so this bounds what loading costs
# (an archive of a few MB can state gigabytes of zeros).
MAX_CLIP_BYTES = 1 << 30
# Most people in a clip's frame: the most the lifter lifts in one (its max_people's bound). Each person
# of each frame becomes 17 message objects: a 52 kB clip of one frame of 500,000 people (int8 zeros,
# far under MAX_CLIP_BYTES) took the offline CLI 30 s and 2.4 GB, and all of them were then dropped.
MAX_CLIP_PEOPLE = PARAMETERS_BY_NAME["max_people"].max_value


@dataclass
class Clip:
    pixels: np.ndarray            # (T, P, 17, 2)
    scores: np.ndarray            # (T, P, 17)
    ids: list[str]
    camera_matrix: np.ndarray     # (3, 3)
    image_size: tuple[int, int]
    layout: str = "h36m_17"
    truth_camera_m: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CLIP) -> "Clip":
        """The clip in ``path``; ``ValueError`` (``KeyError`` for a missing array), saying why, when
        the file is not a clip in the bundled format, before anything is built from it."""
        try:
            archive = np.load(path)
        except EOFError as exc:                     # an empty file
            raise ValueError("empty file") from exc
        except zipfile.BadZipFile as exc:
            raise ValueError(f"damaged archive ({exc})") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive of arrays")
        with archive as data:
            stated = sum(member.file_size for member in data.zip.infolist())
            if stated > MAX_CLIP_BYTES:
                raise ValueError(f"its arrays take {stated} bytes, more than a clip's {MAX_CLIP_BYTES}")
            try:
                arrays = {name: data[name] for name in ("pixels", "scores", "ids", "camera_matrix", "image_size",
                                                         "layout", "truth_camera_m")}
            except MemoryError as exc:              # a .npy header stating more than its member holds
                raise ValueError("an array states more data than the file holds") from exc
            except (zipfile.BadZipFile, zlib.error) as exc:
                raise ValueError(f"damaged archive ({exc})") from exc
        problem = _clip_problem(arrays)
        if problem:
            raise ValueError(problem)
        return cls(pixels=arrays["pixels"], scores=arrays["scores"], ids=[str(i) for i in arrays["ids"]],
                   camera_matrix=arrays["camera_matrix"], image_size=tuple(int(v) for v in arrays["image_size"]),
                   layout=str(arrays["layout"]), truth_camera_m=arrays["truth_camera_m"])


def _clip_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What makes these arrays no clip (shapes that do not fit each other, numbers that are no
    numbers, a size no message carries), or ``None``."""
    layout = str(arrays["layout"]) if arrays["layout"].ndim == 0 else None
    if layout not in LAYOUT_IDS:
        return f"layout {arrays['layout']!r:.60} is not one of {sorted(LAYOUT_IDS)}"
    joints, pixels = LAYOUTS[layout].num_joints, arrays["pixels"]
    if pixels.ndim != 4 or pixels.shape[2:] != (joints, 2):
        return f"pixels has shape {pixels.shape}, expected (frames, people, {joints}, 2) for {layout}"
    frames, people = pixels.shape[:2]
    if frames == 0:
        # as a bag with no message to lift: offline lifted it into "0 frames", exit 1, and a summary.json
        return f"pixels has shape {pixels.shape}: no frame"
    if people > MAX_CLIP_PEOPLE:
        return f"pixels has {people} people a frame, more than the lifter lifts in one ({MAX_CLIP_PEOPLE})"
    for name, shape, kinds in (("pixels", pixels.shape, "fiu"), ("scores", (frames, people, joints), "fiu"),
                               ("truth_camera_m", (frames, people, joints, 3), "fiu"), ("ids", (people,), "iuU"),
                               ("camera_matrix", (3, 3), "fiu"), ("image_size", (2,), "iu")):
        if arrays[name].shape != shape:
            return f"{name} has shape {arrays[name].shape}, expected {shape} (pixels: {pixels.shape})"
        if arrays[name].dtype.kind not in kinds:
            return f"{name} holds {arrays[name].dtype}"
    if arrays["ids"].dtype.kind == "U" and arrays["ids"].dtype.itemsize // 4 > MAX_TRACK_ID_LENGTH:
        # copied into every frame's message: ids of megabytes each, as the lifter would drop them
        return f"ids hold strings of up to {arrays['ids'].dtype.itemsize // 4} characters, more than {MAX_TRACK_ID_LENGTH}"
    if not all(0 <= size < 2**32 for size in arrays["image_size"].tolist()):
        return f"image_size {arrays['image_size'].tolist()} is no image size in pixels"
    return None


def keypoints_msg(pixels: np.ndarray, scores: np.ndarray, ids: list[str], image_size: tuple[int, int],
                  layout: str, frame_id: str, stamp_ns: int) -> HumanKeypoints2DArray:
    msg = HumanKeypoints2DArray(image_width=int(image_size[0]), image_height=int(image_size[1]))
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    for person_pixels, person_scores, track_id in zip(pixels, scores, ids):
        person = HumanKeypoints2D(id=track_id, score=float(np.mean(person_scores)), layout=LAYOUT_IDS[layout])
        person.keypoints = [Keypoint2D(x=float(x), y=float(y), score=float(s))
                            for (x, y), s in zip(person_pixels, person_scores)]
        msg.people.append(person)
    return msg


def camera_info_msg(camera_matrix: np.ndarray, image_size: tuple[int, int], frame_id: str,
                    lens: LensDistortion | None = None) -> CameraInfo:
    """The CameraInfo of a camera with K ``camera_matrix`` and (its raw image's) ``lens``
    distortion, none by default; P is K (a monocular camera rectified at the same focal length)."""
    info = CameraInfo(width=int(image_size[0]), height=int(image_size[1]),
                      distortion_model=lens.model if lens else "plumb_bob")
    info.header.frame_id = frame_id
    info.k = [float(v) for v in np.asarray(camera_matrix).reshape(9)]
    info.d = list(lens.coefficients) if lens else [0.0] * 5
    p = np.zeros((3, 4))
    p[:, :3] = camera_matrix
    info.p = [float(v) for v in p.reshape(12)]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return info


@dataclass
class Received:
    people: dict[int, int] = field(default_factory=dict)                 # stamp ns -> people in the answer
    poses: dict[int, HumanPose3DArray] = field(default_factory=dict)     # stamp ns -> message (keep_messages)
    markers: dict[int, MarkerArray] = field(default_factory=dict)        # (keep_messages)
    receive_time: dict[int, float] = field(default_factory=dict)         # stamp ns -> perf_counter
    send_time: dict[int, float] = field(default_factory=dict)
    clip_frame: dict[int, int] = field(default_factory=dict)             # stamp ns -> clip frame index
    # What went out, and when the markers came back (keep_messages): a bag of the run (write_bag).
    inputs: dict[int, HumanKeypoints2DArray] = field(default_factory=dict)
    camera_infos: list[tuple[float, CameraInfo]] = field(default_factory=list)    # (perf_counter, message)
    markers_time: dict[int, float] = field(default_factory=dict)
    sender_stalls: int = 0     # frames this client published more than one period late (see replay)

    def latencies_ms(self) -> np.ndarray:
        return np.array([(self.receive_time[s] - self.send_time[s]) * 1000.0
                         for s in self.receive_time if s in self.send_time])


class ReplayClient(Node):
    """Publishes frames, subscribes to the lifter's outputs."""

    def __init__(self, input_topic="/human_keypoints_2d", camera_info_topic="/camera_info",
                 output_topic="/human_pose_3d", markers_topic="/human_pose_3d/markers",
                 frame_id="camera_optical_frame", reliable_input=False, name="cfi_replay_client",
                 keep_messages=True):
        super().__init__(name)
        self.frame_id = frame_id
        self.topics = {"input": input_topic, "camera_info": camera_info_topic, "output": output_topic,
                       "markers": markers_topic}
        # A benchmark keeps only stamps and times: thousands of stored messages are millions of
        # Python objects, and the garbage collector's passes over them stall this process for
        # tens of milliseconds (seen as bursts of late frames that the depth-1 input then drops).
        self.keep_messages = keep_messages
        in_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if reliable_input
                            else ReliabilityPolicy.BEST_EFFORT)
        self.keypoints_pub = self.create_publisher(HumanKeypoints2DArray, input_topic, in_qos)
        self.camera_info_pub = self.create_publisher(CameraInfo, camera_info_topic, in_qos)
        out_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.received = Received()
        self.create_subscription(HumanPose3DArray, output_topic, self._on_poses, out_qos)
        self.create_subscription(MarkerArray, markers_topic, self._on_markers, out_qos)

    def _on_poses(self, msg: HumanPose3DArray) -> None:
        stamp = stamp_ns(msg.header)
        self.received.receive_time.setdefault(stamp, time.perf_counter())
        self.received.people[stamp] = len(msg.humans)
        if self.keep_messages:
            self.received.poses[stamp] = msg

    def _on_markers(self, msg: MarkerArray) -> None:
        if msg.markers and self.keep_messages:
            stamp = stamp_ns(msg.markers[0].header)
            self.received.markers[stamp] = msg
            self.received.markers_time[stamp] = time.perf_counter()

    def publish(self, msg: HumanKeypoints2DArray) -> int:
        stamp = stamp_ns(msg.header)
        self.received.send_time[stamp] = time.perf_counter()
        self.keypoints_pub.publish(msg)
        if self.keep_messages:
            self.received.inputs[stamp] = msg
        return stamp

    def wait_for_lifter(self, executor, clip: Clip, timeout: float = 60.0, alive=lambda: True) -> bool:
        """Publish a probe frame until the lifter answers (discovery and start-up done).

        ``alive`` says whether the lifter is still running, to stop waiting for a dead process."""
        deadline = time.monotonic() + timeout
        probe_stamp = 1
        while time.monotonic() < deadline and alive():
            self.camera_info_pub.publish(camera_info_msg(clip.camera_matrix, clip.image_size, self.frame_id))
            self.publish(keypoints_msg(clip.pixels[0], clip.scores[0], clip.ids, clip.image_size,
                                       clip.layout, self.frame_id, probe_stamp))
            end = time.monotonic() + 0.25
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            if probe_stamp in self.received.people:
                self.received = Received()
                return True
            probe_stamp += 1
        return False

    def replay(self, executor, clip: Clip, rate_hz: float = 30.0, frames: int | None = None,
               people: int | None = None, drain_s: float = 1.0, stamp_offset_ns: int = 10**18,
               stop=lambda: False) -> int:
        """Publish ``frames`` frames of the clip (looping) at ``rate_hz`` with distinct stamps, then
        take the answers for ``drain_s``; ``stop()`` turning true (a stop signal) ends it at once.
        Returns the stamp (ns) the frame after the last one sent would have: a further replay given
        it as ``stamp_offset_ns`` goes on in time as one stream would."""
        total = len(clip.pixels) if frames is None else frames
        people = people or clip.pixels.shape[1]
        period = 1.0 / rate_hz
        start = time.perf_counter()
        for i in range(total):
            if stop():
                return stamp_offset_ns + i * int(period * 1e9)
            if time.perf_counter() - (start + i * period) > period:
                # This process fell a period behind (scheduler, garbage collector): a camera
                # would not then fire a burst of frames, so neither does the replay. Counted,
                # so a benchmark can tell a late sender from a slow node.
                self.received.sender_stalls += 1
                start = time.perf_counter() - i * period
            t = i % len(clip.pixels)
            index = np.arange(people) % clip.pixels.shape[1]
            offsets = np.zeros((people, 1, 2))
            offsets[:, 0, 0] = (np.arange(people) // clip.pixels.shape[1]) * 40.0  # copies side by side
            msg = keypoints_msg(clip.pixels[t][index] + offsets, clip.scores[t][index],
                                [f"{clip.ids[j]}{k // clip.pixels.shape[1] or ''}" for k, j in enumerate(index)],
                                clip.image_size, clip.layout, self.frame_id, stamp_offset_ns + i * int(period * 1e9))
            if i % 30 == 0:
                info = camera_info_msg(clip.camera_matrix, clip.image_size, self.frame_id)
                self.camera_info_pub.publish(info)
                if self.keep_messages:
                    self.received.camera_infos.append((time.perf_counter(), info))
            self.received.clip_frame[self.publish(msg)] = t
            deadline = start + (i + 1) * period
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or stop():
                    break
                executor.spin_once(timeout_sec=min(remaining, 0.005))
        end = time.perf_counter() + drain_s
        while time.perf_counter() < end and not stop():
            executor.spin_once(timeout_sec=0.01)
        return stamp_offset_ns + total * int(period * 1e9)

    def write_bag(self, path) -> int:
        """An MCAP bag of the last replay (keep_messages): the 2D input and CameraInfo as sent,
        the poses and markers as received, each on its topic at its send / receive time.
        Written after the run, so recording costs the timed replay nothing. Returns the count."""
        from cfi_pose_ros.bag import BagWriter

        epoch_minus_perf = time.time() - time.perf_counter()
        r = self.received
        entries = [(t, self.topics["camera_info"], m) for t, m in r.camera_infos]
        entries += [(r.send_time[s], self.topics["input"], m) for s, m in r.inputs.items()]
        entries += [(r.receive_time[s], self.topics["output"], m) for s, m in r.poses.items()]
        entries += [(r.markers_time[s], self.topics["markers"], m) for s, m in r.markers.items()]
        entries.sort(key=lambda e: e[0])
        with BagWriter(path) as writer:
            for t, topic, msg in entries:
                writer.write(topic, msg, int((t + epoch_minus_perf) * 1e9))
            return writer.count
