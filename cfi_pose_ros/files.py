"""Files named by a user or left in a cache that must be regular files: opened without waiting on
one that is not. Only the standard library: the parameters-file reader (and so the launch file)
and the engine cache use it beside the bag reader. And files written whole (write_together): beside
their names, synced to the disk, then renamed over them."""
from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO, Callable


def special_file_kind(mode: int) -> str:
    """What a path of ``mode`` (``os.stat``'s) that is no regular file is, for a message."""
    return "a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else "a device or socket"


class NotRegularFileError(ValueError):
    """A path that had to be a regular file is none; ``kind`` says what it is ("a FIFO")."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def open_regular_file(path: str | Path, not_what: str) -> BinaryIO:
    """``path`` opened for reading (binary), or ``NotRegularFileError("<path>: a FIFO, <not_what>")`` for a
    path that is no regular file. Opening a FIFO waits for a writer, deaf to SIGTERM where the
    handler only flags a stop (play_bag on a bag, offline on a parameters file, an engine cache
    whose sidecar was one: 11 minutes); a directory or a device reads as nothing sensible. Opened
    without blocking, then checked, so nothing waits. ``OSError`` as ``open`` raises it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = special_file_kind(mode)
            raise NotRegularFileError(f"{path}: {kind}, {not_what}", kind)
        os.set_blocking(descriptor, True)
        return open(path, "rb", opener=lambda *_: descriptor)     # named by its path (YAML's marks, messages)
    except BaseException:
        os.close(descriptor)
        raise


def unreadable(path: str | Path, error: OSError) -> str:
    """Why ``path`` could not be opened (``error``), in one line: ``"<path>: no such file"``, or
    ``"<path>: cannot read (<the OS's reason>)"``. ``str(error)`` was Python's "[Errno 2] No such
    file or directory: '<path>'" (bag info, play_bag and offline's --params-file)."""
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file"
    return f"{path}: cannot read ({error.strerror or error})"


class WriteError(RuntimeError):
    """A file that could not be written: what, where and the OS's reason, in one line."""


def write_error(what: str, path: str | Path, error: BaseException) -> WriteError:
    """``WriteError("could not write <what> <path>: <reason>")`` for ``error`` raised by a write:
    an ``OSError``, or a ``SafetensorError`` whose text carries the OS error's number (``(os error
    28)``: a full disk is "No space left on device", as ``OSError`` says it)."""
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
    else:
        number = re.search(r"\(os error (\d+)\)", str(error))
        reason = os.strerror(int(number.group(1))) if number else str(error)
    return WriteError(f"could not write {what} {path}: {reason}")


def sync_file(path: str | Path) -> None:
    """``path``'s data on the disk (``fsync``), before a rename puts it in the place of another file:
    a write then a rename is crash-safe only so. On power loss (a robot's battery pulled, a kernel
    panic) ext4's delayed allocation, or XFS, can otherwise keep the rename and lose the data, leaving
    a zero-length or garbage file under the final name, the previous one gone."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_directory(path: str | Path) -> None:
    """The folder ``path``'s entries on the disk (``fsync`` of the folder), after renames (or a file
    created) in it: until then a power loss may undo the rename."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_replacing(what: str, path: str | Path, write: Callable[[Path], None]) -> None:
    """``path`` written anew by ``write(partial)``: see :func:`write_together`."""
    write_together(what, {Path(path): write})


def write_together(what: str, writes: dict[Path, Callable[[Path], None]]) -> None:
    """Each file of ``writes`` written anew by its ``write(partial)``, all or none: each to
    ``<name>.partial`` beside it, then all renamed over theirs; ``write_error(what, ...)`` where one
    cannot be written, every file as it was and no partial file left. A write the disk cannot hold
    cut the file in place (curves.png, metrics.jsonl, the study's table and plot, eval.json beside a
    new eval.md), and what an earlier save had written was lost with it. Each partial file is synced
    (:func:`sync_file`) before the renames and each folder once after them (:func:`sync_directory`),
    so a power loss leaves the old files or the new ones, whole."""
    partials = {Path(path): Path(path).with_name(Path(path).name + ".partial") for path in writes}
    path = None
    try:
        for path, write in writes.items():
            write(partials[Path(path)])
            sync_file(partials[Path(path)])
        for path in partials:       # a folder in the way: none replaced, not the ones before it either
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        for path, partial in partials.items():
            os.replace(partial, path)
        for path in dict.fromkeys(path.parent for path in partials):
            sync_directory(path)
    except BaseException as exc:
        for partial in partials.values():
            try:
                if partial.is_file():       # not one in the way of it (a folder) that this did not write
                    partial.unlink()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise write_error(what, path, exc) from exc
        raise


def append_file(what: str, path: str | Path, data: bytes, size: int) -> bool:
    """``data`` appended to ``path`` where it is ``size`` bytes long (created where ``size`` is 0), in
    one write, synced to the disk (the folder too where it may be new); False, nothing written, where
    the file is not ``size`` bytes long (cut, removed or replaced since) or is no regular file: the
    caller writes it whole. A file followed (``tail -f``) stays the file it follows, which a file
    rewritten and renamed over it is not. A write the disk cannot hold (ENOSPC, EFBIG) cuts the file
    back to ``size``: ``write_error(what, path, ...)``, the file as it was."""
    path = Path(path)
    try:     # without blocking: opening a FIFO to write waits for a reader
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | (os.O_CREAT if size == 0 else 0),
                             0o666)
    except FileNotFoundError as exc:
        if size:
            return False
        raise write_error(what, path, exc) from exc
    except OSError as exc:
        raise write_error(what, path, exc) from exc
    try:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode) or found.st_size != size:
            return False
        try:
            rest = memoryview(data)
            while rest:     # one write, but where the disk took part of it (the next one says why)
                rest = rest[os.write(descriptor, rest):]
            os.fsync(descriptor)
        except OSError as exc:
            try:
                os.ftruncate(descriptor, size)
            except OSError:
                pass
            raise write_error(what, path, exc) from exc
    finally:
        os.close(descriptor)
    if size == 0:
        try:
            sync_directory(path.parent)
        except OSError as exc:
            raise write_error(what, path, exc) from exc
    return True
