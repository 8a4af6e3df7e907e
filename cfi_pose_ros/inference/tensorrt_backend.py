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
Decided by the TensorRT version (:func:`builder_settings`), not by probing for
flags that a later release may drop:

* TensorRT >= 10 builds **strongly typed** networks (10.x: the
  ``STRONGLY_TYPED`` creation flag; 11.x: always, the flag is deprecated and
  not passed). ``fp16`` engines are built from the mixed-precision export
  (fp16 weight matmuls; fp32 LayerNorm, attention, graph mixing, GELU and
  residuals; explicit casts, see :mod:`.fused`) and run exactly those types.
* Older TensorRT builds the fp32 graph, with ``BuilderFlag.FP16`` for fp16,
  and lets the builder choose per layer.
* ``BuilderFlag.TF32`` is cleared for every precision, so fp32 layers are IEEE
  fp32 (the 1e-4 m fp32 tolerance, and the fp32 parts of fp16 engines match the
  CPU measurement behind the fp16 tolerance).

Cache
-----
``<cache_dir>/tensorrt-engine/cfi-<weights>-<precision>-b<size>-<key>.engine``
with a JSON sidecar; the key (:func:`.cache.engine_key_fields`) is the
weights' SHA-256, the TensorRT version and its CUDA build (``cu12``/``cu13``,
from the installed ``tensorrt-cu*`` package), GPU name and compute capability,
precision, input shape, graph version, opset, the ONNX exporter (torch and
onnxscript versions) and the builder settings. A cached engine is loaded only
when its sidecar has exactly the expected key and its bytes have the recorded
SHA-256; anything else is rebuilt, never loaded.

Every engine, freshly built or loaded from the cache, is run on realistic
inputs and compared with the float32 PyTorch reference before use (the
precision's :data:`~.base.TOLERANCES`); a new engine is only written to the
cache after it passes. An engine that cannot be built or fails the check is
recorded as a failure for its key (``<engine>.failed.json``, with the reason and
the tolerance it failed), and later starts raise at once instead of spending
minutes on the same build: a new TensorRT, GPU, weights, graph, exporter, builder
setting or tolerance tries again, and so does deleting that file.

Devices and errors
------------------
Building, deserialising and creating execution contexts run under
``torch.cuda.device(device)``, so ``device="cuda:1"`` builds for GPU 1 whatever
the current device is. TensorRT keeps one global logger, so this module makes
one (:func:`trt_logger`). A TensorRT that cannot start CUDA (typically a
``tensorrt-cu12``/``-cu13`` package that does not match ``torch.version.cuda``)
makes its bindings raise ``TypeError: ... factory function returned nullptr``;
that becomes :class:`~.base.BackendUnavailable` with the installed and the needed
build.

Inference uses TensorRT's name-based I/O API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``: TensorRT >= 8.5, an older one is
refused) with PyTorch CUDA tensors as device buffers and a PyTorch CUDA stream,
so no pycuda/cuda-python is needed.
"""
from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..files import write_error
from ..interrupts import raise_if_interrupted
from ..model import CFINet
from . import cache
from .base import BackendUnavailable, Lifter, LogFn, ReferenceMismatch, TOLERANCES, as_log_fn, check_precision
from .batching import normalize_batch_sizes
from .cuda_backend import cuda_unavailable_reason
from .onnx_export import (INPUT_NAME, OPSET, OUTPUT_NAME, exported_onnx, exporter_id, graph_key,
                          exporter_unavailable_reason)
from .reference import check_against_reference

WORKSPACE_BYTES = 1 << 30


class EngineError(RuntimeError):
    """TensorRT could not parse, build, load or bind an engine (deterministic for its cache key)."""


# The name-based I/O API this backend runs engines with (``num_io_tensors``, ``get_tensor_name``,
# ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) came in TensorRT 8.5; an older
# one failed on an AttributeError, 8.4 only after building an engine for minutes.
OLDEST_TENSORRT = (8, 5)


def _import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install raising OSError
        raise_if_interrupted(exc)       # but a stop signal's
        raise BackendUnavailable(f"tensorrt: Python module 'tensorrt' not importable "
                                 f"({exc.__class__.__name__}: {exc})") from exc
    if tensorrt_version(trt) < OLDEST_TENSORRT:
        oldest = ".".join(map(str, OLDEST_TENSORRT))
        raise BackendUnavailable(f"tensorrt: TensorRT {getattr(trt, '__version__', '(no version)')} is not "
                                 f"{oldest} or later, the first with the name-based I/O API this backend uses "
                                 f"(set_tensor_address, execute_async_v3); install TensorRT >= {oldest}")
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


def tensorrt_version(trt) -> tuple[int, int]:
    """(major, minor) of the imported TensorRT; a version string it cannot read counts as (0, 0)."""
    match = re.match(r"(\d+)\.(\d+)", str(getattr(trt, "__version__", "")))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def tensorrt_major(trt) -> int:
    return tensorrt_version(trt)[0]


@functools.lru_cache(maxsize=None)
def tensorrt_cuda_variant() -> str:
    """The CUDA build of the installed TensorRT: ``"cu12"``, ``"cu13"``, ... from the pip package
    that provides the ``tensorrt`` module (``tensorrt-cu12-bindings``, ...), else ``"unknown"``
    (e.g. a system install)."""
    from importlib import metadata

    names = metadata.packages_distributions().get("tensorrt", [])
    variants = sorted({m.group(1) for name in names for m in [re.search(r"(cu\d+)", name)] if m})
    return "+".join(variants) or "unknown"


def torch_cuda_variant() -> str | None:
    """``"cu12"`` etc. for the CUDA that PyTorch was built with, ``None`` for a CPU build."""
    return f"cu{torch.version.cuda.split('.')[0]}" if torch.version.cuda else None


def _cuda_build_hint(trt) -> str:
    variant = tensorrt_cuda_variant()
    build = f"the {variant} build" if variant != "unknown" else "not from a tensorrt-cuXX pip package"
    return (f"TensorRT {trt.__version__} is {build} and torch {torch.__version__} uses CUDA "
            f"{torch.version.cuda}: install the tensorrt-{torch_cuda_variant() or 'cuXX'} package that matches "
            f"torch.version.cuda (a plain `pip install tensorrt` takes the CUDA 13 build) and check the driver")


def builder_settings(trt, precision: str, workspace_bytes: int = WORKSPACE_BYTES) -> dict:
    """The builder settings for ``precision`` on this TensorRT (part of the engine cache key).

    Strong typing is decided by the version: TensorRT 10 has it behind the
    ``STRONGLY_TYPED`` flag, 11 always (flag deprecated, so not passed), older
    releases are weakly typed (fp16 through ``BuilderFlag.FP16``, which 11 removed).
    """
    major = tensorrt_major(trt)
    strongly_typed = major >= 10
    network_flags = ["STRONGLY_TYPED"] if major == 10 else [] if major >= 11 else ["EXPLICIT_BATCH"]
    return {
        "network": "strongly typed" if strongly_typed else "weakly typed",
        "network_flags": network_flags,
        "onnx_precision": precision if strongly_typed else "fp32",
        "set_flags": ["FP16"] if precision == "fp16" and not strongly_typed else [],
        "clear_flags": ["TF32"] if hasattr(trt.BuilderFlag, "TF32") else [],
        "workspace_bytes": int(workspace_bytes),
        "profile": "min=opt=max",
    }


_logger: tuple[object, object] | None = None       # (tensorrt module, its Logger)
_logger_lock = threading.Lock()


def trt_logger(trt):
    """The process's one TensorRT logger (TensorRT keeps a single global logger)."""
    global _logger
    with _logger_lock:
        if _logger is None or _logger[0] is not trt:
            _logger = (trt, trt.Logger(trt.Logger.WARNING))
        return _logger[1]


def _start(trt, factory_name: str):
    """``trt.Builder`` / ``trt.Runtime`` with the shared logger; a CUDA failure is :class:`BackendUnavailable`."""
    try:
        return getattr(trt, factory_name)(trt_logger(trt))
    except TypeError as exc:      # pybind11's "factory function returned nullptr": TensorRT could not start CUDA
        raise BackendUnavailable(f"tensorrt: trt.{factory_name} could not start CUDA ({exc}); "
                                 f"{_cuda_build_hint(trt)}") from exc


def _parser_error(error) -> str:
    try:
        return f"{error.desc()} (node {error.node()}, {error.code()})"
    except Exception:  # noqa: BLE001 - older/newer bindings: fall back to the object's text
        return str(error)


def build_serialized_engine(trt, onnx_bytes: bytes, input_name: str, input_shape: tuple[int, ...],
                            settings: dict) -> bytes:
    """Parse ``onnx_bytes`` and build one engine for exactly ``input_shape`` with ``settings``
    (:func:`builder_settings`); the serialized plan."""
    builder = _start(trt, "Builder")
    flags = 0
    for name in settings["network_flags"]:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger(trt))
    if not parser.parse(onnx_bytes):
        errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT's ONNX parser rejected the exported graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings["workspace_bytes"])
    for name in settings["clear_flags"]:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    for name in settings["set_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, input_shape, input_shape, input_shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build a {settings['onnx_precision']} engine for input "
                          f"{input_shape} (see the TensorRT log above)")
    return bytes(serialized)


def bind_address(context, name: str, tensor: torch.Tensor) -> None:
    """``context.set_tensor_address`` for ``tensor``; :class:`EngineError` when TensorRT refuses it."""
    if not context.set_tensor_address(name, tensor.data_ptr()):
        raise EngineError(f"TensorRT refused the device address of tensor {name} "
                          f"({tuple(tensor.shape)}, {tensor.device}; see the TensorRT log)")


class _EngineRunner:
    """One engine + execution context with static device/pinned buffers for one batch size."""

    def __init__(self, trt, engine, input_name: str, output_name: str, input_shape: tuple[int, ...],
                 device: torch.device, stream: "torch.cuda.Stream"):
        self.engine, self.stream = engine, stream
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if {input_name, output_name} - names:
            raise EngineError(f"engine tensors are {sorted(names)}, expected {input_name} and {output_name}")
        for name in (input_name, output_name):
            if engine.get_tensor_dtype(name) != trt.float32:
                raise EngineError(f"engine tensor {name} is {engine.get_tensor_dtype(name)}, expected float32")
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError("TensorRT could not create an execution context (see the TensorRT log)")
        if not self.context.set_input_shape(input_name, input_shape):
            raise EngineError(f"engine does not accept input shape {input_shape}")
        output_shape = tuple(self.context.get_tensor_shape(output_name))
        # allocated on the stream that uses them: a block from the default stream's pool may still
        # be in use by work queued there (a caller's own GPU work), which this stream does not wait for
        with torch.cuda.stream(stream):
            self.device_in = torch.empty(input_shape, dtype=torch.float32, device=device)
            self.device_out = torch.empty(output_shape, dtype=torch.float32, device=device)
        self.host_in = torch.empty(input_shape, dtype=torch.float32, pin_memory=True)
        self.host_out = torch.empty(output_shape, dtype=torch.float32, pin_memory=True)
        bind_address(self.context, input_name, self.device_in)
        bind_address(self.context, output_name, self.device_out)

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
        self.trt = trt = _import_tensorrt()
        self.model, self.precision, self.weights_sha256, self.log = model, precision, weights_sha256, log
        self.num_joints = model.config.num_joints
        self.settings = builder_settings(trt, precision)
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"device must be a CUDA device, got {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if tensorrt_cuda_variant() not in ("unknown", torch_cuda_variant()):
            log(f"tensorrt: warning: {_cuda_build_hint(trt)}")
        with torch.cuda.device(self.device):
            self.stream = torch.cuda.Stream(self.device)
            self.runtime = _start(trt, "Runtime")
        self._onnx: bytes | None = None
        self.onnx_cache_dir = onnx_cache_dir     # None: the export stays in memory

    def onnx_bytes(self) -> bytes:
        """The exported graph TensorRT parses (exported on first need, cached with the ONNX exports)."""
        if self._onnx is None:
            self._onnx, _ = exported_onnx(self.model, self.weights_sha256, self.onnx_cache_dir,
                                          self.settings["onnx_precision"], self.log)
        return self._onnx

    def input_shape(self, size: int) -> tuple[int, int, int]:
        return (size, self.num_joints, 2)

    def key_fields(self, size: int) -> dict:
        return cache.engine_key_fields(
            weights_sha256=self.weights_sha256 or "unhashed", tensorrt_version=self.trt.__version__,
            tensorrt_cuda=tensorrt_cuda_variant(), gpu_name=torch.cuda.get_device_name(self.device),
            compute_capability=torch.cuda.get_device_capability(self.device),
            precision=self.precision, input_shape=self.input_shape(size),
            graph=graph_key(), opset=OPSET, exporter=exporter_id(), builder=self.settings,
            model=self.model.config.to_dict())

    def build(self, size: int) -> bytes:
        onnx_bytes = self.onnx_bytes()
        with torch.cuda.device(self.device):
            return build_serialized_engine(self.trt, onnx_bytes, INPUT_NAME, self.input_shape(size), self.settings)

    def runner(self, plan: bytes, size: int) -> _EngineRunner:
        with torch.cuda.device(self.device):
            engine = self.runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise EngineError("TensorRT could not deserialize the engine")
            return _EngineRunner(self.trt, engine, INPUT_NAME, OUTPUT_NAME, self.input_shape(size),
                                 self.device, self.stream)

    def verify(self, runner: _EngineRunner, size: int) -> float:
        """Max abs diff to the reference; :class:`ReferenceMismatch` past the tolerance."""
        return check_against_reference(runner.run, self.model, (size,), TOLERANCES[self.precision],
                                       f"tensorrt {self.precision} engine for batch {size}")

    def _raise_recorded_failure(self, path: Path, fields: dict, size: int) -> None:
        failure = cache.load_failure(path, fields)
        if failure is None or failure.get("tolerance_m") != TOLERANCES[self.precision]:
            return
        error = ReferenceMismatch if failure.get("error") == "ReferenceMismatch" else EngineError
        raise error(f"tensorrt: the {self.precision} engine for batch {size} failed for this key on "
                    f"{failure.get('time')} and is not built again: {failure['reason']} "
                    f"(delete {cache.failure_path(path)} to retry)")

    def _record_failure(self, path: Path, fields: dict, size: int, exc: Exception) -> None:
        try:
            record = cache.store_failure(path, fields, str(exc), {"error": type(exc).__name__,
                                                                  "tolerance_m": TOLERANCES[self.precision]})
        except OSError as write_error:
            self.log(f"tensorrt: batch {size}: cannot record the failure ({write_error})")
        else:
            self.log(f"tensorrt: batch {size}: failure recorded in {record}; this key is not built again")

    def load_or_build(self, size: int, cache_dir) -> tuple[_EngineRunner, float, Path | str]:
        fields = self.key_fields(size)
        path = cache.cache_path(cache_dir, fields, ".engine")
        trusted = bool(self.weights_sha256)      # weights without a SHA-256 never use the cache
        # a second lifter starting beside this one waits for this build and loads it (one GPU
        # building one engine twice at once takes twice the minutes and the memory)
        with cache.one_builder_at_a_time(path, self.log) if trusted else contextlib.nullcontext():
            return self._load_or_build(size, fields, path, trusted)

    def _load_or_build(self, size: int, fields: dict, path: Path, trusted: bool
                       ) -> tuple[_EngineRunner, float, Path | str]:
        if trusted:
            self._raise_recorded_failure(path, fields, size)
        plan, reason = cache.load(path, fields)
        if plan is not None and trusted:
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
        try:
            plan = self.build(size)
            runner = self.runner(plan, size)
            diff = self.verify(runner, size)
        except (EngineError, ReferenceMismatch) as exc:     # deterministic for this key: never rebuilt
            if trusted:
                self._record_failure(path, fields, size, exc)
            raise
        where: Path | str = path
        if trusted:
            try:       # the engine is built and checked: an unwritable cache must not throw it away
                cache.store(path, plan, fields, {"max_abs_diff_m": diff, "build_seconds": time.perf_counter() - start})
                cache.clear_failure(path)
            except OSError as exc:
                self.log(f"tensorrt: batch {size}: cannot write the engine cache ({exc}); using the engine "
                         f"from memory")
                where = "memory"
        self.log(f"tensorrt: batch {size}: built in {time.perf_counter() - start:.0f} s, max |diff| {diff:.2e} m")
        return runner, diff, where


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
        log(f"tensorrt {state.trt.__version__} ({tensorrt_cuda_variant()}): {len(self._runners)} {precision} "
            f"engines ready on {torch.cuda.get_device_name(state.device)} ({state.device}); "
            f"max |diff| to reference {self.max_abs_diff:.2e} m")

    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._runners[batch.shape[0]].run(batch)

    def _details(self) -> dict:
        state = self._engines_state
        major, minor = torch.cuda.get_device_capability(state.device)
        return {"device": str(state.device), "gpu": torch.cuda.get_device_name(state.device),
                "compute_capability": f"{major}.{minor}", "tensorrt_version": state.trt.__version__,
                "tensorrt_cuda": tensorrt_cuda_variant(), "builder": state.settings, "engines": self.engine_files}

    def _release(self) -> None:
        self._runners = {}


def build_engine_files(weights, paths: dict[int, Path], precision: str = "fp32",
                       log: LogFn | None = None, device: str | int | torch.device = "cuda"
                       ) -> dict[int, tuple[Path, float]]:
    """Build, check and write one engine per batch size to the given paths (the export CLI).

    Each file gets a ``.json`` sidecar with its key fields and measured
    difference. Returns ``{size: (path, max_abs_diff)}``.
    """
    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailable(f"tensorrt: {reason}")
    check_precision("tensorrt", precision)
    model, info = cache.load_model(weights)
    state = _Engines(model, precision, info.sha256, device, as_log_fn(log))
    written = {}
    for size in normalize_batch_sizes(paths):
        plan = state.build(size)
        diff = state.verify(state.runner(plan, size), size)
        try:
            cache.store(Path(paths[size]), plan, state.key_fields(size), {"max_abs_diff_m": diff})
        except OSError as exc:
            raise write_error(f"the batch-{size} engine or its sidecar", paths[size], exc) from exc
        written[size] = (Path(paths[size]), diff)
    return written
