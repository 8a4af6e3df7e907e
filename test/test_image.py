"""sensor_msgs/Image and CompressedImage fields -> BGR numpy, without cv_bridge."""
from __future__ import annotations

import array
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from cfi_pose_ros.image import (DEFAULT_MAX_IMAGE_PIXELS, MAX_JPEG_HEADER_STEPS, MAX_JPEG_SCANS, MAX_PNG_CHUNKS,
                                MAX_PNG_TEXT_CHUNKS, SUPPORTED_ENCODINGS, ImageTooLarge, UnsupportedEncoding,
                                check_compressed_image, compressed_image_size, compressed_msg_to_bgr,
                                decode_compressed, image_msg_to_bgr, image_to_bgr, png_chunk_kinds)
from hostile import damaged_apng, hidden_frame_jpeg, many_scan_jpeg, png_chunk, text_bomb_png, zero_png

H, W = 5, 7


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _pack(pixels: np.ndarray, padding: int = 0) -> tuple[bytes, int]:
    """Row-major bytes with ``padding`` junk bytes after every row, and the step."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], padding), 0xAB, dtype=np.uint8)
    padded = np.hstack([rows, junk])
    return padded.tobytes(), padded.shape[1]


def _as_encoding(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """The pixels a camera would send for ``bgr`` in ``encoding`` (channels last)."""
    return {
        "bgr8": bgr, "8UC3": bgr, "rgb8": bgr[..., ::-1],
        "bgra8": np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]),
        "8UC4": np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]),
        "rgba8": np.dstack([bgr[..., ::-1], np.full(bgr.shape[:2], 7, np.uint8)]),
        "mono8": bgr[..., 1], "8UC1": bgr[..., 1],
    }[encoding]


EIGHT_BIT = ["bgr8", "rgb8", "bgra8", "rgba8", "mono8", "8UC1", "8UC3", "8UC4"]


@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("encoding", EIGHT_BIT)
def test_eight_bit_encodings(bgr, encoding, padding):
    data, step = _pack(np.ascontiguousarray(_as_encoding(bgr, encoding)), padding)
    out = image_to_bgr(encoding, H, W, step, data)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.writeable
    if encoding in ("mono8", "8UC1"):
        expected = np.repeat(bgr[..., 1:2], 3, axis=2)
    else:
        expected = bgr
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_sixteen_bit_keeps_high_byte(encoding, big_endian):
    values = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 1000
    raw = values.astype(">u2" if big_endian else "<u2")
    data, step = _pack(raw, padding=4)
    out = image_to_bgr(encoding, H, W, step, data, is_bigendian=big_endian)
    np.testing.assert_array_equal(out[..., 0], (values >> 8).astype(np.uint8))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("encoding, order", [("rgb16", [2, 1, 0]), ("bgr16", [0, 1, 2]),
                                             ("rgba16", [2, 1, 0, 3]), ("bgra16", [0, 1, 2, 3]),
                                             ("16UC3", [0, 1, 2]), ("16UC4", [0, 1, 2, 3])])
def test_sixteen_bit_colour_keeps_the_high_byte_in_bgr_order(bgr, encoding, order, big_endian):
    bgra16 = np.dstack([bgr, np.full(bgr.shape[:2], 99, np.uint8)]).astype(np.uint16) * 257 + 3
    raw = np.ascontiguousarray(bgra16[..., order]).astype(">u2" if big_endian else "<u2")
    data, step = _pack(raw, padding=5)
    np.testing.assert_array_equal(image_to_bgr(encoding, H, W, step, data, is_bigendian=big_endian), bgr)


def _mosaic(bgr_colour, pattern: str, height: int = 8, width: int = 10) -> np.ndarray:
    """A Bayer sensor's bytes for a uniform colour: ``pattern`` names the 2x2 tile row by row."""
    value = {"b": bgr_colour[0], "g": bgr_colour[1], "r": bgr_colour[2]}
    mosaic = np.zeros((height, width), np.uint16)
    for index, channel in enumerate(pattern):
        mosaic[index // 2::2, index % 2::2] = value[channel]
    return mosaic


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaics_are_demosaiced_in_their_own_pattern(pattern, bits):
    # Unequal channels, so a pattern read as another one gives another colour.
    colour = (10, 60, 200)
    mosaic = _mosaic(colour, pattern)
    raw = (mosaic * 257).astype("<u2") if bits == 16 else mosaic.astype(np.uint8)
    data, step = _pack(raw, padding=2)
    out = image_to_bgr(f"bayer_{pattern}{bits}", 8, 10, step, data)
    assert out.shape == (8, 10, 3)
    np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to(np.array(colour, np.uint8), (4, 6, 3)))


@pytest.mark.parametrize("height, width", [(2, 2), (2, 4), (4, 2), (2, 6), (2, 3), (3, 2), (2, 5), (3, 3), (3, 4)])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_a_bayer_mosaic_of_under_3_rows_or_columns_keeps_its_colours(pattern, bits, height, width):
    """OpenCV's demosaic returned all zeros, without an error, for a mosaic of 2 rows or columns: a
    tiny camera ROI (or a test pattern) came out black. Each whole 2x2 cell now gives its colour to
    its pixels (a last odd row or column the cell beside it's); from 3x3 on OpenCV demosaics as before."""
    colour = (10, 60, 200)
    mosaic = _mosaic(colour, pattern, height, width)
    raw = (mosaic * 257).astype("<u2") if bits == 16 else mosaic.astype(np.uint8)
    data, step = _pack(raw, padding=3)
    out = image_to_bgr(f"bayer_{pattern}{bits}", height, width, step, data)
    np.testing.assert_array_equal(out, np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)))
    assert out.flags.c_contiguous and out.flags.writeable


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_each_cell_of_a_two_row_bayer_mosaic_gives_its_own_colour_with_the_mean_of_its_greens(pattern):
    left, right = (10, 60, 200), (250, 5, 40)
    mosaic = np.hstack([_mosaic(left, pattern, 2, 2), _mosaic(right, pattern, 2, 2)]).astype(np.uint8)
    greens = [(r, c) for r in range(2) for c in range(2, 4) if pattern[r * 2 + c % 2] == "g"]
    mosaic[greens[0]], mosaic[greens[1]] = 7, 8           # the right cell's greens differ: mean 7.5 -> 8
    big_endian = (mosaic.astype(np.uint16) * 257).astype(">u2")
    for encoding, data, bigendian in ((f"bayer_{pattern}8", mosaic, False), (f"bayer_{pattern}16", big_endian, True)):
        out = image_to_bgr(encoding, 2, 4, data.strides[0], data.tobytes(), is_bigendian=bigendian)
        np.testing.assert_array_equal(out[:, :2], np.broadcast_to(np.array(left, np.uint8), (2, 2, 3)))
        np.testing.assert_array_equal(out[:, 2:], np.broadcast_to(np.array((250, 8, 40), np.uint8), (2, 2, 3)))


@pytest.mark.parametrize("height, width", [(1, 1), (1, 6), (6, 1), (1, 2), (2, 1)])
@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_grbg16"])
def test_a_bayer_mosaic_one_pixel_high_or_wide_is_refused(encoding, height, width):
    """No whole 2x2 cell: one of the three colours was never sampled (OpenCV gave black)."""
    depth = 2 if encoding.endswith("16") else 1
    with pytest.raises(ValueError, match=rf"{encoding} image of {width}x{height} pixels has no whole 2x2 Bayer cell"):
        image_to_bgr(encoding, height, width, width * depth, bytes(height * width * depth))


# BT.601 video range: pure red is Y 81, Cb 90, Cr 240; white is Y 235 with neutral chroma.
@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
@pytest.mark.parametrize("y, cb, cr, expected", [(81, 90, 240, (0, 0, 255)), (235, 128, 128, (255, 255, 255))])
def test_packed_yuv422_is_converted_with_its_byte_order(encoding, y, cb, cr, expected):
    pixels = np.zeros((4, 6, 2), np.uint8)
    chroma = np.tile([cb, cr], 3)
    luma_first = encoding in ("yuv422_yuy2", "yuyv")
    pixels[..., 0 if luma_first else 1] = y
    pixels[..., 1 if luma_first else 0] = chroma
    data, step = _pack(pixels.reshape(4, -1), padding=4)
    out = image_to_bgr(encoding, 4, 6, step, data)
    assert np.abs(out.astype(int) - expected).max() <= 2, out[0, 0]


def _semi_planar(luma: np.ndarray, cb: np.ndarray, cr: np.ndarray, encoding: str, padding: int) -> tuple[bytes, int]:
    """nv12/nv21 bytes of a luma plane (H, W) and chroma planes (H/2, W/2): luma rows, then rows of
    interleaved chroma pairs, each row ``padding`` bytes longer than its pixels."""
    pairs = np.stack([cb, cr] if encoding == "nv12" else [cr, cb], axis=-1).reshape(cb.shape[0], -1)
    return _pack(np.concatenate([luma, pairs]), padding=padding)


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_semi_planar_yuv420_is_read_with_its_chroma_order_and_step(encoding):
    """Luma rows then chroma rows, each `step` bytes apart (RViz's reading of nv12): on an image
    whose left half is red and right half white, a chroma order swapped gives another colour and a
    step read as the width shears the rows."""
    height, width = 6, 8
    luma = np.full((height, width), 235, np.uint8)
    cb = np.full((height // 2, width // 2), 128, np.uint8)
    cr = cb.copy()
    luma[:, :width // 2], cb[:, :width // 4], cr[:, :width // 4] = 81, 90, 240
    data, step = _semi_planar(luma, cb, cr, encoding, padding=6)
    out = image_to_bgr(encoding, height, width, step, data)
    assert out.shape == (height, width, 3) and out.flags.c_contiguous and out.flags.writeable
    expected = np.zeros((height, width, 3), int)
    expected[:, :width // 2], expected[:, width // 2:] = (0, 0, 255), (255, 255, 255)
    assert np.abs(out.astype(int) - expected).max() <= 2, out[:, :, 2]


@pytest.mark.parametrize("height, width, size, match", [
    (5, 8, 200, r"odd size \(8x5\)"), (6, 7, 200, r"odd size \(7x6\)"),
    (6, 8, 8 * 9 - 1, r"has 71 bytes, expected at least step\*height\*3/2 = 8\*6\*3/2 = 72")])
def test_semi_planar_yuv420_of_an_odd_size_or_short_data_is_refused(height, width, size, match):
    with pytest.raises(ValueError, match=match):
        image_to_bgr("nv12", height, width, width, bytes(size))


def _nv24(luma: np.ndarray, cb: np.ndarray, cr: np.ndarray, padding: int) -> tuple[bytes, int]:
    """nv24 bytes of full-size luma, Cb and Cr planes (H, W) as V4L2 lays them out: ``height`` luma
    rows ``step`` bytes apart, then ``height`` rows of Cb Cr pairs ``2 * step`` bytes apart (twice the
    luma rows' padding)."""
    height, width = luma.shape
    step = width + padding
    out = np.full((3 * height, step), 0xAB, np.uint8)
    out[:height, :width] = luma
    chroma = out[height:].reshape(height, 2 * step)
    chroma[:, :2 * width] = np.stack([cb, cr], axis=-1).reshape(height, 2 * width)
    return out.tobytes(), step


def _opencv_yuv444_to_bgr(luma: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """OpenCV's own BT.601 video-range conversion of each (Y, Cb, Cr) sample: an nv12 image twice as
    large whose every 2x2 block holds one sample (its chroma shared by exactly those four pixels)."""
    height, width = luma.shape
    big_luma = np.repeat(np.repeat(luma, 2, axis=0), 2, axis=1)
    pairs = np.stack([cb, cr], axis=-1).reshape(height, 2 * width)
    return cv2.cvtColor(np.concatenate([big_luma, pairs]), cv2.COLOR_YUV2BGR_NV12)[::2, ::2]


@pytest.mark.parametrize("padding", [0, 5])
def test_nv24_is_read_as_opencv_converts_its_samples(padding):
    """nv24 (YUV 4:4:4 semi-planar, Jetson cameras): every pixel its own chroma pair, colours
    as OpenCV's BT.601 video-range conversion of the same samples within rounding; the chroma rows
    are 2 * step apart (a step read as the chroma rows' own shears them)."""
    rng = np.random.default_rng(24)
    height, width = 16, 24
    luma, cb, cr = (rng.integers(0, 256, (height, width), dtype=np.uint8) for _ in range(3))   # beyond video range too
    data, step = _nv24(luma, cb, cr, padding)
    out = image_to_bgr("nv24", height, width, step, data)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable
    expected = _opencv_yuv444_to_bgr(luma, cb, cr)
    assert np.abs(out.astype(int) - expected).max() <= 1, (out[..., 2], expected[..., 2])
    # a hand-computed pixel: BT.601 video-range red and white
    luma[0, 0], cb[0, 0], cr[0, 0] = 81, 90, 240
    luma[0, 1], cb[0, 1], cr[0, 1] = 235, 128, 128
    out = image_to_bgr("nv24", height, width, step, _nv24(luma, cb, cr, padding)[0])
    assert np.abs(out[0, :2].astype(int) - [(0, 0, 255), (255, 255, 255)]).max() <= 2, out[0, :2]


@pytest.mark.parametrize("step, size, match", [
    (9, 3 * 9 * 6 - 1, r"nv24 image data has 161 bytes, expected at least 3\*step\*height = 3\*9\*6 = 162"),
    (8, 1000, r"step 8 is shorter than one row of 9 nv24 pixels"),
])
def test_nv24_short_data_or_step_is_refused(step, size, match):
    with pytest.raises(ValueError, match=match):
        image_to_bgr("nv24", 6, 9, step, bytes(size))
    with pytest.raises(ValueError, match="zero size"):
        image_to_bgr("nv24", 0, 9, 9, b"")


def test_packed_yuv422_of_an_odd_width_is_refused():
    with pytest.raises(ValueError, match="odd width"):
        image_to_bgr("yuyv", 4, 5, 10, bytes(40))


def test_buffer_types_and_no_aliasing(bgr):
    data, step = _pack(bgr)
    for buffer in (data, bytearray(data), memoryview(data), array.array("B", data),
                   np.frombuffer(data, dtype=np.uint8)):
        out = image_to_bgr("bgr8", H, W, step, buffer)
        np.testing.assert_array_equal(out, bgr)
    mutable = bytearray(data)
    out = image_to_bgr("bgr8", H, W, step, mutable)
    mutable[0] ^= 0xFF
    assert out[0, 0, 0] == bgr[0, 0, 0], "result must not alias the message buffer"


def test_extra_trailing_bytes_are_ignored(bgr):
    data, step = _pack(bgr)
    np.testing.assert_array_equal(image_to_bgr("bgr8", H, W, step, data + b"\0" * 11), bgr)


def test_message_like_object(bgr):
    data, step = _pack(bgr[..., ::-1].copy(), padding=2)
    msg = SimpleNamespace(encoding="rgb8", height=H, width=W, step=step, is_bigendian=0, data=data)
    np.testing.assert_array_equal(image_msg_to_bgr(msg), bgr)


@pytest.mark.parametrize("height, width", [(0, W), (H, 0), (0, 0)])
def test_zero_size(height, width):
    with pytest.raises(ValueError, match="zero size"):
        image_to_bgr("bgr8", height, width, width * 3, b"")


def test_step_too_short(bgr):
    data, _ = _pack(bgr)
    with pytest.raises(ValueError, match=r"step 20 is shorter than one row of 7 bgr8 pixels \(21 bytes\)"):
        image_to_bgr("bgr8", H, W, W * 3 - 1, data)


def test_data_too_short(bgr):
    data, step = _pack(bgr, padding=1)
    with pytest.raises(ValueError, match=r"has 109 bytes, expected at least step\*height = 22\*5 = 110"):
        image_to_bgr("bgr8", H, W, step, data[:-1])


@pytest.mark.parametrize("encoding", ["nv42", "32FC1", "BGR8", "NV24", ""])
def test_unsupported_encoding_names_the_supported_ones(encoding):
    with pytest.raises(UnsupportedEncoding) as info:
        image_to_bgr(encoding, H, W, W * 3, bytes(H * W * 3))
    assert isinstance(info.value, ValueError)
    for supported in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"):
        assert supported in str(info.value)
    assert set(SUPPORTED_ENCODINGS) >= {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC3"}


def test_non_uint8_array_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        image_to_bgr("bgr8", H, W, W * 3, np.zeros(H * W * 3, dtype=np.float32))


@pytest.mark.parametrize("fmt, ext", [("png", ".png"), ("bgr8; png compressed bgr8", ".png"),
                                      ("jpeg", ".jpg")])
def test_decode_compressed(bgr, fmt, ext):
    ok, encoded = cv2.imencode(ext, bgr)
    assert ok
    out = decode_compressed(fmt, encoded.tobytes())
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(out, bgr)
    msg = SimpleNamespace(format=fmt, data=array.array("B", encoded.tobytes()))
    np.testing.assert_array_equal(compressed_msg_to_bgr(msg), out)


def test_decode_compressed_grey_png_gives_three_channels(bgr):
    _, encoded = cv2.imencode(".png", bgr[..., 0])
    out = decode_compressed("mono8; png compressed", encoded.tobytes())
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out[..., 0], bgr[..., 0])


def test_decode_compressed_errors():
    with pytest.raises(ValueError, match="no data"):
        decode_compressed("jpeg", b"")
    with pytest.raises(ValueError, match="could not decode compressed image"):
        decode_compressed("jpeg", b"this is not a jpeg at all")
    with pytest.raises(UnsupportedEncoding, match="depth"):
        decode_compressed("16UC1; compressedDepth png", b"\x00" * 20)


# ------------------------------------------------------ the decoded size is bounded (issue 13, item 11)

@pytest.mark.parametrize("ext, params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])])
@pytest.mark.parametrize("shape", [(5, 7), (480, 640), (1, 1)])
def test_the_header_gives_the_size_without_decoding(ext, params, shape):
    ok, encoded = cv2.imencode(ext, np.zeros((*shape, 3), np.uint8), params)
    assert ok
    assert compressed_image_size(encoded.tobytes()) == (shape[1], shape[0])
    assert compressed_image_size(b"GIF89a....") is None and compressed_image_size(b"\xff\xd8\xff") is None


def test_a_jpeg_with_large_metadata_before_the_frame_header():
    ok, encoded = cv2.imencode(".jpg", np.zeros((6, 9, 3), np.uint8))
    jpeg = encoded.tobytes()
    app = b"\xff\xe1" + (65535).to_bytes(2, "big") + bytes(65533)          # two full APP1 segments first
    assert compressed_image_size(jpeg[:2] + app + app + jpeg[2:]) == (9, 6)


def test_an_image_declaring_too_many_pixels_is_refused_without_decoding(monkeypatch):
    """A 0.25 MB PNG raised the detector's peak memory from 212 to 1677 MiB."""
    huge = zero_png(20000, 1000)                         # 20 MP (the bound's default is 16.8 MP)
    assert len(huge) < 100_000
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ImageTooLarge, match=r"declares 20000x1000 = 20000000 pixels, more than max_image_pixels"):
        decode_compressed("png", huge)
    with pytest.raises(ImageTooLarge):
        check_compressed_image("png", zero_png(100, 100), max_pixels=9999)
    assert decoded == []
    assert DEFAULT_MAX_IMAGE_PIXELS == 4096 * 4096
    assert check_compressed_image("png", zero_png(100, 100), max_pixels=10000) == (100, 100)


def test_a_jpeg_whose_frame_libjpeg_finds_elsewhere_is_refused_without_decoding(monkeypatch):
    """0xFF 0x00 is no marker: libjpeg skips it and takes the next marker it finds, byte by byte. The
    header was read as if it were a segment with a length, so a 702-byte JPEG read as 64 x 48 passed
    max_image_pixels and libjpeg decoded the 30000 x 30000 frame hidden inside it (5.2 GB, 15 s)."""
    bomb = hidden_frame_jpeg(30000, 30000)
    assert len(bomb) < 1000 and cv2.imdecode(np.frombuffer(hidden_frame_jpeg(80, 60), np.uint8),
                                             cv2.IMREAD_COLOR).shape == (60, 80, 3)    # libjpeg's reading
    assert compressed_image_size(bomb) is None
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ValueError, match="not a JPEG or PNG whose size its header states"):
        decode_compressed("jpeg", bomb)
    assert decoded == []


def test_a_jpeg_of_too_many_scans_is_refused_without_decoding(monkeypatch):
    """libjpeg passes over the whole image for each scan of a progressive JPEG: a 130 kB one of
    4096 x 4096 pixels repeating one 33-byte scan 1000 times took 19 s to decode, the detector
    stalled all that time. libjpeg's own progressive JPEGs (10 scans) and as many scans as allowed
    are decoded."""
    assert check_compressed_image("jpeg", many_scan_jpeg(64, 48, MAX_JPEG_SCANS)) == (64, 48)
    assert decode_compressed("jpeg", many_scan_jpeg(64, 48, 10)).shape == (48, 64, 3)
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ValueError, match=f"is a JPEG of 1000 scans, more than {MAX_JPEG_SCANS} .*not decoded"):
        decode_compressed("jpeg", many_scan_jpeg(4096, 4096, 1000))
    with pytest.raises(ValueError, match=f"JPEG of {MAX_JPEG_SCANS + 1} scans"):
        check_compressed_image("jpeg", many_scan_jpeg(64, 48, MAX_JPEG_SCANS + 1))
    assert decoded == []


def test_a_png_of_too_many_compressed_text_chunks_is_refused_without_decoding(monkeypatch):
    """libpng inflates every zTXt/iTXt chunk (up to 8 MB each) before the pixels: a 7.8 MB PNG of
    1000 such chunks took 17 s to decode, the detector stalled all that time. As many as allowed
    are decoded."""
    assert decode_compressed("png", text_bomb_png(MAX_PNG_TEXT_CHUNKS)).shape == (48, 64, 3)
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ValueError, match=f"is a PNG of 1000 compressed text chunks, more than {MAX_PNG_TEXT_CHUNKS}"
                                         " .*not decoded"):
        decode_compressed("png", text_bomb_png(1000))
    assert decoded == []


@pytest.mark.parametrize("row_filter", [7, 0], ids=["damaged_frame", "intact"])
def test_an_animated_png_is_refused_without_decoding(monkeypatch, row_filter):
    """OpenCV 5.0's decoder died of SIGSEGV on an animated PNG whose second frame names a row filter
    PNG has not (every chunk whole, CRCs right): the detector and offline lifting with it. No
    camera sends an animation: refused, damaged or not, before any decoder sees it."""
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ValueError, match=r"is an animated PNG \(its acTL, fcTL, fdAT chunks\).*not decoded"):
        decode_compressed("png", damaged_apng(row_filter))
    assert decoded == []


def test_the_animated_png_that_crashed_the_decoder_is_refused_in_a_process_of_its_own():
    """The same file outside this test process, with OpenCV's real decoder in reach: exit 0, not
    SIGSEGV (a regression would take the test run with it otherwise)."""
    code = ("import sys\n"
            "from hostile import damaged_apng\n"
            "from cfi_pose_ros.image import decode_compressed\n"
            "try:\n"
            "    decode_compressed('png', damaged_apng(7))\n"
            "except ValueError as exc:\n"
            "    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "is an animated PNG" in done.stdout, done.stdout


def test_headers_are_walked_a_bounded_number_of_steps():
    """The header walk runs in Python, one segment or chunk at a time: a 10 MB JPEG of 2.5 million
    4-byte comment segments took 2.2 s to read its size, 10 million fill bytes 1.0 s, a 10 MB PNG of
    870,000 empty chunks 1.2 s, for every such message. Past the bound they are refused; as many as it
    allows are still read."""
    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    comment = b"\xff\xfe\x00\x02"
    assert compressed_image_size(jpeg[:2] + comment * (MAX_JPEG_HEADER_STEPS // 2) + jpeg[2:]) == (64, 48)
    assert compressed_image_size(jpeg[:2] + b"\xff" * (MAX_JPEG_HEADER_STEPS // 2) + jpeg[2:]) == (64, 48)
    for padding in (comment * (MAX_JPEG_HEADER_STEPS + 1), b"\xff" * (MAX_JPEG_HEADER_STEPS + 1)):
        assert compressed_image_size(jpeg[:2] + padding + jpeg[2:]) is None
        with pytest.raises(ValueError, match=f"within {MAX_JPEG_HEADER_STEPS} segments"):
            check_compressed_image("jpeg", jpeg[:2] + padding + jpeg[2:])

    png = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    empty_text = png_chunk(b"tEXt", b"")
    after_ihdr = 8 + 25
    fewest = png[:after_ihdr] + empty_text * (MAX_PNG_CHUNKS - 3) + png[after_ihdr:]    # + IHDR, IDAT, IEND
    assert png_chunk_kinds(memoryview(png)).total() == 3
    assert decode_compressed("png", fewest).shape == (48, 64, 3)
    with pytest.raises(ValueError, match=f"is a PNG of more than {MAX_PNG_CHUNKS} chunks"):
        check_compressed_image("png", png[:after_ihdr] + empty_text * MAX_PNG_CHUNKS + png[after_ihdr:])


def test_only_jpeg_and_png_are_decoded():
    ok, encoded = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="not a JPEG or PNG"):
        decode_compressed("bmp", encoded.tobytes())


def test_a_jpeg_with_an_exif_orientation_is_decoded_as_sent():
    """An EXIF Orientation tag (6: rotate 90 degrees) must not rotate the pixels: the keypoints, the
    message's image_width/height and the camera's CameraInfo describe the pixel grid as sent (what
    cv_bridge / image_transport decode), and the header's size says so too."""
    import struct

    image = np.zeros((30, 40, 3), np.uint8)
    image[:, :20] = 255                                   # 40 wide, 30 high, left half white
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    exif = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    rotated = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]
    assert check_compressed_image("jpeg", rotated) == (40, 30)
    out = decode_compressed("jpeg", rotated)
    assert out.shape == (30, 40, 3)
    assert out[:, :18].mean() > 240 and out[:, 22:].mean() < 15


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tiff"])
def test_a_photo_is_decoded_upright_and_one_too_large_is_not_decoded(monkeypatch, suffix):
    """Photos (offline lifting) are turned as their EXIF orientation says, as cv2.imread turned them;
    one declaring more than max_pixels, in whatever format, never reaches the decoder."""
    import io
    import struct

    from PIL import Image

    from cfi_pose_ros.image import decode_photo

    image = np.zeros((30, 40, 3), np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    exif = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    rotated = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]
    assert decode_photo(rotated).shape == (40, 30, 3)               # 40 wide as sent, turned a quarter
    file = io.BytesIO()
    Image.new("L", (40, 30)).save(file, format=suffix[1:], lossless=True)
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ImageTooLarge, match="declares 40x30 = 1200 pixels, more than max_image_pixels = 1000"):
        decode_photo(file.getvalue(), max_pixels=1000)
    assert decoded == []


@pytest.mark.parametrize("damage", ["cut_in_half", "cut_to_40_bytes", "zeroed_data", "no_iend"])
def test_a_damaged_png_is_refused_before_libpng_prints_to_stderr(damage, capfd):
    """libpng writes its own unthrottled 'libpng error' line to stderr for every broken PNG; the node's
    drop warning is throttled, so a stream of damaged frames flooded the log."""
    rng = np.random.default_rng(0)
    png = cv2.imencode(".png", rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))[1].tobytes()
    assert check_compressed_image("png", png) == (80, 60)
    broken = {"cut_in_half": png[:len(png) // 2], "cut_to_40_bytes": png[:40],
              "zeroed_data": png[:len(png) // 2] + bytes(50) + png[len(png) // 2 + 50:],
              "no_iend": png[:-12]}[damage]
    with pytest.raises(ValueError, match="truncated or damaged PNG"):
        decode_compressed("png", broken)
    assert capfd.readouterr().err == ""


def _png_with_idat(png: bytes, spoil) -> bytes:
    """``png`` with ``spoil`` applied to each IDAT chunk's payload and every CRC made to match again:
    intact chunks around data libpng cannot inflate or unfilter."""
    out, i = png[:8], 8
    while i < len(png):
        length = int.from_bytes(png[i:i + 4], "big")
        kind, payload = png[i + 4:i + 8], png[i + 8:i + 8 + length]
        payload = spoil(payload) if kind == b"IDAT" else payload
        out += png_chunk(kind, payload)
        i += 12 + length
    return out


@pytest.mark.parametrize("damage", ["jpeg_scan_zeroed", "jpeg_scan_cut_short", "png_idat_zeroed", "png_idat_cut_short"])
def test_data_the_codec_cannot_decode_is_refused_without_the_codec_printing(damage, capfd):
    """libjpeg decodes on past damaged scan data (a camera's broken MJPEG frame) and returns the image
    with the rest grey or garbled: its only sign is a 'Corrupt JPEG data: ...' warning on stderr, one
    unthrottled line per frame, and the detector used the image. libpng prints 'libpng error: ...'
    for a PNG whose chunks and CRCs are intact around data it cannot inflate (what png_chunk_kinds lets
    through). Both are refused with the codec's words in the error, and nothing on stderr."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    png = cv2.imencode(".png", image)[1].tobytes()
    middle = len(jpeg) // 2
    broken = {"jpeg_scan_zeroed": jpeg[:middle] + bytes(64) + jpeg[middle + 64:],
              "jpeg_scan_cut_short": jpeg[:middle] + jpeg[-2:],
              "png_idat_zeroed": _png_with_idat(png, lambda d: d[:len(d) // 2] + bytes(40) + d[len(d) // 2 + 40:]),
              "png_idat_cut_short": _png_with_idat(png, lambda d: d[:len(d) // 2])}[damage]
    with pytest.raises(ValueError, match="damaged data .*(Corrupt JPEG data|libpng error)"):
        decode_compressed("jpeg" if damage.startswith("jpeg") else "png", broken)
    assert capfd.readouterr().err == ""


def test_a_jpeg_padded_before_its_end_marker_is_decoded_whole(capfd, monkeypatch):
    """Some cameras pad MJPEG frames before the end marker: libjpeg warns ('extraneous bytes before
    marker 0xd9') but the image is whole, so it is used, and the warning is left on stderr as it was
    (once in _WRITE_BACK_PERIOD_S: none written back before this test)."""
    import cfi_pose_ros.image

    monkeypatch.setattr(cfi_pose_ros.image, "_written_back", {})
    image = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    out = decode_compressed("jpeg", jpeg[:-2] + bytes(10) + jpeg[-2:])
    np.testing.assert_array_equal(out, decode_compressed("jpeg", jpeg))
    assert "extraneous bytes before marker 0xd9" in capfd.readouterr().err


def test_a_codec_warning_that_comes_with_every_frame_is_written_once(monkeypatch, capfd):
    """libpng warns of a broken colour profile ('iCCP: too short'), libjpeg of an inconsistent
    progression, on every frame, and decode on: the images are used, and the warnings flooded the
    log, one line per frame (30 frames through the detector node: 30 lines). Once per
    _WRITE_BACK_PERIOD_S now (made an hour here), lines that differ only in numbers counting as one;
    any other line is still written back."""
    import os
    import zlib

    import cfi_pose_ros.image as image

    monkeypatch.setattr(image, "_written_back", {})
    monkeypatch.setattr(image, "_WRITE_BACK_PERIOD_S", 3600.0)
    png = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    profile = b"bad\x00\x00" + zlib.compress(bytes(200))
    broken_profile = png[:33] + png_chunk(b"iCCP", profile) + png[33:]                  # right after the IHDR chunk
    bogus_progression = many_scan_jpeg(64, 48, 11)
    for _ in range(30):
        assert decode_compressed("png", broken_profile).shape == (48, 64, 3)
        assert decode_compressed("jpeg", bogus_progression).shape == (48, 64, 3)
    for k in range(3):
        image.decode_refusing_damage(lambda: os.write(2, f"libpng warning: padding of {k} bytes\n".encode()),
                                     "jpeg", png)
    image.decode_refusing_damage(lambda: os.write(2, b"libpng warning: another line\n"), "jpeg", png)
    err = capfd.readouterr().err
    assert err.count("libpng warning: iCCP: too short") == 1, err
    assert err.count("Inconsistent progression sequence") == 1, err
    assert err.count("padding of") == 1 and "another line" in err, err


def test_another_threads_log_lines_written_during_a_decode_reach_stderr_each_one(ros_env, monkeypatch, capfd):
    """While a codec decodes, stderr (descriptor 2) goes to a file, so whatever another thread logs
    meanwhile lands there too. Those lines were written back throttled with the codec's: a node's
    line that had come within _WRITE_BACK_PERIOD_S before was lost, and one that quoted a codec's
    damage words (a drop warning of the frame before) had this whole, healthy image refused. Each
    decode here waits until a real thread has logged through rclpy (rcutils writes to stderr)."""
    import threading

    import rclpy.logging

    import cfi_pose_ros.image as image

    monkeypatch.setattr(image, "_written_back", {})
    monkeypatch.setattr(image, "_WRITE_BACK_PERIOD_S", 3600.0)
    png = cv2.imencode(".png", np.full((48, 64, 3), 77, np.uint8))[1].tobytes()
    logger = rclpy.logging.get_logger("camera_driver")
    said = ["frame 101 arrived 12 ms late", "frame 102 arrived 13 ms late",
            "image dropped (bad_image): damaged data (Premature end of JPEG file); not used"]

    def decode_while_a_thread_logs(text: str):
        thread = threading.Thread(target=logger.warning, args=(text,))
        thread.start()
        thread.join()                           # written to descriptor 2 by now, inside the decode
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)

    for text in said:
        out = image.decode_refusing_damage(lambda: decode_while_a_thread_logs(text), "png", png)
        assert out.shape == (48, 64, 3) and (out == 77).all()
    err = capfd.readouterr().err
    for text in said:
        assert f"[camera_driver]: {text}" in err, err
