"""The main job on a fresh machine: the real node, a 30 Hz replay, and what came back.

Starts the installed lifting node (``config/lift.yaml``, default weights and
backend) as its own process, replays the bundled 2D keypoint clip (two people,
real Human3.6M motion of the test subject S9) at 30 Hz with its CameraInfo,
receives ``/human_pose_3d`` and the RViz markers, and writes into ``--out``:

* ``skeletons.gif``: the received markers rendered headless the way RViz shows them,
* ``skeletons.png``: one frame of it,
* ``report.md`` / ``report.json``: people, frames, latency p50/p99, and the error
  of the published absolute skeletons against the clip's 3D truth,
* ``demo.mcap``: the run as a rosbag2-compatible MCAP bag: the 2D input and CameraInfo as
  sent, ``/human_pose_3d`` and the markers as received (open it in Foxglove, or
  ``ros2 bag info`` / ``ros2 bag play`` it where rosbag2 is installed).

A SIGINT or SIGTERM stops the node and ends the demo with exit status 130 or 143 and one line;
during the replay, what came back so far is still written (``demo.mcap``, ``report.md`` /
``report.json``, marked ``interrupted_by``; no rendering).

    python -m cfi_pose_ros.demo --out outputs/demo
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

if __name__ == "__main__":
    # Before the imports (numpy, rclpy, matplotlib: up to a second), where nothing exists to stop
    # or save: a stop signal ends the demo there at once, not in a KeyboardInterrupt traceback
    # from inside an import (exit -2) or SIGTERM's silent death (-15). See run_demo for later.
    from cfi_pose_ros.node.startup import start_ros_process
    start_ros_process("demo")

import numpy as np  # noqa: E402

from cfi_pose_ros.arguments import output_directory, positive_float, positive_int  # noqa: E402
from cfi_pose_ros.ros_domain import DomainTaken, own_ros_domain  # noqa: E402


def pose_errors_mm(received, clip) -> dict:
    """Absolute and root-relative MPJPE of the published people against the clip's truth, by id."""
    from cfi_pose_ros.metrics import mpjpe

    absolute, relative = [], []
    for stamp, msg in received.poses.items():
        frame = received.clip_frame.get(stamp)
        if frame is None:
            continue
        for human in msg.humans:
            if human.id not in clip.ids:
                continue
            truth = clip.truth_camera_m[frame, clip.ids.index(human.id)]
            pred = np.array([[p.x, p.y, p.z] for p in human.keypoints])
            if human.root_source == 1:
                absolute.append(mpjpe(pred, truth) * 1000)
            relative.append(mpjpe(pred - pred[:1], truth - truth[:1]) * 1000)
    return {"absolute_mpjpe_mm": float(np.mean(absolute)) if absolute else None,
            "root_relative_mpjpe_mm": float(np.mean(relative)) if relative else None,
            "person_frames_measured": len(relative)}


class DemoError(RuntimeError):
    """The demo could not run, with the node's own words."""


class Interrupted(Exception):
    """A stop signal (``signum``) ended the demo; ``wrote``: what it wrote of the run, if anything."""

    def __init__(self, signum: int, wrote: str = ""):
        super().__init__(signum, wrote)
        self.signum, self.wrote = signum, wrote


def node_configuration(log_path: Path) -> dict:
    """What the lift node says it configured (its ``configured: {...}`` line: backend, precision,
    weights' SHA-256, ...), or ``{}``: the report names what ran, not what was asked for (it said
    "default weights" whatever ``--weights`` was)."""
    import ast

    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        _, found, described = line.partition("]: configured: ")
        if found:
            try:
                return ast.literal_eval(described)
            except (ValueError, SyntaxError):
                return {}
    return {}


def node_failure(log_path: Path) -> str:
    """The lift node's first FATAL or ERROR line (the cause: the last one says only that it is
    exiting), or where its log is."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    reasons = [line for line in lines if line.startswith(("[FATAL]", "[ERROR]"))]
    return f"{reasons[0]} (log: {log_path})" if reasons else f"see {log_path}"


def run_demo(out: Path, backend: str = "auto", weights: str = "", frames: int | None = None,
             rate_hz: float = 30.0) -> dict:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from cfi_pose_ros.node.conversions import markers_from_msg
    from cfi_pose_ros.node.base import StopSignals, create_executor
    from cfi_pose_ros.node.process import start_lift_node, stop
    from cfi_pose_ros.node.replay import Clip, ReplayClient
    from cfi_pose_ros.render import render_animation, render_markers
    from cfi_pose_ros.weights import resolve_weights

    out.mkdir(parents=True, exist_ok=True)
    clip = Clip.load()
    # From here (the node is about to start) a SIGINT / SIGTERM only asks the waiting and the replay
    # to end: the node is stopped, what came back is written, and Interrupted says so. rclpy's own
    # handlers shut the context down under those loops instead (SIGTERM: an
    # ExternalShutdownException traceback), Python's raised KeyboardInterrupt wherever the demo
    # was: either way the frames received were lost.
    signals = StopSignals()
    stopping = lambda: signals.requested    # noqa: E731
    node = start_lift_node(overrides={"autostart": True, "backend": backend, "weights": weights},
                           log_path=out / "node.log")
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    client = ReplayClient()
    executor = create_executor()
    executor.add_node(client)
    try:
        print("waiting for the lifting node...", file=sys.stderr)
        if client.wait_for_lifter(executor, clip, timeout=300.0,
                                  alive=lambda: node.poll() is None and not stopping()):
            print(f"replaying {frames or len(clip.pixels)} frames at {rate_hz:g} Hz", file=sys.stderr)
            client.replay(executor, clip, rate_hz=rate_hz, frames=frames, stop=stopping)
        elif not stopping():
            state = "stopped" if node.poll() is not None else "did not answer"
            raise DemoError(f"the lifting node {state}: {node_failure(out / 'node.log')}")
    finally:
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown()
        node_rc = stop(node)
    if stopping() and not client.received.clip_frame:     # before the replay's first frame
        raise Interrupted(signals.signum)

    bag_messages = client.write_bag(out / "demo.mcap")
    received = client.received
    latencies = received.latencies_ms()
    stamps = sorted(s for s in received.markers if s in received.clip_frame)
    frames_markers = [markers_from_msg(received.markers[s]) for s in stamps]
    rendered = bool(frames_markers) and not stopping()    # seconds of matplotlib: not for a run told to stop
    if rendered:
        render_animation(frames_markers[::2], out / "skeletons.gif", fps=rate_hz / 2,
                         title="/human_pose_3d/markers")
        render_markers(frames_markers[len(frames_markers) // 2], out / "skeletons.png",
                       title="/human_pose_3d/markers (middle frame)")
    report = {
        "frames_sent": len(received.send_time), "frames_received": len(received.people),
        "people_per_frame": float(np.mean([len(m.humans) for m in received.poses.values()])) if received.poses else 0,
        "latency_p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "latency_p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
        "node_exit_code": node_rc, **pose_errors_mm(received, clip), "bag_messages": bag_messages,
    }
    configured = node_configuration(out / "node.log")
    report.update({"weights": resolve_weights(weights), "weights_sha256": configured.get("weights_sha256"),
                   "backend": configured.get("backend"), "precision": configured.get("precision")})
    if stopping():
        report["interrupted_by"] = signal.Signals(signals.signum).name
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# cfi_pose_ros demo", "",
             f"The lifting node (own process, `config/lift.yaml`, weights `{Path(report['weights']).name}`, backend "
             f"{report['backend']}) fed a 2D clip of two",
             f"people at {rate_hz:g} Hz over DDS; figures from the messages received on `/human_pose_3d`.", "",
             "| figure | value |", "|---|---|"]
    for key, value in report.items():
        lines.append(f"| {key} | {value:.2f} |" if isinstance(value, float) else f"| {key} | {value} |")
    lines += ["", "![skeletons](skeletons.gif)", ""] if rendered else [""]
    (out / "report.md").write_text("\n".join(lines))
    if stopping():
        raise Interrupted(signals.signum, f"what came back of {report['frames_sent']} frames sent: "
                                          f"{out}/report.md, report.json, demo.mcap")
    return report


def main(argv=None) -> int:
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME as LIFT_NODE_PARAMETERS_BY_NAME

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--backend", default="auto", choices=LIFT_NODE_PARAMETERS_BY_NAME["backend"].choices)
    parser.add_argument("--weights", default="", help="weights file (default: the packaged weights)")
    parser.add_argument("--frames", type=positive_int, default=None,
                        help="frames to replay, the clip looped past its end (default: the whole clip once)")
    parser.add_argument("--rate", type=positive_float, default=30.0, help="frames per second")
    args = parser.parse_args(argv)
    if not args.out.strip():
        parser.error("--out must name a folder")
    # where the results go, checked before the node starts: an --out that is a file, or in a
    # folder that cannot be written, was a traceback (exit 1)
    try:
        output_directory(args.out)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        # in a domain of its own unless the caller chose one; either way no other demo's
        with own_ros_domain():
            report = run_demo(Path(args.out), args.backend, args.weights, args.frames, args.rate)
    except (DemoError, DomainTaken) as exc:        # a bad --weights: the node's reason, not a traceback
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as stopped:
        print(f"demo: interrupted{'; wrote ' + stopped.wrote if stopped.wrote else ''}", file=sys.stderr)
        return 128 + stopped.signum
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}/skeletons.gif, skeletons.png, report.md, demo.mcap")
    ok = report["frames_received"] > 0 and report["node_exit_code"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
