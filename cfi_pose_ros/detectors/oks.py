"""COCO object keypoint similarity (OKS) and a greedy prediction-to-truth matching.

``OKS = sum_i exp(-d_i^2 / (2 s^2 k_i^2)) [v_i > 0] / sum_i [v_i > 0]`` with
``k_i = 2 sigma_i`` (the per-keypoint COCO sigmas) and ``s^2`` the object's
area, exactly as ``pycocotools``' COCOeval computes it. COCO's area is the
person's segmentation area; without one we take the ground-truth box area
times ``area_scale`` (1.0 by default; Ultralytics uses 0.53, a box-to-mask
ratio, which makes OKS stricter).
"""
from __future__ import annotations

import numpy as np

# COCO-17 keypoint sigmas (pycocotools), in COCO_17 order.
COCO_SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
                        1.07, 1.07, 0.87, 0.87, 0.89, 0.89]) / 10.0


def oks(predicted: np.ndarray, truth: np.ndarray, visible: np.ndarray, area: float,
        sigmas: np.ndarray = COCO_SIGMAS) -> float:
    """OKS of one predicted pose ``(K, 2)`` against one true pose ``(K, 2)``.

    ``visible`` ``(K,)``: labelled truth keypoints (COCO v > 0). NaN predicted
    keypoints count as infinitely far. NaN when the truth has no labelled keypoint.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    visible = np.asarray(visible) > 0
    if not visible.any():
        return float("nan")
    d2 = np.sum((predicted - truth) ** 2, axis=-1)
    variances = (2.0 * np.asarray(sigmas)) ** 2
    e = d2 / variances / (max(float(area), np.finfo(float).eps) * 2.0)
    similarity = np.where(np.isnan(e), 0.0, np.exp(-np.nan_to_num(e, nan=np.inf)))
    return float(similarity[visible].mean())


def oks_matrix(predicted: np.ndarray, truth: np.ndarray, visible: np.ndarray, areas: np.ndarray,
               sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """OKS of every prediction ``(P, K, 2)`` against every truth ``(G, K, 2)``: ``(P, G)``."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, len(sigmas), 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, len(sigmas), 2)
    out = np.zeros((len(predicted), len(truth)))
    for p in range(len(predicted)):
        for g in range(len(truth)):
            out[p, g] = oks(predicted[p], truth[g], visible[g], areas[g], sigmas)
    return out


def match_greedy(similarity: np.ndarray, order: np.ndarray | None = None,
                 min_similarity: float = 0.0) -> list[tuple[int, int]]:
    """COCO-style greedy matching: each prediction (in ``order``, e.g. by descending
    score) takes the unmatched truth it is most similar to, if above ``min_similarity``.
    Returns ``(prediction, truth)`` pairs."""
    similarity = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=-1.0)
    order = np.arange(similarity.shape[0]) if order is None else np.asarray(order)
    taken = np.zeros(similarity.shape[1], dtype=bool)
    pairs = []
    for p in order:
        candidates = np.where(taken, -np.inf, similarity[p])
        if candidates.size == 0:
            break
        g = int(np.argmax(candidates))
        if candidates[g] > min_similarity:
            taken[g] = True
            pairs.append((int(p), g))
    return pairs


def mean_oks(predicted: np.ndarray, pred_scores: np.ndarray, truth: np.ndarray, visible: np.ndarray,
             areas: np.ndarray, sigmas: np.ndarray = COCO_SIGMAS) -> tuple[float, int, list[float]]:
    """Mean OKS over the labelled truth people of one image, each matched greedily to
    one prediction (highest ``pred_scores`` first); an unmatched person counts 0.

    Truth people with no labelled keypoint are skipped. Returns
    ``(mean, people counted, per-person OKS)``.
    """
    visible = np.asarray(visible).reshape(len(truth), -1) > 0
    labelled = visible.any(axis=1)
    truth, visible, areas = np.asarray(truth)[labelled], visible[labelled], np.asarray(areas)[labelled]
    if len(truth) == 0:
        return float("nan"), 0, []
    per_person = [0.0] * len(truth)
    if len(predicted):
        sim = oks_matrix(predicted, truth, visible, areas, sigmas)
        for p, g in match_greedy(sim, np.argsort(-np.asarray(pred_scores))):
            per_person[g] = sim[p, g]
    return float(np.mean(per_person)), len(truth), per_person
