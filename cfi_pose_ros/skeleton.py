"""Joint layouts as data: the one place that defines every skeleton the package knows.

Each layout is a frozen :class:`JointLayout` (names, parents, left/right pairs).
Everything else (the model's adjacency, flip augmentation, marker lines, the
COCO -> H36M conversion used for real detectors) is derived from these tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class JointLayout:
    name: str
    joint_names: tuple[str, ...]
    # Parent of each joint in the kinematic tree; -1 for the root. A layout
    # without a tree (COCO keypoints) lists its drawing edges in ``edges``.
    parents: tuple[int, ...] | None
    flip_pairs: tuple[tuple[int, int], ...]
    extra_edges: tuple[tuple[int, int], ...] = field(default=())
    # Mean length (metres) of each joint's bone to its parent (0 for the root) over a reference
    # population; None where the layout has no tree or no such data.
    mean_bone_lengths: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.parents is not None and any(p >= j for j, p in enumerate(self.parents)):
            raise ValueError(f"layout {self.name}: every joint's parent must come before it")
        if self.mean_bone_lengths is not None and (self.parents is None
                                                   or len(self.mean_bone_lengths) != len(self.parents)):
            raise ValueError(f"layout {self.name}: mean_bone_lengths needs a tree and one length per joint")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """Undirected bones as (parent, child) pairs, used for drawing and graphs."""
        tree = () if self.parents is None else tuple(
            (p, c) for c, p in enumerate(self.parents) if p >= 0)
        return tree + self.extra_edges

    def index(self, joint_name: str) -> int:
        return self.joint_names.index(joint_name)

    def adjacency(self, self_loops: bool = False) -> np.ndarray:
        """Symmetric 0/1 adjacency matrix (N, N) of the bones."""
        adj = np.zeros((self.num_joints, self.num_joints), dtype=np.float32)
        for a, b in self.edges:
            adj[a, b] = adj[b, a] = 1.0
        if self_loops:
            adj += np.eye(self.num_joints, dtype=np.float32)
        return adj

    def flip_permutation(self) -> np.ndarray:
        """Index array that swaps every left joint with its right twin."""
        perm = np.arange(self.num_joints)
        for left, right in self.flip_pairs:
            perm[left], perm[right] = right, left
        return perm

    def mirror(self, poses: np.ndarray) -> np.ndarray:
        """Poses ``(..., J, C)`` mirrored about the camera's vertical plane: x negated, left and
        right joints swapped. Valid for screen-normalised 2D (x centred on 0) and camera-frame 3D."""
        mirrored = poses[..., self.flip_permutation(), :].copy()
        mirrored[..., 0] = -mirrored[..., 0]
        return mirrored

    def fill_missing(self, keypoints, valid):
        """Give every missing joint a stand-in position so a lifter always sees all joints.

        ``keypoints (..., J, C)`` and ``valid (..., J)`` bool, numpy arrays or torch tensors
        (the node fills one frame's people with it, the trainer a batch: both see the same
        input). A missing joint takes its nearest valid ancestor's position (a missing wrist
        sits on the elbow, a missing knee on the hip): a folded limb is a pose a lifter can
        read, unlike zeros or a far-off point. With no valid ancestor (the root itself
        missing) it takes the mean of the valid joints; with none valid nothing changes.
        """
        if self.parents is None:
            raise ValueError(f"layout {self.name} has no kinematic tree to fill missing joints from")
        if isinstance(keypoints, np.ndarray):
            where, stack = np.where, np.stack
        else:
            import torch
            where, stack = torch.where, torch.stack
        count = valid[..., None].sum(-2)                                   # (..., 1) valid joints
        mean = where(valid[..., None], keypoints, 0.0).sum(-2) / where(count > 0, count, 1)
        columns = []
        # Parents come before their children (checked in __post_init__), so one pass in joint
        # order hands each missing joint its nearest valid ancestor's (or the mean's) position.
        for joint, parent in enumerate(self.parents):
            stand_in = mean if parent < 0 else columns[parent]
            columns.append(where(valid[..., joint, None], keypoints[..., joint, :], stand_in))
        return where(count[..., None] > 0, stack(columns, -2), keypoints)

    def size_relative_to_mean(self, joints: np.ndarray) -> np.ndarray:
        """``(...)`` the size of each skeleton ``(..., J, 3)`` against the layout's mean body: the
        median over the bones of length / mean length. A median, so that one limb the lifter
        stretched or bent towards a wrong 2D joint cannot change it much. NaN for non-finite joints."""
        if self.mean_bone_lengths is None:
            raise ValueError(f"layout {self.name} has no mean bone lengths")
        joints = np.asarray(joints, dtype=np.float64)
        children = np.arange(1, self.num_joints)
        lengths = np.linalg.norm(joints[..., children, :] - joints[..., np.array(self.parents)[children], :], axis=-1)
        return np.median(lengths / np.asarray(self.mean_bone_lengths)[children], axis=-1)

    @property
    def left_joints(self) -> tuple[int, ...]:
        return tuple(left for left, _ in self.flip_pairs)

    @property
    def right_joints(self) -> tuple[int, ...]:
        return tuple(right for _, right in self.flip_pairs)


H36M_17 = JointLayout(
    name="h36m_17",
    joint_names=(
        "pelvis", "right_hip", "right_knee", "right_ankle",
        "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head",
        "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    flip_pairs=((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)),
    # Human3.6M's training subjects (S1, S5, S6, S7, S8; every 50th frame of every action), left
    # and right alike: a body of bone-length sum 4.15 m, about 1.7 m tall (S9: 4.33 m; S5: 4.00 m).
    mean_bone_lengths=(0.0, 0.1345, 0.4499, 0.4459, 0.1345, 0.4499, 0.4459,
                       0.2393, 0.2554, 0.1163, 0.1150,
                       0.1493, 0.2804, 0.2496, 0.1493, 0.2804, 0.2496),
)

# How tall H36M_17.mean_bone_lengths' body stands, rounded (what messages call "the mean adult")
MEAN_BODY_HEIGHT_M = 1.7

# What a person seen from the waist up has no 2D joints of (the image's bottom edge cuts them off;
# a COCO detector's pelvis is the mid-hips), in the layout's order.
H36M_LOWER_BODY = ("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")

# Indices of the 17 kept joints in the original 32-joint Human3.6M motion capture.
H36M_32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

COCO_17 = JointLayout(
    name="coco_17",
    joint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    parents=None,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    extra_edges=((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
                 (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16)),
)

LAYOUTS = {layout.name: layout for layout in (H36M_17, COCO_17)}

# Each H36M-17 joint as the mean of these COCO-17 joints (the convention every
# lifting codebase writes by hand: pelvis = mid-hips, thorax = mid-shoulders,
# spine = mid(pelvis, thorax), neck/nose = nose, head = mid-eyes).
_COCO_SOURCES_OF_H36M: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "right_hip": ("right_hip",),
    "right_knee": ("right_knee",),
    "right_ankle": ("right_ankle",),
    "left_hip": ("left_hip",),
    "left_knee": ("left_knee",),
    "left_ankle": ("left_ankle",),
    "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "thorax": ("left_shoulder", "right_shoulder"),
    "neck_nose": ("nose",),
    "head": ("left_eye", "right_eye"),
    "left_shoulder": ("left_shoulder",),
    "left_elbow": ("left_elbow",),
    "left_wrist": ("left_wrist",),
    "right_shoulder": ("right_shoulder",),
    "right_elbow": ("right_elbow",),
    "right_wrist": ("right_wrist",),
}


def _source_table(target: JointLayout, source: JointLayout,
                  sources_by_name: dict[str, tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(s) for s in sources_by_name.values())
    index = np.zeros((target.num_joints, width), dtype=np.int64)
    valid = np.zeros((target.num_joints, width), dtype=bool)
    for t, name in enumerate(target.joint_names):
        for k, src in enumerate(sources_by_name[name]):
            index[t, k] = source.index(src)
            valid[t, k] = True
    return index, valid


_COCO_TO_H36M_INDEX, _COCO_TO_H36M_VALID = _source_table(H36M_17, COCO_17, _COCO_SOURCES_OF_H36M)


def coco17_to_h36m17(keypoints: np.ndarray, scores: np.ndarray | None = None,
                     min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Convert COCO-17 keypoints ``(..., 17, 2|3)`` to H36M-17.

    A source joint is missing when any coordinate is NaN or its score is at or
    below ``min_score`` (when scores are given). A target joint is missing when
    any of its sources is: its coordinates are NaN and its score 0. A present
    target's score is the lowest of its sources' scores.

    Returns ``(keypoints (..., 17, D), scores (..., 17))``.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape[-2] != COCO_17.num_joints:
        raise ValueError(f"expected {COCO_17.num_joints} COCO joints, got shape {keypoints.shape}")
    if scores is None:
        scores = np.ones(keypoints.shape[:-1])
    scores = np.asarray(scores, dtype=np.float64)
    missing = np.isnan(keypoints).any(axis=-1) | ~(scores > min_score)

    gathered = keypoints[..., _COCO_TO_H36M_INDEX, :]            # (..., 17, W, D)
    gathered_missing = missing[..., _COCO_TO_H36M_INDEX]         # (..., 17, W)
    gathered_scores = scores[..., _COCO_TO_H36M_INDEX]
    valid = _COCO_TO_H36M_VALID
    count = valid.sum(axis=1)[:, None]
    summed = np.where(valid[..., None], np.nan_to_num(gathered), 0.0).sum(axis=-2)
    out = summed / count
    target_missing = (gathered_missing & valid).any(axis=-1)
    out[target_missing] = np.nan
    out_scores = np.where(valid, gathered_scores, np.inf).min(axis=-1)
    out_scores[target_missing] = 0.0
    return out, out_scores


def convert_to_h36m17(layout_name: str, keypoints: np.ndarray,
                      scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bring keypoints of any known layout into H36M-17 order (the model's input)."""
    if layout_name == H36M_17.name:
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.shape[-2] != H36M_17.num_joints:
            raise ValueError(f"expected {H36M_17.num_joints} H36M joints, got shape {keypoints.shape}")
        if scores is None:
            scores = np.ones(keypoints.shape[:-1])
        scores = np.asarray(scores, dtype=np.float64)
        missing = np.isnan(keypoints).any(axis=-1)
        scores = np.where(missing, 0.0, scores)
        return keypoints, scores
    if layout_name == COCO_17.name:
        return coco17_to_h36m17(keypoints, scores)
    raise ValueError(f"unknown joint layout {layout_name!r}; known: {sorted(LAYOUTS)}")
