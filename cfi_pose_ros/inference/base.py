"""The one inference interface, :class:`Lifter`, and what every backend shares."""
from __future__ import annotations

import abc
import logging
from typing import Any, Callable

import numpy as np

from ..camera import H36M_INPUT_DOMAIN, LifterInputDomain
from ..skeleton import H36M_17
from .batching import COMPILED_BATCH_SIZES, normalize_batch_sizes, run_in_fixed_batches, validate_keypoints

BACKENDS: tuple[str, ...] = ("tensorrt", "cuda", "onnxruntime", "torch")   # fastest first: auto's order
# The largest screen-normalised coordinate a person's keypoints may hold (the image spans about
# +-1): beyond it, as for NaN or inf, the person's 3D is NaN on every backend. Backends met such
# input differently: at 1e30 torch returned NaN where onnxruntime returned a finite pose.
MAX_INPUT_COORDINATE = 1e3
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
# Largest allowed difference to the float32 PyTorch reference, metres, per precision: what
# the start-up check (.reference) allows a compiled model before refusing it.
# * fp32: float rounding of a regrouped graph (~4e-6 m measured); 1e-4 also catches TF32.
# * fp16 / bf16: set from the measured spread, not from a wish. This model amplifies
#   small relative perturbations of its activations like input noise: a relative
#   perturbation of 2^-12 of the 2D input alone (~0.1 px) moves joints by up to 4 mm,
#   and reduced-precision storage rounds every weight matmul's input by about that
#   (fp16) or 8x that (bf16). Measured on the shipped weights (cfi_h36m, D=128) with
#   the reduced-precision graph run on the CPU (fp32 accumulation, like tensor cores):
#   fp16 worst joint 1.4 mm on the check's 16 people, 5.4 mm worst of 2000 realistic
#   people (p99 2.8 mm); bf16 12 mm and 37 mm (p99 22 mm). The D=256 weights shipped
#   since round more: fp16 2.1 mm and 5.3 mm (p99 2.9 mm); bf16 25 mm and 42 mm (p99
#   24 mm) on an AMD EPYC (AVX-512 BF16) (benchmarks/gpu_check.py --cpu-spread 2000),
#   23 mm and 43 mm on an Intel Xeon (AMX); another crowd of 2000 reached 55 mm in bf16.
#   bf16's 5 cm, which kept 4x over the check's spread, could refuse realistic people
#   and left the check itself at the edge of the test's 2x. The
#   tolerances leave headroom over the check's own spread (4.7x fp16, 3.2x bf16) for GPU
#   kernels that round in another order, hold for the worst of 2000 people, and stay
#   below what a broken engine produces (decimetres). test_gpu_backends.py re-measures
#   this on whatever weights ship.
TOLERANCES: dict[str, float] = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 8e-2}

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

    With :attr:`flip_test` (test-time flip augmentation) every person is also
    lifted mirrored (x negated, left and right swapped), in the same batch, and
    the result is the mean of the direct and the un-mirrored prediction: what
    ``training.evaluate --flip-test`` measures. It may be switched at any time.
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
        # where the weights' training people stood (their JSON's input_domain; create_lifter sets
        # it): what the pipeline turns and zooms people into
        self.input_domain: LifterInputDomain = H36M_INPUT_DOMAIN
        self.max_abs_diff: float | None = None   # vs. the reference at start-up, metres
        self.flip_test = False
        self._closed = False

    @property
    def precision(self) -> str:
        return self._precision

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self._batch_sizes

    def lift(self, keypoints: np.ndarray) -> np.ndarray:
        """``(N, 17, 2)`` -> ``(N, 17, 3)`` float32. ``ValueError`` for any other input shape;
        a person with a coordinate that is not finite or beyond ``MAX_INPUT_COORDINATE`` gets NaN
        (the others are lifted as without them); ``RuntimeError`` after :meth:`close`."""
        if self._closed:
            raise RuntimeError(f"this {self.backend} lifter is closed")
        keypoints = validate_keypoints(keypoints, self.num_joints)
        unusable = ~(np.abs(keypoints) <= MAX_INPUT_COORDINATE).all(axis=(1, 2))
        if unusable.any():
            keypoints = keypoints.copy()
            keypoints[unusable] = 0.0
        poses = self._lift_valid(keypoints)
        poses[unusable] = np.nan
        return poses

    def _lift_valid(self, keypoints: np.ndarray) -> np.ndarray:
        flip = self.flip_test and len(keypoints) > 0
        if flip:     # mirrored copies in the same batch: one backend call, as without flip test
            keypoints = np.concatenate([keypoints, H36M_17.mirror(keypoints)])
        poses = run_in_fixed_batches(keypoints, self._batch_sizes, self._run_open,
                                     (self.num_joints, self.out_channels))
        if flip:
            people = len(poses) // 2
            poses = (poses[:people] + H36M_17.mirror(poses[people:])) * np.float32(0.5)
        return poses

    __call__ = lift

    def _run_open(self, batch: np.ndarray) -> np.ndarray:
        """:meth:`_run_fixed`, or ``RuntimeError`` once closed: a :meth:`close` from another thread
        between two batches of a lift released what the next one runs on (``AttributeError:
        'NoneType' object has no attribute 'run'`` from ONNX Runtime, ``KeyError`` elsewhere)."""
        try:
            if not self._closed:
                return self._run_fixed(batch)
        except Exception:
            if not self._closed:
                raise
        raise RuntimeError(f"this {self.backend} lifter was closed while lifting")

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
            "flip_test": self.flip_test,
            "input_domain": self.input_domain.to_dict(),
            **self._details(),
        }

    def _details(self) -> dict:
        return {}

    def close(self) -> None:
        """Release sessions, engines and device memory (optional; also done by garbage collection).
        A closed lifter lifts no more: ``lift`` raises ``RuntimeError`` (on every backend alike)."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        """What :meth:`close` frees (the backend's sessions, engines, graphs)."""

    def __enter__(self) -> "Lifter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend} precision={self.precision} " \
               f"batch_sizes={self.batch_sizes}>"
