"""``cuda``: PyTorch on the GPU with one CUDA graph captured per fixed batch size.

For 17-token inputs the GPU work per kernel is tiny and launch overhead
dominates eager execution; replaying a captured graph issues the whole forward
pass as one launch. The captured module is
:class:`~cfi_pose_ros.inference.fused.FusedCFINet` (23 weight matmuls instead of 56
for the paper model).

* Every graph is captured with true fp32 matmuls (TF32 off, through
  ``torch.backends.cuda.matmul.fp32_precision = "ieee"``, the API PyTorch
  keeps; the legacy ``allow_tf32`` flag raises once anything in the process used
  the new one) and with fp32 reductions inside reduced-precision GEMMs. cuBLAS
  picks its kernels at capture, so the settings hold for every replay; the
  process-wide settings are restored right after.
* ``fp32``: tolerance 1e-4 m.
* ``fp16`` / ``bf16``: weight matmuls and weights in the reduced type; LayerNorm,
  attention, graph mixing, GELU and the residual stream in fp32 (see
  :mod:`.fused`; tolerances in :data:`~.base.TOLERANCES`). bf16 needs compute
  capability >= 8.0 on the lifter's device (``torch.cuda.is_bf16_supported()``
  is true on older GPUs through emulation and asks about the current device).
* All GPU work of construction runs under ``torch.cuda.device(device)``, so
  ``device="cuda:1"`` captures on GPU 1 whatever the current device is.

Each size has its own static input/output tensors, pinned host staging
buffers and private memory pool; :meth:`CudaGraphLifter.lift` is serialised
by a lock (the static buffers are shared state). Every graph is checked
against the CPU float32 reference after capture.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import torch

from ..model import CFINet
from .base import BackendUnavailable, Lifter, LogFn, TOLERANCES, as_log_fn
from .fused import COMPUTE_DTYPES, FusedCFINet
from .reference import check_against_reference, reference_inputs


def cuda_unavailable_reason() -> str | None:
    """Why PyTorch cannot run on a CUDA GPU here, or ``None``."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device available (torch.cuda.is_available() is False)"
    return None


def bf16_unavailable_reason(device: torch.device) -> str | None:
    """Why ``device`` cannot run bf16 natively (compute capability < 8.0), or ``None``."""
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) >= (8, 0):
        return None
    return (f"bf16 needs compute capability >= 8.0, {torch.cuda.get_device_name(device)} ({device}) "
            f"is {major}.{minor}")


@contextlib.contextmanager
def true_fp32_matmuls():
    """cuBLAS matmuls in IEEE fp32 (no TF32) with fp32 reductions in fp16/bf16 GEMMs; restored on exit.

    Uses ``torch.backends.cuda.matmul.fp32_precision`` (PyTorch >= 2.9): saving and
    restoring its value leaves every other precision setting, legacy or new, as it
    was. Older PyTorch has only the legacy ``allow_tf32`` flag, used there instead.
    """
    matmul = torch.backends.cuda.matmul
    try:
        saved_precision = ("fp32_precision", matmul.fp32_precision)
    except AttributeError:      # PyTorch < 2.9: no new API to mix with
        saved_precision = ("allow_tf32", matmul.allow_tf32)
    saved = [saved_precision] + [(name, getattr(matmul, name)) for name in
                                 ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction")]
    setattr(matmul, saved_precision[0], "ieee" if saved_precision[0] == "fp32_precision" else False)
    for name, _ in saved[1:]:
        setattr(matmul, name, False)
    try:
        yield
    finally:
        for name, value in saved:
            setattr(matmul, name, value)


@dataclass
class _Captured:
    graph: "torch.cuda.CUDAGraph"
    static_in: torch.Tensor
    static_out: torch.Tensor
    host_in: torch.Tensor
    host_out: torch.Tensor


class CudaGraphLifter(Lifter):
    backend = "cuda"

    def __init__(self, model: CFINet, *, precision: str = "fp32", batch_sizes=None,
                 weights_sha256: str = "", device: str | int | torch.device = "cuda",
                 log: LogFn | None = None, warmup: int = 3):
        super().__init__(precision=precision, batch_sizes=batch_sizes, num_joints=model.config.num_joints,
                         out_channels=model.config.out_channels, weights_sha256=weights_sha256)
        reason = cuda_unavailable_reason()
        if reason:
            raise BackendUnavailable(f"cuda: {reason}")
        log = as_log_fn(log)
        self._device = torch.device(device)
        if self._device.type != "cuda":
            raise ValueError(f"device must be a CUDA device, got {self._device}")
        if self._device.index is None:
            self._device = torch.device("cuda", torch.cuda.current_device())
        if precision == "bf16":
            reason = bf16_unavailable_reason(self._device)
            if reason:
                raise BackendUnavailable(f"cuda: {reason}")
        self._lock = threading.Lock()
        with torch.cuda.device(self._device):
            self._module = FusedCFINet(model.eval(), COMPUTE_DTYPES[precision]).to(self._device)
            self._stream = torch.cuda.Stream(self._device)
            self._graphs = {size: self._capture(size, warmup) for size in self.batch_sizes}
            self.max_abs_diff = check_against_reference(self._run_fixed, model, self.batch_sizes,
                                                        TOLERANCES[precision], f"cuda {precision} graphs")
        log(f"cuda: captured {len(self._graphs)} CUDA graphs ({precision}) on "
            f"{torch.cuda.get_device_name(self._device)}; max |diff| to reference {self.max_abs_diff:.2e} m")

    def _capture(self, size: int, warmup: int) -> _Captured:
        joints, out_channels = self.num_joints, self.out_channels
        static_in = torch.from_numpy(reference_inputs(size, seed=size)).to(self._device)
        host_in = torch.empty((size, joints, 2), dtype=torch.float32, pin_memory=True)
        host_out = torch.empty((size, joints, out_channels), dtype=torch.float32, pin_memory=True)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), true_fp32_matmuls():
            self._stream.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(self._stream):       # warm up (cuBLAS handles, workspaces) off the default stream
                for _ in range(max(1, warmup)):
                    self._module(static_in)
            self._stream.synchronize()
            with torch.cuda.graph(graph, stream=self._stream):
                static_out = self._module(static_in)
        self._stream.synchronize()
        return _Captured(graph, static_in, static_out, host_in, host_out)

    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        captured = self._graphs[batch.shape[0]]
        with self._lock:
            captured.host_in.numpy()[...] = batch
            with torch.cuda.stream(self._stream):
                captured.static_in.copy_(captured.host_in, non_blocking=True)
                captured.graph.replay()
                captured.host_out.copy_(captured.static_out, non_blocking=True)
            self._stream.synchronize()
            return captured.host_out.numpy().copy()

    def _details(self) -> dict:
        major, minor = torch.cuda.get_device_capability(self._device)
        return {"device": str(self._device), "gpu": torch.cuda.get_device_name(self._device),
                "compute_capability": f"{major}.{minor}", "torch_version": torch.__version__,
                "cuda_graphs": sorted(self._graphs)}

    def _release(self) -> None:
        self._graphs = {}
        self._module = None
