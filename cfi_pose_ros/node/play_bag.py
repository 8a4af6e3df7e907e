"""Replay an MCAP bag into running nodes, for machines without rosbag2 (``ros2 bag play`` does
the same where it is installed).

Publishes the bag's ``HumanKeypoints2DArray``, ``Image``, ``CompressedImage`` and
``CameraInfo`` messages (or the ``--topics`` given) on their recorded topics (or ``--remap``
ped ones) at the recorded rate times ``--rate``, as the CDR bytes that were recorded (no
re-serialization). A message that cannot go out on time is published as soon as possible;
the lateness is reported. Messages are read from the file as they are due, never all at once
(a camera bag does not fit in memory). Each topic is offered the QoS its recorded publishers
offered, as ros2 bag play offers it (``recorded_qos``: rosbag2's ``offered_qos_profiles``,
history keep last 10); a topic recorded without it, or whose publishers offered different QoS
(said in a warning), reliable and volatile, which reaches best-effort (sensor data) and reliable
subscribers alike. A SIGINT or SIGTERM, at any
moment, ends it with exit status 130 or 143 and one line.

``--clock [HZ]`` (as ``ros2 bag play --clock``, 40 Hz when no HZ is given) publishes the bag's time
on /clock (rosgraph_msgs/Clock, best effort, keep last 1: ``rclcpp::ClockQoS``): the recorded time
of the message being played, advancing ``--rate`` times as fast as the wall clock; it stands at the
first played message's time while waiting for subscribers and during ``--delay``, and jumps back
to it at each pass of ``--loop``. Nodes run with ``use_sim_time:=true`` take their time from it.
``--loop`` plays the bag again and again until a SIGINT or SIGTERM.

    python -m cfi_pose_ros.node.play_bag outputs/demo/demo.mcap --rate 2
    python -m cfi_pose_ros.node.play_bag outputs/demo/demo.mcap --clock --loop
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

if __name__ == "__main__":
    # Before the imports below (rclpy, numpy: 0.1 to 0.3 s), where nothing exists to tear down: a
    # stop signal ends the run there as at any later moment (see main), not in a KeyboardInterrupt
    # traceback from inside an import (exit -2) or SIGTERM's silent death (-15).
    from cfi_pose_ros.node.startup import start_ros_process
    start_ros_process("play_bag")

from rclpy.exceptions import InvalidTopicNameException  # noqa: E402
from rclpy.duration import Duration, Infinite  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from cfi_pose_ros.arguments import non_negative_float, positive_float  # noqa: E402
from cfi_pose_ros.bag import BagMessage, PlaybackClock, bag_summary, message_class, read_bag  # noqa: E402
from cfi_pose_ros.recorded_qos import INFINITE, RecordedOffer, playback_offer  # noqa: E402

# What a perception bag carries into this package's nodes.
REPLAYED_TYPES = ("cfi_pose_ros/msg/HumanKeypoints2DArray", "sensor_msgs/msg/Image",
                  "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo")
PLAYBACK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)     # rosbag2's default offer
# rclcpp::ClockQoS(), what ros2 bag play --clock publishes /clock with (and rclpy's TimeSource subscribes with)
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                       durability=DurabilityPolicy.VOLATILE)
DEFAULT_CLOCK_HZ = 40.0     # ros2 bag play --clock without a value
REPORTED_MESSAGES = 100_000     # the messages a playback's lateness is reported over, the last ones


@dataclass
class PlaybackReport:
    published: int = 0
    duration_s: float = 0.0
    # of the last REPORTED_MESSAGES messages: a --loop plays until stopped, and lists of every message
    # grew by a few MB an hour
    lateness_s: deque[float] = field(default_factory=lambda: deque(maxlen=REPORTED_MESSAGES))  # publish - due
    publish_times: deque[float] = field(default_factory=lambda: deque(maxlen=REPORTED_MESSAGES))  # perf_counter s


class BagMessages:
    """A bag's messages on ``topics``, read from the file again for every pass: a camera bag does
    not fit in memory (a 10-minute 720p recording holds 50 GB of images)."""

    def __init__(self, path: str | Path, topics: list[str]):
        self.path, self.topics = path, topics

    def __iter__(self) -> Iterator[BagMessage]:
        return read_bag(self.path, self.topics)


class BagPlayer:
    """Publishes a bag's messages from ``node`` (any rclpy node), spinning ``executor`` between them.

    ``messages``: in log-time order, iterable once per :meth:`play` (a list, or :class:`BagMessages`);
    ``topic_types``: topic -> type of every topic in them (found from ``messages`` when not given);
    ``clock_hz``: publish :attr:`clock` (the bag's time) on /clock at this frequency (None: no /clock);
    ``offered_qos``: recorded topic -> its channels' ``offered_qos_profiles`` texts, played as
    :func:`recorded_qos.playback_offer` chooses (a topic without: reliable, volatile); what that
    has to say is in :attr:`qos_warnings`."""

    def __init__(self, node, messages: Iterable[BagMessage], remap: dict[str, str] | None = None,
                 topic_types: dict[str, str] | None = None, clock_hz: float | None = None,
                 offered_qos: dict[str, tuple[str, ...]] | None = None):
        self.node = node
        self.messages = messages
        self.remap = remap or {}
        self.clock = PlaybackClock()
        self._clock_publisher = None
        if topic_types is None:
            topic_types = {msg.topic: msg.type_name for msg in messages}
        self._publishers = {}
        published_types = {}
        for recorded, type_name in sorted(topic_types.items()):
            topic = self.remap.get(recorded, recorded)
            if topic in published_types and published_types[topic][1] != type_name:
                # one publisher per topic: the second type's bytes went out through the first's
                # (a CameraInfo subscriber got keypoints as CameraInfo, "sequence size exceeds ...")
                raise ValueError(f"--remap puts {published_types[topic][0]} ({published_types[topic][1]}) and "
                                 f"{recorded} ({type_name}) on one topic {topic}")
            published_types[topic] = (recorded, type_name)
        if clock_hz is not None and "/clock" in published_types:
            raise ValueError(f"--clock and the bag's {published_types['/clock'][0]} ({published_types['/clock'][1]}) "
                             "would both publish on /clock")
        self._types = {topic: type_name for topic, (_, type_name) in published_types.items()}
        self.qos_warnings: list[str] = []
        for topic, (recorded, type_name) in published_types.items():
            offer, warning = playback_offer(recorded, (offered_qos or {}).get(recorded, ()))
            if warning:
                self.qos_warnings.append(warning)
            try:
                self._publishers[topic] = node.create_publisher(message_class(type_name), topic, playback_qos(offer))
            except InvalidTopicNameException as exc:
                reason = " ".join(str(exc).split())
                if topic != recorded:
                    raise ValueError(f"--remap {recorded}:={topic}: not a valid ROS topic name ({reason})") from None
                # a bag's own topic (another recorder's, "/cam 1"): it was "--remap /cam 1:=/cam 1", no remap given
                raise ValueError(f"the bag's topic {recorded!r} is not a valid ROS topic name ({reason}): publish it "
                                 "under one with --remap, or leave it out with --topics") from None
        if clock_hz is not None:
            if not clock_hz > 0:
                raise ValueError(f"--clock takes a positive frequency, got {clock_hz}")
            from rosgraph_msgs.msg import Clock
            self._clock_message = Clock
            self._clock_publisher = node.create_publisher(Clock, "/clock", CLOCK_QOS)
            self._clock_timer = node.create_timer(1.0 / clock_hz, lambda: self.publish_clock())

    def publish_clock(self, wall_s: float | None = None) -> None:
        """The bag's time at ``wall_s`` (``time.perf_counter()`` seconds; default now) on /clock (with
        ``clock_hz``; nothing before the clock is held or started)."""
        now_ns = self.clock.now_ns(time.perf_counter() if wall_s is None else wall_s)
        if self._clock_publisher is not None and now_ns is not None:
            msg = self._clock_message()
            msg.clock.sec, msg.clock.nanosec = divmod(now_ns, 10**9)
            self._clock_publisher.publish(msg)

    def first_time_ns(self) -> int | None:
        """The recorded time of the first message it plays (None: none): the clock's time before playing."""
        return next((msg.log_time_ns for msg in self.messages), None)

    @classmethod
    def from_bag(cls, node, path: str | Path, topics: list[str] | None = None,
                 remap: dict[str, str] | None = None, clock_hz: float | None = None) -> "BagPlayer":
        """The topics from the bag's summary; the messages streamed from the file while playing."""
        summary, _ = bag_summary(path)
        # a --topics or --remap FROM the bag does not hold or plays no message of (a typo, another
        # recording's name) was dropped without a word: exit 0, and the subscriber on it got nothing
        absent = [topic for topic in topics or () if topic not in summary]
        if absent:
            raise ValueError(f"{path}: --topics {' '.join(absent)}: not in the bag (its topics: "
                             f"{', '.join(sorted(summary)) or 'none'})")
        chosen = {topic: info for topic, info in summary.items()
                  if (topic in topics if topics is not None else info.type_name in REPLAYED_TYPES)}
        # a topic whose channels hold no ROS 2 messages (json, or cdr without a schema) has none to publish:
        # --topics named it "not a ROS message type name: ''", and one that only had a type's name
        # from a json channel was waited for, then "no messages on [...]" (it held messages)
        foreign = sorted(topic for topic, info in chosen.items() if not info.ros2)
        no_ros2 = (f"{', '.join(foreign)} {'holds' if len(foreign) == 1 else 'hold'} no ROS 2 messages (no channel "
                   "of cdr messages with a schema)")
        if foreign and topics is not None:
            raise ValueError(f"{path}: {no_ros2}: nothing to publish")
        topic_types = {topic: info.type_name for topic, info in chosen.items() if info.ros2}
        if not topic_types:
            raise ValueError(f"{path}: nothing to replay (topics {topics or 'of types ' + ', '.join(REPLAYED_TYPES)})"
                             + (f"; {no_ros2}" if foreign else ""))
        for source, target in (remap or {}).items():
            if source not in topic_types:
                raise ValueError(f"--remap {source}:={target}: {source} is not played (played: "
                                 f"{', '.join(sorted(topic_types))}"
                                 + ("; name it in --topics" if source in summary and topics is None else "") + ")")
        return cls(node, BagMessages(path, sorted(topic_types)), remap, topic_types, clock_hz,
                   {topic: chosen[topic].offered_qos for topic in topic_types})

    @property
    def topics(self) -> list[str]:
        """The topics it publishes on (after ``remap``)."""
        return sorted(self._publishers)

    def wait_for_subscribers(self, executor, timeout_s: float, stop: Callable[[], bool] = lambda: False) -> bool:
        """Until every topic has a matched subscriber (or the timeout, or ``stop()``): a replay into
        nodes that have not discovered it yet would lose its first messages."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not stop():
            if all(pub.get_subscription_count() > 0 for pub in self._publishers.values()):
                return True
            executor.spin_once(timeout_sec=0.05)
        return False

    def type_clashes(self) -> list[str]:
        """The topics it publishes on where the graph has an endpoint of another type (a subscriber of
        CameraInfo on the topic a remap put keypoints on), each as one sentence: such a subscriber is
        never matched and gets nothing, and the replay said only "not every topic has a subscriber"."""
        graph = dict(self.node.get_topic_names_and_types())
        clashes = []
        for topic in self.topics:
            others = sorted(set(graph.get(topic, ())) - {self._types[topic]})
            if others:
                clashes.append(f"{topic} is {' and '.join(others)} on the graph, the bag's messages for it "
                               f"{self._types[topic]}: its subscribers would get nothing")
        return clashes

    def play(self, executor, rate: float = 1.0, stop: Callable[[], bool] = lambda: False,
             loop: bool = False, delay: float = 0.0) -> PlaybackReport:
        """Every message at its time, or those due before ``stop()`` (a stop signal) turned true; with
        ``loop``, pass after pass until ``stop()``, each after ``delay`` seconds (as ``ros2 bag play
        --delay``: "before play (each loop)"), the clock held at the first message's time meanwhile.
        Each pass starts :attr:`clock` at its first message's recorded time (publishing it on /clock
        at once), and each message is due when the clock reads its recorded time."""
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.clock.rate = rate
        report = PlaybackReport()
        start = time.perf_counter()
        first_ns = None
        while not stop():
            if first_ns is not None:
                self.clock.hold(first_ns)
            _spin_until(executor, time.perf_counter() + delay, stop, 0.05)
            started = False
            for msg in self.messages:
                if stop():
                    break
                if not started:
                    first_ns = msg.log_time_ns
                    pass_start = time.perf_counter()
                    self.clock.start(msg.log_time_ns, pass_start)
                    self.publish_clock(pass_start)      # exactly the first message's time
                    started = True
                due = self.clock.due(msg.log_time_ns)
                _spin_until(executor, due, stop, 0.005)
                if stop():
                    break
                self._publishers[self.remap.get(msg.topic, msg.topic)].publish(msg.data)
                now = time.perf_counter()
                report.publish_times.append(now)
                report.lateness_s.append(now - due)
                report.published += 1
            if not (loop and started):
                break
        report.duration_s = time.perf_counter() - start
        return report


def playback_qos(offer: RecordedOffer | None) -> QoSProfile:
    """The publisher profile for a recorded offer (None: :data:`PLAYBACK_QOS`), keep last 10 as
    ros2 bag play's."""
    if offer is None:
        return PLAYBACK_QOS

    def duration(ns: int) -> Duration:
        return Infinite if ns == INFINITE else Duration(nanoseconds=ns)

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=PLAYBACK_QOS.depth,
                      reliability=ReliabilityPolicy[offer.reliability.upper()],
                      durability=DurabilityPolicy[offer.durability.upper()],
                      deadline=duration(offer.deadline_ns), liveliness=LivelinessPolicy[offer.liveliness.upper()],
                      liveliness_lease_duration=duration(offer.liveliness_lease_ns))


def _spin_until(executor, end: float, stop: Callable[[], bool], step: float) -> None:
    """Spin ``executor`` (callbacks, the /clock timer) until ``time.perf_counter()`` reaches ``end`` or
    ``stop()`` turns true, at most ``step`` seconds a spin."""
    while (remaining := end - time.perf_counter()) > 0 and not stop():
        executor.spin_once(timeout_sec=min(remaining, step))


def main(argv=None) -> int:
    import numpy as np
    import rclpy
    from mcap.exceptions import McapError
    from rclpy.signals import SignalHandlerOptions

    from cfi_pose_ros.node.base import StopSignals, create_executor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag")
    parser.add_argument("--rate", type=positive_float, default=1.0,
                        help="playback speed: 1 = as recorded, 2 = twice as fast")
    parser.add_argument("--topics", nargs="*", default=None, help="topics to replay (default: every 2D keypoint, "
                        "image and CameraInfo topic)")
    parser.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO", help="publish FROM's messages on TO")
    parser.add_argument("--wait-for-subscribers", type=non_negative_float, default=10.0, metavar="S",
                        help="wait up to S seconds for every topic to have a subscriber before starting")
    parser.add_argument("--delay", type=non_negative_float, default=0.0, metavar="S",
                        help="then sleep S seconds before playing, each pass of --loop (as ros2 bag play --delay): "
                             "a subscriber can match "
                             "a publisher later than the publisher matches it, and best-effort messages sent in "
                             "between are lost")
    parser.add_argument("--clock", type=positive_float, nargs="?", const=DEFAULT_CLOCK_HZ, default=None,
                        metavar="HZ", help="publish the bag's time on /clock at HZ (default %(const)g, as ros2 bag "
                                           "play --clock): for nodes run with use_sim_time:=true")
    parser.add_argument("--loop", action="store_true",
                        help="play the bag again and again (the /clock of --clock jumps back each time) until "
                             "SIGINT or SIGTERM")
    args = parser.parse_args(argv)
    bad = [item for item in args.remap if ":=" not in item]
    if bad:
        parser.error(f"--remap takes FROM:=TO, got {bad}")
    remap = dict(item.split(":=", 1) for item in args.remap)
    # From here a SIGINT / SIGTERM only asks the loops below to end; the node and the context are
    # torn down and the run exits 128 + the signal's number. rclpy's own handlers shut the context
    # down under a spinning loop instead: SIGTERM ended in an ExternalShutdownException traceback
    # (exit 1).
    signals = StopSignals()
    stopping = lambda: signals.requested    # noqa: E731
    # args=[]: without it rclpy hands sys.argv to rcl, which also takes every FROM:=TO of --remap as a
    # (deprecated) global remap rule of this node and applies it on top of ours.
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("cfi_bag_player")
    executor = create_executor()
    executor.add_node(node)
    try:
        player = BagPlayer.from_bag(node, args.bag, args.topics, remap, args.clock)
        for warning in player.qos_warnings:
            print(f"play_bag: warning: {warning}", file=sys.stderr)
        if args.clock is not None and (first_ns := player.first_time_ns()) is not None:
            player.clock.hold(first_ns)     # on /clock from now: sim-time nodes have a time before any message
        if not player.wait_for_subscribers(executor, args.wait_for_subscribers, stopping) and not stopping():
            clashes = player.type_clashes()
            if clashes:
                raise ValueError("; ".join(clashes))
            print("not every topic has a subscriber; playing anyway", file=sys.stderr)
        report = player.play(executor, args.rate, stopping, args.loop, args.delay)
    except (ValueError, OSError, McapError) as exc:      # no such bag, not MCAP, cut short, nothing to play
        print(f"play_bag: error: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if stopping():
        print("play_bag: interrupted", file=sys.stderr)
        return 128 + signals.signum
    if not report.published:                             # topics whose messages the bag does not hold
        print(f"play_bag: error: {args.bag}: no messages on {player.topics}", file=sys.stderr)
        return 2
    late = np.array(report.lateness_s) * 1e3
    over = f" (of the last {len(late)})" if len(late) < report.published else ""
    print(f"published {report.published} messages in {report.duration_s:.2f} s at rate {args.rate:g}; "
          f"lateness{over} p50 {np.percentile(late, 50):.2f} ms, max {late.max():.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
