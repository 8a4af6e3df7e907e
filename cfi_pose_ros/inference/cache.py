"""On-disk cache of exported ONNX graphs and TensorRT engines: keys, paths, atomic writes.

A cached artefact is only reused when *everything* it depends on is the same.
The key fields go into a SHA-256 (part of the file name) and into a JSON
sidecar next to the file; a loader compares the sidecar with the fields it
expects and rebuilds on any difference, a missing/corrupt sidecar, or a file
whose SHA-256 is not the one recorded. A build or check that failed is
recorded beside where its artefact would be (``<file>.failed.json``: the key and
the reason), so that a key that cannot work is not rebuilt on every start; any
change to the key tries again. Two processes that need one artefact at once (two
lifters of one launch file) take turns (:func:`one_builder_at_a_time`): the second
waits and loads what the first built, instead of building it again beside it
and renaming its own file over the first's between the first's file and sidecar.
The key functions are pure;
:func:`load_model` gives a model together with the SHA-256 that keys its artefacts.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..files import NotRegularFileError, open_regular_file, sync_directory, sync_file
from ..weights import give_default_mode

CACHE_FORMAT = "cfi_pose_ros.inference-cache/1"


def cache_dir_path(value: str | Path) -> Path:
    """A cache folder as given, ``~`` expanded: a parameters file's ``engine_cache_dir:
    ~/.cache/cfi`` reaches the node unexpanded (ROS expands nothing), and a folder named ``~`` was
    made in whatever directory the node started from, the model exported again from each."""
    return Path(value).expanduser()


def default_cache_dir() -> Path:
    """``$CFI_POSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cfi_pose_ros``, else ``~/.cache/cfi_pose_ros``."""
    if os.environ.get("CFI_POSE_CACHE_DIR"):
        return cache_dir_path(os.environ["CFI_POSE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return cache_dir_path(base) / "cfi_pose_ros"


def engine_key_fields(*, weights_sha256: str, tensorrt_version: str, tensorrt_cuda: str, gpu_name: str,
                      compute_capability: tuple[int, int], precision: str, input_shape: tuple[int, ...],
                      graph: str, opset: int, exporter: str, builder: dict, model: dict | None = None) -> dict:
    """Everything a TensorRT engine depends on, as a JSON-able dict.

    ``tensorrt_cuda`` tells the CUDA 12 and CUDA 13 builds of one TensorRT version
    apart (``"cu12"``, ``"cu13"``); ``graph`` names the exported graph's form (see
    ``onnx_export.graph_key()``) and ``opset`` its ONNX opset, so a change to the
    export also invalidates engines; ``exporter`` what wrote the ONNX graph the engine was parsed
    from (``onnx_export.exporter_id()``, as in the export's own key): a torch or onnxscript upgrade
    exports another graph, which an engine or a recorded failure of the old one must not stand for;
    ``builder`` holds the builder settings that
    change the engine (network typing, flags, workspace, profile); ``model`` the architecture
    (``CFIConfig.to_dict()``): a weights JSON may describe another model over the same tensors
    (``heads``).
    """
    return {
        "format": CACHE_FORMAT,
        "kind": "tensorrt-engine",
        "weights_sha256": str(weights_sha256),
        "tensorrt_version": str(tensorrt_version),
        "tensorrt_cuda": str(tensorrt_cuda),
        "gpu_name": str(gpu_name),
        "compute_capability": [int(c) for c in compute_capability],
        "precision": str(precision),
        "input_shape": [int(d) for d in input_shape],
        "graph": str(graph),
        "opset": int(opset),
        "exporter": str(exporter),
        "builder": json.loads(json.dumps(builder, sort_keys=True)),   # a JSON-equal copy: compares with sidecars
        "model": json.loads(json.dumps(model, sort_keys=True)),
    }


def engine_cache_key(**fields) -> str:
    """SHA-256 (hex) of :func:`engine_key_fields` (same keyword arguments)."""
    return fields_digest(engine_key_fields(**fields))


def onnx_key_fields(*, weights_sha256: str, graph: str, opset: int, precision: str,
                    exporter: str, model: dict | None = None) -> dict:
    """Everything an exported ONNX file depends on (``exporter``: ``onnx_export.exporter_id()``)."""
    return {
        "format": CACHE_FORMAT,
        "kind": "onnx",
        "weights_sha256": str(weights_sha256),
        "graph": str(graph),
        "opset": int(opset),
        "precision": str(precision),
        "exporter": str(exporter),
        "model": json.loads(json.dumps(model, sort_keys=True)),
    }


def model_sha256(model) -> str:
    """SHA-256 of a model's config and tensors (for models that do not come from a weights file)."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_model(weights) -> tuple:
    """``(CFINet, WeightsInfo)`` for a weights file or an in-memory ``CFINet``, the info's
    ``sha256`` always set: of the tensor file for a file, of the tensors for a ``CFINet`` (whose
    input domain is then Human3.6M's, the default)."""
    from ..model import CFINet
    from ..weights import WeightsInfo, file_sha256, load_weights, weights_paths

    if isinstance(weights, CFINet):
        # A copy, on the CPU in float32 as a weights file loads: the caller's model (a training
        # script's, live) was set to eval mode and cast or moved in place by the backends, and the
        # torch backend ran on its very parameters, which the next optimiser step changed under the
        # lifter's reference check and cache key.
        model = copy.deepcopy(weights).cpu().float().eval()
        return model, WeightsInfo(model=model.config, sha256=model_sha256(model))
    model, info = load_weights(weights)
    info.sha256 = info.sha256 or file_sha256(weights_paths(weights)[0])
    return model, info


def fields_digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cache_path(cache_dir: str | Path, fields: dict, suffix: str) -> Path:
    """``<cache_dir>/<kind>/cfi-<weights sha[:12]>-<details>-<key[:16]><suffix>`` for ``fields``."""
    key = fields_digest(fields)
    details = [fields["precision"]]
    if "input_shape" in fields:
        details.append("b" + str(fields["input_shape"][0]))
    name = f"cfi-{fields['weights_sha256'][:12]}-{'-'.join(details)}-{key[:16]}{suffix}"
    return Path(cache_dir) / fields["kind"] / name


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory, synced, and rename (never a half-written
    file; after a power loss, as a node's first start on a robot may see, the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        give_default_mode(Path(tmp))      # mkstemp's 0600: a node of another account could not read it
        sync_file(tmp)
        os.replace(tmp, path)
        sync_directory(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def store(path: Path, data: bytes, fields: dict, extra: dict | None = None) -> None:
    """Write ``data`` and its sidecar (fields, the data's SHA-256 and ``extra``)."""
    atomic_write_bytes(path, data)
    sidecar = {"fields": fields, "sha256": hashlib.sha256(data).hexdigest(), **(extra or {})}
    atomic_write_bytes(sidecar_path(path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def one_builder_at_a_time(path: Path, log: Callable[[str], object], poll_s: float = 0.2) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (``flock``: released by the kernel when a holder
    dies) while the artefact at ``path`` is looked up and built, waiting for another holder with a
    line in ``log``. Polled, so a stop signal ends the wait. A cache directory where no lock file
    can be made is used without one (nothing is shared there).

    A lock file another account made (a cache shared by a group) may not be writable here: it is
    opened read-only then, which ``flock`` takes as well; opened for writing only, such a node built
    beside the other without a lock. With the lock taken, the temporary files of a write that a
    killed holder left are removed (:func:`remove_interrupted_writes`)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)     # less the umask, as any file
        except PermissionError:
            fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log(f"cache: another process is building {path.name}; waiting for it")
                    waited = True
                time.sleep(poll_s)
        remove_interrupted_writes(path)
        yield
    finally:
        os.close(fd)                    # releases the lock


def remove_interrupted_writes(path: Path) -> None:
    """Remove the temporary files :func:`atomic_write_bytes` left for the artefact at ``path``, its
    sidecar and its failure record (``<name>.<random>.tmp``, ``<name>.json.<random>.tmp``, ...): a
    process killed (or a power loss) between their creation and their rename leaves them behind, and
    no later start removed them, each such start one more file of up to the model's size (an engine:
    hundreds of MB). Only with the artefact's lock held (:func:`one_builder_at_a_time`): every
    writer of these names holds it, so none of them is being written now; another artefact's are
    left alone."""
    prefix = path.name + "."
    try:
        leftovers = [entry for entry in os.scandir(path.parent)
                     if entry.name.startswith(prefix) and entry.name.endswith(".tmp")]
    except OSError:
        return
    for entry in leftovers:
        with contextlib.suppress(OSError):      # a folder of that name, a read-only cache: left as it is
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)


def failure_path(path: Path) -> Path:
    return path.with_name(path.name + ".failed.json")


def store_failure(path: Path, fields: dict, reason: str, extra: dict | None = None) -> Path:
    """Record that building/checking the artefact for ``fields`` at ``path`` failed, and why."""
    record = {"fields": fields, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
    atomic_write_bytes(failure_path(path), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return failure_path(path)


def load_failure(path: Path, fields: dict) -> dict | None:
    """The failure recorded for exactly ``fields`` at ``path`` (a dict with ``reason``), else ``None``."""
    try:
        record = json.loads(_read_regular(failure_path(path)))
    except (OSError, ValueError, RecursionError):       # absent, corrupt, or no regular file
        return None
    if not isinstance(record, dict) or record.get("fields") != fields or not isinstance(record.get("reason"), str):
        return None
    return record


def clear_failure(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        failure_path(path).unlink()


def _read_regular(path: Path) -> bytes:
    """The bytes of a cache file, or :class:`NotRegularFileError` (a ``ValueError``) where ``path`` is
    no regular file: a sidecar replaced by a FIFO hung the lifter in ``read_text()`` 11 minutes,
    waiting for a writer, before it exported anything. Such an entry is one that does not match:
    rebuilt, and the new file renamed over it."""
    with open_regular_file(path, "not a cache file") as f:
        return f.read()


def load(path: Path, fields: dict) -> tuple[bytes | None, str]:
    """``(data, "")`` when ``path`` holds an artefact made for exactly ``fields``, else ``(None, reason)``."""
    try:
        if not path.is_file():
            return None, "not cached yet"
    except OSError as exc:                  # a directory on the way that may not be searched
        return None, f"cache unreadable ({exc.__class__.__name__})"
    try:
        sidecar = json.loads(_read_regular(sidecar_path(path)))
    except NotRegularFileError as exc:
        return None, f"sidecar {sidecar_path(path).name} is {exc.kind}"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"sidecar {sidecar_path(path).name} unreadable ({exc.__class__.__name__})"
    if not isinstance(sidecar, dict) or sidecar.get("fields") != fields:
        cached = sidecar.get("fields") if isinstance(sidecar, dict) else None
        cached = cached if isinstance(cached, dict) else {}
        changed = sorted(k for k in set(fields) | set(cached) if cached.get(k) != fields.get(k))
        return None, f"key mismatch ({', '.join(changed)} differ)"
    try:
        data = _read_regular(path)
    except NotRegularFileError as exc:          # replaced since the is_file() above
        return None, f"{path.name} is {exc.kind}"
    except OSError as exc:
        return None, f"{path.name} unreadable ({exc.__class__.__name__})"
    if hashlib.sha256(data).hexdigest() != sidecar.get("sha256"):
        return None, "file SHA-256 does not match its sidecar (corrupted or replaced)"
    return data, ""
