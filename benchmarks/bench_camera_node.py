#!/usr/bin/env python3
"""End-to-end camera path through both node processes: Image -> detect_node -> lift_node -> 3D.

For each photo (skier: one person, bus: several people) this starts the
installed ``detect_node`` (RTMDet-nano + MoveNet Lightning from
``shared/fixtures/camera``) and ``lift_node`` (default weights, backend auto),
publishes the photo as an ``rgb8`` ``sensor_msgs/Image`` at 30 Hz with distinct
stamps (and a CameraInfo), and reports per-stage p50/p99:

* decode, detector, keypoint model, tracking, publish, detector total (image
  received -> keypoints published): the detector node's own timings from
  ``/diagnostics``, which cover the frames of its last 5 s (not the whole run): the
  first status after the last image is taken, so about the run's last 5 s
  (``timing_frames`` in the JSON says how many frames),
* lifting: the lifter's processing latency from its ``/diagnostics`` (likewise its last 5 s),
  and, measured here, 2D keypoints received -> 3D skeletons received (the
  lifter's processing plus one DDS hop),
* end to end: Image published here -> 3D skeletons received here,

and whether frames were dropped: frames sent, 2D and 3D arrays received, and
images the detector skipped because a newer one arrived while it was busy
(``superseded``; the node always works on the newest frame) or that a newer one
replaced in its depth-1 input queue before the node took them (sent minus the
detector's ``inputs_total``).

    python -P benchmarks/bench_camera_node.py --seconds 20 --threads 2 --out outputs/bench_camera_node

Images go reliable (``--best-effort`` for the sensor-data default): a 1 MB-3 MB
image is dozens of UDP fragments and best effort loses the whole image when the
kernel drops one, which on a loaded machine measures the network stack, not the nodes.
"""
from __future__ import annotations

import argparse
import array
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from cfi_pose_ros.arguments import non_negative_int, positive_float, positive_int
from cfi_pose_ros.ros_domain import run_in_own_domain

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = Path(os.environ.get("CFI_FIXTURES_DIR", REPO.parent / "shared" / "fixtures" / "camera"))
PHOTOS = (("skier.jpeg", "one person"), ("bus.jpg", "several people"))
STAGES = (("decode", "decode (image_to_bgr, rgb8)"), ("detector", "detector (RTMDet-nano)"),
          ("keypoint_model", "keypoint model (MoveNet, per image)"), ("tracking", "tracking"),
          ("publish", "publish 2D"), ("total", "detector node total (received -> 2D published)"))


def run_photo(photo: Path, seconds: float, rate_hz: float, threads: int, models: Path, out: Path,
              reliable: bool, detector_every: int) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from cfi_pose_ros.msg import HumanKeypoints2DArray, HumanPose3DArray
    from cfi_pose_ros.node.conversions import stamp_ns
    from cfi_pose_ros.node.base import create_executor
    from cfi_pose_ros.node.process import start_detect_node, start_lift_node, stop
    from cfi_pose_ros.node.replay import camera_info_msg

    bgr = cv2.imread(str(photo))
    height, width = bgr.shape[:2]
    prefix = f"/bench_{photo.stem.replace('.', '_')}_{os.getpid()}"
    topics = {"image": f"{prefix}/image_raw", "info": f"{prefix}/camera_info",
              "keypoints": f"{prefix}/human_keypoints_2d", "poses": f"{prefix}/human_pose_3d"}
    detector = start_detect_node(overrides={
        "autostart": True, "image_topic": topics["image"], "keypoints_topic": topics["keypoints"],
        "person_detector_model": str(models / "rtmdet_nano_person.onnx"),
        "keypoint_model": str(models / "movenet_singlepose_lightning.onnx"), "threads": threads,
        "person_detector_every": detector_every,
        "input_reliability": "reliable" if reliable else "best_effort"},
        log_path=out / f"detector_{photo.stem}.log")
    lifter = start_lift_node(overrides={
        "autostart": True, "input_topic": topics["keypoints"], "camera_info_topic": topics["info"],
        "output_topic": topics["poses"], "markers_topic": f"{prefix}/markers", "threads": threads},
        log_path=out / f"lifter_{photo.stem}.log")
    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node(f"bench_camera_client_{os.getpid()}")
    image_pub = node.create_publisher(Image, topics["image"], QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT))
    info_pub = node.create_publisher(CameraInfo, topics["info"], QoSProfile(
        depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    sent, got_2d, got_3d, people_2d = {}, {}, {}, {}
    diagnostics: dict[str, dict] = {}
    keep_first_status = [False]     # after the run: each node's first status, not a later one

    def on_2d(msg):
        got_2d.setdefault(stamp_ns(msg.header), time.perf_counter())
        people_2d[stamp_ns(msg.header)] = len(msg.people)

    def on_diag(msg):
        for status in msg.status:
            name = status.name.split(":")[0]
            if not (keep_first_status[0] and name in diagnostics):
                diagnostics[name] = {kv.key: kv.value for kv in status.values}

    reliable_out = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(HumanKeypoints2DArray, topics["keypoints"], on_2d, reliable_out)
    node.create_subscription(HumanPose3DArray, topics["poses"],
                             lambda m: got_3d.setdefault(stamp_ns(m.header), time.perf_counter()), reliable_out)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    executor = create_executor()
    executor.add_node(node)

    focal = float(max(width, height))               # ~53 degrees across the long side
    info = camera_info_msg(np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]]),
                           (width, height), "bench_camera_optical_frame")
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    msg.data = array.array("B", np.ascontiguousarray(bgr[..., ::-1]).tobytes())
    msg.header.frame_id = "bench_camera_optical_frame"

    def publish(stamp: int) -> None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        sent[stamp] = time.perf_counter()
        image_pub.publish(msg)

    def spin(until: float) -> None:
        while time.perf_counter() < until:
            executor.spin_once(timeout_sec=min(0.005, max(until - time.perf_counter(), 0.0)))

    try:
        # warm-up: discovery, model loading, first inferences
        deadline = time.perf_counter() + 180.0
        stamp = 1_000_000_000
        while not got_3d and time.perf_counter() < deadline:
            for process in (detector, lifter):
                if process.poll() is not None:
                    raise RuntimeError(f"a node exited ({process.args[0]}); see the logs in {out}")
            info_pub.publish(info)
            publish(stamp)
            stamp += 1
            spin(time.perf_counter() + 0.5)
        if not got_3d:
            raise RuntimeError(f"no 3D output within 180 s; see the logs in {out}")
        for i in range(30):                          # settle at the target rate
            publish(stamp + i)
            spin(time.perf_counter() + 1.0 / rate_hz)
        spin(time.perf_counter() + 1.0)
        sent.clear(), got_2d.clear(), got_3d.clear(), people_2d.clear()
        counts_before = diagnostics.get("cfi_pose_detector", {})
        superseded_before = int(counts_before.get("dropped.superseded", 0))
        inputs_before = int(counts_before.get("inputs_total", 0))

        frames = int(seconds * rate_hz)
        period_ns = int(1e9 / rate_hz)
        base = 2_000_000_000 * 10**9             # stamps of their own (2033-05-18)
        start = time.perf_counter()
        for i in range(frames):
            if i % 30 == 0:
                info_pub.publish(info)
            publish(base + i * period_ns)
            spin(start + (i + 1) / rate_hz)
        # The nodes' timings cover the frames of their last 5 s, so the statuses read are the first
        # ones after the last image (within the 1 s diagnostics period): read after the 2 s drain
        # below, they held 3 s of the run at most (80 of 240 frames timed in an 8 s run).
        drained = time.perf_counter() + 2.0
        diagnostics.clear()
        keep_first_status[0] = True
        deadline = time.perf_counter() + 5.0
        while time.perf_counter() < deadline and not {"cfi_pose_detector", "cfi_pose_lifter"} <= set(diagnostics):
            spin(time.perf_counter() + 0.05)
        spin(drained)
    finally:
        executor.shutdown()
        node.destroy_node()
        codes = [stop(detector), stop(lifter)]

    det, lift = diagnostics.get("cfi_pose_detector", {}), diagnostics.get("cfi_pose_lifter", {})
    end_to_end = np.array([(got_3d[s] - sent[s]) * 1e3 for s in got_3d if s in sent])
    lift_hop = np.array([(got_3d[s] - got_2d[s]) * 1e3 for s in got_3d if s in got_2d])
    # a stage no frame of the window timed has empty values
    stages = {key: (float(det[f"{key}_p50_ms"]), float(det[f"{key}_p99_ms"]))
              for key, _ in STAGES if det.get(f"{key}_p50_ms")}
    people = int(np.median(list(people_2d.values()))) if people_2d else 0
    return {"photo": photo.name, "size": f"{width}x{height}", "people": people, "rate_hz": rate_hz,
            "frames_sent": len(sent), "frames_2d": len(got_2d), "frames_3d": len(got_3d),
            "superseded": int(det.get("dropped.superseded", 0)) - superseded_before,
            # Images a newer one replaced in the subscription's depth-1 queue never reach the node's
            # callback, so no drop reason counts them: what was sent and the node did not take.
            "replaced_in_queue": len(sent) - (int(det.get("inputs_total", 0)) - inputs_before),
            "other_drops": {k: v for k, v in det.items() if k.startswith("dropped.") and k != "dropped.superseded"},
            "detector_stages": stages, "timing_frames": int(det.get("timing_frames", 0)),
            "lifter_latency": (float(lift.get("latency_p50_ms") or "nan"), float(lift.get("latency_p99_ms") or "nan")),
            "lifter_backend": lift.get("backend", "?"),
            "lift_hop": (float(np.percentile(lift_hop, 50)), float(np.percentile(lift_hop, 99)))
            if len(lift_hop) else (float("nan"), float("nan")),
            "end_to_end": (float(np.percentile(end_to_end, 50)), float(np.percentile(end_to_end, 99)))
            if len(end_to_end) else (float("nan"), float("nan")),
            "exit_codes": codes}


def table(rows: list[dict], threads: int, reliable: bool, detector_every: int) -> str:
    lines = [f"Camera path end to end through both node processes, {rows[0]['rate_hz']:.0f} Hz input, CPU, "
             f"ONNX Runtime {threads} intra-op thread(s) per model, person_detector_every={detector_every}, "
             f"images {'reliable' if reliable else 'best effort'} ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores)", "",
             "| image | people | stage | p50 ms | p99 ms |", "|---|---:|---|---:|---:|"]
    for r in rows:
        image = f"{r['photo']} ({r['size']})"
        for key, label in STAGES:
            if key in r["detector_stages"]:
                p50, p99 = r["detector_stages"][key]
                lines.append(f"| {image} | {r['people']} | {label} | {p50:.2f} | {p99:.2f} |")
        lines.append(f"| {image} | {r['people']} | lifting ({r['lifter_backend']}, lifter diagnostics, last 5 s) | "
                     f"{r['lifter_latency'][0]:.2f} | {r['lifter_latency'][1]:.2f} |")
        lines.append(f"| {image} | {r['people']} | lifting + DDS hop (2D received -> 3D received) | "
                     f"{r['lift_hop'][0]:.2f} | {r['lift_hop'][1]:.2f} |")
        lines.append(f"| {image} | {r['people']} | **end to end (Image published -> 3D received)** | "
                     f"**{r['end_to_end'][0]:.2f}** | **{r['end_to_end'][1]:.2f}** |")
    lines += ["", "Detector stages and lifting: the nodes' diagnostics, the frames of their last 5 s (detector: "
              + ", ".join(f"{r['photo']} {r['timing_frames']} of {r['frames_2d']} frames" for r in rows) + ")."]
    lines += ["", "| image | frames sent | 2D arrays | 3D arrays | replaced in the detector's input queue | "
              "skipped by the detector (newer frame waiting) | other drops | frames dropped |",
              "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        dropped = r["frames_sent"] - r["frames_3d"]
        share = 100.0 * dropped / max(r["frames_sent"], 1)
        verdict = "no" if dropped == 0 else f"yes: {dropped} ({share:.0f} %)"
        lines.append(f"| {r['photo']} | {r['frames_sent']} | {r['frames_2d']} | {r['frames_3d']} | "
                     f"{r['replaced_in_queue']} | {r['superseded']} | {r['other_drops'] or 'none'} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--seconds", type=positive_float, default=20.0, help="measurement per photo")
    parser.add_argument("--rate", type=positive_float, default=30.0, help="image rate (Hz)")
    parser.add_argument("--threads", type=non_negative_int, default=2,
                        help="ONNX Runtime intra-op threads per model (0 = its default)")
    parser.add_argument("--detector-every", type=positive_int, default=3,
                        help="the detector node's person_detector_every (1 = person detector on every image)")
    parser.add_argument("--best-effort", action="store_true", help="publish images best effort (sensor data QoS)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_camera_node")
    args = parser.parse_args(argv)
    return run_in_own_domain("bench_camera_node", lambda: run_benchmark(args))


def run_benchmark(args) -> int:
    """The measurement, in the ROS domain main has claimed."""
    models, images = args.fixtures / "models", args.fixtures / "images"
    if not (models / "rtmdet_nano_person.onnx").exists():
        print(f"fixtures not found under {args.fixtures} (use --fixtures)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    reliable = not args.best_effort
    rows = []
    for name, _ in PHOTOS:
        rows.append(run_photo(images / name, args.seconds, args.rate, args.threads, models, args.out, reliable,
                              args.detector_every))
        print(json.dumps(rows[-1]), file=sys.stderr)
    (args.out / "bench_camera_node.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = table(rows, args.threads, reliable, args.detector_every)
    (args.out / "bench_camera_node.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
