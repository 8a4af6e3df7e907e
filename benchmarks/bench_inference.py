#!/usr/bin/env python3
"""Inference backends on this machine: latency, throughput and achieved GFLOP/s against a measured GEMM peak.

    python benchmarks/bench_inference.py                 # 2 threads, batches 1 8 64, ~3-5 min on 2 cores
    python benchmarks/bench_inference.py --quick         # a short run (~1 min)
    python benchmarks/bench_inference.py --explore       # also ONNX Runtime variants (spinning, plain graph, opt levels)
    python benchmarks/bench_inference.py --gpu --batch-sizes 1 1024   # GPU machine (benchmarks/gpu_check.py runs it)

For the paper configuration (CFIConfig defaults: D=512, L_d=3, H=8; random
init, which has the same cost as trained weights) and for the shipped weights
when present (``--weights``, default ``DEFAULT_WEIGHTS``), every backend that
runs here is timed on the same realistic inputs:

* p50/p99 latency of one ``lifter.lift(batch)`` call (validation, padding and
  copies included), poses/s (``batch / p50``);
* achieved GFLOP/s = ``model.flops_per_pose() * batch / p50`` (the model's
  matmul FLOPs), as a fraction of this machine's fp32 GEMM peak measured in
  the same run with the same thread count (a 2048^3 ``torch.matmul``, the median
  of its calls; measured before and after the backends, the higher is used);
  ONNX Runtime's own GEMM (MLAS, ``MatMul`` with a constant, pre-packed B) is
  measured too and reported alongside;
* the ratio to torch eager (the baseline) at the same batch size.

The GPU backends, where they run, are timed in every precision (cuda
fp32/fp16/bf16, tensorrt fp32/fp16). ``--gpu`` is the run for a GPU machine:
the CPU side is only the torch eager baseline (no ONNX Runtime or 1-thread
rows), every lifter gets up to 300 calls (slow ones stop at their time
budget), and the GPU targets for the paper configuration are checked (batch 1
p50 <= 0.25 ms, batch 1024 >= 500k poses/s). '% peak' is against the CPU's
GEMM peak and means nothing for GPU rows.

Every lifter is built with ``batch_sizes`` = the benchmarked sizes, so each
call is exactly one compiled batch. Calls are interleaved between backends
(round-robin in several rounds) so that load from other processes affects
all of them alike: on a shared machine absolute numbers are noisy, ratios
within one run are what to compare. The load average before and after is
recorded.

Writes ``results.json`` and ``results.md`` to ``--out`` (default
``outputs/bench_inference/``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cfi_pose_ros.arguments import positive_float, positive_int  # noqa: E402
from cfi_pose_ros.inference import available_backends  # noqa: E402
from cfi_pose_ros.inference.reference import reference_inputs  # noqa: E402
from cfi_pose_ros.model import CFIConfig, CFINet  # noqa: E402
from cfi_pose_ros.weights import DEFAULT_WEIGHTS  # noqa: E402

TARGETS = {1: {"speedup": 2.5, "peak": 0.60}, 8: {"peak": 0.80}}
GPU_TARGETS = {1: {"max_p50_ms": 0.25}, 1024: {"min_poses_per_s": 500e3}}   # paper configuration, H200
GPU_BACKENDS = (("cuda", ("fp32", "fp16", "bf16")), ("tensorrt", ("fp32", "fp16")))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _median_rate(fn, flops: float, seconds: float, min_calls: int = 5) -> float:
    fn()
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return flops / float(np.median(times)) / 1e9


def torch_gemm_peak(threads: int, size: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of a ``size``^3 fp32 ``torch.matmul`` with ``threads`` threads (median call)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    return _median_rate(lambda: torch.matmul(a, b, out=out), 2.0 * size ** 3, seconds)


def mlas_gemm_peak(threads: int, size: int = 2048, seconds: float = 2.0) -> float | None:
    """The same GEMM through ONNX Runtime (B constant, so pre-packed as in the model)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32), "b")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).normal(size=(size, size)).astype(np.float32)
    return _median_rate(lambda: session.run(None, {"a": a}), 2.0 * size ** 3, seconds)


def make_lifters(model: CFINet, args, cache_dir: Path, log) -> dict:
    """``{label: lifter}``: torch eager first (the baseline), then every backend available here."""
    from cfi_pose_ros.inference.cache import load_model
    from cfi_pose_ros.inference.onnx_export import export_model
    from cfi_pose_ros.inference.onnxruntime_backend import OnnxRuntimeLifter
    from cfi_pose_ros.inference.torch_backend import TorchLifter

    sizes = tuple(args.batch_sizes)
    sha = load_model(model)[1].sha256             # a hash of the tensors: keys the export/engine cache
    status = available_backends("fp32")
    lifters = {"torch eager (baseline)": TorchLifter(model, batch_sizes=sizes, threads=args.threads,
                                                     weights_sha256=sha)}
    if args.threads > 1 and not args.gpu:   # eager PyTorch's OpenMP pool degrades when other processes need the cores
        lifters["torch eager, 1 thread"] = TorchLifter(model, batch_sizes=sizes, threads=1, weights_sha256=sha)
    if status["onnxruntime"] is None and not args.gpu:   # the GPU run compares with torch eager only
        common = dict(batch_sizes=sizes, threads=args.threads, cache_dir=cache_dir, log=log, weights_sha256=sha)
        lifters["onnxruntime (default)"] = OnnxRuntimeLifter(model, **common)
        if args.explore:
            lifters["onnxruntime, spinning off"] = OnnxRuntimeLifter(model, spinning="off", **common)
            lifters["onnxruntime, spinning always"] = OnnxRuntimeLifter(model, spinning="always", **common)
            if args.threads > 1:
                lifters["onnxruntime, 1 thread"] = OnnxRuntimeLifter(model, **{**common, "threads": 1})
            lifters["onnxruntime, opt level basic"] = OnnxRuntimeLifter(model, optimization="basic", **common)
            plain = export_model(model, fused=False).SerializeToString()
            lifters["onnxruntime, plain CFINet graph"] = OnnxRuntimeLifter(model, onnx_bytes=plain, **common)
    elif not args.gpu:
        log(f"onnxruntime skipped: {status['onnxruntime']}")
    for backend, precisions in GPU_BACKENDS:
        if status[backend] is not None:
            log(f"{backend} skipped: {status[backend]}")
            continue
        from cfi_pose_ros.inference.factory import _build

        for precision in precisions:
            try:
                lifters[f"{backend} {precision}"] = _build(backend, model, sha, precision, sizes, args.threads,
                                                           cache_dir, log)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                log(f"{backend} {precision} failed to start: {exc}")
    return lifters


def measure(lifters: dict, batch: int, calls: int, rounds: int, budget_s: float) -> dict[str, np.ndarray]:
    """Per-call latencies (s), calls interleaved round-robin between lifters.

    A lifter that has used ``budget_s`` and has at least 5 calls stops there
    and sits out the remaining rounds (a very slow baseline would otherwise take minutes).
    """
    inputs = reference_inputs(batch, seed=batch)
    for lifter in lifters.values():               # warm-up (first-call allocations, caches)
        for _ in range(2):
            lifter.lift(inputs)
    times = {label: [] for label in lifters}
    per_round = max(1, calls // rounds)
    for _ in range(rounds):
        for label, lifter in lifters.items():
            for _ in range(per_round):
                if len(times[label]) >= 5 and sum(times[label]) > budget_s:
                    break
                start = time.perf_counter()
                lifter.lift(inputs)
                times[label].append(time.perf_counter() - start)
    return {label: np.asarray(t) for label, t in times.items()}


MIN_CALLS_FOR_P99 = 100     # fewer calls have no 99th percentile to speak of: their slowest is shown


def tail_cell(row: dict) -> str:
    """The table's tail latency: p99, or the slowest call marked with the count of calls."""
    if row["p99_ms"] is not None:
        return f"{row['p99_ms']:.2f}"
    return f"max {row['max_ms']:.2f} of {row['calls']}"


def calls_for(batch: int, flops_per_pose: float, budget_s: float) -> int:
    """Roughly ``budget_s`` of work per backend at ~20 GFLOP/s, at least 5 calls."""
    return int(np.clip(budget_s * 20e9 / (flops_per_pose * batch), 5, 400))


def latency_rows(timings: dict[int, dict[str, np.ndarray]], flops_per_pose: float, peak_gflops: float) -> list[dict]:
    """One table row per batch size and backend from the call times (s) ``measure`` took."""
    rows = []
    for batch, by_label in timings.items():
        baseline = float(np.median(by_label["torch eager (baseline)"]))
        best_torch = min(float(np.median(t)) for label, t in by_label.items() if label.startswith("torch"))
        for label, t in by_label.items():
            p50 = float(np.median(t))
            gflops = flops_per_pose * batch / p50 / 1e9
            rows.append({"backend": label, "batch": batch, "calls": len(t), "p50_ms": 1e3 * p50,
                         "p99_ms": 1e3 * float(np.percentile(t, 99)) if len(t) >= MIN_CALLS_FOR_P99 else None,
                         "max_ms": 1e3 * float(t.max()), "mean_ms": 1e3 * float(t.mean()),
                         "poses_per_s": batch / p50, "gflops": gflops, "fraction_of_peak": gflops / peak_gflops,
                         "speedup_vs_torch": baseline / p50, "speedup_vs_best_torch": best_torch / p50})
    return rows


def markdown(report: dict) -> str:
    lines = [f"# Inference benchmark: {report['machine']['cpu']}, {report['threads']} threads",
             "",
             f"- torch {report['machine']['torch']}, onnxruntime {report['machine'].get('onnxruntime')}; "
             f"load average before {report['loadavg_before']}, after {report['loadavg_after']}",
             f"- fp32 GEMM peak ({report['threads']} threads, 2048^3): torch {report['gemm_peak_gflops']:.1f} GFLOP/s "
             f"(used for '% peak'); ONNX Runtime MLAS {report['mlas_peak_gflops'] or float('nan'):.1f} GFLOP/s",
             f"- p99 where a row has at least {MIN_CALLS_FOR_P99} calls, else the slowest call of the row's count; "
             "'% peak' = model.flops_per_pose() x batch / p50 / torch GEMM peak; 'x torch' = torch eager p50 "
             f"({report['threads']} threads) / p50; 'x best torch' = the faster torch eager row (any thread count) / p50",
             ""]
    for entry in report["models"]:
        lines += [f"## {entry['model']}", "",
                  f"{entry['flops_per_pose'] / 1e6:.0f} MFLOP per pose, {entry['parameters'] / 1e6:.2f} M parameters",
                  "", "| backend | batch | p50 ms | p99 ms | poses/s | GFLOP/s | % peak | x torch | x best torch |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in entry["rows"]:
            lines.append(f"| {row['backend']} | {row['batch']} | {row['p50_ms']:.2f} | {tail_cell(row)} | "
                         f"{row['poses_per_s']:.0f} | {row['gflops']:.1f} | {100 * row['fraction_of_peak']:.0f}% | "
                         f"{row['speedup_vs_torch']:.2f} | {row['speedup_vs_best_torch']:.2f} |")
        lines.append("")
        for check in entry.get("targets", []):
            lines.append(f"- {check}")
        lines.append("")
    return "\n".join(lines)


def target_lines(rows: list[dict], default_label: str) -> list[str]:
    out = []
    for batch, target in TARGETS.items():
        row = next((r for r in rows if r["backend"] == default_label and r["batch"] == batch), None)
        if row is None:
            continue
        if "speedup" in target:
            for key, what in (("speedup_vs_torch", "torch eager at the same thread count"),
                              ("speedup_vs_best_torch", "the fastest torch eager row")):
                ok = row[key] >= target["speedup"]
                out.append(f"batch {batch}: {default_label} is {row[key]:.2f}x {what} "
                           f"(target >= {target['speedup']}x): {'met' if ok else 'NOT met'}")
        ok = row["fraction_of_peak"] >= target["peak"]
        out.append(f"batch {batch}: {default_label} reaches {100 * row['fraction_of_peak']:.0f}% of the GEMM peak "
                   f"(target >= {100 * target['peak']:.0f}%): {'met' if ok else 'NOT met'}")
    return out


def gpu_target_lines(rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        target = GPU_TARGETS.get(row["batch"])
        if target is None or not row["backend"].startswith(("cuda", "tensorrt")):
            continue
        if "max_p50_ms" in target:
            ok = row["p50_ms"] <= target["max_p50_ms"]
            out.append(f"batch {row['batch']}: {row['backend']} p50 {row['p50_ms']:.3f} ms "
                       f"(target <= {target['max_p50_ms']} ms): {'met' if ok else 'NOT met'}")
        else:
            ok = row["poses_per_s"] >= target["min_poses_per_s"]
            out.append(f"batch {row['batch']}: {row['backend']} {row['poses_per_s'] / 1e3:.0f}k poses/s "
                       f"(target >= {target['min_poses_per_s'] / 1e3:.0f}k): {'met' if ok else 'NOT met'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None,
                        help="also benchmark this weights file (default: the shipped weights, if present)")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper configuration")
    parser.add_argument("--no-weights", action="store_true", help="skip the weights file")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_inference")
    parser.add_argument("--cache-dir", type=Path, default=None, help="export/engine cache (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="short run: fewer calls and rounds")
    parser.add_argument("--explore", action="store_true", help="also time ONNX Runtime variants")
    parser.add_argument("--seconds", type=positive_float, default=None, help="approximate work per backend and batch")
    parser.add_argument("--gpu", action="store_true",
                        help="GPU machine: torch eager baseline + every GPU backend and precision, GPU targets")
    args = parser.parse_args(argv)
    args.batch_sizes = sorted(set(args.batch_sizes))
    if args.no_weights:
        args.weights = None
    budget = args.seconds or (1.5 if args.quick else 6.0)
    rounds = 3 if args.quick else 6
    log = lambda text: print(text, flush=True)   # noqa: E731

    models = []
    if not args.no_paper:
        torch.manual_seed(0)
        models.append(("paper configuration (D=512, L_d=3, H=8), random init", CFINet(CFIConfig()).eval()))
    if args.weights is not None:
        from cfi_pose_ros.weights import load_weights

        model, info = load_weights(args.weights)
        models.append((f"shipped weights {args.weights.name} ({info.model.dim}/{info.model.depth}/"
                       f"{info.model.heads})", model))

    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    report = {"machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
                          "onnxruntime": ort_version, "python": platform.python_version()},
              "threads": args.threads, "batch_sizes": args.batch_sizes, "quick": args.quick,
              "loadavg_before": loadavg(), "models": []}
    log(f"GEMM peak ({args.threads} threads)...")
    peaks = [torch_gemm_peak(args.threads, seconds=1.0 if args.quick else 2.0)]
    report["mlas_peak_gflops"] = mlas_gemm_peak(args.threads, seconds=1.0 if args.quick else 2.0)
    log(f"  torch {peaks[0]:.1f} GFLOP/s, MLAS {report['mlas_peak_gflops'] or float('nan'):.1f} GFLOP/s")

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        results = []
        for name, model in models:
            log(f"== {name}")
            lifters = make_lifters(model, args, cache_dir, log)
            flops = model.flops_per_pose()
            timings = {}
            for batch in args.batch_sizes:
                calls = max(calls_for(batch, flops, budget), 300 if args.gpu else 0)
                log(f"  batch {batch}: {calls} calls per backend in {rounds} rounds")
                timings[batch] = measure(lifters, batch, calls, rounds, budget)
            results.append((name, model, lifters, timings))
        peaks.append(torch_gemm_peak(args.threads, seconds=1.0 if args.quick else 2.0))
        peak = max(peaks)
        report["gemm_peak_gflops"] = peak
        report["gemm_peak_samples_gflops"] = peaks
        for name, model, lifters, timings in results:
            flops = model.flops_per_pose()
            rows = latency_rows(timings, flops, peak)
            entry = {"model": name, "config": model.config.to_dict(), "flops_per_pose": flops,
                     "parameters": sum(p.numel() for p in model.parameters()), "rows": rows,
                     "lifters": {label: lifter.describe() for label, lifter in lifters.items()}}
            entry["targets"] = target_lines(rows, "onnxruntime (default)")
            if args.gpu and name.startswith("paper configuration"):
                entry["targets"] += gpu_target_lines(rows)
            report["models"].append(entry)
    report["loadavg_after"] = loadavg()

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
