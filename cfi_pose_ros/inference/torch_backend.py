"""``torch``: the plain ``CFINet`` in eager PyTorch on the CPU, fp32: the reference every other backend is checked against."""
from __future__ import annotations

import numpy as np
import torch

from ..model import CFINet
from .base import TOLERANCES, Lifter, check_threads
from .batching import CPU_BATCH_SIZES
from .reference import check_against_reference


# torch.set_num_threads as it was before a TorchLifter first set it, and what a TorchLifter last set
# (None: none has): see _use_threads
_threads_before: int | None = None
_threads_set: int | None = None


def _use_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` where it differs; for ``None`` (the library's default) the
    setting from before the lifters', where a lifter's is still in place. The setting is
    process-wide and outlives a lifter: the lifting node configured with ``threads: 1``, cleaned up,
    set to ``threads: 0`` (the library's default, one per core) and configured again ran on one
    thread, its log saying so, while ``ros2 param get`` showed 0."""
    global _threads_before, _threads_set
    now = torch.get_num_threads()
    if threads is None:
        if _threads_set is None or now != _threads_set:
            return          # never set by a lifter, or set since by someone else: theirs
        threads = _threads_before
    elif _threads_set is None or now != _threads_set:
        _threads_before = now
    _threads_set = threads
    if now != threads:
        torch.set_num_threads(threads)


class TorchLifter(Lifter):
    """Eager PyTorch, CPU, fp32.

    ``threads`` sets ``torch.set_num_threads`` (process-wide) before each call
    when it differs; ``None`` leaves PyTorch's setting alone, unless a TorchLifter set it: then it
    is put back to what it was before that (see :func:`_use_threads`). Like ONNX Runtime
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
        _use_threads(self._threads)
        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).numpy()

    def _details(self) -> dict:
        return {"device": "cpu", "threads": torch.get_num_threads(), "torch_version": torch.__version__}
