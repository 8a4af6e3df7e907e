#!/usr/bin/env python3
"""How far a wide-angle lens moves the people the lifter places, with and without undoing it.

    python -P benchmarks/bench_lens_distortion.py            # ~10 s on 2 cores
    python -P benchmarks/bench_lens_distortion.py --quick    # every 30th frame instead of every 5th

The demo clip's 3D poses (every 5th frame, both people; each scaled to the prior body size, so
that the lens is the only error besides the lifter's shape), set 2 m in front of a wide-angle
camera (1280x800, fx = fy = 640: 90 degrees across as a pinhole, about 108 degrees through the
lens), their pelvis at several distances from the image centre, projected through the lens
(plumb_bob, ``LENS``: k1 = -0.30, a typical wide-angle calibration). Each person goes through the
lifting pipeline as the lift node runs it (``LiftingPipeline``, default settings, ONNX Runtime, one
thread) three ways:

* undistorted: the raw pixels with the lens (``keypoints_image: raw`` with the CameraInfo's d),
* ignored: the raw pixels as if the lens were a pinhole (what the lifter did before it read d),
* pinhole: an ideal pinhole camera's pixels of the same person (the best the lifter can do here),

and the table gives the root (pelvis) position error against the truth, mean and largest, in cm,
and the mean relative depth error. Also the cost of undoing the lens for 1 and 5 people.
"""
from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cfi_pose_ros.camera import distort_pixels, lens_distortion, undistort_pixels  # noqa: E402
from cfi_pose_ros.inference import create_lifter  # noqa: E402
from cfi_pose_ros.pipeline import Frame2D, LiftingPipeline, Person2D  # noqa: E402
from cfi_pose_ros.skeleton import H36M_17  # noqa: E402
from cfi_pose_ros.weights import DEFAULT_WEIGHTS  # noqa: E402

CLIP = DEFAULT_WEIGHTS.parents[1] / "data" / "demo_clip_h36m_s9.npz"
WIDTH, HEIGHT = 1280, 800
CAMERA = np.array([[640.0, 0.0, 639.5], [0.0, 640.0, 399.5], [0.0, 0.0, 1.0]])
LENS = ("plumb_bob", (-0.30, 0.09, 0.0005, -0.0003, 0.0))
DEPTH_M = 2.0
# the pelvis's ideal normalised x (tan of its angle off axis): the image centre to near its edge
# (the raw image's edge is at 1.38, 54 degrees; a person's arms reach 0.3 further)
PELVIS_X = (0.0, 0.3, 0.6, 0.8, 1.0)


def people(every: int) -> np.ndarray:
    """Root-relative 3D poses ``(N, 17, 3)`` of the demo clip, scaled to the prior body size."""
    with np.load(CLIP) as data:
        truth = data["truth_camera_m"][::every].reshape(-1, 17, 3).astype(np.float64)
    rel = truth - truth[:, :1]
    return rel / H36M_17.size_relative_to_mean(rel)[:, None, None]


def project(points: np.ndarray) -> np.ndarray:
    uvw = points @ CAMERA.T
    return uvw[..., :2] / uvw[..., 2:]


def root_errors(pipeline: LiftingPipeline, pixels: np.ndarray, truth_root: np.ndarray, lens) -> np.ndarray:
    """``(N, 3)`` placed minus true pelvis positions (NaN rows: not placed)."""
    frame = Frame2D([Person2D(p, np.ones(17), "h36m_17", track_id=str(i)) for i, p in enumerate(pixels)],
                    float(WIDTH), float(HEIGHT), camera_matrix=CAMERA, lens=lens)
    placed = np.full_like(truth_root, np.nan)
    for person in pipeline.process(frame).people:
        placed[int(person.track_id)] = person.position
    return placed - truth_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every 30th frame of the clip")
    args = parser.parse_args()
    lens = lens_distortion(*LENS)
    rel = people(30 if args.quick else 5)
    pipeline = LiftingPipeline(create_lifter(DEFAULT_WEIGHTS, backend="onnxruntime", threads=1, log=lambda *_: None))
    print(f"{len(rel)} poses of the demo clip at {DEPTH_M:g} m, {WIDTH}x{HEIGHT} camera, fx = {CAMERA[0, 0]:g} px, "
          f"{LENS[0]} d = {list(LENS[1])}\n")
    print("| pelvis off axis | lens shifts the pelvis by | undistorted: root error mean / max | "
          "ignored | pinhole camera | depth error undistorted / ignored / pinhole |")
    print("|---:|---:|---:|---:|---:|---:|")
    for x in PELVIS_X:
        root = DEPTH_M * np.array([x, 0.0, 1.0])
        ideal = project(rel + root)
        raw = distort_pixels(ideal, CAMERA, lens)
        shift = np.linalg.norm(raw[:, 0] - ideal[:, 0], axis=-1).mean()
        rows = {name: root_errors(pipeline, pixels, np.broadcast_to(root, (len(rel), 3)), with_lens)
                for name, pixels, with_lens in (("undistorted", raw, lens), ("ignored", raw, None),
                                                ("pinhole", ideal, None))}
        cm = {name: 100 * np.linalg.norm(error, axis=-1) for name, error in rows.items()}
        depth = {name: 100 * np.abs(error[:, 2]) / DEPTH_M for name, error in rows.items()}
        print(f"| {np.degrees(np.arctan(x)):.0f} deg (x = {x:g}) | {shift:.0f} px | "
              + " | ".join(f"{np.nanmean(cm[n]):.1f} / {np.nanmax(cm[n]):.1f} cm" for n in cm)
              + " | " + " / ".join(f"{np.nanmean(depth[n]):.1f} %" for n in depth) + " |")

    print("\nundistort_pixels, the lens above, joints of people at x = 1.0 (min of repeats):")
    ideal = project(rel + DEPTH_M * np.array([1.0, 0.0, 1.0]))
    raw = distort_pixels(ideal, CAMERA, lens)
    for count in (1, 5):
        times = timeit.repeat(lambda: undistort_pixels(raw[:count], CAMERA, lens), number=200, repeat=5)
        print(f"  {count} people: {min(times) / 200 * 1e6:.0f} us")


if __name__ == "__main__":
    main()
