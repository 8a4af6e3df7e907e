#!/usr/bin/env python3
"""On a GPU machine: does every GPU backend start on the shipped weights, how close is it, how fast? (< 10 min)

    python benchmarks/gpu_check.py                 # start-up checks, then the inference benchmark
    python benchmarks/gpu_check.py --no-bench      # only the start-up checks (a few minutes)

1. **Start-up**, for every GPU backend and precision (cuda fp32/fp16/bf16,
   tensorrt fp32/fp16) on ``--weights`` (default: the shipped weights), with an
   empty engine cache: ``create_lifter`` and its wall time (export, engine builds
   or graph captures, the start-up reference check); for TensorRT also a second
   start from the cache just written. Then the largest deviation from the
   float32 PyTorch reference over 1024 realistic people, against the tolerance
   the start-up check applies. A backend or precision that cannot run here is
   listed with the reason; one that fails is listed with the error and the
   others still run.
2. **Benchmark**: ``bench_inference.py --gpu --quick --batch-sizes 1 1024`` on
   the paper configuration (with the GPU targets), then on the weights; torch
   eager on the CPU is the baseline. Each in a subprocess with the time that is
   left of ``--budget``, so a slow engine build cannot take the check past it.

``--cpu-spread N`` (any machine, no GPU needed) instead runs the fp16 and bf16
graphs on the CPU (fp32 accumulation, like tensor cores) and prints their
deviation on the start-up check's people and on N realistic people: the
measurement behind the fp16/bf16 tolerances.

Without a CUDA GPU it says so and exits 0. Exit code 1 when a backend that can
run here failed to start or exceeded its tolerance. Writes ``results.json`` and
``results.md`` to ``--out`` (default ``outputs/gpu_check/``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cfi_pose_ros.arguments import positive_float, positive_int  # noqa: E402
from cfi_pose_ros.inference import (BACKEND_PRECISIONS, TOLERANCES, available_backends,  # noqa: E402
                                    create_lifter)
from cfi_pose_ros.inference.cache import load_model  # noqa: E402
from cfi_pose_ros.inference.cuda_backend import bf16_unavailable_reason, cuda_unavailable_reason  # noqa: E402
from cfi_pose_ros.inference.reference import reference_inputs, reference_outputs  # noqa: E402
from cfi_pose_ros.weights import DEFAULT_WEIGHTS  # noqa: E402

GPU_BACKENDS = ("cuda", "tensorrt")
CROWD = 1024
CROWD_SEED = 7


def why_not(backend: str, precision: str) -> str | None:
    """Why ``backend`` cannot run ``precision`` here, or ``None``."""
    reason = available_backends(precision)[backend]
    if reason is None and precision == "bf16":
        reason = bf16_unavailable_reason(torch.device("cuda", torch.cuda.current_device()))
    return reason


def check_start(weights: Path, backend: str, precision: str, cache_dir: Path, log) -> dict:
    """Start ``backend``/``precision`` (twice for TensorRT: build, then from the cache) and measure it."""
    row = {"backend": backend, "precision": precision, "tolerance_m": TOLERANCES[precision]}
    start = time.perf_counter()
    lifter = create_lifter(weights, backend=backend, precision=precision, cache_dir=cache_dir, log=log)
    row["start_s"] = time.perf_counter() - start
    row["check_max_abs_diff_m"] = lifter.max_abs_diff
    if backend == "tensorrt":
        lifter.close()
        start = time.perf_counter()
        lifter = create_lifter(weights, backend=backend, precision=precision, cache_dir=cache_dir, log=log)
        row["cached_start_s"] = time.perf_counter() - start
    model, _ = load_model(weights)
    crowd = reference_inputs(CROWD, seed=CROWD_SEED)
    deviation = np.abs(lifter.lift(crowd) - reference_outputs(model, crowd)).max(axis=(1, 2))
    row.update(crowd_max_abs_diff_m=float(deviation.max()), crowd_p99_abs_diff_m=float(np.percentile(deviation, 99)),
               within_tolerance=bool(deviation.max() <= TOLERANCES[precision]), details=lifter.describe())
    lifter.close()
    return row


def cpu_spread(weights: Path, count: int) -> None:
    """Print the reduced-precision graphs' deviation, run on the CPU, from the float32 reference."""
    from cfi_pose_ros.inference.batching import COMPILED_BATCH_SIZES
    from cfi_pose_ros.inference.fused import COMPUTE_DTYPES, FusedCFINet
    from cfi_pose_ros.inference.reference import check_against_reference

    model, _ = load_model(weights)
    crowd = reference_inputs(count, seed=CROWD_SEED)
    expected = reference_outputs(model, crowd)
    print(f"reduced precision on the CPU, {weights.name}: largest joint deviation from float32 PyTorch (m)")
    for precision in ("fp16", "bf16"):
        graph = FusedCFINet(model, COMPUTE_DTYPES[precision])

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return graph(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

        check = check_against_reference(run, model, COMPILED_BATCH_SIZES, float("inf"), precision)
        per_person = np.concatenate([np.abs(run(crowd[i:i + 256]) - expected[i:i + 256]).max(axis=(1, 2))
                                     for i in range(0, count, 256)])
        print(f"  {precision}: start-up check {check:.2e}; {count} people: max {per_person.max():.2e}, "
              f"p99 {np.percentile(per_person, 99):.2e}, median {np.median(per_person):.2e}; "
              f"tolerance {TOLERANCES[precision]:g}", flush=True)


def run_benchmark(args, model: str, began: float) -> dict:
    """``bench_inference.py --gpu`` on one model (``"paper"`` or ``"weights"``) in the time left."""
    out = args.out / f"bench_{model}"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_inference.py"), "--gpu", "--quick",
               "--batch-sizes", "1", "1024", "--threads", str(os.cpu_count() or 1), "--out", str(out),
               "--no-weights" if model == "paper" else "--no-paper"]
    if model == "weights":
        command += ["--weights", str(args.weights)]
    left = args.budget - (time.perf_counter() - began)
    run = {"command": " ".join(command[1:]), "results": None}
    if left < 30:
        print(f"== benchmark ({model}) skipped: {left:.0f} s left of the budget", flush=True)
        return {**run, "returncode": f"skipped ({left:.0f} s left)", "seconds": 0.0}
    print(f"== benchmark ({model}, {left:.0f} s left): {run['command']}", flush=True)
    start = time.perf_counter()
    try:
        code = subprocess.run(command, timeout=left).returncode
    except subprocess.TimeoutExpired:
        code = "timed out"
    return {**run, "returncode": code, "seconds": time.perf_counter() - start,
            "results": str(out / "results.md") if code == 0 else None}


def markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['gpu']} (torch {report['torch']}, CUDA {report['torch_cuda']})", "",
             f"Weights `{report['weights']}`; deviation = largest |joint - float32 PyTorch| in metres; "
             f"'crowd' = {CROWD} realistic people.", "",
             "| backend | precision | start s | cached start s | check diff | crowd max | crowd p99 | tolerance | ok |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in report["starts"]:
        if "error" in row or "skipped" in row:
            what = row.get("error") or f"skipped: {row['skipped']}"
            lines.append(f"| {row['backend']} | {row['precision']} | | | | | | {row['tolerance_m']:g} | {what} |")
            continue
        cached = f"{row['cached_start_s']:.1f}" if "cached_start_s" in row else ""
        lines.append(f"| {row['backend']} | {row['precision']} | {row['start_s']:.1f} | {cached} | "
                     f"{row['check_max_abs_diff_m']:.2e} | {row['crowd_max_abs_diff_m']:.2e} | "
                     f"{row['crowd_p99_abs_diff_m']:.2e} | {row['tolerance_m']:g} | "
                     f"{'yes' if row['within_tolerance'] else 'NO'} |")
    for bench in report.get("benchmarks", []):
        lines += ["", f"Benchmark: `{bench['command']}` -> exit {bench['returncode']} in {bench['seconds']:.0f} s"
                  + (f"; tables in {bench['results']}" if bench["results"] else "")]
        if bench["results"]:
            lines += ["", Path(bench["results"]).read_text()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu_check")
    parser.add_argument("--budget", type=positive_float, default=570.0, help="seconds for the whole check (default 9.5 min)")
    parser.add_argument("--no-bench", action="store_true", help="skip the inference benchmark")
    parser.add_argument("--cpu-spread", type=positive_int, metavar="N", default=None,
                        help="only measure fp16/bf16 deviation on the CPU over N people (no GPU needed)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.cpu_spread is not None:
        cpu_spread(args.weights, args.cpu_spread)
        return 0

    reason = cuda_unavailable_reason()
    if reason:
        print(f"gpu_check: no GPU here ({reason}); nothing to check.")
        return 0

    def log(text: str) -> None:
        print(f"  {text}", flush=True)

    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
              "weights": str(args.weights), "starts": []}
    print(f"gpu_check on {report['gpu']}, torch {torch.__version__} (CUDA {torch.version.cuda})", flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="gpu_check_cache_") as cache_dir:
        for backend in GPU_BACKENDS:
            for precision in BACKEND_PRECISIONS[backend]:
                print(f"== {backend} {precision}", flush=True)
                why = why_not(backend, precision)
                if why:
                    print(f"  skipped: {why}")
                    report["starts"].append({"backend": backend, "precision": precision,
                                             "tolerance_m": TOLERANCES[precision], "skipped": why})
                    continue
                try:
                    row = check_start(args.weights, backend, precision, Path(cache_dir), log)
                except Exception as exc:  # noqa: BLE001 - report every failure, go on with the others
                    failed = True
                    traceback.print_exc()
                    report["starts"].append({"backend": backend, "precision": precision,
                                             "tolerance_m": TOLERANCES[precision],
                                             "error": f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"})
                    continue
                failed |= not row["within_tolerance"]
                report["starts"].append(row)
                print(f"  start {row['start_s']:.1f} s; max |diff| {row['check_max_abs_diff_m']:.2e} m (check), "
                      f"{row['crowd_max_abs_diff_m']:.2e} m ({CROWD} people; tolerance {row['tolerance_m']:g} m)",
                      flush=True)

    if not args.no_bench:       # the paper configuration first: its run carries the GPU targets
        report["benchmarks"] = [run_benchmark(args, model, began) for model in ("paper", "weights")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (args.out / "results.md").write_text(text)
    print(text)
    print(f"gpu_check: {time.perf_counter() - began:.0f} s; wrote {args.out / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
