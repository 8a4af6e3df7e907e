"""``torch``: the plain ``CFINet`` in eager PyTorch on the CPU, fp32: the reference every other backend is checked against."""
from __future__ import annotations

import numpy as np
import torch

from ..model import CFINet
from .base import TOLERANCES, Lifter, check_threads
from .batching import CPU_BATCH_SIZES
from .reference import check_against_reference


class TorchLifter(Lifter):
    """Eager PyTorch, CPU, fp32.

    ``threads`` sets ``torch.set_num_threads`` (process-wide) before each call
    when it differs; ``None`` leaves PyTorch's setting alone. Like ONNX Runtime
    it compiles nothing per shape, so by default every count up to 16 is its
    own batch size (no padded rows to pay for).
    """

    backend = "torch"
    default_batch_sizes = CPU_BATCH_SIZES

    def __init__(self, model: CFINet, *, batch_sizes=None, threads: int | None = None,
                 weights_sha256: str = "", precision: str = "fp32"):
        super().__init__(precision=precision, batch_sizes=batch_sizes, num_joints=model.config.num_joints,
                         out_channels=model.config.out_channels, weights_sha256=weights_sha256)
        check_threads(threads)
        self._threads = threads
        self._model = model.cpu().float().eval()
        # It is the reference, so the difference is ~0; the check every backend passes still
        # matters: it runs each batch size once (see Lifter) and refuses non-finite output.
        self.max_abs_diff = check_against_reference(self._run_fixed, self._model, self.batch_sizes,
                                                    TOLERANCES[self.precision], "torch")

    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        if self._threads is not None and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).numpy()

    def _details(self) -> dict:
        return {"device": "cpu", "threads": torch.get_num_threads(), "torch_version": torch.__version__}
