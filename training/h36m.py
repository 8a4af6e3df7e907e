"""Human3.6M loading under the standard 17-joint single-frame protocol.

Files in the public layouts: ``data_3d_h36m.npz`` (VideoPose3D: ``positions_3d``
= {subject: {action: (T, 32, 3) metres, world frame}}), optional
``data_2d_h36m_<detector>.npz`` (VideoPose3D: ``positions_2d`` = {subject:
{action: [per camera (T, 17, 2) pixels]}}) and ``cameras.json`` ({subject:
[4 cameras]} with extrinsics, intrinsics and distortion).

The VideoPose3D files are pickled dicts inside an npz: they are unpickled by
:func:`load_pickled_entry`, which builds only dicts, lists, tuples, strings,
numbers and numpy arrays, so a dataset file from anywhere cannot run code.

This module only loads and applies the protocol; it does not train or augment.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cfi_pose_ros.camera import CameraIntrinsics, normalize_screen, project, world_to_camera
from cfi_pose_ros.skeleton import H36M_32_TO_17

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
ACTION_CLASSES = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo",
                  "Posing", "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting",
                  "WalkDog", "Walking", "WalkTogether")
# Spellings some releases use for the same classes.
_ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


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


def load_cameras(path: str | Path) -> dict[str, list[H36MCamera]]:
    with open(path) as f:
        raw = json.load(f)
    cameras = {}
    for subject, cams in raw.items():
        cameras[subject] = [H36MCamera(
            id=str(c["id"]),
            rotation_world_to_cam=np.asarray(c["R_world_to_cam"], dtype=np.float64),
            center_world=np.asarray(c["center_world_m"], dtype=np.float64),
            intrinsics=CameraIntrinsics(
                fx=c["focal_length"][0], fy=c["focal_length"][1],
                cx=c["center"][0], cy=c["center"][1],
                width=int(c["res_w"]), height=int(c["res_h"]),
                radial=tuple(c["radial_distortion"]), tangential=tuple(c["tangential_distortion"])),
        ) for c in cams]
    return cameras


# What numpy's pickles of arrays name (numpy 1.x and 2.x module paths); nothing else is built.
_ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a dataset (only dicts, lists and "
                                     f"numpy arrays are read)")


def load_pickled_entry(path: str | Path, key: str):
    """The pickled object stored as ``key`` in an npz (``np.savez(path, key=dict)``), built by an
    unpickler that refuses every global but numpy's array reconstruction: ``np.load(...,
    allow_pickle=True)`` would run whatever code a hostile file names. ValueError (naming the file)
    for a file that is no such npz."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = key + ".npy"
            if member not in archive.namelist():
                found = [n.removesuffix(".npy") for n in archive.namelist()]
                raise ValueError(f"{path}: no {key!r} entry (found {found})")
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
                if dtype != np.dtype(object) or shape != ():
                    raise ValueError(f"{path}: {key!r} is a {dtype} array of shape {shape}, not a pickled object")
                stored = _ArraysOnlyUnpickler(f).load()        # numpy pickles the 0-d object array itself
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"{path}: not a dataset file this loader reads ({exc})") from exc
    if not (isinstance(stored, np.ndarray) and stored.shape == () and stored.dtype == object):
        raise ValueError(f"{path}: {key!r} holds a {type(stored).__name__}, not a pickled object array")
    return stored.item()


def load_poses_3d(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The VideoPose3D ``positions_3d`` dictionary (the file is a pickled dict inside an npz)."""
    return load_pickled_entry(path, "positions_3d")


def load_detections_2d(path: str | Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """The VideoPose3D ``positions_2d`` dictionary of detected 2D keypoints in pixels."""
    return load_pickled_entry(path, "positions_2d")


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
                raise ValueError(f"{subject} {action!r}: unknown action class {cls!r}")
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
                   actions: tuple[str, ...] | None = None) -> PoseSet:
    """Apply the protocol (:func:`camera_sequences`: 32 -> 17 joints, world -> camera), root-relative
    targets, 2D from projection with distortion (or from ``detections_2d``), screen normalisation."""
    inputs, targets, action_ids, subject_ids, camera_ids = [], [], [], [], []
    for s_index, subject, action, cls, c_index, cam, cam_points in camera_sequences(poses_3d, cameras, subjects,
                                                                                    actions):
        if detections_2d is not None:
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
        raise ValueError(f"no frames for subjects {subjects}")
    return PoseSet(np.concatenate(inputs), np.concatenate(targets), np.concatenate(action_ids),
                   np.concatenate(subject_ids), np.concatenate(camera_ids), tuple(subjects))


def load_h36m(data_3d: str | Path, cameras_json: str | Path, subjects: tuple[str, ...],
              data_2d: str | Path | None = None, stride: int = 1) -> PoseSet:
    """Files -> :class:`PoseSet` for ``subjects`` (GT 2D unless ``data_2d`` is given)."""
    detections = load_detections_2d(data_2d) if data_2d else None
    return build_pose_set(load_poses_3d(data_3d), load_cameras(cameras_json), tuple(subjects),
                          detections, stride)
