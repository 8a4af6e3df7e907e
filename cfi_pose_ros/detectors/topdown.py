"""Top-down composition: a person detector, then a keypoint model on each person's crop."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Detections2D, KeypointModel, PersonDetector, check_image
from .movenet import MoveNetConfig
from .rtmdet import RTMDetConfig
from .rtmpose import RTMPoseConfig


@dataclass(kw_only=True)
class TopDownConfig:
    """A person detector config and a keypoint model config; ``max_people`` caps the people per image."""
    person_detector: RTMDetConfig = field(default_factory=RTMDetConfig)
    keypoint_model: MoveNetConfig | RTMPoseConfig = field(default_factory=MoveNetConfig)
    max_people: int = 20


class TopDownPoseDetector:
    """:class:`~.base.PoseDetector2D` from a :class:`~.base.PersonDetector` and a
    :class:`~.base.KeypointModel`. The keypoint model receives every box of the
    image at once and batches them itself when its model allows."""

    def __init__(self, person_detector: PersonDetector, keypoint_model: KeypointModel,
                 max_people: int | None = None):
        self.person_detector = person_detector
        self.keypoint_model = keypoint_model
        self.max_people = max_people
        self.layout = keypoint_model.layout

    def detect(self, image_bgr: np.ndarray) -> Detections2D:
        check_image(image_bgr)
        boxes, box_scores = self.person_detector.detect_boxes(image_bgr)
        if self.max_people is not None:
            boxes, box_scores = boxes[:self.max_people], box_scores[:self.max_people]
        if len(boxes) == 0:
            return Detections2D.empty(self.layout)
        keypoints, scores = self.keypoint_model.estimate(image_bgr, boxes)
        return Detections2D(keypoints, scores, boxes, box_scores, self.layout)
