"""``tensorrt``: TensorRT engines built from the exported ONNX graph with TensorRT's ONNX parser.

Engines
-------
**One engine per fixed batch size**, each with a single optimization profile
whose min = opt = max = ``(size, 17, 2)``. Each engine is tuned for exactly
its shape, is cached (and invalidated) on its own, and a new batch size only
builds one more engine. The cost is that every engine holds its own copy of
the weights on the GPU (paper model: ~70 MB fp32 / ~35 MB fp16 each, ~350 MB
for five fp32 sizes); one engine with one profile per size would share them
but would rebuild everything when any size changes.

Precision
---------
* ``fp32``: the fp32 graph, TF32 off (``BuilderFlag.TF32`` cleared), so the
  1e-4 m tolerance holds.
* ``fp16``: where TensorRT has strongly typed networks
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: 10.x, and always on in
  11.x where ``BuilderFlag.FP16`` is removed) the engine is built from the
  mixed-precision export (fp16 matmuls, fp32 LayerNorm/softmax/GELU/residual,
  explicit casts) and runs exactly those types. Older TensorRT builds the fp32
  graph with ``BuilderFlag.FP16`` and lets the builder choose.

Cache
-----
``<cache_dir>/tensorrt-engine/cfi-<weights>-<precision>-b<size>-<key>.engine``
with a JSON sidecar; the key (:func:`.cache.engine_key_fields`) is the
weights' SHA-256, the TensorRT version, GPU name and compute capability,
precision, input shape, graph version and opset. A cached engine is loaded
only when its sidecar has exactly the expected key and its bytes have the
recorded SHA-256; anything else is rebuilt, never loaded.

Every engine, freshly built or loaded from the cache, is run on realistic
inputs and compared with the float32 PyTorch reference before use
(max abs diff <= 1e-4 m fp32, 2e-3 m fp16); a new engine is only written to
the cache after it passes, and a failure raises :class:`~.base.ReferenceMismatch`.

Inference uses TensorRT's name-based I/O API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with PyTorch CUDA tensors as
device buffers and a PyTorch CUDA stream, so no pycuda/cuda-python is needed.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..model import CFINet
from . import cache
from .base import (BackendUnavailable, Lifter, LogFn, ReferenceMismatch, TOLERANCES, as_log_fn,
                   check_precision, exporter_unavailable_reason)
from .batching import normalize_batch_sizes
from .cuda_backend import cuda_unavailable_reason
from .reference import check_against_reference

WORKSPACE_BYTES = 1 << 30


def _import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install raising OSError
        raise BackendUnavailable(f"tensorrt: Python module 'tensorrt' not importable "
                                 f"({exc.__class__.__name__}: {exc})") from exc
    return trt


def tensorrt_unavailable_reason() -> str | None:
    """Why the tensorrt backend cannot run here, or ``None``."""
    try:
        _import_tensorrt()
    except BackendUnavailable as exc:
        return str(exc).removeprefix("tensorrt: ")
    reason = cuda_unavailable_reason()
    if reason:
        return f"needs a CUDA device visible to PyTorch (buffers and streams): {reason}"
    return exporter_unavailable_reason()


def _strongly_typed(trt) -> bool:
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def onnx_precision_for(trt, precision: str) -> str:
    """Which exported graph the builder parses: the typed one under strong typing, else fp32."""
    return precision if _strongly_typed(trt) else "fp32"


def _parser_error(error) -> str:
    try:
        return f"{error.desc()} (node {error.node()}, {error.code()})"
    except Exception:  # noqa: BLE001 - older/newer bindings: fall back to the object's text
        return str(error)


def build_serialized_engine(trt, logger, onnx_bytes: bytes, input_name: str, input_shape: tuple[int, ...],
                            precision: str, workspace_bytes: int = WORKSPACE_BYTES) -> bytes:
    """Parse ``onnx_bytes`` and build one engine for exactly ``input_shape``; the serialized plan."""
    builder = trt.Builder(logger)
    flags = 0
    if _strongly_typed(trt):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser rejected the exported graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16" and not _strongly_typed(trt):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, input_shape, input_shape, input_shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build a {precision} engine for input {input_shape} "
                           f"(see the TensorRT log above)")
    return bytes(serialized)


class _EngineRunner:
    """One engine + execution context with static device/pinned buffers for one batch size."""

    def __init__(self, trt, engine, input_name: str, output_name: str, input_shape: tuple[int, ...],
                 device: torch.device, stream: "torch.cuda.Stream"):
        self.engine, self.stream = engine, stream
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if {input_name, output_name} - names:
            raise RuntimeError(f"engine tensors are {sorted(names)}, expected {input_name} and {output_name}")
        for name in (input_name, output_name):
            if engine.get_tensor_dtype(name) != trt.float32:
                raise RuntimeError(f"engine tensor {name} is {engine.get_tensor_dtype(name)}, expected float32")
        self.context = engine.create_execution_context()
        if not self.context.set_input_shape(input_name, input_shape):
            raise RuntimeError(f"engine does not accept input shape {input_shape}")
        output_shape = tuple(self.context.get_tensor_shape(output_name))
        self.device_in = torch.empty(input_shape, dtype=torch.float32, device=device)
        self.device_out = torch.empty(output_shape, dtype=torch.float32, device=device)
        self.host_in = torch.empty(input_shape, dtype=torch.float32, pin_memory=True)
        self.host_out = torch.empty(output_shape, dtype=torch.float32, pin_memory=True)
        self.context.set_tensor_address(input_name, self.device_in.data_ptr())
        self.context.set_tensor_address(output_name, self.device_out.data_ptr())

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.host_in.numpy()[...] = batch
        with torch.cuda.stream(self.stream):
            self.device_in.copy_(self.host_in, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            self.host_out.copy_(self.device_out, non_blocking=True)
        self.stream.synchronize()
        return self.host_out.numpy().copy()


class _Engines:
    """TensorRT runtime state shared by the lifter and the export CLI: keys, build, load, check."""

    def __init__(self, model: CFINet, precision: str, weights_sha256: str, device, log: LogFn,
                 onnx_cache_dir=None):
        from .. import export

        self.trt = trt = _import_tensorrt()
        self.export = export
        self.model, self.precision, self.weights_sha256, self.log = model, precision, weights_sha256, log
        self.num_joints = model.config.num_joints
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self._onnx: bytes | None = None
        self.onnx_cache_dir = onnx_cache_dir     # None: the export stays in memory

    def onnx_bytes(self) -> bytes:
        """The exported graph TensorRT parses (exported on first need, cached with the ONNX exports)."""
        if self._onnx is None:
            from .onnxruntime_backend import exported_onnx

            self._onnx, _ = exported_onnx(self.model, self.weights_sha256, self.onnx_cache_dir,
                                          onnx_precision_for(self.trt, self.precision), self.log)
        return self._onnx

    def input_shape(self, size: int) -> tuple[int, int, int]:
        return (size, self.num_joints, 2)

    def key_fields(self, size: int) -> dict:
        return cache.engine_key_fields(
            weights_sha256=self.weights_sha256 or "unhashed", tensorrt_version=self.trt.__version__,
            gpu_name=torch.cuda.get_device_name(self.device),
            compute_capability=torch.cuda.get_device_capability(self.device),
            precision=self.precision, input_shape=self.input_shape(size),
            graph=self.export.GRAPH_VERSION, opset=self.export.OPSET)

    def build(self, size: int) -> bytes:
        return build_serialized_engine(self.trt, self.logger, self.onnx_bytes(), self.export.INPUT_NAME,
                                       self.input_shape(size), self.precision)

    def runner(self, plan: bytes, size: int) -> _EngineRunner:
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine")
        return _EngineRunner(self.trt, engine, self.export.INPUT_NAME, self.export.OUTPUT_NAME,
                             self.input_shape(size), self.device, self.stream)

    def verify(self, runner: _EngineRunner, size: int) -> float:
        """Max abs diff to the reference; :class:`ReferenceMismatch` past the tolerance."""
        return check_against_reference(runner.run, self.model, (size,), TOLERANCES[self.precision],
                                       f"tensorrt {self.precision} engine for batch {size}")

    def load_or_build(self, size: int, cache_dir) -> tuple[_EngineRunner, float, Path]:
        fields = self.key_fields(size)
        path = cache.cache_path(cache_dir, fields, ".engine")
        plan, reason = cache.load(path, fields)
        if plan is not None and self.weights_sha256:
            try:
                runner = self.runner(plan, size)
                diff = self.verify(runner, size)
                self.log(f"tensorrt: batch {size}: cached engine {path.name} (max |diff| {diff:.2e} m)")
                return runner, diff, path
            except (RuntimeError, ReferenceMismatch) as exc:
                reason = f"cached engine unusable ({exc})"
        elif plan is not None:
            reason = "the weights have no SHA-256, so the cache is not trusted"
        self.log(f"tensorrt: batch {size}: building a {self.precision} engine ({reason}); this can take minutes")
        start = time.perf_counter()
        plan = self.build(size)
        runner = self.runner(plan, size)
        diff = self.verify(runner, size)          # raises ReferenceMismatch: a failing engine is never cached
        if self.weights_sha256:
            cache.store(path, plan, fields, {"max_abs_diff_m": diff, "build_seconds": time.perf_counter() - start})
        self.log(f"tensorrt: batch {size}: built in {time.perf_counter() - start:.0f} s, max |diff| {diff:.2e} m")
        return runner, diff, path


class TensorRTLifter(Lifter):
    backend = "tensorrt"

    def __init__(self, model: CFINet, *, precision: str = "fp32", batch_sizes=None,
                 weights_sha256: str = "", cache_dir=None, device: str | int | torch.device = "cuda",
                 log: LogFn | None = None):
        super().__init__(precision=precision, batch_sizes=batch_sizes, num_joints=model.config.num_joints,
                         out_channels=model.config.out_channels, weights_sha256=weights_sha256)
        reason = tensorrt_unavailable_reason()
        if reason:
            raise BackendUnavailable(f"tensorrt: {reason}")
        if cache_dir is None:
            raise ValueError("the tensorrt backend needs a cache_dir for its engines")
        log = as_log_fn(log)
        self._engines_state = state = _Engines(model, precision, weights_sha256, device, log, cache_dir)
        self._lock = threading.Lock()
        self._runners: dict[int, _EngineRunner] = {}
        self.engine_files: dict[int, str] = {}
        diffs = []
        for size in self.batch_sizes:
            runner, diff, path = state.load_or_build(size, cache_dir)
            self._runners[size], self.engine_files[size] = runner, str(path)
            diffs.append(diff)
        self.max_abs_diff = max(diffs)
        log(f"tensorrt {state.trt.__version__}: {len(self._runners)} {precision} engines ready on "
            f"{torch.cuda.get_device_name(state.device)}; max |diff| to reference {self.max_abs_diff:.2e} m")

    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._runners[batch.shape[0]].run(batch)

    def _details(self) -> dict:
        state = self._engines_state
        major, minor = torch.cuda.get_device_capability(state.device)
        return {"device": str(state.device), "gpu": torch.cuda.get_device_name(state.device),
                "compute_capability": f"{major}.{minor}", "tensorrt_version": state.trt.__version__,
                "strongly_typed": _strongly_typed(state.trt), "engines": self.engine_files}

    def close(self) -> None:
        self._runners = {}


def build_engine_files(weights, paths: dict[int, Path], precision: str = "fp32",
                       log: LogFn | None = None) -> dict[int, tuple[Path, float]]:
    """Build, check and write one engine per batch size to the given paths (the export CLI).

    Each file gets a ``.json`` sidecar with its key fields and measured
    difference. Returns ``{size: (path, max_abs_diff)}``.
    """
    from ..export import load_model

    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailable(f"tensorrt: {reason}")
    check_precision("tensorrt", precision)
    model, sha = load_model(weights)
    state = _Engines(model, precision, sha, "cuda", as_log_fn(log))
    written = {}
    for size in normalize_batch_sizes(paths):
        plan = state.build(size)
        diff = state.verify(state.runner(plan, size), size)
        cache.store(Path(paths[size]), plan, state.key_fields(size), {"max_abs_diff_m": diff})
        written[size] = (Path(paths[size]), diff)
    return written
