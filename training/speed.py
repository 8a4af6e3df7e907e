"""Choices that make training fast on the machine at hand, each decided by measuring.

CPUs differ: reduced precision can be several times faster (native bf16, e.g.
AVX-512 BF16 or AMX) or ten times slower (emulated on AVX2-only cores), and
``torch.compile`` needs a working C++ toolchain. So the trainer times a few real
steps of each candidate at start and keeps what is fastest, falling back to
fp32 eager whenever a candidate fails.
"""
from __future__ import annotations

import ctypes
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Callable

import torch

from cfi_pose_ros.arguments import number_in

PRECISIONS = ("fp32", "bf16", "fp16")
# Reduced precision must beat fp32 by this much to be chosen: it also costs accuracy
# headroom, so a tie goes to fp32.
MIN_SPEEDUP = 1.10


# The most CPU threads --threads takes (train and evaluate). torch starts one OpenMP thread each:
# --threads 100000 segfaulted in the first parallel region (exit 139); 1024 ran here, and is more
# than the largest machines have cores (two 192-core sockets with SMT: 768).
MAX_THREADS = 1024
thread_count = number_in(int, 1, MAX_THREADS)


def default_threads() -> int:
    """Every core this process may run on, shared with the other processes torchrun started on this
    host (``LOCAL_WORLD_SIZE``): each took every core, so 2 CPU processes ran 2 threads each on 2
    cores, and OpenMP's threads waited on each other (one epoch's steps 68 s against 7.6 s with
    ``--threads 1``, 2026-12-07, this machine)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        cores = os.cpu_count() or 1
    try:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:              # not torchrun's
        processes = 1
    return max(1, cores // max(processes, 1))


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit
# (DEFAULT_MMAP_THRESHOLD_MAX).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MAX_MMAP_THRESHOLD = 32 << 20


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep what a batch frees for the next batch instead of giving it back.

    Evaluation allocates and frees the same activations, 1-30 MB each, for every batch. glibc
    serves a block past its mmap threshold with a new mapping and unmaps it when freed, and gives
    the free top of a heap back to the kernel past its trim threshold; both thresholds move with
    use, and with two threads' arenas they did not settle here: the next batch faulted its pages in
    again, each zeroed by the kernel (D=256, 16384 poses lifted 512 at a time on 2 threads: 3.8 M
    page faults, 7.4 of 45 CPU-seconds in the kernel). With the threshold at glibc's 32 MiB
    ceiling and no trimming below 1 GiB, such blocks come from the heap, already mapped: 0.1
    CPU-seconds, 22.4 -> 17.8 s wall (development scripts, this machine). The process keeps its
    peak heap, which it reaches again at every step anyway. False, with nothing changed, where the
    C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):       # no mallopt (macOS); musl's does nothing and returns 0
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), for the weights' record."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def autocast_context(precision: str, device: torch.device):
    """Autocast for ``bf16``/``fp16``; nothing for ``fp32``."""
    if precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def seconds_per_step(step: Callable[[], None], steps: int = 3, warmup: int = 1,
                     clock: Callable[[], float] = time.perf_counter, limit: float = float("inf")) -> float:
    """Median wall time of ``steps`` calls of ``step`` after ``warmup`` untimed ones.

    A call slower than ``limit`` seconds (warm-up included) ends the probe at once and
    its time is returned: an emulated precision can take 10x longer per step, and
    one such step says enough.
    """
    times = []
    for index in range(warmup + steps):
        start = clock()
        step()
        elapsed = clock() - start
        if elapsed > limit:
            return elapsed
        if index >= warmup:
            times.append(elapsed)
    return statistics.median(times)


def choose_precision(time_step: Callable[[str, float], float], candidates: tuple[str, ...] = ("fp32", "bf16"),
                     min_speedup: float = MIN_SPEEDUP) -> tuple[str, dict[str, float]]:
    """The fastest precision by ``time_step(precision, limit)`` (seconds per step).

    fp32 is the reference and is timed first; the others get a ``limit`` of three
    fp32 steps. A reduced precision is chosen only when it is at least
    ``min_speedup`` times faster. A candidate whose probe raises is skipped.
    Returns the choice and every measured time (``inf`` for a failed one).
    """
    timings: dict[str, float] = {}
    for precision in candidates:
        limit = 3 * timings["fp32"] if "fp32" in timings else float("inf")
        try:
            timings[precision] = float(time_step(precision, limit))
        except Exception as error:  # noqa: BLE001 - a precision this machine cannot run is simply not chosen
            print(f"[speed] {precision} probe failed: {type(error).__name__}: {error}", file=sys.stderr)
            timings[precision] = float("inf")
    best = "fp32"
    for precision, seconds in timings.items():
        if precision != "fp32" and seconds * min_speedup <= timings.get(best, float("inf")):
            best = precision
    return best, timings


class CompileFailed(RuntimeError):
    """``--compile on`` and compiling failed (``auto`` runs eager instead)."""


def compile_or_eager(function: Callable, mode: str, probe: Callable[[Callable], None]) -> tuple[Callable, str]:
    """``torch.compile(function)`` when ``mode`` is ``on``/``auto`` and a probe call succeeds.

    ``probe(candidate)`` runs one real step with the compiled function (so the
    compile happens here, not in the middle of training). Any failure (no
    compiler, an unsupported op) falls back to eager with the reason; ``on`` then
    raises instead.
    """
    if mode == "off":
        return function, "off"
    try:
        compiled = torch.compile(function)
        probe(compiled)
        return compiled, "compiled"
    except Exception as error:  # noqa: BLE001 - any compiler failure means: run eager
        # its first line (an error without a message has none: splitlines()[0] raised IndexError)
        what = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
        if mode == "on":
            raise CompileFailed(f"--compile on: torch.compile failed ({what}); --compile auto "
                                f"trains eager instead") from error
        reason = f"eager (torch.compile failed: {what})"
        print(f"[speed] {reason}", file=sys.stderr)
        return function, reason
