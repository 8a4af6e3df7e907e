"""Fixed batch sizes: validating inputs, padding people up to a compiled size, chunking, unpadding.

Pure numpy, no backend. Compiled backends (CUDA graphs, TensorRT engines) have
one static shape per batch size, and even ONNX Runtime is fastest when the
shapes it sees repeat, so every backend runs only the sizes in
``batch_sizes``:

* ``N`` people with ``N <= max(batch_sizes)`` run as one batch of the smallest
  size that holds them; the extra rows repeat the last person (so they are
  in-distribution inputs; the model treats people independently, so the
  padding never changes a real person's output) and are dropped afterwards.
* Larger ``N`` is split into chunks of ``max(batch_sizes)`` plus one padded
  remainder chunk: 40 people with sizes (1, 2, 4, 8, 16) run as 16 + 16 + 8.

Each backend has its own default sizes (``Lifter.default_batch_sizes``): the
compiled GPU backends build one engine or CUDA graph per size, so they keep a
few (:data:`COMPILED_BATCH_SIZES`); the CPU backends compile nothing per shape
and their cost grows with every padded row, so every count up to 16 is its own
size (:data:`CPU_BATCH_SIZES`): 5 people padded to 8 took 5.5 ms instead of
3.8 ms on ONNX Runtime at 30 Hz on 2 cores (shipped weights, one thread;
a development script, not kept).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

COMPILED_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16)
CPU_BATCH_SIZES: tuple[int, ...] = tuple(range(1, 17))
# Largest fixed batch size accepted. Crowds larger than the largest size are chunked anyway, so
# a bigger size buys nothing but padding: with [4096] every one-person frame ran 4096 rows
# (10-15 s on 2 cores) and the engines held 4 GB. 256 rows are ~0.1 s a frame for the shipped
# weights on a CPU and a few MB of activations per engine.
MAX_BATCH_SIZE = 256


def normalize_batch_sizes(batch_sizes: Iterable[int]) -> tuple[int, ...]:
    """Sorted, de-duplicated ints in ``[1, MAX_BATCH_SIZE]``; ``ValueError`` for anything else."""
    try:
        sizes = list(batch_sizes)
    except TypeError as exc:
        raise ValueError(f"batch_sizes must be a sequence of positive ints, got {batch_sizes!r}") from exc
    if not sizes:
        raise ValueError("batch_sizes must not be empty")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"batch_sizes must be positive ints, got {size!r} in {sizes!r}")
        if size > MAX_BATCH_SIZE:
            raise ValueError(f"batch size {size} is larger than {MAX_BATCH_SIZE}: larger crowds are split into "
                             f"batches of the largest size anyway, and a huge size only pads every frame "
                             f"up to it")
    return tuple(sorted({int(s) for s in sizes}))


def padded_size(count: int, batch_sizes: tuple[int, ...]) -> int:
    """The smallest size in ``batch_sizes`` that holds ``count`` people (``1 <= count <= max``)."""
    for size in batch_sizes:
        if size >= count:
            return size
    raise ValueError(f"{count} people do not fit the largest batch size {batch_sizes[-1]}; chunk first")


@dataclass(frozen=True)
class Chunk:
    """People ``[start, stop)`` of the input, run as one batch of ``size`` rows."""
    start: int
    stop: int
    size: int

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def padding(self) -> int:
        return self.size - self.count


def plan_chunks(count: int, batch_sizes: tuple[int, ...]) -> list[Chunk]:
    """How ``count`` people run: full chunks of the largest size, then one padded remainder."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    largest = batch_sizes[-1]
    chunks = [Chunk(start, start + largest, largest) for start in range(0, count - count % largest, largest)]
    remainder = count % largest
    if remainder:
        start = count - remainder
        chunks.append(Chunk(start, count, padded_size(remainder, batch_sizes)))
    return chunks


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` (n, ...) grown to ``size`` rows by repeating its last row; the same array if n == size."""
    count = batch.shape[0]
    if not 1 <= count <= size:
        raise ValueError(f"cannot pad {count} rows to {size}")
    if count == size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - count, axis=0)], axis=0)


def unpad(batch: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` rows (the real people) of a padded result."""
    if count > batch.shape[0]:
        raise ValueError(f"result has {batch.shape[0]} rows, expected at least {count}")
    return batch[:count]


def validate_keypoints(keypoints, num_joints: int = 17) -> np.ndarray:
    """``(N, num_joints, 2)`` float32 C-contiguous array, or ``ValueError`` naming the expected shape."""
    expected = f"(N, {num_joints}, 2)"
    try:
        array = np.asarray(keypoints)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"keypoints must be an array of shape {expected}: {exc}") from exc
    if array.ndim != 3 or array.shape[1:] != (num_joints, 2):
        raise ValueError(f"keypoints must have shape {expected} (N people, {num_joints} H36M joints, "
                         f"screen-normalised x, y); got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"keypoints must be numeric with shape {expected}, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def run_in_fixed_batches(keypoints: np.ndarray, batch_sizes: tuple[int, ...],
                         run: Callable[[np.ndarray], np.ndarray],
                         out_shape: tuple[int, ...]) -> np.ndarray:
    """Run ``run`` (one fixed-size batch in, same-size batch out) over all people.

    ``keypoints`` is already validated ``(N, ...)``; the result is ``(N, *out_shape)``
    float32, empty for ``N == 0`` (``run`` is then never called).
    """
    count = keypoints.shape[0]
    out = np.empty((count, *out_shape), dtype=np.float32)
    for chunk in plan_chunks(count, batch_sizes):
        result = run(pad_batch(keypoints[chunk.start:chunk.stop], chunk.size))
        if result.shape != (chunk.size, *out_shape):
            raise RuntimeError(f"backend returned shape {result.shape} for a batch of {chunk.size}, "
                               f"expected {(chunk.size, *out_shape)}")
        out[chunk.start:chunk.stop] = unpad(result, chunk.count)
    return out
