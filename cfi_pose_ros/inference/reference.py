"""Checking a compiled model against the float32 PyTorch reference on realistic inputs.

Every backend other than ``torch`` runs this before its first use: a new
ONNX Runtime session, every CUDA graph and every TensorRT engine (freshly built
or loaded from the cache) sees the same deterministic set of people, padded
to each of its fixed batch sizes, and must stay within the precision's
tolerance (:data:`~.base.TOLERANCES`) of ``CFINet`` in float32 on the CPU.
The ``torch`` backend runs it too, against itself: the part every backend needs
is that the model's own output on plausible people is finite and a skeleton (not every
person lifted to one point, or to one skeleton whatever the input). When it is not,
the weights are unusable on any backend, and :class:`~..weights.WeightsError`
says so (``create_lifter``'s ``auto`` then stops instead of trying the next
backend, which would be no better).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..camera import normalize_screen
from ..model import CFINet
from ..skeleton import H36M_17, MEAN_BODY_HEIGHT_M
from ..weights import WeightsError
from .base import ReferenceMismatch

# A relaxed standing H36M-17 skeleton in metres, body frame (x left, y up, z forward),
# pelvis at the origin, joint order of skeleton.H36M_17.
_STANDING = np.array([
    [0.00, 0.00, 0.00], [-0.13, 0.00, 0.00], [-0.14, -0.45, 0.02], [-0.15, -0.88, -0.03],
    [0.13, 0.00, 0.00], [0.14, -0.45, 0.02], [0.15, -0.88, -0.03],
    [0.00, 0.23, 0.00], [0.00, 0.48, 0.01], [0.00, 0.59, 0.07], [0.00, 0.70, 0.02],
    [0.15, 0.45, 0.00], [0.20, 0.18, 0.02], [0.22, -0.06, 0.06],
    [-0.15, 0.45, 0.00], [-0.20, 0.18, 0.02], [-0.22, -0.06, 0.06],
])
_LIMBS = ((11, 12, 13), (14, 15, 16), (1, 2, 3), (4, 5, 6))   # shoulder/hip, elbow/knee, wrist/ankle


def reference_inputs(count: int = 32, seed: int = 0) -> np.ndarray:
    """``count`` plausible people as the model sees them: ``(count, 17, 2)`` float32, screen-normalised.

    Standing skeletons with random stature, limb swings, yaw, a few centimetres
    of joint noise, placed 3-8 m in front of a 1280x720 camera (f = 900-1400 px)
    and projected. Deterministic for a seed; no dataset needed.
    """
    rng = np.random.default_rng(seed)
    poses = np.repeat(_STANDING[None], count, axis=0) * rng.uniform(0.85, 1.12, (count, 1, 1))
    for root, middle, end in _LIMBS:       # swing each limb about its root in the sagittal plane
        angle = rng.uniform(-1.2, 1.2, count)
        c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
        for joint in (middle, end):
            rel = poses[:, joint] - poses[:, root]
            y, z = rel[:, 1:2], rel[:, 2:3]
            poses[:, joint, 1:] = poses[:, root, 1:] + np.concatenate([c * y - s * z, s * y + c * z], axis=1)
    poses += rng.normal(0.0, 0.02, poses.shape)
    yaw = rng.uniform(0, 2 * np.pi, count)
    c, s = np.cos(yaw), np.sin(yaw)
    x = c[:, None] * poses[..., 0] + s[:, None] * poses[..., 2]
    z = -s[:, None] * poses[..., 0] + c[:, None] * poses[..., 2]
    camera = np.stack([-x, -poses[..., 1], z], axis=-1)          # camera frame: x right, y down, z forward
    depth = rng.uniform(3.0, 8.0, count)
    camera += np.stack([rng.uniform(-0.3, 0.3, count) * depth, rng.uniform(-0.2, 0.3, count), depth], axis=-1)[:, None]
    focal = rng.uniform(900.0, 1400.0, count)[:, None, None]
    width, height = 1280.0, 720.0
    pixels = camera[..., :2] / camera[..., 2:3] * focal + np.array([width / 2, height / 2])
    return normalize_screen(pixels, width, height).astype(np.float32)


def reference_outputs(model: CFINet, keypoints: np.ndarray) -> np.ndarray:
    """The float32 PyTorch result for ``keypoints`` (the model must be float32 and in eval mode)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(keypoints, np.float32)).to(device)
        return model(x).float().cpu().numpy()


# Skeletons whose joints all lie this close together (or that differ by no more from person to
# person) are no lifting: a freshly initialised model's span 10 cm and more and differ by 5 cm.
DEGENERATE_EXTENT_M = 0.001


def output_extent(model: CFINet) -> tuple[float, float]:
    """``(extent, spread)`` in metres of what ``model`` lifts the reference people to: the largest
    distance of a joint from its skeleton's centroid, and the largest distance of a joint of one
    person's centred skeleton from the same joint of another's."""
    lifted = reference_outputs(model, reference_inputs(8, seed=0)).astype(np.float64)
    centred = lifted - lifted.mean(axis=1, keepdims=True)
    extent = float(np.linalg.norm(centred, axis=-1).max())
    spread = float(np.linalg.norm(centred - centred[:1], axis=-1).max())
    return extent, spread


def degenerate_output(model: CFINet) -> str | None:
    """Why ``model``'s (finite) output cannot be anyone's skeleton, or ``None``. Zeroed weights (or a
    collapsed training run) are finite and pass every check of the file, and the node published
    every person as 17 joints at one point."""
    extent, spread = output_extent(model)
    if extent < DEGENERATE_EXTENT_M:
        return (f"these weights lift every pose to one point (every joint within "
                f"{DEGENERATE_EXTENT_M * 1000:g} mm of the others): untrained or zeroed")
    if spread < DEGENERATE_EXTENT_M:
        return (f"these weights lift every pose to the same skeleton (no joint moves "
                f"{DEGENERATE_EXTENT_M * 1000:g} mm from one person to another): they do not read their input")
    return None


# How large a lifted person may be against the mean adult (H36M_17.mean_bone_lengths, about 1.7 m
# tall) and still be a person in metres: the range body_size_prior takes (a body 0.42 to 5.1 m
# tall). The packaged weights lift the reference people (adults of 0.85-1.12 times that size) to
# 0.88-0.95 of it; weights trained in millimetres (or centimetres, decimetres) lift them 1000
# (100, 10) times that, and the node places every person by that size.
PERSON_SIZE_RANGE = (0.25, 3.0)
# The head of a standing reference person stands at least this fraction of the lifted body's
# height above its ankles (the packaged weights: 0.7-0.85). Less, or below them, is no upright
# person in the camera frame (y down): weights whose output axes are negated or y-up.
MIN_UPRIGHT_FRACTION = 0.25
# Up the body, the ankles (their mean), pelvis, thorax and head each stand at least this fraction
# of the lifted body's height above the one before (the packaged weights' smallest step, thorax to
# head: 0.16 m, 0.1 of it; models trained 30 to 1200 steps on synthetic people: 0.16-0.2 m). One
# below the one before is output joints in another order (head and pelvis swapped: the thorax
# 0.16 m below the pelvis, the head 0.44 m below the thorax), which the head above the ankles
# alone does not see.
MIN_SPINE_STEP_FRACTION = 0.02
# A left joint of the reference people (H36M_17.flip_pairs) whose 2D input lies clearly to one side
# of its right twin (this far apart in the screen-normalised x, 1/50 of the image width) is lifted
# to that side of it (camera x) for at least this fraction of them, for every pair: the packaged
# weights all of them; models trained 30 and 93 steps on synthetic people at least 0.34 and 0.83
# of them. Left and right output joints swapped, or the output's x negated, lift none of them so:
# the node then publishes the left wrist where the right one is.
CLEAR_SIDE_SEPARATION = 0.02
MIN_SIDE_AGREEMENT = 0.2
# How far behind its face (the nose ahead of the mid-point of thorax and head, along the facing
# direction the hips, shoulders and spine give: hip and shoulder axes, left minus right, cross the
# spine, pelvis to thorax) a lifted person may have the nose, as a fraction of the body's height
# (median of the reference people). The packaged weights put it 54-60 mm ahead (3.5 % of the
# 1.55 m they lift the reference people to); weights whose depth axis is negated, or that read and
# write the layout's joints with left and right swapped, lift mirror images: 57 mm behind. Models
# trained 30 to 1200 steps on synthetic people: 3 mm behind to 32 mm ahead. A mirror image is what
# the 2D input cannot tell (its projection is the same), so only the body's own handedness can.
MAX_NOSE_BEHIND_FRACTION = 0.0125
# Every pair of joints of a lifted person points, seen from the camera (x, y), the way its 2D input
# does: the cosine of the two differences summed over the reference people
# (joint_pair_direction_cosines) is above this for every pair. Weights whose output has two joints
# swapped (a wrong joint order in an export, or in the 3D poses trained on) fit the 2D input better
# with the two swapped back, and the swapped pair's cosine is exactly minus the unswapped one's.
# The packaged weights' smallest is 0.91-0.94 (thorax to a shoulder, pelvis to a hip), so every
# one of their 136 single swaps gives -0.91 or less; models trained 30 steps on synthetic people
# (seeds 3, 5, 7, 11, 13) give -0.14 to 0.08 at worst (their x, y barely follow the input yet),
# 93 steps 0.49-0.53, 1200 steps 0.90. The spine's order and the flip pairs' sides did not see a
# swap along a limb (elbow and wrist, hip and knee), of the neck and nose, or across the body (a
# hip and the other side's knee): 92 of the 136 single swaps of the d128 weights passed them.
MIN_PAIR_DIRECTION_COSINE = -0.5
_PAIRS = tuple((a, b) for a in range(H36M_17.num_joints) for b in range(a + 1, H36M_17.num_joints))


def joint_pair_direction_cosines(inputs: np.ndarray, lifted: np.ndarray) -> np.ndarray:
    """Per pair ``(a, b)`` of joints (``_PAIRS``): how the ``lifted`` people's x, y (camera frame)
    point from ``b`` to ``a`` against how their 2D ``inputs`` (screen-normalised) do, as the cosine
    of the two differences summed over the people, each person (input and lifted x, y alike)
    centred on the mean of its joints and scaled to unit RMS distance from it: what the camera sees
    of the lift up to perspective, every person counting alike, no unit or distance mattering. The
    lifted person so placed over its input is farther from it at ``a`` and ``b`` (summed squared
    distances) swapped than as lifted by twice the numerator: a negative cosine is a pair that fits
    the input better swapped. Centre and scale take every joint alike, so swapping two output joints
    negates exactly their pair's cosine."""
    def normalised(points):
        centred = points - points.mean(axis=1, keepdims=True)
        return centred / np.sqrt(np.mean(np.sum(centred ** 2, axis=-1), axis=1))[:, None, None]

    first, second = np.array(_PAIRS).T
    given, got = normalised(inputs[..., :2]), normalised(lifted[..., :2])
    given, got = given[:, first] - given[:, second], got[:, first] - got[:, second]
    return (np.sum(given * got, axis=(0, 2))
            / np.sqrt(np.sum(given ** 2, axis=(0, 2)) * np.sum(got ** 2, axis=(0, 2))))


def reference_person_measures(lift: Callable[[np.ndarray], np.ndarray]) -> dict:
    """What :func:`not_people_in_metres` measures of ``lift``'s reference people (medians over the 32
    people of :func:`reference_inputs`): ``size`` (times the mean adult's bones), ``height`` (m),
    ``head_above_ankles`` (m), ``spine_steps`` (m each of ankles to pelvis, pelvis to thorax, thorax
    to head), ``pair_cosine`` and ``pair`` (the smallest of :func:`joint_pair_direction_cosines` and
    its two joints), ``side_agreement`` (per left joint of ``H36M_17.flip_pairs``: the fraction of the people
    whose pair is clearly apart in the 2D input that the lift puts on the same side, ``nan`` where
    none is; ``side_people``: how many are), ``nose_ahead`` (m, negative: behind) and ``people``.
    Non-finite output gives ``nan``."""
    inputs = reference_inputs(32, seed=0).astype(np.float64)
    lifted = np.asarray(lift(inputs.astype(np.float32)), dtype=np.float64)
    index = H36M_17.index
    left, right = np.array(H36M_17.left_joints), np.array(H36M_17.right_joints)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        size = float(np.median(H36M_17.size_relative_to_mean(lifted)))
        ankles_y = lifted[:, (index("right_ankle"), index("left_ankle")), 1].mean(axis=1)
        spine_y = [ankles_y] + [lifted[:, index(name), 1] for name in ("pelvis", "thorax", "head")]
        spine_steps = [float(np.median(below - above)) for below, above in zip(spine_y, spine_y[1:])]
        head_above_ankles = float(np.median(ankles_y - lifted[:, index("head"), 1]))
        input_apart = inputs[:, left, 0] - inputs[:, right, 0]
        lifted_apart = lifted[:, left, 0] - lifted[:, right, 0]
        clear = np.abs(input_apart) > CLEAR_SIDE_SEPARATION
        same_side = np.sign(input_apart) == np.sign(lifted_apart)
        side_agreement = [float(np.mean(same_side[clear[:, k], k])) if clear[:, k].any() else float("nan")
                          for k in range(len(left))]
        side_people = [int(count) for count in clear.sum(axis=0)]
        across = (lifted[:, index("left_hip")] - lifted[:, index("right_hip")]
                  + lifted[:, index("left_shoulder")] - lifted[:, index("right_shoulder")])
        up = lifted[:, index("thorax")] - lifted[:, index("pelvis")]
        facing = np.cross(across, up)    # left x up = forward in any right-handed frame (the camera's is)
        facing /= np.linalg.norm(facing, axis=1, keepdims=True)
        face = (lifted[:, index("thorax")] + lifted[:, index("head")]) / 2
        nose_ahead = float(np.median(np.sum((lifted[:, index("neck_nose")] - face) * facing, axis=1)))
        pair_cosines = joint_pair_direction_cosines(inputs, lifted)
    worst = int(np.argmin(np.nan_to_num(pair_cosines, nan=-np.inf)))
    return {"size": size, "height": size * MEAN_BODY_HEIGHT_M, "head_above_ankles": head_above_ankles,
            "spine_steps": spine_steps, "side_agreement": side_agreement, "side_people": side_people,
            "nose_ahead": nose_ahead, "pair_cosine": float(pair_cosines[worst]), "pair": _PAIRS[worst],
            "people": len(lifted)}


def not_people_in_metres(lift: Callable[[np.ndarray], np.ndarray]) -> str | None:
    """Why ``lift`` (screen-normalised ``(N, 17, 2)`` -> ``(N, 17, 3)``, a lifter's or a model's) does
    not lift standing adults to upright people in metres in the camera frame, or ``None``: the
    reference people (:func:`reference_inputs`, :func:`reference_person_measures`) must come out of
    a size in :data:`PERSON_SIZE_RANGE` times the mean adult's (the median over them of the median
    bone length ratio), with the head above the ankles, ankles, pelvis, thorax and head in that
    order up the body, each left joint on the side of its right twin the 2D input puts it, no two
    joints that fit the 2D input better swapped (:data:`MIN_PAIR_DIRECTION_COSINE`), and not as
    mirror images (the nose behind the face). What a node that publishes poses needs; a
    freshly initialised model often fails it (its skeletons are jumbled points, as often head down
    as up, some 0.3 of an adult's size), so it is not part of the start-up check every lifter runs
    (tests and benchmarks time and check such models)."""
    measured = reference_person_measures(lift)
    size, height, people = measured["size"], measured["height"], measured["people"]
    head_above_ankles = measured["head_above_ankles"]
    if not np.isfinite(size) or not np.isfinite(head_above_ankles):
        return "they lift standing adults to skeletons that are not finite"
    low, high = PERSON_SIZE_RANGE
    if not low <= size <= high:
        return (f"they lift standing adults to skeletons {height:.4g} m tall ({size:.3g} "
                f"times the mean adult's bones, median of {people} people of 0.85-1.12 times; a person is "
                f"{low:g}-{high:g} times): the output is not people in metres (weights trained in millimetres "
                f"lift them 1000 times too large)")
    if head_above_ankles < MIN_UPRIGHT_FRACTION * height:
        where = (f"{-head_above_ankles:.2f} m below" if head_above_ankles < 0
                 else f"only {head_above_ankles:.2f} m above")
        return (f"they lift standing adults with the head {where} the ankles (median of {people} people, "
                f"skeletons {height:.2f} m tall): the output is not upright people in the camera frame "
                f"(x right, y down, z forward); negated or y-up output axes?")
    spine = ("ankles", "pelvis", "thorax", "head")
    for below, above, step in zip(spine, spine[1:], measured["spine_steps"]):
        if not step >= MIN_SPINE_STEP_FRACTION * height:
            where = f"{-step:.2f} m below" if step < 0 else f"only {step:.2f} m above"
            return (f"they lift standing adults with the {above} {where} the {below} (median of {people} "
                    f"people, skeletons {height:.2f} m tall; ankles, pelvis, thorax and head stand in that "
                    f"order up a person): the output joints are not in {H36M_17.name}'s order")
    for (left, right), agreement, apart in zip(H36M_17.flip_pairs, measured["side_agreement"],
                                               measured["side_people"]):
        if agreement < MIN_SIDE_AGREEMENT:
            return (f"they lift standing adults with the {H36M_17.joint_names[left]} on the other side of the "
                    f"{H36M_17.joint_names[right]} than their 2D input has it: {1 - agreement:.0%} of the {apart} "
                    f"people whose two are apart in the image (refused past {1 - MIN_SIDE_AGREEMENT:.0%}): left "
                    f"and right joints swapped (in the output, or in the input the weights expect), or the "
                    f"output's x negated?")
    if not measured["pair_cosine"] >= MIN_PAIR_DIRECTION_COSINE:
        first, second = (H36M_17.joint_names[joint] for joint in measured["pair"])
        return (f"they lift standing adults with the {first} and {second} swapped: seen from the camera, the "
                f"direction from the lifted {second} to the {first} is against their 2D input's (cosine "
                f"{measured['pair_cosine']:.2f} summed over {people} people, refused below "
                f"{MIN_PAIR_DIRECTION_COSINE:g}; swapping two joints negates it): the output joints are not in "
                f"{H36M_17.name}'s order (a wrong joint order in the export, or in the 3D poses trained on?)")
    nose_ahead = measured["nose_ahead"]
    if not nose_ahead >= -MAX_NOSE_BEHIND_FRACTION * height:
        return (f"they lift standing adults as mirror images of themselves: the nose {-nose_ahead * 1000:.0f} mm "
                f"behind the face, where the hips, shoulders and spine say the person faces (median of {people} "
                f"people, skeletons {height:.2f} m tall; a person's is ahead): the output's depth axis negated, "
                f"or the weights read and write left and right joints swapped?")
    return None


def check_lifts_people_in_metres(lift: Callable[[np.ndarray], np.ndarray], weights) -> None:
    """:class:`~..weights.WeightsError` naming ``weights`` where :func:`not_people_in_metres` finds
    a reason."""
    problem = not_people_in_metres(lift)
    if problem:
        raise WeightsError(f"{weights}: these weights cannot be used to publish people: {problem}")


def check_against_reference(run_fixed: Callable[[np.ndarray], np.ndarray], reference: CFINet,
                            batch_sizes: tuple[int, ...], tolerance: float, label: str,
                            inputs: np.ndarray | None = None) -> float:
    """Run every fixed batch size through ``run_fixed`` and compare with ``reference``.

    Returns the largest absolute difference (metres); raises
    :class:`ReferenceMismatch` naming ``label``, the batch size, the difference
    and the tolerance when it is exceeded (or when the output is not finite),
    and :class:`~..weights.WeightsError` when the reference itself is not finite, or lifts every
    person to one point or to one skeleton (:func:`degenerate_output`).
    """
    if inputs is None:
        inputs = reference_inputs(max(batch_sizes), seed=1234)
    expected = reference_outputs(reference, inputs)
    if not np.all(np.isfinite(expected)):
        bad = int(np.sum(~np.isfinite(expected).all(axis=(1, 2))))
        raise WeightsError(f"the model itself (PyTorch float32) gives NaN or inf for {bad} of {len(expected)} "
                           f"plausible people: these weights cannot be used on any backend")
    degenerate = degenerate_output(reference)
    if degenerate:
        raise WeightsError(degenerate)
    worst = 0.0
    for size in batch_sizes:
        rows = np.resize(np.arange(len(inputs)), size)       # cycles when a size exceeds the input count
        got = np.asarray(run_fixed(np.ascontiguousarray(inputs[rows])), dtype=np.float32)
        if got.shape != expected[rows].shape:
            raise ReferenceMismatch(f"{label}: batch size {size} returned shape {got.shape}, "
                                    f"expected {expected[rows].shape}")
        if not np.all(np.isfinite(got)):
            raise ReferenceMismatch(f"{label}: batch size {size} returned NaN or inf")
        diff = float(np.max(np.abs(got - expected[rows])))
        worst = max(worst, diff)
        if diff > tolerance:
            # in metres, as every backend rounds: outputs of kilometres (weights trained in
            # millimetres) round past it in float32 alone, and "differs by 0.000458 m" then read
            # as a broken backend, the real fault left unsaid
            reach = float(np.max(np.abs(expected[rows])))
            raise ReferenceMismatch(f"{label}: batch size {size} differs from the PyTorch float32 "
                                    f"reference by {diff:.3g} m (tolerance {tolerance:g} m), "
                                    f"{diff / reach if reach > 0 else float('inf'):.2g} of the {reach:.3g} m "
                                    f"its coordinates reach"
                                    + (" (are these weights' outputs in metres?)" if reach > 100.0 else "")
                                    + "; refusing to use it")
    return worst
