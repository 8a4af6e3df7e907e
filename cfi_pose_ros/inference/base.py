"""The one inference interface, :class:`Lifter`, and what every backend shares."""
from __future__ import annotations

import abc
import logging
from typing import Any, Callable

import numpy as np

from .batching import COMPILED_BATCH_SIZES, normalize_batch_sizes, run_in_fixed_batches, validate_keypoints

BACKENDS: tuple[str, ...] = ("tensorrt", "cuda", "onnxruntime", "torch")   # fastest first: auto's order
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
# What each backend can run. bf16 on TensorRT would need a bf16 ONNX graph and Ampere+;
# reduced precision on CPU is not offered (neither torch eager nor ORT's CPU provider
# is faster than fp32 for this model without quantisation).
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("fp32", "fp16"),
    "cuda": ("fp32", "fp16", "bf16"),
    "onnxruntime": ("fp32",),
    "torch": ("fp32",),
}
# Largest allowed difference to the float32 PyTorch reference, metres, per precision.
TOLERANCES: dict[str, float] = {"fp32": 1e-4, "fp16": 2e-3, "bf16": 1e-2}

LogFn = Callable[[str], Any]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says why."""


class ReferenceMismatch(RuntimeError):
    """A compiled model's output differs from the PyTorch reference by more than the tolerance."""


def as_log_fn(log: LogFn | logging.Logger | None) -> LogFn:
    """A ``print``-like callable from a callable, a :class:`logging.Logger` or ``None`` (module logger)."""
    if log is None:
        return logging.getLogger("cfi_pose_ros.inference").info
    if isinstance(log, logging.Logger):
        return log.info
    if callable(log):
        return log
    raise TypeError(f"log must be a callable or a logging.Logger, got {type(log).__name__}")


def check_precision(backend: str, precision: str) -> None:
    """``ValueError`` for unknown names or a precision the backend cannot run."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if backend not in BACKEND_PRECISIONS:
        raise ValueError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if precision not in BACKEND_PRECISIONS[backend]:
        gpu = [b for b, p in BACKEND_PRECISIONS.items() if precision in p]
        raise ValueError(f"precision {precision} is not supported by the {backend} backend: "
                         f"only {' and '.join(gpu)} {'supports' if len(gpu) == 1 else 'support'} it "
                         f"({backend} runs {', '.join(BACKEND_PRECISIONS[backend])})")


def check_threads(threads) -> None:
    """``ValueError`` unless ``threads`` is ``None`` (the library's default) or a positive int."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")


class Lifter(abc.ABC):
    """2D keypoints ``(N, 17, 2)`` (screen-normalised, float32) -> 3D joints ``(N, 17, 3)`` (metres).

    People are padded up to the next fixed batch size and larger crowds are
    chunked (:mod:`.batching`); a backend only implements :meth:`_run_fixed`
    for exactly one of :attr:`batch_sizes` rows. ``N == 0`` returns an empty
    ``(0, 17, 3)`` array without touching the backend. A constructed lifter has
    run every fixed batch size once (the compiled backends in their reference
    check), so no first frame of a size pays for its set-up.
    """

    backend: str = ""
    default_batch_sizes: tuple[int, ...] = COMPILED_BATCH_SIZES   # see :mod:`.batching`

    def __init__(self, *, precision: str = "fp32", batch_sizes=None,
                 num_joints: int = 17, out_channels: int = 3, weights_sha256: str = ""):
        check_precision(self.backend, precision)
        self._precision = precision
        self._batch_sizes = normalize_batch_sizes(self.default_batch_sizes if batch_sizes is None else batch_sizes)
        self.num_joints = num_joints
        self.out_channels = out_channels
        self.weights_sha256 = weights_sha256
        self.max_abs_diff: float | None = None   # vs. the reference at start-up, metres

    @property
    def precision(self) -> str:
        return self._precision

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self._batch_sizes

    def lift(self, keypoints: np.ndarray) -> np.ndarray:
        """``(N, 17, 2)`` -> ``(N, 17, 3)`` float32. ``ValueError`` for any other input shape."""
        keypoints = validate_keypoints(keypoints, self.num_joints)
        return run_in_fixed_batches(keypoints, self._batch_sizes, self._run_fixed,
                                    (self.num_joints, self.out_channels))

    __call__ = lift

    @abc.abstractmethod
    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        """One batch of exactly ``b in batch_sizes`` rows: ``(b, 17, 2)`` float32 -> ``(b, 17, 3)`` float32."""

    def describe(self) -> dict:
        """What runs, for logs and diagnostics (JSON-serialisable)."""
        return {
            "backend": self.backend,
            "precision": self.precision,
            "batch_sizes": list(self.batch_sizes),
            "weights_sha256": self.weights_sha256,
            "max_abs_diff_vs_reference_m": self.max_abs_diff,
            "tolerance_m": TOLERANCES[self.precision],
            **self._details(),
        }

    def _details(self) -> dict:
        return {}

    def close(self) -> None:
        """Release sessions, engines and device memory (optional; also done by garbage collection)."""

    def __enter__(self) -> "Lifter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend} precision={self.precision} " \
               f"batch_sizes={self.batch_sizes}>"


def exporter_unavailable_reason() -> str | None:
    """Why the ONNX export the non-torch backends build on cannot run here, or ``None``."""
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001 - any import failure makes export unavailable
            return f"Python module '{module}' (needed to export the model) not importable ({exc})"
    return None
