"""Checks of the command-line tools' arguments (the package's and ``training``'s). The argparse
types refuse, at parse time and naming its range, a number no run could use (a batch of 0, a NaN
budget, a probability of 1.5, a playback rate of 0), which otherwise ended in a traceback, a run
that never ends, or a run that silently ignored it; :func:`output_directory` makes ``--out``
before any work."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def weights_file(value: str) -> str:
    """An argparse type: a weights file or a packaged weights name (:func:`weights.resolve_weights`),
    its JSON config read, so that a missing or wrong file is refused in one line before any work
    (the accuracy benchmarks ended in WeightsError's traceback after building their data)."""
    from cfi_pose_ros.weights import WeightsError, read_weights_info, resolve_weights

    try:
        path = resolve_weights(value)
        read_weights_info(path)
    except WeightsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return str(path)


def output_directory(path: str | Path) -> Path:
    """``--out`` made and writable, or ValueError with the reason: checked before the work, which
    otherwise failed only at its end (an --out that is a file)."""
    out = Path(path)
    problem = not_a_folder(out)
    if problem:
        raise ValueError(problem)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot make the directory ({error.strerror or error})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the directory is not writable")
    return out


def not_a_folder(path: str | Path) -> str | None:
    """Why ``--out path`` cannot be a folder, where it or the nearest of its parents that exists is a
    file (None otherwise): mkdir said only "File exists" (or "Not a directory"), and
    ``training.train --out FILE --resume`` said the file held no checkpoint."""
    out = Path(path)
    existing = next((folder for folder in (out, *out.parents) if os.path.lexists(folder)), None)
    if existing is None or existing.is_dir():
        return None
    what = "a file" if existing.is_file() else "a broken symbolic link" if not existing.exists() else \
        "a FIFO, device or socket"
    if existing == out:
        return f"--out {out} is {what}, not a folder: give a folder"
    return f"--out {out}: {existing} is {what}, not a folder: give another --out"


def folders_to_make(path: str | Path) -> list[Path]:
    """``path`` and those of its parents that are not there, deepest first."""
    missing = []
    for folder in (Path(path), *Path(path).parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Each of ``folders`` (deepest first) removed while it is an empty folder."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:         # not empty, or not there: it and its parents stay
            return


def directory_name(text: str) -> str:
    """``--out``'s argparse type: a non-empty path. An empty one (``--out "$OUTDIR"`` with OUTDIR
    unset) was taken as the current directory without a word, and the run's files went there."""
    if not text:
        raise argparse.ArgumentTypeError("must name a directory (. for the current one), not ''")
    return text


def number_in(kind: type, low: float | None = None, high: float | None = None,
              low_open: bool = False, high_open: bool = False):
    """An argparse ``type``: a finite ``kind`` (int or float) within ``low``..``high`` (either end
    open or absent); anything else is refused with the range in the message."""
    def in_range(value) -> bool:
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {describe(kind)}") from None
        # an int is finite, and math.isfinite of one past a float's range raised OverflowError, which
        # argparse lets through: `--threads 1000...0` (400 digits) was a traceback, not this line
        if (kind is float and not math.isfinite(value)) or not in_range(value):
            raise argparse.ArgumentTypeError(f"must be {describe(kind, low, high, low_open, high_open)}, "
                                             f"not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def describe(kind: type, low=None, high=None, low_open=False, high_open=False) -> str:
    """``"an integer >= 1"``, ``"a number in [0, 1)"`` and the like."""
    what = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{what} {'<' if high_open else '<='} {high:g}"
    return "a finite number" if kind is float else what


positive_int = number_in(int, 1)
non_negative_int = number_in(int, 0)
positive_float = number_in(float, 0, low_open=True)
non_negative_float = number_in(float, 0)
probability = number_in(float, 0, 1)


class EachOnce(argparse.Action):
    """A ``nargs="+"`` option whose values are each given once, refused at parse time otherwise:
    ``--subjects S1 S1`` evaluated S1's frames twice ("frames" 224 for its 112, the --record key
    S1+S1), and a subject named twice among the training subjects was trained on twice as often."""

    def __call__(self, parser, namespace, values, option_string=None):
        twice = sorted({value for value in values if values.count(value) > 1})
        if twice:
            parser.error(f"{option_string}: {', '.join(twice)} is named twice; name each once")
        setattr(namespace, self.dest, values)
