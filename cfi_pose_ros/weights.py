"""Weights files: ``<name>.safetensors`` (tensors) beside ``<name>.json`` (everything else).

The JSON holds the architecture, joint layout, input normalisation, how the
weights were trained (data, command) and their measured metrics, plus the
SHA-256 of the tensor file. Loading never unpickles anything and checks the
config against the tensors, so a truncated, swapped or foreign file stops the
caller with a message that says what is wrong. The checks run in the order that
bounds what a bad file can cost: the config's tensor shapes against the tensor
file's header (no model built, nothing allocated: a JSON edited to ``dim: 2048``
fails before it can allocate gigabytes), then the tensors are read and must be
finite (a diverged training run saves NaN weights with a consistent SHA-256).
What the tensors mean but their shapes do not tell (the number of attention
heads, the joint layout, the input normalisation) is also written into the
tensor file's header, which the SHA-256 covers, and must match the JSON: a JSON
edited to ``heads: 4`` would otherwise load the tensors into another model.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import stat
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from .camera import H36M_INPUT_DOMAIN, LifterInputDomain
from .files import special_file_kind, sync_directory, sync_file, write_error
from .model import CFIConfig, CFINet
from .skeleton import H36M_17

FORMAT = "cfi_pose_ros.weights/1"
NORMALIZATION = "screen: uv / image_width * 2 - [1, image_height / image_width]"
# The wide weights fine-tuned with people cut off by the image's bottom edge: as good as cfi_h36m on
# Human3.6M's own people, 15-30 mm better on people nearer, farther or more to the side than its
# cameras saw (cfi_h36m_wide), and a person seen from the waist up placed 0.19 m off, not 0.62 m
# (README): what a robot meets.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "cfi_h36m_wide_cut.safetensors"
MEANING_KEY = "cfi_pose_ros.meaning"   # the safetensors header entry save_weights writes
MAX_SIZE = 2**63          # torch's sizes are int64; a bigger int is no size (and overflows float arithmetic)
# A weights config is a few kB (architecture, training record, metrics); more is no config, and
# reading it whole first would take all the memory a big (or sparse: free on disk) file asks for.
MAX_CONFIG_BYTES = 16 << 20
# Largest tensor-file header read (its JSON of names, shapes and offsets). The packaged weights' are
# 18 kB (3 blocks); safetensors itself reads up to 100 MB, and parsing 37 MB of header (580,000 empty
# tensors padding a file that claims 10,000 blocks) took 2.5 s and 800 MB before any check.
MAX_HEADER_BYTES = 1 << 20


def resolve_weights(value: str) -> str:
    """A ``weights`` setting as a path: empty is the packaged default, the bare name of a
    packaged file (``cfi_h36m_d128``) is that file, anything else is a path as given."""
    if not value:
        return str(DEFAULT_WEIGHTS)
    if "/" in value or "." in value:
        # `weights: ~/models/cfi.safetensors` in a parameters file: ROS passes the ~ on as it is
        return os.path.expanduser(value)
    bundled = DEFAULT_WEIGHTS.with_name(value + ".safetensors")
    return str(bundled) if bundled.is_file() else value


def packaged_weights() -> list[str]:
    """The names of the packaged weights files, as ``resolve_weights`` takes them."""
    return sorted(path.stem for path in DEFAULT_WEIGHTS.parent.glob("*.safetensors"))


class WeightsError(RuntimeError):
    """A weights file that cannot be used, with the reason."""


@dataclass
class WeightsInfo:
    model: CFIConfig
    joint_layout: str = H36M_17.name
    normalization: str = NORMALIZATION
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    sha256: str = ""
    # where the training data's people stood, as the lifter's input shows them (the JSON's
    # "input_domain"; a file without one learned Human3.6M's)
    input_domain: LifterInputDomain = H36M_INPUT_DOMAIN


def weights_paths(path: str | Path) -> tuple[Path, Path]:
    """``(tensor file, JSON config)`` of a weights file named by either (or by their stem).

    The stem is the name less one of those two endings, not less its last dotted part:
    ``Path.with_suffix`` made ``model.v2.safetensors`` and ``model.v2`` both ``model.safetensors``
    (another model, loaded without a word, where that file existed; ``--name cfi.v2`` saved over
    ``cfi``)."""
    path = Path(path)
    stem = path.name[:-len(path.suffix)] if path.suffix in (".safetensors", ".json") else path.name
    return path.with_name(stem + ".safetensors"), path.with_name(stem + ".json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def give_default_mode(path: Path) -> None:
    """The permissions a file created with ``open`` gets (0666 less the umask: usually readable by
    all). safetensors and ``tempfile.mkstemp`` create theirs 0600: weights trained, or an engine
    exported, by one account could not be read by a node running as another ("cannot read")."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_weights(model: CFINet, path: str | Path, training: dict | None = None,
                 metrics: dict | None = None, input_domain: LifterInputDomain | None = None) -> Path:
    """Write ``model`` as safetensors + JSON; returns the ``.safetensors`` path. ``input_domain``:
    where its training data's people stood (None: Human3.6M's, and nothing is written).
    ``WriteError`` where the files cannot be written (a full disk), the previous pair left as it was."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors_path, config_path = weights_paths(path)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Both files are written beside their final names first, synced to the disk, and only then renamed
    # over them (the folder synced after), so an interrupted save, a power loss too, leaves the previous
    # pair as it was (at worst the two renames apart).
    tensors_partial = tensors_path.with_suffix(".safetensors.partial")
    config_partial = config_path.with_suffix(".json.partial")
    # what the tensors mean, in the tensor file (covered by its SHA-256): a JSON edited to another
    # model, or to another input domain (which turns and zooms every person the node lifts), is
    # refused; None: Human3.6M's domain, and the JSON may name none
    meaning = {"model": model.config.to_dict(), "joint_layout": H36M_17.name, "normalization": NORMALIZATION,
               "input_domain": None if input_domain is None else input_domain.to_dict()}
    try:
        save_file(state, str(tensors_partial), metadata={MEANING_KEY: json.dumps(meaning, sort_keys=True)})
        give_default_mode(tensors_partial)
        config = {
            "format": FORMAT,
            **{k: v for k, v in meaning.items() if k != "input_domain"},
            "output": "root-relative 3D joints, metres, camera frame (x right, y down, z forward)",
            "training": training or {},
            "metrics": metrics or {},
            "tensors_sha256": file_sha256(tensors_partial),
        }
        if input_domain is not None:
            config["input_domain"] = meaning["input_domain"]
        config_partial.write_text(json.dumps(config, indent=2) + "\n")
        sync_file(tensors_partial)
        sync_file(config_partial)
    except (SafetensorError, OSError) as exc:
        # a full disk: a SafetensorError traceback, and the partial files kept taking its space
        for partial in (tensors_partial, config_partial):
            partial.unlink(missing_ok=True)
        raise write_error("the weights", tensors_path, exc) from exc
    # under the lock a record takes (record_metrics): one that had read the JSON before these renames
    # wrote it back after them, the previous tensors' tensors_sha256 beside these tensors (no load)
    held = config_path.is_file() and os.access(config_path, os.R_OK)
    with _json_held(config_path) if held else nullcontext():
        # The tensors first: a save stopped between the two renames (a kill) leaves the new tensors
        # beside the old JSON and the new JSON, whole, as <name>.json.partial, which the load's
        # refusal names (_interrupted_save_hint). The other order left the new JSON beside the old
        # tensors, and nothing to tell that the tensors it describes were lost.
        try:
            tensors_partial.replace(tensors_path)
        except OSError as exc:      # e.g. a folder at its name: a traceback, both partial files left
            for partial in (tensors_partial, config_partial):
                partial.unlink(missing_ok=True)
            raise write_error("the weights", tensors_path, exc) from exc
        try:
            config_partial.replace(config_path)
            sync_directory(config_path.parent)      # both renames: the two files share it
        except OSError as exc:      # the new JSON is left beside it, for the load's refusal to name
            raise write_error("the weights", config_path, exc) from exc
    return tensors_path


def _interrupted_save_hint(config_path: Path, tensors_sha256: Callable[[], str]) -> str:
    """What to do where a save stopped between its two renames (save_weights: the tensors first)
    left the tensors of SHA-256 ``tensors_sha256()`` beside the old JSON, and the new JSON, whole,
    beside it as ``<name>.json.partial``; "" where no such JSON describes these tensors. Said, not
    done: a load changes no file (a node's weights may lie in a folder it may not, or should not,
    write). The tensors are hashed only where such a JSON names a SHA-256: a 16 GiB file of another
    program with no JSON beside it was read whole (58 s) to say that its JSON was missing."""
    partial = config_path.with_name(config_path.name + ".partial")
    try:
        if not stat.S_ISREG(partial.lstat().st_mode) or partial.stat().st_size > MAX_CONFIG_BYTES:
            return ""
        found = json.loads(partial.read_text())
    except (OSError, ValueError, RecursionError):       # gone, unreadable or not JSON: no save of these
        return ""
    if not isinstance(found, dict) or not isinstance(found.get("tensors_sha256"), str):
        return ""
    try:
        if found["tensors_sha256"] != tensors_sha256():
            return ""
    except OSError:         # the tensors cannot be read: the refusal stands without the hint
        return ""
    return (f"; a save stopped between its two files left {partial}, which describes these tensors: rename it "
            f"over {config_path.name} to finish that save, or save the weights again")


def record_metrics(path: str | Path, name: str, values: dict, tensors_sha256: str) -> Path:
    """Add (or replace) one entry of the ``metrics`` record in a weights file's JSON: ``values``
    measured on the tensors of SHA-256 ``tensors_sha256`` (the ``WeightsInfo.sha256`` the measuring
    loaded). ``WeightsError`` where the JSON now describes other tensors: weights saved over these
    since (a training run into their folder) were given the old tensors' metrics.

    The tensors and everything else in the JSON are left as they are, so the file
    still loads and its checksum still holds; the JSON is replaced atomically.
    """
    read_weights_info(path)                     # refuse to write into a file that is not weights
    _, config_path = weights_paths(path)
    # Two records at once (two `training.evaluate --record`): each read the JSON before the other
    # wrote it, and the later write dropped the earlier one's entry; and both wrote one
    # `<name>.json.partial`, which one renamed over the JSON half-written by the other.
    with _json_held(config_path) as mode:
        # bytes, as read_weights_info reads them (json finds the encoding): as text, a JSON saved by
        # an editor with a byte-order mark (UTF-8's, or UTF-16) loaded, and its record failed at the
        # end of an evaluation in a JSONDecodeError traceback
        config = json.loads(config_path.read_bytes())
        now = config.get("tensors_sha256")
        if now != tensors_sha256:
            raise WeightsError(f"{config_path}: describes other tensors (SHA-256 {str(now)[:12]}...) than the ones "
                               f"measured ({tensors_sha256[:12]}...): the weights were saved again since they were "
                               f"loaded; nothing recorded, measure these ones")
        config.setdefault("metrics", {})[name] = values
        descriptor, partial = tempfile.mkstemp(dir=config_path.parent, prefix=config_path.name + ".",
                                               suffix=".partial")
        try:
            with os.fdopen(descriptor, "w") as f:
                f.write(json.dumps(config, indent=2) + "\n")
            os.chmod(partial, mode)             # mkstemp's 0600 would lock other accounts out of the JSON
            sync_file(partial)                  # a power loss: the old JSON or the new one, whole
            os.replace(partial, config_path)
            sync_directory(config_path.parent)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return config_path


@contextmanager
def _json_held(config_path: Path):
    """An exclusive ``flock`` on the weights JSON itself while the block rewrites it (nothing left
    beside it, as a lock file would be); gives the file's permission bits. The lock is on the file
    then at ``config_path``: one the holder before has replaced since it was opened is opened again."""
    while True:
        descriptor = os.open(config_path, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            held, now = os.fstat(descriptor), os.stat(config_path)
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                yield stat.S_IMODE(held.st_mode)
                return
        finally:
            os.close(descriptor)                # and with it the lock


def read_weights_info(path: str | Path) -> WeightsInfo:
    """Parse and check the JSON beside a weights file (no tensors loaded)."""
    tensors_path, config_path = weights_paths(path)
    for p in (tensors_path, config_path):
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:           # e.g. a directory on the way that may not be searched
            raise WeightsError(f"{p}: cannot read ({exc.strerror or exc})") from exc
        if mode is not None and not stat.S_ISREG(mode):     # it said "missing" for a FIFO or a folder
            raise WeightsError(f"{p}: {special_file_kind(mode)}, not a weights file")
        if mode is None:
            # the first save of a name killed between its renames: the tensors there, the JSON not yet
            hint = (_interrupted_save_hint(config_path, lambda: file_sha256(tensors_path)) if p == config_path
                    else "")
            raise WeightsError(f"weights file missing: {p} (a weights file is a .safetensors "
                               f"tensor file with a .json config beside it; packaged: "
                               f"{', '.join(packaged_weights())}){hint}")
    try:
        with open(config_path, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise WeightsError(f"{config_path}: cannot read ({exc.strerror or exc})") from exc
    if len(text) > MAX_CONFIG_BYTES:
        raise WeightsError(f"{config_path}: more than {MAX_CONFIG_BYTES} bytes, not a weights config")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:    # JSONDecodeError, UnicodeDecodeError, an int of 5000 digits
        raise WeightsError(f"{config_path}: not valid JSON ({exc})") from exc
    if isinstance(config, dict) and "adam_steps" in config and "run_state" in config:
        # training.checkpoint's metadata (a run's checkpoint.safetensors given as weights): "format is
        # None" named neither what the file is nor the run's weights beside it
        name = config.get("args", {}).get("name") if isinstance(config.get("args"), dict) else None
        weights = Path(config_path).with_name(f"{name if isinstance(name, str) and name else 'cfi'}.safetensors")
        raise WeightsError(f"{config_path}: a training run's checkpoint, not weights; the run's weights are "
                           f"{weights}")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise WeightsError(f"{config_path}: format is {config.get('format') if isinstance(config, dict) else None!r}, "
                           f"expected {FORMAT!r}")
    if "model" not in config:
        raise WeightsError(f"{config_path}: no model config (its \"model\" object of the network's sizes)")
    try:
        model_config = CFIConfig.from_dict(config["model"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{config_path}: bad model config: {exc}") from exc
    problem = config_value_problem(model_config)
    if problem:
        raise WeightsError(f"{config_path}: bad model config: {problem}")
    for key, kind in (("training", dict), ("metrics", dict), ("tensors_sha256", str)):
        if key in config and not isinstance(config[key], kind):
            raise WeightsError(f"{config_path}: {key!r} must be a {kind.__name__}, not {config[key]!r:.60}")
    # The pipeline gives every lifter H36M-17 joints normalised one way: weights that say they learned
    # another joint order or normalisation loaded and lifted each joint as another one, every person
    # garbage, without a word (a file without the header record, or one whose record says so too).
    layout = config.get("joint_layout")
    if layout != H36M_17.name or model_config.num_joints != H36M_17.num_joints:
        raise WeightsError(f"{config_path}: joint layout {layout!r:.60} of a {model_config.num_joints}-joint model; "
                           f"the lifter is given the {H36M_17.num_joints} joints of {H36M_17.name!r}")
    if config.get("normalization") != NORMALIZATION:
        raise WeightsError(f"{config_path}: input normalised as {config.get('normalization')!r:.80}; "
                           f"the lifter is given {NORMALIZATION!r}")
    if (model_config.in_channels, model_config.out_channels) != (2, 3):
        # such a model loads and runs: it failed inside torch (in_channels 3), or gave (N, 17, 2)
        # joints that every consumer of (N, 17, 3) misread, or exported such a graph
        raise WeightsError(f"{config_path}: a model of {model_config.in_channels} input and "
                           f"{model_config.out_channels} output values per joint; the lifter takes pixels (x, y) "
                           "and gives (x, y, z): in_channels 2, out_channels 3")
    try:
        input_domain = LifterInputDomain.from_dict(config["input_domain"]) if "input_domain" in config \
            else H36M_INPUT_DOMAIN
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{config_path}: bad {exc}") from exc
    return WeightsInfo(model=model_config, joint_layout=layout,
                       normalization=config.get("normalization", ""),
                       training=config.get("training", {}), metrics=config.get("metrics", {}),
                       sha256=config.get("tensors_sha256", ""), input_domain=input_domain)


def config_value_problem(config: CFIConfig) -> str | None:
    """What is wrong with the values of a config (its types checked by ``CFIConfig.from_dict``) that
    its constructor lets through (``mlp_ratio: -1``, ``in_channels: -1``, ``mlp_ratio: 1e308``), or
    ``None``: such a JSON must fail as a bad weights file, not in torch or in float arithmetic
    (``OverflowError``)."""
    for f in fields(CFIConfig):
        value = getattr(config, f.name)
        if f.type in ("int", int) and not 1 <= value < MAX_SIZE:       # every int of the config is a size
            return f"{f.name} ({value}) must be from 1 to {MAX_SIZE - 1}"
    hidden = config.dim * config.mlp_ratio
    if not math.isfinite(hidden):
        return f"mlp_ratio ({config.mlp_ratio}) makes the MLP infinitely wide"
    if int(hidden) < 1:
        return f"mlp_ratio ({config.mlp_ratio}) leaves the MLP no hidden units"
    if not 0.0 <= config.dropout < 1.0:
        return f"dropout ({config.dropout}) must be in [0, 1)"
    return None


def expected_shapes(config: CFIConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor ``CFINet(config)`` holds, with its shape, without allocating it: a model of at
    most two blocks on the meta device, and its second block's tensors named for every block past
    it. Even a meta-device model of N blocks costs 5 ms and 0.25 MB a block: a JSON of depth 10,000
    beside a header padded with empty tensors took 45 s and 2.5 GB to be refused."""
    import torch
    from dataclasses import replace

    with torch.device("meta"):
        built = {k: tuple(v.shape) for k, v in CFINet(replace(config, depth=min(config.depth, 2))).state_dict().items()}
    if config.depth <= 2:
        return built
    block = {k[len("blocks.1."):]: shape for k, shape in built.items() if k.startswith("blocks.1.")}
    return {**{k: shape for k, shape in built.items() if not k.startswith("blocks.")},
            **{f"blocks.{b}.{name}": shape for b in range(config.depth) for name, shape in block.items()}}


def _beyond_the_file(config: CFIConfig, header: dict[str, tuple[tuple[int, ...], str]]) -> str | None:
    """Why ``config`` cannot be the architecture of a file with these tensors, judged without
    building it, or ``None``. Building even a meta-device model is not free: ``depth: 10**9``
    never finished (10**4 took 40 s and 2 GB) and ``dim: 10**9`` overflowed inside torch. Every
    width of the model is a dimension of one of its tensors, and every block holds tensors."""
    from dataclasses import replace

    largest = max((math.prod(shape) for shape, _ in header.values()), default=0)
    widths = {"dim": config.dim, "in_channels": config.in_channels, "out_channels": config.out_channels,
              "MLP width (dim * mlp_ratio)": int(config.dim * config.mlp_ratio)}
    for name, width in widths.items():
        if width > largest:
            return f"{name} {width} is more than the largest tensor in the file holds ({largest} values)"
    # Its matrices too: widths alone let a file of one tensor of 2**31 values (2 GiB, a sparse file:
    # 16 kB on disk) pass for dim 2**31, whose (3 dim, dim) shape then overflowed torch's sizes even on
    # the meta device (a RuntimeError naming no file, a traceback in the export and evaluate commands).
    # Against all the file's values, not its largest tensor: a JSON of a somewhat wider model is
    # refused below by the tensors' shapes, which say more.
    total = sum(math.prod(shape) for shape, _ in header.values())
    matrices = {"dim x dim (every attention's output projection)": config.dim * config.dim,
                "dim x MLP width (the MLP's first layer)": config.dim * widths["MLP width (dim * mlp_ratio)"]}
    for name, values in matrices.items():
        if values > total:
            return f"its {name} matrix of {values} values is more than all the file's tensors hold ({total} values)"
    one, two = (len(expected_shapes(replace(config, depth=d))) for d in (1, 2))
    needed = one + (config.depth - 1) * (two - one)      # counted before expected_shapes names them all
    if needed > len(header):
        return f"depth {config.depth} needs {needed} tensors, the file has {len(header)}"
    return None


def _read_header(tensors_path: Path) -> tuple[dict[str, tuple[tuple[int, ...], str]], dict[str, str]]:
    """The tensor shapes and dtypes a safetensors file's header declares, and its metadata
    (no tensor data read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with open(tensors_path, "rb") as f:
            stated = int.from_bytes(f.read(8), "little")
    except OSError as exc:
        raise WeightsError(f"{tensors_path}: cannot read ({exc.strerror or exc})") from exc
    if stated > MAX_HEADER_BYTES:
        raise WeightsError(f"{tensors_path}: a header of {stated} bytes, more than {MAX_HEADER_BYTES} (the packaged "
                           "weights' is 18 kB): not a weights file of this package")
    try:
        # numpy, not torch: torch maps the whole file into memory first, and a header that declares a
        # 64 GiB tensor ended in an uncaught "unable to mmap" RuntimeError
        with safe_open(str(tensors_path), framework="numpy") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}
            return ({k: (tuple(s.get_shape()), s.get_dtype()) for k, s in slices.items()},
                    f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{tensors_path}: unreadable safetensors file ({exc}); truncated, padded or "
                           f"not a safetensors file") from exc


def _meaning_mismatch(info: WeightsInfo, metadata: dict[str, str]) -> str | None:
    """Where the JSON says something else than the tensor file's own record of what its tensors
    mean, or ``None``. Files saved before that record existed have none and are taken as they are."""
    if MEANING_KEY not in metadata:
        return None
    try:
        recorded = json.loads(metadata[MEANING_KEY])
        recorded_model = CFIConfig.from_dict(recorded["model"]).to_dict()
    except (ValueError, RecursionError, KeyError, TypeError) as exc:
        return f"its record of what the tensors mean is unreadable ({exc})"
    differences = [f"{k}: JSON {v!r}, tensors {recorded_model.get(k)!r}"
                   for k, v in info.model.to_dict().items() if recorded_model.get(k) != v]
    differences += [f"{k}: JSON {getattr(info, k)!r}, tensors {recorded.get(k)!r}"
                    for k in ("joint_layout", "normalization") if recorded.get(k) != getattr(info, k)]
    if "input_domain" in recorded:      # files saved before it was recorded have their JSON's
        in_json = json.loads(json.dumps(info.input_domain.to_dict()))
        in_tensors = H36M_INPUT_DOMAIN.to_dict() if recorded["input_domain"] is None else recorded["input_domain"]
        if json.loads(json.dumps(in_tensors)) != in_json:
            differences.append(f"input_domain: JSON {in_json}, tensors {in_tensors}")
    return "; ".join(differences) or None


def load_weights(path: str | Path = DEFAULT_WEIGHTS, device: str = "cpu") -> tuple[CFINet, WeightsInfo]:
    """Build the model the JSON describes and fill it from the tensors; eval mode. Tensors the JSON
    does not describe are refused, with the way to finish a save stopped between its two renames
    where one left the JSON that does (see _interrupted_save_hint)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors_path, config_path = weights_paths(path)
    info = read_weights_info(path)
    # The header first: safetensors refuses a file whose size is not exactly what its header
    # declares, and the shape checks below refuse a header that is not the JSON's model, so only a
    # file of the model's own size gets hashed (a weights file with a 64 GiB hole after it was
    # hashed for minutes before it was refused).
    header, metadata = _read_header(tensors_path)
    impossible = _beyond_the_file(info.model, header)
    if impossible:
        raise WeightsError(f"{tensors_path}: tensors do not match the architecture in the config "
                           f"(dim={info.model.dim}, depth={info.model.depth}): {impossible}")
    expected = expected_shapes(info.model)
    found = {k: shape for k, (shape, _) in header.items()}
    wrong_dtype = sorted(k for k, (_, dtype) in header.items() if dtype != "F32")
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or mismatched or wrong_dtype:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            details.append(f"{len(mismatched)} with wrong shape (e.g. {k}: file {found[k]}, "
                           f"config {expected[k]})")
        if wrong_dtype:
            k = wrong_dtype[0]
            details.append(f"{len(wrong_dtype)} not float32 (e.g. {k}: {header[k][1]})")
        raise WeightsError(f"{tensors_path}: tensors do not match the architecture in the config "
                           f"(dim={info.model.dim}, depth={info.model.depth}): " + "; ".join(details))
    try:
        actual_sha = file_sha256(tensors_path)
    except OSError as exc:
        raise WeightsError(f"{tensors_path}: cannot read ({exc.strerror or exc})") from exc
    if not info.sha256:
        # without it the tensors of another model of the same shapes loaded as this one's
        raise WeightsError(f"{tensors_path}: its JSON has no tensors_sha256, so these tensors cannot be "
                           f"told from another model's of the same shapes; save the weights with "
                           f"cfi_pose_ros.weights.save_weights")
    if info.sha256 != actual_sha:
        raise WeightsError(f"{tensors_path}: SHA-256 {actual_sha[:12]}... does not match the config's "
                           f"{info.sha256[:12]}... (corrupted or replaced file)"
                           f"{_interrupted_save_hint(config_path, lambda: actual_sha)}")
    # Only now: a shape mismatch is said in the tensors' own terms above.
    mismatch = _meaning_mismatch(info, metadata)
    if mismatch:
        raise WeightsError(f"{tensors_path}: the JSON beside it describes another model than the one these "
                           f"tensors were saved from ({mismatch}); an edited or swapped JSON?")
    try:
        state = load_file(str(tensors_path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{tensors_path}: unreadable safetensors file ({exc})") from exc
    non_finite = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items()
                  if v.is_floating_point() and not bool(torch.isfinite(v).all())}
    if non_finite:
        name = sorted(non_finite)[0]
        raise WeightsError(f"{tensors_path}: {len(non_finite)} of {len(state)} tensors contain NaN or inf "
                           f"(e.g. {name}: {non_finite[name]} of {state[name].numel()} values); these weights "
                           f"cannot lift anyone (a training run that diverged?)")
    model = CFINet(info.model)
    model.load_state_dict(state)
    return model.to(device).eval(), info
