#!/usr/bin/env python3
"""How well people far away or close by are lifted: S9 MPJPE against distance, with and without the
node's person-scale clamp, in one run.

    python benchmarks/bench_distance.py                 # every 50th S9 frame, 8 distances
    python benchmarks/bench_distance.py --stride 10 --out outputs/bench_distance

Every S9 pose (GT, all four cameras) is moved along its pelvis' ray to ``factor`` x its distance
(Human3.6M's people stand 3.3 to 6.9 m from its cameras; a robot sees people from 1 to 20 m) and
projected through the same camera, lens distortion included. The weights lift it (torch, fp32) as
the node does with that camera's K (the reference camera's view, turned as far as the weights' input
domain asks: :func:`training.evaluate.node_view`), as it is seen, and with people outside the
weights' person-scale range zoomed into it about the pelvis first
(:func:`cfi_pose_ros.camera.clamp_person_scale`, what the node does); the root-relative truth is
the same at every distance. Also prints the person-scale percentiles of the training subjects,
where ``camera.H36M_PERSON_SCALE_RANGE`` comes from, and the weights' range. Writes
``accuracy_vs_distance.png`` and ``.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cfi_pose_ros.arguments import positive_float, positive_int, weights_file  # noqa: E402
from cfi_pose_ros.camera import H36M_PERSON_SCALE_RANGE, person_scale, project  # noqa: E402
from cfi_pose_ros.weights import DEFAULT_WEIGHTS, load_weights  # noqa: E402
from training.evaluate import DEFAULT_DATA, node_view, predict  # noqa: E402
from training.h36m import TRAIN_SUBJECTS, build_pose_set, camera_sequences, load_cameras, load_poses_3d  # noqa: E402

FACTORS = (0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)


def plot(rows: list[dict], path: Path, placement_distance: list[float] | None = None) -> None:
    """MPJPE against distance, as seen and clamped, the training distances shaded (Human3.6M's, and
    those of the weights' placements when they were trained with ``--placement-prob``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    distance = [5.2 * r["factor"] for r in rows]        # the median training distance, 5.2 m
    for name, style in (("as seen", "o--"), ("clamped", "o-")):
        ax.plot(distance, [r[name] for r in rows], style, label=name)
    if placement_distance:
        ax.axvspan(*placement_distance, color="0.95", label="training distances, placed people")
    ax.axvspan(3.3, 6.9, color="0.85", label="training distances, Human3.6M")
    ax.set(xscale="log", xlabel="distance of the S9 person (m, median)", ylabel="S9 MPJPE, GT 2D (mm)",
           title="Lifting people far away and close by")
    ax.xaxis.set_major_locator(FixedLocator([1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def placement_distance(training: dict) -> list[float] | None:
    """The distances (m, ``[near, far]``) the weights' training placed people at, as their JSON's
    training record says (``training.train --placement-prob``), or None: none placed, or a record
    that says no two such distances (a hand-edited ``"placement_distance_m": "2-15"`` ended the
    benchmark, after its whole run, in matplotlib's ValueError traceback; said and left unshaded)."""
    data = training.get("data")
    if not isinstance(data, dict) or not data.get("placement_prob"):
        return None
    placed = data.get("placement_distance_m")
    if (isinstance(placed, list) and len(placed) == 2
            and all(isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d) for d in placed)
            and 0 < placed[0] < placed[1]):
        return [float(d) for d in placed]
    print(f"the weights' training record names no placement distances (placement_distance_m {placed!r:.60}): "
          "not shaded")
    return None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=weights_file, default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--stride", type=positive_int, default=50, help="every n-th frame of S9 (and of training, /10)")
    parser.add_argument("--factors", type=positive_float, nargs="+", default=list(FACTORS),
                        help="distances as multiples of the recorded one")
    parser.add_argument("--out", default="outputs/bench_distance")
    args = parser.parse_args(argv)
    poses_3d = load_poses_3d(DEFAULT_DATA / "data_3d_h36m.npz")
    cameras = load_cameras(DEFAULT_DATA / "cameras.json")

    train_scales = person_scale(
        build_pose_set(poses_3d, cameras, TRAIN_SUBJECTS, stride=max(args.stride // 10, 1)).inputs_2d)
    percentiles = {p: float(np.percentile(train_scales, p)) for p in (1, 5, 10, 50, 90, 95, 98, 99)}
    print("person scale of the training subjects, percentiles: "
          + ", ".join(f"{p}%: {v:.4f}" for p, v in percentiles.items())
          + f"\ncamera.H36M_PERSON_SCALE_RANGE = {H36M_PERSON_SCALE_RANGE} (10th and 98th)")

    model, info = load_weights(args.weights)
    domain = info.input_domain
    print(f"the weights' input domain: {domain}")
    test = [(seen.joints[::args.stride], seen.camera.intrinsics)
            for seen in camera_sequences(poses_3d, cameras, ("S9",))]
    rows = []
    for factor in args.factors:
        errors = {"as seen": [], "clamped": []}
        for points, k in test:
            root = points[:, :1]
            moved = points - root + root * factor
            inputs, rotations = node_view(project(moved, k), k, domain.pelvis_angles_deg)
            for name, scale_range in (("as seen", None), ("clamped", domain.person_scale_range)):
                lifted = predict(model, inputs.astype(np.float32), person_scale_range=scale_range,
                                 rotations=rotations)
                lifted = lifted - lifted[:, :1]
                errors[name].append(np.linalg.norm(lifted - (points - root), axis=-1).mean(axis=1))
        row = {"factor": factor, "poses": int(sum(len(e) for e in errors["as seen"]))}
        row.update({name: float(np.concatenate(e).mean() * 1000) for name, e in errors.items()})
        rows.append(row)
        print(f"x{factor:<4} MPJPE as seen {row['as seen']:6.1f} mm   clamped {row['clamped']:6.1f} mm   "
              f"({row['poses']} poses)", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy_vs_distance.json").write_text(json.dumps(
        {"training_person_scale_percentiles": percentiles, "input_domain": domain.to_dict(), "rows": rows,
         "command": "python benchmarks/bench_distance.py " + shlex.join(sys.argv[1:] if argv is None else argv)},
        indent=2) + "\n")
    plot(rows, out / "accuracy_vs_distance.png", placement_distance(info.training))
    print(f"wrote {out / 'accuracy_vs_distance.png'}")
    return {"rows": rows, "percentiles": percentiles}


if __name__ == "__main__":
    main()
