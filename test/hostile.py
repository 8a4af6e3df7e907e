"""Inputs and models built to misbehave on purpose (issue 13), shared by the tests.

* :func:`overflowing_model`: finite weights that pass every start-up check (the
  lifting node's too: they lift people as standing adults in metres). The
  lifter's output is checked at configure on plausible people
  (:func:`cfi_pose_ros.inference.reference.reference_inputs`, every joint well
  inside the image); nothing guarantees what a model does elsewhere, and this
  one returns NaN there, so tests can show what the pipeline and the node do
  with a lifter whose output is not finite.
* :func:`zero_png`: a small PNG file that declares a huge image.
* :func:`many_scan_jpeg`: a small progressive JPEG that takes the decoder a pass over the
  whole image for each of its many scans.
* :func:`text_bomb_png`: a small PNG whose text chunks each inflate to 8 MB.
* :func:`hidden_frame_jpeg`: a small JPEG whose header reads as 64 x 48 to a parser that takes
  0xFF 0x00 for a marker, and as a huge image to libjpeg.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import torch

from cfi_pose_ros.model import CFIConfig, CFINet

# A joint at x = 1.45 image widths (normalised x = 1.9; plausible people stay below 0.97)
# drives one attention logit past float32's range: that joint's attention row becomes NaN.
OVERFLOW_X_FRACTION = 1.45


def overflowing_model(seed: int = 0) -> CFINet:
    """A small ``CFINet`` (D=32, one block), finite everywhere on the reference people, NaN for a
    person with a joint at ``x = OVERFLOW_X_FRACTION * image_width``.

    How: the embedding puts the joint's normalised x on channel 0 (``x * (e0 - e1)``) beside a
    constant joint embedding ``10 (e2 - e3)``, so after the block's LayerNorm channel 0 grows
    about linearly with x (0.38 at x = 0.96, 0.75 at x = 1.9); the global attention's query and
    key read channel 0 with a gain of ``sqrt(1.5e39)``, so a joint's query-key product with
    itself is ``1.5e39 * LN0^2``: 2.2e38 (finite) for the widest reference person, 8.4e38
    (inf: float32 ends at 3.4e38) at x = 1.9, and softmax over an infinite logit is NaN.
    That is the eager PyTorch graph (``backend="torch"``); the fused ONNX graph folds the
    attention scale into the query and overflows only past x ~ 2.1.
    """
    torch.manual_seed(seed)
    model = CFINet(CFIConfig(dim=32, depth=1, heads=4)).eval()
    gain = float(np.sqrt(1.5e39))
    joints = np.arange(17)
    with torch.no_grad():
        model.embed.weight.zero_()
        model.embed.bias.zero_()
        model.embed.weight[0, 0], model.embed.weight[1, 0] = 1.0, -1.0
        model.joint_embed.zero_()
        model.joint_embed[0, joints, 2 + joints] = 10.0
        model.joint_embed[0, joints, 2 + (joints + 1) % 17] = -10.0
        qkv = model.blocks[0].global_attn.qkv
        qkv.weight[0].zero_()
        qkv.weight[32].zero_()
        qkv.weight[0, 0] = qkv.weight[32, 0] = gain          # query and key of head 0, dimension 0
        qkv.bias[0] = qkv.bias[32] = 0.0
        _lift_to_a_standing_person(model)
    return model


def _lift_to_a_standing_person(model: CFINet) -> None:
    """Make the head read each joint's own pair of embedding channels (joint j: +10 on channel
    2 + j, -10 on 2 + (j + 1) mod 17, which leave every joint's LayerNorm statistics those of one
    +10 and one -10 channel, so channel 0's overflow is where it was) as that joint of a standing
    adult: the lifting node takes only weights that lift people in metres, upright
    (not_people_in_metres). The head's other channels keep their random weights: the output
    still follows the input."""
    from cfi_pose_ros.inference.reference import _STANDING

    standing = _STANDING * np.array([-1.0, -1.0, 1.0])           # camera frame: x right, y down
    standing = standing - standing.mean(axis=0)                  # a cycle of differences sums to 0
    # column c of the head adds w[c] - w[c + 1] to joint j = c - 2: w[j] - w[j + 1] = standing[j]
    columns = np.zeros((17, 3))
    for j in range(16):
        columns[j + 1] = columns[j] - standing[j]
    joint_embed = model.joint_embed[0].clone()
    normed = model.norm_out(model.blocks[0](joint_embed[None]))[0]        # the features at x = y = 0
    gain = float(normed[np.arange(17), 2 + np.arange(17)].mean())
    model.head.weight[:, 2:19] = torch.as_tensor(columns.T / gain, dtype=torch.float32)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, kind, payload and the CRC that makes it intact."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def zero_png(width: int, height: int) -> bytes:
    """A valid 8-bit greyscale PNG of ``width`` x ``height`` black pixels: about 1/1000 of the
    decoded size (12000 x 12000 is ~140 kB of file, 432 MB once decoded to BGR)."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)                       # filter byte 0, then the pixels
    rows_per_call = max(1, (1 << 22) // len(row))
    data = []
    for start in range(0, height, rows_per_call):
        data.append(compressor.compress(row * min(rows_per_call, height - start)))
    data.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(data))
            + png_chunk(b"IEND", b""))


def damaged_apng(row_filter: int = 7) -> bytes:
    """A 1 x 1 greyscale animated PNG of two frames, every chunk whole with its CRC right: the
    default image (IDAT), then a frame (fcTL, fdAT) whose one row names filter ``row_filter``
    (0-4 are PNG's; 7 is none). OpenCV 5.0's decoder died of SIGSEGV on it, 10 of 10 times
    (found by a helper session's fuzzing, 2026-12-05)."""
    def frame_control(sequence: int) -> bytes:     # 1 x 1 at (0, 0), delay 1/10 s, no dispose, source blend
        return png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, 1, 1, 0, 0, 1, 10, 0, 0))

    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + png_chunk(b"acTL", struct.pack(">II", 2, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00\x00")) + frame_control(0)
            + png_chunk(b"fdAT", struct.pack(">I", 1) + zlib.compress(bytes([row_filter, 0])))
            + png_chunk(b"IEND", b""))


def many_scan_jpeg(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG of ``width`` x ``height`` black pixels with ``scans`` scans: libjpeg's
    own 10, then the last of them (an AC refinement of one component, 33 bytes at 4096 x 4096)
    repeated. libjpeg warns of an inconsistent progression and decodes on, passing over every
    block of that component for each repeat."""
    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    own = jpeg.count(b"\xff\xda")            # entropy-coded data holds no 0xFF 0xDA
    last = jpeg[jpeg.rindex(b"\xff\xda"):-2]  # the last scan, up to the end-of-image marker
    assert scans >= own and jpeg.endswith(b"\xff\xd9")
    return jpeg[:-2] + last * (scans - own) + jpeg[-2:]


def text_bomb_png(chunks: int) -> bytes:
    """A valid 64 x 48 black PNG with ``chunks`` zTXt chunks before its pixels, each ~7.8 kB that
    inflates to 7.9 MB of zeros (just under libpng's 8 MB limit, so each is inflated whole)."""
    import cv2

    png = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    ihdr_end = 8 + 12 + 13
    text = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(7_900_000), 9))
    return png[:ihdr_end] + text * chunks + png[ihdr_end:]


def hidden_frame_jpeg(width: int, height: int) -> bytes:
    """A 702-byte JPEG: after its start marker, 0xFF 0x00 and a length, as if a segment, that spans
    a frame header of ``width`` x ``height`` and the start of an APP1 segment; then the frame header
    of a real 64 x 48 image and that image's tables and scan. libjpeg skips 0xFF 0x00 (no marker)
    and reads the next marker it finds: the big frame, whose APP1 hides the small one."""
    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    start = jpeg.index(b"\xff\xc0")
    small_frame = jpeg[start:start + 2 + int.from_bytes(jpeg[start + 2:start + 4], "big")]
    big_frame = small_frame[:5] + struct.pack(">HH", height, width) + small_frame[9:]
    hidden = big_frame + b"\xff\xe1" + struct.pack(">H", 2 + len(small_frame))
    return (jpeg[:2] + b"\xff\x00" + struct.pack(">H", 2 + len(hidden)) + hidden + small_frame
            + jpeg[2:start] + jpeg[start + len(small_frame):])


def weights_in_other_units(path, factor: float, source: str = "cfi_h36m_d128"):
    """The packaged weights ``source`` with the output layer multiplied by ``factor``, saved as a
    checked weights file at ``path`` (SHA-256 and all): 1000 is what a model trained on joints in
    millimetres is, -1 one whose output axes are negated. They load as any weights do."""
    from cfi_pose_ros.weights import load_weights, resolve_weights, save_weights

    model, info = load_weights(resolve_weights(source))
    with torch.no_grad():
        model.head.weight.mul_(factor)
        model.head.bias.mul_(factor)
    return save_weights(model, path, training=info.training, metrics=info.metrics)


def mirrored_weights(path, how: str, source: str = "cfi_h36m_d128"):
    """The packaged weights ``source`` edited to lift people wrongly in a way the 2D input and the
    size and uprightness of the people lifted do not show, saved as a checked weights file at
    ``path``. ``how``: ``"depth"``, the output layer's z row negated (mirror images: the nose behind
    the head); ``"x"``, its x row negated (the left joints lifted where the right ones are);
    ``"left_right_order"``, the joint embedding's left and right rows swapped
    (``H36M_17.flip_permutation``), which makes the model read and write the layout's joints in
    left/right swapped order (a model trained in another joint order: the left-right swap of the
    skeleton keeps its graph, so the output is exactly the original's for the swapped input, swapped
    back), and lifts mirror images."""
    from cfi_pose_ros.skeleton import H36M_17
    from cfi_pose_ros.weights import load_weights, resolve_weights, save_weights

    model, info = load_weights(resolve_weights(source))
    with torch.no_grad():
        if how in ("depth", "x"):
            row = {"x": 0, "depth": 2}[how]
            model.head.weight[row].neg_()
            model.head.bias[row].neg_()
        elif how == "left_right_order":
            model.joint_embed.copy_(model.joint_embed[:, torch.as_tensor(H36M_17.flip_permutation())])
        else:
            raise ValueError(how)
    return save_weights(model, path, training=info.training, metrics=info.metrics)
