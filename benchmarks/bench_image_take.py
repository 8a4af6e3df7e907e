"""What taking a raw image costs a subscription, three ways, in one run over real DDS.

* ``rmw typed take``: ``create_subscription(Image, ...)``, rmw deserializes; a message whose bytes
  are not an image is dropped inside ``take`` without a count or a word.
* ``rclpy deserialize_message``: the bytes taken raw, rclpy's generic deserialization.
* ``in place (cfi_pose_ros.cdr)``: the bytes taken raw and read by the nodes' image reader, the
  pixels left in the bytes (what both nodes do; a malformed image is counted).

Each figure is the median time from a spin that finds the image waiting to the end of the
callback, which wraps the pixels in a NumPy array (the detector's first step), over
``--images`` images per way and size, the ways alternating in rounds (one process: publisher
and subscription share the machine's cores).

    python -P benchmarks/bench_image_take.py              # ~20 s
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from cfi_pose_ros.arguments import positive_int
from cfi_pose_ros.ros_domain import run_in_own_domain

SIZES = ((640, 480), (1280, 720), (1920, 1080))
WAYS = ("rmw typed take", "rclpy deserialize_message", "in place (cfi_pose_ros.cdr)")


def _take_times(executor, node, way: str, width: int, height: int, images: int) -> list[float]:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from cfi_pose_ros.node.conversions import image_from_serialized

    times, started = [], [0.0]

    def done(data) -> None:
        np.frombuffer(data, dtype=np.uint8)
        times.append(time.perf_counter() - started[0])

    callbacks = {WAYS[0]: lambda msg: done(msg.data),
                 WAYS[1]: lambda raw: done(deserialize_message(raw, Image).data),
                 WAYS[2]: lambda raw: done(image_from_serialized(raw).data)}
    topic = f"bench_image_take_{os.getpid()}"
    subscription = node.create_subscription(Image, topic, callbacks[way], 1, raw=way != WAYS[0])
    publisher = node.create_publisher(Image, topic, 1)
    deadline = time.monotonic() + 10
    while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    msg = Image(height=height, width=width, encoding="bgr8", step=3 * width)
    msg.data = np.random.default_rng(0).integers(0, 256, height * width * 3, dtype=np.uint8).tobytes()
    for _ in range(images):
        publisher.publish(msg)
        time.sleep(0.03)            # delivered and waiting before the timed spin
        started[0] = time.perf_counter()
        executor.spin_once(timeout_sec=1.0)
    node.destroy_subscription(subscription)
    node.destroy_publisher(publisher)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=positive_int, default=20, help="images per way, size and round")
    parser.add_argument("--rounds", type=positive_int, default=3)
    args = parser.parse_args(argv)
    return run_in_own_domain("bench_image_take", lambda: run_benchmark(args))


def run_benchmark(args) -> int:
    """The measurement, in the ROS domain main has claimed."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()       # its own: the caller's default context may be in use
    rclpy.init(context=context)
    node = rclpy.create_node(f"bench_image_take_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        times = {(size, way): [] for size in SIZES for way in WAYS}
        for _ in range(args.rounds):
            for size in SIZES:
                for way in WAYS:
                    times[size, way] += _take_times(executor, node, way, *size, args.images)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    print("| image (bgr8) | " + " | ".join(WAYS) + " |")
    print("|---|" + "---:|" * len(WAYS))
    for size in SIZES:
        cells = [f"{1e3 * statistics.median(times[size, way]):.2f} ms (n={len(times[size, way])})" for way in WAYS]
        print(f"| {size[0]} x {size[1]} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
