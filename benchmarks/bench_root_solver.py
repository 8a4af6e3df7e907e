#!/usr/bin/env python3
"""The root solve: its cost per person and how far one bad joint moves the root, robust vs least squares.

    python benchmarks/bench_root_solver.py            # ~1 min on 2 cores
    python benchmarks/bench_root_solver.py --quick    # fewer repeats and people
    python benchmarks/bench_root_solver.py --weights cfi_pose_ros/weights/cfi_h36m_wide.safetensors

The people of the demo clip (two people 5.3 m away, 1000 px image, 150 frames)
lifted by the shipped weights (or ``--weights``; torch backend), so the solve sees real lifter
error. For both solvers of :func:`cfi_pose_ros.root_solver.solve_root_translation`
(``robust=True``, the default; ``robust=False``, score-weighted least squares,
the baseline):

* cost: one call for N people (N = 1, 2, 5, 16, 64), the minimum over
  repeats of the mean of many calls (the machine is shared: the minimum is the
  least disturbed), as microseconds per call and per person, and the ratio to
  least squares in the same run;
* robustness: every joint of every person moved by 30, 100, 300 and 1000 px in
  8 directions, the largest relative change of the root depth against the same
  solver's clean answer (a failed solve counts as 100 %);
* accuracy: the clean root depth's mean and largest relative error against the truth;
* through the whole pipeline (``LiftingPipeline``, ONNX Runtime), where the lifter sees the
  moved joint too and may bend the skeleton around it: the same displacements, and each
  joint missing in turn, every 10th frame, the change of the published root depth, for four
  stages of the pipeline in the same run (missing joints only filled from their ancestor;
  imputed; joint rejections confirmed by the lift made without the joint; and the default,
  which also scales each skeleton to the prior body size before placing it); the clean clip
  against the truth through each; and the pipeline's cost for one person.
"""
from __future__ import annotations

import argparse
import functools
import sys
import timeit
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cfi_pose_ros.camera import normalize_screen  # noqa: E402
from cfi_pose_ros.inference import create_lifter  # noqa: E402
from cfi_pose_ros.pipeline import Frame2D, LiftingPipeline, Person2D, PipelineConfig  # noqa: E402
from cfi_pose_ros.root_solver import solve_root_translation  # noqa: E402
from cfi_pose_ros.arguments import weights_file  # noqa: E402
from cfi_pose_ros.weights import DEFAULT_WEIGHTS  # noqa: E402

CLIP = DEFAULT_WEIGHTS.parents[1] / "data" / "demo_clip_h36m_s9.npz"
SOLVERS = {"least squares": {"robust": False}, "robust": {"robust": True}}
DIRECTIONS = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (0.6, 0.8), (-0.6, 0.8), (0.6, -0.8), (-0.6, -0.8)])


def lifted_people(every: int, weights: str):
    with np.load(CLIP) as data:
        pixels = data["pixels"][::every].reshape(-1, 17, 2).astype(np.float64)
        scores = data["scores"][::every].reshape(-1, 17).astype(np.float64)
        truth = data["truth_camera_m"][::every].reshape(-1, 17, 3)
        width, height = data["image_size"]
        camera = data["camera_matrix"]
    lifter = create_lifter(weights, backend="torch", log=lambda *_: None)
    rel = lifter.lift(normalize_screen(pixels, width, height).astype(np.float32)).astype(np.float64)
    return rel - rel[:, :1], pixels, scores, truth, camera


def cost_us(rel, pixels, scores, camera, count: int, options: dict, repeats: int) -> float:
    """Microseconds per call for ``count`` people (min over repeats of the mean of a batch of calls)."""
    index = np.arange(count) % len(rel)
    args = (rel[index], pixels[index], scores[index], camera)
    number = max(20, 2000 // count)
    times = timeit.repeat(lambda: solve_root_translation(*args, **options), number=number, repeat=repeats)
    return min(times) / number * 1e6


def worst_depth_change(rel, pixels, scores, camera, shift: float, options: dict) -> float:
    clean, _ = solve_root_translation(rel, pixels, scores, camera, **options)
    worst = 0.0
    for joint in range(17):
        for direction in DIRECTIONS:
            moved = pixels.copy()
            moved[:, joint] += shift * direction
            est, ok = solve_root_translation(rel, moved, scores, camera, **options)
            change = np.where(ok, np.abs(est[:, 2] - clean[:, 2]) / clean[:, 2], 1.0)
            worst = max(worst, float(change.max()))
    return worst


# The pipeline in four stages: every joint past 3 residual scales rejected and missing joints left
# on their ancestor; then missing joints imputed; then candidates from 2 scales, a rejection
# standing only where the lift without the joint misses it by 6; each placing the skeleton at the
# size the lifter gives it; and as it is, the same scaled to the prior body size before it is placed.
PIPELINES = {
    "ancestor fill, reject > 3": PipelineConfig(max_people=1024, impute_missing_joints=False, relift_threshold=3.0,
                                                relift_confirm=None, body_size_prior=0.0),
    "imputed, reject > 3": PipelineConfig(max_people=1024, relift_threshold=3.0, relift_confirm=None,
                                          body_size_prior=0.0),
    "imputed, reject > 2 if confirmed > 6": PipelineConfig(max_people=1024, body_size_prior=0.0),
    "now: the same, prior body size": PipelineConfig(max_people=1024),
}
NOW = PIPELINES["now: the same, prior body size"]


@functools.lru_cache(maxsize=1)
def _clip_and_lifter(weights: str):
    """The clip and one ONNX Runtime lifter, loaded once for every pipeline row."""
    with np.load(CLIP) as data:
        clip = {k: data[k] for k in ("pixels", "scores", "image_size", "camera_matrix", "truth_camera_m")}
    return clip, create_lifter(weights, backend="onnxruntime", threads=1, log=lambda *_: None)


def _clip_pipeline(config: PipelineConfig, weights: str):
    clip, lifter = _clip_and_lifter(weights)
    return clip, LiftingPipeline(lifter, config)


def moved_joint(shift: float):
    """Every joint in turn moved by ``shift`` px in each of the 8 directions."""
    return lambda pixels, scores: [(pixels + shift * direction * (np.arange(17) == joint)[:, None], scores)
                                   for joint in range(17) for direction in DIRECTIONS]


def missing_joint(pixels, scores):
    """Every joint in turn missing (score 0)."""
    return [(pixels, np.where(np.arange(17) == joint, 0.0, scores)) for joint in range(17)]


def pipeline_depth_changes(variants, every: int, config: PipelineConfig, weights: str) -> np.ndarray:
    """Relative change of each published root depth for each of ``variants(pixels, scores)``."""
    clip, pipeline = _clip_pipeline(config, weights)
    width, height = (float(v) for v in clip["image_size"])
    changes = []
    for t in range(0, len(clip["pixels"]), every):
        for pixels, scores in zip(clip["pixels"][t].astype(np.float64), clip["scores"][t].astype(np.float64)):
            frame = Frame2D([Person2D(pixels, scores, "h36m_17")], width, height,
                            camera_matrix=clip["camera_matrix"])
            clean = pipeline.process(frame).people[0].position[2]
            frame.people = [Person2D(p, s, "h36m_17") for p, s in variants(pixels, scores)]
            depths = np.array([person.position[2] for person in pipeline.process(frame).people])
            changes.append(np.abs(depths - clean) / clean if len(depths) == len(frame.people) else [1.0])
    return np.concatenate(changes)


def pipeline_clean_accuracy(config: PipelineConfig, weights: str) -> tuple[float, float, float, int]:
    """Every person of the clean clip: root-relative MPJPE (mm), the published root depth's mean and
    largest relative error against the truth, and how many were lifted again (a joint rejected)."""
    clip, pipeline = _clip_pipeline(config, weights)
    width, height = (float(v) for v in clip["image_size"])
    mpjpe, depth_error, relifted = [], [], 0
    for pixels, scores, truth in zip(clip["pixels"], clip["scores"], clip["truth_camera_m"]):
        frame = Frame2D([Person2D(p.astype(np.float64), s.astype(np.float64), "h36m_17") for p, s in zip(pixels, scores)],
                        width, height, camera_matrix=clip["camera_matrix"])
        for person, true in zip(pipeline.process(frame).people, truth):
            mpjpe.append(np.linalg.norm((person.keypoints - person.keypoints[0]) - (true - true[0]), axis=-1).mean())
            depth_error.append(abs(person.keypoints[0, 2] - true[0, 2]) / true[0, 2])
            relifted += int((person.keypoint_scores == 0).any())
    return 1e3 * float(np.mean(mpjpe)), float(np.mean(depth_error)), float(np.max(depth_error)), relifted


def pipeline_cost_ms(variant, repeats: int, weights: str) -> float:
    """Milliseconds of ``LiftingPipeline.process`` for one person of the clip's first frame."""
    clip, pipeline = _clip_pipeline(NOW, weights)
    width, height = (float(v) for v in clip["image_size"])
    pixels, scores = variant(clip["pixels"][0, 0].astype(np.float64), clip["scores"][0, 0].astype(np.float64))
    frame = Frame2D([Person2D(pixels, scores, "h36m_17")], width, height, camera_matrix=clip["camera_matrix"])
    times = timeit.repeat(lambda: pipeline.process(frame), number=50, repeat=repeats)
    return min(times) / 50 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and people")
    parser.add_argument("--weights", type=weights_file, default=str(DEFAULT_WEIGHTS), help="the lifter's weights (default: the shipped ones)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    rel, pixels, scores, truth, camera = lifted_people(5 if args.quick else 1, args.weights)
    print(f"{len(rel)} people of the demo clip, lifted by {args.weights}\n")

    print("| people per call | least squares (us/call) | robust (us/call) | robust per person (us) | robust / least squares |")
    print("|---:|---:|---:|---:|---:|")
    for count in (1, 2, 5, 16, 64):
        # interleaved, so load from other processes hits both alike
        plain = robust = float("inf")
        for _ in range(2):
            plain = min(plain, cost_us(rel, pixels, scores, camera, count, SOLVERS["least squares"], repeats))
            robust = min(robust, cost_us(rel, pixels, scores, camera, count, SOLVERS["robust"], repeats))
        print(f"| {count} | {plain:.0f} | {robust:.0f} | {robust / count:.0f} | {robust / plain:.2f}x |")

    shifts = (30.0, 100.0, 300.0, 1000.0)
    print("\n| solver | clean depth error mean / max | " + " | ".join(f"one joint +{s:g} px" for s in shifts) + " |")
    print("|---|---|" + "---:|" * len(shifts))
    for name, options in SOLVERS.items():
        clean, _ = solve_root_translation(rel, pixels, scores, camera, **options)
        error = np.abs(clean[:, 2] - truth[:, 0, 2]) / truth[:, 0, 2]
        changes = [worst_depth_change(rel, pixels, scores, camera, s, options) for s in shifts]
        print(f"| {name} | {error.mean():.2%} / {error.max():.2%} | "
              + " | ".join(f"{c:.1%}" for c in changes) + " |")
    print("\n(one joint moved: the largest relative change of the root depth over every joint, 8 directions "
          "and every person; a failed solve counts as 100 %)")

    print("\nThrough the pipeline (the lifter sees the moved joint too), change of the published root depth,\n"
          "max / p99 / mean, for each stage of the pipeline (PIPELINES):\n")
    print("| case | " + " | ".join(PIPELINES) + " |")
    print("|---|" + "---:|" * len(PIPELINES))
    every = 30 if args.quick else 10
    cases = {"one joint moved 30 px": moved_joint(30.0), "one joint moved 100 px": moved_joint(100.0),
             "one joint moved 1000 px": moved_joint(1000.0),
             "one joint missing (score 0)": missing_joint}
    for name, variants in cases.items():
        cells = []
        for config in PIPELINES.values():
            changes = pipeline_depth_changes(variants, every, config, args.weights)
            cells.append(f"{changes.max():.2%} / {np.percentile(changes, 99):.1%} / {changes.mean():.1%}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\nThe clean clip through the pipeline, every person against the truth:\n")
    print("| pipeline | root-relative MPJPE (mm) | root depth error mean / max | people with a joint rejected |")
    print("|---|---:|---:|---:|")
    for name, config in PIPELINES.items():
        mpjpe, mean_error, max_error, relifted = pipeline_clean_accuracy(config, args.weights)
        print(f"| {name} | {mpjpe:.2f} | {mean_error:.2%} / {max_error:.2%} | {relifted} |")

    print("\nPipeline cost for one person (ONNX Runtime, 1 thread; min over repeats of 50 frames):\n")
    print("| person | ms per frame |")
    print("|---|---:|")
    one = {"clean": lambda p, s: (p, s),
           "one joint missing (lifted twice)": lambda p, s: missing_joint(p, s)[16],
           "one joint moved 100 px (rejected, lifted three times)": lambda p, s: moved_joint(100.0)(p, s)[16 * 8]}
    for name, variant in one.items():
        print(f"| {name} | {pipeline_cost_ms(variant, repeats, args.weights):.2f} |")


if __name__ == "__main__":
    main()
