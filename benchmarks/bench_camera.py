#!/usr/bin/env python3
"""Per-stage latency of the camera input path on the fixture photos.

Stages, each timed per frame: raw image message -> BGR (``image_to_bgr`` on
an ``rgb8`` buffer with padded rows), JPEG ``CompressedImage`` -> BGR, the
person detector (RTMDet-nano), the keypoint model on every detected person
(MoveNet Lightning, one run per person), and the whole ``detect`` call.
Prints a Markdown table of p50/p99 milliseconds (and writes it with --output).

    python benchmarks/bench_camera.py --threads 2 --iterations 100 --output bench.md

The models and photos come from ``shared/fixtures/camera`` next to the
repository (or --fixtures / $CFI_FIXTURES_DIR).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cfi_pose_ros.arguments import non_negative_int, positive_int  # noqa: E402
from cfi_pose_ros.detectors import (MoveNetConfig, RTMDetConfig, TopDownConfig,  # noqa: E402
                                    create_detector)
from cfi_pose_ros.image import decode_compressed, image_to_bgr  # noqa: E402

DEFAULT_FIXTURES = Path(os.environ.get("CFI_FIXTURES_DIR", REPO.parent / "shared" / "fixtures" / "camera"))
PHOTOS = (("skier.jpeg", "one person"), ("bus.jpg", "several people"))


def _time(fn, iterations: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--threads", type=non_negative_int, default=2,
                        help="ONNX Runtime intra-op threads (0 = its default)")
    parser.add_argument("--iterations", type=positive_int, default=50)
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)

    models, images = args.fixtures / "models", args.fixtures / "images"
    if not (models / "rtmdet_nano_person.onnx").exists():
        print(f"fixtures not found under {args.fixtures} (use --fixtures)", file=sys.stderr)
        return 2
    cv2.setNumThreads(args.threads)
    detector = create_detector(TopDownConfig(
        person_detector=RTMDetConfig(model_path=str(models / "rtmdet_nano_person.onnx"),
                                     intra_op_num_threads=args.threads),
        keypoint_model=MoveNetConfig(model_path=str(models / "movenet_singlepose_lightning.onnx"),
                                     intra_op_num_threads=args.threads)))

    rows = []
    for name, kind in PHOTOS:
        bgr = cv2.imread(str(images / name))
        height, width = bgr.shape[:2]
        step = width * 3 + 16                         # padded rows, as some drivers send
        raw = np.zeros((height, step), np.uint8)
        raw[:, :width * 3] = bgr[..., ::-1].reshape(height, -1)
        raw_bytes = raw.tobytes()
        jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        boxes, _ = detector.person_detector.detect_boxes(bgr)
        people = len(boxes)
        stages = {
            "image_to_bgr (rgb8, padded rows)": lambda: image_to_bgr("rgb8", height, width, step, raw_bytes),
            "decode_compressed (JPEG q90)": lambda: decode_compressed("jpeg", jpeg),
            "person detector (RTMDet-nano 320)": lambda: detector.person_detector.detect_boxes(bgr),
            f"keypoint model (MoveNet Lightning x{people})": lambda: detector.keypoint_model.estimate(bgr, boxes),
            "detect() total (detector + keypoints)": lambda: detector.detect(bgr),
        }
        for stage, fn in stages.items():
            ms = _time(fn, args.iterations)
            rows.append((f"{name} ({kind}, {width}x{height})", people, stage,
                         np.percentile(ms, 50), np.percentile(ms, 99)))

    lines = [f"Camera input path, CPU, ONNX Runtime {args.threads} intra-op thread(s), "
             f"{args.iterations} runs per stage ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores)", "",
             "| image | people | stage | p50 ms | p99 ms |", "|---|---:|---|---:|---:|"]
    lines += [f"| {img} | {n} | {stage} | {p50:.2f} | {p99:.2f} |" for img, n, stage, p50, p99 in rows]
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
