"""``onnxruntime``: the exported fused graph on ONNX Runtime's CPU execution provider, fp32.

Session options, chosen for the lowest single-request latency on a small CPU
(measured on 2 cores; see ``benchmarks/bench_inference.py``):

* ``graph_optimization_level = ORT_ENABLE_ALL``: constant folding, Gemm/Gelu/
  LayerNorm fusions and MLAS weight pre-packing (the GEMMs' B operands are
  packed once at load time).
* ``execution_mode = ORT_SEQUENTIAL`` and ``inter_op_num_threads = 1``: the
  graph is one chain of dependent GEMMs, there is nothing to run in parallel
  *between* operators; all threads go to the intra-op pool that splits each GEMM.
* ``intra_op_num_threads = threads`` (``None``: ONNX Runtime's default, one per
  physical core).
* Spinning (``spinning``, :data:`SPINNING`): ``"run"`` by default, i.e.
  ``session.intra_op.allow_spinning = 1`` with ``session.force_spinning_stop = 1``:
  the workers busy-wait for the next operator *during* a run (one pose is ~170
  operator hand-offs; waking a sleeping worker for each costs more than the small
  GEMMs themselves: paper configuration, batch 1, 2 cores, one run of
  ``benchmarks/bench_inference.py --explore``: 5.20 ms ``"run"``, 5.75 ms ``"off"``,
  4.92 ms ``"always"``) and stop the moment
  the run returns, so between frames they burn no CPU that the rest of the robot
  needs. ``"always"`` is ONNX Runtime's own default (workers keep spinning after a
  run: measured to collapse when another process needs the cores, p50 doubled at
  batch 1 next to a training job); ``"off"`` never spins.
* ``session.set_denormal_as_zero = 1``: denormal inputs to the GEMMs cannot
  slow them down (no effect on accuracy at the 1e-4 m tolerance).
* One session with a dynamic batch axis serves all fixed batch sizes: fixed
  per-size sessions (``add_free_dimension_override_by_name``) measured the same
  and would hold one pre-packed copy of the weights each.

The ONNX file is exported once per weights file and cached under
``<cache_dir>/onnx/`` (key: the weights' SHA-256, graph version, opset,
precision and exporter: torch and onnxscript versions); without a cache directory it is exported in
memory. Every new session is checked against the PyTorch reference.
"""
from __future__ import annotations

import numpy as np

from ..interrupts import raise_if_interrupted
from ..model import CFINet
from ..weights import WeightsError
from .base import BackendUnavailable, Lifter, LogFn, ReferenceMismatch, TOLERANCES, as_log_fn, check_threads
from .batching import CPU_BATCH_SIZES
from .onnx_export import exported_onnx, exporter_unavailable_reason
from .reference import check_against_reference


SPINNING = ("run", "off", "always")   # see the module docstring
_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


def onnxruntime_unavailable_reason() -> str | None:
    """Why the onnxruntime backend cannot run here, or ``None``."""
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001 - any import failure makes it unavailable
        raise_if_interrupted(exc)       # but a stop signal's
        return f"Python module 'onnxruntime' not importable ({exc.__class__.__name__}: {exc})"
    if "CPUExecutionProvider" not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no CPUExecutionProvider"
    return exporter_unavailable_reason()


class OnnxRuntimeLifter(Lifter):
    """ONNX Runtime CPU session over the fused graph (see the module docstring for the options)."""

    backend = "onnxruntime"
    default_batch_sizes = CPU_BATCH_SIZES

    def __init__(self, model: CFINet, *, batch_sizes=None, threads: int | None = None,
                 spinning: str = "run", cache_dir=None, weights_sha256: str = "", precision: str = "fp32",
                 log: LogFn | None = None, onnx_bytes: bytes | None = None, optimization: str = "all"):
        super().__init__(precision=precision, batch_sizes=batch_sizes, num_joints=model.config.num_joints,
                         out_channels=model.config.out_channels, weights_sha256=weights_sha256)
        reason = onnxruntime_unavailable_reason()
        if reason:
            raise BackendUnavailable(f"onnxruntime: {reason}")
        check_threads(threads)
        log = as_log_fn(log)
        if optimization not in _LEVELS:
            raise ValueError(f"unknown optimization level {optimization!r}; valid: {', '.join(_LEVELS)}")
        if spinning not in SPINNING:
            raise ValueError(f"unknown spinning policy {spinning!r}; valid: {', '.join(SPINNING)}")
        self._threads, self._spinning, self._optimization = threads, spinning, optimization
        if onnx_bytes is not None:
            self._session, self.onnx_source = self._make_session(onnx_bytes), "given"
            self.max_abs_diff = self._check(model)
            return
        data, self.onnx_source = exported_onnx(model, weights_sha256, cache_dir, precision, log)
        try:
            self._session = self._make_session(data)
            self.max_abs_diff = self._check(model)
        except WeightsError:
            raise           # the model's own output, not the file's: an export again would fail alike
        except Exception as exc:  # noqa: BLE001 - whatever the cached file makes onnxruntime raise
            # A cached file is whatever is on the disk under a sidecar that matches it. Garbage
            # (InvalidProtobuf, InvalidArgument, Fail, ...: an InvalidProtobuf traceback ended
            # `offline --backend onnxruntime` at every start) and a graph that loads but does not
            # run (a second input: the ValueError of onnxruntime's Python wrapper, "Required inputs
            # ... are missing", failed every configure of the node, the file kept) are stale
            # entries like one that fails the check; a fresh export failing too raises from the
            # second try
            raise_if_interrupted(exc)       # a stop signal's, inside onnxruntime
            if self.onnx_source == "memory":
                raise
            problem = "failed the reference check" if isinstance(exc, ReferenceMismatch) else "cannot be loaded"
            reason = (str(exc).splitlines() or [exc.__class__.__name__])[0]    # Fail's quotes C++ over lines
            log(f"onnxruntime: cached export {problem} ({reason}); exporting again")
            data, self.onnx_source = exported_onnx(model, weights_sha256, cache_dir, precision, log, refresh=True)
            self._session = self._make_session(data)
            self.max_abs_diff = self._check(model)

    def _make_session(self, data: bytes):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[self._optimization])
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if self._threads is not None:
            options.intra_op_num_threads = self._threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if self._spinning == "off" else "1")
        options.add_session_config_entry("session.force_spinning_stop", "1" if self._spinning == "run" else "0")
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        options.log_severity_level = 3
        flushing = flushes_subnormals()
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        if not flushing and flushes_subnormals():
            # set_denormal_as_zero is for ONNX Runtime's own threads, but it also sets FTZ/DAZ on
            # the thread that makes the session: every float of the caller's after that (its
            # numpy, its other libraries) flushed subnormals to zero, against IEEE 754
            import torch

            torch.set_flush_denormal(False)
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        return session

    def _check(self, model: CFINet) -> float:
        return check_against_reference(self._run_fixed, model, self.batch_sizes, TOLERANCES[self.precision],
                                       "onnxruntime session")

    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: batch})[0]

    def _details(self) -> dict:
        import onnxruntime as ort

        return {"device": "cpu", "threads": self._threads, "spinning": self._spinning,
                "graph_optimization": self._optimization,
                "onnxruntime_version": ort.__version__, "onnx": self.onnx_source}

    def _release(self) -> None:
        self._session = None


def flushes_subnormals() -> bool:
    """Whether this thread's CPU flushes subnormal floats to zero (x86 FTZ/DAZ)."""
    smallest_normal = np.array([np.finfo(np.float64).tiny])
    return bool((smallest_normal / 2)[0] == 0.0)
