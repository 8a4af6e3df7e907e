"""The detector interface, its result type, and the ONNX Runtime plumbing every model shares."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..skeleton import COCO_17, H36M_17, convert_to_h36m17

LAYOUT_NAMES = (COCO_17.name, H36M_17.name)


class DetectorModelError(ValueError):
    """A detector model file is missing, unreadable, or has unexpected inputs/outputs."""


@dataclass
class Detections2D:
    """People found in one image, all coordinates in the original image's pixels.

    ``keypoints`` ``(P, 17, 2)`` float (x, y); ``scores`` ``(P, 17)`` in [0, 1];
    ``boxes`` ``(P, 4)`` (x1, y1, x2, y2); ``box_scores`` ``(P,)``; ``layout``
    names the joint order (``"coco_17"`` or ``"h36m_17"``).
    """
    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    layout: str = COCO_17.name

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(-1, 17, 2)
        people = self.keypoints.shape[0]
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(people, 17)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(people, 4)
        self.box_scores = np.asarray(self.box_scores, dtype=np.float64).reshape(people)
        if self.layout not in LAYOUT_NAMES:
            raise ValueError(f"unknown layout {self.layout!r}; expected one of {LAYOUT_NAMES}")

    def __len__(self) -> int:
        return self.keypoints.shape[0]

    @classmethod
    def empty(cls, layout: str = COCO_17.name) -> "Detections2D":
        return cls(np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros((0, 4)), np.zeros(0), layout)

    def to_h36m17(self) -> "Detections2D":
        """The same people with keypoints converted to H36M-17 (the lifter's input order)."""
        if self.layout == H36M_17.name:
            return self
        keypoints, scores = convert_to_h36m17(self.layout, self.keypoints, self.scores)
        return Detections2D(keypoints, scores, self.boxes, self.box_scores, H36M_17.name)

    def select(self, index: Any) -> "Detections2D":
        """A subset of the people (boolean mask or index array)."""
        return Detections2D(self.keypoints[index], self.scores[index], self.boxes[index],
                            self.box_scores[index], self.layout)


@runtime_checkable
class PoseDetector2D(Protocol):
    """Anything that finds people and their 2D keypoints in a BGR ``uint8`` image ``(H, W, 3)``."""

    def detect(self, image_bgr: np.ndarray) -> Detections2D: ...


@runtime_checkable
class PersonDetector(Protocol):
    """First stage of a top-down pipeline: person boxes ``(P, 4)`` and scores ``(P,)``, original pixels."""

    def detect_boxes(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class KeypointModel(Protocol):
    """Second stage: keypoints ``(P, 17, 2)`` and scores ``(P, 17)`` for each box, original pixels."""

    layout: str

    def estimate(self, image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


ProviderSpec = str | tuple[str, dict]


@dataclass(kw_only=True)
class OnnxModelConfig:
    """Where the model is and how ONNX Runtime runs it.

    ``providers`` is ONNX Runtime's execution provider list, in priority order;
    each entry a name or ``(name, options)``, e.g.
    ``[("TensorrtExecutionProvider", {"trt_fp16_enable": True}), "CUDAExecutionProvider",
    "CPUExecutionProvider"]``. ONNX Runtime silently falls back to the CPU
    when a provider is unavailable; ``strict_providers=True`` makes that a
    :class:`DetectorModelError` instead. ``intra_op_num_threads`` 0 lets ONNX
    Runtime choose. ``allow_spinning`` lets idle intra-op workers busy-wait for the
    next task: off, because on a small CPU the spinning of one model's workers takes
    the cores the other model, the lifter and the camera driver need.
    """
    model_path: str = ""
    providers: Sequence[ProviderSpec] = ("CPUExecutionProvider",)
    strict_providers: bool = False
    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    allow_spinning: bool = False


def _normalise_providers(providers: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for entry in providers:
        if isinstance(entry, str):
            out.append(entry)
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
            out.append((entry[0], dict(entry[1] or {})))
        elif isinstance(entry, dict) and "name" in entry:
            out.append((entry["name"], dict(entry.get("options") or {})))
        else:
            raise ValueError(f"bad execution provider entry {entry!r}: expected a name or (name, options)")
    return out


def _installed_providers(providers: list[Any], available: Sequence[str]) -> list[Any]:
    """``providers`` (normalised) without the ones this ONNX Runtime does not have and without
    repeats; the CPU's when none is left of a list that was not empty. ONNX Runtime falls back
    to the CPU for those itself, but not silently: a Python UserWarning per session ("Specified
    provider 'CUDAExecutionProvider' is not in available provider names"), and for a name it does
    not know at all (``providers: ['']``, a typo) an "EP Error" banner on stdout and a second try
    at building the session, so a ``ros2 param set`` of ``providers`` left those lines in the
    detector's log beside its own WARN. ``strict_providers`` still compares what was asked."""
    kept: list[Any] = []
    names: set[str] = set()
    for entry in providers:     # a name, or (name, options)
        name = entry if isinstance(entry, str) else entry[0]
        if name in available and name not in names:
            kept.append(entry)
            names.add(name)
    return kept if kept or not providers else ["CPUExecutionProvider"]


def create_session(config: OnnxModelConfig) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``config``; :class:`DetectorModelError` when it can't load."""
    import onnxruntime as ort

    path = Path(os.path.expanduser(str(config.model_path)))
    if not str(config.model_path):
        raise DetectorModelError(f"{type(config).__name__}.model_path is empty")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:    # missing, or a dangling link
        raise DetectorModelError(f"detector model file not found: {path}") from exc
    except OSError as exc:              # a folder on the way that may not be searched, a symlink loop
        raise DetectorModelError(f"detector model {path}: cannot read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(mode):          # the models' folder given for the file, a FIFO, a device
        from cfi_pose_ros.files import special_file_kind

        raise DetectorModelError(f"detector model {path}: {special_file_kind(mode)}, not an ONNX model file")
    options = ort.SessionOptions()
    if config.intra_op_num_threads:
        options.intra_op_num_threads = int(config.intra_op_num_threads)
    if config.inter_op_num_threads:
        options.inter_op_num_threads = int(config.inter_op_num_threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.allow_spinning else "0")
    providers = _normalise_providers(config.providers)
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=_installed_providers(providers, ort.get_available_providers()))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise DetectorModelError(f"ONNX Runtime could not load {path}: {exc}") from exc
    if config.strict_providers:
        wanted = [p if isinstance(p, str) else p[0] for p in providers]
        missing = [p for p in wanted if p not in session.get_providers()]
        if missing:
            raise DetectorModelError(
                f"{path}: execution provider(s) {missing} not available (strict_providers); this "
                f"ONNX Runtime has {ort.get_available_providers()}, the session uses {session.get_providers()}")
    return session


def providers_in_use(detector: Any) -> list[str]:
    """The execution providers ONNX Runtime gave ``detector``'s sessions (its own, or its person
    detector's and keypoint model's when it is top-down), each once: without strict_providers one
    this install lacks (CUDA on a CPU-only wheel) falls back to the CPU without an error."""
    in_use: list[str] = []
    for part in (detector, getattr(detector, "person_detector", None), getattr(detector, "keypoint_model", None)):
        session = getattr(part, "session", None)
        for provider in session.get_providers() if session is not None else ():
            if provider not in in_use:
                in_use.append(provider)
    return in_use


# ---------------------------------------------------------------------------
# Input/output validation
# ---------------------------------------------------------------------------

Dim = int | str | None  # int: must equal; str: a symbolic name for the message (any size)


@dataclass(frozen=True)
class TensorSpec:
    """What a model's input or output must look like: ``dims`` has one entry per axis
    (an int the axis must equal when the model fixes it, or a letter for any size)."""
    name: str | None  # None: the model's only input/output of that kind, whatever its name
    dims: tuple[Dim, ...]
    dtypes: tuple[str, ...] = ("tensor(float)",)

    def describe(self) -> str:
        shown = ",".join(str(d) for d in self.dims)
        return f"'{self.name}' [{shown}]" if self.name else f"[{shown}]"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    shape: tuple[Any, ...]
    type: str


def _describe_nodes(nodes: Sequence[Any]) -> str:
    return ", ".join(f"'{n.name}' {list(n.shape)} {n.type}" for n in nodes) or "none"


def resolve_tensor(session: Any, spec: TensorSpec, kind: str, model_name: str) -> NodeInfo:
    """Find the input/output ``spec`` names in ``session`` and check its rank, fixed dims and type.

    ``kind`` is ``"input"`` or ``"output"``. Raises :class:`DetectorModelError`
    with the expected layout and what the model actually has.
    """
    nodes = session.get_inputs() if kind == "input" else session.get_outputs()
    expected = f"expected {kind} {spec.describe()} {'/'.join(spec.dtypes)}"
    have = f"model has {kind}s: {_describe_nodes(nodes)}"
    if spec.name is None:
        if len(nodes) != 1:
            raise DetectorModelError(f"{model_name}: {expected} (the only {kind}), {have}")
        node = nodes[0]
    else:
        matches = [n for n in nodes if n.name == spec.name]
        if not matches:
            raise DetectorModelError(f"{model_name}: {expected}, {have}")
        node = matches[0]
    shape = tuple(node.shape) if node.shape is not None else ()
    if len(shape) != len(spec.dims):
        raise DetectorModelError(f"{model_name}: {expected} (rank {len(spec.dims)}), {have}")
    for axis, (want, got) in enumerate(zip(spec.dims, shape)):
        if isinstance(want, int) and isinstance(got, int) and got >= 0 and got != want:
            raise DetectorModelError(f"{model_name}: {expected} (axis {axis} must be {want}), {have}")
    if node.type not in spec.dtypes:
        raise DetectorModelError(f"{model_name}: {expected} (element type), {have}")
    return NodeInfo(node.name, shape, node.type)


# The largest model input (width x height) a detector sends an image as: the published models take
# 192 x 192 to 1280 x 1280. Each frame is scaled to it, then copied as float32 (12 bytes a pixel): a
# model whose input was fixed at 100000 x 100000 passed configure, then asked for 22.5 GB for the
# first copy of every frame (a failed allocation each, or the out-of-memory killer).
MAX_INPUT_PIXELS = 4096 * 4096


def static_dim(shape: Sequence[Any], axis: int) -> int | None:
    """The size of ``axis`` when the model fixes it, else None."""
    value = shape[axis]
    return value if isinstance(value, int) and value > 0 else None


def check_one_image_batch(tensor, name: str) -> None:
    """A whole-image detector runs one image at a time: its input's batch axis must be open or 1
    (a model exported with a fixed batch of 2 passed configure and failed on every frame)."""
    if static_dim(tensor.shape, 0) not in (None, 1):
        raise DetectorModelError(f"{name}: the input's batch axis is fixed at {tensor.shape[0]}, but this detector "
                                 "runs one image at a time: export it with batch 1 or dynamic")


_NUMPY_OF_ORT = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                 "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
                 "tensor(int64)": np.int64}


def numpy_dtype(ort_type: str) -> Any:
    return _NUMPY_OF_ORT[ort_type]


def check_output_shape(array: np.ndarray, spec: TensorSpec, model_name: str, name: str) -> None:
    """Run-time check of an output's shape against ``spec`` (for axes the model left symbolic)."""
    if array.ndim != len(spec.dims) or any(
            isinstance(want, int) and got != want for want, got in zip(spec.dims, array.shape)):
        raise DetectorModelError(
            f"{model_name}: expected output {spec.describe()}, model returned '{name}' with shape "
            f"{list(array.shape)}")



def normalise_images(images_bgr: np.ndarray, mean: Sequence[float], std: Sequence[float],
                     to_rgb: bool, dtype: Any = np.float32) -> np.ndarray:
    """``(B, H, W, 3)`` BGR uint8 -> ``(B, 3, H, W)`` ``(x - mean) / std``.

    ``mean`` and ``std`` are in the order of the channels the model receives
    (RGB when ``to_rgb``, else BGR).
    """
    images = np.asarray(images_bgr)
    if to_rgb:
        images = images[..., ::-1]
    mean_arr = np.asarray(mean, dtype=np.float32).reshape(1, 1, 1, 3)
    inv_std = (1.0 / np.asarray(std, dtype=np.float32)).reshape(1, 1, 1, 3)
    out = (images.astype(np.float32) - mean_arr) * inv_std
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=dtype)


def run_batched(session: Any, input_name: str, batch: np.ndarray, output_names: Sequence[str],
                static_batch: int | None, max_batch: int) -> list[np.ndarray]:
    """Run ``session`` on ``batch`` (``B`` inputs along axis 0) and concatenate the outputs.

    A model with a dynamic batch axis gets chunks of up to ``max_batch``; one
    with a fixed batch size ``b`` gets chunks of exactly ``b`` (the last one
    padded by repeating its final input, the padding's outputs dropped).
    """
    total = batch.shape[0]
    chunk = static_batch if static_batch else max(1, int(max_batch))
    parts: list[list[np.ndarray]] = [[] for _ in output_names]
    for start in range(0, total, chunk):
        piece = batch[start:start + chunk]
        used = piece.shape[0]
        if static_batch and used < static_batch:
            filler = np.repeat(piece[-1:], static_batch - used, axis=0)
            piece = np.concatenate([piece, filler], axis=0)
        outputs = session.run(list(output_names), {input_name: piece})
        for i, out in enumerate(outputs):
            parts[i].append(np.asarray(out)[:used])
    return [np.concatenate(p, axis=0) if p else np.zeros((0,)) for p in parts]


def resolve_input_size(requested: Sequence[int] | None, shape: Sequence[Any], default: tuple[int, int],
                       model_name: str, channels_last: bool = False) -> tuple[int, int]:
    """The model input's (width, height): the model's own when it fixes them, else
    ``requested`` or ``default``. A ``requested`` size that contradicts a fixed one is an error, and
    so is one no image fits (an axis fixed at 0) or one past :data:`MAX_INPUT_PIXELS`."""
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    fixed_w, fixed_h = static_dim(shape, w_axis), static_dim(shape, h_axis)
    if requested is not None:
        req_w, req_h = int(requested[0]), int(requested[1])
        if (fixed_w and fixed_w != req_w) or (fixed_h and fixed_h != req_h):
            raise DetectorModelError(
                f"{model_name}: configured input_size (w, h) = ({req_w}, {req_h}) but the model's "
                f"input is fixed at {list(shape)}")
        width, height = req_w, req_h
    else:
        width, height = fixed_w or default[0], fixed_h or default[1]
    # static_dim reads an axis fixed at 0 as open: the default size was sent, refused on every frame
    zero = any(shape[axis] == 0 for axis in (h_axis, w_axis))
    if zero or not (width >= 1 and height >= 1 and width * height <= MAX_INPUT_PIXELS):
        raise DetectorModelError(
            f"{model_name}: an input of {'0' if zero else f'{width} x {height}'} pixels (the model's input "
            f"{list(shape)}); a detector model's input is 1 to {MAX_INPUT_PIXELS} pixels (4096 x 4096)")
    return width, height


def check_image(image: Any) -> None:
    """``ValueError`` unless ``image`` is a non-empty BGR uint8 ``(H, W, 3)`` array."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image (H, W, 3), got "
                         f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has zero size {image.shape}")
