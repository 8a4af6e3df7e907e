"""The lifting node: HumanKeypoints2DArray (+ CameraInfo) in, HumanPose3DArray and markers out.

A ``LifecycleNode`` that only wires topics, parameters and lifecycle to the
ROS-free :class:`cfi_pose_ros.pipeline.LiftingPipeline`:

* configure: read parameters, load the weights and build (or load) the engine,
  create publishers. A bad weights file fails the transition with the reason.
* activate: subscribe. Input QoS is depth 1 (sensor data by default), so while
  a frame is being lifted only the newest one waits: never a queue of stale frames.
* deactivate / cleanup: unsubscribe / release the engine.

Diagnostics on ``/diagnostics``: backend, input/output rates, latency
percentiles (empty while no frame was lifted in the window), people count, and
dropped-input counts by reason.
"""
from __future__ import annotations

import time
from collections import Counter

if __name__ == "__main__":
    # `python -m cfi_pose_ros.node.lift_node` starts as the installed entry script does (scripts/lift_node):
    # before the imports below (rclpy, numpy: about 0.2 s), or a SIGTERM there was the default death
    # (exit -15: no goodbye) and a native crash said nothing. (So the imports below follow code.)
    from cfi_pose_ros.node.startup import start_ros_process
    start_ros_process()

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.duration import Duration
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from cfi_pose_ros.depth import DepthHistory
from cfi_pose_ros.frames import RigidTransform, static_target_transform, tf2_frame_id
from cfi_pose_ros.interrupts import raise_if_interrupted
from cfi_pose_ros.msg import HumanKeypoints2DArray, HumanPose3DArray
from cfi_pose_ros.markers import DrawnMarkers, lifetime_expires
from cfi_pose_ros.node.conversions import depth_from_msg, header_drop_reason, markers_to_msg, stamp_seconds
from cfi_pose_ros.node.base import (SpecLifecycleNode, diagnostics_msg, exit_process, newest_only_qos, output_qos,
                                   rcl_reason, run, stoppable_configure)
from cfi_pose_ros.node.parameters import LIFT_NODE_PARAMETERS, TARGET_WITHOUT_FRAME, lift_configure_problems
from cfi_pose_ros.node.lifting import (NO_TRANSFORM, PIPELINE_PARAMETERS, SMOOTHER_PARAMETERS, CameraInfoByFrame,
                                      CameraModel, camera_or_size_from_info, create_publishing_lifter,
                                      depth_warning_key, dropped_frame_markers, dropped_warning_key,
                                      keypoints_not_to_decode, lift_keypoints, marker_namespace, paired_depth,
                                      pipeline_config, pose_smoother, undecoded_frame_header, warned_about)
from cfi_pose_ros.node.transforms import TransformBroadcast, TransformLookup, load_tf2
from cfi_pose_ros.pipeline import DEPTH_DISAGREES, LiftingPipeline
from cfi_pose_ros.runtime_stats import RollingStats, ms_value

# how long a stopping node waits for RViz (any reliable subscriber) to take the DELETEALL
CLEAR_ACK_TIMEOUT_S = 0.5
# Drops that are no fault of the input: a person a detector sees only in part (too_few_joints), the
# people past max_people, and a depth reading of something in front of or behind a person (the
# person is placed from the image). Any other drop since the previous diagnostics turns them WARN.
ROUTINE_DROPS = frozenset({"too_few_joints", "too_many_people", DEPTH_DISAGREES})
# diagnostics count: a person's TF frame not sent, as another camera's people had it (TransformBroadcast.taken)
TF_FRAME_CONFLICT = "tf_frame_conflict"


class LiftNode(SpecLifecycleNode):
    diagnostics_task = "lifting"

    def __init__(self, name: str = "cfi_pose_lifter", **kwargs):
        super().__init__(name, LIFT_NODE_PARAMETERS, **kwargs)
        self.pipeline: LiftingPipeline | None = None
        self.lifter = None
        self.stats = RollingStats(started=time.monotonic())
        self.cameras = CameraInfoByFrame()     # each camera frame's last CameraInfo, and the newest
        self.depth = DepthHistory()       # the last depth images, paired with keypoints by stamp
        self._subscriptions_active: list = []
        self._pose_pub = self._marker_pub = self._diag_pub = None
        self._drawn_markers = DrawnMarkers()    # what RViz shows of ours: deleted when not drawn again
        self.marker_namespace = marker_namespace(self.get_fully_qualified_name())
        self._target: tuple[str, RigidTransform | None] = ("", None)   # output frame, its static transform
        self._tf_lookup: TransformLookup | None = None
        self._tf_broadcast: TransformBroadcast | None = None

    # --------------------------------------------------------------- live parameters
    output_topic_types = {"output_topic": HumanPose3DArray, "markers_topic": MarkerArray}

    def input_topic_types(self) -> dict:
        return {"input_topic": HumanKeypoints2DArray, "camera_info_topic": CameraInfo,
                **({"depth_topic": Image} if self.p("depth_topic") else {})}

    def _own_topics(self) -> dict:
        """Every node's, and /tf where configure makes a TF broadcaster (tf2_ros' publishes
        tf2_msgs/TFMessage there): `ros2 param set /cfi_pose_lifter output_topic /tf` answered a plain
        success, and only configure said no."""
        topics = super()._own_topics()
        if self.p("publish_tf") and load_tf2()[0] is not None:
            topics[self._resolved_topic("/tf")] = ("its /tf (publish_tf)", "tf2_msgs/msg/TFMessage")
        return topics

    def configure_problems(self) -> list[str]:
        return lift_configure_problems(self.p) + super().configure_problems()

    def on_parameters_changed(self, names: set[str]) -> None:
        """Live changes take effect from the next frame (this runs between callbacks). Changing a
        smoothing parameter restarts the filters with the new settings."""
        super().on_parameters_changed(names)
        if self.pipeline is None:
            return              # configure reads them
        if names & PIPELINE_PARAMETERS:
            self.pipeline.config = pipeline_config(self.p)
        if names & (SMOOTHER_PARAMETERS | {"smoothing"}):
            self.pipeline.smoother = pose_smoother(self.p)
        if "flip_test" in names:
            self.lifter.flip_test = self.p("flip_test")
        if "publish_markers" in names and not self.p("publish_markers"):
            # skeletons drawn until now: with a lifetime RViz never expires, turning markers off
            # left them on screen for good. Not waited for: the publisher stays, and the executor
            # waited up to 0.5 s at each set, a dozen frames at 30 Hz. A marker_lifetime change
            # clears nothing: the next frame draws everyone with it (an ADD replaces a marker,
            # lifetime and all) and deletes who left; a DELETEALL here left RViz showing nobody
            # until that frame, a blink of every skeleton at each set.
            self._clear_markers(wait_for_ack=False)

    # --------------------------------------------------------------- lifecycle
    @stoppable_configure
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.lifter = create_publishing_lifter(self.p, log=self.get_logger().info)
        except Exception as exc:  # a bad weights file or backend: fail the transition, say why
            raise_if_interrupted(exc)       # a stop signal's, inside an import: not a failure
            return self.configure_failed(str(exc))
        self.pipeline = LiftingPipeline(self.lifter, pipeline_config(self.p), pose_smoother(self.p))
        if not self._configure_frames():
            self.pipeline = self.lifter = None
            return TransitionCallbackReturn.FAILURE
        out_qos = output_qos(self.p("output_reliability"))
        try:
            self._pose_pub = self.create_output_publisher(HumanPose3DArray, self.p("output_topic"), out_qos)
            self._marker_pub = self.create_output_publisher(MarkerArray, self.p("markers_topic"), out_qos)
            self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        except Exception as exc:    # see rcl_reason; rclpy would fail the transition without a word
            self.on_cleanup(state)
            return self.configure_failed(rcl_reason(exc))
        self.start_diagnostics(self._publish_diagnostics)
        self.get_logger().info(f"configured: {self.lifter.describe()}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        # bytes that are not a message (see subscribe_input): on the frames' topic an input dropped, on
        # the CameraInfo's and the depth images' a drop; a crowd no max_people reads is not decoded
        callbacks = {"input_topic": (self._on_keypoints, self._on_unread_keypoints, self._keypoints_not_to_decode),
                     "camera_info_topic": (self._on_camera_info, self._on_unread, None),
                     "depth_topic": (self._on_depth, self._on_unread, None)}
        try:
            for topic, msg_type in self.input_topic_types().items():
                callback, on_unread, not_to_decode = callbacks[topic]
                self._subscriptions_active.append(self.subscribe_input(
                    msg_type, self.p(topic), callback, newest_only_qos(self.p("input_reliability")),
                    on_unread, not_to_decode))
        except Exception as exc:    # see rcl_reason: the node stays inactive, not subscribed
            self._unsubscribe()
            return self.activate_failed(rcl_reason(exc))
        self.stats.listen(time.monotonic())
        # as resolved in the namespace and remapped (`-r human_pose_3d:=/out`), not the parameters' values
        self.get_logger().info(f"active: {self._subscriptions_active[0].topic_name} -> {self._pose_pub.topic_name}")
        return super().on_activate(state)

    def _unsubscribe(self) -> None:
        for sub in self._subscriptions_active:
            self.destroy_subscription(sub)
        self._subscriptions_active = []
        self.stats.listen(None)
        # the stream taken again at the next activate is another one (unstamped images pair by 0 s):
        # here, for deactivate, shutdown and the error processing of a transition that raised alike
        self.depth.clear()

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._stop_updating_markers()
        return super().on_deactivate(state)

    def _stop_updating_markers(self) -> None:
        """Skeletons must not stay on screen once nothing updates them (deactivate, shutdown from
        active, a stop signal while active): RViz keeps markers it never sees expire until told,
        and those of a lifetime it expires for that long (up to a minute). Waited for only where
        they would stay for good: for the others a lost DELETEALL costs their lifetime."""
        if self.p("publish_markers"):
            self._clear_markers(wait_for_ack=not lifetime_expires(self.p("marker_lifetime")))

    def _clear_markers(self, wait_for_ack: bool = True) -> None:
        """One DELETEALL, while the lifecycle publisher is active (it drops anything else);
        ``wait_for_ack``: then wait until reliable subscribers have it, for a publisher that is
        destroyed next."""
        if self._marker_pub is not None and self._marker_pub.is_activated:
            # each camera's namespace drawn in (markers.camera_namespace), the lifter's own where none is
            self._marker_pub.publish(markers_to_msg(Header(stamp=self.get_clock().now().to_msg()), [],
                                                    cleared=self._drawn_markers.namespaces or [self.marker_namespace]))
            self._drawn_markers.forget()
            # Cleanup, shutdown and a stop signal destroy the publisher right after this: a reliable
            # sample still unacknowledged then (lost once on a loaded machine, never repaired) left
            # RViz's skeletons on screen. A best-effort publisher returns at once.
            if wait_for_ack:
                self._marker_pub.wait_for_all_acked(Duration(seconds=CLEAR_ACK_TIMEOUT_S))

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        # destroy_lifecycle_publisher: destroy_publisher would leave each one in the node's
        # managed entities (rclpy), two dead publishers more for every configure/cleanup cycle
        for pub in (self._pose_pub, self._marker_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        self.stop_diagnostics()
        self._pose_pub = self._marker_pub = self._diag_pub = None
        # the tf2 listener stays (see _configure_frames); its buffer is the world's transforms, not
        # this configuration's, and /tf_static's would not come again
        self.pipeline = self.lifter = None
        # the next configure may listen to another camera (camera_info_topic, input_topic are
        # settable while unconfigured): its people must not be placed with this one's intrinsics
        self.cameras.clear()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        """From any state (active included): stop taking input and release everything, so nothing
        is lifted or published once FINALIZED."""
        self._unsubscribe()
        self._stop_updating_markers()       # from active no deactivate runs first
        self._close_tf()
        return self.on_cleanup(state)

    def destroy_node(self):
        # a stop signal (run() tears the node down): the active node's skeletons go too
        self._stop_updating_markers()
        self._close_tf()
        return super().destroy_node()

    def _close_tf(self) -> None:
        self._close_tf_broadcast()
        if self._tf_lookup is not None:
            self._tf_lookup.close()
            self._tf_lookup = None

    def _close_tf_broadcast(self) -> None:
        if self._tf_broadcast is not None:
            self._tf_broadcast.close()
            self._tf_broadcast = None

    # --------------------------------------------------------------- callbacks
    def _on_unread(self, reason: str) -> None:
        if self._subscriptions_active:      # one queued before unsubscribing: see _on_keypoints
            self.stats.drop(Counter({reason: 1}))

    def _on_unread_keypoints(self, reason: str) -> None:
        if self._subscriptions_active:
            self.stats.input(time.monotonic())
            self._on_unread(reason)
            self.publish_diagnostics_if_due()

    def _keypoints_not_to_decode(self, serialized) -> tuple[str | None, str] | None:
        """keypoints_not_to_decode; a message so dropped is a frame dropped whole, and clears its
        camera's skeletons RViz never expires as one is (see _clear_dropped_camera_markers)."""
        unread = keypoints_not_to_decode(serialized)
        if unread is not None and unread[0] is not None and self._subscriptions_active:
            header = undecoded_frame_header(serialized)
            if header is not None:
                self._clear_dropped_camera_markers(header)
        return unread

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if not self._subscriptions_active:
            return      # queued before unsubscribing (see _on_keypoints): cleanup forgot this camera
        matrix, lens, size, refused = camera_or_size_from_info(msg, self.p("keypoints_image"))
        self.cameras.add(CameraModel(matrix, lens, size, msg.header.frame_id))     # a size alone is this camera's too
        if refused is not None:
            self.stats.drop(Counter(bad_camera_info=1))
            self.warn_throttled("camera_info", f"ignoring CameraInfo: {refused}; publishing root-relative poses")

    def _on_depth(self, msg) -> None:     # conversions.RawImage, or an Image (see subscribe_input)
        if not self._subscriptions_active:
            return      # queued before unsubscribing: deactivate emptied the history of this stream
        try:
            image = depth_from_msg(msg)
        except ValueError as exc:
            self.stats.drop(Counter(bad_depth_image=1))
            self.warn_throttled(depth_warning_key(getattr(exc, "kind", "unreadable")), f"ignoring depth image: {exc}")
            return
        self.depth.add(stamp_seconds(msg.header.stamp), image, msg.header.frame_id, time.monotonic())

    def _on_keypoints(self, msg: HumanKeypoints2DArray) -> None:
        if not self._subscriptions_active:
            # unsubscribed: a message rclpy's EventsExecutor had queued before (see the detector's
            # _on_image) would be lifted and counted as an output the deactivated publisher drops
            return
        try:
            self._lift(msg)
        finally:
            # after the frame, so that what goes out counts it (a client reading the diagnostics
            # that follow a frame's output must not get ones taken before that frame)
            self.publish_diagnostics_if_due()

    def _lift(self, msg: HumanKeypoints2DArray) -> None:
        started = time.perf_counter()
        self.stats.input(time.monotonic())
        # the CameraInfo of the keypoints' camera where one came (several cameras on one topic), else the newest
        camera = self.cameras.for_keypoints(msg.header.frame_id)
        # a header lift_keypoints refuses is not looked up in tf2 (nor named in its warning)
        target_frame, transform = (("", None) if header_drop_reason(msg.header) is not None
                                   else self._output_transform(msg.header))
        if target_frame is None:
            self._clear_dropped_camera_markers(msg.header)
            return      # never published in a wrong frame
        # the image taken with the keypoints' image, not the newest, of their camera (see DepthHistory);
        # after the drops above, which must not count as frames of their camera (see paired_depth)
        depth = paired_depth(self.depth, msg.header, self.p("depth_max_age"), time.monotonic(), camera.frame_id)
        if not (target_frame or tf2_frame_id(msg.header.frame_id)):
            self.warn_throttled("no_frame_id", "input without header.frame_id: its poses and markers are in no "
                                               "frame (RViz cannot place them) and get no TF frames")
        try:
            result = lift_keypoints(self.pipeline, msg, camera.matrix, camera.size, depth.image, target_frame,
                                    transform, camera.lens, depth.frame_id, camera.frame_id, depth.stale)
        except Exception as exc:  # never let one bad frame take the node down
            self.stats.drop(Counter(processing_error=1))
            self.warn_throttled("processing_error", f"frame dropped, lifting failed: {exc!r}")
            self._clear_dropped_camera_markers(msg.header)
            return
        for key, text in result.warnings.items():
            self.warn_throttled(key, text)
        if result.dropped:
            self.stats.drop(result.dropped)
            # routine drops are counted, not logged: a person seen in part is no malformed input;
            # the others are logged by reason, in words where the pipeline gave them (above)
            for reason, count in sorted(result.dropped.items()):
                if reason not in ROUTINE_DROPS and not warned_about(result.warnings, reason):
                    self.warn_throttled(dropped_warning_key(reason), f"dropped malformed input: {reason} x{count}")
        if not result.publishable:
            self._clear_dropped_camera_markers(msg.header)
            return   # nothing can be said about this frame, not even that it is empty
        self._pose_pub.publish(result.poses_msg())
        # Markers only when someone (RViz) listens: building them costs about as much as the poses.
        if self.p("publish_markers") and self._marker_pub.get_subscription_count() > 0:
            self._marker_pub.publish(result.markers_msg(self.p("marker_lifetime"), drawn=self._drawn_markers,
                                                        namespace=self.marker_namespace))
        if self._tf_broadcast is not None and self.p("publish_tf"):
            frames = result.tf_frames(self.p("tf_prefix"), self.p("tf_joints"))
            camera = tf2_frame_id(msg.header.frame_id)
            in_time = self._tf_broadcast.send(msg.header.stamp, frames, camera)
            if self._tf_broadcast.taken:
                self._warn_tf_frames_taken(camera, self._tf_broadcast.taken)
            if not in_time:
                ahead = stamp_seconds(msg.header.stamp) - self.get_clock().now().nanoseconds * 1e-9
                self.warn_throttled("tf_future_stamp", f"TF frames not sent: the input is stamped {ahead:.1f} s "
                                                       "ahead of the node's clock, past tf2's 10 s buffer (clocks "
                                                       "not synchronised, or use_sim_time not set as for the "
                                                       "input's source?)")
        self.stats.output(time.monotonic(), time.perf_counter() - started, len(result.people))

    def _clear_dropped_camera_markers(self, input_header) -> None:
        """A frame dropped whole: its camera's skeletons that RViz never expires go (see
        lifting.dropped_frame_markers)."""
        if self.p("publish_markers"):
            clear = dropped_frame_markers(input_header, self.p("marker_lifetime"), self._drawn_markers,
                                          Header(stamp=self.get_clock().now().to_msg()), self.marker_namespace)
            if clear is not None:
                self._marker_pub.publish(clear)

    def _warn_tf_frames_taken(self, camera: str, taken: dict[str, str]) -> None:
        """Counted and logged, not a drop of the input (its poses are published): a misconfiguration
        that a monitor must see (WARN), as no listener can tell the two cameras' people apart."""
        self.stats.drop(Counter({TF_FRAME_CONFLICT: len(taken)}))
        owners = sorted(set(taken.values()))
        frames = first_names(sorted(taken), 5)
        self.warn_throttled(TF_FRAME_CONFLICT, (
            f"TF frames {frames} not sent for the people of {camera!r}: sent for the people of "
            f"{', '.join(map(repr, owners))} within tf2's 10 s buffer (two cameras' detectors numbering people "
            "alike on one input topic?). Give each camera its own lifter with its own tf_prefix "
            "(tf_prefix:=body_cam_left_), or ids that differ"))

    # --------------------------------------------------------------- output frame and TF
    def _configure_frames(self) -> bool:
        """Output frame, its transform source and TF output from the parameters; False (the reason
        logged) when target_from_camera is malformed or given without target_frame. Where tf2_ros is
        missing, says so once."""
        try:
            static = static_target_transform(self.p("target_from_camera"))
        except ValueError as exc:
            self.configure_failed(f"target_from_camera: {exc}")
            return False
        target = tf2_frame_id(self.p("target_frame"))     # the frame tf2 looks up and outputs carry
        if static is not None and not target:
            # the transform alone was accepted and never used: outputs stayed in the camera frame
            self.configure_failed(TARGET_WITHOUT_FRAME)
            return False
        self._target = (target, static)
        tf2_ros, reason = load_tf2()
        if self.p("publish_tf") and tf2_ros is None:
            self.get_logger().warning(f"TF output unavailable: {reason}; publishing poses without TF frames")
        elif self.p("publish_tf") and self._tf_broadcast is None:
            # kept across cleanup and configure (its record of the stamps sent goes on)
            self._tf_broadcast = TransformBroadcast(tf2_ros, self)
        elif not self.p("publish_tf"):
            self._close_tf_broadcast()      # no /tf publisher advertised where nothing goes out
        if target and static is None:
            if tf2_ros is None:
                self.get_logger().error(
                    f"target_frame {target!r} without target_from_camera needs a tf2 lookup, and {reason}: "
                    f"every input not already in {target!r} will be dropped ({NO_TRANSFORM})")
            elif self._tf_lookup is None:
                # made once and kept, as the broadcast: its listener node, executor and thread made
                # at every configure and closed at cleanup cost 1.4 MB of memory a cycle that was
                # never given back (80 cleanup/configure cycles with a tf2 stand-in: 471 -> 587 MB
                # of RSS; kept: 481 -> 489 MB)
                self._tf_lookup = TransformLookup(tf2_ros, self.get_name(), self.get_clock(), self.get_namespace())
        self.get_logger().info(f"output frame: {target or 'the input frame'}"
                               + (" (static target_from_camera)" if target and static is not None else
                                  " (tf2 lookup)" if target else ""))
        return True

    def _output_transform(self, header) -> tuple[str | None, RigidTransform | None]:
        """``(output frame, target_from_camera)`` for one input: ``("", None)`` = stay in the input's
        frame; ``(None, None)`` = the target frame's transform is unknown (the frame is dropped,
        with a throttled warning and a diagnostics count)."""
        target, static = self._target
        if not target:
            return "", None
        source = tf2_frame_id(header.frame_id)    # tf2 refuses to look up `/camera`
        if source == target:        # already there: target_from_camera (static too) is for the camera's
            return target, None
        if static is not None:
            return target, static
        reason = "tf2_ros is not available and target_from_camera is not given"
        if self._tf_lookup is not None:
            try:
                return target, self._tf_lookup.lookup(target, source, header.stamp, self.p("tf_timeout"))
            except LookupError as exc:
                reason = str(exc)
        self.stats.drop(Counter({NO_TRANSFORM: 1}))
        self.warn_throttled(NO_TRANSFORM, f"frame dropped ({NO_TRANSFORM}): {header.frame_id!r} -> {target!r}: "
                                          f"{reason}")
        return None, None

    def _publish_diagnostics(self) -> None:
        summary = self.stats.summary(time.monotonic())
        status = self.diagnostics_status()
        status.level, status.message = DiagnosticStatus.OK, "lifting"
        if not self._subscriptions_active:          # configured, not active: nothing is lifted
            self.inactive_status(status)
        elif summary["latency_p99_ms"] is not None and summary["latency_p99_ms"] > self.p("warn_latency_ms"):
            status.level, status.message = DiagnosticStatus.WARN, "processing latency high"
        camera_info = [subscription.topic_name for subscription in self._subscriptions_active
                       if subscription.msg_type is CameraInfo]
        unplaced = self.cameras.unplaced()
        if camera_info and self.p("solve_root") and unplaced != []:
            # people are to be placed and cannot be: an OK status hid that every pose came out
            # root-relative (no CameraInfo publisher, a wrong topic, an uncalibrated camera's K); of
            # several cameras on the topic, whichever cannot (the newest's alone flipped it)
            status.level = DiagnosticStatus.WARN
            cameras = f" for {first_names(unplaced, 3)}" if unplaced else ""
            status.message += f"; no valid CameraInfo on {camera_info[0]}{cameras} (root-relative output)"
        self._diag_pub.publish(diagnostics_msg(self, status, summary, {
            "backend": self.lifter.backend if self.lifter else "none",
            "latency_p50_ms": ms_value(summary["latency_p50_ms"]),
            "latency_p99_ms": ms_value(summary["latency_p99_ms"])},
            self._subscriptions_active[0].topic_name if self._subscriptions_active else "", ROUTINE_DROPS))


def first_names(names: list[str], most: int) -> str:
    """The first ``most`` of ``names`` for a log line or a status, and how many more there are."""
    rest = len(names) - most
    return ", ".join(names[:most]) + (f" (+{rest})" if rest > 0 else "")


def main(args=None) -> int:
    return run(LiftNode, args)


if __name__ == "__main__":
    exit_process(main())
