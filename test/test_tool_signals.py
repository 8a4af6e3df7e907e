"""The command-line tools that are no nodes: ``play_bag`` and the demo end on a SIGINT or SIGTERM at
any moment with 130 or 143 (128 + the signal's number) and one line, never a traceback; the
benchmarks refuse, at parse time and in one line (exit 2), a number no run can use.

Each signal is sent to the tool alone (as systemd, ``timeout`` or a parent's terminate() does), at a
moment the test sees it reach: inside an import (a library it has mapped), waiting, working."""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ros_available

REPO = Path(__file__).resolve().parents[1]
STOP_SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


def start_tool(args: list[str], env: dict, stderr: Path) -> subprocess.Popen:
    """``python -P -m args``; its stderr in a file the test reads while it runs."""
    with open(stderr, "w") as err:
        return subprocess.Popen([sys.executable, "-P", "-m", *args], env=env, stdout=subprocess.DEVNULL, stderr=err)


def wait_until(condition, process: subprocess.Popen, what: str, stderr: Path, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exit {process.returncode} before {what}: {stderr.read_text()}"
        assert time.monotonic() < end, f"not {what} within {timeout:g} s: {stderr.read_text()}"
        time.sleep(0.002)


def importing(process: subprocess.Popen, library: str):
    """Whether ``process`` has mapped ``library``: it is inside that import (the next ones take tens
    of milliseconds more), before it has built anything."""
    def mapped() -> bool:
        try:
            return library in Path(f"/proc/{process.pid}/maps").read_text()
        except OSError:
            return False
    return mapped


def stop_and_check(process: subprocess.Popen, signum: int, stderr: Path, tool: str) -> str:
    """Send ``signum``; the tool ends with 128 + it and a last line "<tool>: interrupted...", no
    traceback. Returns that line."""
    process.send_signal(signum)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{tool} still running 60 s after {signum.name}: {stderr.read_text()}")
    err = stderr.read_text()
    assert process.returncode == 128 + signum and "Traceback" not in err, (process.returncode, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{tool}: interrupted"), err
    return last


def stop_when(args: list[str], env: dict, stderr: Path, ready, moment: str, signum: int, tool: str) -> str:
    """Start ``python -P -m args``, send ``signum`` once ``ready(process)()`` holds (``moment``, in
    words) and check it ended as :func:`stop_and_check` says; returns its last line."""
    process = start_tool(args, env, stderr)
    try:
        wait_until(ready(process), process, moment, stderr)
        return stop_and_check(process, signum, stderr, tool)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ----------------------------------------------------------------------------------------- play_bag

@pytest.mark.parametrize("moment", ["importing rclpy", "waiting for subscribers", "playing"])
@STOP_SIGNALS
@pytest.mark.ros
@pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))
def test_play_bag_ends_on_a_stop_signal_at_any_moment_with_128_plus_it_in_one_line(ros_env, tmp_path, moment,
                                                                                  signum):
    """rclpy.init() installed rclpy's SIGTERM handler, which shut the context down under the spinning
    loop: an ExternalShutdownException traceback, exit 1; a SIGINT inside the imports was a
    KeyboardInterrupt traceback (exit -2), a SIGTERM there the default death (-15)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    topic = f"/play_bag_stop_{os.getpid()}_{int(time.time() * 1000) % 100000}/keypoints"
    bag = tmp_path / "four_seconds.mcap"
    with BagWriter(bag) as writer:
        for k in range(200):
            writer.write(topic, HumanKeypoints2DArray(), log_time_ns=10**9 + k * 20_000_000)
    if not rclpy.ok():
        rclpy.init()
    listener = rclpy.create_node("test_play_bag_stop_listener")
    received = []
    if moment == "playing":     # a subscriber from the start: the player goes straight to playing
        listener.create_subscription(HumanKeypoints2DArray, topic, received.append,
                                     QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(listener)

    def playing() -> bool:
        executor.spin_once(timeout_sec=0.01)
        return bool(received)

    stderr = tmp_path / "stderr"
    player = start_tool(["cfi_pose_ros.node.play_bag", str(bag), "--wait-for-subscribers", "60"], ros_env, stderr)
    try:
        wait_until({"importing rclpy": importing(player, "_rclpy_pybind11"),
                    "waiting for subscribers": lambda: listener.count_publishers(topic) > 0,
                    "playing": playing}[moment], player, moment, stderr)
        assert stop_and_check(player, signum, stderr, "play_bag") == "play_bag: interrupted"
    finally:
        if player.poll() is None:
            player.kill()
            player.wait()
        executor.shutdown()
        listener.destroy_node()


# --------------------------------------------------------------------------------------------- demo

@pytest.mark.parametrize("moment", ["importing numpy", "waiting for the node", "replaying"])
@STOP_SIGNALS
@pytest.mark.ros
@pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))
def test_the_demo_ends_on_a_stop_signal_with_its_node_stopped_and_what_came_back_written(ros_env, tmp_path, moment,
                                                                                        signum):
    """A stop signal ended the demo in a traceback (ExternalShutdownException from waiting for the
    node, KeyboardInterrupt) and the frames received until then were lost. Now: 128 + the signal,
    one line, the node stopped, and during the replay what came back written (the bag and the
    report, marked interrupted; no rendering)."""
    out, stderr = tmp_path / "demo", tmp_path / "stderr"
    demo = start_tool(["cfi_pose_ros.demo", "--out", str(out)], ros_env, stderr)
    try:
        if moment == "importing numpy":
            wait_until(importing(demo, "_multiarray_umath"), demo, moment, stderr)
        else:
            line = "waiting for the lifting node..." if moment == "waiting for the node" else "replaying "
            wait_until(lambda: line in stderr.read_text(), demo, moment, stderr)
            if moment == "replaying":
                time.sleep(1.0)                 # about 30 frames out and back
        children = Path(f"/proc/{demo.pid}/task/{demo.pid}/children").read_text().split()
        last = stop_and_check(demo, signum, stderr, "demo")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    for pid in map(int, children):              # the lift node (none yet while importing)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    if moment != "replaying":
        assert last == "demo: interrupted"
        return
    assert last.startswith("demo: interrupted; wrote what came back of "), last
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted_by"] == signum.name and report["node_exit_code"] == 0, report
    assert 0 < report["frames_received"] <= report["frames_sent"] < 150, report
    assert report["bag_messages"] > 2 * report["frames_received"], report     # inputs, poses and markers
    assert (out / "demo.mcap").stat().st_size > 0 and not (out / "skeletons.gif").exists()


# ------------------------------------------------------------------------------------------ offline

@pytest.mark.parametrize("moment", ["importing numpy", "loading the lifter"])
@STOP_SIGNALS
@pytest.mark.ros
@pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))
def test_offline_ends_on_a_stop_signal_before_its_first_frame_at_once(ros_env, tmp_path, moment, signum):
    """offline put its stop request in before anything loaded, so a first signal while it loaded was
    only remembered for the first frame: a pass loading its models (or hung opening a --params-file
    FIFO) went on, and wrote a bag, after a SIGTERM; one inside the imports was the default death
    (-15) or a KeyboardInterrupt traceback. Now it ends there, nothing written."""
    out, stderr = tmp_path / "out", tmp_path / "stderr"
    clip = REPO / "cfi_pose_ros" / "data" / "demo_clip_h36m_s9.npz"
    library = "_multiarray_umath" if moment == "importing numpy" else "libtorch_cpu"
    last = stop_when(["cfi_pose_ros.offline", str(clip), "--out", str(out), "--quiet", "--no-video",
                      "--backend", "onnxruntime"], ros_env, stderr, lambda offline: importing(offline, library),
                     moment, signum, "offline")
    assert last == "offline: interrupted"
    assert not out.exists()         # nothing written, and the --out folder it made removed


# ------------------------------------------------------------------------ export and evaluate

@pytest.mark.parametrize("moment", ["importing torch", "checking the export with onnxruntime"])
@STOP_SIGNALS
def test_export_ends_on_a_stop_signal_with_nothing_half_written(tmp_path, moment, signum):
    """`python -m cfi_pose_ros.export` sent Ctrl-C: a KeyboardInterrupt traceback; SIGTERM: the
    default death, which left the ONNX file's temporary copy beside it when it came while writing.
    Now one line saying what was written, 130 or 143, and the output folder as it was."""
    out, stderr = tmp_path / "out", tmp_path / "stderr"
    out.mkdir()
    # onnxruntime is imported only to check the exported graph: the export is under way
    library = "libtorch_cpu" if moment == "importing torch" else "onnxruntime"
    last = stop_when(["cfi_pose_ros.export", "--weights", "cfi_h36m_d128", "--onnx", str(out / "cfi.onnx")],
                     dict(os.environ), stderr, lambda export: importing(export, library), moment, signum, "export")
    assert last == ("export: interrupted" if moment == "importing torch" else
                    f"export: interrupted by {signum.name}; nothing written"), last
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("moment", ["importing torch", "evaluating"])
@STOP_SIGNALS
def test_evaluate_ends_on_a_stop_signal_with_nothing_written(tmp_path, moment, signum):
    """`python -m training.evaluate` sent Ctrl-C while it lifted (11 min for S9's frames): a
    KeyboardInterrupt traceback. Now one line, 130 or 143, and neither eval.md, eval.json nor the
    --record entry in the weights' JSON (written together at the end, or not at all)."""
    import shutil

    weights = tmp_path / "weights"
    weights.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(REPO / "cfi_pose_ros" / "weights" / f"cfi_h36m_d128{suffix}", weights / f"w{suffix}")
    config_before = (weights / "w.json").read_text()
    out, stderr = tmp_path / "out", tmp_path / "stderr"
    from test_training_cli import h36m_files

    files = h36m_files(tmp_path / "data", frames=4000)       # S9: 32,000 poses, 16 a batch: tens of seconds
    data = files[:files.index("--train-subjects")] + ["--subjects", "S9"]
    def ready(evaluate):
        if moment == "evaluating":
            return lambda: "batch" in stderr.read_text()        # its progress bar
        return importing(evaluate, "libtorch_cpu")

    last = stop_when(["training.evaluate", "--weights", str(weights / "w.safetensors"), *data, "--batch-size", "16",
                      "--threads", "1", "--record", "--out", str(out)], dict(os.environ), stderr, ready, moment,
                     signum, "evaluate")
    assert last == ("evaluate: interrupted" if moment == "importing torch" else
                    f"evaluate: interrupted by {signum.name}; nothing written"), last
    assert not (out / "eval.md").exists() and not (out / "eval.json").exists()
    assert (weights / "w.json").read_text() == config_before
    assert sorted(path.name for path in weights.iterdir()) == ["w.json", "w.safetensors"]


@pytest.mark.parametrize("moment", ["importing torch", "making its data"])
@STOP_SIGNALS
def test_a_training_run_stopped_before_its_first_step_ends_in_one_line_and_leaves_nothing(tmp_path, moment, signum):
    """`python -m training.train` sent Ctrl-C while torch loaded: a KeyboardInterrupt traceback (exit -2);
    SIGTERM before the first step (the run's own stop handling starts there): the default death, no
    word, and the --out it had made left holding .lock (so did Ctrl-C). Now one line, 130 or 143, and
    no --out (a signal from the first step on: test_training_cli.py -k stop_signal)."""
    out, stderr = tmp_path / "made" / "run", tmp_path / "stderr"
    # 3 million synthetic poses: seconds of making them, with --out and its lock made before
    args = ["training.train", "--synthetic", "3000000", "--dim", "16", "--depth", "1", "--heads", "2",
            "--threads", "1", "--compile", "off", "--amp", "off", "--out", str(out)]
    def ready(train):
        if moment == "making its data":
            return lambda: (out / ".lock").exists()
        return importing(train, "libtorch_cpu")

    last = stop_when(args, dict(os.environ), stderr, ready, moment, signum, "training")
    assert last == ("training: interrupted" if moment == "importing torch" else
                    f"training: interrupted by {signum.name}; --out holds what the run's last checkpoint wrote "
                    f"(nothing, before the first)"), last
    assert not (tmp_path / "made").exists()


@pytest.mark.parametrize("step", ["check_out", "out_lock"])
@STOP_SIGNALS
def test_a_stop_signal_just_after_the_out_folder_or_its_lock_is_made_leaves_nothing(tmp_path, step, signum):
    """The moment the test above can only hit by chance (it did, on a loaded machine): a signal
    right after ``check_out`` made the --out folders, or ``out_lock`` created .lock, before the run's
    clean-up could see it: the folders were left, the second holding .lock. Now held until it can be
    cleaned up: one line, 130 or 143, nothing left. The signal is sent by the step itself, wrapped."""
    import subprocess
    import sys

    out = tmp_path / "made" / "run"
    args = ["--synthetic", "2000", "--dim", "16", "--depth", "1", "--heads", "2", "--threads", "1",
            "--compile", "off", "--amp", "off", "--out", str(out)]
    code = ("import os, signal, sys\n"
            "from training import train\n"
            f"step = train.{step}\n"
            "def step_then_signal(*args):\n"
            "    done = step(*args)\n"
            f"    os.kill(os.getpid(), signal.{signum.name})\n"
            "    return done\n"
            f"train.{step} = step_then_signal\n"
            f"sys.argv = ['cfi-train', *{args!r}]\n"
            "sys.exit(train.cli())\n")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 128 + signum, (done.returncode, done.stderr[-3000:])
    assert done.stderr.strip().splitlines()[-1] == (
        f"training: interrupted by {signum.name}; --out holds what the run's last checkpoint wrote (nothing, "
        f"before the first)"), done.stderr[-3000:]
    assert not (tmp_path / "made").exists(), sorted(str(path) for path in (tmp_path / "made").rglob("*"))


# --------------------------------------------------------------------------------------- benchmarks

@functools.cache
def benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)    # dataclasses look it up
    spec.loader.exec_module(module)
    return module


class Accepted(Exception):
    """The command line parsed: the benchmark would have run with it."""


@pytest.mark.parametrize("name, args, expected", [
    ("bench_offline", ["--repeat", "0"], "argument --repeat: must be an integer >= 1, not 0"),
    ("bench_camera", ["--iterations", "0"], "argument --iterations: must be an integer >= 1, not 0"),
    ("bench_camera", ["--threads", "-1"], "argument --threads: must be an integer >= 0, not -1"),
    ("bench_camera_node", ["--rate", "0"], "argument --rate: must be a number > 0, not 0"),
    ("bench_camera_node", ["--seconds", "nan"], "argument --seconds: must be a number > 0, not nan"),
    ("bench_camera_node", ["--detector-every", "0"], "argument --detector-every: must be an integer >= 1, not 0"),
    ("bench_camera_node", ["--threads", "-2"], "argument --threads: must be an integer >= 0, not -2"),
    ("bench_image_take", ["--images", "0"], "argument --images: must be an integer >= 1, not 0"),
    ("bench_image_take", ["--rounds", "-1"], "argument --rounds: must be an integer >= 1, not -1"),
    ("bench_distance", ["--stride", "0"], "argument --stride: must be an integer >= 1, not 0"),
    ("bench_distance", ["--factors", "1", "0"], "argument --factors: must be a number > 0, not 0"),
    ("bench_cameras", ["--stride", "0"], "argument --stride: must be an integer >= 1, not 0"),
    ("bench_inference", ["--batch-sizes", "1", "0"], "argument --batch-sizes: must be an integer >= 1, not 0"),
    ("bench_inference", ["--threads", "0"], "argument --threads: must be an integer >= 1, not 0"),
    ("bench_inference", ["--seconds", "inf"], "argument --seconds: must be a number > 0, not inf"),
    ("bench_node", ["--people", "1", "0"], "argument --people: must be an integer >= 1, not 0"),
    ("bench_node", ["--seconds", "0"], "argument --seconds: must be a number >= 2, not 0"),
    ("bench_node", ["--seconds", "0.02"], "argument --seconds: must be a number >= 2, not 0.02"),
    ("bench_node", ["--soak-seconds", "-1"], "argument --soak-seconds: must be a number >= 0, not -1"),
    ("bench_node", ["--threads", "-1"], "argument --threads: must be an integer >= 0, not -1"),
    ("bench_training", ["--steps", "0"], "argument --steps: must be an integer >= 1, not 0"),
    ("bench_training", ["--warmup", "-1"], "argument --warmup: must be an integer >= 0, not -1"),
    ("bench_training", ["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, not 0"),
    ("bench_training", ["--heads", "0"], "argument --heads: must be an integer >= 1, not 0"),
    ("gpu_check", ["--budget", "0"], "argument --budget: must be a number > 0, not 0"),
    ("gpu_check", ["--cpu-spread", "0"], "argument --cpu-spread: must be an integer >= 1, not 0"),
])
def test_a_benchmark_refuses_a_number_no_run_can_use_in_one_line(monkeypatch, capsys, name, args, expected):
    """--repeat 0, --iterations 0, --stride 0, --batch-sizes 0 and the like ran until a division by
    zero or an empty array ended them in a traceback (or ran nothing, or forever). A command line
    that parses raises Accepted here instead of starting the benchmark."""
    main = benchmark(name).main
    parse = argparse.ArgumentParser.parse_args

    def parse_only(parser, *a, **k):
        raise Accepted(parse(parser, *a, **k))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().splitlines()[-1].endswith(expected), err


def test_bench_training_rows_of_one_attention_share_the_precision_probe(monkeypatch):
    """The rows that take compiling or Adam's fused kernel away from the new defaults each ran the
    trainer's timed precision probe again, which asks the same question (eager steps of the model
    with its own Adam) and, on a busy machine, answered another precision: the row then differed
    from the new defaults in two choices (a smoke run here: the new defaults fp32, Adam's loop
    bf16). The probe is timing, so here it is a stand-in whose answer changes at every call."""
    import torch

    bench = benchmark("bench_training")
    answers = iter(["fp32", "bf16", "fp32", "bf16"])
    monkeypatch.setattr(bench, "probe_precision", lambda *_args, **_kw: (next(answers), {}))
    args = argparse.Namespace(dim=8, depth=1, heads=2, batch_size=4)
    data = (torch.zeros(32, 17, 2), torch.zeros(32, 17, 3))
    probed = {}
    variants = [bench.Variant("defaults, eager", compile="off"),
                bench.Variant("Adam's loop, eager", compile="off", fused_adam=False),
                bench.Variant("SDPA, eager", compile="off", attention="sdpa"),
                bench.Variant("fp32 forced, eager", compile="off", precision="fp32")]
    rows = [bench.Row(variant, args, data, probed) for variant in variants]
    assert [row.precision for row in rows] == ["fp32", "fp32", "bf16", "fp32"]
    assert probed == {"matmul": "fp32", "sdpa": "bf16"}


def test_bench_training_writes_its_table_and_a_plot_of_it(tmp_path):
    """The figures as JSON and as bars against the 3x target and the products' bound (a real PNG)."""
    import json

    bench = benchmark("bench_training")
    table = {"cpu": "test CPU, 2 cores usable", "model": {"dim": 128, "depth": 3, "heads": 8, "batch_size": 512},
             "steps": 15, "rounds": 2, "matmul_gflop_per_step": 59.7, "peak_matmul_gflop_per_s": 387.0,
             "products_bound_samples_per_s": 3325.0,
             "rows": [{"trainer": name, "samples_per_s": rate, "vs_before": rate / 782.0}
                      for name, rate in [("before (fp32 defaults)", 782.0), ("new defaults", 1249.0)]]}
    written = bench.write_results(table, tmp_path / "out")
    assert [path.name for path in written] == ["throughput.json", "throughput.png"]
    assert json.loads(written[0].read_text()) == table
    from PIL import Image
    with Image.open(written[1]) as image:
        assert image.format == "PNG" and image.width >= 600


def test_bench_inference_shows_p99_only_where_enough_calls_give_one():
    """Large batches get 5-18 calls in the time budget: their "p99" was the slowest call under
    another name. Below 100 calls the table says it is the slowest, and of how many."""
    bench = benchmark("bench_inference")
    few = np.linspace(0.010, 0.019, 10)                  # 10 calls: 10 ms ... 19 ms
    many = np.linspace(0.001, 0.002, 200)
    rows = bench.latency_rows({1: {"torch eager (baseline)": many}, 4096: {"torch eager (baseline)": few}},
                              flops_per_pose=1e6, peak_gflops=100.0)
    by_batch = {row["batch"]: row for row in rows}
    assert by_batch[4096]["p99_ms"] is None and by_batch[4096]["max_ms"] == pytest.approx(19.0)
    assert bench.tail_cell(by_batch[4096]) == "max 19.00 of 10"
    assert by_batch[1]["p99_ms"] == pytest.approx(1e3 * float(np.percentile(many, 99)))
    assert bench.tail_cell(by_batch[1]) == f"{by_batch[1]['p99_ms']:.2f}"


@pytest.mark.parametrize("name", ["bench_distance", "bench_cameras", "bench_root_solver", "bench_cut_people"])
def test_an_accuracy_benchmark_refuses_missing_weights_in_one_line(monkeypatch, capsys, tmp_path, name):
    """A --weights file that is not there ended these in WeightsError's traceback (bench_distance
    and bench_cameras after building the training subjects' poses first)."""
    missing = tmp_path / "gone.safetensors"
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--weights", str(missing)])
    with pytest.raises(SystemExit) as exit_info:
        benchmark(name).main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and f"--weights: weights file missing: {missing}" in err.splitlines()[-1], err


def test_bench_distance_leaves_placement_distances_its_weights_record_does_not_hold_unshaded(capsys, tmp_path):
    """The plot shades the distances the weights' training placed people at, from their JSON's
    training record: a hand-edited "placement_distance_m": "2-15" ended the run, after all of its
    work, in matplotlib's ValueError traceback, the plot unwritten."""
    import shutil

    weights = tmp_path / "edited.safetensors"
    shutil.copy(REPO / "cfi_pose_ros" / "weights" / "cfi_h36m_d128.safetensors", weights)
    config = json.loads((REPO / "cfi_pose_ros" / "weights" / "cfi_h36m_d128.json").read_text())
    config["training"]["data"].update(placement_prob=0.5, placement_distance_m="2-15")
    weights.with_suffix(".json").write_text(json.dumps(config))
    out = tmp_path / "out"
    bench = benchmark("bench_distance")
    result = bench.main(["--weights", str(weights), "--stride", "2000", "--factors", "1", "--out", str(out)])
    assert [row["factor"] for row in result["rows"]] == [1.0]
    assert (out / "accuracy_vs_distance.png").is_file()
    assert "names no placement distances (placement_distance_m '2-15'): not shaded" in capsys.readouterr().out
    assert bench.placement_distance({"data": {"placement_prob": 0.5, "placement_distance_m": [2, 15]}}) == [2.0, 15.0]
    assert bench.placement_distance({"data": {"placement_prob": 0.0, "placement_distance_m": [2, 15]}}) is None


def test_bench_training_refuses_heads_that_do_not_divide_dim(capsys):
    """It built the data and then died of CFIConfig's ValueError, a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        benchmark("bench_training").main(["--dim", "100", "--heads", "8", "--batch-size", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.strip().splitlines()[-1].endswith("--dim 100 --heads 8: dim (100) must be divisible by heads (8)")
