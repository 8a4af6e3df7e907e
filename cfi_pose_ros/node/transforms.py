"""TF in and out for the lifting node: ``geometry_msgs/TransformStamped`` from the plain frames
of :mod:`cfi_pose_ros.frames`, and the ``tf2_ros`` glue (a broadcaster for ``/tf``, a buffer
lookup of ``target_from_camera``), imported lazily.

``tf2_ros`` is part of every ROS 2 install but is not available as a wheel from the Python
registry (these machines): :func:`load_tf2` returns None with the reason there, and the node
works on without TF output and without tf2 lookups (a static ``target_from_camera`` still works).
The glue uses only the documented ``tf2_ros`` API: ``TransformBroadcaster(node).sendTransform``,
``Buffer.lookup_transform(target, source, time, timeout)``, ``TransformListener(buffer, node)``
and ``TransformException``.
"""
from __future__ import annotations

import threading

from geometry_msgs.msg import TransformStamped

from cfi_pose_ros.frames import (FrameTransform, OncePerStamp, OneCameraPerFrame, RigidTransform,
                                 ahead_of_clock, tf2_transform)
from cfi_pose_ros.interrupts import raise_if_interrupted


def transform_stamped(stamp, frame: FrameTransform) -> TransformStamped:
    """One TF frame as a ``TransformStamped`` with the given header stamp."""
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame.parent
    msg.child_frame_id = frame.child
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in frame.translation)
    q.x, q.y, q.z, q.w = (float(v) for v in frame.rotation_xyzw)
    return msg


def rigid_transform_from_msg(transform) -> RigidTransform:
    """``geometry_msgs/Transform`` (e.g. a tf2 lookup's ``.transform``) -> RigidTransform, as
    :func:`~cfi_pose_ros.frames.tf2_transform` reads it (ValueError for one no frame can use)."""
    t, q = transform.translation, transform.rotation
    return tf2_transform([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])


def load_tf2():
    """``(tf2_ros module, None)``, or ``(None, reason)`` where it cannot be imported."""
    try:
        import tf2_ros
    except Exception as exc:  # ImportError, or a broken install (missing tf2_py / tf2_msgs)
        raise_if_interrupted(exc)       # but a stop signal's
        return None, f"tf2_ros cannot be imported here ({type(exc).__name__}: {exc})"
    return tf2_ros, None


def listener_node(owner_name: str, owner_namespace: str = "", context=None):
    """A node of its own named ``<owner_name>_tf_listener`` in the owner's namespace, without
    parameter services.

    Its name comes from a rule of its own (``-r __node:=...`` as a local argument): launch_ros
    starts every named node with a global ``-r __node:=<name>``, which renames every node of the
    process, so a plain second node got the lifter's own name (two /cfi_pose_lifter in the graph,
    answering each other's parameter and lifecycle requests). The namespace is the owner's as
    resolved (``owner_namespace``): a rule for the owner alone (``-r cfi_pose_lifter:__ns:=/robot1``)
    left this node in the root namespace, where every such lifter's listener had one name. Global
    namespace and topic remaps (``/tf:=tf`` for a namespaced robot) still apply to it."""
    import rclpy

    from cfi_pose_ros.node.conversions import guard_clock_topic

    name = f"{owner_name}_tf_listener"
    node = rclpy.create_node(name, namespace=owner_namespace or None, context=context,
                             cli_args=["--ros-args", "-r", f"__node:={name}"], start_parameter_services=False)
    # on sim time where use_sim_time is given to every node (`-p use_sim_time:=true`, a `/**` file)
    guard_clock_topic(node, lambda text: node.get_logger().warning(text, throttle_duration_sec=5.0))
    return node


def tf2_clearing_jumps():
    """The jumps of a clock at which a ``tf2_ros.Buffer`` on it clears itself: any jump back (sim
    time: ``ros2 bag play --loop --clock``), a change of time source."""
    from rclpy.clock import JumpThreshold
    from rclpy.duration import Duration

    return JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=True)


class TransformLookup:
    """A tf2 buffer filled from ``/tf`` and ``/tf_static`` by a listener node of its own
    (:func:`listener_node`), spun in a thread of its own: a lookup with a timeout blocks the
    caller's callback, so the transforms it waits for must arrive through another executor.

    The buffer is cleared when ``clock`` (the lifter's) jumps back or changes source, as every
    ``tf2_ros.Buffer`` on that clock clears itself. This one is made without a node, so its own
    clock is the system's: after a sim-time bag loop it kept the last pass's transforms, tf2
    refused the new pass's as more than its 10 s buffer older than those (``TF_OLD_DATA``), and
    every input until the stamps came within 10 s of the last pass's end was dropped
    (``no_transform``)."""

    def __init__(self, tf2_ros, node_name: str, clock=None, namespace: str = ""):
        from rclpy.executors import SingleThreadedExecutor

        self._tf2 = tf2_ros
        self._node = listener_node(node_name, namespace)
        self.buffer = tf2_ros.Buffer()
        self._time_jumps = None if clock is None else clock.create_jump_callback(
            tf2_clearing_jumps(), post_callback=lambda jump: self.buffer.clear())
        self._listener = tf2_ros.TransformListener(self.buffer, self._node)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self._node)
        self._running = True
        self._thread = threading.Thread(target=self._spin, name=f"{node_name}_tf_listener", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        import rclpy

        while self._running and rclpy.ok():
            self._executor.spin_once(timeout_sec=0.1)

    def lookup(self, target_frame: str, source_frame: str, stamp, timeout_s: float) -> RigidTransform:
        """``target_from_source`` at ``stamp`` (a builtin_interfaces/Time), waiting up to
        ``timeout_s``; raises ``LookupError`` with tf2's reason when it is not available."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            when = Time.from_msg(stamp)
        except ValueError as exc:
            # a negative stamp (sec is signed in the message) is no ROS time: rclpy refuses it, and
            # the ValueError escaped the subscription callback and aborted the node
            raise LookupError(f"no transform {source_frame} -> {target_frame} at the input's stamp "
                              f"{stamp.sec} s {stamp.nanosec} ns: {exc}") from exc
        try:
            found = self.buffer.lookup_transform(target_frame, source_frame, when,
                                                 timeout=Duration(seconds=timeout_s))
        except self._tf2.TransformException as exc:
            raise LookupError(f"no transform {source_frame} -> {target_frame} at the input's stamp: {exc}") from exc
        try:
            return rigid_transform_from_msg(found.transform)
        except ValueError as exc:      # dropped as no_transform, not an exception out of the callback
            raise LookupError(f"the transform {source_frame} -> {target_frame} tf2 gives is unusable: {exc}") from exc

    def close(self) -> None:
        if self._time_jumps is not None:
            self._time_jumps.unregister()
        self._running = False
        self._thread.join(timeout=5.0)
        self._listener.unregister()
        self._executor.shutdown()
        self._node.destroy_node()


class TransformBroadcast:
    """``/tf`` output through ``tf2_ros.TransformBroadcaster``: each frame at most once per stamp
    (:class:`~cfi_pose_ros.frames.OncePerStamp`); an input stamped zero or negative (no time) is
    sent at the node's clock's now: tf2 stores such a stamp as that time, further back than its
    buffer from any stamped transform (``TF_OLD_DATA`` in every listener), and a driver that stamps
    so repeats it every frame. A stamp more than tf2's buffer ahead of the node's clock (once it has
    run: back at 0 after a simulator reset it still is a time, :func:`~cfi_pose_ros.frames.ahead_of_clock`)
    is not sent: every listener would keep that transform as the frame's newest for as long as
    it runs and refuse each one after it (``TF_OLD_DATA``, per message), so one input stamped years
    ahead cut that person's frame out of every tf2 buffer for good.

    When the node's clock jumps back (sim time: ``ros2 bag play --loop --clock``) or switches between
    system and sim time, the once-per-stamp record starts over: every ``tf2_ros.Buffer`` on that
    clock clears itself then, and the record kept each frame of a bag shorter than tf2's 10 s buffer
    out of /tf for good after its first pass.

    A frame another camera's people sent within tf2's buffer is not sent for this camera's (see
    :class:`~cfi_pose_ros.frames.OneCameraPerFrame`): :attr:`taken` says which the last send left out."""

    def __init__(self, tf2_ros, node):
        self._node = node
        before = set(node.publishers)
        self._broadcaster = tf2_ros.TransformBroadcaster(node)
        # the broadcaster's /tf publisher, found as what it added to the node (tf2_ros has no close
        # of its own, and names its attribute as it likes)
        self._publishers = [publisher for publisher in node.publishers if publisher not in before]
        self._clock = node.get_clock()
        self._once_per_stamp = OncePerStamp()
        self._one_camera_per_frame = OneCameraPerFrame()
        self.taken: dict[str, str] = {}     # frames the last send left out -> the camera frame they belong to
        self._clock_ran = False     # the clock has read a time past 0 on its time source (see ahead_of_clock)
        self._time_jumps = self._clock.create_jump_callback(tf2_clearing_jumps(), post_callback=self._start_over)

    def close(self) -> None:
        """Release the /tf publisher and the clock-jump callback: a finalized node, or one configured
        without TF output, advertised /tf for good."""
        self._time_jumps.unregister()
        for publisher in self._publishers:
            self._node.destroy_publisher(publisher)
        self._publishers = []

    def _start_over(self, jump) -> None:
        from rclpy.clock import ClockChange

        self._once_per_stamp = OncePerStamp()
        self._one_camera_per_frame = OneCameraPerFrame()
        # a jump back on one time source came from a time past 0 (a reset to 0 is a time); another
        # time source has yet to run
        self._clock_ran = jump.clock_change not in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED)

    def send(self, stamp, frames: list[FrameTransform], camera: str = "") -> bool:
        """Send ``frames`` of the people an input of frame ``camera`` saw at ``stamp`` (those not sent
        at it yet, nor another camera's: :attr:`taken`); False when ``stamp`` is too far ahead of
        the node's clock to be sent at all."""
        self.taken = {}
        now = self._clock.now()
        if stamp.sec < 0 or (stamp.sec == 0 and stamp.nanosec == 0):
            stamp = now.to_msg()
        stamp_ns = stamp.sec * 10**9 + stamp.nanosec
        self._clock_ran = self._clock_ran or now.nanoseconds > 0
        if ahead_of_clock(stamp_ns, now.nanoseconds, self._clock_ran):
            return False
        frames, self.taken = self._one_camera_per_frame.admit(camera, stamp_ns, frames)
        frames = self._once_per_stamp.admit(stamp_ns, frames)
        if frames:
            self._broadcaster.sendTransform([transform_stamped(stamp, frame) for frame in frames])
        return True
