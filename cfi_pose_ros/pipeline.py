"""The lifting pipeline, ROS-free: 2D people of one frame in, 3D people out.

Steps for one frame (all people at once):

1. validate each person (a malformed one is dropped with a reason; the others go on),
2. convert to H36M-17; with camera intrinsics move every joint to where an ideal pinhole camera
   with square pixels sees it (the lens distortion ``Frame2D.lens`` undone, and a camera with
   fx != fy or skew replaced by :func:`.camera.square_pixel_camera`'s, the kind of camera the
   lifter learned from; everything after this sees those pixels and that camera's image size;
   an aligned depth image is still read at the detected ones); joints far outside the image (more
   than ``image_margin`` times the image's width or height beyond its border: no detector puts
   a real joint there, and the lifter never saw such input) or that the lens model cannot undo
   are missing, like low-score ones; fill missing joints so the model always sees 17,
3. normalise by the image's own size and lift every person in one batched call,
4. with camera intrinsics, solve each person's root translation (keypoints in metres
   in the camera optical frame; robust to single bad joints, see :mod:`.root_solver`);
   a person whose worst joint does not fit the solved pose is lifted again without it, and
   if that lift confirms the joint is wrong (it puts it far from where it was detected), the
   joint is published with score 0 and the new lift stands; a person with missing joints is
   lifted once more with them placed where the lift put them; else keep root-relative,
5. body pose (pelvis position, facing) and optional One-Euro smoothing per track id and input
   ``frame_id`` (each camera on the topic has its own tracks and timeline: another camera's history
   is in another frame, and its people may have the same ids).

Nothing non-finite is ever returned: a person whose lifted joints, position or
orientation are not all finite is dropped (``non_finite_output``), whatever the
weights or the input did.

The ROS node only converts messages to :class:`Frame2D` and :class:`LiftedPerson`
back to messages.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from .body_pose import body_poses
from .camera import (LensDistortion, clamp_person_position, clamp_person_scale,
                     lifter_input_in_reference_view, normalize_screen, square_pixel_camera, undistort_pixels)
from .depth import root_translation_from_depth
from .frame_ids import shows_nothing
from .root_solver import (outlier_joints, reproject, scaled_reprojection_errors, seen_joints_in_front,
                          solve_root_translation, validate_camera_matrix)
from .skeleton import H36M_17, LAYOUTS, convert_to_h36m17

ROOT_RELATIVE, ROOT_FROM_INTRINSICS, ROOT_FROM_DEPTH = 0, 1, 2

# Trackers name people with counters or UUIDs (36 characters). The node keeps state per id (the
# smoother's filters, the TF frames' gate) and copies it into every output: ids of megabytes, one
# per person of every frame, would be kept up to max_tracks times and republished.
MAX_TRACK_ID_LENGTH = 256
# A person whose valid joints fit in a box smaller than this (its longer side, pixels) is no
# detection: 17 joints cannot be told apart in it. The root solve places a person at the distance
# where the body prior is that small, so one shrunk to a millionth of its size was published
# (poses, markers, /tf) 10^9 m away; at 2 px a 1.7 m person is 850 m away for f = 1000 px.
MIN_PERSON_EXTENT_PX = 2.0


@dataclass
class Person2D:
    keypoints: np.ndarray          # (K, 2) pixels, NaN = missing
    scores: np.ndarray             # (K,) in [0, 1]
    layout: str                    # a name in skeleton.LAYOUTS (or anything, to be rejected)
    track_id: str = ""             # "" = untracked; one that shows nothing becomes ""
    score: float = 1.0

    def __post_init__(self) -> None:
        # An id that shows nothing (a detector's "  ", a zero-width space) names no track: see
        # shows_nothing
        if shows_nothing(self.track_id):
            self.track_id = ""


@dataclass
class Frame2D:
    people: list[Person2D]
    image_width: float
    image_height: float
    stamp: float = 0.0                       # seconds, for smoothing; <= 0: not stamped
    camera_matrix: np.ndarray | None = None  # (3, 3) K, None = unknown
    # the distortion of the image the keypoints are pixels of (with camera_matrix its K): undone
    # before anything else sees them; None = none (a pinhole camera, a rectified image)
    lens: LensDistortion | None = None
    depth: np.ndarray | None = None          # (H, W) depth registered to the image: metres, or uint16 mm
    # the camera frame the keypoints are in (tf2's name of header.frame_id): another one is another
    # camera (or a restarted driver's other frame), whose people the smoother keeps apart
    frame_id: str = ""


@dataclass
class LiftedPerson:
    track_id: str
    score: float
    keypoints: np.ndarray          # (17, 3) metres, camera frame; root-relative or absolute
    keypoint_scores: np.ndarray    # (17,)
    root_source: int
    position: np.ndarray           # (3,) pelvis
    orientation_xyzw: np.ndarray   # (4,) body frame (x forward, y left, z up) in the camera frame
    source_index: int              # index of the person in the input frame


@dataclass
class FrameResult:
    people: list[LiftedPerson]
    dropped: Counter = field(default_factory=Counter)
    # malformed people: drop reason -> what was wrong with the first of them, in words (the log's)
    problems: dict[str, str] = field(default_factory=dict)


# A person's depth reading not used for the root (see depth_agrees_with_image): counted, not logged
# (an arm or an object between the sensor and the pelvis is routine in a real scene)
DEPTH_DISAGREES = "depth_disagrees"
# Farthest from the camera a person is placed (pelvis, metres). The root solve puts a person where the
# body prior fits the pixels, however far: validate_camera_matrix accepts a telescope's focal length
# (up to 1000 image widths, 1e6 px), and with it a person of a few pixels was published 700 km away,
# as if placed. A person's joints are only told apart over tens of pixels: for a robot's camera
# (focal length 500-2000 px) that is within about 100 m, and even 1000 widths of a VGA image put a
# 1.7 m body 1 km away at 1000 px. A person solved farther keeps the root-relative pose, counted.
MAX_PLACEMENT_DISTANCE_M = 1000.0
TOO_FAR_TO_PLACE = "too_far_to_place"


def depth_agrees_with_image(depth_translations: np.ndarray, solved_translations: np.ndarray, solved: np.ndarray,
                            root_relative: np.ndarray, seen: np.ndarray, agreement: float) -> np.ndarray:
    """``(N,)`` bool: whether each person's root from the depth image may replace the one the image
    gives: every seen joint then lies in front of the camera, and where the solve from the
    intrinsics placed the person, the depth is within a factor ``agreement`` of its depth. The
    window read at the pelvis can fall on something else: an object 0.12 m from the sensor placed a
    person the image puts 5.1 m away at 0.22 m, two joints behind the camera; a wall behind at 20 m
    (3.9 times as far). A factor of 2 leaves the body-size prior's error (a child of 1.1 m solved
    as an adult of 1.7 m: 1.5) to the depth to correct."""
    depth_z, solved_z = depth_translations[:, 2], solved_translations[:, 2]
    with np.errstate(invalid="ignore"):
        near_solve = ~solved | ((depth_z * agreement >= solved_z) & (depth_z <= agreement * solved_z))
    return near_solve & seen_joints_in_front(root_relative, depth_translations, seen)


@dataclass(frozen=True)
class PipelineConfig:
    min_keypoint_score: float = 0.05   # a joint at or below this is treated as missing
    min_valid_joints: int = 8          # fewer valid H36M joints than this: drop the person
    max_people: int = 64               # per frame; the lowest-scoring extra people are dropped
    solve_root: bool = True
    depth_window: int = 5              # pixels around the pelvis and hips sampled in the depth image
    depth_body_offset: float = 0.10    # metres from the body surface the sensor sees to the pelvis joint
    # A depth reading is used for a person's root only within this factor of the depth the image gives
    # (the solve from the intrinsics and the body-size prior): see depth_agrees_with_image
    depth_agreement: float = 2.0
    # A joint more than this fraction of the image's width (x) or height (y) outside the image is
    # missing; a person left with fewer than min_valid_joints is dropped as out_of_image. Half the
    # image leaves room for the joints detectors extrapolate past the border (a cut-off foot, a
    # crop that extends beyond the frame) and none for 1e6 px or 1e30 coordinates.
    image_margin: float = 0.5
    # People smaller or larger in the image than the training data's people are zoomed about
    # their pelvis into the lifter's input domain's person_scale_range before the lift (see
    # camera.LifterInputDomain and camera.H36M_PERSON_SCALE_RANGE)
    person_scale_clamp: bool = True
    # A person is lifted again without its worst-fitting joint when that joint's reprojection
    # error after the robust root solve is past relift_threshold times the person's residual
    # scale (1.4826 x MAD, as in the solve), and the rejection stands only if the lift made
    # without the joint misses it by relift_confirm scales (None: every candidate is rejected).
    # The threshold is lower than the solve's own Tukey cut-off (4.685): a lifter may bend
    # towards a wrong joint until it fits half-way. On its own, 2.0 catches a foot moved 100 px
    # that 3.0 misses (the worst depth change over benchmarks/bench_root_solver.py's sweep:
    # 5.0 % instead of 6.7 %) but also rejects a good shoulder of a real MoveNet detection
    # (test/test_camera_node.py's H36M frame: 73 -> 94 mm MPJPE). The lift without the joint misses
    # that shoulder by 5.4 scales and the moved foot by 7-8; joints moved 100 px are missed by
    # 15 or more in all but 10 of the sweep's 3990 candidates, the clean clip's 7 candidates
    # by less than 4.
    relift_threshold: float = 2.0
    relift_confirm: float | None = 6.0
    # With camera intrinsics, each lifted skeleton is scaled to this times the mean adult body
    # (H36M_17.mean_bone_lengths, about 1.7 m tall) before it is placed, so its depth follows
    # from that size; 0 keeps the size the lifter gives. A monocular lifter cannot see a person's
    # size, and the size it gives swings with the 2D input: one foot moved 100 px made nearly
    # every bone of the shipped (D=256) weights' skeleton 3-12 % shorter and the person 6 % closer.
    # The price: a person of another size is placed off by their size ratio (the demo clip's S9,
    # 4 % larger than the mean, reads 3.9 % short; with the lifter's own size 1.9 % short) and the
    # published skeleton has the prior's size. 0.8 suits children, 1.05 tall adults.
    body_size_prior: float = 1.0
    # Lift people with missing joints once more, each missing joint placed where the first lift
    # (and root solve) put it rather than on its ancestor (see _impute_missing_joints). Needs a
    # solved root, so only with camera intrinsics.
    impute_missing_joints: bool = True
    # With camera intrinsics, the lifter sees each person as Human3.6M's camera would see the same
    # rays, turned towards people far off its axis (camera.reference_view; as far as the lifter's
    # input domain's pelvis_angles_deg), not as pixels over this
    # image's width: the pose it reads then depends neither on the lens, the resolution nor a region
    # of interest, nor much on how far off the axis the person stands.
    lift_in_reference_camera: bool = True


def person_problem(person: Person2D) -> tuple[str, str] | None:
    """``(drop reason, what is wrong in words)`` for a malformed person, or None when it can be lifted."""
    layout = LAYOUTS.get(person.layout)
    if layout is None:
        return "unknown_layout", f"layout {person.layout} is none of {', '.join(LAYOUTS)}"
    kp = np.asarray(person.keypoints, dtype=np.float64)
    scores = np.asarray(person.scores, dtype=np.float64)
    if kp.shape != (layout.num_joints, 2) or scores.shape != (layout.num_joints,):
        return "wrong_keypoint_count", (f"{len(kp)} keypoints and {scores.size} scores, {layout.name} has "
                                        f"{layout.num_joints}")
    if np.isinf(kp).any():
        joint = int(np.flatnonzero(np.isinf(kp).any(axis=1))[0])
        return "non_finite_coordinates", (f"keypoint {joint} ({layout.joint_names[joint]}) at "
                                          f"{kp[joint].tolist()} (NaN marks a missing joint, infinity none)")
    bad_scores = ~((scores >= 0.0) & (scores <= 1.0))     # the comparisons also reject NaN
    if bad_scores.any():
        joint = int(np.flatnonzero(bad_scores)[0])
        return "score_out_of_range", (f"keypoint {joint} ({layout.joint_names[joint]}) has score "
                                      f"{scores[joint]:g}, not in [0, 1]")
    if not 0.0 <= person.score <= 1.0:
        return "score_out_of_range", f"the person's score {person.score:g} is not in [0, 1]"
    if len(person.track_id) > MAX_TRACK_ID_LENGTH:
        return "track_id_too_long", f"a track id of {len(person.track_id)} characters (at most {MAX_TRACK_ID_LENGTH})"
    return None


def check_person(person: Person2D) -> str | None:
    """The drop reason for a malformed person, or None when it can be lifted."""
    problem = person_problem(person)
    return problem and problem[0]


def inside_image(keypoints: np.ndarray, width: float, height: float, margin: float) -> np.ndarray:
    """``(..., J)`` bool: the joint lies within ``margin`` x the image size of the image (NaN: False)."""
    x, y = keypoints[..., 0], keypoints[..., 1]
    with np.errstate(invalid="ignore"):
        return ((x >= -margin * width) & (x <= (1.0 + margin) * width)
                & (y >= -margin * height) & (y <= (1.0 + margin) * height))


class LiftingPipeline:
    """Holds the lifter and the per-track state (smoothing) across frames."""

    def __init__(self, lifter, config: PipelineConfig = PipelineConfig(), smoother=None):
        self.lifter = lifter
        self.config = config
        self.smoother = smoother

    def _lift(self, pixels: np.ndarray, frame: Frame2D, to_prior_size: bool) -> np.ndarray:
        """``(N, 17, 2)`` pixels -> ``(N, 17, 3)`` float64 joints, exactly pelvis-centred; with
        ``to_prior_size`` (and a ``body_size_prior``) scaled to the prior body size."""
        rotations = None
        domain = self.lifter.input_domain
        if frame.camera_matrix is not None and self.config.lift_in_reference_camera:
            normalized, rotations = lifter_input_in_reference_view(pixels, frame.camera_matrix,
                                                                   domain.pelvis_angles_deg)
        else:
            normalized = normalize_screen(pixels, frame.image_width, frame.image_height)
            normalized = clamp_person_position(normalized)
        if self.config.person_scale_clamp:
            normalized = clamp_person_scale(normalized, domain.person_scale_range)
        root_relative = np.asarray(self.lifter.lift(normalized.astype(np.float32)), dtype=np.float64)
        root_relative = root_relative - root_relative[:, :1]
        if rotations is not None:               # from each person's view back to the camera's axes
            root_relative = root_relative @ rotations
        if to_prior_size and self.config.body_size_prior > 0:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                size = H36M_17.size_relative_to_mean(root_relative)
                scale = np.where(np.isfinite(size) & (size > 0), self.config.body_size_prior / size, 1.0)
            root_relative = root_relative * scale[:, None, None]
        return root_relative

    def _relift_without_outliers(self, frame: Frame2D, camera: np.ndarray, pixels: np.ndarray,
                                 scores: np.ndarray, root_relative: np.ndarray, translations: np.ndarray,
                                 solved: np.ndarray) -> None:
        """People whose worst-fitting joint after the robust root solve is an outlier are lifted
        and solved again with that one joint missing (score 0, filled from its ancestor), in place.

        The solve alone is not enough: the lifter saw the bad joint too, and one wrist
        500 px off shrank a skeleton from 1.57 to 1.38 m tall, which moved the person by
        8-16 % in depth although the solve itself ignored the wrist. Only the worst joint
        goes: its neighbours often fit badly only because the lifter bent them towards it,
        and each joint taken away costs the lift some accuracy.

        Two tests, because the first cannot tell a wrong joint the lifter has half bent towards
        from a right one a real detector placed a little off: a joint past ``relift_threshold``
        is a candidate, and its rejection stands only if the lift made without it misses it by
        ``relift_confirm`` (same scale): a wrong joint is far from where the rest of the body
        puts it, a right one is close. Costs a second lifter call for the people with a
        candidate (7 of the demo clip's 300 people, none of them confirmed)."""
        outliers = outlier_joints(root_relative, pixels, scores, camera, translations, at_most=1,
                                  threshold=self.config.relift_threshold)
        remaining = ((scores > 0) & ~outliers).sum(axis=1)
        redo = np.flatnonzero(outliers.any(axis=1) & (remaining >= self.config.min_valid_joints))
        if not len(redo):
            return
        new_scores = np.where(outliers[redo], 0.0, scores[redo])
        new_pixels = H36M_17.fill_missing(pixels[redo], new_scores > 0)
        lifted = self._lift_and_solve(frame, camera, new_pixels, new_scores)
        if self.config.relift_confirm is not None:
            new_rel, new_t, _ = lifted
            rejected = np.argmax(outliers[redo], axis=1)          # each person's one candidate (at_most=1)
            errors = scaled_reprojection_errors(new_rel, pixels[redo], scores[redo], camera, new_t)
            held_out = errors[np.arange(len(redo)), rejected]
            with np.errstate(invalid="ignore"):  # NaN: no lift or solve to compare with, the rejection stands
                confirmed = ~(held_out < self.config.relift_confirm)
            redo, new_pixels, new_scores = redo[confirmed], new_pixels[confirmed], new_scores[confirmed]
            lifted = tuple(part[confirmed] for part in lifted)
        self._replace(redo, new_pixels, new_scores, *lifted, pixels, scores, root_relative, translations, solved)

    def _impute_missing_joints(self, frame: Frame2D, camera: np.ndarray, pixels: np.ndarray,
                               scores: np.ndarray, root_relative: np.ndarray, translations: np.ndarray,
                               solved: np.ndarray) -> None:
        """People with missing joints (score 0) and a solved root are lifted and solved once
        more with each missing joint placed where their own lift put it (the lifted joint
        projected through the camera) instead of on its ancestor, in place.

        The ancestor fill folds a limb, and the lifter reads a folded limb as a shorter or
        bent body. Placed where the first lift puts it, the second lift sees a whole body:
        with the shipped weights, over every 10th frame of the demo clip, any one joint missing
        moves the depth by up to 5.6 % (p99 4.0 %) instead of 5.9 % (5.1 %)
        (``benchmarks/bench_root_solver.py``).
        Costs one lifter call more, for the people with a missing joint; the solve still
        ignores the imputed joints (their score stays 0)."""
        redo = np.flatnonzero((scores == 0).any(axis=1) & solved)
        if not len(redo):
            return
        missing = scores[redo] == 0
        projected = reproject(root_relative[redo], translations[redo], camera)
        # behind the camera or where no input joint may lie (image_margin): keep the fill
        usable = missing & inside_image(projected, frame.image_width, frame.image_height, self.config.image_margin)
        new_pixels = np.where(usable[..., None], projected, pixels[redo])
        lifted = self._lift_and_solve(frame, camera, new_pixels, scores[redo])
        self._replace(redo, new_pixels, scores[redo], *lifted, pixels, scores, root_relative, translations, solved)

    def _lift_and_solve(self, frame: Frame2D, camera: np.ndarray, pixels: np.ndarray,
                        scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(root_relative, translations, solved)`` of people lifted and solved from scratch."""
        root_relative = self._lift(pixels, frame, to_prior_size=True)
        return (root_relative, *solve_root_translation(root_relative, pixels, scores, camera))

    @staticmethod
    def _replace(rows: np.ndarray, new_pixels: np.ndarray, new_scores: np.ndarray, new_rel: np.ndarray,
                 new_t: np.ndarray, new_solved: np.ndarray, pixels: np.ndarray, scores: np.ndarray,
                 root_relative: np.ndarray, translations: np.ndarray, solved: np.ndarray) -> None:
        """People ``rows`` take their new inputs, lift and root, in place, where the lifter
        answered with finite joints (else the first, finite answer stands)."""
        keep = np.isfinite(new_rel).all(axis=(1, 2))
        rows = rows[keep]
        pixels[rows], scores[rows], root_relative[rows] = new_pixels[keep], new_scores[keep], new_rel[keep]
        translations[rows], solved[rows] = new_t[keep], new_solved[keep]

    def process(self, frame: Frame2D) -> FrameResult:
        dropped: Counter = Counter()
        if not (np.isfinite(frame.image_width) and np.isfinite(frame.image_height)
                and frame.image_width > 0 and frame.image_height > 0):
            dropped["bad_image_size"] += max(len(frame.people), 1)
            return FrameResult([], dropped)
        intrinsics = None       # K of the keypoints' pixels, where it is a real camera's
        if frame.camera_matrix is not None:
            try:
                intrinsics = validate_camera_matrix(frame.camera_matrix)
            except ValueError:
                if self.config.solve_root:
                    dropped["bad_camera_info"] += 1
        # The pixels everything after the conversion sees are those of an ideal pinhole camera with
        # square pixels (the lifter learned from Human3.6M's), in its image: ``seen`` has its K and
        # size. Also where people are not placed (solve_root off): the lifter reads the pose from them.
        seen = replace(frame, camera_matrix=None)        # (a K that is no camera's is not used)
        if intrinsics is not None:
            square, (width, height) = square_pixel_camera(intrinsics, (frame.image_width, frame.image_height))
            seen = replace(frame, image_width=width, image_height=height, camera_matrix=square)
        camera = seen.camera_matrix if intrinsics is not None and self.config.solve_root else None  # places people

        checked: list[tuple[int, Person2D, np.ndarray, np.ndarray]] = []
        problems: dict[str, str] = {}
        for index, person in enumerate(frame.people):
            problem = person_problem(person)
            if problem is not None:
                reason, words = problem
                dropped[reason] += 1
                problems.setdefault(reason, f"person {index}: {words}")
            else:
                checked.append((index, person, *convert_to_h36m17(person.layout, person.keypoints, person.scores)))
        # every person's joints at once (one Newton solve): NaN where the lens model cannot undo one
        ideal = (undistort_pixels(np.stack([item[2] for item in checked]), intrinsics, frame.lens,
                                  seen.camera_matrix)
                 if intrinsics is not None and checked else [item[2] for item in checked])
        # (input index, person, ideal pinhole pixels, scores, pixels as detected)
        accepted: list[tuple[int, Person2D, np.ndarray, np.ndarray, np.ndarray]] = []
        for (index, person, kp, scores), undistorted in zip(checked, ideal):
            # in float32, the message's type: a joint sent with score 0.05 arrives as 0.0500000007,
            # which is above the float64 0.05 but is "at or below" min_keypoint_score = 0.05
            detected = np.isfinite(kp).all(axis=1) & (scores > np.float32(self.config.min_keypoint_score))
            # the margin is judged where the lifter will see the joint: past it (or past what the
            # lens model can undo) it is missing
            valid = detected & inside_image(undistorted, seen.image_width, seen.image_height,
                                            self.config.image_margin)
            if valid.sum() < self.config.min_valid_joints:
                enough_without_margin = detected.sum() >= self.config.min_valid_joints
                dropped["out_of_image" if enough_without_margin else "too_few_joints"] += 1
            elif np.ptp(undistorted[valid], axis=0).max() < MIN_PERSON_EXTENT_PX:
                dropped["too_small"] += 1
            else:
                accepted.append((index, person, undistorted, np.where(valid, scores, 0.0), kp))
        if len(accepted) > self.config.max_people:
            accepted.sort(key=lambda item: -float(item[1].score))
            dropped["too_many_people"] += len(accepted) - self.config.max_people
            accepted = sorted(accepted[:self.config.max_people], key=lambda item: item[0])
        if not accepted:
            return FrameResult([], dropped, problems)

        scores = np.stack([item[3] for item in accepted])                 # (N, 17), 0 = missing
        pixels = H36M_17.fill_missing(np.stack([item[2] for item in accepted]), scores > 0)   # (N, 17, 2)
        root_relative = self._lift(pixels, seen, to_prior_size=camera is not None)
        lifted = np.isfinite(root_relative).all(axis=(1, 2))
        if not lifted.all():          # the lifter gave NaN/inf for someone: drop them, keep the rest
            dropped["non_finite_output"] += int((~lifted).sum())
            accepted = [item for item, keep in zip(accepted, lifted) if keep]
            if not accepted:
                return FrameResult([], dropped, problems)
            pixels, scores, root_relative = pixels[lifted], scores[lifted], root_relative[lifted]

        if camera is not None:
            translations, solved = solve_root_translation(root_relative, pixels, scores, camera)
            self._relift_without_outliers(seen, camera, pixels, scores, root_relative, translations, solved)
            if self.config.impute_missing_joints:
                self._impute_missing_joints(seen, camera, pixels, scores, root_relative, translations, solved)
            with np.errstate(invalid="ignore"):      # an unsolved person's translation is NaN
                too_far = solved & ~(np.linalg.norm(translations, axis=1) <= MAX_PLACEMENT_DISTANCE_M)
            if too_far.any():
                first = int(np.flatnonzero(too_far)[0])
                dropped[TOO_FAR_TO_PLACE] += int(too_far.sum())
                problems.setdefault(TOO_FAR_TO_PLACE, (
                    f"person {accepted[first][0]}: solved {np.linalg.norm(translations[first]):.3g} m from the "
                    f"camera, past {MAX_PLACEMENT_DISTANCE_M:g} m (a focal length of "
                    f"{camera[0, 0]:g} px, a person {np.ptp(pixels[first], axis=0).max():.3g} px across): "
                    f"published root-relative"))
                solved = solved & ~too_far
        else:
            translations = np.zeros((len(accepted), 3))
            solved = np.zeros(len(accepted), dtype=bool)

        from_depth = np.zeros(len(accepted), dtype=bool)
        if camera is not None and frame.depth is not None:
            # A measured depth beats the size prior of the monocular solve; people whose
            # pelvis falls in a hole of the depth image keep the intrinsics solution.
            # sampled at the pixels as detected (the depth image is registered to the keypoints'
            # image, of the frame's size), the pelvis placed along the ray of its ideal pinhole pixel
            visible = scores > 0
            detected = np.stack([item[4] for item in accepted])
            pelvis = np.where(visible[:, :1], detected[:, 0], np.nan)
            hips = np.where(visible[:, [1, 4], None], detected[:, [1, 4]], np.nan)
            depth_t, from_depth = root_translation_from_depth(
                pelvis, hips, frame.depth, camera, ray_pixels=pixels[:, 0], window=self.config.depth_window,
                body_offset=self.config.depth_body_offset, image_size=(frame.image_width, frame.image_height))
            agrees = depth_agrees_with_image(depth_t, translations, solved, root_relative, visible,
                                             self.config.depth_agreement)
            if (from_depth & ~agrees).any():
                dropped[DEPTH_DISAGREES] += int((from_depth & ~agrees).sum())
            from_depth &= agrees
            translations = np.where(from_depth[:, None], depth_t, translations)
            solved = solved | from_depth
        keypoints = root_relative + np.where(solved[:, None, None], translations[:, None, :], 0.0)
        if self.smoother is not None:
            # keyed by placement too: root-relative and camera-frame joints must never be blended
            # (CameraInfo arriving late, solve_root switched live, a solve that fails for a frame).
            # A zero (or negative) stamp is no time at all (ROS: "not set"; the tracker's clock reads
            # it so too), not a jump back to 0 s that restarts every track: passed as None.
            stamp = frame.stamp if frame.stamp > 0 else None
            keypoints = self.smoother.smooth_frame([item[1].track_id for item in accepted], stamp, keypoints,
                                                   modes=solved.tolist(), frame_id=frame.frame_id)
        positions, orientations, _ = body_poses(keypoints)
        finite = (np.isfinite(keypoints).all(axis=(1, 2)) & np.isfinite(positions).all(axis=1)
                  & np.isfinite(orientations).all(axis=1))
        if not finite.all():
            dropped["non_finite_output"] += int((~finite).sum())
        people = []
        for row, (index, person, *_) in enumerate(accepted):
            if not finite[row]:
                continue
            people.append(LiftedPerson(
                track_id=person.track_id, score=min(max(float(person.score), 0.0), 1.0),
                keypoints=keypoints[row], keypoint_scores=scores[row],
                root_source=(ROOT_FROM_DEPTH if from_depth[row] else
                             ROOT_FROM_INTRINSICS if solved[row] else ROOT_RELATIVE),
                position=positions[row], orientation_xyzw=orientations[row], source_index=index))
        return FrameResult(people, dropped, problems)
