"""One image through a 2D detector and the tracker: what the detector node does for each image
and offline lifting does for each frame of a video, so both give the same people and ids."""
from __future__ import annotations

import time

import numpy as np

from ..skeleton import COCO_17
from .base import Detections2D


def detect_and_track(detector, tracker, image_bgr: np.ndarray, stamp_s: float | None, frame_id: str | None = None
                     ) -> tuple[Detections2D, list[str], dict[str, float]]:
    """``(people, ids, stage_ms)`` of one BGR image.

    People with a non-finite box or one without area are left out (the tracker needs boxes).
    ``tracker=None`` gives every person the empty id. ``stamp_s`` is the tracker's clock (the image stamp;
    None or <= 0: see ``MultiPersonTracker.clock``), ``frame_id`` the image's ``header.frame_id`` (None:
    not known); a frame on which the tracker starts over (a bag loop, another camera's frame, another
    image size) resets the detector too (a top-down detector's followed boxes). ``stage_ms`` holds the
    detector's own stage timings where it has them (top-down: ``detector``, ``keypoint_model``), else
    ``detector``, plus ``tracking``. Raises ValueError when the detector does not give COCO-17 keypoints.
    """
    t = tracker.clock(stamp_s) if tracker is not None else None
    image_size = image_bgr.shape[1::-1]
    if t is not None and tracker.starts_over(t, frame_id, image_size) and hasattr(detector, "reset"):
        # a bag loop: boxes followed from the last pass's keypoints are where nobody is now (the
        # keypoint model still found "people" in them: ghosts for up to person_detector_every - 1 frames);
        # another camera's image: they are the other camera's people; another image size: they are
        # in the old size's pixels
        detector.reset()
    start = time.perf_counter()
    detections = detector.detect(image_bgr)
    if detections.layout != COCO_17.name:
        raise ValueError(f"detector returned layout {detections.layout!r}, expected {COCO_17.name}")
    # top-down detectors time their two stages (the person detector only when it ran)
    stage_ms = dict(getattr(detector, "last_stage_ms", None) or {"detector": (time.perf_counter() - start) * 1e3})
    boxes = detections.boxes
    # a box without area has IoU 0 even with itself: the tracker gave its person a new id every
    # frame (a YOLO-pose candidate of w = h = 0), so a new TF frame and smoother track every frame
    trackable = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not trackable.all():
        detections = detections.select(trackable)
    t0 = time.perf_counter()
    if tracker is not None:
        ids = tracker.update(detections.boxes, t, image_size, frame_id)
    else:
        ids = [""] * len(detections)
    stage_ms["tracking"] = (time.perf_counter() - t0) * 1e3
    return detections, ids, stage_ms
