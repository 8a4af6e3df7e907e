"""Model outputs to boxes and keypoints in model-input pixels, as pure numpy functions.

Each decoder states the published tensor layout it reads; mapping from model
input back to the original image is :mod:`.transforms`' job.
"""
from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of x1, y1, x2, y2 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        max_detections: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box
    exceeds ``iou_threshold``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if max_detections is not None and len(keep) >= max_detections:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_rtmdet(dets: np.ndarray, labels: np.ndarray, score_threshold: float,
                  person_label: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """MMDeploy "end2end" detector outputs for one image -> person boxes and scores.

    ``dets`` ``(N, 5)`` x1, y1, x2, y2, score in model-input pixels (NMS already
    applied inside the model, padded rows have score 0); ``labels`` ``(N,)``
    class ids. ``person_label=None`` keeps every class (single-class models).
    Returns boxes ``(P, 4)`` and scores ``(P,)`` sorted by score, best first.
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    labels = np.asarray(labels).reshape(-1)
    keep = dets[:, 4] >= score_threshold
    if person_label is not None:
        keep &= labels == person_label
    dets = dets[keep]
    order = np.argsort(-dets[:, 4], kind="stable")
    return dets[order, :4], dets[order, 4]


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray,
                 split_ratio: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """SimCC classification vectors -> keypoints in model-input pixels and scores.

    ``simcc_x`` ``(P, K, W * split_ratio)`` and ``simcc_y`` ``(P, K, H * split_ratio)``
    (RTMPose's MMDeploy export). The location on each axis is its argmax divided
    by ``split_ratio``. The score follows MMPose's ``get_simcc_maximum``: the
    **smaller** of the two axis maxima (MMPose's comment calls it the "maximum
    value across x and y", but its code keeps the minimum), 0 where that is not
    positive. RTMPose's outputs are unnormalised logits whose peaks can exceed 1,
    so the score is clipped to [0, 1] here.

    Returns ``keypoints (P, K, 2)`` and ``scores (P, K)``.
    """
    simcc_x = np.asarray(simcc_x, dtype=np.float64)
    simcc_y = np.asarray(simcc_y, dtype=np.float64)
    if simcc_x.ndim != 3 or simcc_y.ndim != 3 or simcc_x.shape[:2] != simcc_y.shape[:2]:
        raise ValueError(f"SimCC outputs must be (P, K, W) and (P, K, H) with equal P, K; got "
                         f"{simcc_x.shape} and {simcc_y.shape}")
    x = simcc_x.argmax(axis=-1) / float(split_ratio)
    y = simcc_y.argmax(axis=-1) / float(split_ratio)
    score = np.minimum(simcc_x.max(axis=-1), simcc_y.max(axis=-1))
    return np.stack([x, y], axis=-1), unit_scores(score)


def unit_scores(scores) -> np.ndarray:
    """Scores as confidences in [0, 1], in their own dtype; a NaN, which a model can output, is no
    confidence: 0."""
    return np.clip(np.nan_to_num(np.asarray(scores), nan=0.0), 0.0, 1.0)


def decode_movenet(output: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """MoveNet SinglePose output ``(B, 1, 17, 3)`` = (y, x, score), y and x in [0, 1] of the input
    -> keypoints ``(B, 17, 2)`` (x, y) in model-input pixels and scores ``(B, 17)``."""
    output = np.asarray(output, dtype=np.float64)
    output = output.reshape(output.shape[0], -1, 3) if output.ndim == 4 else output.reshape(1, -1, 3)
    width, height = float(input_size[0]), float(input_size[1])
    keypoints = np.stack([output[..., 1] * width, output[..., 0] * height], axis=-1)
    return keypoints, unit_scores(output[..., 2])


def decode_yolo_pose(output: np.ndarray, score_threshold: float = 0.25, iou_threshold: float = 0.7,
                     max_detections: int = 300, num_keypoints: int = 17,
                     keypoint_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ultralytics YOLOv8/11-pose output for one image -> people, in model-input pixels.

    ``output`` ``(4 + 1 + 3K, N)`` (the exported ``[1, 56, 8400]`` without its
    batch axis; ``(N, 4 + 1 + 3K)`` is accepted too): per candidate
    cx, cy, w, h, person score, then K x (x, y, visibility). The export already
    applies the sigmoid to the scores; ``keypoint_logits=True`` applies it to
    the keypoint visibilities for exports that don't. Candidates under
    ``score_threshold`` are dropped, then class-agnostic NMS at ``iou_threshold``.

    Returns ``boxes (P, 4)`` x1, y1, x2, y2, ``box_scores (P,)``,
    ``keypoints (P, K, 2)``, ``keypoint_scores (P, K)``; best first.
    """
    channels = 5 + 3 * num_keypoints
    output = np.asarray(output, dtype=np.float64)
    if output.ndim == 3 and output.shape[0] == 1:
        output = output[0]
    if output.ndim != 2 or channels not in output.shape:
        raise ValueError(f"YOLO-pose output must be ({channels}, N) or (N, {channels}), got {output.shape}")
    candidates = output.T if output.shape[0] == channels and output.shape[1] != channels else output
    candidates = candidates[candidates[:, 4] >= score_threshold]
    cx, cy, w, h = candidates[:, 0], candidates[:, 1], candidates[:, 2], candidates[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    keep = nms(boxes, candidates[:, 4], iou_threshold, max_detections)
    boxes, candidates = boxes[keep], candidates[keep]
    kpts = candidates[:, 5:].reshape(-1, num_keypoints, 3)
    visibility = kpts[..., 2]
    if keypoint_logits:
        visibility = 1.0 / (1.0 + np.exp(-visibility))
    return boxes, candidates[:, 4], kpts[..., :2], unit_scores(visibility)
