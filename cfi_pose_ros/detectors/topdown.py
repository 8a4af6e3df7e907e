"""Top-down composition: a person detector, then a keypoint model on each person's crop.

On a video stream the person detector need not run on every frame: between two
detections each person's box comes from their keypoints in the previous frame
(``detect_every``), the way real-time top-down pipelines keep the keypoint model
on every frame while the detector runs less often. People who appear in between
are found at the next detection; a person whose keypoints fade (left the image,
occluded) is dropped and the detector runs again at once.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .base import Detections2D, KeypointModel, PersonDetector, check_image
from .decode import box_iou
from .movenet import MoveNetConfig
from .rtmdet import RTMDetConfig
from .rtmpose import RTMPoseConfig


@dataclass(kw_only=True)
class TopDownConfig:
    """A person detector config and a keypoint model config; ``max_people`` caps the people per image.

    ``detect_every``: run the person detector on every n-th frame (1 = every frame);
    in between, boxes follow the people's keypoints (see :func:`follow_boxes`).
    """
    person_detector: RTMDetConfig = field(default_factory=RTMDetConfig)
    keypoint_model: MoveNetConfig | RTMPoseConfig = field(default_factory=MoveNetConfig)
    max_people: int = 20
    detect_every: int = 1
    follow_min_score: float = 0.3     # keypoints above this score place a followed box
    follow_min_keypoints: int = 6     # fewer such keypoints: the person is lost, detect again
    # A followed person's box placed by this frame's keypoints that overlaps the box they were
    # found in less than this has jumped: a stray keypoint (on a neighbour) at the detection had
    # skewed the centre its offset was taken from, and the box went onto the background.
    follow_min_iou: float = 0.5
    # Two people whose keypoints lie within this share of a crop's height of each other (the median
    # over the joints both have) are one: a crop that held the person beside or in front gave their
    # keypoints again, published under a second id (on followed and detected frames alike).
    # Keypoints, not boxes: two people side by side have boxes that overlap by half and keypoints
    # a body apart.
    same_person: float = 0.1


def keypoint_centres(keypoints: np.ndarray, scores: np.ndarray, min_score: float,
                     min_keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """The centre ``(P, 2)`` of each person's confident keypoints' extent (score > ``min_score``),
    and which people ``(P,)`` have at least ``min_keypoints`` of them (the others' centre is NaN)."""
    confident = (scores > min_score) & np.isfinite(keypoints).all(axis=2)
    kept = confident.sum(axis=1) >= min_keypoints
    masked = np.where(confident[..., None], keypoints, np.nan)
    centres = np.full((len(keypoints), 2), np.nan)
    if kept.any():
        centres[kept] = (np.nanmin(masked[kept], axis=1) + np.nanmax(masked[kept], axis=1)) / 2
    return centres, kept


def follow_boxes(anchors: np.ndarray, centres: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Boxes ``(P, 4)`` that keep each detector box's size and its offset from the person's
    keypoint centre (``anchors`` ``(P, 4)`` = width, height, dx, dy), moved to the new ``centres``.

    Only the position follows the keypoints: a box re-sized from keypoints every frame
    feeds the keypoint model's errors back into its next crop and drifts (measured during
    development: mean OKS on the fixture photos fell from 0.72 to 0.63 by the second followed
    frame; ``test_followed_boxes_skip_the_detector_and_keep_up_with_motion`` guards the result),
    while over the few frames between detections a person's size barely changes.
    """
    middle = centres + anchors[:, 2:]
    half = anchors[:, :2] / 2
    width, height = image_size
    boxes = np.concatenate([middle - half, middle + half], axis=1)
    return np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])


class TopDownPoseDetector:
    """:class:`~.base.PoseDetector2D` from a :class:`~.base.PersonDetector` and a
    :class:`~.base.KeypointModel`. The keypoint model receives every box of the
    image at once and batches them itself when its model allows.

    ``last_stage_ms`` holds the last frame's timings: ``detector`` (only when the
    person detector ran) and ``keypoint_model``.
    """

    def __init__(self, person_detector: PersonDetector, keypoint_model: KeypointModel,
                 max_people: int | None = None, config: TopDownConfig | None = None):
        self.person_detector = person_detector
        self.keypoint_model = keypoint_model
        self.max_people = max_people
        self.layout = keypoint_model.layout
        self.config = config or TopDownConfig()
        if self.config.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.config.detect_every}")
        self.last_stage_ms: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: the next one runs the person detector (e.g. a new stream)."""
        self._previous: Detections2D | None = None
        self._anchors = np.zeros((0, 4))       # per previous person: detector box w, h, dx, dy
        self._previous_size: tuple[int, int] | None = None
        self._since_detection = 0

    def _centres(self, detections: Detections2D) -> tuple[np.ndarray, np.ndarray]:
        return keypoint_centres(detections.keypoints, detections.scores, self.config.follow_min_score,
                                self.config.follow_min_keypoints)

    def _followed_boxes(self, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        """Boxes from the previous frame's keypoints, or None when the detector must run."""
        previous = self._previous
        if (previous is None or len(previous) == 0 or self._previous_size != image_size
                or self._since_detection + 1 >= self.config.detect_every):
            return None
        centres, kept = self._centres(previous)
        if not kept.all():
            return None     # someone is only partly seen: the detector, not their keypoints, places them
        return follow_boxes(self._anchors, centres, image_size), previous.box_scores

    def detect(self, image_bgr: np.ndarray) -> Detections2D:
        check_image(image_bgr)
        image_size = (image_bgr.shape[1], image_bgr.shape[0])
        timings: dict[str, float] = {}
        followed = self._followed_boxes(image_size)
        if followed is None:
            start = time.perf_counter()
            boxes, box_scores = self.person_detector.detect_boxes(image_bgr)
            timings["detector"] = (time.perf_counter() - start) * 1e3
            if self.max_people is not None:
                boxes, box_scores = boxes[:self.max_people], box_scores[:self.max_people]
            self._since_detection = 0
        else:
            boxes, box_scores = followed
            self._since_detection += 1
        anchors = self._anchors
        if len(boxes) == 0:
            result = Detections2D.empty(self.layout)
        else:
            start = time.perf_counter()
            keypoints, scores = self.keypoint_model.estimate(image_bgr, boxes)
            timings["keypoint_model"] = (time.perf_counter() - start) * 1e3
            result = Detections2D(keypoints, scores, np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                                  box_scores, self.layout)
            # one person in two crops: a single-person keypoint model gives the most visible person of
            # a crop, and the detector's box suppression does not see keypoints
            once = ~self._found_twice(result)
            result = result.select(once)
            centres, seen = self._centres(result)
            if followed is None:
                boxes = result.boxes
                anchors = np.concatenate([boxes[:, 2:] - boxes[:, :2],
                                          (boxes[:, :2] + boxes[:, 2:]) / 2 - centres], axis=1)
            else:
                result, anchors, settled = self._settle_followed(result, anchors[once], centres, seen, image_size)
                if not settled:       # someone gone or jumped: detect next time
                    self._since_detection = self.config.detect_every
        self._previous, self._anchors, self._previous_size = result, anchors, image_size
        self.last_stage_ms = timings
        return result

    def _settle_followed(self, result: Detections2D, anchors: np.ndarray, centres: np.ndarray, seen: np.ndarray,
                         image_size: tuple[int, int]) -> tuple[Detections2D, np.ndarray, bool]:
        """The people of a followed frame as published: each box placed by this frame's keypoints
        (the crop was placed by the previous frame's: a box a frame behind a walking person, whose
        id the tracker then lost through an occlusion it would have bridged), and the people kept;
        False when one was lost or jumped (the detector should run next)."""
        crops = result.boxes
        placed = crops.copy()
        placed[seen] = follow_boxes(anchors[seen], centres[seen], image_size)
        jumped = seen & (np.diag(box_iou(placed, crops)) < self.config.follow_min_iou)
        boxes = np.where(jumped[:, None], crops, placed)     # a jumped one's keypoints were found in its crop
        result = Detections2D(result.keypoints, result.scores, boxes, result.box_scores, self.layout).select(seen)
        return result, anchors[seen], bool(seen.all() and not jumped.any())

    def _found_twice(self, result: Detections2D) -> np.ndarray:
        """``(P,)``: the people whose keypoints are a higher-scored person's (see ``same_person``),
        judged against the height of that person's crop."""
        confident = result.scores > self.config.follow_min_score
        both = confident[:, None] & confident[None]                                   # (P, P, K)
        distances = np.linalg.norm(result.keypoints[:, None] - result.keypoints[None], axis=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)        # a pair with no joint in common: NaN
            apart = np.nanmedian(np.where(both, distances, np.nan), axis=-1)          # (P, P)
        # same[i, j]: i's keypoints are j's, judged against j's crop
        same = apart <= self.config.same_person * (result.boxes[:, 3] - result.boxes[:, 1])[None]
        twice = np.zeros(len(result), dtype=bool)
        order = np.argsort(-result.scores.mean(axis=1), kind="stable")
        for rank, i in enumerate(order):
            earlier = order[:rank]
            twice[i] = bool((same[i, earlier] & ~twice[earlier]).any())
        return twice
