"""Camera images to numpy BGR without cv_bridge (ROS-free).

:func:`image_to_bgr` reads the fields of a ``sensor_msgs/Image`` (passed one
by one, so nothing here imports rclpy) and :func:`decode_compressed` the
fields of a ``sensor_msgs/CompressedImage``. Both return a new, writable,
C-contiguous ``uint8`` array ``(H, W, 3)`` in BGR order: the message buffer is
never aliased, so the caller may drop or reuse the message at once.

Conventions (those of ``sensor_msgs/image_encodings.hpp``):

* ``step`` is the length of one row in bytes, ``>= width * bytes_per_pixel``;
  the bytes past ``width * bytes_per_pixel`` are padding and are skipped.
* ``is_bigendian`` only matters for 16-bit encodings.
* ``mono16`` (and ``16UC1``) are scaled to 8 bits by keeping the high byte
  (``value >> 8``), i.e. the full 16-bit range maps onto 0..255.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# encoding -> (channels, bytes per channel)
_LAYOUT: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1),
    "mono8": (1, 1), "8UC1": (1, 1), "8UC3": (3, 1), "8UC4": (4, 1),
    "mono16": (1, 2), "16UC1": (1, 2),
}
# 8UC3/8UC4 carry no colour order; like cv_bridge we read them as BGR/BGRA.
_TO_BGR: dict[str, int | None] = {
    "rgb8": cv2.COLOR_RGB2BGR, "bgr8": None, "rgba8": cv2.COLOR_RGBA2BGR,
    "bgra8": cv2.COLOR_BGRA2BGR, "mono8": cv2.COLOR_GRAY2BGR, "8UC1": cv2.COLOR_GRAY2BGR,
    "8UC3": None, "8UC4": cv2.COLOR_BGRA2BGR, "mono16": cv2.COLOR_GRAY2BGR,
    "16UC1": cv2.COLOR_GRAY2BGR,
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUT)


class UnsupportedEncoding(ValueError):
    """The image's encoding is not one :func:`image_to_bgr` can convert."""


def _as_bytes_array(data: Any) -> np.ndarray:
    """A flat uint8 view of ``data`` (bytes, bytearray, memoryview, array.array, ndarray)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"image data array must be uint8, got {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError as exc:
        raise ValueError(f"image data must be bytes-like or a uint8 array, got {type(data).__name__}") from exc


def raw_rows(height: int, width: int, step: int, data: Any, bytes_per_pixel: int, encoding: str,
             what: str = "image") -> np.ndarray:
    """The pixel bytes of raw ``sensor_msgs/Image`` fields as ``(height, width * bytes_per_pixel)``
    ``uint8``, each row's padding (``step`` beyond the pixels) dropped.

    ``ValueError`` (naming ``what``) for a zero size, a ``step`` shorter than one row
    of pixels, or ``data`` shorter than ``step * height``; extra bytes after the last
    row are ignored.
    """
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ValueError(f"{what} has zero size ({width}x{height}, encoding {encoding})")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ValueError(f"{what} step {step} is shorter than one row of {width} {encoding} pixels "
                         f"({row_bytes} bytes)")
    flat = _as_bytes_array(data)
    needed = step * height
    if flat.size < needed:
        raise ValueError(f"{what} data has {flat.size} bytes, expected at least step*height = "
                         f"{step}*{height} = {needed} ({width}x{height} {encoding})")
    return flat[:needed].reshape(height, step)[:, :row_bytes]


def image_to_bgr(encoding: str, height: int, width: int, step: int,
                 data: bytes | memoryview | np.ndarray, is_bigendian: bool = False) -> np.ndarray:
    """Convert raw ``sensor_msgs/Image`` fields to a BGR ``uint8`` image ``(height, width, 3)``.

    Raises :class:`UnsupportedEncoding` for an encoding outside
    :data:`SUPPORTED_ENCODINGS`, and ``ValueError`` for a zero-sized image, a
    ``step`` shorter than one row of pixels, or ``data`` shorter than
    ``step * height``. Extra bytes after the last row are ignored.
    """
    if encoding not in _LAYOUT:
        raise UnsupportedEncoding(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, depth = _LAYOUT[encoding]
    rows = raw_rows(height, width, step, data, channels * depth, encoding)
    height, width = rows.shape[0], int(width)
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        # The high byte is the first (big endian) or second (little endian) byte of each pair.
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        pixels = (pixels >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)
    code = _TO_BGR[encoding]
    if code is None:
        return np.array(pixels, dtype=np.uint8, order="C", copy=True)
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def image_msg_to_bgr(msg: Any) -> np.ndarray:
    """:func:`image_to_bgr` on any object with ``sensor_msgs/Image``'s field names."""
    return image_to_bgr(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        is_bigendian=bool(getattr(msg, "is_bigendian", False)))


def decode_compressed(format: str, data: bytes | memoryview | np.ndarray) -> np.ndarray:  # noqa: A002
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to BGR ``uint8`` ``(H, W, 3)``.

    ``format`` is the message's format string (``"jpeg"``, ``"png"``, or
    image_transport's ``"bgr8; jpeg compressed bgr8"``); the codec itself is
    read from the data. ``compressedDepth`` images are refused with
    :class:`UnsupportedEncoding`; empty or undecodable data raises ``ValueError``.
    """
    fmt = (format or "").strip()
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise UnsupportedEncoding(
            f"compressed format {format!r} is a depth image; only colour/mono JPEG, PNG and the "
            "other formats OpenCV decodes are supported")
    flat = _as_bytes_array(data)
    if flat.size == 0:
        raise ValueError(f"compressed image ({format!r}) has no data")
    image = cv2.imdecode(flat, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"could not decode compressed image ({format!r}, {flat.size} bytes, "
                         f"starting {bytes(flat[:8]).hex()}): not a format OpenCV can read")
    if image.dtype != np.uint8:  # 16-bit PNGs: keep the high byte like image_to_bgr
        image = (image >> 8).astype(np.uint8)
    return image


def compressed_msg_to_bgr(msg: Any) -> np.ndarray:
    """:func:`decode_compressed` on any object with ``sensor_msgs/CompressedImage``'s fields."""
    return decode_compressed(msg.format, msg.data)
