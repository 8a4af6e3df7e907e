"""Synthetic H36M-17 people seen by random cameras: deterministic by seed.

Used by the tests, by smoke runs (``python -m training.train --synthetic N``)
and to widen real training data with poses and cameras Human3.6M lacks.

How a person is made
--------------------
1. **Body.** Bone lengths are the Human3.6M subjects' averages (metres, all
   seven subjects within about 5 %) for a reference stature of 1.72 m:
   pelvis->hip 0.13, hip->knee 0.45, knee->ankle 0.44, pelvis->spine 0.23,
   spine->thorax 0.255, thorax->neck/nose 0.12, neck/nose->head 0.115,
   thorax->shoulder 0.15, upper arm 0.28, forearm 0.25. Each person gets a
   stature uniform in [1.5, 1.95] m (a global scale) and small independent
   proportions (about 3 % per bone, 6 % for hip and shoulder width), the same
   on both sides. The rest directions of the bones (e.g. the neck/nose joint
   sits in front of the thorax, the head joint above and behind it, the ankle
   joint a little behind the knee) are the medians of the same data in a
   body frame, so a synthetic skeleton has Human3.6M's marker geometry.
2. **Pose.** One of :data:`POSE_FAMILIES` (standing, walking, arms raised,
   crouching, sitting, leaning, turning, reaching, kneeling, lunging,
   hand to face, gesturing) is drawn per person and gives ranges for every
   joint angle; everything a family does not set keeps a relaxed standing
   range. Angles are clipped to joint limits (:data:`JOINT_LIMITS`): knees and
   elbows flex one way only (0 to 150 degrees), hips and shoulders have
   anatomical ranges. Hips and shoulders are ball joints written as a swing
   (rotation vector perpendicular to the bone: no gimbal lock when the thigh
   or arm points forward; its angle capped by :data:`MAX_SWING`) followed by
   a twist about the bone. Half of the
   people are mirrored (left <-> right), so one-sided families cover both sides.
3. **Forward kinematics** along ``H36M_17.parents``: every bone has its own
   rotation relative to its parent bone's frame (the pelvis's three children
   can move independently: hips fixed, spine leaning), and a child joint is
   its parent plus the rotated rest offset.
4. **Orientation.** Body frame: x = the person's left, y = up, z = forward.
   The person is turned about the vertical by a yaw uniform in [0, 360)
   degrees, then seen from a camera with a small pitch (looking down about
   8 degrees on average, as mounted cameras do) and roll, giving Human3.6M's
   camera frame (x right, y down, z forward: the head has smaller y than the
   feet). Yaw 0 faces the camera.
5. **Camera.** Image sizes common in robotics and Human3.6M (640x480,
   1280x720, 1920x1080, 1000x1000, 1000x1002); fx in [500, 1500] px and
   within a horizontal field of view of 35-100 degrees for that width;
   fy = fx within 0.5 %; principal point within 2 % of the image centre;
   optionally mild lens distortion. The root is put 2-8 m in front of the
   camera (farther when the person would not fit) at a random place where
   every joint projects inside the image with a margin.
6. **2D detections** (:class:`DetectorNoise`): the projection plus per-joint
   Gaussian pixel noise (hips and extremities noisier, as 2D detectors are),
   occasional large outliers with low scores, optional missing joints
   (NaN, score 0), clipped to the image. Scores fall with the error.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``,
so a call with the same arguments returns the same arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfi_pose_ros.camera import CameraIntrinsics, normalize_screen, project
from cfi_pose_ros.skeleton import H36M_17

J = H36M_17.num_joints
PARENTS = np.asarray(H36M_17.parents)
REFERENCE_STATURE = 1.72
STATURE_RANGE = (1.5, 1.95)
DEPTH_RANGE = (2.0, 8.0)
IMAGE_SIZES = ((640, 480), (1280, 720), (1920, 1080), (1000, 1000), (1000, 1002))
FOCAL_RANGE = (500.0, 1500.0)
HFOV_RANGE_DEG = (35.0, 100.0)

# Bone of each child joint: (length at the reference stature, rest direction in
# the body frame x = left, y = up, z = forward). Right-side rows mirror the left.
_LEFT_BONES = {
    "left_hip": (0.13, (1.0, 0.0, 0.0)),
    "left_knee": (0.45, (0.0, -1.0, 0.0)),
    "left_ankle": (0.44, (0.0, -0.98, -0.2)),
    "left_shoulder": (0.15, (0.915, -0.365, -0.085)),
    "left_elbow": (0.28, (0.1, -1.0, 0.0)),
    "left_wrist": (0.25, (0.0, -1.0, 0.0)),
}
_CENTRE_BONES = {
    "spine": (0.233, (0.0, 0.99, -0.12)),
    "thorax": (0.255, (0.0, 0.99, 0.05)),
    "neck_nose": (0.12, (0.0, 0.64, 0.71)),
    "head": (0.115, (0.0, 0.91, -0.33)),
}
# Bones whose lengths vary together on both sides, with their relative spread.
_PROPORTION_GROUPS = (
    (("left_hip", "right_hip"), 0.06), (("left_knee", "right_knee"), 0.03),
    (("left_ankle", "right_ankle"), 0.03), (("spine",), 0.04), (("thorax",), 0.04),
    (("neck_nose",), 0.05), (("head",), 0.05), (("left_shoulder", "right_shoulder"), 0.06),
    (("left_elbow", "right_elbow"), 0.03), (("left_wrist", "right_wrist"), 0.03),
)


def _bone_table() -> tuple[np.ndarray, np.ndarray]:
    lengths = np.zeros(J)
    directions = np.zeros((J, 3))
    for name, (length, direction) in {**_LEFT_BONES, **_CENTRE_BONES}.items():
        i = H36M_17.index(name)
        lengths[i] = length
        directions[i] = np.asarray(direction) / np.linalg.norm(direction)
    for name in _LEFT_BONES:
        left, right = H36M_17.index(name), H36M_17.index(name.replace("left_", "right_"))
        lengths[right] = lengths[left]
        directions[right] = directions[left] * np.array([-1.0, 1.0, 1.0])
    return lengths, directions


REST_LENGTHS, REST_DIRECTIONS = _bone_table()

# ----------------------------------------------------------------------------------
# Joint angles (degrees). Left-side angles; the right side uses the same names with
# "r_" and is mirrored. Sign conventions (body frame x = left, y = up, z = forward):
#   *_flex > 0 moves the bone forward; knee_flex and elbow_flex (>= 0) bend the
#   hinge: the shank swings backward, the forearm forward,
#   *_abd > 0 moves a limb outward, *_lat > 0 bends the trunk/neck to the left,
#   *_twist > 0 turns the trunk/head to the left, *_rot > 0 is a limb's internal
#   rotation (knee or forearm turns towards the midline).
# ----------------------------------------------------------------------------------
_SIDE_DOFS = ("hip_flex", "hip_abd", "hip_rot", "knee_flex",
              "clav_elev", "clav_prot", "sh_flex", "sh_abd", "sh_rot", "elbow_flex")
_CENTRE_DOFS = ("pelvis_tilt", "pelvis_roll", "lumbar_flex", "lumbar_lat", "lumbar_twist",
                "thor_flex", "thor_lat", "thor_twist", "neck_flex", "neck_lat", "neck_turn",
                "head_flex")
DOFS = _CENTRE_DOFS + tuple("l_" + d for d in _SIDE_DOFS) + tuple("r_" + d for d in _SIDE_DOFS)
_DOF_INDEX = {name: i for i, name in enumerate(DOFS)}

JOINT_LIMITS = {
    "pelvis_tilt": (-15, 25), "pelvis_roll": (-12, 12),
    "lumbar_flex": (-25, 75), "lumbar_lat": (-30, 30), "lumbar_twist": (-35, 35),
    "thor_flex": (-15, 35), "thor_lat": (-20, 20), "thor_twist": (-25, 25),
    "neck_flex": (-45, 55), "neck_lat": (-35, 35), "neck_turn": (-75, 75), "head_flex": (-20, 20),
    "hip_flex": (-25, 130), "hip_abd": (-25, 50), "hip_rot": (-40, 45), "knee_flex": (0, 150),
    "clav_elev": (-10, 30), "clav_prot": (-20, 25),
    "sh_flex": (-55, 180), "sh_abd": (-30, 180), "sh_rot": (-60, 90), "elbow_flex": (0, 150),
}
# Largest swing of a ball joint away from hanging down (degrees): flexion and
# abduction combine into one swing (a rotation vector), capped at this angle.
MAX_SWING = {"hip": 130.0, "shoulder": 180.0}

# Relaxed standing: the range of every angle a family does not override.
_BASE = {
    "pelvis_tilt": (-4, 8), "pelvis_roll": (-4, 4),
    "lumbar_flex": (-5, 10), "lumbar_lat": (-5, 5), "lumbar_twist": (-10, 10),
    "thor_flex": (-5, 10), "thor_lat": (-5, 5), "thor_twist": (-8, 8),
    "neck_flex": (-15, 25), "neck_lat": (-10, 10), "neck_turn": (-35, 35), "head_flex": (-10, 10),
    "hip_flex": (-5, 15), "hip_abd": (-4, 12), "hip_rot": (-15, 20), "knee_flex": (0, 15),
    "clav_elev": (-5, 8), "clav_prot": (-8, 8),
    "sh_flex": (-15, 25), "sh_abd": (0, 20), "sh_rot": (-20, 40), "elbow_flex": (5, 45),
}


def _sides(**ranges) -> dict:
    """The same range for both sides: ``hip_flex=(0, 10)`` -> l_hip_flex and r_hip_flex."""
    out = {}
    for name, value in ranges.items():
        if name in _SIDE_DOFS:
            out["l_" + name] = out["r_" + name] = value
        else:
            out[name] = value
    return out


# Each family: overrides of _BASE. Keys with l_/r_ set one side (people are
# mirrored at random afterwards, so "left" means "one of the two").
POSE_FAMILIES: tuple[tuple[str, dict], ...] = (
    ("standing", {}),
    ("walking", {}),  # phase-coupled legs and arms: see _walking
    ("arms_raised", _sides(sh_flex=(30, 160), sh_abd=(10, 130), sh_rot=(-30, 70),
                           elbow_flex=(0, 90), clav_elev=(5, 25))),
    ("crouching", {**_sides(hip_flex=(85, 125), hip_abd=(5, 35), hip_rot=(-10, 30),
                            knee_flex=(95, 145), sh_flex=(0, 70), elbow_flex=(10, 110)),
                   "lumbar_flex": (10, 35), "thor_flex": (0, 15), "pelvis_tilt": (0, 12),
                   "neck_flex": (-35, 10)}),
    ("sitting", {**_sides(hip_flex=(70, 105), hip_abd=(0, 25), hip_rot=(-15, 25),
                          knee_flex=(65, 115), sh_flex=(0, 55), elbow_flex=(20, 110)),
                 "lumbar_flex": (-10, 30), "pelvis_tilt": (-10, 10)}),
    ("leaning", {**_sides(hip_flex=(10, 70), knee_flex=(0, 30), sh_flex=(-10, 80),
                          elbow_flex=(5, 90)),
                 "lumbar_flex": (25, 75), "lumbar_lat": (-25, 25), "thor_flex": (0, 30),
                 "thor_lat": (-15, 15), "neck_flex": (-40, 20)}),
    ("turning", {**_sides(hip_rot=(-35, 40)), "lumbar_twist": (-35, 35), "thor_twist": (-25, 25),
                 "neck_turn": (-75, 75), "pelvis_roll": (-8, 8)}),
    ("reaching", {"l_sh_flex": (50, 140), "l_sh_abd": (-20, 80), "l_elbow_flex": (0, 40),
                  "l_clav_prot": (5, 25), "lumbar_flex": (5, 40), "lumbar_twist": (-25, 25),
                  "lumbar_lat": (-20, 20), "r_hip_flex": (-20, 30), "l_hip_flex": (-10, 40)}),
    ("kneeling", {"l_hip_flex": (70, 110), "l_knee_flex": (70, 110), "r_hip_flex": (-15, 15),
                  "r_knee_flex": (85, 130), "pelvis_tilt": (-5, 10), "lumbar_flex": (-5, 25),
                  **_sides(sh_flex=(-10, 60), elbow_flex=(5, 100))}),
    ("lunging", {"l_hip_flex": (35, 85), "l_knee_flex": (35, 95), "r_hip_flex": (-25, -5),
                 "r_knee_flex": (0, 35), "l_hip_abd": (-5, 20), "r_hip_abd": (0, 20),
                 "lumbar_flex": (-5, 30), "l_sh_flex": (-40, 60), "r_sh_flex": (-40, 60)}),
    ("hand_to_face", {"l_sh_flex": (20, 75), "l_sh_abd": (-10, 30), "l_sh_rot": (20, 70),
                      "l_elbow_flex": (110, 150), "neck_flex": (0, 35),
                      "r_elbow_flex": (5, 120), "r_sh_flex": (-10, 50)}),
    ("gesturing", {**_sides(sh_flex=(-10, 100), sh_abd=(10, 110), sh_rot=(-40, 80),
                            elbow_flex=(20, 130)),
                   "lumbar_twist": (-20, 20), "neck_turn": (-50, 50)}),
)
FAMILY_NAMES = tuple(name for name, _ in POSE_FAMILIES)


def _range_table(overrides: dict) -> np.ndarray:
    table = np.zeros((len(DOFS), 2))
    for name, i in _DOF_INDEX.items():
        base = name[2:] if name[:2] in ("l_", "r_") else name
        table[i] = overrides.get(name, _BASE[base])
    return table


_FAMILY_RANGES = np.stack([_range_table(overrides) for _, overrides in POSE_FAMILIES])
_LIMITS = np.array([JOINT_LIMITS[n[2:] if n[:2] in ("l_", "r_") else n] for n in DOFS], dtype=np.float64)


def _walking(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Gait: hips swing in antiphase around the phase, the swing knee bends, arms swing opposite."""
    phase = rng.uniform(0, 2 * np.pi, n)
    stride = rng.uniform(15, 32, n)
    arm_swing = rng.uniform(5, 30, n)
    out = {}
    for side, offset in (("l_", 0.0), ("r_", np.pi)):
        p = phase + offset
        out[side + "hip_flex"] = 5 + stride * np.sin(p)
        # the knee of the swinging leg bends most just after toe-off
        out[side + "knee_flex"] = 5 + rng.uniform(35, 60, n) * np.clip(np.sin(p + 0.9), 0, None) ** 2
        out[side + "sh_flex"] = -arm_swing * np.sin(p)
        out[side + "elbow_flex"] = rng.uniform(10, 45, n)
    out["lumbar_flex"] = rng.uniform(-3, 12, n)
    return out


def sample_joint_angles(rng: np.random.Generator, families: np.ndarray) -> np.ndarray:
    """Joint angles ``(n, len(DOFS))`` in degrees for the given family indices, within limits."""
    families = np.asarray(families, dtype=np.int64)
    ranges = _FAMILY_RANGES[families]                                    # (n, D, 2)
    angles = rng.uniform(ranges[..., 0], ranges[..., 1])
    walking = np.flatnonzero(families == FAMILY_NAMES.index("walking"))
    if len(walking):
        for name, values in _walking(rng, len(walking)).items():
            angles[walking, _DOF_INDEX[name]] = values
    return np.clip(angles, _LIMITS[:, 0], _LIMITS[:, 1])


# ----------------------------------------------------------------------------------
# Rotations
# ----------------------------------------------------------------------------------
def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation vectors ``(..., 3)`` (radians) -> matrices ``(..., 3, 3)``."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1),
                  np.stack([-y, x, zero], -1)], -2)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + s * k + (1 - c) * (k @ k)


def _rot(axis: int, degrees: np.ndarray) -> np.ndarray:
    v = np.zeros(np.shape(degrees) + (3,))
    v[..., axis] = np.radians(degrees)
    return axis_angle_to_matrix(v)


_MIRROR = np.diag([-1.0, 1.0, 1.0])


def _swing(flex: np.ndarray, abd: np.ndarray, max_degrees: float) -> np.ndarray:
    """Ball joint hanging along -y: flexion tips it towards +z (about -x), abduction towards
    +x (about +z), as one rotation vector whose angle is capped at ``max_degrees``."""
    rotvec = np.radians(np.stack([-flex, np.zeros_like(flex), abd], -1))
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    cap = np.radians(max_degrees)
    return axis_angle_to_matrix(rotvec * np.minimum(1.0, cap / np.maximum(angle, 1e-12)))


def _local_rotations(angles: np.ndarray) -> np.ndarray:
    """Each bone's rotation relative to its parent bone's frame, ``(n, 17, 3, 3)``."""
    n = len(angles)
    a = {name: angles[:, i] for name, i in _DOF_INDEX.items()}
    local = np.broadcast_to(np.eye(3), (n, J, 3, 3)).copy()

    def trunk(flex, lat, twist):
        # flexion tips +y towards +z (about +x); left bend tips +y towards +x (about -z)
        swing = np.stack([np.radians(flex), np.zeros(n), -np.radians(lat)], -1)
        return axis_angle_to_matrix(swing) @ _rot(1, twist)

    root = trunk(a["pelvis_tilt"], a["pelvis_roll"], np.zeros(n))
    local[:, H36M_17.index("spine")] = trunk(a["lumbar_flex"], a["lumbar_lat"], a["lumbar_twist"])
    local[:, H36M_17.index("thorax")] = trunk(a["thor_flex"], a["thor_lat"], a["thor_twist"])
    local[:, H36M_17.index("neck_nose")] = trunk(a["neck_flex"], a["neck_lat"], a["neck_turn"])
    local[:, H36M_17.index("head")] = _rot(0, a["head_flex"])
    for side, mirror in (("l_", False), ("r_", True)):
        prefix = "left_" if side == "l_" else "right_"
        g = {name: a[side + name] for name in _SIDE_DOFS}
        # Ball joints: swing, then twist about the bone (internal rotation > 0).
        hip = _swing(g["hip_flex"], g["hip_abd"], MAX_SWING["hip"]) @ _rot(1, -g["hip_rot"])
        knee = _rot(0, g["knee_flex"])                       # shank swings backwards only
        clavicle = _rot(2, g["clav_elev"]) @ _rot(1, -g["clav_prot"])
        shoulder = _swing(g["sh_flex"], g["sh_abd"], MAX_SWING["shoulder"]) @ _rot(1, -g["sh_rot"])
        elbow = _rot(0, -g["elbow_flex"])                    # forearm swings forwards only
        for joint, rotation in (("knee", hip), ("ankle", knee), ("shoulder", clavicle),
                                ("elbow", shoulder), ("wrist", elbow)):
            if mirror:
                rotation = _MIRROR @ rotation @ _MIRROR
            local[:, H36M_17.index(prefix + joint)] = rotation
    local[:, 0] = root
    return local


def forward_kinematics(angles: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions ``(n, 17, 3)`` (pelvis at 0, body frame) and bone frames ``(n, 17, 3, 3)``.

    ``angles`` ``(n, len(DOFS))`` degrees; ``lengths`` ``(n, 17)`` metres (entry 0 unused).
    Frame ``i`` is the rotation of the bone that ends at joint ``i`` (0: the pelvis).
    """
    local = _local_rotations(np.asarray(angles, dtype=np.float64))
    n = len(local)
    frames = np.empty_like(local)
    positions = np.zeros((n, J, 3))
    frames[:, 0] = local[:, 0]
    for child in range(1, J):                    # parents come before children in H36M_17
        parent = PARENTS[child]
        frames[:, child] = frames[:, parent] @ local[:, child]
        offset = lengths[:, child, None] * REST_DIRECTIONS[child]
        positions[:, child] = positions[:, parent] + np.einsum("nij,nj->ni", frames[:, child], offset)
    return positions, frames


def random_bone_lengths(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-person bone lengths ``(n, 17)`` and statures ``(n,)`` in metres."""
    stature = rng.uniform(*STATURE_RANGE, n)
    lengths = np.broadcast_to(REST_LENGTHS * (stature / REFERENCE_STATURE)[:, None], (n, J)).copy()
    for names, spread in _PROPORTION_GROUPS:
        factor = np.clip(1 + spread * rng.standard_normal(n), 1 - 2.5 * spread, 1 + 2.5 * spread)
        for name in names:
            lengths[:, H36M_17.index(name)] *= factor
    return lengths, stature


def mirror_poses(poses: np.ndarray) -> np.ndarray:
    """Mirror body-frame (or camera-frame) poses in x and swap left and right joints."""
    out = np.asarray(poses)[..., H36M_17.flip_permutation(), :].copy()
    out[..., 0] = -out[..., 0]
    return out


def random_body_poses(n: int, rng: np.random.Generator,
                      families: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Root-relative poses in the body frame (x left, y up, z forward) and their families."""
    if families is None:
        families = rng.integers(0, len(POSE_FAMILIES), n)
    families = np.asarray(families, dtype=np.int64)
    angles = sample_joint_angles(rng, families)
    lengths, _ = random_bone_lengths(rng, n)
    poses, _ = forward_kinematics(angles, lengths)
    mirrored = rng.random(n) < 0.5
    poses[mirrored] = mirror_poses(poses[mirrored])
    return poses, families


def body_to_camera_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3, 3)``: yaw about the body's vertical in [0, 360), then a small camera pitch/roll.

    With yaw 0 the person faces the camera: body (left, up, forward) -> camera (+x, -y, -z).
    """
    yaw = rng.uniform(0, 360, n)
    pitch = np.clip(rng.normal(8, 8, n), -10, 30)      # > 0: camera looks down at the person
    roll = np.clip(rng.normal(0, 3, n), -10, 10)
    facing = np.diag([1.0, -1.0, -1.0])
    # a camera looking down sees the head nearer than the feet: up -> (0, -cos, -sin pitch)
    return _rot(0, pitch) @ _rot(2, roll) @ facing @ _rot(1, yaw)


def random_poses(n: int, seed: int = 0, families: np.ndarray | None = None) -> np.ndarray:
    """``(n, 17, 3)`` root-relative poses in a camera frame (x right, y down, z forward), metres."""
    rng = np.random.default_rng(seed)
    body, _ = random_body_poses(n, rng, families)
    return np.einsum("nij,nkj->nki", body_to_camera_rotations(rng, n), body)


# ----------------------------------------------------------------------------------
# Cameras, placement and detections
# ----------------------------------------------------------------------------------
def random_camera(rng: np.random.Generator, distortion: bool = False) -> CameraIntrinsics:
    """A camera with realistic intrinsics (see the module docstring)."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    half_fov = np.radians(np.asarray(HFOV_RANGE_DEG)) / 2
    low = max(FOCAL_RANGE[0], width / 2 / np.tan(half_fov[1]))
    high = min(FOCAL_RANGE[1], width / 2 / np.tan(half_fov[0]))
    fx = float(rng.uniform(low, high))
    fy = float(fx * (1 + rng.uniform(-0.005, 0.005)))
    cx = float(width / 2 + rng.uniform(-0.02, 0.02) * width)
    cy = float(height / 2 + rng.uniform(-0.02, 0.02) * height)
    radial, tangential = (0.0, 0.0, 0.0), (0.0, 0.0)
    if distortion:
        radial = (float(rng.uniform(-0.25, 0.05)), float(rng.uniform(-0.05, 0.25)),
                  float(rng.uniform(-0.01, 0.01)))
        tangential = (float(rng.uniform(-0.002, 0.002)), float(rng.uniform(-0.002, 0.002)))
    return CameraIntrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=int(width), height=int(height),
                            radial=radial, tangential=tangential)


@dataclass(frozen=True)
class DetectorNoise:
    """2D-detector-like corruption of projected joints (pixels)."""
    std_px: float = 3.0            # per-joint Gaussian std (scaled per joint, see _JOINT_NOISE)
    outlier_prob: float = 0.02     # chance per joint of a gross error
    outlier_std_px: float = 30.0   # std of a gross error
    missing_prob: float = 0.0      # chance per joint of no detection (NaN, score 0)


NO_NOISE = DetectorNoise(std_px=0.0, outlier_prob=0.0, missing_prob=0.0)
# Relative noise per H36M joint: hip centres are guessed under clothing, wrists and
# ankles move fast; derived torso points average several keypoints.
_JOINT_NOISE = np.array([1.0, 1.5, 1.2, 1.3, 1.5, 1.2, 1.3, 0.8, 0.8, 0.8, 0.8,
                         1.0, 1.2, 1.4, 1.0, 1.2, 1.4])


@dataclass
class SyntheticScene:
    """N people, each seen by its own random camera."""
    joints_cam: np.ndarray         # (N, 17, 3) camera frame, metres, root translation included
    pixels: np.ndarray             # (N, 17, 2) detections (NaN where missing)
    pixels_clean: np.ndarray       # (N, 17, 2) exact projections
    scores: np.ndarray             # (N, 17) in [0, 1]; 0 where missing
    image_sizes: np.ndarray        # (N, 2) int (width, height)
    cameras: tuple[CameraIntrinsics, ...]
    families: np.ndarray           # (N,) index into POSE_FAMILIES

    def __len__(self) -> int:
        return len(self.joints_cam)

    @property
    def root_relative(self) -> np.ndarray:
        return self.joints_cam - self.joints_cam[:, :1]


def _inside(pixels: np.ndarray, sizes: np.ndarray, margin: np.ndarray) -> np.ndarray:
    lo = margin[:, None, None]
    hi = sizes[:, None, :] - margin[:, None, None]
    return np.all((pixels >= lo) & (pixels <= hi), axis=(1, 2))


def _place(rng: np.random.Generator, poses: np.ndarray, cameras: list[CameraIntrinsics],
           max_tries: int = 60) -> np.ndarray:
    """Root translations ``(n, 3)`` putting every joint inside each person's image."""
    n = len(poses)
    f = np.array([[c.fx, c.fy] for c in cameras])
    c = np.array([[c.cx, c.cy] for c in cameras])
    sizes = np.array([[k.width, k.height] for k in cameras], dtype=np.float64)
    margin = 0.02 * sizes.min(axis=1)
    lo, hi = poses[..., :2].min(axis=1), poses[..., :2].max(axis=1)       # (n, 2) metres
    depth_spread = np.abs(poses[..., 2]).max(axis=1)
    # nearest depth at which the person's extent fits into 90 % of the image
    fit = (f * (hi - lo) / (0.9 * sizes - 2 * margin[:, None])).max(axis=1) + depth_spread
    z_low = np.maximum(DEPTH_RANGE[0], fit)
    roots = np.full((n, 3), np.nan)
    pending = np.arange(n)
    for attempt in range(max_tries):
        if not len(pending):
            break
        z_min = z_low[pending]
        z_max = np.maximum(DEPTH_RANGE[1], z_min)
        if attempt > max_tries // 2:                              # stubborn: go farther
            z_min = np.minimum(z_min * 1.2, z_max)
        z = rng.uniform(z_min, z_max)
        near = z - depth_spread[pending]
        # bounding box of the root-relative pose at that depth, then a root pixel keeping it inside
        box_lo = f[pending] * lo[pending] / near[:, None]
        box_hi = f[pending] * hi[pending] / near[:, None]
        m = margin[pending, None]
        u_lo = m - box_lo
        u_hi = sizes[pending] - m - box_hi
        u = rng.uniform(np.minimum(u_lo, u_hi), np.maximum(u_lo, u_hi))
        xy = (u - c[pending]) * z[:, None] / f[pending]
        candidate = np.concatenate([xy, z[:, None]], axis=1)
        points = poses[pending] + candidate[:, None, :]
        pixels = np.stack([project(points[i], cameras[j]) for i, j in enumerate(pending)])
        ok = _inside(pixels, sizes[pending], margin[pending]) & np.all(points[..., 2] > 0.5, axis=1)
        roots[pending[ok]] = candidate[ok]
        pending = pending[~ok]
    if len(pending):
        raise RuntimeError(f"could not place {len(pending)} synthetic people inside their images")
    return roots


def _detections(rng: np.random.Generator, pixels: np.ndarray, sizes: np.ndarray,
                noise: DetectorNoise) -> tuple[np.ndarray, np.ndarray]:
    n = len(pixels)
    std = noise.std_px * _JOINT_NOISE[None, :, None]
    error = rng.standard_normal(pixels.shape) * std
    outlier = rng.random((n, J)) < noise.outlier_prob
    error = np.where(outlier[..., None], rng.standard_normal(pixels.shape) * noise.outlier_std_px, error)
    noisy = np.clip(pixels + error, 0.0, sizes[:, None, :] - 1.0)
    distance = np.linalg.norm(noisy - pixels, axis=-1)
    scale = max(noise.outlier_std_px, 1.0)
    scores = np.clip(0.95 - 0.6 * distance / scale + rng.normal(0, 0.04, (n, J)), 0.05, 1.0)
    missing = rng.random((n, J)) < noise.missing_prob
    noisy[missing] = np.nan
    scores[missing] = 0.0
    return noisy, scores


def synthetic_scene(n: int, seed: int = 0, noise: DetectorNoise = DetectorNoise(),
                    distortion_prob: float = 0.0,
                    families: np.ndarray | None = None) -> SyntheticScene:
    """``n`` random people, each with a random camera, placed and detected (see module docstring)."""
    rng = np.random.default_rng(seed)
    body, families = random_body_poses(n, rng, families)
    poses = np.einsum("nij,nkj->nki", body_to_camera_rotations(rng, n), body)
    cameras = [random_camera(rng, distortion=bool(rng.random() < distortion_prob)) for _ in range(n)]
    roots = _place(rng, poses, cameras)
    joints = poses + roots[:, None, :]
    clean = np.stack([project(joints[i], cameras[i]) for i in range(n)]) if n else np.zeros((0, J, 2))
    sizes = np.array([[k.width, k.height] for k in cameras], dtype=np.int64).reshape(n, 2)
    pixels, scores = _detections(rng, clean, sizes.astype(np.float64), noise)
    return SyntheticScene(joints_cam=joints, pixels=pixels, pixels_clean=clean, scores=scores,
                          image_sizes=sizes, cameras=tuple(cameras), families=families)


def synthetic_pose_set(n: int, seed: int = 0, noise: DetectorNoise | None = None,
                       distortion_prob: float = 0.0):
    """A :class:`training.h36m.PoseSet` of ``n`` synthetic people.

    Inputs are the projections (exact unless ``noise`` is given; missing joints are
    not allowed here since the model needs every joint), screen-normalised with each
    image's size; targets are root-relative camera-frame metres (float32). Action ids
    are the pose family index (mod 15); one subject ("synthetic") and camera id 0.
    """
    from training.h36m import PoseSet

    if noise is not None and noise.missing_prob > 0:
        raise ValueError("synthetic_pose_set needs every joint: use missing_prob=0")
    scene = synthetic_scene(n, seed, noise or NO_NOISE, distortion_prob)
    pixels = scene.pixels if noise is not None else scene.pixels_clean
    sizes = scene.image_sizes.astype(np.float64)
    inputs = normalize_screen(pixels, sizes[:, 0], sizes[:, 1]).astype(np.float32)
    return PoseSet(inputs_2d=inputs,
                   targets_3d=scene.root_relative.astype(np.float32),
                   action_ids=(scene.families % 15).astype(np.int16),
                   subject_ids=np.zeros(n, np.int16), camera_ids=np.zeros(n, np.int8),
                   subjects=("synthetic",))
