#!/usr/bin/env python3
"""How much the lift depends on the camera: S9 MPJPE through other cameras than Human3.6M's, the
lifter's input taken as pixels over the image's width (the literature's input) and as the lift node
takes it with a CameraInfo (each person seen through the reference camera, turned towards people far
off its axis: ``camera.reference_view``), in one run.

    python benchmarks/bench_cameras.py                  # every 100th S9 frame
    python benchmarks/bench_cameras.py --stride 20 --out outputs/bench_cameras

Every S9 pose (GT, all four cameras, in the camera's frame) is projected through each camera below,
an ideal pinhole one (the same people at the same places, unless turned to the side about the
camera's vertical axis), and lifted by the weights (torch, fp32) with the node's
person-scale clamp and, in the reference view, turned as far as the weights' input domain asks. Writes ``accuracy_vs_camera.png`` and ``.json`` to ``--out``. Also prints where
``camera.H36M_REFERENCE_CAMERA`` and ``camera.H36M_PELVIS_ANGLES_DEG`` come from: the mean of
Human3.6M's cameras, and the percentiles of the training subjects' pelvis angles off the axis.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cfi_pose_ros.arguments import positive_int, weights_file  # noqa: E402
from cfi_pose_ros.camera import (H36M_PELVIS_ANGLES_DEG, H36M_REFERENCE_CAMERA,  # noqa: E402
                                 CameraIntrinsics, LifterInputDomain, lifter_input_in_reference_view,
                                 normalize_screen, person_centre, project)
from cfi_pose_ros.weights import DEFAULT_WEIGHTS, load_weights  # noqa: E402
from training.evaluate import DEFAULT_DATA, predict  # noqa: E402
from training.h36m import TRAIN_SUBJECTS, camera_sequences, load_cameras, load_poses_3d  # noqa: E402


def pinhole(f: float, cx: float, cy: float, width: int, height: int) -> CameraIntrinsics:
    return CameraIntrinsics(f, f, cx, cy, width, height)


def cameras_for(own: CameraIntrinsics) -> dict[str, tuple[CameraIntrinsics, float]]:
    """name -> (camera, degrees the people are turned to the side), for one Human3.6M camera (its
    focal length fx, its principal point, no lens distortion)."""
    f, cx, cy = own.fx, own.cx, own.cy
    return {
        "Human3.6M's own": (pinhole(f, cx, cy, own.width, own.height), 0.0),
        "700 x 700 region of interest, centred": (pinhole(f, cx - 150, cy - 151, 700, 700), 0.0),
        "700 x 700 region of interest, top left": (pinhole(f, cx, cy, 700, 700), 0.0),
        "700 x 700 region of interest, bottom right": (pinhole(f, cx - 300, cy - 302, 700, 700), 0.0),
        "half the focal length": (pinhole(f / 2, cx, cy, own.width, own.height), 0.0),
        "1.5 x the focal length": (pinhole(f * 1.5, cx, cy, own.width, own.height), 0.0),
        "640 x 480, f 615 px": (pinhole(615.0, 320.0, 240.0, 640, 480), 0.0),
        "1920 x 1080, f 1380 px (HD webcam)": (pinhole(1380.0, 960.0, 540.0, 1920, 1080), 0.0),
        "1920 x 1080, f 1380 px, turned 20 deg": (pinhole(1380.0, 960.0, 540.0, 1920, 1080), 20.0),
        "1000 x 1000, f 500 px (90 deg lens), turned 30 deg": (pinhole(500.0, 500.0, 500.0, 1000, 1000), 30.0),
        "1000 x 1000, f 500 px (90 deg lens), turned 40 deg": (pinhole(500.0, 500.0, 500.0, 1000, 1000), 40.0),
    }


def turned(points: np.ndarray, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return points @ np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]]).T


def errors_in_both_views(model, domain: LifterInputDomain, points: np.ndarray, camera: CameraIntrinsics
                         ) -> dict[str, np.ndarray]:
    """Per-pose MPJPE (m) of ``points`` seen by ``camera``, in both views (the weights' input
    ``domain``: the reference view's cone and the person-scale clamp)."""
    truth = points - points[:, :1]
    pixels = project(points, camera)
    in_reference_view, rotations = lifter_input_in_reference_view(pixels, camera.matrix, domain.pelvis_angles_deg)
    lifted = {
        "image view": predict(model, normalize_screen(pixels, camera.width, camera.height).astype(np.float32),
                              person_scale_range=domain.person_scale_range),
        "reference view (node)": predict(model, in_reference_view.astype(np.float32),
                                         person_scale_range=domain.person_scale_range, rotations=rotations),
    }
    return {view: np.linalg.norm(pose - pose[:, :1] - truth, axis=-1).mean(axis=1) for view, pose in lifted.items()}


def print_where_the_reference_comes_from(poses_3d: dict, cameras: dict) -> None:
    """The mean of Human3.6M's cameras, and the training subjects' pelvis angles off the axis
    (every 20th frame, all four cameras) against the constants in camera.py."""
    own = [camera.intrinsics for subject in TRAIN_SUBJECTS for camera in cameras[subject]]
    print("Human3.6M's cameras, mean: f {:.1f} px, principal point ({:.1f}, {:.1f}); camera.H36M_REFERENCE_CAMERA: "
          "f {}, ({}, {}), {} x {}".format(np.mean([(k.fx + k.fy) / 2 for k in own]), np.mean([k.cx for k in own]),
                                          np.mean([k.cy for k in own]), H36M_REFERENCE_CAMERA.fx,
                                          H36M_REFERENCE_CAMERA.cx, H36M_REFERENCE_CAMERA.cy,
                                          H36M_REFERENCE_CAMERA.width, H36M_REFERENCE_CAMERA.height))
    centres = np.concatenate([person_centre(s.joints[::20, :, :2] / s.joints[::20, :, 2:])
                              for s in camera_sequences(poses_3d, cameras, TRAIN_SUBJECTS)])
    angles = np.degrees(np.arctan(centres))
    for q in (1, 99):
        print(f"training subjects' pelvis angles off the axis, percentile {q} (across, up/down): "
              f"{np.round(np.percentile(angles, q, axis=0), 1).tolist()}")
    print(f"camera.H36M_PELVIS_ANGLES_DEG = {H36M_PELVIS_ANGLES_DEG} (1st, 99th)")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    y = np.arange(len(rows))
    for offset, view in ((-0.2, "image view"), (0.2, "reference view (node)")):
        ax.barh(y + offset, [r[view] for r in rows], height=0.4, label=view)
    ax.set_yticks(y, [r["camera"] for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="S9 MPJPE, GT 2D (mm)", title="The same people through other cameras")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=weights_file, default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--stride", type=positive_int, default=100, help="every n-th frame of S9")
    parser.add_argument("--out", default="outputs/bench_cameras")
    args = parser.parse_args(argv)
    poses_3d = load_poses_3d(DEFAULT_DATA / "data_3d_h36m.npz")
    cameras = load_cameras(DEFAULT_DATA / "cameras.json")
    print_where_the_reference_comes_from(poses_3d, cameras)
    model, info = load_weights(args.weights)
    print(f"the weights' input domain: {info.input_domain}")

    errors: dict[tuple[str, str], list[np.ndarray]] = {}
    for sequence in camera_sequences(poses_3d, cameras, ("S9",)):
        for name, (camera, degrees) in cameras_for(sequence.camera.intrinsics).items():
            points = sequence.joints[::args.stride]
            for view, error in errors_in_both_views(model, info.input_domain, turned(points, degrees),
                                                    camera).items():
                errors.setdefault((name, view), []).append(error)
    rows = []
    for name in cameras_for(H36M_REFERENCE_CAMERA):
        row = {"camera": name, "poses": int(sum(len(e) for e in errors[(name, "image view")]))}
        row.update({view: float(np.concatenate(errors[(name, view)]).mean() * 1000)
                    for view in ("image view", "reference view (node)")})
        rows.append(row)
    print("| camera (S9 seen through it) | image view (mm) | reference view, the node (mm) |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['camera']} | {row['image view']:.1f} | {row['reference view (node)']:.1f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy_vs_camera.json").write_text(json.dumps(
        {"rows": rows, "command": "python benchmarks/bench_cameras.py " + " ".join(
            sys.argv[1:] if argv is None else argv)}, indent=2) + "\n")
    plot(rows, out / "accuracy_vs_camera.png")
    print(f"wrote {out / 'accuracy_vs_camera.png'}")
    return rows


if __name__ == "__main__":
    main()
