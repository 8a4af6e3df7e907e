"""The 2D detector node: camera images in, HumanKeypoints2DArray out (the lifter's input).

A ``LifecycleNode`` named ``cfi_pose_detector`` that only wires topics,
parameters and lifecycle to the ROS-free detectors (:mod:`cfi_pose_ros.detectors`),
image conversion (:mod:`cfi_pose_ros.image`, or cv_bridge when it is installed)
and tracker (:mod:`cfi_pose_ros.tracking`):

* configure: read parameters, load and validate the ONNX models. A missing
  model file, or one whose inputs/outputs are not what its family needs, fails
  the transition with the :class:`~cfi_pose_ros.detectors.DetectorModelError` text.
* activate: subscribe to ``sensor_msgs/Image`` (or ``CompressedImage``) with
  depth-1 QoS (best effort, as sensor data, unless ``input_reliability`` is reliable).
  The subscription callback only hands the newest image to a worker thread; an
  image that arrives while another one is still waiting replaces it (counted as
  ``dropped.superseded``), so the detector always works on the newest frame and
  never on a queue of stale ones.
* each frame: decode -> person detector (top_down: every ``person_detector_every``-th
  image; in between each person's box follows their previous keypoints) -> keypoint model -> tracker ->
  publish ``HumanKeypoints2DArray`` with the image's header (stamp and
  frame_id), its width/height, COCO-17 keypoints, tracking ids, scores, boxes.
  A frame that cannot be decoded (unsupported encoding, zero size, step/size
  mismatch, corrupt JPEG, a JPEG or PNG that would take the decoder too long: see
  ``image.MAX_JPEG_SCANS``, ``MAX_PNG_TEXT_CHUNKS``) is dropped with a throttled error and
  counted; the node goes on.

``/diagnostics``: detector, providers, input/output rates, p50/p99 of every
stage (decode, detector, keypoint_model (top_down only), tracking, publish, total = image
received -> keypoints published, over the frames of the last 5 s since the last activate, at most
1000; ``detector_frames`` of them
ran the person detector; every stage's keys in every status, empty where no frame of the window
timed it), people, and
dropped frames by reason (``unsupported_encoding``, ``bad_image``,
``image_too_large`` (a compressed image whose header declares more than
``max_image_pixels``; never decoded), ``decode_error``, ``detector_error``, ``negative_stamp``,
``bad_stamp_nanosec`` (a stamp's nanosec of 1e9 or more), ``frame_id_too_long``, ``bad_frame_id``
(a frame_id with a space or control character, ``a//b``, a trailing '/'), ``superseded``,
``stopped`` (still waiting when the node was deactivated, cleaned up or shut down)).
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from pathlib import Path

if __name__ == "__main__":
    # `python -m cfi_pose_ros.node.detect_node` starts as the installed script does (scripts/detect_node):
    # before the imports below (rclpy, numpy: about 0.2 s), or a SIGTERM there was the default death
    # (exit -15: no goodbye) and a native crash said nothing. (So the imports below follow code.)
    from cfi_pose_ros.node.startup import start_ros_process
    start_ros_process()

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest

from cfi_pose_ros.detectors.decode import unit_scores
from cfi_pose_ros.detectors.frame import detect_and_track
from cfi_pose_ros.image import (DEFAULT_MAX_IMAGE_PIXELS, READ_BY_ROWS, ImageTooLarge, UnsupportedEncoding,
                                bytes_per_pixel, check_compressed_image, compressed_msg_to_bgr, decode_refusing_damage,
                                image_msg_to_bgr, raw_rows, too_small_for_opencv_demosaic)
from cfi_pose_ros.interrupts import raise_if_interrupted
from cfi_pose_ros.msg import HumanKeypoints2D, HumanKeypoints2DArray, Keypoint2D
from cfi_pose_ros.node.conversions import header_problem, stamp_seconds
from cfi_pose_ros.node.detect_parameters import DETECT_NODE_PARAMETERS, detector_config, tracker_config
from cfi_pose_ros.node.base import (UNDESERIALIZABLE, SpecLifecycleNode, cut, diagnostics_msg, exit_process,
                                   newest_only_qos, output_qos, rcl_reason, run, shown, stoppable_configure)
from cfi_pose_ros.runtime_stats import RollingStats, ms_value

try:  # a normal ROS install has cv_bridge; the pip-installed ROS here does not
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:  # pragma: no cover - depends on the ROS install
    CvBridge = None

    class CvBridgeError(Exception):
        """cv_bridge's error of an image it cannot convert (what ``except`` names without cv_bridge)."""

PACKAGE = "cfi_pose_ros"
EXECUTABLE = "detect_node"
NODE_NAME = "cfi_pose_detector"
CONFIG_FILE = "detect.yaml"
STAGES = ("decode", "detector", "keypoint_model", "tracking", "publish", "total")
ROUTINE_DROPS = frozenset({"superseded", "stopped"})   # the newest-frame policy and stopping: not bad input
_TIMING_FRAMES = 1000          # the most frames the per-stage percentiles are computed over
# How long deactivate, cleanup and shutdown wait for the frame in flight to be detected and published,
# and how long once a stop signal has come (a launch sends SIGTERM 5 s after its SIGINT): a frame that
# takes longer is never published (see DetectNode._stop_worker). The node answers meanwhile (get_state
# 'deactivating', parameters, /diagnostics): run()'s loop runs the transition while another thread
# spins (DetectNode.runs_in_run_loop); it answered nothing for up to these 30 s. A much shorter wait
# instead (a frame of the fixture models, RTMDet-nano + MoveNet, takes 17 ms on 2 CPU threads) would
# still have held the node for that long, and would have refused the activate after every deactivate
# on a backend slower than it (a large model on the CPU), where this one waits for the frame and the
# activate runs.
WORKER_STOP_WAIT_S = 30.0
WORKER_STOP_WAIT_STOPPING_S = 1.0


def timed_stages(detector) -> tuple[str, ...]:
    """The stages whose times ``detector`` reports: a top-down one its person detector and keypoint
    model apart, any other one model (``detector``) alone."""
    return STAGES if hasattr(detector, "person_detector") else tuple(s for s in STAGES if s != "keypoint_model")


class StageTimes:
    """Per-stage durations (ms) of the frames of the last ``window_s`` seconds (at most
    ``max_frames``), thread-safe: the window of the lifter's latencies (RollingStats). Over the
    last 1000 frames alone, a slow patch's p99, and its "processing time high" WARN, stayed while
    no frame came, for hours and across a deactivate and activate."""

    def __init__(self, stages=STAGES, window_s: float = 5.0, max_frames: int = _TIMING_FRAMES):
        self.window_s = window_s
        self._samples = {stage: deque(maxlen=max_frames) for stage in stages}
        self._lock = threading.Lock()

    def add(self, now: float, values: dict[str, float]) -> None:
        with self._lock:
            for stage, ms in values.items():
                self._samples[stage].append((now, ms))

    def clear(self) -> None:
        with self._lock:
            for samples in self._samples.values():
                samples.clear()

    def percentiles(self, now: float) -> dict[str, tuple[float, float, int]]:
        """stage -> (p50 ms, p99 ms, samples) over the window up to ``now``; stages not timed in
        it are left out."""
        with self._lock:
            for samples in self._samples.values():
                while samples and samples[0][0] < now - self.window_s:
                    samples.popleft()
            snapshot = {stage: np.array([ms for _, ms in samples]) for stage, samples in self._samples.items()
                        if samples}
        return {stage: (float(np.percentile(v, 50)), float(np.percentile(v, 99)), len(v))
                for stage, v in snapshot.items()}


# --------------------------------------------------------------------- conversions (messages <-> numpy)

def _check_raw_image(msg: Image) -> None:
    """The size checks that must come before any conversion (cv_bridge does not make all of them):
    zero size, a step shorter than one row of the encoding's pixels (at least a byte each for an
    encoding only cv_bridge knows), data shorter than step * height."""
    raw_rows(msg.height, msg.width, msg.step, msg.data, bytes_per_pixel(msg.encoding) or 1, repr(msg.encoding))


class BridgeFailed(RuntimeError):
    """cv_bridge itself failed, not on the image: its compiled part, imported at the first
    conversion, built against another NumPy (the usual `ImportError` of an apt cv_bridge beside a
    pip NumPy 2), or any error that is not its ``CvBridgeError``."""


def image_to_bgr(msg, bridge=None, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """``sensor_msgs/Image`` or ``CompressedImage`` -> BGR ``uint8`` ``(H, W, 3)``.

    Raises :class:`UnsupportedEncoding` or ``ValueError`` (zero size, step/size
    mismatch, undecodable data, :class:`ImageTooLarge`: a compressed image that
    declares more than ``max_pixels`` pixels, checked before any decoder runs,
    cv_bridge's included) with the reason; :class:`BridgeFailed` when ``bridge`` itself fails.
    """
    if isinstance(msg, CompressedImage):
        check_compressed_image(msg.format, msg.data, max_pixels)
        if bridge is not None:
            try:
                return np.ascontiguousarray(decode_refusing_damage(
                    lambda: _by_bridge(bridge.compressed_imgmsg_to_cv2, msg), msg.format, msg.data))
            except CvBridgeError as exc:
                raise ValueError(f"cv_bridge could not decode the compressed image ({msg.format!r}): {exc}") from exc
        return compressed_msg_to_bgr(msg, max_pixels)
    _check_raw_image(msg)
    # nv12/nv21 are read as RViz's image display reads nv12 (luma rows, then chroma rows), nv24 as
    # V4L2 lays it out, cv_bridge or not: image_encodings.hpp's tables give them 2 channels of 8 bits
    # a pixel, which is not that layout, and what cv_bridge makes of them could not be checked here;
    # a Bayer mosaic under 3 rows or columns cv_bridge's OpenCV demosaics to black
    if bridge is not None and msg.encoding not in READ_BY_ROWS and not too_small_for_opencv_demosaic(
            msg.encoding, msg.height, msg.width):
        try:
            image = _by_bridge(bridge.imgmsg_to_cv2, msg)
        except CvBridgeError as exc:
            text = str(exc)
            if "encoding" in text.lower() or "unsupported" in text.lower():
                raise UnsupportedEncoding(f"image encoding {msg.encoding!r}: {text}") from exc
            raise ValueError(f"cv_bridge could not convert the image ({msg.encoding}): {text}") from exc
        return np.ascontiguousarray(image)
    return image_msg_to_bgr(msg)


def _by_bridge(convert, msg) -> np.ndarray:
    """``convert(msg, "bgr8")``: its ``CvBridgeError`` as it is (the image's fault), anything else
    as :class:`BridgeFailed`."""
    try:
        return convert(msg, "bgr8")
    except CvBridgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever broke in cv_bridge, the image is not to blame
        raise BridgeFailed(f"{type(exc).__name__}: {exc}") from exc


def keypoints_to_msg(header, image_size: tuple[int, int], keypoints: np.ndarray, scores: np.ndarray,
                     boxes: np.ndarray, box_scores: np.ndarray, ids: list[str]) -> HumanKeypoints2DArray:
    """COCO-17 people of one image -> ``HumanKeypoints2DArray`` (header copied: stamp and frame_id).

    A joint with a non-finite position is published as missing (NaN, score 0);
    scores are clipped to [0, 1]; boxes are clipped to the image.
    """
    width, height = int(image_size[0]), int(image_size[1])
    out = HumanKeypoints2DArray(header=header, image_width=width, image_height=height)
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, 17, 2)
    scores = unit_scores(np.asarray(scores, dtype=np.float64)).reshape(-1, 17)
    # a coordinate beyond float32 (the message's type) would be published as inf: missing too
    missing = ~(np.isfinite(keypoints) & (np.abs(keypoints) <= np.finfo(np.float32).max)).all(axis=-1)
    keypoints = np.where(missing[..., None], np.nan, keypoints)
    scores = np.where(missing, 0.0, scores)
    box_scores = unit_scores(np.asarray(box_scores, dtype=np.float64))
    for person_kp, person_scores, box, box_score, track_id in zip(keypoints, scores, boxes, box_scores, ids):
        x1, y1 = int(np.clip(np.floor(box[0]), 0, width)), int(np.clip(np.floor(box[1]), 0, height))
        x2, y2 = int(np.clip(np.ceil(box[2]), 0, width)), int(np.clip(np.ceil(box[3]), 0, height))
        person = HumanKeypoints2D(id=track_id, score=float(box_score), layout=HumanKeypoints2D.LAYOUT_COCO_17,
                                  bbox=RegionOfInterest(x_offset=x1, y_offset=y1, width=max(0, x2 - x1),
                                                        height=max(0, y2 - y1)))
        person.keypoints = [Keypoint2D(x=float(x), y=float(y), score=float(s))
                            for (x, y), s in zip(person_kp, person_scores)]
        out.people.append(person)
    return out


# --------------------------------------------------------------------------------------- the node

class DetectNode(SpecLifecycleNode):
    diagnostics_task = "2D detection"
    output_topic_types = {"keypoints_topic": HumanKeypoints2DArray}

    def input_topic_types(self) -> dict:
        return {"image_topic": CompressedImage if self.p("compressed") else Image}

    def __init__(self, name: str = NODE_NAME, **kwargs):
        # What destroy_node() stops, set first: a stop signal during start-up can interrupt this
        # constructor once rclpy has registered the node, and rclpy's shutdown then destroys it.
        self._subscription = None
        self._pending = None            # newest image waiting for the worker, and the worker itself
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self._running = False
        # the running worker's token: a worker publishes only while its own is this one, checked and
        # published under _publish_lock, so that none does once a stop has given up waiting for it
        self._worker_token: object | None = None
        self._publish_lock = threading.Lock()
        # (thread, detector, when its frame started) of one stopped in a frame it has not ended
        self._stale_worker = None
        self._frame_started = 0.0       # time.monotonic() when the worker took the frame it is on
        self._last_tracker = None       # the last configuration's, whose ids the next one goes on from
        super().__init__(name, DETECT_NODE_PARAMETERS, **kwargs)
        self.detector = None
        self.tracker = None
        self.bridge = CvBridge() if CvBridge is not None else None
        self.stats = RollingStats(started=time.monotonic())
        self.stages = StageTimes()
        self._stats_lock = threading.Lock()
        self._keypoints_pub = self._diag_pub = None
        self._providers: list[str] = []     # execution providers the configured detector's sessions use

    # ----------------------------------------------------------------- helpers
    def _to_bgr(self, msg) -> np.ndarray:
        """The image as BGR; through cv_bridge while it works. A cv_bridge that fails itself (see
        BridgeFailed) is given up for good, said once: with it every image was dropped as a
        decode_error while the node's own conversion could read them."""
        bridge = self.bridge
        try:
            return image_to_bgr(msg, bridge, self.p("max_image_pixels"))
        except BridgeFailed as exc:
            if self.bridge is bridge is not None:
                self.bridge = None
                self.get_logger().error(f"cv_bridge failed ({cut(str(exc))}): images are converted with "
                                        "cfi_pose_ros.image from now on")
            return image_to_bgr(msg, None, self.p("max_image_pixels"))

    def _drop(self, reason: str, text: str | None = None) -> None:
        with self._stats_lock:
            self.stats.drop(Counter({reason: 1}))
        if text:
            self.warn_throttled(reason, f"image dropped ({reason}): {text}", error=reason not in ROUTINE_DROPS)

    def describe(self) -> str:
        if self.detector is None:
            return "none"
        if hasattr(self.detector, "person_detector"):
            return (f"top_down: {Path(self.p('person_detector_model')).name} + "
                    f"{Path(self.p('keypoint_model')).name} ({self.p('keypoint_model_type')})")
        return f"yolo_pose: {Path(self.p('yolo_pose_model')).name}"

    # --------------------------------------------------------------- lifecycle
    @stoppable_configure
    def on_configure(self, state) -> TransitionCallbackReturn:
        from cfi_pose_ros.detectors import create_detector
        from cfi_pose_ros.detectors.base import providers_in_use
        from cfi_pose_ros.tracking import MultiPersonTracker, TrackerConfig

        try:
            values = {spec.name: self.p(spec.name) for spec in DETECT_NODE_PARAMETERS}
            self.detector = create_detector(detector_config(values))
            # ids go on from the last configuration's: restarted at "1", a new person took an id
            # (body_1 on /tf, the lifter's smoothing track) that another had just had
            self.tracker = MultiPersonTracker(TrackerConfig(**tracker_config(values)), ids_after=self._last_tracker)
            self._last_tracker = self.tracker
        except Exception as exc:  # DetectorModelError (missing/unexpected model), bad option: say why
            raise_if_interrupted(exc)       # a stop signal's, inside onnxruntime's import: not a failure
            self.detector = None
            return self.configure_failed(str(exc))
        try:
            self._keypoints_pub = self.create_output_publisher(
                HumanKeypoints2DArray, self.p("keypoints_topic"), output_qos(self.p("output_reliability")))
            self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        except Exception as exc:    # see rcl_reason; rclpy would fail the transition without a word
            self.on_cleanup(state)
            return self.configure_failed(rcl_reason(exc))
        # what the sessions run on, not what was asked: the configure log and /diagnostics named the
        # providers parameter, CUDA included, while ONNX Runtime had fallen back to the CPU
        self._providers = providers_in_use(self.detector)
        missing = [name for name in self.p("providers") if name not in self._providers]
        if missing:     # the names cut short (shown): a providers list set to a megabyte made a WARN as long
            self.get_logger().warning(f"execution provider(s) {shown(missing)} not available in this ONNX Runtime: "
                                      f"running on {self._providers} (strict_providers: true fails the configure "
                                      "instead)")
        self.start_diagnostics(self._publish_diagnostics)
        self.get_logger().info(f"configured: {self.describe()}, providers {self._providers}, "
                               f"image conversion: {'cv_bridge' if self.bridge else 'cfi_pose_ros.image'}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        stale = self._stale_worker
        if stale is not None and stale[0].is_alive() and stale[1] is self.detector:
            # a second worker would run these models and the tracker beside it: two frames at once
            # and their keypoints out of order (the tracker's ids too)
            return self.activate_failed(
                f"the detector is still on a frame it took {time.monotonic() - stale[2]:.0f} s ago, before the "
                "last deactivate (its keypoints will not be published): activate again once it has ended, or "
                "cleanup and configure to load the models anew")
        self._stale_worker = None
        # a resumed stream is a new stream: no boxes followed from before the pause
        if hasattr(self.detector, "reset"):
            self.detector.reset()
        msg_type = self.input_topic_types()["image_topic"]
        try:
            self._subscription = self.subscribe_input(
                msg_type, self.p("image_topic"), self._on_image, newest_only_qos(self.p("input_reliability")),
                self._on_undeserializable)
        except Exception as exc:    # see rcl_reason: the node stays inactive, no worker started
            return self.activate_failed(rcl_reason(exc))
        self._running = True
        with self._stats_lock:
            self.stats.listen(time.monotonic())
        self.stages.clear()
        self._worker_token = token = object()
        self._worker = threading.Thread(target=self._work, args=(token,), name="cfi_pose_detector_worker",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: {self._subscription.topic_name} ({msg_type.__name__}) -> "
                               f"{self._keypoints_pub.topic_name}")     # resolved and remapped, as the lifter's
        return super().on_activate(state)

    def _stop_worker(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        with self._stats_lock:
            self.stats.listen(None)
        with self._wake:
            self._running = False
            discarded = self._pending is not None
            self._pending = None
            self._wake.notify_all()
        if discarded:   # counted as an input when it arrived: inputs_total = outputs_total + dropped.*
            self._drop("stopped")
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            # an idle worker ends at once: starting and joining the thread that answers meanwhile
            # made every deactivate 23 ms instead of 2 (a helper's measure)
            worker.join(timeout=0.05)
            if worker.is_alive():
                # unsubscribed above, before the executor runs beside: what it runs (the diagnostics
                # timer) sees the node stopping; what this transition destroys next it destroys after
                with self.answering():
                    self._wait_for_frame_in_flight(worker)
        with self._publish_lock:
            self._worker_token = None   # from now on that worker publishes nothing
        if worker is not None and worker.is_alive():
            # Its frame is detected on: once the deactivate had answered, its keypoints were published
            # (after the next activate; before it the deactivated publisher dropped them, counted as
            # published), and it took the next activate's images beside that activate's own worker.
            self._stale_worker = (worker, self.detector, self._frame_started)
            self.get_logger().warning(
                f"the frame in flight is still being detected after {time.monotonic() - self._frame_started:.0f} s: "
                "its keypoints will not be published")

    def _wait_for_frame_in_flight(self, worker: threading.Thread) -> None:
        """Let ``worker`` finish (and publish) the frame it is on, for up to WORKER_STOP_WAIT_S, or
        WORKER_STOP_WAIT_STOPPING_S once a stop signal has come: the wait ran on through SIGINT and
        SIGTERM (the spin loop ends only after the callback), and a launch killed the node (SIGKILL)."""
        deadline = time.monotonic() + WORKER_STOP_WAIT_S
        while worker.is_alive() and time.monotonic() < deadline:
            if self.stop_signals is not None and self.stop_signals.requested:
                deadline = min(deadline, time.monotonic() + WORKER_STOP_WAIT_STOPPING_S)
            worker.join(timeout=0.05)

    def runs_in_run_loop(self, transition: int, state: str) -> bool:
        """Deactivate and shutdown from active too: their _stop_worker waits up to WORKER_STOP_WAIT_S
        for the frame in flight, which in rclpy's service callback held the executor: no get_state,
        parameter service or /diagnostics until it ended. Cleanup and the other shutdowns find the
        worker stopped by the deactivate."""
        return super().runs_in_run_loop(transition, state) or (state == "active" and transition in (
            Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVE_SHUTDOWN))

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._stop_worker()
        if self._keypoints_pub is not None:     # not destroy_publisher: see the lifter's on_cleanup
            self.destroy_lifecycle_publisher(self._keypoints_pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        self.stop_diagnostics()
        self._keypoints_pub = self._diag_pub = None
        self.detector = self.tracker = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        """From any state: stop the worker and release publishers, the diagnostics timer and the
        models (as the lifter does), so nothing, /diagnostics included, is published once FINALIZED."""
        return self.on_cleanup(state)

    def destroy_node(self):
        self._stop_worker()
        return super().destroy_node()

    # --------------------------------------------------------------- callbacks
    def _on_undeserializable(self, reason: str = UNDESERIALIZABLE) -> None:
        """An input that arrived and is dropped, as one undecodable: diagnostics then tell the stream
        is there (not "no input ... for 60 s") and why nothing comes out of it."""
        if self._running:                   # one queued before unsubscribing: see _on_image
            with self._stats_lock:
                self.stats.input(time.monotonic())
            self._drop(reason)

    def _on_image(self, msg) -> None:
        """Executor thread: hand the newest image to the worker, replacing one still waiting."""
        if not self._running:
            # unsubscribed (deactivate, cleanup, shutdown): rclpy's EventsExecutor drops a destroyed
            # subscription only at its next entity update and still hands it the messages it had
            # queued; one kept here would be detected at the next activate, however much later
            return
        received = time.perf_counter()
        with self._stats_lock:
            self.stats.input(time.monotonic())
        with self._wake:
            superseded = self._pending is not None
            self._pending = (msg, received)
            self._wake.notify()
        if superseded:
            self._drop("superseded")

    def _work(self, token: object) -> None:
        while True:
            with self._wake:
                # not _running alone: a later activate sets it again while this worker, stopped in a
                # frame, may still be on it
                while self._pending is None and self._running and self._worker_token is token:
                    self._wake.wait()
                if not self._running or self._worker_token is not token:
                    return
                msg, received = self._pending
                self._pending = None
                self._frame_started = time.monotonic()
            try:
                self._process(msg, received, token)
            except Exception as exc:  # never let one frame take the node down
                self._drop("detector_error", repr(exc))

    def _process(self, msg, received: float, token: object) -> None:
        refused_header = header_problem(msg.header)
        if refused_header is not None:      # its keypoints would carry it on (see NEGATIVE_STAMP)
            self._drop(*refused_header)
            return
        t0 = time.perf_counter()
        try:
            image = self._to_bgr(msg)
        except UnsupportedEncoding as exc:
            self._drop("unsupported_encoding", str(exc))
            return
        except ImageTooLarge as exc:
            self._drop("image_too_large", str(exc))
            return
        except ValueError as exc:
            self._drop("bad_image", str(exc))
            return
        except Exception as exc:  # anything else the conversion raises
            self._drop("decode_error", repr(exc))
            return
        t1 = time.perf_counter()
        try:    # the same step offline lifting runs for each image (stage_ms: detector stages, tracking)
            people, ids, stage_ms = detect_and_track(self.detector, self.tracker, image,
                                                     stamp_seconds(msg.header.stamp), msg.header.frame_id)
        except Exception as exc:
            self._drop("detector_error", repr(exc))
            return
        if not self.p("tracking"):
            # the tracker still follows every image, the ids left out: it tells a bag loop, where the
            # detector's followed boxes start over (without it a loop's first image was cropped where
            # the last pass's people had stood), and tracking switched on live goes on from tracks of
            # the people in view, not from ones last seen when it was switched off
            ids = [""] * len(ids)
        t3 = time.perf_counter()
        out = keypoints_to_msg(msg.header, (image.shape[1], image.shape[0]), people.keypoints, people.scores,
                               people.boxes, people.box_scores, ids)
        with self._publish_lock:
            if self._worker_token is not token:     # stopped without waiting for this frame's end
                self._drop("stopped")
                return
            self._keypoints_pub.publish(out)
        t4 = time.perf_counter()
        self.stages.add(time.monotonic(), {"decode": (t1 - t0) * 1e3, "publish": (t4 - t3) * 1e3,
                                           "total": (t4 - received) * 1e3, **stage_ms})
        with self._stats_lock:
            self.stats.output(time.monotonic(), t4 - received, len(out.people))

    def _publish_diagnostics(self) -> None:
        with self._stats_lock:
            summary = self.stats.summary(time.monotonic())
        stages = self.stages.percentiles(time.monotonic())
        status = self.diagnostics_status()
        status.level, status.message = DiagnosticStatus.OK, "detecting"
        total_p99 = stages.get("total", (0.0, 0.0, 0))[1]
        if self._subscription is None:             # configured, not active: nothing is detected
            self.inactive_status(status)
        elif self._worker is not None and not self._worker.is_alive():
            # the worker catches what a frame raises; one that still ended (its error handling
            # raised: a logger refusing a severity did) left images counted as superseded only
            status.level, status.message = DiagnosticStatus.ERROR, (
                "not detecting: the worker thread ended (its error is in the log); deactivate and "
                "activate to restart it")
        elif total_p99 > self.p("warn_latency_ms"):
            status.level, status.message = DiagnosticStatus.WARN, "processing time high"
        values = {"detector": self.describe(), "providers": ",".join(self._providers),
                  "image_conversion": "cv_bridge" if self.bridge else "cfi_pose_ros.image"}
        # every stage the detector times, each publication: empty where no frame of the window timed it
        for stage in timed_stages(self.detector):
            p50, p99, _ = stages.get(stage, (None, None, 0))
            values[f"{stage}_p50_ms"] = ms_value(p50)
            values[f"{stage}_p99_ms"] = ms_value(p99)
        values["timing_frames"] = str(stages.get("total", (0, 0, 0))[2])
        # top_down with person_detector_every > 1 runs it on fewer frames
        values["detector_frames"] = str(stages.get("detector", (0, 0, 0))[2])
        self._diag_pub.publish(diagnostics_msg(self, status, summary, values,
                                               self._subscription.topic_name if self._subscription else "",
                                               ROUTINE_DROPS))


def main(args=None) -> int:
    return run(DetectNode, args, "detect.yaml")


if __name__ == "__main__":
    exit_process(main())
