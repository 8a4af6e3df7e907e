"""Human3.6M loading under the standard 17-joint single-frame protocol.

Files in the public layouts: ``data_3d_h36m.npz`` (VideoPose3D: ``positions_3d``
= {subject: {action: (T, 32, 3) metres, world frame}}), optional
``data_2d_h36m_<detector>.npz`` (VideoPose3D: ``positions_2d`` = {subject:
{action: [per camera (T, 17, 2) pixels]}}) and ``cameras.json`` ({subject:
[4 cameras]} with extrinsics, intrinsics and distortion).

The VideoPose3D files are pickled dicts inside an npz: they are unpickled by
:func:`load_pickled_entry`, which builds only dicts, lists, tuples, strings,
numbers and numpy arrays, so a dataset file from anywhere cannot run code.
Every loader checks what it read (shapes, finite numbers, four cameras per
subject with a positive focal length and resolution) and raises
:class:`DatasetError` naming the file and the entry at fault, before any work
is done on the data.

This module only loads and applies the protocol; it does not train or augment.
"""
from __future__ import annotations

import json
import lzma
import math
import pickle
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cfi_pose_ros.files import NotRegularFileError, open_regular_file
from cfi_pose_ros.camera import CameraIntrinsics, normalize_screen, project, world_to_camera
from cfi_pose_ros.skeleton import COCO_17, H36M_17, H36M_32_TO_17, convert_to_h36m17

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
ACTION_CLASSES = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo",
                  "Posing", "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting",
                  "WalkDog", "Walking", "WalkTogether")
# Spellings some releases use for the same classes.
_ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}
CAMERAS_PER_SUBJECT = 4
# cameras.json's arrays and their shapes
_CAMERA_ARRAYS = {"R_world_to_cam": (3, 3), "center_world_m": (3,), "focal_length": (2,), "center": (2,),
                  "radial_distortion": (3,), "tangential_distortion": (2,)}


class DatasetError(ValueError):
    """A dataset file that cannot be used, naming the file and the entry at fault."""


def action_class(action: str) -> str:
    """``"Directions 1"`` -> ``"Directions"``; aliases mapped to the 3d-pose-baseline names."""
    name = action.split(" ")[0]
    return _ACTION_ALIASES.get(name, name)


@dataclass(frozen=True)
class H36MCamera:
    id: str
    rotation_world_to_cam: np.ndarray
    center_world: np.ndarray
    intrinsics: CameraIntrinsics


def _unreadable(path: str | Path, error: OSError) -> str:
    """Why ``path`` cannot be read; for a file that is not there, where the data is looked for: an
    installed package (colcon without --symlink-install, pip) looks beside the install, not the
    source checkout, and the bare "No such file" named a path the user never chose."""
    text = f"{path}: cannot read ({error.strerror or error})"
    if isinstance(error, FileNotFoundError):
        text += ("; give the Human3.6M files with --data-3d and --cameras, or set CFI_H36M_DIR to the "
                 "folder that holds data_3d_h36m.npz and cameras.json")
    return text


def load_cameras(path: str | Path) -> dict[str, list[H36MCamera]]:
    """``cameras.json`` -> {subject: [4 cameras]}; DatasetError for a file that is not one (a
    missing or non-finite entry, a focal length or resolution that is not positive, a rotation that
    is not one, a subject without its 4 cameras), which otherwise failed deep in the evaluation."""
    try:
        # a FIFO named as the file hung train and evaluate in open(), waiting for a writer (see open_regular_file)
        with open_regular_file(path, "not a cameras file") as f:
            raw = json.load(f)                     # bytes: JSON's own UTF-8/16/32 detection
    except NotRegularFileError as error:
        raise DatasetError(str(error)) from None
    except OSError as error:
        raise DatasetError(_unreadable(path, error)) from None
    # not JSON, or not UTF-8; or nested deeper than the parser goes (a RecursionError traceback)
    except (ValueError, RecursionError) as error:
        raise DatasetError(f"{path}: not a cameras file ({error})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: holds a JSON {type(raw).__name__}, not {{subject: [4 cameras]}}")
    cameras = {}
    for subject, cams in raw.items():
        if not isinstance(cams, list) or len(cams) != CAMERAS_PER_SUBJECT:
            found = f"{len(cams)} cameras" if isinstance(cams, list) else f"a JSON {type(cams).__name__}"
            raise DatasetError(f"{path}: {subject} has {found}, not the {CAMERAS_PER_SUBJECT} of Human3.6M")
        cameras[subject] = [_camera(c, f"{path}: {subject} camera {i}") for i, c in enumerate(cams)]
    return cameras


def _camera(entry, where: str) -> H36MCamera:
    """One cameras.json entry, checked (``where`` names it in errors)."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: a JSON {type(entry).__name__}, not a camera")
    arrays = {key: _camera_array(entry, key, shape, where) for key, shape in _CAMERA_ARRAYS.items()}
    if not (arrays["focal_length"] > 0).all():
        raise DatasetError(f"{where}: focal_length {arrays['focal_length'].tolist()} is not positive")
    rotation = arrays["R_world_to_cam"]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        raise DatasetError(f"{where}: R_world_to_cam is not a rotation")
    width, height = (_resolution(entry, key, where) for key in ("res_w", "res_h"))
    (fx, fy), (cx, cy) = arrays["focal_length"], arrays["center"]
    return H36MCamera(id=str(entry.get("id", "")), rotation_world_to_cam=rotation,
                      center_world=arrays["center_world_m"],
                      intrinsics=CameraIntrinsics(fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy),
                                                  width=width, height=height,
                                                  radial=tuple(arrays["radial_distortion"].tolist()),
                                                  tangential=tuple(arrays["tangential_distortion"].tolist())))


def _camera_array(entry: dict, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    if key not in entry:
        raise DatasetError(f"{where}: no {key!r}")
    try:
        value = np.asarray(entry[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {key!r} is not numbers") from None
    if value.shape != shape or not np.isfinite(value).all():
        raise DatasetError(f"{where}: {key!r} is {entry[key]!r}, not {' x '.join(map(str, shape))} finite numbers")
    return value


def _resolution(entry: dict, key: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise DatasetError(f"{where}: {key!r} is {value!r}, not a positive number of pixels")
    return int(value)


# What reading a malformed npz raises besides OSError (measured on numpy 2.4, Python 3.11, with the
# auditor's files and by flipping bytes of a good one): zipfile's BadZipFile, NotImplementedError
# (compression method 99, "zip file version 12.3"), RuntimeError (an encrypted member), zlib.error and
# EOFError (a damaged deflated member; lzma.LZMAError for an LZMA one); numpy's ValueError (not .npy
# magic, an empty member, a bad or short header) and tokenize.TokenError (a header whose braces do not
# close: numpy re-reads a header it cannot parse with tokenize); the unpickler's UnpicklingError, OverflowError
# ("BINUNICODE exceeds system's maximum size"), MemoryError (a length field flipped to exabytes; an array
# shape of 2**63 - 1) and, from numpy's reconstruction functions fed wrong arguments, TypeError
# (``_reconstruct`` with one argument, dtype 'zzz'), SyntaxError (dtype '04': numpy parses a name of
# digits as a Python literal), ValueError (a buffer of the wrong size),
# AttributeError and SystemError ("error return without exception set"); and what the pickle docs
# add (ImportError, IndexError, KeyError) and struct.error. Each was a traceback out of train.py,
# which reports a DatasetError in one line. The try holds nothing but the reading of the file, so
# each names a fault of the file, not of this code.
_MALFORMED = (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError, EOFError,
              ValueError, pickle.UnpicklingError, OverflowError, MemoryError, TypeError, AttributeError,
              SystemError, ImportError, IndexError, KeyError, struct.error, tokenize.TokenError, SyntaxError)


# numpy's own dtype.__setstate__ and ndarray.__setstate__ trust the state a pickle gives them, and a
# corrupted file killed the process with SIGSEGV (10 of 145,000 files with random bytes changed):
# a dtype state one entry short, so that numpy took -1 for its fields dict; the object dtype's flags
# kept on a dtype name changed from 'O8' to 'M8', so that numpy took datetimes for object pointers;
# and a 0-d object array pickled with an empty list of items. So the unpickler gets stand-ins for
# numpy.dtype and ndarray reconstruction, and the arrays are built from their checked state with
# frombuffer and item assignment; numpy never sees that state.
class _PickledDtype:
    """``numpy.dtype(name, align, copy)`` as a pickle calls it, and the state BUILD gives it."""
    dtype = None           # also for an instance NEWOBJ made without calling __init__
    state = None

    def __init__(self, name, align=False, copy=True):
        # align and copy change nothing for a dtype that is not a structure
        if not isinstance(name, str):
            raise pickle.UnpicklingError(f"a dtype named by a {type(name).__name__}")
        dtype = np.dtype(name)                    # TypeError for a name numpy does not know
        if dtype.kind not in "biufcO" or dtype.fields is not None or dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"a dtype {name!r}, not a number or object type")
        self.dtype = dtype

    def __setstate__(self, state):
        if self.state is not None:
            raise pickle.UnpicklingError("a dtype given a state twice")
        self.state = state

    def checked(self) -> np.dtype:
        """The plain numeric or object dtype the pickle names, its state what numpy writes for it."""
        dtype, state = self.dtype, self.state
        if dtype is None:
            raise pickle.UnpicklingError("a dtype without a name")
        if state is None:                         # no BUILD: the dtype as its name gives it
            return dtype
        # what numpy 1.x and 2.x write for a dtype that is neither flexible nor a structure
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "|", "=")
                and state[2:7] == (None, None, None, -1, -1) and type(state[7]) is int and state[7] == dtype.flags):
            raise pickle.UnpicklingError(f"a dtype {dtype.str[1:]!r} whose pickled state is not numpy's for it")
        return dtype.newbyteorder(state[1]) if state[1] in "<>" else dtype


class _PickledArray:
    """An ndarray a pickle makes with ``_reconstruct`` and fills with BUILD; :attr:`array` once built."""
    array = None

    def __setstate__(self, state):
        if self.array is not None:
            raise pickle.UnpicklingError("an array given a state twice")
        if not (isinstance(state, tuple) and (len(state) == 4 or len(state) == 5 and state[0] == 1)):
            raise pickle.UnpicklingError("an array whose pickled state is not numpy's")
        self.array = _checked_array(*state[-4:])


def _reconstruct(subtype, shape, dtype):
    # numpy's placeholder shape (0,) and dtype b'b' go unused: BUILD's state gives the array
    if subtype is not _PickledArray:
        raise pickle.UnpicklingError("_reconstruct of something other than an ndarray")
    return _PickledArray()


def _frombuffer(data, dtype, shape, order):
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"an array in order {order!r}")
    return _checked_array(shape, dtype, order == "F", data)


def _checked_array(shape, dtype, fortran_order, data) -> np.ndarray:
    if not isinstance(dtype, _PickledDtype):
        raise pickle.UnpicklingError("an array whose dtype is not a dtype")
    dtype = dtype.checked()
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise pickle.UnpicklingError("an array whose shape is not a tuple of sizes")
    if fortran_order not in (True, False) or type(fortran_order) not in (bool, int):
        raise pickle.UnpicklingError("an array whose memory order is not a bool")
    count = math.prod(shape)
    if dtype.hasobject:
        # numpy pickles an object array's items as a list in C index order, whatever its memory order
        if not isinstance(data, list) or len(data) != count:
            raise pickle.UnpicklingError(f"an object array of {count} items pickled with "
                                         f"{len(data) if isinstance(data, list) else 'no list of'} items")
        items = np.empty(count, dtype=object)
        for i, item in enumerate(data):
            items[i] = _built(item, set())      # one by one: a list or array item stays one object
        array = items.reshape(shape)
        return np.asfortranarray(array) if fortran_order else array
    if not isinstance(data, (bytes, bytearray)) or len(data) != count * dtype.itemsize:
        raise pickle.UnpicklingError(f"an array of {count} {dtype} values pickled with "
                                     f"{len(data) if isinstance(data, (bytes, bytearray)) else 'no'} bytes")
    array = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order="F" if fortran_order else "C")
    # a copy, as ndarray.__setstate__ gives: frombuffer over the pickle's bytes is read-only; and in the
    # machine's byte order, as it gives too (torch.from_numpy refuses another)
    return array.astype(dtype.newbyteorder("="), order="K", copy=True)


def _built(value, seen: set[int]):
    """``value`` with the arrays in place of their stand-ins, in it and in the lists, dicts and tuples it
    holds (lists and dicts changed in place, so that what the pickle shared stays shared)."""
    if isinstance(value, _PickledArray):
        if value.array is None:
            raise pickle.UnpicklingError("an array without its data (or holding itself)")
        return value.array
    if isinstance(value, _PickledDtype):
        raise pickle.UnpicklingError("a dtype where data belongs")
    if not isinstance(value, (list, dict, tuple)) or id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, tuple):
        return tuple(_built(item, seen) for item in value)
    if isinstance(value, list):
        value[:] = [_built(item, seen) for item in value]
        return value
    for key, item in list(value.items()):
        if isinstance(key, (_PickledArray, _PickledDtype)):
            raise pickle.UnpicklingError("an array or dtype as a dict key")
        value[key] = _built(item, seen)
    return value


# What numpy's pickles of arrays name (numpy 1.x and 2.x module paths), each given its stand-in;
# nothing else is built.
_ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                  ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                  ("numpy.core.numeric", "_frombuffer"): _frombuffer,
                  ("numpy._core.numeric", "_frombuffer"): _frombuffer,
                  ("numpy", "ndarray"): _PickledArray, ("numpy", "dtype"): _PickledDtype}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return _ARRAY_GLOBALS[module, name]
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a dataset (only dicts, lists and "
                                     f"numpy arrays are read)")


def load_pickled_entry(path: str | Path, key: str, required: bool = True):
    """The pickled object stored as ``key`` in an npz (``np.savez(path, key=dict)``), built by an
    unpickler that refuses every global but numpy's array reconstruction: ``np.load(...,
    allow_pickle=True)`` would run whatever code a hostile file names. DatasetError (naming the file
    and what is wrong with it) for a file that is no such npz; None for a file without ``key`` where
    it is not ``required``."""
    try:
        # opened here and handed over (ZipFile would open a path itself): a FIFO named as the file hung
        # train and evaluate in open(), waiting for a writer
        with open_regular_file(path, "not an npz dataset file") as stream, zipfile.ZipFile(stream) as archive:
            member = key + ".npy"
            if member not in archive.namelist():
                if not required:
                    return None
                found = [n.removesuffix(".npy") for n in archive.namelist()]
                raise DatasetError(f"{path}: no {key!r} entry (found {found})")
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0), (3, 0)):
                    raise DatasetError(f"{path}: {key!r} is .npy format version {version[0]}.{version[1]}, "
                                       f"not 1.0, 2.0 or 3.0")
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
                if dtype != np.dtype(object) or shape != ():
                    raise DatasetError(f"{path}: {key!r} is a {dtype} array of shape {shape}, not a pickled object")
                stored = _built(_ArraysOnlyUnpickler(f).load(), set())  # numpy pickles the 0-d object array itself
    except DatasetError:                   # a ValueError, already naming the file
        raise
    except NotRegularFileError as exc:     # a ValueError too, naming the file and what it is
        raise DatasetError(str(exc)) from None
    except OSError as exc:
        raise DatasetError(_unreadable(path, exc)) from None
    except _MALFORMED as exc:
        raise DatasetError(f"{path}: not a dataset file this loader reads "
                           f"({str(exc) or exc.__class__.__name__})") from exc
    if not (isinstance(stored, np.ndarray) and stored.shape == () and stored.dtype == object):
        raise DatasetError(f"{path}: {key!r} holds a {type(stored).__name__}, not a pickled object array")
    return stored.item()


def load_poses_3d(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The VideoPose3D ``positions_3d`` dictionary (the file is a pickled dict inside an npz), each
    sequence checked to be finite ``(T, 17 or 32, 3)`` metres."""
    poses = load_pickled_entry(path, "positions_3d")
    for subject, action, sequence in _sequences(poses, path):
        _check_frames(sequence, f"{path}: {subject} {action!r}", (17, 32), (3,))
    return poses


# The joint layouts a VideoPose3D 2D file's ``metadata["layout_name"]`` names, as this package's:
# "h36m" (its CPN, fine-tuned Mask R-CNN and GT files) is the lifter's order; "coco" (its Detectron
# files, data_2d_h36m_detectron_pt_coco.npz) is COCO's keypoint order, which VideoPose3D lifts with
# a COCO-layout model and which was read here as H36M-17: a nose taken for the pelvis, eyes for hips.
_DETECTION_LAYOUTS = {"h36m": H36M_17, "coco": COCO_17}


def detections_layout(path: str | Path):
    """The :class:`JointLayout` of a VideoPose3D 2D file, from its ``metadata`` entry; H36M-17 for a
    file without one (hand-made files, as the loaders always took them). DatasetError for a layout
    the lifter cannot be given."""
    metadata = load_pickled_entry(path, "metadata", required=False)
    if metadata is None:
        return H36M_17
    name = metadata.get("layout_name") if isinstance(metadata, dict) else None
    if name not in _DETECTION_LAYOUTS:
        raise DatasetError(f"{path}: its metadata names the 2D layout {name!r}; this loader reads "
                           f"{' and '.join(map(repr, _DETECTION_LAYOUTS))} (VideoPose3D's layout_name)")
    return _DETECTION_LAYOUTS[name]


def load_detections_2d(path: str | Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """The VideoPose3D ``positions_2d`` dictionary of detected 2D keypoints in pixels, each sequence
    checked to be one finite ``(T, 17, 2)`` array (or ``(T, 17, 3)`` with scores) per camera, in
    H36M-17 order: a file whose metadata names COCO's layout is converted as the node converts a
    COCO detector's keypoints (:func:`cfi_pose_ros.skeleton.convert_to_h36m17`: pelvis the mid-hips,
    thorax the mid-shoulders, head the mid-eyes), to ``(T, 17, 2)``."""
    layout = detections_layout(path)
    detections = load_pickled_entry(path, "positions_2d")
    for subject, action, per_camera in _sequences(detections, path):
        where = f"{path}: {subject} {action!r}"
        if not isinstance(per_camera, (list, tuple)) or len(per_camera) != CAMERAS_PER_SUBJECT:
            found = f"{len(per_camera)} cameras" if isinstance(per_camera, (list, tuple)) else \
                f"a {type(per_camera).__name__}"
            raise DatasetError(f"{where}: {found}, not the {CAMERAS_PER_SUBJECT} of Human3.6M")
        for camera, pixels in enumerate(per_camera):
            _check_frames(pixels, f"{where} camera {camera}", (17,), (2, 3), finite=(..., slice(0, 2)))
        if layout is not H36M_17:
            detections[subject][action] = [convert_to_h36m17(layout.name, pixels[..., :2])[0].astype(np.float32)
                                           for pixels in per_camera]
    return detections


def _sequences(data, path):
    """``(subject, action, value)`` of a ``{subject: {action: value}}`` file; DatasetError for
    another layout."""
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: holds a {type(data).__name__}, not {{subject: {{action: ...}}}}")
    for subject, actions in data.items():
        if not isinstance(actions, dict):
            raise DatasetError(f"{path}: {subject} holds a {type(actions).__name__}, not {{action: ...}}")
        for action, value in actions.items():
            yield subject, action, value


def _check_frames(frames, where: str, joints: tuple[int, ...], coordinates: tuple[int, ...],
                  finite=...) -> None:
    """DatasetError unless ``frames`` is a numeric ``(T >= 1, joints, coordinates)`` array whose
    ``finite`` part holds finite numbers (a NaN failed in the metrics' SVD after the whole run)."""
    if not (isinstance(frames, np.ndarray) and np.issubdtype(frames.dtype, np.number)):
        raise DatasetError(f"{where}: a {type(frames).__name__}, not an array of numbers")
    shape = frames.shape
    if len(shape) != 3 or shape[0] < 1 or shape[1] not in joints or shape[2] not in coordinates:
        raise DatasetError(f"{where}: shape {shape}, not (frames, {' or '.join(map(str, joints))} joints, "
                           f"{' or '.join(map(str, coordinates))})")
    if not np.isfinite(frames[finite]).all():
        raise DatasetError(f"{where}: holds non-finite values (NaN or infinite)")


@dataclass
class PoseSet:
    """Aligned arrays of (2D input, 3D target) pairs and their labels."""
    inputs_2d: np.ndarray      # (N, 17, 2) float32, screen-normalised
    targets_3d: np.ndarray     # (N, 17, 3) float32, root-relative metres, camera frame
    action_ids: np.ndarray     # (N,) int16 into ACTION_CLASSES
    subject_ids: np.ndarray    # (N,) int16 into ``subjects``
    camera_ids: np.ndarray     # (N,) int8, 0..3
    subjects: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.inputs_2d)

    def subset(self, mask: np.ndarray) -> "PoseSet":
        return PoseSet(self.inputs_2d[mask], self.targets_3d[mask], self.action_ids[mask],
                       self.subject_ids[mask], self.camera_ids[mask], self.subjects)


class CameraSequence(NamedTuple):
    """One sequence as one camera saw it."""
    subject_index: int          # into the subjects asked for
    subject: str
    action: str                 # as named in the 3D file ("Walking 1")
    action_class: str           # its ACTION_CLASSES entry ("Walking")
    camera_index: int
    camera: H36MCamera
    joints: np.ndarray          # (T, 17, 3) metres, in the camera's frame


def camera_sequences(poses_3d: dict, cameras: dict[str, list[H36MCamera]], subjects: tuple[str, ...],
                     actions: tuple[str, ...] | None = None):
    """A :class:`CameraSequence` for each sequence of ``subjects`` (of ``actions`` only, when
    given) seen by each camera.
    S11's sequence named exactly "Directions" is skipped as in every standard file (corrupted
    video); its "Directions 1" stays, as in VideoPose3D's data_3d_h36m.npz."""
    for s_index, subject in enumerate(subjects):
        if subject not in poses_3d:
            raise KeyError(f"subject {subject} not in the 3D file (has {sorted(poses_3d)})")
        if subject not in cameras:
            raise KeyError(f"subject {subject} not in the cameras file (has {sorted(cameras)})")
        for action, world in sorted(poses_3d[subject].items()):
            if subject == "S11" and action == "Directions":
                continue
            cls = action_class(action)
            if cls not in ACTION_CLASSES:
                raise DatasetError(f"{subject} {action!r}: unknown action class {cls!r}")
            if actions is not None and cls not in actions:
                continue
            world = np.asarray(world)
            if world.shape[1] == 32:
                world = world[:, H36M_32_TO_17]
            for c_index, cam in enumerate(cameras[subject]):
                yield CameraSequence(s_index, subject, action, cls, c_index, cam,
                                     world_to_camera(world, cam.rotation_world_to_cam, cam.center_world))


def build_pose_set(poses_3d: dict, cameras: dict[str, list[H36MCamera]], subjects: tuple[str, ...],
                   detections_2d: dict | None = None, stride: int = 1,
                   actions: tuple[str, ...] | None = None, source_2d: str = "the 2D file",
                   source_cameras: str = "the cameras file") -> PoseSet:
    """Apply the protocol (:func:`camera_sequences`: 32 -> 17 joints, world -> camera), root-relative
    targets, 2D from projection with distortion (or from ``detections_2d``), screen normalisation.
    DatasetError for a person behind a camera (see below)."""
    inputs, targets, action_ids, subject_ids, camera_ids = [], [], [], [], []
    for s_index, subject, action, cls, c_index, cam, cam_points in camera_sequences(poses_3d, cameras, subjects,
                                                                                    actions):
        # A camera and 3D file that do not fit (a camera-to-world rotation, a centre in millimetres)
        # put people behind the camera, whose projection is a mirrored image: with R_world_to_cam
        # transposed, 2 of 4 test cameras saw everyone at z = -4.6 m, and the run trained on it
        # without a word. Human3.6M's nearest joint is 2.0 m in front of its camera.
        nearest = float(cam_points[..., 2].min())
        if nearest <= 0:
            raise DatasetError(f"{source_cameras}: {subject} camera {c_index}: {action!r} stands behind it (a "
                               f"joint at z = {nearest:.2f} m in the camera's frame); R_world_to_cam must turn "
                               f"world axes into the camera's and center_world_m be in the 3D file's metres")
        if detections_2d is not None:
            if action not in detections_2d.get(subject, {}):
                raise KeyError(f"{source_2d}: no {subject} {action!r} (a sequence of the 3D file)")
            pixels = np.asarray(detections_2d[subject][action][c_index])[..., :2]
            length = min(len(pixels), len(cam_points))
            pixels, cam_points_used = pixels[:length], cam_points[:length]
        else:
            pixels, cam_points_used = project(cam_points, cam.intrinsics), cam_points
        sl = slice(None, None, stride)
        pixels, cam_points_used = pixels[sl], cam_points_used[sl]
        k = cam.intrinsics
        inputs.append(normalize_screen(pixels, k.width, k.height).astype(np.float32))
        targets.append((cam_points_used - cam_points_used[:, :1]).astype(np.float32))
        n = len(pixels)
        action_ids.append(np.full(n, ACTION_CLASSES.index(cls), np.int16))
        subject_ids.append(np.full(n, s_index, np.int16))
        camera_ids.append(np.full(n, c_index, np.int8))
    if not inputs:
        raise DatasetError(f"no frames for subjects {subjects}")
    return PoseSet(np.concatenate(inputs), np.concatenate(targets), np.concatenate(action_ids),
                   np.concatenate(subject_ids), np.concatenate(camera_ids), tuple(subjects))


def load_h36m(data_3d: str | Path, cameras_json: str | Path, subjects: tuple[str, ...],
              data_2d: str | Path | None = None, stride: int = 1) -> PoseSet:
    """Files -> :class:`PoseSet` for ``subjects`` (GT 2D unless ``data_2d`` is given)."""
    detections = load_detections_2d(data_2d) if data_2d else None
    return build_pose_set(load_poses_3d(data_3d), load_cameras(cameras_json), tuple(subjects),
                          detections, stride, source_2d=str(data_2d), source_cameras=str(cameras_json))
