"""``cuda``: PyTorch on the GPU with one CUDA graph captured per fixed batch size.

For 17-token inputs the GPU work per kernel is tiny and launch overhead
dominates eager execution; replaying a captured graph issues the whole forward
pass as one launch. The captured module is
:class:`~cfi_pose_ros.inference.fused.FusedCFINet` (23 weight matmuls instead of 56
for the paper model).

* ``fp32``: TF32 is switched off while capturing, so the matmuls are true fp32
  (tolerance 1e-4 m). The process-wide TF32 setting is restored afterwards.
* ``fp16`` / ``bf16``: matmuls and weights in the reduced type, LayerNorm,
  softmax, GELU and the residual stream in fp32 (tolerances 2e-3 m / 1e-2 m).
  bf16 needs compute capability >= 8.0.

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


@contextlib.contextmanager
def _tf32(enabled: bool):
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        matmul.allow_tf32 = saved


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
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            major, minor = torch.cuda.get_device_capability(self._device)
            raise BackendUnavailable(f"cuda: bf16 needs compute capability >= 8.0, "
                                     f"{torch.cuda.get_device_name(self._device)} is {major}.{minor}")
        self._lock = threading.Lock()
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
        with torch.inference_mode(), _tf32(False if self.precision == "fp32" else
                                           torch.backends.cuda.matmul.allow_tf32):
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

    def close(self) -> None:
        self._graphs = {}
        self._module = None
