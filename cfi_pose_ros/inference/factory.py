"""``create_lifter``: one call that loads weights and returns the fastest backend that works here."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ..interrupts import raise_if_interrupted
from ..model import CFINet
from ..weights import DEFAULT_WEIGHTS, WeightsError, resolve_weights
from .base import (BACKEND_PRECISIONS, BACKENDS, PRECISIONS, BackendUnavailable, Lifter, LogFn,
                   as_log_fn, check_precision, check_threads)
from .batching import normalize_batch_sizes
from .cache import cache_dir_path, default_cache_dir, load_model


def backend_unavailable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run in this process (missing module, no GPU, ...), or ``None``."""
    if backend == "tensorrt":
        from .tensorrt_backend import tensorrt_unavailable_reason
        return tensorrt_unavailable_reason()
    if backend == "cuda":
        from .cuda_backend import cuda_unavailable_reason
        return cuda_unavailable_reason()
    if backend == "onnxruntime":
        from .onnxruntime_backend import onnxruntime_unavailable_reason
        return onnxruntime_unavailable_reason()
    if backend == "torch":
        return None
    raise ValueError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")


def available_backends(precision: str = "fp32") -> dict[str, str | None]:
    """``{backend: None if it can run precision here else the reason}``, fastest first."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    result = {}
    for backend in BACKENDS:
        if precision not in BACKEND_PRECISIONS[backend]:
            result[backend] = f"does not run {precision} (only " \
                f"{' and '.join(b for b in BACKENDS if precision in BACKEND_PRECISIONS[b])} do)"
        else:
            result[backend] = backend_unavailable_reason(backend)
    return result


def _build(backend: str, model: CFINet, sha: str, precision: str, batch_sizes: tuple[int, ...] | None,
           threads: int | None, cache_dir: Path, log: LogFn) -> Lifter:
    if backend == "tensorrt":
        from .tensorrt_backend import TensorRTLifter
        return TensorRTLifter(model, precision=precision, batch_sizes=batch_sizes, weights_sha256=sha,
                              cache_dir=cache_dir, log=log)
    if backend == "cuda":
        from .cuda_backend import CudaGraphLifter
        return CudaGraphLifter(model, precision=precision, batch_sizes=batch_sizes, weights_sha256=sha, log=log)
    if backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeLifter
        return OnnxRuntimeLifter(model, batch_sizes=batch_sizes, threads=threads, cache_dir=cache_dir,
                                 weights_sha256=sha, precision=precision, log=log)
    from .torch_backend import TorchLifter
    return TorchLifter(model, batch_sizes=batch_sizes, threads=threads, weights_sha256=sha, precision=precision)


def create_lifter(weights: str | Path | CFINet = DEFAULT_WEIGHTS, backend: str = "auto",
                  precision: str = "fp32", batch_sizes: Sequence[int] | None = None,
                  threads: int | None = None, cache_dir: str | Path | None = None,
                  log: LogFn | logging.Logger | None = None, flip_test: bool = False) -> Lifter:
    """Load ``weights`` and return a ready, reference-checked :class:`Lifter`.

    * ``backend``: ``"auto"`` tries ``tensorrt``, ``cuda``, ``onnxruntime``,
      ``torch`` in that order (fastest first) and returns the first that can run
      ``precision`` here and starts; it logs the choice and why each faster one
      was skipped. It falls back only past a backend that cannot run here: a
      problem of the model itself (:class:`~..weights.WeightsError`: a bad
      weights file, or output that is not finite on plausible people, found by
      the start-up check every backend runs) is raised at once. An explicit
      backend that cannot run raises :class:`BackendUnavailable` with the reason.
    * ``precision``: ``fp32`` (all backends), ``fp16`` (cuda, tensorrt), ``bf16`` (cuda).
    * ``batch_sizes``: the fixed batch sizes; ``None`` is the chosen backend's
      own default (every count up to 16 on the CPU backends, 1, 2, 4, 8, 16 on
      the compiled GPU ones: see :mod:`.batching`).
    * ``threads``: CPU threads for onnxruntime (intra-op) and torch
      (``torch.set_num_threads``, process-wide); ``None`` keeps their defaults.
    * ``cache_dir``: exported ONNX files and TensorRT engines; ``None`` is
      :func:`~.cache.default_cache_dir` (``$CFI_POSE_CACHE_DIR``, else
      ``$XDG_CACHE_HOME/cfi_pose_ros``, else ``~/.cache/cfi_pose_ros``).
    * ``log``: a ``print``-like callable or a :class:`logging.Logger`.
    * ``flip_test``: average each person with its mirrored lift (:class:`Lifter`);
      settable later through ``lifter.flip_test``.

    ``weights`` may also be an in-memory ``CFINet`` (benchmarks, tests, a training script's live
    model, which is left as it is: the lifter runs a float32 CPU copy); it is
    then keyed by a hash of its tensors, and its input domain is Human3.6M's (a file's is in its
    JSON: :attr:`Lifter.input_domain`).
    """
    if isinstance(weights, str):
        weights = resolve_weights(weights)      # a packaged file's name, as the node and offline take it
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if backend != "auto":
        check_precision(backend, precision)
    if batch_sizes is not None:
        batch_sizes = normalize_batch_sizes(batch_sizes)
    check_threads(threads)
    log = as_log_fn(log)
    cache_dir = cache_dir_path(cache_dir) if cache_dir is not None else default_cache_dir()

    def ready(lifter: Lifter, info) -> Lifter:
        lifter.flip_test = bool(flip_test)
        lifter.input_domain = info.input_domain
        return lifter

    if backend != "auto":
        reason = backend_unavailable_reason(backend)
        if reason:
            raise BackendUnavailable(f"{backend}: {reason}")
        model, info = load_model(weights)
        lifter = _build(backend, model, info.sha256, precision, batch_sizes, threads, cache_dir, log)
        log(f"inference backend: {backend} {precision}, batch sizes {lifter.batch_sizes}")
        return ready(lifter, info)

    model, info = load_model(weights)
    skipped: list[tuple[str, str]] = []
    for candidate, reason in available_backends(precision).items():
        if reason is None:
            try:
                lifter = _build(candidate, model, info.sha256, precision, batch_sizes, threads, cache_dir, log)
            except WeightsError:
                raise                 # the model is unusable: no other backend would do better
            except Exception as exc:  # noqa: BLE001 - auto falls back on any start-up failure, and says why
                raise_if_interrupted(exc)       # but a stop signal's
                reason = f"failed to start ({exc.__class__.__name__}: {exc})"
            else:
                for name, why in skipped:
                    log(f"inference backend: auto skipped {name}: {why}")
                log(f"inference backend: auto chose {candidate} {precision}, batch sizes {lifter.batch_sizes}"
                    + (f" (skipped {', '.join(name for name, _ in skipped)})" if skipped else ""))
                return ready(lifter, info)
        skipped.append((candidate, reason))
    raise BackendUnavailable(f"no backend can run {precision} here: "
                             + "; ".join(f"{name}: {why}" for name, why in skipped))
