"""Weights -> ONNX (and optionally TensorRT engines), checked against PyTorch.

    python -m cfi_pose_ros.export --weights W --onnx out.onnx
    python -m cfi_pose_ros.export --weights W --onnx out.onnx \\
        --tensorrt-engine out.engine --precision fp16 --batch-sizes 1 2 4 8 16

The export itself (what the graph is, how it is checked) is
:mod:`cfi_pose_ros.inference.onnx_export`; this module is its command line and
It imports the inference package, which never imports it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    # a stop signal while torch loads below ends the command in one line, 130 or 143, until main()
    # takes over (it was a KeyboardInterrupt traceback from inside an import)
    from cfi_pose_ros.interrupts import exit_quietly_on_stop_signals
    exit_quietly_on_stop_signals("export")

from .arguments import number_in
from .files import WriteError
from .interrupts import StopSignalsInterrupt, interrupt_signal, interrupted_exit_code
from .inference.base import BackendUnavailable, ReferenceMismatch
from .inference.batching import COMPILED_BATCH_SIZES, MAX_BATCH_SIZE
from .inference.cache import sidecar_path
from .inference.onnx_export import OPSET, ExportError, dynamic_axes, export_onnx, written_opset
from .weights import WeightsError, resolve_weights, weights_paths


def _engine_paths(path: Path, batch_sizes: tuple[int, ...]) -> dict[int, Path]:
    """One engine per batch size: ``out.engine`` for a single size, else ``out.b<size>.engine``."""
    if len(batch_sizes) == 1:
        return {batch_sizes[0]: path}
    return {size: path.with_name(f"{path.stem}.b{size}{path.suffix or '.engine'}") for size in batch_sizes}


def _output_problem(outputs: list[Path], weights: str) -> str | None:
    """Why one of ``outputs`` may not be written: it is one of the weights' own files (``--onnx``
    naming the .safetensors replaced the trained weights with ONNX, exit 0), a second output, a
    directory, or under a file."""
    # a weights file that cannot be resolved (a symlink loop) is not read either: loading says so
    inputs = {resolved for resolved in map(_resolved, weights_paths(weights)) if resolved is not None}
    seen = set()
    for path in outputs:
        if path.is_dir():       # found only after the export (minutes with engines), naming a temporary file
            return f"{path} is a directory: give a file path"
        # found only after the export too, as "could not write ... : File exists" (mkdir's errno)
        folder = next((parent for parent in path.parents if parent.exists()), None)
        if folder is not None and not folder.is_dir():
            return f"{path}: {folder} is a file, not a folder: give another output path"
        resolved = _resolved(path)
        if resolved is None:
            return f"{path}: a symbolic link that leads back to itself: give another output path"
        if resolved in inputs:
            return f"{path} is a file of the weights read (--weights {weights}): give another output path"
        if resolved in seen:
            return f"{path} is named for two outputs"
        seen.add(resolved)
    return None


def _resolved(path: Path) -> Path | None:
    """``path.resolve()``, or None for a symbolic link loop (RuntimeError in Python < 3.13, then
    OSError: a traceback from the check above, before anything was read)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return None


def _one_line(exc: BaseException) -> str:
    """An error as one line: the message of the errors this CLI expects, else also the exception's type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (BackendUnavailable, ReferenceMismatch, ExportError, WriteError, ValueError)):
        return text
    return f"{exc.__class__.__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cfi_pose_ros.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, type=resolve_weights,
                        help="weights file (.safetensors with its .json), or a packaged one's name (cfi_h36m_d128)")
    parser.add_argument("--onnx", required=True, type=Path, help="output ONNX file")
    parser.add_argument("--opset", type=int, default=OPSET,
                        help=f"opset of the written ONNX file (>= 17, default {OPSET}; engines always use {OPSET})")
    parser.add_argument("--tensorrt-engine", type=Path, default=None,
                        help="also build TensorRT engines (one per batch size: out.b<size>.engine, "
                             "or exactly this path for a single size); needs tensorrt and a CUDA GPU")
    # None: not given, so that one given without --tensorrt-engine is refused, not ignored
    parser.add_argument("--precision", choices=("fp32", "fp16"), default=None,
                        help="TensorRT engine precision (default fp32; the ONNX file is always fp32)")
    # past MAX_BATCH_SIZE, build_engine_files refused the sizes only after the ONNX export was written
    parser.add_argument("--batch-sizes", type=number_in(int, 1, MAX_BATCH_SIZE), nargs="+",
                        default=None,
                        help=f"one TensorRT engine per size, 1 to {MAX_BATCH_SIZE} "
                             f"(default: {' '.join(map(str, COMPILED_BATCH_SIZES))})")
    args = parser.parse_args(argv)
    if args.tensorrt_engine is None:
        given = [flag for flag, value in (("--precision", args.precision), ("--batch-sizes", args.batch_sizes))
                 if value is not None]
        if given:       # they were ignored: an ONNX file written, exit 0, as if engines had been asked for
            parser.error(f"{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to TensorRT engines: "
                         "add --tensorrt-engine PATH")
    args.precision = args.precision or "fp32"
    args.batch_sizes = args.batch_sizes or list(COMPILED_BATCH_SIZES)
    if args.onnx.suffix != ".onnx":
        parser.error(f"--onnx {args.onnx}: an ONNX file's name ends in .onnx")
    engines = ([] if args.tensorrt_engine is None else
               list(_engine_paths(args.tensorrt_engine, tuple(sorted(set(args.batch_sizes)))).values()))
    # each engine's sidecar too: `--tensorrt-engine dir/model` wrote dir/model.json over the
    # config of the weights dir/model.safetensors it was exported from, exit 0
    outputs = [args.onnx, *engines, *map(sidecar_path, engines)]
    problem = _output_problem(outputs, args.weights)
    if problem:
        parser.error(problem)
    if argv is not None:        # called from Python: a signal is the caller's to handle
        return _export(args)
    started = time.time()
    try:
        with StopSignalsInterrupt("export"):
            return _export(args)
    except KeyboardInterrupt as interrupt:
        # each file is written whole or not at all (renamed into place; a temporary one is removed)
        written = [str(path) for path in outputs if path.is_file() and path.stat().st_mtime >= started]
        print(f"export: interrupted by {interrupt_signal(interrupt).name}; "
              + (f"written before it: {', '.join(written)}" if written else "nothing written"), file=sys.stderr)
        return interrupted_exit_code(interrupt)


def _export(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        proto, diff = export_onnx(args.weights, args.onnx, opset=args.opset)
    # OSError: --onnx cannot be written; ImportError: an onnxruntime installed that cannot load
    except (WeightsError, ExportError, WriteError, ValueError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    axes = dynamic_axes(proto)
    print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB, opset {written_opset(proto)}, "
          f"{len(proto.graph.node)} nodes) in {time.perf_counter() - start:.1f} s; "
          f"dynamic axes {axes}; max |ONNX - PyTorch| = {diff:.2e} m")
    if args.tensorrt_engine is None:
        return 0

    from .inference.tensorrt_backend import build_engine_files

    try:
        sizes = tuple(sorted(set(args.batch_sizes)))
        written = build_engine_files(args.weights, _engine_paths(args.tensorrt_engine, sizes), args.precision,
                                     log=print)
    # TensorRT reports through RuntimeError (parser, builder, ExportError, ReferenceMismatch,
    # BackendUnavailable), TypeError (a binding that could not start CUDA) and OSError (writing).
    except (RuntimeError, TypeError, ValueError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    for size, (path, engine_diff) in written.items():
        print(f"wrote {path} (batch {size}, {args.precision}, max |TensorRT - PyTorch| = {engine_diff:.2e} m)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
