#!/usr/bin/env python3
"""People cut off by the image's bottom edge: how far the node places what it sees of them.

    python benchmarks/bench_cut_people.py                       # the packaged weights, every 5th frame
    python benchmarks/bench_cut_people.py --weights cfi_h36m_wide cfi_h36m_wide_cut --every 10

A person close to a robot's camera is seen from the waist or the knees up: the detector gives
no ankles, knees, hips (and so no pelvis, the mid-hips). The people of the demo clip (two people
5.3 m away, 1000 px image, its camera's K) go through the whole pipeline (``LiftingPipeline``,
torch backend, the node's defaults) with every joint, and with the joints below a cut missing
(score 0, as the node gets them): the ankles; the knees and ankles; the lower body (pelvis, hips,
knees, ankles). For each set of weights, in the same run:

* seen joints, m: the mean distance of the joints that were seen (the upper body at the
  waist cut) from the truth, in the camera frame (where the node publishes them);
* pelvis depth, m: the published pelvis' depth error (the person's distance);
* upper body, mm: the thorax-relative error of the ten upper-body joints (the pose alone);
* published: the share of people published (a person with fewer than ``min_valid_joints`` seen
  joints is not).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cfi_pose_ros.inference import create_lifter  # noqa: E402
from cfi_pose_ros.pipeline import Frame2D, LiftingPipeline, Person2D  # noqa: E402
from cfi_pose_ros.skeleton import H36M_17, H36M_LOWER_BODY  # noqa: E402
from cfi_pose_ros.arguments import weights_file  # noqa: E402
from cfi_pose_ros.weights import DEFAULT_WEIGHTS  # noqa: E402

CLIP = DEFAULT_WEIGHTS.parents[1] / "data" / "demo_clip_h36m_s9.npz"
UPPER_BODY = [H36M_17.index(name) for name in H36M_17.joint_names[H36M_17.index("spine"):]]
THORAX = H36M_17.index("thorax")
CUTS = {
    "every joint": (),
    "ankles": ("right_ankle", "left_ankle"),
    "knees up": ("right_knee", "left_knee", "right_ankle", "left_ankle"),
    "waist up": H36M_LOWER_BODY,
}


def cut_errors(weights: str, missing: tuple[str, ...], every: int) -> dict[str, float]:
    """The four figures of the module's docstring for one set of weights and one cut."""
    with np.load(CLIP) as data:
        clip = {k: data[k] for k in ("pixels", "scores", "image_size", "camera_matrix", "truth_camera_m")}
    pipeline = LiftingPipeline(create_lifter(weights, backend="torch", threads=1, log=lambda *_: None))
    width, height = (float(v) for v in clip["image_size"])
    seen = np.ones(17, bool)
    seen[[H36M_17.index(name) for name in missing]] = False
    seen_error, depth_error, upper_error, published, people = [], [], [], 0, 0
    for t in range(0, len(clip["pixels"]), every):
        truth = clip["truth_camera_m"][t]
        frame = Frame2D([Person2D(p.astype(np.float64), np.where(seen, s, 0.0).astype(np.float64), "h36m_17")
                         for p, s in zip(clip["pixels"][t], clip["scores"][t])],
                        width, height, camera_matrix=clip["camera_matrix"])
        result = pipeline.process(frame)
        people += len(truth)
        # matched by order: the pipeline keeps its input's order, and a person it drops (fewer seen
        # joints than min_valid_joints) shows as "published" below 100 %; no cut here drops anyone
        for person, true in zip(result.people, truth):
            published += 1
            seen_error.append(np.linalg.norm(person.keypoints[seen] - true[seen], axis=-1).mean())
            depth_error.append(abs(person.keypoints[0, 2] - true[0, 2]))
            upper = person.keypoints[UPPER_BODY] - person.keypoints[THORAX]
            upper_error.append(np.linalg.norm(upper - (true[UPPER_BODY] - true[THORAX]), axis=-1).mean())
    return {"seen joints, m": float(np.mean(seen_error)), "pelvis depth, m": float(np.mean(depth_error)),
            "upper body, mm": 1e3 * float(np.mean(upper_error)), "published": published / people}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=weights_file, nargs="+", default=[str(DEFAULT_WEIGHTS)],
                        help="weights files or packaged names, each measured in turn")
    parser.add_argument("--every", type=int, default=5, help="every Nth frame of the clip's 150")
    args = parser.parse_args()
    print(f"demo clip ({CLIP.name}), every {args.every}th frame, torch backend, the node's pipeline defaults")
    print(f"| weights | cut | {' | '.join(('seen joints, m', 'pelvis depth, m', 'upper body, mm', 'published'))} |")
    print("|---|---|---:|---:|---:|---:|")
    for weights in args.weights:
        for cut, missing in CUTS.items():
            e = cut_errors(weights, missing, args.every)
            print(f"| {Path(weights).stem} | {cut} | {e['seen joints, m']:.3f} | {e['pelvis depth, m']:.3f} | "
                  f"{e['upper body, mm']:.1f} | {e['published']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
