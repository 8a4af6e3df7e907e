"""End-to-end latency of the lifting node against the model alone, measured in one run.

For 1 and 5 people at 30 Hz: the time from publishing a HumanKeypoints2DArray
in this process to receiving the HumanPose3DArray from the node process
(default weights and backend, config/lift.yaml), next to the model-only
latency (the same engine, the same batch) measured here first. Then a soak at
30 Hz that samples the node's RSS to show memory stays flat. First, the floor:
the same round trip through a relay process that does no work (what rclpy and
DDS cost by themselves).

    python -P benchmarks/bench_node.py --seconds 20 --soak-seconds 600 --out outputs/bench_node
    python -P benchmarks/bench_node.py --flip-cost --people 5 --seconds 10   # what flip_test costs end to end

Targets (2 CPU cores): p50 <= 1.3x model-only, p99 <= 2x p50, no input dropped at
30 Hz, RSS growth < 5 % over 10 minutes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cfi_pose_ros.arguments import non_negative_float, non_negative_int, number_in, positive_int
from cfi_pose_ros.ros_domain import run_in_own_domain


def model_only_ms(people: int, repeats: int, threads: int | None) -> dict:
    """The engine the node builds (its default parameters, ``threads`` if given) alone on one clip
    frame: back-to-back (caches and threads hot: the target's baseline) and paced at 30 Hz like
    the node's input (the same idle gaps the node sees)."""
    from cfi_pose_ros.camera import normalize_screen
    from cfi_pose_ros.inference import create_lifter
    from cfi_pose_ros.inference.batching import padded_size
    from cfi_pose_ros.node.parameters import lifter_options
    from cfi_pose_ros.node.replay import Clip

    clip = Clip.load()
    options = lifter_options()
    if threads is not None:
        options["threads"] = threads or None       # 0: the library's default, as in the node
    index = np.arange(people) % clip.pixels.shape[1]
    batch = normalize_screen(clip.pixels[0][index], *clip.image_size).astype(np.float32)

    def timed(lifter, count: int, gap_s: float) -> list[float]:
        times = []
        for _ in range(count):
            if gap_s:
                time.sleep(gap_s)
            start = time.perf_counter()
            lifter.lift(batch)
            times.append((time.perf_counter() - start) * 1000)
        return times

    lifter = create_lifter(**options, log=lambda *_: None)
    timed(lifter, 20, 0.0)
    hot, paced = timed(lifter, repeats, 0.0), timed(lifter, max(repeats // 5, 30), 1 / 30)
    return {"backend": lifter.backend, "threads": options["threads"],
            "batch": padded_size(min(people, lifter.batch_sizes[-1]), lifter.batch_sizes),
            "p50_ms": float(np.percentile(hot, 50)), "p99_ms": float(np.percentile(hot, 99)),
            "paced_p50_ms": float(np.percentile(paced, 50)), "paced_p99_ms": float(np.percentile(paced, 99))}


def relay(executor_kind: str) -> None:
    """The floor: a process that answers each HumanKeypoints2DArray with an empty
    HumanPose3DArray of the same header, through the same topics, QoS and executor as the
    node. What the node adds over this is its own work (conversion, lifting, publishing)."""
    import rclpy
    from rclpy.node import Node

    from cfi_pose_ros.msg import HumanKeypoints2DArray, HumanPose3DArray
    from cfi_pose_ros.node.base import create_executor, newest_only_qos, output_qos, spin

    rclpy.init()
    node = Node("cfi_relay")
    publisher = node.create_publisher(HumanPose3DArray, "/human_pose_3d", output_qos("reliable"))
    node.create_subscription(HumanKeypoints2DArray, "/human_keypoints_2d",
                             lambda msg: publisher.publish(HumanPose3DArray(header=msg.header)),
                             newest_only_qos("best_effort"))
    executor = create_executor(executor_kind)
    executor.add_node(node)
    try:
        spin(executor)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


SOAK_CHUNK_S = 10.0            # the soak reads the node's RSS after every chunk of replay
MIN_SOAK_S = 3 * SOAK_CHUNK_S  # a warm-up reading, a start and an end
MIN_SECONDS = 2.0              # the floor runs half of it: 30 frames, the fewest a p99 is read from here


def soak(client, executor, clip, people: int, process, chunks: int, chunk_s: float,
         first_stamp_ns: int) -> list[float]:
    """Replay ``chunks`` chunks of ``chunk_s`` at 30 Hz, one stream going on in time from
    ``first_stamp_ns``, and read ``process``'s RSS (MiB) after each. Each chunk's stamps follow the
    last's: a stream that jumped back to stamps the node had already lifted would restart its
    smoothing filters and have it send no /tf for a stamp it had sent (tf2 keeps one transform per
    stamp), so the soak would hold a node doing less than on a live stream."""
    rss = []
    stamp_ns = first_stamp_ns
    for _ in range(chunks):
        client.received = type(client.received)()
        stamp_ns = client.replay(executor, clip, rate_hz=30.0, frames=int(chunk_s * 30), people=people,
                                 drain_s=0.1, stamp_offset_ns=stamp_ns)
        rss.append(process.memory_info().rss / 2**20)
    return rss


def end_to_end(people: int, seconds: float, soak_seconds: float, log_dir: Path, executor_kind: str,
               floor: bool = False, threads: int | None = None, flip_test: bool | None = None) -> dict:
    import psutil
    import rclpy
    from cfi_pose_ros.node.base import create_executor
    from cfi_pose_ros.node.process import start_lift_node, stop
    from cfi_pose_ros.node.replay import Clip, ReplayClient

    clip = Clip.load()
    if floor:
        node = subprocess.Popen([sys.executable, "-P", __file__, "--relay", "--executor", executor_kind],
                                stdout=open(log_dir / "relay.log", "w"), stderr=subprocess.STDOUT)
    else:
        overrides = {"autostart": True, "executor": executor_kind}
        if threads is not None:
            overrides["threads"] = threads
        if flip_test is not None:
            overrides["flip_test"] = flip_test
        node = start_lift_node(overrides=overrides, log_path=log_dir / f"node_{people}.log")
    rclpy.init()
    client = ReplayClient(keep_messages=False)
    executor = create_executor(executor_kind)
    executor.add_node(client)
    try:
        if not client.wait_for_lifter(executor, clip, timeout=120):
            raise RuntimeError("node did not answer")
        next_stamp_ns = client.replay(executor, clip, rate_hz=30.0, frames=int(seconds * 30), people=people)
        received = client.received
        latencies = received.latencies_ms()
        result = {"people": people, "frames_sent": len(received.send_time),
                  "frames_received": len(received.people),
                  "dropped": len(received.send_time) - len(received.people),
                  "sender_stalls": received.sender_stalls,
                  "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99))}
        if soak_seconds > 0:
            rss = soak(client, executor, clip, people, psutil.Process(node.pid), int(soak_seconds / SOAK_CHUNK_S),
                       SOAK_CHUNK_S, next_stamp_ns)
            warm = max(1, len(rss) // 10)            # skip the first 10 % (allocator warm-up)
            result.update(soak_seconds=soak_seconds, rss_start_mib=float(np.mean(rss[warm:2 * warm])),
                          rss_end_mib=float(np.mean(rss[-warm:])))
            result["rss_growth_pct"] = 100 * (result["rss_end_mib"] / result["rss_start_mib"] - 1)
        return result
    finally:
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown()
        stop(node)


def main(argv=None) -> int:
    from cfi_pose_ros.node.base import EXECUTORS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=number_in(float, MIN_SECONDS), default=20.0,
                        help=f"measurement per people count (at least {MIN_SECONDS:g}: the relay floor replays "
                             "half of it at 30 Hz)")
    parser.add_argument("--soak-seconds", type=non_negative_float, default=600.0,
                        help=f"memory soak (0 = skip; else at least {MIN_SOAK_S:.0f} s)")
    parser.add_argument("--people", type=positive_int, nargs="+", default=[1, 5])
    parser.add_argument("--threads", type=non_negative_int, default=None,
                        help="CPU threads of the node's engine and of the model-only one (0 = the library's "
                             "default, one per core); default: the node's own default")
    parser.add_argument("--executor", default="events", choices=EXECUTORS,
                        help="rclpy executor of the node and of this benchmark's client")
    parser.add_argument("--out", default="outputs/bench_node")
    parser.add_argument("--flip-cost", action="store_true",
                        help="only compare the node's end-to-end latency with flip_test off and on (no soak)")
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)   # the floor's child process
    args = parser.parse_args(argv)
    if 0 < args.soak_seconds < MIN_SOAK_S:
        parser.error(f"--soak-seconds {args.soak_seconds:g}: a soak needs at least {MIN_SOAK_S:.0f} s "
                     f"(RSS is read every {SOAK_CHUNK_S:.0f} s and the first 10 % is warm-up), or 0 to skip it")
    if args.relay:
        relay(args.executor)
        return 0
    return run_in_own_domain("bench_node", lambda: run_benchmark(args))


def run_benchmark(args) -> int:
    """The measurement, in the ROS domain main has claimed."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.flip_cost:
        return flip_cost(args, out)

    floor = end_to_end(1, args.seconds / 2, 0, out, args.executor, floor=True)
    print(json.dumps({"relay_floor": floor}), file=sys.stderr)
    rows = []
    for people in args.people:
        model = model_only_ms(people, 500, args.threads)
        soak = args.soak_seconds if people == args.people[0] else 0
        e2e = end_to_end(people, args.seconds, soak, out, args.executor, threads=args.threads)
        rows.append({"people": people, "backend": model["backend"], "threads": model["threads"],
                     "batch": model["batch"], "model_p50_ms": model["p50_ms"],
                     "model_paced_p50_ms": model["paced_p50_ms"], "model_paced_p99_ms": model["paced_p99_ms"],
                     "e2e_p50_ms": e2e["p50_ms"], "e2e_p99_ms": e2e["p99_ms"],
                     "e2e_over_model": e2e["p50_ms"] / model["p50_ms"],
                     "e2e_over_paced_model": e2e["p50_ms"] / model["paced_p50_ms"],
                     "p99_over_p50": e2e["p99_ms"] / e2e["p50_ms"], "relay_floor_p50_ms": floor["p50_ms"],
                     **{k: v for k, v in e2e.items() if k not in ("people", "p50_ms", "p99_ms")}})
        print(json.dumps(rows[-1]), file=sys.stderr)
    (out / "bench_node.json").write_text(json.dumps({"relay_floor": floor, "rows": rows}, indent=2) + "\n")
    lines = ["| people | backend, threads, batch | model p50 ms | model p50 ms at 30 Hz | e2e p50 ms | e2e p99 ms "
             "| e2e/model | e2e/model at 30 Hz | p99/p50 | sent | dropped | sender stalls | RSS growth |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        growth = f"{r['rss_growth_pct']:.1f} % over {r['soak_seconds']:.0f} s" if "rss_growth_pct" in r else "-"
        lines.append(f"| {r['people']} | {r['backend']}, {r['threads'] or 'library default'}, {r['batch']} | "
                     f"{r['model_p50_ms']:.3f} | {r['model_paced_p50_ms']:.3f} | "
                     f"{r['e2e_p50_ms']:.3f} | {r['e2e_p99_ms']:.3f} | {r['e2e_over_model']:.2f} | "
                     f"{r['e2e_over_paced_model']:.2f} | {r['p99_over_p50']:.2f} | "
                     f"{r['frames_sent']} | {r['dropped']} | {r['sender_stalls']} | {growth} |")
    lines.append(f"\nFloor (a relay process answering each input with an empty output, same topics, QoS and "
                 f"executor `{args.executor}`): p50 {floor['p50_ms']:.3f} ms, p99 {floor['p99_ms']:.3f} ms.")
    table = "\n".join(lines) + "\n"
    (out / "bench_node.md").write_text(table)
    print(table)
    return 0


def flip_cost(args, out: Path) -> int:
    """End-to-end latency at 30 Hz with ``flip_test`` off and on, alternating, same run."""
    rows = []
    for people in args.people:
        runs = {False: [], True: []}
        for repeat in range(2):
            for flip in (False, True):
                runs[flip].append(end_to_end(people, args.seconds, 0, out, args.executor, threads=args.threads,
                                             flip_test=flip))
                print(json.dumps({"people": people, "flip_test": flip, **runs[flip][-1]}), file=sys.stderr)
        p50 = {flip: float(np.median([r["p50_ms"] for r in results])) for flip, results in runs.items()}
        p99 = {flip: float(np.median([r["p99_ms"] for r in results])) for flip, results in runs.items()}
        rows.append((people, p50, p99, sum(r["dropped"] for rs in runs.values() for r in rs)))
    lines = ["| people | e2e p50 off | e2e p50 on | cost p50 | e2e p99 off | e2e p99 on | frames lost |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for people, p50, p99, lost in rows:
        lines.append(f"| {people} | {p50[False]:.2f} ms | {p50[True]:.2f} ms | {p50[True] - p50[False]:+.2f} ms | "
                     f"{p99[False]:.2f} ms | {p99[True]:.2f} ms | {lost} |")
    table = "\n".join(lines) + "\n"
    (out / "flip_cost.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
