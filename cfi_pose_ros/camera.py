"""Pinhole camera with Brown-Conrady distortion, the 2D normalisation the model expects, and undoing
the lens distortion of a ROS camera (CameraInfo's plumb_bob, rational_polynomial, equidistant).

Conventions: camera optical frame (x right, y down, z forward, metres);
pixels with the origin at the image's top-left corner.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .skeleton import H36M_17


@dataclass(frozen=True)
class CameraIntrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    # radial (k1, k2, k3) and tangential (p1, p2) distortion, as Human3.6M stores them
    radial: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tangential: tuple[float, float] = (0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def validate(self) -> None:
        """Raise ``ValueError`` for intrinsics that cannot place a person in 3D."""
        values = np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"camera intrinsics contain NaN or inf: {values.tolist()}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")


def world_to_camera(points_world: np.ndarray, rotation_world_to_cam: np.ndarray,
                    center_world: np.ndarray) -> np.ndarray:
    """``X_cam = R (X_world - C)`` for points ``(..., 3)``."""
    return (np.asarray(points_world) - np.asarray(center_world)) @ np.asarray(rotation_world_to_cam).T


def project(points_cam: np.ndarray, camera: CameraIntrinsics) -> np.ndarray:
    """Project camera-frame points ``(..., 3)`` to pixels ``(..., 2)`` with distortion.

    Distortion is applied exactly as the Human3.6M/3d-pose-baseline code does,
    so that "ground-truth 2D" matches the literature's.
    """
    points_cam = np.asarray(points_cam, dtype=np.float64)
    xy = points_cam[..., :2] / points_cam[..., 2:3]
    r2 = np.sum(xy ** 2, axis=-1, keepdims=True)
    k1, k2, k3 = camera.radial
    p1, p2 = camera.tangential
    radial = 1.0 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = p1 * xy[..., 1:2] + p2 * xy[..., 0:1]
    distorted = xy * (radial + tan) + np.array([p2, p1]) * r2
    return distorted * np.array([camera.fx, camera.fy]) + np.array([camera.cx, camera.cy])


def rescale_camera_matrix(k: np.ndarray, from_size: tuple[float, float], to_size: tuple[float, float]) -> np.ndarray:
    """K of an image of ``from_size`` (width, height) for the same view resized to ``to_size``: the
    focal lengths and skew scale with the image, the principal point keeps the pixel-centre
    convention (centres at integer coordinates, as OpenCV resizes)."""
    k = np.array(k, dtype=np.float64)
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    k[0, :2] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def is_resized_view(size: tuple[float, float], other_size: tuple[float, float]) -> bool:
    """True when an image of ``size`` (width, height) can be the image of ``other_size`` resized by
    one factor, each side rounded to whole pixels: some s with |s W - w| < 1 and |s H - h| < 1, that
    is |w H - h W| < W + H (a half-size image of an odd-sized one is one)."""
    width, height = float(size[0]), float(size[1])
    other_width, other_height = float(other_size[0]), float(other_size[1])
    return abs(width * other_height - height * other_width) < other_width + other_height


# The fewest pixels a side of an image described to the lifter (a CameraInfo's image after its roi
# and binning, a depth image registered to the keypoints' image). Drivers publish 160 x 120 and
# more; in a few pixels a skeleton has nothing to tell apart, and images of a few pixels passed
# the checks of K and of registration (a 1 x 1 camera with fx = 1 is consistent, and rounding a few
# pixels explains any aspect ratio) yet placed people metres off.
MIN_IMAGE_SIDE_PX = 16


def published_image_matrix(matrix: np.ndarray, offset: tuple[float, float], binning: tuple[int, int]) -> np.ndarray:
    """A full sensor's K (or P's left 3x3) moved to the image a driver publishes: its region of
    interest at ``offset`` (x, y; full-resolution pixels) reduced by ``binning`` (x, y), as
    image_geometry's PinholeCameraModel moves them."""
    k = np.array(matrix, dtype=np.float64)
    k[0, 2] -= offset[0]
    k[1, 2] -= offset[1]
    k[0] /= binning[0]                 # fx, skew, cx
    k[1] /= binning[1]                 # fy, cy
    return k


def square_pixel_camera(camera_matrix: np.ndarray, image_size: tuple[float, float]
                        ) -> tuple[np.ndarray, tuple[float, float]]:
    """``(K', (width', height'))``: the camera with square pixels that sees what the camera with
    ``camera_matrix`` K and an image of ``image_size`` (width, height) sees. Both its focal lengths
    are the larger of fx and fy and it has no skew; its image is the original stretched along the
    axis of the smaller focal length (as a resize stretches it: :func:`rescale_camera_matrix`), so
    a binned sensor's (binning_x 2: fx = fy / 2) is the full sensor's. Pixels move to it with
    :func:`undistort_pixels` (``new_camera_matrix=K'``), which also takes the skew out of them.

    The lifter learned from Human3.6M's square pixels: it reads a body from its 2D joints' pixel
    offsets, and from a camera with fx != fy those are squeezed along one axis (a 2x1-binned
    sensor's body looked half as wide). A K with square pixels and no skew is returned as it is,
    with the size unchanged."""
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k[0, 0] == k[1, 1] and k[0, 1] == 0.0:
        return k, (image_size[0], image_size[1])
    focal = max(k[0, 0], k[1, 1])
    size = (image_size[0] * focal / k[0, 0], image_size[1] * focal / k[1, 1])
    square = rescale_camera_matrix(k, image_size, size)
    square[0, 1] = 0.0
    return square, size


# The camera the lifter learned from: Human3.6M's four, whose focal lengths and principal points
# differ by under 0.5 % and 20 px (their mean, rounded), in a 1000 x 1002 image.
H36M_REFERENCE_CAMERA = CameraIntrinsics(1147.0, 1147.0, 514.0, 507.0, 1000, 1002)
# Where the training data's people stood as their cameras saw them: the 1st and 99th percentile of
# the angle of the pelvis' ray off the optical axis, horizontally and vertically (degrees; S1,
# S5-S8, all four cameras; the pelvis taken as person_centre takes it; both printed by
# benchmarks/bench_cameras.py). Human3.6M films people within a narrow cone; a robot's camera sees
# them up to 45 degrees off axis.
H36M_PELVIS_ANGLES_DEG = ((-13.1, -9.5), (14.1, 5.5))


def _rotations_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)``: the smallest rotation taking each direction ``a[n]`` to ``b[n]`` (Rodrigues)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis, cos = np.cross(a, b), np.sum(a * b, axis=-1)
    sin = np.linalg.norm(axis, axis=-1)
    axis = np.divide(axis, sin[:, None], out=np.zeros_like(axis), where=sin[:, None] > 1e-12)
    cross = np.zeros((len(a), 3, 3))
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    cross -= cross.transpose(0, 2, 1)
    return np.eye(3) + sin[:, None, None] * cross + (1.0 - cos)[:, None, None] * cross @ cross


def reference_view(pixels: np.ndarray, camera_matrix: np.ndarray,
                   reference: CameraIntrinsics = H36M_REFERENCE_CAMERA,
                   pelvis_angles_deg=H36M_PELVIS_ANGLES_DEG) -> tuple[np.ndarray, np.ndarray]:
    """``(reference_pixels, rotations)``: people ``(N, 17, 2)`` (H36M order), pixels of an ideal
    pinhole camera with square pixels and no skew (K ``camera_matrix``, see
    :func:`square_pixel_camera`), as ``reference`` sees the same rays, each person's camera turned
    (``rotations``, ``(N, 3, 3)``, camera -> its view) just enough that their pelvis lies within
    ``pelvis_angles_deg`` of its axis (the identity for people already there). A pose lifted from a
    view is turned back into the camera's axes by the transpose.

    The lifter's input is pixels over the image's width (:func:`normalize_screen`), which holds the
    camera's focal length and principal point: it reads a pose from where and how large a body is in
    Human3.6M's images. S9 seen through other cameras (the same people at the same places) came out
    at 82 mm MPJPE for a 1920 x 1080 image with f = 1380 px, 111 mm through a lens of half Human3.6M's
    focal length, 101-175 mm in a 700 x 700 region of interest off the image's centre, 134-173 mm
    turned 30-40 degrees off the axis, instead of 40 mm; seen as here, at 40.4 mm in the first three
    and 52-54 mm off axis (``benchmarks/bench_cameras.py``). Turning every person to the axis is
    worse (80 mm): the lifter learned where in the image people stood."""
    k = np.asarray(camera_matrix, dtype=np.float64)
    pixels = np.asarray(pixels, dtype=np.float64)
    rays = np.concatenate([(pixels - k[:2, 2]) / np.array([k[0, 0], k[1, 1]]),
                           np.ones(pixels.shape[:-1] + (1,))], axis=-1)
    centre = np.concatenate([person_centre(rays[..., :2]), np.ones((len(rays), 1))], axis=-1)
    low, high = np.radians(pelvis_angles_deg[0]), np.radians(pelvis_angles_deg[1])
    within = np.concatenate([np.tan(np.clip(np.arctan(centre[:, :2]), low, high)), centre[:, 2:]], axis=-1)
    rotations = _rotations_between(centre, within)
    turned = rays @ rotations.transpose(0, 2, 1)
    with np.errstate(divide="ignore", invalid="ignore"):       # a ray turned behind the view: inf / NaN
        seen = turned[..., :2] / turned[..., 2:3]
    return seen * np.array([reference.fx, reference.fy]) + np.array([reference.cx, reference.cy]), rotations


def lifter_input_in_reference_view(pixels: np.ndarray, camera_matrix: np.ndarray,
                                   pelvis_angles_deg=H36M_PELVIS_ANGLES_DEG) -> tuple[np.ndarray, np.ndarray]:
    """``(normalized, rotations)``: the lifter's input for people ``(N, 17, 2)`` of the camera
    ``camera_matrix`` (see :func:`reference_view`; ``pelvis_angles_deg`` from the lifter's
    :class:`LifterInputDomain`), and the rotations whose transpose turns the lifted poses back into
    the camera's axes (``pose @ rotations``)."""
    seen, rotations = reference_view(pixels, camera_matrix, pelvis_angles_deg=pelvis_angles_deg)
    return normalize_screen(seen, H36M_REFERENCE_CAMERA.width, H36M_REFERENCE_CAMERA.height), rotations


def normalize_screen(pixels: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixels -> the model's input space: ``uv / w * 2 - [1, h / w]``.

    x spans [-1, 1] and y keeps the aspect ratio, so the image's own size must
    be used (the most common cause of "random" 3D output in lifting models).
    """
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    pixels = np.asarray(pixels, dtype=np.float64)
    offset = np.stack(np.broadcast_arrays(np.ones_like(height), height / width), axis=-1)
    return pixels / width[..., None, None] * 2.0 - offset[..., None, :]


# The person scales (:func:`person_scale`) the shipped weights were trained on: the 10th and 98th
# percentile over the Human3.6M training subjects S1, S5, S6, S7, S8, all four cameras (people 3.3
# to 6.9 m away in a 1000 px image; printed by benchmarks/bench_distance.py). The lift is only as
# good as that range: the same S9 people twice as far away came out at 155 mm MPJPE instead of
# 40, at half the distance at 75 mm (the model reads the person's size in the image as part of
# the pose), and a robot sees people from 1 to 20 m, with lenses of any focal length. Zoomed into
# the range, 72 and 57 mm; at the training distances S9 went from 39.76 to 39.86 mm (people in
# the training data's outer 12 % are zoomed too; the 10th-95th percentile cost S9 +0.24 mm).
H36M_PERSON_SCALE_RANGE = (0.1347, 0.2841)
PELVIS_AND_HIPS = [H36M_17.index(name) for name in ("pelvis", "right_hip", "left_hip")]


def _finite_float(value: int | float) -> bool:
    """Whether a number is a finite float64. Not np.isfinite: JSON's 10**400 is a Python int that
    numpy's ufunc refuses with a TypeError ("ufunc 'isfinite' not supported"), which became the
    weights file's error message."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass(frozen=True)
class LifterInputDomain:
    """Where the people a lifter's weights learned from stood, as the lifter's input shows them:
    the angles of the pelvis' ray off the reference camera's axis (``((low_x, low_y), (high_x,
    high_y))``, degrees, as :func:`reference_view` bounds them) and their size in the input
    (:func:`person_scale`). The pipeline turns and zooms people outside it into it. It belongs to
    the weights (their JSON's ``input_domain``): weights trained with people placed at more
    distances and angles (``training.train --placement-prob``) know a wider one."""
    pelvis_angles_deg: tuple[tuple[float, float], tuple[float, float]] = H36M_PELVIS_ANGLES_DEG
    person_scale_range: tuple[float, float] = H36M_PERSON_SCALE_RANGE

    def __post_init__(self):
        (low_x, low_y), (high_x, high_y) = self.pelvis_angles_deg
        low, high = self.person_scale_range
        angles, scales = (low_x, low_y, high_x, high_y), (low, high)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and _finite_float(v)
                   for v in angles + scales):
            raise ValueError(f"input domain: every bound must be a finite number, got {self!r:.160}")
        if not (-80.0 <= low_x <= high_x <= 80.0 and -80.0 <= low_y <= high_y <= 80.0):
            raise ValueError(f"input domain: pelvis angles {self.pelvis_angles_deg} must be "
                             "((low_x, low_y), (high_x, high_y)) with low <= high, within 80 degrees of the axis")
        if not 0.0 < low < high:
            raise ValueError(f"input domain: person scale range {self.person_scale_range} must be (low, high), "
                             "0 < low < high")

    def to_dict(self) -> dict:
        return {"pelvis_angles_deg": [list(a) for a in self.pelvis_angles_deg],
                "person_scale_range": list(self.person_scale_range)}

    @classmethod
    def from_dict(cls, data: dict) -> "LifterInputDomain":
        """From :meth:`to_dict`'s form; ``ValueError`` (or ``TypeError``) saying what is wrong."""
        if not isinstance(data, dict) or set(data) != {"pelvis_angles_deg", "person_scale_range"}:
            raise ValueError(f"input domain must have exactly pelvis_angles_deg and person_scale_range, got "
                             f"{data!r:.120}")
        angles, scales = data["pelvis_angles_deg"], data["person_scale_range"]
        if not (isinstance(angles, list) and len(angles) == 2 and all(isinstance(a, list) and len(a) == 2
                                                                      for a in angles)):
            raise ValueError(f"input domain: pelvis_angles_deg must be [[low_x, low_y], [high_x, high_y]], "
                             f"got {angles!r:.120}")
        if not (isinstance(scales, list) and len(scales) == 2):
            raise ValueError(f"input domain: person_scale_range must be [low, high], got {scales!r:.120}")
        return cls(tuple(tuple(a) for a in angles), tuple(scales))


# The shipped Human3.6M weights' domain, and that of any weights file that does not state one.
H36M_INPUT_DOMAIN = LifterInputDomain()


def person_centre(normalized: np.ndarray) -> np.ndarray:
    """``(N, 17, 2)`` joints in the H36M order -> ``(N, 2)`` the per-axis median of the pelvis and
    the two hips: the pelvis, unless one of the three is far off (a detector's outlier)."""
    return np.median(np.asarray(normalized, dtype=np.float64)[:, PELVIS_AND_HIPS], axis=1)


def person_scale(normalized: np.ndarray) -> np.ndarray:
    """``(N, 17, 2)`` :func:`normalize_screen` joints in the H36M order -> ``(N,)`` the median
    distance of the 16 joints other than the pelvis from :func:`person_centre`: how large the
    person is in the model's input space, unmoved by any one joint far off. (The median distance
    of all joints from their per-axis median, which needs no layout, varies with the pose: people
    16 m away were lifted 0.20 m off with it instead of 0.10 m.)"""
    normalized = np.asarray(normalized, dtype=np.float64)
    return _scale_about(normalized, person_centre(normalized))


def _scale_about(normalized: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.median(np.linalg.norm(normalized[:, 1:] - centre[:, None], axis=-1), axis=1)


def clamp_person_scale(normalized: np.ndarray, scale_range: tuple[float, float] = H36M_PERSON_SCALE_RANGE
                       ) -> np.ndarray:
    """Each person of ``normalized`` (as :func:`person_scale` takes) whose scale lies outside
    ``scale_range`` zoomed about :func:`person_centre` to the nearer end of it; the others unchanged.

    Zooming about a point of the body is what the camera sees of the same person moved along that
    point's ray to where they have that size (up to perspective within the body, which shrinks with
    distance): the root-relative pose is the same, and the lift sees a size it was trained on. The
    root solve places the person with the pixels as detected, so the distance is kept."""
    normalized = np.asarray(normalized)
    low, high = scale_range
    centre = person_centre(normalized)
    scale = _scale_about(normalized.astype(np.float64), centre)
    outside = np.isfinite(scale) & (scale > 0) & ((scale < low) | (scale > high))
    if not outside.any():
        return normalized
    out = normalized.copy()
    zoom = np.clip(scale[outside], low, high) / scale[outside]
    centre = centre[outside, None]
    out[outside] = centre + (normalized[outside] - centre) * zoom[:, None, None]
    return out


# Where a person's centre may lie in the lifter's input when no intrinsics are known: within the
# image the lifter learned from (H36M_REFERENCE_CAMERA's, about square), +-1 in x and +-1.002 in y.
# normalize_screen spans +-height/width in y, so in an image taller than wide people lie beyond it,
# and the lifter shrinks what it has not seen: a person at the top of a 1000 x 3000 image was lifted
# at 0.63 of their size, of a 1000 x 1000000 one at 0.003 (5 mm tall), of a 1000 x 2^31 one as
# NaN, all from the same pixels. (With intrinsics, reference_view bounds the person's ray instead.)
SCREEN_CENTRE_BOUND = (1.0, H36M_REFERENCE_CAMERA.height / H36M_REFERENCE_CAMERA.width)


def clamp_person_position(normalized: np.ndarray, bound: tuple[float, float] = SCREEN_CENTRE_BOUND) -> np.ndarray:
    """Each person of ``normalized`` (:func:`normalize_screen` joints, H36M order) whose
    :func:`person_centre` lies more than ``bound`` (x, y) from the image's centre moved, whole, to
    the nearest place within it; the others unchanged. A shift keeps every joint's offset from the
    centre, the root-relative pose the lifter reads from; the lifter sees the person where people of
    its training images stood."""
    normalized = np.asarray(normalized)
    centre = person_centre(normalized)
    limit = np.asarray(bound, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        shift = np.where(np.isfinite(centre), np.clip(centre, -limit, limit) - centre, 0.0)
    if not shift.any():
        return normalized
    return normalized + shift[:, None, :].astype(normalized.dtype)


def denormalize_screen(normalized: np.ndarray, width: float, height: float) -> np.ndarray:
    """Inverse of :func:`normalize_screen`."""
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    offset = np.stack(np.broadcast_arrays(np.ones_like(height), height / width), axis=-1)
    return (np.asarray(normalized) + offset[..., None, :]) * width[..., None, None] / 2.0


# ------------------------------------------------------------------------------------ lens distortion
# The lens models of sensor_msgs/CameraInfo (sensor_msgs/distortion_models.hpp) and what CameraInfo.d
# holds for each, in its order; fewer given = the rest zero (OpenCV's 4-coefficient plumb_bob).
DISTORTION_COEFFICIENTS = {
    "plumb_bob": ("k1", "k2", "p1", "p2", "k3"),
    "rational_polynomial": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
    "equidistant": ("k1", "k2", "k3", "k4"),
}
# Coefficients act on normalised image coordinates (|x| ~ 1 at 45 degrees): a plumb_bob or fisheye
# lens needs |k| < 2, a rational polynomial fit of a very wide lens tens. 1e4 is no lens's; a
# calibration holding it (an uninitialised or corrupted message) is refused like an implausible K.
MAX_DISTORTION_COEFFICIENT = 1e4
# Newton's method on the forward model: a lens's inverse converges in 3-6 steps within its image.
_UNDISTORT_ITERATIONS = 20
# Converged: the forward model of the answer is within this (normalised units; 1e-10 x a focal
# length of 1e6 px is 1e-4 px) of the observed point.
_UNDISTORT_TOLERANCE = 1e-10
_UNDISTORT_STEP_HALVINGS = 30


@dataclass(frozen=True)
class LensDistortion:
    """A lens's distortion as CameraInfo gives it: its ``model`` (a key of
    :data:`DISTORTION_COEFFICIENTS`) and ``coefficients`` in CameraInfo.d's order, one per name.
    ``max_radius``: the ideal normalised radius (tan of the angle off axis) up to which the model
    maps outward as a lens does; past it a polynomial fit folds back (:func:`fold_radius`)."""
    model: str
    coefficients: tuple[float, ...]
    max_radius: float = np.inf


def lens_distortion(model: str, coefficients) -> LensDistortion | None:
    """The distortion of CameraInfo's ``distortion_model`` and ``d``, or None when there is nothing
    to undo (``d`` empty or all zero: an undistorted camera, or a rectified image's CameraInfo).

    Raises ``ValueError`` with the reason for non-finite coefficients, coefficients no lens has
    (beyond :data:`MAX_DISTORTION_COEFFICIENT`), an unknown model with non-zero coefficients (a
    lens nothing here can undo), and more non-zero coefficients than the model takes."""
    d = np.asarray(coefficients, dtype=np.float64).ravel()
    if not np.all(np.isfinite(d)):
        raise ValueError(f"distortion coefficients contain NaN or inf: {_listed(d)}")
    if not np.any(d):
        return None
    names = DISTORTION_COEFFICIENTS.get(model)
    if names is None:
        raise ValueError(f"unknown distortion model {_listed(model)} with coefficients {_listed(d)}: cannot "
                         f"undistort the keypoints (known: {', '.join(DISTORTION_COEFFICIENTS)})")
    if np.any(d[len(names):]):
        raise ValueError(f"{model} takes {len(names)} distortion coefficients ({' '.join(names)}), "
                         f"got {len(d)} with non-zero ones past them: {_listed(d)}")
    if np.max(np.abs(d)) > MAX_DISTORTION_COEFFICIENT:
        raise ValueError(f"distortion coefficients {_listed(d)} are no real lens's (beyond "
                         f"{MAX_DISTORTION_COEFFICIENT:g} in magnitude)")
    coefficients = tuple(float(v) for v in np.pad(d[:len(names)], (0, len(names) - min(len(d), len(names)))))
    return LensDistortion(model, coefficients, fold_radius(model, coefficients))


# Undistorting a real lens's image moves no point towards the principal point to less than this
# fraction of its distance: the strongest pincushion of real lenses (telephoto zooms) is a few
# percent at the image's edge, and barrel or fisheye lenses move points outward. A CameraInfo whose
# d is mis-scaled (k1 = 1e4, within MAX_DISTORTION_COEFFICIENT) undid the image to a tenth of its
# size, and people were placed 34-40 m away instead of 5.3 m.
MIN_UNDISTORTED_FRACTION = 0.5
# Where the lens is judged over the image: the ellipse inscribed in it and three smaller ones, at
# 16 angles. A polynomial fit may fold past the calibration pattern's reach (joints there are
# missing, see fold_radius), as a real k3 < 0 does at a wide image's corners or a fisheye's fit
# towards 90 degrees: it must be undone over the inner half (a k1 of -1e4 folds 7 px from the
# principal point, and every person was dropped as out_of_image, the CameraInfo taken).
_CHECKED_ANGLES = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)
_CHECKED_RADII = (0.25, 0.5, 0.75, 1.0)
_UNDONE_RADII = 0.5


def check_lens_over_image(lens: LensDistortion, camera_matrix: np.ndarray, image_size: tuple[float, float]) -> None:
    """``ValueError`` (with the reason) when ``lens`` is no calibration of the ``image_size``
    (width, height) image of K ``camera_matrix``: a point of the ellipse inscribed in the image
    within half its size of its centre cannot be undistorted (the model folds there, or Newton's
    method does not converge; a fisheye's points 90 degrees or more off axis aside), or a point of
    the ellipse is undistorted to less than
    :data:`MIN_UNDISTORTED_FRACTION` of its distance from the principal point."""
    problem = _lens_problem_over_image(lens, tuple(np.asarray(camera_matrix, dtype=np.float64).ravel()),
                                       (float(image_size[0]), float(image_size[1])))
    if problem is not None:
        raise ValueError(problem)


@functools.lru_cache(maxsize=16)      # as fold_radius: 0.5 ms a CameraInfo, at the camera's frame rate
def _lens_problem_over_image(lens: LensDistortion, k_entries: tuple[float, ...],
                             image_size: tuple[float, float]) -> str | None:
    """Why :func:`check_lens_over_image` refuses ``lens`` over the image (K's nine entries, row by
    row), or None."""
    k = np.array(k_entries).reshape(3, 3)
    width, height = image_size
    radii = np.asarray(_CHECKED_RADII)[:, None]
    pixels = np.stack([width / 2 + radii * (width / 2) * np.cos(_CHECKED_ANGLES),
                       height / 2 + radii * (height / 2) * np.sin(_CHECKED_ANGLES)], axis=-1).reshape(-1, 2)
    observed = _to_normalized(pixels, k)
    undone = undistort_normalized(observed, lens)
    distance, undone_distance = np.linalg.norm(observed, axis=-1), np.linalg.norm(undone, axis=-1)
    lost = np.isnan(undone_distance) & (np.repeat(radii[:, 0], len(_CHECKED_ANGLES)) <= _UNDONE_RADII)
    if lens.model == "equidistant" and np.isinf(lens.max_radius):
        # a fisheye images directions past 90 degrees, which no pinhole camera sees: missing joints
        beyond_90, _ = _equidistant_theta(np.pi / 2, lens.coefficients)
        lost &= distance < beyond_90
    if lost.any():
        first = pixels[np.argmax(lost)]
        return (f"{lens.model} distortion {_listed(lens.coefficients)} cannot be undone at pixel "
                f"({first[0]:.0f}, {first[1]:.0f}) of the {width:g}x{height:g} image (the model folds "
                "inside it): no real lens's calibration of this image")
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = undone_distance / distance
    shrunk = fraction < MIN_UNDISTORTED_FRACTION        # NaN (the principal point, a lost point): False
    if shrunk.any():
        worst = int(np.nanargmin(np.where(shrunk, fraction, np.nan)))
        return (f"{lens.model} distortion {_listed(lens.coefficients)} undoes pixel ({pixels[worst][0]:.0f}, "
                f"{pixels[worst][1]:.0f}) of the {width:g}x{height:g} image to {fraction[worst]:.2g} of its "
                f"distance from the principal point (a real lens: more than {MIN_UNDISTORTED_FRACTION:g}); "
                "people would be placed that many times too far: mis-scaled coefficients?")
    return None


def _listed(values, most: int = 14) -> str:
    """``values`` for a message, cut after ``most`` items: CameraInfo.d and distortion_model are
    unbounded, and a message a hostile publisher fills with a million of them is logged."""
    if isinstance(values, str):
        return repr(values if len(values) <= 4 * most else values[:4 * most] + "...")
    values = np.asarray(values).tolist()
    return str(values) if len(values) <= most else f"{str(values[:most])[:-1]}, ... ({len(values)} in all)]"


# Radii (normalised, tan of the angle off axis) where fold_radius looks for the fold: 0.06 to 89.9
# degrees off axis, 0.1 % apart.
_FOLD_SEARCH_RADII = np.geomspace(1e-3, 1e3, 14000)


@functools.lru_cache(maxsize=16)      # a camera sends the same CameraInfo at its frame rate
def fold_radius(model: str, coefficients: tuple[float, ...]) -> float:
    """The ideal normalised radius where the model's distorted radius stops growing (inf: not before
    89.9 degrees off axis). A polynomial fit is only good where its calibration images had points;
    past its fold two directions map to one pixel, and Newton's method can find the wrong one
    (a point near a corner undistorted to the opposite side of the image)."""
    r = _FOLD_SEARCH_RADII
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if model == "equidistant":
            theta = np.arctan(r)
            _, slope = _equidistant_theta(theta, coefficients)
        else:
            # the radial profile alone: r * radial(r^2) and its derivative (tangential terms are tiny)
            (grows, _), ((slope, _), _) = _brown_conrady(r, np.zeros_like(r), coefficients[:2] + (0.0, 0.0)
                                                         + coefficients[4:], jacobian=True)
            slope = np.where(grows > 0, slope, np.nan)
    folded = ~(slope > 0)
    return float(r[max(np.argmax(folded) - 1, 0)]) if folded.any() else np.inf


def _brown_conrady(x: np.ndarray, y: np.ndarray, coefficients: tuple[float, ...], jacobian: bool = False):
    """plumb_bob / rational_polynomial (OpenCV's model, k4..k6 zero for plumb_bob): normalised
    ``x``, ``y`` -> distorted ``(xd, yd)``, and with ``jacobian`` also ``((dxd/dx, dxd/dy),
    (dyd/dx, dyd/dy))``."""
    k1, k2, p1, p2, k3, k4, k5, k6 = (tuple(coefficients) + (0.0,) * 8)[:8]
    xx, yy, xy = x * x, y * y, x * y
    r2 = xx + yy
    numerator = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    denominator = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
    radial = numerator / denominator
    distorted = (x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * xx),
                 y * radial + p1 * (r2 + 2.0 * yy) + 2.0 * p2 * xy)
    if not jacobian:
        return distorted
    # d radial / d r2, then the chain rule through r2 = x^2 + y^2
    d_radial = ((k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)) * denominator
                - numerator * (k4 + r2 * (2.0 * k5 + 3.0 * k6 * r2))) / (denominator * denominator)
    cross = 2.0 * (xy * d_radial + p1 * x + p2 * y)
    return distorted, ((radial + 2.0 * xx * d_radial + 2.0 * p1 * y + 6.0 * p2 * x, cross),
                       (cross, radial + 2.0 * yy * d_radial + 6.0 * p1 * y + 2.0 * p2 * x))


def _radial_factor(r2: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """The radial factor of :func:`_brown_conrady` at squared radius ``r2``."""
    k1, k2, _, _, k3, k4, k5, k6 = (tuple(coefficients) + (0.0,) * 8)[:8]
    return (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))


def _equidistant_theta(theta: np.ndarray, coefficients: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The fisheye model's distorted angle ``theta_d(theta)`` and its derivative."""
    k1, k2, k3, k4 = coefficients
    t2 = theta * theta
    theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    slope = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
    return theta_d, slope


def distort_normalized(xy: np.ndarray, lens: LensDistortion) -> np.ndarray:
    """The lens's forward model: ideal normalised image coordinates ``(..., 2)`` (x/z, y/z) -> the
    distorted ones (as cv2.projectPoints / cv2.fisheye.projectPoints before the camera matrix)."""
    xy = np.asarray(xy, dtype=np.float64)
    if lens.model != "equidistant":
        return np.stack(_brown_conrady(xy[..., 0], xy[..., 1], lens.coefficients), axis=-1)
    r = np.linalg.norm(xy, axis=-1, keepdims=True)
    theta_d, _ = _equidistant_theta(np.arctan(r), lens.coefficients)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, xy * (theta_d / r), xy)


def undistort_normalized(xy_distorted: np.ndarray, lens: LensDistortion) -> np.ndarray:
    """The inverse of :func:`distort_normalized`, by Newton's method (as cv2.undistortPoints /
    cv2.fisheye.undistortPoints iterate). NaN stays NaN; a point the model cannot undo is NaN,
    never inf or a wrong answer: no convergence, or the answer lies past the model's fold
    (``lens.max_radius``), or behind the camera (fisheye, 90 degrees or more off axis)."""
    observed = np.asarray(xy_distorted, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if lens.model == "equidistant":
            xy = _undistort_equidistant(observed, lens.coefficients, lens.max_radius)
        else:
            xy = _undistort_brown_conrady(observed, lens.coefficients, lens.max_radius)
        inside = np.linalg.norm(xy, axis=-1) <= lens.max_radius        # NaN: False
    return np.where(inside[..., None], xy, np.nan)


def _undistort_brown_conrady(observed: np.ndarray, coefficients: tuple[float, ...],
                             max_radius: float = np.inf) -> np.ndarray:
    xd, yd = observed[..., 0], observed[..., 1]
    # start where the radial distortion at the observed point alone puts it (OpenCV's first step),
    # within the model's valid radius: a start past its fold or pole (an observed point beyond it,
    # where the radial factor is negative) is on a branch the steps never leave
    radial = _radial_factor(xd * xd + yd * yd, coefficients)
    start = np.isfinite(radial) & (radial > 0)
    x, y = np.where(start, xd / radial, xd), np.where(start, yd / radial, yd)
    inward = np.minimum(1.0, 0.99 * max_radius / np.hypot(x, y))    # NaN for a NaN point: stays NaN
    x, y = x * inward, y * inward
    for iteration in range(_UNDISTORT_ITERATIONS + 1):
        (fx, fy), ((a, b), (c, d)) = _brown_conrady(x, y, coefficients, jacobian=True)
        ex, ey = fx - xd, fy - yd
        # NaN compares False: a missing joint is not waited for. Converged points stay where they
        # are: each joint's answer is its own, whatever the batch.
        pending = (np.abs(ex) > _UNDISTORT_TOLERANCE) | (np.abs(ey) > _UNDISTORT_TOLERANCE)
        if iteration == _UNDISTORT_ITERATIONS or not pending.any():
            break
        det = a * d - b * c
        step_x, step_y = (d * ex - b * ey) / det, (a * ey - c * ex) / det
        # Newton's step, halved until it lowers the error: on a steep rational_polynomial profile
        # (near its denominator's pole) the full step overshot and never came back, and the joint
        # was dropped though the lens maps a point inside its valid radius there. And halved until
        # it stays within that radius: from a start near a fold, where the profile is flat, a step
        # crossed the centre, the next landed past the fold, on the branch where the profile comes
        # back down to the observed radius, and the joint was dropped (a plumb_bob fit with k3 < 0:
        # points from 55 degrees off axis on, its fold at 66)
        error, fraction = np.hypot(ex, ey), np.ones_like(ex)
        for _ in range(_UNDISTORT_STEP_HALVINGS):
            new_x, new_y = x - fraction * step_x, y - fraction * step_y
            gx, gy = _brown_conrady(new_x, new_y, coefficients)
            worse = pending & ~((np.hypot(gx - xd, gy - yd) < error) & (np.hypot(new_x, new_y) <= max_radius))
            if not worse.any():
                break
            fraction = np.where(worse, fraction / 2, fraction)
        x = np.where(pending, new_x, x)
        y = np.where(pending, new_y, y)
    # det > 0: the answer lies where the lens maps outward as it should
    solved = (np.abs(ex) <= _UNDISTORT_TOLERANCE) & (np.abs(ey) <= _UNDISTORT_TOLERANCE) & (a * d - b * c > 0)
    return np.where(solved[..., None], np.stack([x, y], axis=-1), np.nan)


def _undistort_equidistant(observed: np.ndarray, coefficients: tuple[float, ...],
                           max_radius: float = np.inf) -> np.ndarray:
    theta_d = np.linalg.norm(observed, axis=-1)
    # The angles the model is valid for: up to its fold and short of 90 degrees (no pinhole ray
    # there). Newton's method started at theta_d itself (OpenCV's start) and, for a lens that
    # images an angle further out than it is, that start lay past the fold or past 90 degrees,
    # on a branch the steps never left: the joint was dropped though the lens maps a point
    # within its valid angles there (a fit folding at 73.5 degrees: points from 66 degrees on).
    limit = min(float(np.arctan(max_radius)), np.pi / 2)
    # the model grows up to the limit: a point imaged further out than the limit is no point within
    # it (NaN, not iterated: the steps towards it took 25 ms a frame of 64 people)
    reach, _ = _equidistant_theta(limit, coefficients)
    theta = np.where(theta_d <= reach, np.minimum(theta_d, 0.99 * limit), np.nan)     # NaN stays NaN
    for _ in range(_UNDISTORT_ITERATIONS):
        value, slope = _equidistant_theta(theta, coefficients)
        residual = value - theta_d
        pending = np.abs(residual) > _UNDISTORT_TOLERANCE
        if not pending.any():
            break
        # Newton's step, halved until it lowers the residual and stays within the valid angles
        step, error, fraction = residual / slope, np.abs(residual), np.ones_like(residual)
        for _ in range(_UNDISTORT_STEP_HALVINGS):
            new = theta - fraction * step
            worse = pending & ~((np.abs(_equidistant_theta(new, coefficients)[0] - theta_d) < error)
                                & (new >= 0.0) & (new <= limit))
            if not worse.any():
                break
            fraction = np.where(worse, fraction / 2, fraction)
        theta = np.where(pending, new, theta)
    value, slope = _equidistant_theta(theta, coefficients)
    solved = (np.abs(value - theta_d) <= _UNDISTORT_TOLERANCE) & (slope > 0) & (theta >= 0) & (theta < np.pi / 2)
    scale = np.where(theta_d > 0, np.tan(theta) / theta_d, 1.0)
    return np.where((solved & np.isfinite(scale))[..., None], observed * scale[..., None], np.nan)


def _to_normalized(pixels: np.ndarray, k: np.ndarray) -> np.ndarray:
    y = (pixels[..., 1] - k[1, 2]) / k[1, 1]
    return np.stack([(pixels[..., 0] - k[0, 2] - k[0, 1] * y) / k[0, 0], y], axis=-1)


def _to_pixels(xy: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.stack([k[0, 0] * xy[..., 0] + k[0, 1] * xy[..., 1] + k[0, 2],
                     k[1, 1] * xy[..., 1] + k[1, 2]], axis=-1)


def undistort_pixels(pixels: np.ndarray, camera_matrix: np.ndarray, lens: LensDistortion | None,
                     new_camera_matrix: np.ndarray | None = None) -> np.ndarray:
    """Pixels ``(..., 2)`` of a camera's raw (distorted) image -> where an ideal pinhole camera with
    ``new_camera_matrix`` (default: the same ``camera_matrix`` K) sees those points
    (cv2.undistortPoints with ``P = new_camera_matrix``; R the identity: the camera's own optical
    frame). NaN (missing) stays NaN, a point the lens model cannot undo becomes NaN (see
    :func:`undistort_normalized`); ``lens`` None only moves the pixels to ``new_camera_matrix``
    (without one, returns ``pixels``).

    K may be the one image_geometry moves to a published region of interest or binned image:
    pixels and principal point move together, so normalised coordinates, which the distortion acts
    on, are those of the full sensor, and undistorting there (undo ROI and binning, undistort with
    the sensor's K, apply them again) gives the same pixels."""
    pixels = np.asarray(pixels, dtype=np.float64)
    k = np.asarray(camera_matrix, dtype=np.float64)
    new_k = k if new_camera_matrix is None else np.asarray(new_camera_matrix, dtype=np.float64)
    if lens is None and np.array_equal(new_k, k):
        return pixels
    with np.errstate(invalid="ignore", over="ignore"):          # inf and absurd input: NaN, quietly
        normalized = _to_normalized(pixels, k)
        return _to_pixels(normalized if lens is None else undistort_normalized(normalized, lens), new_k)


def distort_pixels(pixels: np.ndarray, camera_matrix: np.ndarray, lens: LensDistortion | None) -> np.ndarray:
    """The inverse of :func:`undistort_pixels`: ideal pinhole pixels -> the raw image's."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if lens is None:
        return pixels
    k = np.asarray(camera_matrix, dtype=np.float64)
    return _to_pixels(distort_normalized(_to_normalized(pixels, k), lens), k)
