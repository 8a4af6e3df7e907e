"""Resumable training checkpoints without pickle.

``<dir>/checkpoint.safetensors`` holds the model, the Adam moments, the EMA of
the weights (when the run keeps one) and every process's RNG state as tensors; ``<dir>/checkpoint.json`` the model
config, epoch, step, learning rate, the number of processes and the metrics history.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from cfi_pose_ros.files import sync_directory, sync_file, write_error
from cfi_pose_ros.model import CFIConfig
from cfi_pose_ros.weights import give_default_mode


# The files a checkpoint is, and what an interrupted save leaves beside them (written there first,
# then renamed over them).
CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_PARTIALS = (CHECKPOINT + ".tmp", CHECKPOINT_JSON + ".tmp")
# The tensor file's header key of a SHA-256 of its tensors (see tensors_sha256).
TENSORS_SHA256 = "tensors_sha256"
# ... and of a SHA-256 of the metadata's text beside them (the checkpoint.json it embeds).
METADATA_SHA256 = "checkpoint_json_sha256"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed (unreadable, or of another model), with the reason."""


def has_checkpoint(directory: Path) -> bool:
    return (directory / CHECKPOINT).is_file()


def config_difference(found: CFIConfig, wanted: CFIConfig, found_name: str) -> str:
    """Where two model configs differ, e.g. ``"dim 32 in the checkpoint, 64 in this run"``."""
    a, b = found.to_dict(), wanted.to_dict()
    return ", ".join(f"{key} {a.get(key)} in {found_name}, {b.get(key)} in this run"
                     for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key))


def process_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's global random state, which dropout draws its masks from: the CPU
    generator's, and its CUDA device's when it trains on one."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_process_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Set what :func:`process_rng_state` returned (a CUDA state only where this process trains on
    CUDA: a run saved on a GPU and resumed on a CPU goes on with the CPU's)."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A SHA-256 of ``tensors``: each one's name, dtype, shape and bytes, by name. Of the tensors,
    not of the file, so it can travel in the file's own header (the weights' JSON, beside its file,
    hashes the whole file) and needs nothing of safetensors' layout; what load_file returns hashes
    the same as what save_file was given."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int, history: list[dict], extra: dict, ema=None,
                    rng_states: list[dict[str, torch.Tensor]] | None = None) -> None:
    """Write the checkpoint; ``rng_states``: every process's :func:`process_rng_state`, by rank
    (None: this process's CPU state, a single process on a CPU). ``WriteError`` where it cannot be
    written (a full disk), the previous checkpoint left as it was."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    steps = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            if name == "step":
                steps[str(index)] = float(value)
            else:
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
    # "rng.cpu.<rank>" (and "rng.cuda.<rank>"): each process resumes from its own
    if rng_states is None:
        rng_states = [process_rng_state(torch.device("cpu"))]
    for rank, state in enumerate(rng_states):
        tensors.update({f"rng.{kind}.{rank}": value.contiguous() for kind, value in state.items()})
    meta = {"model": model.config.to_dict(), "epoch": epoch, "history": history,
            "lr": optimizer.param_groups[0]["lr"], "adam_steps": steps, "processes": len(rng_states), **extra}
    if ema is not None:
        tensors.update({f"ema.{i}": t.detach().cpu().contiguous() for i, t in enumerate(ema.shadow)})
        meta["ema_updates"] = ema.updates
    # The metadata travels inside the tensor file's header, so one atomic rename replaces tensors and
    # metadata together; checkpoint.json is a readable copy (also written by rename). Each is synced to
    # the disk before its rename and the folder once after both: a power loss leaves the previous
    # checkpoint or this one, whole (without, ext4 or XFS could keep the rename and lose the data).
    text = json.dumps(meta, indent=2)
    tmp, tmp_json = (directory / name for name in CHECKPOINT_PARTIALS)
    # and a hash of the tensors: safetensors checks the header and the data's length, not its bytes
    # (4000 bytes zeroed inside the tensor data resumed without a word); 0.11 s per 200 MB of tensors
    try:
        save_file(tensors, str(tmp), metadata={CHECKPOINT_JSON: text, TENSORS_SHA256: tensors_sha256(tensors),
                                               METADATA_SHA256: text_sha256(text)})
        # safetensors creates it 0600: a run in a group's shared folder could not be resumed by
        # another member (every other file of the run, the weights too, gets the default mode)
        give_default_mode(tmp)
        sync_file(tmp)
    except (SafetensorError, OSError) as exc:
        # a full disk: a SafetensorError traceback, and the partial file kept taking its space
        tmp.unlink(missing_ok=True)
        raise write_error("the checkpoint", directory / CHECKPOINT, exc) from exc
    tmp.replace(directory / CHECKPOINT)
    try:
        tmp_json.write_text(text)
        sync_file(tmp_json)
    except OSError as exc:
        tmp_json.unlink(missing_ok=True)
        sync_directory(directory)       # the checkpoint's rename, which stands
        raise write_error("the checkpoint's readable copy", directory / CHECKPOINT_JSON, exc) from exc
    tmp_json.replace(directory / CHECKPOINT_JSON)
    sync_directory(directory)


def load_checkpoint(directory: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, ema=None, meta: dict | None = None,
                    rank: int = 0, device: torch.device = torch.device("cpu")) -> dict:
    """Restore model, optimizer, EMA and the RNG state of process ``rank`` (on ``device``) in place;
    returns the JSON metadata (``meta``: as :func:`read_checkpoint_meta` read it already; read here
    when None).

    CheckpointError (one line, naming the file) for a checkpoint that cannot be read, e.g. one cut
    short, or that is of another model than ``model``."""
    from safetensors import SafetensorError, safe_open

    path = directory / CHECKPOINT
    meta = read_checkpoint_meta(directory) if meta is None else meta
    found = CFIConfig.from_dict(meta["model"])
    if found != model.config:
        raise CheckpointError(f"{path}: the checkpoint's model differs from this run's "
                              f"({config_difference(found, model.config, 'the checkpoint')}); resume with "
                              f"the model flags it was started with")
    try:
        with safe_open(str(path), framework="pt") as f:     # the hash and the tensors from one open file
            expected = (f.metadata() or {}).get(TENSORS_SHA256)
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        # A checkpoint saved before the hash has none and is resumed as before, unchecked: refusing it
        # would end every run in progress (a study's among them) for a check it never had.
        if expected is not None and tensors_sha256(tensors) != expected:
            raise CheckpointError(f"{path}: damaged, not a checkpoint that can be resumed (its tensors do not "
                                  f"match the SHA-256 saved with them, {expected[:12]}...); start the run again "
                                  f"with --overwrite")
        return _restore(tensors, meta, model, optimizer, ema, rank, device)
    except CheckpointError:
        raise
    # a file cut short after its header, or tensors that do not fit the model it names
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as error:
        raise unresumable(path, error) from error


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_checkpoint_meta(directory: Path) -> dict:
    """The JSON metadata of the checkpoint in ``directory`` (its run's arguments, state, history),
    read without its tensors; CheckpointError as :func:`load_checkpoint`, and where the metadata is
    not what :func:`save_checkpoint` writes."""
    from safetensors import SafetensorError, safe_open

    path = directory / CHECKPOINT
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        embedded = header.get(CHECKPOINT_JSON)
        # The tensors' SHA-256 does not cover the metadata: one flipped bit ("epoch": 2 to 1, an lr
        # digit) resumed at another epoch or rate without a word. A checkpoint saved before this hash
        # has none and is read as before.
        expected = header.get(METADATA_SHA256)
        if embedded is not None and expected is not None and text_sha256(embedded) != expected:
            raise CheckpointError(f"{path}: damaged, not a checkpoint that can be resumed (its metadata does not "
                                  f"match the SHA-256 saved with it, {expected[:12]}...); start the run again "
                                  f"with --overwrite")
        meta = json.loads(embedded if embedded is not None else (directory / CHECKPOINT_JSON).read_text())
        problem = _metadata_problem(meta)
    except CheckpointError:
        raise
    # RecursionError: JSON nested past Python's stack
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise unresumable(path, error) from error
    if problem:
        raise unresumable(path, problem)
    return meta


def _metadata_problem(meta) -> str | None:
    """What in ``meta`` is not what :func:`save_checkpoint` writes (one that is not resumed from:
    an "epoch" of "3", a "history" of numbers, "adam_steps" of a list each ended resume in a
    traceback), or ``None``. ``ValueError`` for a model config that is none."""
    if not isinstance(meta, dict):
        return f"its metadata is {type(meta).__name__}, not an object"
    CFIConfig.from_dict(meta["model"])

    def number(value) -> bool:
        return type(value) in (int, float) and math.isfinite(value)

    checks = {
        "epoch": lambda v: type(v) is int and v >= 0,
        "history": lambda v: isinstance(v, list) and all(isinstance(entry, dict) for entry in v),
        "lr": lambda v: number(v) and v >= 0,     # a schedule may end at 0
        "adam_steps": lambda v: isinstance(v, dict) and all(k.isdecimal() and number(step) and step >= 0
                                                            for k, step in v.items()),
        "processes": lambda v: type(v) is int and v >= 1,
        "ema_updates": lambda v: type(v) is int and v >= 0,
        "args": lambda v: isinstance(v, dict),
        "run_state": lambda v: isinstance(v, dict),
    }
    optional = ("processes", "ema_updates", "args", "run_state")    # older checkpoints lack them
    for key, valid in checks.items():
        if key not in meta:
            if key not in optional:
                return f"its metadata has no {key!r}"
        elif not valid(meta[key]):
            return f"its metadata's {key!r} is {json.dumps(meta[key])[:60]}"
    return None


def unresumable(path: Path, error: Exception | str) -> CheckpointError:
    """The one refusal of a checkpoint that cannot be resumed, saying why and what to do, in one
    line: torch's load_state_dict says each tensor that does not fit on a line of its own (tensors
    of another --dim under a checkpoint's metadata: 60 lines), the first of them is enough."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    why = " ".join(lines[:2]) + (f" (and {len(lines) - 2} more)" if len(lines) > 2 else "")
    return CheckpointError(f"{path}: not a checkpoint that can be resumed ({why}); start the run "
                           f"again with --overwrite")


def _restore(tensors: dict, meta: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema,
             rank: int, device: torch.device) -> dict:
    """Fill model, optimizer, EMA and process ``rank``'s RNG from the checkpoint's tensors and metadata."""
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    state = optimizer.state_dict()
    for index_str, step in meta["adam_steps"].items():
        index = int(index_str)
        entry = {"step": torch.tensor(step)}
        prefix = f"optim.{index}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                entry[key[len(prefix):]] = value
        state["state"][index] = entry
    for group in state["param_groups"]:
        group["lr"] = meta["lr"]
    optimizer.load_state_dict(state)
    if "rng.torch" in tensors:      # a checkpoint from before per-process states: rank 0's, for every process
        torch.set_rng_state(tensors["rng.torch"])
    else:                           # KeyError where it holds no state of this rank
        set_process_rng_state({kind: tensors[f"rng.{kind}.{rank}"] for kind in ("cpu", "cuda")
                               if kind == "cpu" or f"rng.{kind}.{rank}" in tensors}, device)
    if ema is not None:
        shadow = [tensors[f"ema.{i}"] for i in range(len(ema.shadow)) if f"ema.{i}" in tensors]
        if shadow:
            ema.load(shadow, meta.get("ema_updates", 0))
        else:   # a run that starts keeping an EMA on resume starts it from the current weights
            ema.load([p.detach() for p in model.parameters()], 0)
    return meta
