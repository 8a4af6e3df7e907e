"""Each person's root (pelvis) position from an aligned depth image (ROS-free).

A depth camera measures the distance to the body *surface*; the pelvis joint
(the hip-joint centre the lifter's skeletons are rooted at) lies inside the
body, about 0.1 m behind the surface seen from the front or back. So:

1. read the depth robustly around the pelvis pixel: the median of the valid
   values (not 0, not NaN/inf, inside ``depth_range``) in a ``window`` x
   ``window`` square centred on it, pooled with the same squares around both
   hips when they are given. The pelvis pixel lies between the hips, often on
   loose clothing or, when the person is side-on or the 2D estimate is off,
   on the background; the median of the pooled samples follows the body as
   long as most of them fall on it;
2. back-project the pelvis pixel through the camera matrix to that depth
   (depth images hold z, the distance along the optical axis, not the range);
3. move ``body_offset`` metres further along the viewing ray (surface -> joint).

Conventions: camera optical frame (x right, y down, z forward, metres);
pixels with the origin at the image's top-left corner, (x, y) = (column, row);
the depth image registered to the image the keypoints come from (same size and
camera matrix; pass ``image_size`` when the depth image has another
resolution than the image the pixels and K refer to: the same view scaled, see
:func:`check_depth_registration`). ``uint16`` depth is
millimetres (the ``16UC1`` convention of ROS depth drivers), float depth is
metres (``32FC1``). :func:`depth_image_to_array` reads a ``sensor_msgs/Image``'s
fields (passed one by one, so nothing here imports rclpy).
"""
from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from . import timeline
from .camera import MIN_IMAGE_SIDE_PX, is_resized_view
from .frame_ids import MAX_CAMERAS, RecentlySeen, other_camera_frame, tf2_frame_id
from .image import raw_rows
from .root_solver import validate_camera_matrix

DEFAULT_BODY_OFFSET_M = 0.10     # body surface -> pelvis joint, metres
DEFAULT_DEPTH_RANGE_M = (0.1, 20.0)
DEPTH_HISTORY = 15               # depth images of a camera kept for pairing by stamp: 0.5 s at 30 Hz
# ... and at most this many bytes of all cameras' (the newest is always kept): 15 images of a 4K 32FC1 depth
# camera are 500 MB, of an 8K one 2 GB. 256 MiB keeps all 15 up to 1920 x 1080 32FC1 (8 MB each)
# and 8 of a 4K camera's, still a quarter of a second at 30 Hz: a detector's latency back.
DEPTH_HISTORY_BYTES = 256 * 2**20
# While a camera's keypoint stamps stand still (a paused simulation or bag clock stamping a live
# camera), a stamp tells nothing of when a depth image was taken: once the depth stream stopped, its
# last image (stamped that instant) was as near as ever to every later frame, and placed people who
# walked on where they had stood, ROOT_FROM_DEPTH for good, nothing counted. After more than this many
# keypoints frames at one stamp since the camera's last depth image came, none is paired (stale_depth):
# about a second of camera frames, as the tracker's MAX_STALLED_MISSES.
MAX_STALLED_FRAMES = 30


# A 32FC1 depth image whose typical reading is past this is taken for millimetres written as floats
# (REP 118: 32FC1 depth is metres; a driver or a conversion that keeps a 16UC1 image's millimetres
# makes one): depth cameras read up to some tens of metres, and every reading of such an image lay
# outside depth_range, so each person was placed from the intrinsics alone with nothing counted.
MAX_TYPICAL_DEPTH_M = 100.0
# depth encoding -> numpy dtype (little endian; the message's is_bigendian flips it)
_DEPTH_ENCODINGS = {"16UC1": "u2", "mono16": "u2", "32FC1": "f4"}


class DepthImageError(ValueError):
    """A depth image that is not used, and which ``kind`` of fault (``encoding``, ``layout``,
    ``units``, ``registration``, ``frame``; the node adds the header's drop reasons): each kind has
    its own log throttle, so that a stream of one kind does not hide the warning of another for the
    throttle's period."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def depth_image_to_array(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False
                         ) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` depth fields -> ``(H, W)`` ``uint16`` (16UC1/mono16, millimetres) or
    ``float32`` (32FC1, metres), a copy in native byte order. :class:`DepthImageError` for another
    encoding, a zero size, a step shorter than a row, data shorter than ``step * height`` or float
    depth in millimetres."""
    if encoding not in _DEPTH_ENCODINGS:
        raise DepthImageError(f"unsupported depth encoding {encoding!r}; supported: {', '.join(_DEPTH_ENCODINGS)}",
                              "encoding")
    dtype = np.dtype((">" if is_bigendian else "<") + _DEPTH_ENCODINGS[encoding])
    try:
        rows = raw_rows(height, width, step, data, dtype.itemsize, encoding, what="depth image")
    except ValueError as exc:
        raise DepthImageError(str(exc), "layout") from None
    height, width = rows.shape[0], int(width)
    depth = np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(dtype.newbyteorder("="))
    if depth.dtype.kind == "f":
        check_float_depth_units(depth)
    return depth


def check_float_depth_units(depth: np.ndarray) -> None:
    """:class:`DepthImageError` when the median valid reading of a float (metres) depth image, over a grid of
    at most ~4096 of its pixels, is past :data:`MAX_TYPICAL_DEPTH_M`: millimetres, not metres."""
    step = max(1, int(np.sqrt(depth.size / 4096)))
    sample = depth[::step, ::step]
    sample = sample[np.isfinite(sample) & (sample > 0)]
    if sample.size and (typical := float(np.median(sample))) > MAX_TYPICAL_DEPTH_M:
        raise DepthImageError(f"a 32FC1 depth image holds metres (REP 118), but its median reading is {typical:g}: "
                              f"millimetres? (convert them to metres, or publish 16UC1)", "units")


def checked_depth_image(depth_image: np.ndarray) -> np.ndarray:
    """``depth_image`` as an ``(H, W)`` array, unconverted; ``ValueError`` for another shape, an
    empty image, or a dtype that is neither ``uint16`` (millimetres) nor float (metres)."""
    depth = np.asarray(depth_image)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth image must be (H, W), got shape {depth.shape}")
    if depth.dtype != np.uint16 and not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth image must be uint16 (millimetres) or float (metres), got {depth.dtype}")
    return depth


def check_depth_registration(depth_shape: tuple[int, ...], image_size: tuple[float, float]) -> None:
    """:class:`DepthImageError` (with both sizes) when a depth image of ``depth_shape`` (height, width) cannot be
    registered to the image of ``image_size`` (width, height) it is said to be registered to by
    scaling: the two aspect ratios differ by more than rounding each side to whole pixels explains
    (a half-size depth image of an odd-sized image is registered). Such a depth image holds another
    view (a depth stream not aligned to the colour camera, another sensor mode): scaled anyway, it was
    read beside the people, and placed them metres off."""
    height, width = int(depth_shape[0]), int(depth_shape[1])
    image_width, image_height = float(image_size[0]), float(image_size[1])
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        # the rounding below explains any aspect ratio at a few pixels: a 1 x 1 image of 1 m
        # was registered to a 1000 x 1002 camera and put people 5.3 m away at 1.2 m
        raise DepthImageError(f"the {width}x{height} depth image is too small to be registered to an image "
                              f"(at least {MIN_IMAGE_SIDE_PX} pixels a side)", "registration")
    if not is_resized_view((width, height), (image_width, image_height)):
        raise DepthImageError(f"the {width}x{height} depth image (aspect {width / height:.3f}) cannot be "
                              f"registered to the {image_width:g}x{image_height:g} image (aspect "
                              f"{image_width / image_height:.3f}) by scaling", "registration")


def check_depth_frame(depth_frame_id: str, image_frame_id: str, camera_frame_id: str = "") -> None:
    """:class:`DepthImageError` when a depth image and the image it is said to be registered to name different
    frames (both named; a leading '/' aside, as tf2 reads them). A registered depth image carries its
    image's optical frame (a RealSense's aligned_depth_to_color, a ZED's depth, an image_proc
    register node's output): one in another frame is another camera's depth, and read at this
    camera's pixels it placed people at whatever that camera saw there. That image is the keypoints'
    (``image_frame_id``), or where they name no frame, the one of the CameraInfo whose K places them
    (``camera_frame_id``): keypoints without a frame_id took any camera's depth (another camera's
    wall 3.5 m away placed the demo clip's people 5.3-5.5 m away at 3.6 m, ROOT_FROM_DEPTH, nothing
    counted)."""
    image, which = (image_frame_id, "the keypoints") if tf2_frame_id(image_frame_id) else (
        camera_frame_id, "their CameraInfo")
    if other_camera_frame(depth_frame_id, image):
        raise DepthImageError(f"the depth image is in frame {tf2_frame_id(depth_frame_id)!r}, {which} in "
                              f"{tf2_frame_id(image)!r}: not registered to their image (depth_topic another "
                              "camera's?)", "frame")


def _metres(depth: np.ndarray) -> np.ndarray:
    """Depth values of a checked image (any shape) in metres, float32; invalid ones (0, NaN, inf) NaN."""
    if depth.dtype == np.uint16:
        metres = depth.astype(np.float32) * np.float32(0.001)
    else:
        metres = depth.astype(np.float32, copy=True)
    metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres


def depth_in_metres(depth_image: np.ndarray) -> np.ndarray:
    """``(H, W)`` depth in metres, float32: ``uint16`` is millimetres, floats are already metres.
    Invalid readings (0, NaN, inf) are NaN."""
    return _metres(checked_depth_image(depth_image))


def window_depth(depth_m: np.ndarray, pixels: np.ndarray, window: int = 5) -> list[np.ndarray]:
    """The finite depth samples (NaN-free, in ``depth_m``'s units and dtype) in a ``window`` x
    ``window`` square around each of ``pixels`` ``(K, 2)``; squares are clipped to the image, a
    non-finite pixel gives no samples. A square centred on a pixel has an odd side: an even
    ``window`` is rounded up (4 -> 5 x 5)."""
    height, width = depth_m.shape
    half = max(int(window), 1) // 2
    out = []
    for x, y in np.asarray(pixels, dtype=np.float64).reshape(-1, 2):
        if not (np.isfinite(x) and np.isfinite(y)):
            out.append(np.zeros(0, depth_m.dtype))
            continue
        col, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))   # nearest pixel centre (integer)
        r0, r1 = max(row - half, 0), min(row + half + 1, height)
        c0, c1 = max(col - half, 0), min(col + half + 1, width)
        if r0 >= r1 or c0 >= c1:
            out.append(np.zeros(0, depth_m.dtype))
            continue
        patch = depth_m[r0:r1, c0:c1].reshape(-1)
        out.append(patch[np.isfinite(patch)])
    return out


def root_translation_from_depth(pelvis_pixels: np.ndarray, hip_pixels: np.ndarray | None,
                                depth_image: np.ndarray, camera_matrix: np.ndarray, window: int = 5,
                                body_offset: float = DEFAULT_BODY_OFFSET_M,
                                depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE_M,
                                min_samples: int = 3, image_size: tuple[int, int] | None = None,
                                ray_pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pelvis positions in the camera frame from a depth image.

    ``pelvis_pixels`` ``(N, 2)``; ``hip_pixels`` ``(N, 2, 2)`` (right and left
    hip) or None; ``depth_image`` ``(H, W)`` metres (float) or millimetres
    (``uint16``); ``camera_matrix`` ``(3, 3)`` K of the image the pixels are in.
    ``image_size`` (width, height) of that image when the registered depth
    image has another resolution (the windows are then placed at the scaled
    pixels; ``window`` is in depth pixels). ``ray_pixels`` ``(N, 2)``: where an ideal pinhole
    camera with K sees each pelvis, when the image is distorted (the depth is sampled at
    ``pelvis_pixels``, the pelvis placed along this pixel's ray); default ``pelvis_pixels``.
    Returns ``translations`` ``(N, 3)``
    metres and ``ok`` ``(N,)``: False (translation NaN) where the pelvis pixel
    (or its ray pixel) is not finite or fewer than ``min_samples`` valid depth values lie in the
    windows (a hole in the depth image, a person outside it).
    """
    pelvis = np.asarray(pelvis_pixels, dtype=np.float64).reshape(-1, 2)
    people = pelvis.shape[0]
    rays = pelvis if ray_pixels is None else np.asarray(ray_pixels, dtype=np.float64).reshape(people, 2)
    hips = None
    if hip_pixels is not None:
        hips = np.asarray(hip_pixels, dtype=np.float64).reshape(people, 2, 2)
    k = validate_camera_matrix(camera_matrix)
    # only the sampled windows are converted to metres: the whole image was, for every frame (a 4K
    # depth image added 28 ms to a one-person frame to read 75 of its 8 million pixels)
    depth = checked_depth_image(depth_image)
    low, high = depth_range
    scale = np.ones(2)
    if image_size is not None:
        if not (image_size[0] > 0 and image_size[1] > 0):
            raise ValueError(f"image_size must be positive, got {image_size}")
        scale = np.array([depth.shape[1] / image_size[0], depth.shape[0] / image_size[1]])
    translations = np.full((people, 3), np.nan)
    ok = np.zeros(people, dtype=bool)
    k_inv = np.linalg.inv(k)
    for i in range(people):
        if not (np.isfinite(pelvis[i]).all() and np.isfinite(rays[i]).all()):
            continue
        points = pelvis[i:i + 1] if hips is None else np.concatenate([pelvis[i:i + 1], hips[i]])
        points = (points + 0.5) * scale - 0.5          # pixel centres at integer coordinates
        samples = _metres(np.concatenate(window_depth(depth, points, window)))
        samples = samples[(samples >= low) & (samples <= high)]      # NaN (invalid) compares False
        if samples.size < max(int(min_samples), 1):
            continue
        surface_z = float(np.median(samples))
        ray = k_inv @ np.array([rays[i, 0], rays[i, 1], 1.0])     # z component 1
        ray = ray / ray[2]
        translations[i] = ray * surface_z + body_offset * ray / np.linalg.norm(ray)
        ok[i] = True
    return translations, ok


class PairedDepth(NamedTuple):
    """What :meth:`DepthHistory.paired` finds for a frame."""
    image: np.ndarray | None     # the depth image taken with the frame's image, or None
    stale: bool                  # depth images have come, but none within max_age of the frame
    frame_id: str = ""           # the paired image's header.frame_id


class _KeptDepth(NamedTuple):
    stamp: float
    image: np.ndarray
    frame_id: str
    received: float     # when it arrived (the caller's clock, seconds): an unstamped image's only time


class DepthHistory:
    """The last ``size`` depth images of each camera and their stamps (seconds), to give each
    keypoints message the depth image taken with its image.

    Keypoints arrive a 2D detector's latency after their image, while the depth camera goes on
    publishing: when the keypoints of the image stamped t arrive, the newest depth image is stamped
    about t + that latency, past ``depth_max_age`` (50 ms by default) whenever the detector takes
    longer (the bundled one: 67 ms p50 end to end for three people, README). With only the newest
    image kept, the depth was then never used. From the images kept here the one nearest in stamp
    is taken, as message_filters' Cache / ApproximateTime pair two streams.

    Each camera frame (tf2's name; images naming none are one more) keeps its own ``size`` images:
    several cameras' depth images on one topic shared one history, and with four cameras at 30 Hz
    it reached back 0.13 s, a slow detector's latency. At most ``frame_ids.MAX_CAMERAS`` cameras,
    the least recently seen given up first.

    A stamp further back than a late frame (:mod:`cfi_pose_ros.timeline`: a bag loop, a simulated
    clock reset) drops every image kept of its camera: they belong to a timeline that has been left,
    and must not be paired with the new one's keypoints. It is judged per camera: two cameras'
    images on one topic, one stamped more than a late frame behind the other (another exposure or
    pipeline latency), each emptied the history of the other's, which was then never paired (placed
    without depth). A late image (out of order), or one stamped zero (no time: it pairs only with
    keypoints stamped zero), is only added. Unstamped images and keypoints pair by when each arrived
    (``received``, seconds on the caller's clock), within ``max_age``: compared by stamp alone,
    every unstamped image was as near as the newest, and once the depth stream stopped the last one
    placed unstamped keypoints for good (a person who walked on, placed where they had stood:
    ROOT_FROM_DEPTH, nothing counted).

    While the keypoints' stamps stand still, more than :data:`MAX_STALLED_FRAMES` frames of a camera
    at one stamp since its last depth image came get none (:meth:`paired` counts them).

    Bounded by count (``size`` a camera) and by bytes (``max_bytes`` for all; the oldest of the
    least recently seen cameras go first, the newest image is always kept)."""

    def __init__(self, size: int = DEPTH_HISTORY, max_bytes: int = DEPTH_HISTORY_BYTES):
        for name, value in (("size", size), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self._size = size
        self._max_bytes = max_bytes
        # camera frame ("" for images naming none) -> its images, oldest first
        self._cameras: RecentlySeen[deque[_KeptDepth]] = RecentlySeen(MAX_CAMERAS)
        # keypoints' camera frame -> (their last stamp, frames at it since that camera's last depth image)
        self._standing: RecentlySeen[tuple[float, int]] = RecentlySeen(MAX_CAMERAS)

    def __len__(self) -> int:
        return sum(len(images) for images in self._cameras.records())

    def add(self, stamp: float, image: np.ndarray, frame_id: str = "", received: float = 0.0) -> None:
        name = tf2_frame_id(frame_id)
        images = self._cameras.pop(name) or deque(maxlen=self._size)
        # a zero (or negative) stamp is no time: one unstamped image in a stamped stream is no step back
        if images and stamp > 0 and timeline.starts_over(max(kept.stamp for kept in images), stamp):
            images.clear()
        images.append(_KeptDepth(float(stamp), image, frame_id, float(received)))
        if name:
            self._standing.pop(name)
            self._standing.pop("")      # keypoints naming no frame take any camera's image
        else:
            self._standing.clear()      # and an image naming none is any keypoints'
        self._cameras.put(name, images)
        self._cameras.evict()
        kept_bytes = sum(kept.image.nbytes for camera in self._cameras.records() for kept in camera)
        for older in list(self._cameras.records()):     # the least recently seen camera first
            while kept_bytes > self._max_bytes and len(older) > (1 if older is images else 0):
                kept_bytes -= older.popleft().image.nbytes

    def _nearest(self, stamp: float, max_age: float, received: float, frame_id: str = "") -> _KeptDepth | None:
        """The image nearest in time of ``frame_id``'s camera (or naming none), else of any camera."""
        name = tf2_frame_id(frame_id)
        own, own_gap = None, float(max_age)
        nearest, nearest_gap = None, float(max_age)
        for camera, images in self._cameras.items():
            for kept in images:
                # a stamp of zero is no time: an unstamped image and stamped keypoints (or the
                # reverse) are no nearer for a stamp within max_age of 0 s (sim time's start)
                if (stamp <= 0) != (kept.stamp <= 0):
                    continue
                # stamped zero both: no time but when each arrived
                gap = (abs(kept.received - float(received)) if stamp <= 0 and kept.stamp <= 0
                       else abs(kept.stamp - float(stamp)))
                if gap <= nearest_gap:
                    nearest, nearest_gap = kept, gap
                if gap <= own_gap and camera in (name, ""):
                    own, own_gap = kept, gap
        return own if own is not None and name else nearest

    def nearest(self, stamp: float, max_age: float, received: float = 0.0) -> np.ndarray | None:
        """The kept image whose stamp is nearest ``stamp`` (of equally near ones, the last received
        of a camera; for ``stamp`` zero, the unstamped one that arrived nearest ``received``), or
        None when none is within ``max_age`` seconds of it."""
        kept = self._nearest(stamp, max_age, received)
        return None if kept is None else kept.image

    def paired(self, stamp: float, max_age: float, received: float = 0.0, frame_id: str = "") -> PairedDepth:
        """The image for a frame stamped ``stamp`` that arrived at ``received`` (see :meth:`nearest`
        and :class:`PairedDepth`); ``stale`` when depth images have come but none within ``max_age``
        of it (the frame is placed without depth). ``frame_id``: the frame's camera; the nearest
        image of that frame (or of none) is taken before a nearer one of another frame, which is
        taken (for the caller to refuse as another camera's) only where there is none: two cameras'
        depth images on one topic, 4 ms apart, gave a camera's keypoints the other camera's image
        whenever it was nearer in stamp, and they were placed without depth (bad_depth_image).
        Each call is one keypoints frame, counted while its camera's stamps stand still (see
        :data:`MAX_STALLED_FRAMES`)."""
        if self._stalled(stamp, frame_id) and len(self):
            return PairedDepth(None, True)
        if not len(self):
            return PairedDepth(None, False)
        kept = self._nearest(stamp, max_age, received, frame_id)
        return PairedDepth(None, True) if kept is None else PairedDepth(kept.image, False, kept.frame_id)

    def _stalled(self, stamp: float, frame_id: str) -> bool:
        """Counts a keypoints frame of ``frame_id``'s camera at ``stamp``: whether more than
        :data:`MAX_STALLED_FRAMES` came at that stamp since the camera's last depth image. A stamp of
        zero (no time) is paired by arrival instead."""
        if stamp <= 0:
            return False
        name = tf2_frame_id(frame_id)
        last = self._standing.pop(name)
        frames = last[1] + 1 if last is not None and last[0] == stamp else 0
        self._standing.put(name, (float(stamp), frames))
        self._standing.evict()
        return frames > MAX_STALLED_FRAMES

    def clear(self) -> None:
        self._cameras.clear()
        self._standing.clear()
