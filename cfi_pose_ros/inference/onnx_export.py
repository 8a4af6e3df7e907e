"""Weights -> checked ONNX graph: the export every non-torch backend builds on.

The command line around it is :mod:`cfi_pose_ros.export`; this module is what
the backends import (the CLI imports the inference package, never the other way).

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
  graph version, opset and the torch and onnxscript versions), and it needs ``onnxscript``.
* Pitfall handled here: an example batch of 1 makes ``torch.export`` specialise
  the batch dimension to 1, so the example batch is 2.

Every export is checked with ``onnx.checker`` (full check, with shape
inference) and run with ONNX Runtime (or ``onnx.reference`` where ORT has no
kernel) against the PyTorch float32 model on realistic inputs
(:func:`~cfi_pose_ros.inference.reference.reference_inputs`); the maximum
absolute difference must stay below the precision's tolerance (1e-4 m for fp32).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..files import write_error
from ..interrupts import raise_if_interrupted
from ..model import CFINet
from . import cache
from . import fused as fused_graph    # its FLOAT32_BLOCKS read when used: see graph_key
from .base import TOLERANCES, LogFn, ReferenceMismatch
from .fused import COMPUTE_DTYPES, FusedCFINet
from .reference import check_against_reference, reference_inputs

INPUT_NAME = "keypoints_2d"
OUTPUT_NAME = "joints_3d"
BATCH_DIM = "batch"
MAX_BATCH = 4096
OPSET = 18
GRAPH_VERSION = "cfi-fused/3"      # bump when FusedCFINet's graph changes: see graph_key


def graph_key() -> str:
    """The graph part of every cached export's and engine's key: GRAPH_VERSION and the float32
    blocks of reduced-precision graphs (``fused.FLOAT32_BLOCKS``), whose change (0 to 1) left fp16
    exports, engines and recorded engine failures of the old graph served as the new one's."""
    return f"{GRAPH_VERSION}, float32 blocks {fused_graph.FLOAT32_BLOCKS}"


class ExportError(RuntimeError):
    """An export that failed, or whose result does not match PyTorch."""


def exporter_id() -> str:
    """Identifies what produced an ONNX file (part of the cache key of exports and engines): torch,
    and onnxscript, in which the dynamo exporter translates and optimises the graph (another
    onnxscript writes another graph under the same torch)."""
    import onnxscript

    return f"torch-{torch.__version__}-onnxscript-{onnxscript.__version__}-dynamo"


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


def written_opset(proto) -> int:
    """The opset of the default ONNX domain a model imports."""
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


def export_model(model: CFINet, *, precision: str = "fp32", opset: int = OPSET, fused: bool = True):
    """``CFINet`` -> checked ``onnx.ModelProto`` of its fused inference graph (batch axis dynamic).

    ``fused=False`` exports the plain ``CFINet`` instead (fp32 only; for comparisons).
    """
    import onnx

    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(COMPUTE_DTYPES)}")
    if not 17 <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be >= 17 (LayerNormalization) and at most {onnx.defs.onnx_opset_version()} "
                         f"(the newest this onnx {onnx.__version__} knows), got {opset}")
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
    if written_opset(proto) != opset:
        # the exporter falls back to its own opset, with a warning only, where it cannot convert:
        # `--opset 99` printed "opset 99" over a file of opset 18
        raise ExportError(f"the exporter wrote opset {written_opset(proto)}, not the {opset} asked for")
    proto.producer_name = "cfi_pose_ros"
    proto.doc_string = (f"CFINet {model.config.to_dict()} as {graph_key() if fused else 'plain CFINet'}, "
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
    except ModuleNotFoundError as exc:
        # not installed: onnx.reference checks instead. Any other ImportError (a library it
        # links missing, or a Ctrl-C inside its import of numpy, which numpy reports as
        # "import numpy failed") is raised: it made the export go on with the slow evaluator
        if exc.name != "onnxruntime":
            raise
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


def export_onnx(weights, path: str | Path | None = None, *, precision: str = "fp32", opset: int = OPSET,
                check: bool = True):
    """Export ``weights`` (a weights file or a ``CFINet``); write to ``path`` if given.

    Returns ``(onnx.ModelProto, max_abs_diff or None)``.
    """
    import onnx

    model, _ = cache.load_model(weights)
    proto = export_model(model, precision=precision, opset=opset)
    diff = check_export(proto, model, precision=precision) if check else None
    if path is not None:
        try:
            cache.atomic_write_bytes(Path(path), proto.SerializeToString())
        except OSError as exc:
            # its own text named no file (`[Errno 27] File too large`) or the temporary one
            raise write_error("the ONNX file", path, exc) from exc
        onnx.checker.check_model(str(path))
    return proto, diff


def exported_onnx(model: CFINet, weights_sha256: str, cache_dir, precision: str, log: LogFn,
                  refresh: bool = False) -> tuple[bytes, str]:
    """The fused graph's ONNX bytes, from ``cache_dir`` when a matching export is there.

    Returns ``(bytes, where)`` with ``where`` the cache path or ``"memory"``.
    ``refresh`` ignores (and replaces) a cached file.
    """
    fields = cache.onnx_key_fields(weights_sha256=weights_sha256 or "unhashed", graph=graph_key(),
                                   opset=OPSET, precision=precision, exporter=exporter_id(),
                                   model=model.config.to_dict())
    path = cache.cache_path(cache_dir, fields, ".onnx") if cache_dir is not None and weights_sha256 else None
    if path is None:
        return export_onnx(model, precision=precision)[0].SerializeToString(), "memory"
    with cache.one_builder_at_a_time(path, log):
        if not refresh:
            data, reason = cache.load(path, fields)
            if data is not None:
                return data, str(path)
            log(f"onnx export: {reason}; exporting {path.name}")
        proto, diff = export_onnx(model, precision=precision)
        data = proto.SerializeToString()
        try:
            cache.store(path, data, fields, {"max_abs_diff_m": diff})
        except OSError as exc:
            log(f"onnx export: cannot write the cache ({exc}); using the export from memory")
            return data, "memory"
        return data, str(path)


def exporter_unavailable_reason() -> str | None:
    """Why the ONNX export the non-torch backends build on cannot run here, or ``None``."""
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001 - any import failure makes export unavailable
            raise_if_interrupted(exc)   # but a stop signal's
            return f"Python module '{module}' (needed to export the model) not importable ({exc})"
    return None
