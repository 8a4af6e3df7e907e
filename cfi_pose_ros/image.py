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
* 16-bit encodings (``mono16``, ``16UC1``, ``rgb16``, ``bayer_*16``, ...) are
  scaled to 8 bits by keeping the high byte (``value >> 8``), i.e. the full
  16-bit range maps onto 0..255.
* Bayer mosaics are demosaiced (OpenCV's bilinear; one under 3 rows or columns, which that returns
  black, cell by cell: see :func:`_tiny_mosaic_to_bgr`; one a pixel high or wide is refused), packed YUV 4:2:2
  (``yuv422``/``uyvy``, ``yuv422_yuy2``/``yuyv``: what USB cameras send) is
  converted with BT.601's video range, as cv_bridge does; so is semi-planar YUV 4:2:0
  (``nv12``, ``nv21``: what embedded camera pipelines send), laid out as RViz's image display
  reads ``nv12`` (the V4L2 layout image_encodings.hpp cites): ``height`` rows of luma, ``step``
  bytes apart, then ``height / 2`` rows of interleaved chroma pairs, ``step`` bytes apart
  (``step * height * 3 / 2`` bytes). Semi-planar YUV 4:4:4 (``nv24``, Jetson cameras) is laid out
  as V4L2's NV24: ``height`` luma rows ``step`` bytes apart, then ``height`` rows of Cb Cr pairs
  ``2 * step`` bytes apart (V4L2: twice the luma rows' padding; ``step * height * 3`` bytes), with
  OpenCV's BT.601 video-range coefficients (OpenCV has no converter of 4:4:4 video range).

Compressed images are bounded before they are decoded: a 0.25 MB PNG can
declare 20000 x 20000 pixels and take 1.2 GB to decode. Their width and height
are read from the file's own header (:func:`compressed_image_size`: PNG's IHDR
chunk, JPEG's start-of-frame segment) and an image of more than ``max_pixels``
pixels raises :class:`ImageTooLarge` without being decoded. So only JPEG and
PNG (what image_transport's ``compressed`` transport sends) are accepted. The
decoding time is bounded too: a JPEG of more than :data:`MAX_JPEG_SCANS` scans
(libjpeg passes over the whole image for each scan of a progressive JPEG) and a PNG of
more than :data:`MAX_PNG_TEXT_CHUNKS` compressed text chunks (libpng inflates each) are
refused, and so is an animated PNG (OpenCV's decoder crashed the process on a damaged frame).
Photo files (:func:`decode_photo`, offline lifting) are bounded and checked the same way.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import zlib
from collections import Counter
from typing import Any

import cv2
import numpy as np

# encoding -> (channels, bytes per channel); packed YUV 4:2:2 is two bytes a pixel (luma and one chroma)
_LAYOUT: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1),
    "mono8": (1, 1), "8UC1": (1, 1), "8UC3": (3, 1), "8UC4": (4, 1),
    "mono16": (1, 2), "16UC1": (1, 2),
    "rgb16": (3, 2), "bgr16": (3, 2), "rgba16": (4, 2), "bgra16": (4, 2), "16UC3": (3, 2), "16UC4": (4, 2),
    **{f"bayer_{pattern}{bits}": (1, bits // 8) for pattern in ("rggb", "bggr", "gbrg", "grbg")
       for bits in (8, 16)},
    "yuv422": (2, 1), "uyvy": (2, 1), "yuv422_yuy2": (2, 1), "yuyv": (2, 1),
}
# 8UC3/8UC4 (16UC3/16UC4) carry no colour order; like cv_bridge we read them as BGR/BGRA.
# OpenCV names a Bayer pattern by the second row's second and third pixels, ROS by the first row's
# first two: ROS's rggb is OpenCV's BG (test_image checks each on a mosaic of a known colour).
# "yuv422" is UYVY (sensor_msgs/image_encodings.hpp), "yuv422_yuy2" YUYV.
_TO_BGR: dict[str, int | None] = {
    "rgb8": cv2.COLOR_RGB2BGR, "bgr8": None, "rgba8": cv2.COLOR_RGBA2BGR,
    "bgra8": cv2.COLOR_BGRA2BGR, "mono8": cv2.COLOR_GRAY2BGR, "8UC1": cv2.COLOR_GRAY2BGR,
    "8UC3": None, "8UC4": cv2.COLOR_BGRA2BGR, "mono16": cv2.COLOR_GRAY2BGR,
    "16UC1": cv2.COLOR_GRAY2BGR,
    "rgb16": cv2.COLOR_RGB2BGR, "bgr16": None, "rgba16": cv2.COLOR_RGBA2BGR, "bgra16": cv2.COLOR_BGRA2BGR,
    "16UC3": None, "16UC4": cv2.COLOR_BGRA2BGR,
    **{f"bayer_{pattern}{bits}": code for pattern, code in (
        ("rggb", cv2.COLOR_BayerBG2BGR), ("bggr", cv2.COLOR_BayerRG2BGR),
        ("gbrg", cv2.COLOR_BayerGR2BGR), ("grbg", cv2.COLOR_BayerGB2BGR)) for bits in (8, 16)},
    "yuv422": cv2.COLOR_YUV2BGR_UYVY, "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2, "yuyv": cv2.COLOR_YUV2BGR_YUY2,
}
_PACKED_YUV = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})
# semi-planar YUV 4:2:0 -> OpenCV's converter (chroma pairs Cb Cr in nv12, Cr Cb in nv21); read from
# luma and chroma rows, not pixels of a fixed size: in none of _LAYOUT's tables
SEMI_PLANAR_YUV420: dict[str, int] = {"nv12": cv2.COLOR_YUV2BGR_NV12, "nv21": cv2.COLOR_YUV2BGR_NV21}
SUPPORTED_ENCODINGS: tuple[str, ...] = (*_LAYOUT, *SEMI_PLANAR_YUV420, "nv24")
# the semi-planar YUV encodings, read from luma and chroma rows: image_encodings.hpp's tables (and so
# cv_bridge) give them 2 channels of 8 bits a pixel, which is not their layout
READ_BY_ROWS = frozenset({*SEMI_PLANAR_YUV420, "nv24"})
# (Y, Cb, Cr, 1) -> (B, G, R): BT.601 video range with the fixed-point coefficients of OpenCV's own
# nv12/yuv422 converters (ITUR_BT_601_CY, _CVR, _CVG, _CUG, _CUB over 2**20), so that nv24 gives the
# colours those give for the same samples; one cv2.transform pass rounds and saturates to uint8.
_BT601_CY, _BT601_CVR, _BT601_CVG, _BT601_CUG, _BT601_CUB = (
    c / (1 << 20) for c in (1220542, 1673527, -852492, -409993, 2116026))
_YUV444_TO_BGR = np.array([
    [_BT601_CY, _BT601_CUB, 0.0, -16 * _BT601_CY - 128 * _BT601_CUB],
    [_BT601_CY, _BT601_CUG, _BT601_CVG, -16 * _BT601_CY - 128 * (_BT601_CUG + _BT601_CVG)],
    [_BT601_CY, 0.0, _BT601_CVR, -16 * _BT601_CY - 128 * _BT601_CVR]], np.float32)


def bytes_per_pixel(encoding: str) -> int | None:
    """Bytes of one pixel of a supported raw ``encoding``; None for the others."""
    layout = _LAYOUT.get(encoding)
    return None if layout is None else layout[0] * layout[1]


# Default bound on a compressed image's decoded size: 4096 x 4096 (a 4K camera is 8.3 MP);
# the decoded BGR image is then at most 48 MiB.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; not DHT C4, JPG C8, DAC CC)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])      # TEM, RSTn: no length field
# Most scans (start-of-scan markers) a JPEG may have. For each scan of a progressive JPEG libjpeg
# passes over every block of the scan's components, however few bytes the scan has: a 130 kB JPEG of
# 4096 x 4096 pixels repeating a 33-byte scan 1000 times took 19 s to decode, the detector stalled
# all that time, and the time grows with the repeats.
# libjpeg's own progressive scripts write 10 scans (YCbCr), at most 60 (10 components); a baseline
# JPEG has one per component, an embedded thumbnail adds its own.
MAX_JPEG_SCANS = 64
# Most compressed text chunks (zTXt, iTXt) a PNG may have. libpng inflates every one, up to its limit
# of 8 MB each, before the pixels: a 7.8 MB PNG of 1000 zTXt chunks of 8 MB of zeros each took 17 s
# to decode (libpng keeps at most 1000 such chunks). Images from cameras have none, edited photos a
# few (XMP, EXIF or IPTC profiles).
MAX_PNG_TEXT_CHUNKS = 16
# How far the headers are walked in Python, one segment or chunk at a time. A 10 MB JPEG of 2.5 million
# 4-byte comment segments before its frame took 2.2 s to read its size, one of 10 million fill bytes
# 1.0 s, a 10 MB PNG of 870,000 empty chunks 1.2 s: each such message stalled the detector that long.
# Real JPEGs have a few dozen segments before the frame; a PNG's image data comes in chunks of 8 kB or
# more (16,384 of them: 128 MB); some encoders write one per row (1,080 for 1080p).
MAX_JPEG_HEADER_STEPS = 4096        # segments and fill bytes before the start of frame
MAX_PNG_CHUNKS = 16384
# What libjpeg and libpng print on stderr about data they could not decode. libjpeg decodes on past a
# damaged scan (jerror.h: JWRN_HIT_MARKER, JWRN_HUFF_BAD_CODE, JWRN_ARITH_BAD_CODE, JWRN_MUST_RESYNC,
# JWRN_JPEG_EOF) and returns the image with the rest grey or garbled: the warning is the only sign.
# "Extraneous bytes before marker" (JWRN_EXTRANEOUS_DATA) is damage too, unless they are the zeros
# some cameras pad their MJPEG frames with before the end marker (for every frame; the image is whole).
_DECODER_DAMAGE = ("libpng error:", "Corrupt JPEG data: premature end of data segment",
                   "Corrupt JPEG data: bad Huffman code", "Corrupt JPEG data: bad arithmetic code",
                   "instead of RST", "Premature end of JPEG file")
_JPEG_EXTRANEOUS = re.compile(r"Corrupt JPEG data: (\d+) extraneous bytes before marker 0x([0-9a-f]{2})")
# The lines the codecs themselves print on stderr, by how they begin: libpng's (its own prefix),
# libjpeg's warnings (jerror.h's JWRN_ texts, each printed bare; libjpeg-turbo's included) and
# OpenCV's log ("[ WARN:0@1.234] global ...": its decoders' own warnings). Only these are read for
# damage and throttled; any other line written to stderr while a codec decodes is another thread's
# (a node's log line through rcutils, a print) and is written back as it came.
_CODEC_LINE = re.compile(r"libpng |Corrupt JPEG data:|Premature end of JPEG file|Inconsistent progression sequence|"
                         r"Invalid SOS parameters|Warning: unknown JFIF|Unknown Adobe color transform|"
                         r"Application transferred too|\[(?:FATAL|ERROR| WARN| INFO|DEBUG|VERB ?):\d")
_STDERR_LOCK = threading.Lock()
# What is written back to stderr after a decode is written at most once in this many seconds (as the
# nodes' throttled warnings, node.base.WARN_PERIOD_S), counting lines that differ only in their numbers
# as the same: a codec's warning about something it decodes past comes with every frame of a stream
# (libpng's 'iCCP: too short' for a broken colour profile, libjpeg's 'Inconsistent progression
# sequence', a camera's padding before the end marker), and flooded the log, one line per frame.
_WRITE_BACK_PERIOD_S = 5.0
_WRITE_BACK_KEYS = 256              # most lines remembered
_written_back: dict[str, float] = {}


class UnsupportedEncoding(ValueError):
    """The image's encoding is not one :func:`image_to_bgr` can convert."""


class ImageTooLarge(ValueError):
    """A compressed image whose header declares more pixels than allowed (not decoded)."""


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
    ``step`` shorter than one row of pixels, ``data`` shorter than
    ``step * height``, packed YUV of an odd width, or a Bayer mosaic one pixel high or
    wide (no whole 2x2 cell). Extra bytes after the last
    row are ignored.
    """
    if encoding in SEMI_PLANAR_YUV420:
        return _semi_planar_to_bgr(encoding, height, width, step, data)
    if encoding == "nv24":
        return _nv24_to_bgr(height, width, step, data)
    if encoding not in _LAYOUT:
        raise UnsupportedEncoding(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, depth = _LAYOUT[encoding]
    rows = raw_rows(height, width, step, data, channels * depth, encoding)
    height, width = rows.shape[0], int(width)
    if encoding in _PACKED_YUV and width % 2:
        raise ValueError(f"{encoding} image has an odd width ({width}): YUV 4:2:2 shares each chroma "
                         f"sample between two pixels")
    shape = (height, width, channels) if channels > 1 else (height, width)
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        # The high byte is the first (big endian) or second (little endian) byte of each pair.
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(shape)
        pixels = (pixels >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(shape)
    code = _TO_BGR[encoding]
    if code is None:
        return np.array(pixels, dtype=np.uint8, order="C", copy=True)
    if too_small_for_opencv_demosaic(encoding, height, width):
        return _tiny_mosaic_to_bgr(encoding, pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


# OpenCV's bilinear demosaic returns all zeros (no error) for a mosaic of fewer rows or columns
# than this (OpenCV 5.0: 2x2, 2xN, Nx2 all came out black); 3x3 and larger are demosaiced right.
_CV_DEMOSAIC_MIN_SIZE = 3


def too_small_for_opencv_demosaic(encoding: str, height: int, width: int) -> bool:
    """Whether a raw image is a Bayer mosaic OpenCV demosaics to black (cv_bridge calls that too):
    :func:`image_to_bgr` converts it (or refuses it) itself."""
    return encoding.startswith("bayer_") and min(int(height), int(width)) < _CV_DEMOSAIC_MIN_SIZE


def _tiny_mosaic_to_bgr(encoding: str, mosaic: np.ndarray) -> np.ndarray:
    """A Bayer ``mosaic`` (8-bit, ``(H, W)``) too small for OpenCV's demosaic: each whole 2x2 cell
    gives its R, mean G and B to its four pixels; a last odd row or column takes the colour of the
    cell beside it. ``ValueError`` for a mosaic one pixel high or wide: it has no whole cell, so one
    of the three colours was never sampled."""
    height, width = mosaic.shape
    if height < 2 or width < 2:
        raise ValueError(f"{encoding} image of {width}x{height} pixels has no whole 2x2 Bayer cell: "
                         "one of its three colours was never sampled")
    cells = mosaic[:height // 2 * 2, :width // 2 * 2].astype(np.uint16)
    # the four samples of each cell, in the pattern's order (ROS names it by the first row's first two)
    samples = [cells[i // 2::2, i % 2::2] for i in range(4)]
    pattern = encoding[len("bayer_"):len("bayer_") + 4]
    red, blue = samples[pattern.index("r")], samples[pattern.index("b")]
    g1, g2 = (samples[i] for i, c in enumerate(pattern) if c == "g")
    bgr = np.stack([blue, (g1 + g2 + 1) // 2, red], axis=-1).astype(np.uint8)
    rows = np.minimum(np.arange(height) // 2, bgr.shape[0] - 1)
    cols = np.minimum(np.arange(width) // 2, bgr.shape[1] - 1)
    return np.ascontiguousarray(bgr[rows[:, None], cols[None, :]])


def _semi_planar_to_bgr(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """nv12 / nv21: ``height`` luma rows then ``height / 2`` chroma rows, each ``step`` bytes apart."""
    height, width, step = int(height), int(width), int(step)
    if height > 0 and width > 0 and (height % 2 or width % 2):
        raise ValueError(f"{encoding} image of an odd size ({width}x{height}): YUV 4:2:0 shares each "
                         f"chroma sample between 2x2 pixels")
    size = len(_as_bytes_array(data))
    if step > 0 and height > 0 and size < step * height * 3 // 2:
        raise ValueError(f"{encoding} image data has {size} bytes, expected at least step*height*3/2 = "
                         f"{step}*{height}*3/2 = {step * height * 3 // 2} ({width}x{height}: luma then "
                         f"chroma rows)")
    rows = raw_rows(height * 3 // 2, width, step, data, 1, encoding, f"{encoding} image")
    return cv2.cvtColor(np.ascontiguousarray(rows), SEMI_PLANAR_YUV420[encoding])


def _nv24_to_bgr(height: int, width: int, step: int, data) -> np.ndarray:
    """nv24: ``height`` luma rows ``step`` bytes apart, then ``height`` rows of Cb Cr pairs
    ``2 * step`` bytes apart (V4L2's NV24: the chroma rows carry twice the luma rows' padding, so
    one ``step`` says both)."""
    height, width, step = int(height), int(width), int(step)
    flat = _as_bytes_array(data)
    luma_bytes = step * height
    if step > 0 and height > 0 and flat.size < 3 * luma_bytes:
        raise ValueError(f"nv24 image data has {flat.size} bytes, expected at least 3*step*height = "
                         f"3*{step}*{height} = {3 * luma_bytes} ({width}x{height}: luma rows, then chroma "
                         f"rows of 2*step bytes)")
    luma = raw_rows(height, width, step, flat, 1, "nv24", "nv24 image")
    chroma = raw_rows(height, width, 2 * step, flat[luma_bytes:], 2, "nv24", "nv24 image chroma")
    ycbcr = np.empty((height, width, 3), np.uint8)
    # OpenCV's converters take luma below video black (16) as black (max(0, Y - 16)); so does this
    np.maximum(luma, 16, out=ycbcr[..., 0])
    ycbcr[..., 1:] = chroma.reshape(height, width, 2)
    return cv2.transform(ycbcr, _YUV444_TO_BGR)


def image_msg_to_bgr(msg: Any) -> np.ndarray:
    """:func:`image_to_bgr` on any object with ``sensor_msgs/Image``'s field names."""
    return image_to_bgr(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        is_bigendian=bool(getattr(msg, "is_bigendian", False)))


def _jpeg_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first start-of-frame segment, or None (also for one whose frame
    comes after more than MAX_JPEG_HEADER_STEPS segments and fill bytes)."""
    i, steps = 2, 0
    while i + 1 < len(data):
        if data[i] != 0xFF:
            return None                                   # not at a marker: corrupt
        while i < len(data) and data[i] == 0xFF and steps <= MAX_JPEG_HEADER_STEPS:   # fill bytes
            i += 1
            steps += 1
        if i >= len(data) or steps > MAX_JPEG_HEADER_STEPS:
            return None
        marker = data[i]
        i += 1
        if marker == 0x00:
            # 0xFF 0x00 is no marker: libjpeg skips it and reads the next marker it finds, byte by byte,
            # so one hidden in what would be this segment: a 702-byte JPEG read here as 64 x 48 was
            # decoded as the 30000 x 30000 frame inside it (5 GB)
            return None
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):                        # end of image / start of scan before any frame
            return None
        if i + 2 > len(data):
            return None
        length = int.from_bytes(data[i:i + 2], "big")
        if marker in _JPEG_SOF:
            if i + 7 > len(data):
                return None
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 3:i + 5], "big")
        if length < 2:
            return None
        i += length
    return None


# The chunks of an animated PNG (APNG): no camera frame has them, and OpenCV 5.0's decoder (libpng
# 1.6.58) crashed the process (SIGSEGV, or glibc's heap corruption abort) on a frame whose rows are
# damaged, though every chunk is whole with its CRC right.
_APNG_CHUNKS = frozenset({b"acTL", b"fcTL", b"fdAT"})


def png_chunk_kinds(data: memoryview, max_chunks: int = MAX_PNG_CHUNKS) -> Counter[bytes] | None:
    """How many chunks of each kind (``b"IDAT"``, ...) a PNG has, up to its IEND chunk; None unless
    every one is complete with a matching CRC. A PNG that is not (truncated, bytes damaged in
    transit) makes libpng print an unthrottled ``libpng error: ...`` line on stderr for every frame,
    so it is refused before libpng sees it. The walk stops after ``max_chunks``: the counts then
    add up to ``max_chunks + 1``."""
    kinds: Counter[bytes] = Counter()
    i, n = 8, len(data)
    while i + 12 <= n:
        if kinds.total() > max_chunks:
            return kinds
        length = int.from_bytes(data[i:i + 4], "big")
        end = i + 12 + length
        if end > n or zlib.crc32(data[i + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return None
        kind = bytes(data[i + 4:i + 8])
        kinds[kind] += 1
        if kind == b"IEND":
            return kinds
        i = end
    return None


def _format_and_size(view: memoryview) -> tuple[str | None, tuple[int, int] | None]:
    """``("png" | "jpeg" | None, (width, height) | None)`` from a file's first bytes."""
    if bytes(view[:8]) == _PNG_SIGNATURE:
        if len(view) >= 24 and bytes(view[12:16]) == b"IHDR":
            return "png", (int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big"))
        return "png", None
    if bytes(view[:2]) == b"\xff\xd8":
        return "jpeg", _jpeg_size(view)
    return None, None


def compressed_image_size(data: bytes | memoryview | np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` a PNG or JPEG file declares in its header, read without decoding;
    ``None`` for anything else (or a header too short or corrupt to say)."""
    return _format_and_size(memoryview(np.ascontiguousarray(_as_bytes_array(data))))[1]   # no copy


def check_compressed_image(format: str, data, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # noqa: A002
                           ) -> tuple[int, int]:
    """The ``(width, height)`` of a ``sensor_msgs/CompressedImage`` that may be decoded.

    Raises :class:`UnsupportedEncoding` for ``compressedDepth``, ``ValueError`` for empty
    data, data that is not a JPEG or PNG with a readable, non-zero size, a damaged PNG, a JPEG
    of more than :data:`MAX_JPEG_SCANS` scans, a PNG of more than :data:`MAX_PNG_TEXT_CHUNKS`
    compressed text chunks or an animated PNG, and :class:`ImageTooLarge` for more than ``max_pixels`` pixels.
    Nothing is decoded.
    """
    fmt = (format or "").strip()
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise UnsupportedEncoding(
            f"compressed format {format!r} is a depth image; only colour/mono JPEG and PNG are supported")
    flat = _as_bytes_array(data)
    if flat.size == 0:
        raise ValueError(f"compressed image ({format!r}) has no data")
    view = memoryview(np.ascontiguousarray(flat))          # no copy of the data
    kind, size = _format_and_size(view)
    if size is None or min(size) <= 0:
        raise ValueError(f"could not decode compressed image ({format!r}, {flat.size} bytes, starting "
                         f"{bytes(flat[:8]).hex()}): not a JPEG or PNG whose size its header states (a JPEG's "
                         f"within {MAX_JPEG_HEADER_STEPS} segments)")
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(f"compressed image ({format!r}, {flat.size} bytes) declares {width}x{height} = "
                            f"{width * height} pixels, more than max_image_pixels = {max_pixels}; not decoded")
    if kind == "jpeg":
        # every start of scan is a 0xFF 0xDA and entropy-coded data holds none (a 0xFF there is
        # followed by 0x00 or a marker), so none is missed; any in metadata (a thumbnail's) count too
        scans = int(np.count_nonzero((flat[:-1] == 0xFF) & (flat[1:] == 0xDA)))
        if scans > MAX_JPEG_SCANS:
            raise ValueError(f"compressed image ({format!r}, {flat.size} bytes) is a JPEG of {scans} scans, "
                             f"more than {MAX_JPEG_SCANS} (the decoder passes over the whole image for each); "
                             "not decoded")
    if kind == "png":
        chunks = png_chunk_kinds(view)
        if chunks is None:
            raise ValueError(f"compressed image ({format!r}, {flat.size} bytes) is a truncated or damaged PNG "
                             "(a chunk is cut short or fails its CRC, or there is no IEND); not decoded")
        if chunks.total() > MAX_PNG_CHUNKS:
            raise ValueError(f"compressed image ({format!r}, {flat.size} bytes) is a PNG of more than "
                             f"{MAX_PNG_CHUNKS} chunks; not decoded")
        animation = sorted(kind.decode() for kind in _APNG_CHUNKS & chunks.keys())
        if animation:
            raise ValueError(f"compressed image ({format!r}, {flat.size} bytes) is an animated PNG (its "
                             f"{', '.join(animation)} chunks): a camera frame is one image; not decoded")
        texts = chunks[b"zTXt"] + chunks[b"iTXt"]
        if texts > MAX_PNG_TEXT_CHUNKS:
            raise ValueError(f"compressed image ({format!r}, {flat.size} bytes) is a PNG of {texts} compressed text "
                             f"chunks, more than {MAX_PNG_TEXT_CHUNKS} (the decoder inflates each); not decoded")
    return width, height


def decode_compressed(format: str, data: bytes | memoryview | np.ndarray,  # noqa: A002
                      max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to BGR ``uint8`` ``(H, W, 3)``.

    ``format`` is the message's format string (``"jpeg"``, ``"png"``, or
    image_transport's ``"bgr8; jpeg compressed bgr8"``); the codec itself is
    read from the data. Checked first by :func:`check_compressed_image`
    (``compressedDepth`` refused, size from the header at most ``max_pixels``);
    undecodable data raises ``ValueError``.
    """
    check_compressed_image(format, data, max_pixels)
    flat = _as_bytes_array(data)
    # IGNORE_ORIENTATION: the pixels as the camera sent them, as cv_bridge and image_transport decode
    # them (IMREAD_UNCHANGED), not rotated by an EXIF Orientation tag: keypoints, image_width/height
    # and the camera's CameraInfo must describe the same pixel grid.
    image = decode_refusing_damage(lambda: cv2.imdecode(flat, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION),
                                   format, flat)
    if image is None:
        raise ValueError(f"could not decode compressed image ({format!r}, {flat.size} bytes, "
                         f"starting {bytes(flat[:8]).hex()}): not a format OpenCV can read")
    if image.dtype != np.uint8:  # 16-bit PNGs: keep the high byte like image_to_bgr
        image = (image >> 8).astype(np.uint8)
    return image


def decode_photo(data: bytes | memoryview | np.ndarray, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """A photo file's bytes (JPEG, PNG, or BMP, WebP, TIFF) -> BGR ``uint8`` ``(H, W, 3)``, turned as
    its EXIF orientation says: a photo is shown upright (a camera's frames are decoded as sent, see
    :func:`decode_compressed`).

    Bounded and checked as a camera's compressed image is: a JPEG or PNG by :func:`check_compressed_image`,
    another format by the size its header states (pillow reads the header; nothing is decoded), at
    most ``max_pixels`` (:class:`ImageTooLarge`); ``ValueError`` for one whose size no header states,
    that the decoder reports damaged (:func:`decode_refusing_damage`) or cannot decode. Read by
    ``cv2.imread``, an 875 kB PNG declaring 30000 x 30000 pixels took 5.8 GB and a 10 kB WebP 1.5 GB,
    and a JPEG cut short was lifted with its lower half grey, without a word.
    """
    flat = _as_bytes_array(data)
    view = memoryview(np.ascontiguousarray(flat))          # no copy of the data
    if _format_and_size(view)[0] is not None:
        check_compressed_image("photo", flat, max_pixels)
    else:
        size = _header_size(view)
        if size is None or min(size) <= 0:
            raise ValueError(f"not an image whose size its header states (JPEG, PNG, BMP, WebP, TIFF; {flat.size} "
                             f"bytes, starting {bytes(flat[:8]).hex()})")
        if size[0] * size[1] > max_pixels:
            raise ImageTooLarge(f"photo ({flat.size} bytes) declares {size[0]}x{size[1]} = {size[0] * size[1]} "
                                f"pixels, more than max_image_pixels = {max_pixels}; not decoded")
    image = decode_refusing_damage(lambda: cv2.imdecode(flat, cv2.IMREAD_COLOR), "photo", flat)
    if image is None:
        # OpenCV's decoder gives no image of a JPEG cut short (cv2.imread gave its top, the rest grey)
        raise ValueError(f"could not decode the photo ({flat.size} bytes, starting {bytes(flat[:8]).hex()}): "
                         "damaged, cut short, or a format OpenCV does not read")
    return image


def _header_size(view: memoryview) -> tuple[int, int] | None:
    """``(width, height)`` that an image file of a format pillow knows states in its header (pillow
    reads no pixels to open one), or None."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():        # its warning of a large image: max_pixels is the bound here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(view)) as image:
                return image.size
    except Image.DecompressionBombError as exc:     # more pixels than pillow opens at all
        raise ImageTooLarge(f"photo ({len(view)} bytes): {exc}; not decoded") from None
    # a header damaged anywhere raises what pillow's parser of that format meets (OSError, SyntaxError,
    # struct.error, EOFError, ...): all of them mean no size to go by
    except Exception:  # noqa: BLE001
        return None


def decode_refusing_damage(decode, format: str, data) -> Any:  # noqa: A002
    """``decode()`` (a codec decoding the compressed image ``data``), refused with ``ValueError`` when
    the codec printed that it could not read part of the data (:data:`_DECODER_DAMAGE`).

    The codecs say so only on the process's stderr (file descriptor 2), one unthrottled line per
    frame, so it goes to a file while ``decode`` runs. Written back after: a codec's line
    (:data:`_CODEC_LINE`) that is not about damage at most once every ``_WRITE_BACK_PERIOD_S``, and
    every other line (another thread's, written meanwhile) as it came: throttled with the codec's,
    a node's warning logged by another thread during a decode was lost when it had come within the
    period before, and one that quoted a codec's damage words had a whole image refused."""
    flat = _as_bytes_array(data)
    try:
        sink = tempfile.TemporaryFile()
    except OSError:                     # no usable temporary directory: decode as before, unchecked
        return decode()
    with _STDERR_LOCK, sink:
        try:
            stderr = os.dup(2)
        except OSError:                 # no stderr to take anything off
            return decode()
        try:
            os.dup2(sink.fileno(), 2)
            image = decode()
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
        sink.seek(0)
        lines = sink.read().decode(errors="replace").splitlines(keepends=True)
        codec = [_CODEC_LINE.match(line) is not None for line in lines]
        damage = [line.strip() for line, ours in zip(lines, codec) if ours and _reports_damage(line, flat)]
        rest = "".join(line for line, ours in zip(lines, codec)
                       if not ours or (line.strip() not in damage and _not_written_lately(line)))
    if rest:
        os.write(2, rest.encode())
    if damage:
        raise ValueError(f"compressed image ({format!r}, {flat.size} bytes) has damaged data the decoder "
                         f"could not read ({'; '.join(damage)}); not used")
    return image


def _not_written_lately(line: str) -> bool:
    """Whether ``line`` may be written back to stderr now (see :data:`_WRITE_BACK_PERIOD_S`); if so,
    it counts as written. Called with ``_STDERR_LOCK`` held."""
    key, now = re.sub(r"\d+", "#", line.strip()), time.monotonic()
    if now - _written_back.get(key, -float("inf")) < _WRITE_BACK_PERIOD_S:
        return False
    if len(_written_back) >= _WRITE_BACK_KEYS:      # bounded: forgetting only lets a line through again
        _written_back.clear()
    _written_back[key] = now
    return True


def _reports_damage(line: str, data: np.ndarray) -> bool:
    """Whether a codec's stderr ``line`` about ``data`` says part of the image could not be decoded."""
    if any(text in line for text in _DECODER_DAMAGE):
        return True
    extraneous = _JPEG_EXTRANEOUS.search(line)
    if extraneous is None:
        return False
    # bytes the decoder skipped: a camera's zero padding right before the end marker, or scan data
    # it lost track of (the image after that point is garbled)
    count, end = int(extraneous[1]), data.tobytes().rfind(b"\xff\xd9")
    return extraneous[2] != "d9" or end < count or bool(data[end - count:end].any())


def compressed_msg_to_bgr(msg: Any, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """:func:`decode_compressed` on any object with ``sensor_msgs/CompressedImage``'s fields."""
    return decode_compressed(msg.format, msg.data, max_pixels)
