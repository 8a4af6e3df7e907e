"""Weights -> ONNX (and optionally TensorRT engines), checked against PyTorch.

    python -m cfi_pose_ros.export --weights W --onnx out.onnx
    python -m cfi_pose_ros.export --weights W --onnx out.onnx \\
        --tensorrt-engine out.engine --precision fp16 --batch-sizes 1 2 4 8 16

The graph
---------
What is exported is :class:`~cfi_pose_ros.inference.fused.FusedCFINet`, the
inference form of ``CFINet`` (LayerNorm affines folded into the next matmul,
matmuls that read the same tensor stacked, the three cross-attentions run as
one): for the paper model 23 weight matmuls instead of 56 (41 MatMul/Gemm nodes
instead of 86), the same outputs to ~1e-6.
Input ``keypoints_2d`` (batch, 17, 2) float32, output ``joints_3d`` (batch, 17, 3)
float32; only the batch axis is dynamic (1..4096). Opset 18: every operator is
one that both ONNX Runtime and TensorRT's ONNX parser handle (LayerNormalization,
Gemm, MatMul, Softmax, Erf, Split, Concat, Reshape, Transpose); GELU is
written so that ONNX Runtime still fuses it into one kernel
(:func:`~cfi_pose_ros.inference.fused.portable_gelu`). ``precision="fp16"``
exports the mixed-precision graph (fp16 matmuls and weights, fp32
LayerNorm/softmax/GELU/residuals, explicit Casts) that a strongly typed
TensorRT build needs.

Exporter: ``torch.onnx.export(..., dynamo=True)``
-------------------------------------------------
Measured with torch 2.13 / onnxruntime 1.32 on this project's model:

* The legacy TorchScript exporter (``dynamo=False``) still works but warns that
  it is deprecated and will be removed. For the plain ``CFINet`` it emits 1190
  nodes, 560 of them shape arithmetic (Shape/Gather/Unsqueeze/Concat/Constant,
  from ``x.shape`` reads in the attention code); the dynamo exporter emits 345
  with no shape arithmetic and a symbolic ``batch`` dimension.
* After ONNX Runtime's own graph optimisation both run the same kernels at the
  same speed (within noise), so the choice is about the graph and the
  exporter's future: dynamo gives the clean, static-except-batch graph that
  TensorRT also prefers.
* Costs: the dynamo export takes ~9 s for the paper model (legacy ~2 s), which
  is why backends cache the exported file (keyed by the weights' SHA-256, the
  graph version, opset and exporter version), and it needs ``onnxscript``.
* Pitfall handled here: an example batch of 1 makes ``torch.export`` specialise
  the batch dimension to 1, so the example batch is 2.

Every export is checked with ``onnx.checker`` (full check, with shape
inference) and run with ONNX Runtime (or ``onnx.reference`` where ORT has no
kernel) against the PyTorch float32 model on realistic inputs
(:func:`~cfi_pose_ros.inference.reference.reference_inputs`); the maximum
absolute difference must stay below the precision's tolerance (1e-4 m for fp32).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .inference.base import TOLERANCES, ReferenceMismatch
from .inference.batching import COMPILED_BATCH_SIZES
from .inference.fused import COMPUTE_DTYPES, FusedCFINet
from .inference.reference import check_against_reference, reference_inputs
from .model import CFINet

INPUT_NAME = "keypoints_2d"
OUTPUT_NAME = "joints_3d"
BATCH_DIM = "batch"
MAX_BATCH = 4096
OPSET = 18
GRAPH_VERSION = "cfi-fused/1"      # bump when FusedCFINet's graph changes: invalidates cached exports/engines


class ExportError(RuntimeError):
    """An export that failed, or whose result does not match PyTorch."""


def exporter_id() -> str:
    """Identifies what produced an ONNX file (part of the cache key)."""
    return f"torch-{torch.__version__}-dynamo"


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress/registration chatter; real errors still raise."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx.experimental.symbolic_shapes")
    saved = {name: logging.getLogger(name).level for name in names}
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def export_model(model: CFINet, *, precision: str = "fp32", opset: int = OPSET, fused: bool = True):
    """``CFINet`` -> checked ``onnx.ModelProto`` of its fused inference graph (batch axis dynamic).

    ``fused=False`` exports the plain ``CFINet`` instead (fp32 only; for comparisons).
    """
    import onnx

    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(COMPUTE_DTYPES)}")
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    if fused:
        module = FusedCFINet(model.eval(), COMPUTE_DTYPES[precision], portable_gelu=True).cpu()   # a copy: model untouched
    elif precision == "fp32":
        module = model.eval()
    else:
        raise ValueError("only the fused graph can be exported in reduced precision")
    example = torch.from_numpy(reference_inputs(2, seed=0))   # batch 2: a batch of 1 would be specialised
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, verbose=False, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes={"keypoints_2d": {0: torch.export.Dim(BATCH_DIM, min=1, max=MAX_BATCH)}})
    except Exception as exc:   # the exporter raises many types; wrap them with context
        raise ExportError(f"torch.onnx.export (dynamo) failed: {exc.__class__.__name__}: {exc}") from exc
    proto = program.model_proto
    proto.producer_name = "cfi_pose_ros"
    proto.doc_string = (f"CFINet {model.config.to_dict()} as {GRAPH_VERSION if fused else 'plain CFINet'}, "
                        f"{precision}; "
                        f"input {INPUT_NAME} (batch, {model.config.num_joints}, 2) screen-normalised, "
                        f"output {OUTPUT_NAME} (batch, {model.config.num_joints}, 3) metres")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported graph fails onnx.checker: {exc}") from exc
    return proto


def dynamic_axes(proto) -> dict[str, list[tuple[int, str]]]:
    """``{tensor name: [(axis, symbol), ...]}`` of the graph inputs' and outputs' non-fixed axes."""
    result = {}
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        result[value.name] = [(i, d.dim_param or "?") for i, d in enumerate(dims) if not d.HasField("dim_value")]
    return result


def onnx_runner(proto_or_bytes, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """A CPU runner for an exported graph (one session, reused for every call): ONNX Runtime,
    or ``onnx.reference`` where ORT lacks a kernel (e.g. fp16 ops on x86)."""
    data = proto_or_bytes if isinstance(proto_or_bytes, bytes) else proto_or_bytes.SerializeToString()
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        return lambda keypoints: session.run(None, {INPUT_NAME: keypoints})[0]
    except ImportError:
        pass
    except Exception as exc:   # noqa: BLE001 - e.g. NOT_IMPLEMENTED for fp16 kernels on x86
        if "NOT_IMPLEMENTED" not in str(exc) and "Could not find an implementation" not in str(exc):
            raise
    import onnx
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load_from_string(data))
    return lambda keypoints: evaluator.run(None, {INPUT_NAME: keypoints})[0]


def run_onnx(proto_or_bytes, keypoints: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run an exported graph once on the CPU (see :func:`onnx_runner`)."""
    return onnx_runner(proto_or_bytes, threads)(keypoints)


def check_export(proto, model: CFINet, *, precision: str = "fp32", batch_sizes=(1, 3, 16),
                 tolerance: float | None = None) -> float:
    """Max abs difference (m) of the ONNX graph to PyTorch float32 on realistic inputs; raises past the tolerance."""
    tolerance = TOLERANCES[precision] if tolerance is None else tolerance
    try:
        return check_against_reference(onnx_runner(proto), model.eval(), tuple(batch_sizes), tolerance,
                                       "exported ONNX", inputs=reference_inputs(max(batch_sizes), seed=4321))
    except ReferenceMismatch as exc:
        raise ExportError(str(exc)) from exc


def load_model(weights) -> tuple[CFINet, str]:
    """``(model, SHA-256)``: of the tensor file for a weights file, of the tensors for a ``CFINet``."""
    from .inference.cache import model_sha256
    from .weights import _paths, file_sha256, load_weights

    if isinstance(weights, CFINet):
        return weights.eval(), model_sha256(weights)
    model, info = load_weights(weights)
    return model, info.sha256 or file_sha256(_paths(weights)[0])


def export_onnx(weights, path: str | Path | None = None, *, precision: str = "fp32", opset: int = OPSET,
                check: bool = True):
    """Export ``weights`` (a weights file or a ``CFINet``); write to ``path`` if given.

    Returns ``(onnx.ModelProto, max_abs_diff or None)``.
    """
    import onnx

    from .inference.cache import atomic_write_bytes

    model, _ = load_model(weights)
    proto = export_model(model, precision=precision, opset=opset)
    diff = check_export(proto, model, precision=precision) if check else None
    if path is not None:
        atomic_write_bytes(Path(path), proto.SerializeToString())
        onnx.checker.check_model(str(path))
    return proto, diff


def _engine_paths(path: Path, batch_sizes: tuple[int, ...]) -> dict[int, Path]:
    """One engine per batch size: ``out.engine`` for a single size, else ``out.b<size>.engine``."""
    if len(batch_sizes) == 1:
        return {batch_sizes[0]: path}
    return {size: path.with_name(f"{path.stem}.b{size}{path.suffix or '.engine'}") for size in batch_sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cfi_pose_ros.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="weights file (.safetensors with its .json)")
    parser.add_argument("--onnx", required=True, type=Path, help="output ONNX file")
    parser.add_argument("--opset", type=int, default=OPSET,
                        help=f"opset of the written ONNX file (>= 17, default {OPSET}; engines always use {OPSET})")
    parser.add_argument("--tensorrt-engine", type=Path, default=None,
                        help="also build TensorRT engines (one per batch size: out.b<size>.engine, "
                             "or exactly this path for a single size); needs tensorrt and a CUDA GPU")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="TensorRT engine precision (the ONNX file is always fp32)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(COMPILED_BATCH_SIZES))
    args = parser.parse_args(argv)

    from .weights import WeightsError

    start = time.perf_counter()
    try:
        proto, diff = export_onnx(args.weights, args.onnx, opset=args.opset)
    except (WeightsError, ExportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    axes = dynamic_axes(proto)
    print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB, opset {args.opset}, "
          f"{len(proto.graph.node)} nodes) in {time.perf_counter() - start:.1f} s; "
          f"dynamic axes {axes}; max |ONNX - PyTorch| = {diff:.2e} m")
    if args.tensorrt_engine is None:
        return 0

    from .inference.base import BackendUnavailable, ReferenceMismatch
    from .inference.tensorrt_backend import build_engine_files

    try:
        sizes = tuple(sorted(set(args.batch_sizes)))
        written = build_engine_files(args.weights, _engine_paths(args.tensorrt_engine, sizes), args.precision,
                                     log=print)
    except (BackendUnavailable, ReferenceMismatch, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for size, (path, engine_diff) in written.items():
        print(f"wrote {path} (batch {size}, {args.precision}, max |TensorRT - PyTorch| = {engine_diff:.2e} m)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
