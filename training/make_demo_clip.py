"""Make the 2D keypoint clip the demo replays: real Human3.6M motion of the test subject S9.

Two people (S9 "Walking 1" and "Greeting", the second moved 1.3 m to the side)
seen by Human3.6M camera 54138969 as a pinhole camera (no distortion, so the
clip's CameraInfo describes it exactly), 150 frames played at 30 Hz, with
detector-like 2D jitter. The clip keeps the 3D truth in the camera frame so the
demo can report its error. Derived from Human3.6M: non-commercial research use only.

    python -m training.make_demo_clip --out cfi_pose_ros/data/demo_clip_h36m_s9.npz
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from cfi_pose_ros.camera import CameraIntrinsics, project, world_to_camera
from cfi_pose_ros.skeleton import H36M_32_TO_17
from training.evaluate import DEFAULT_DATA, error_text
from training.h36m import load_cameras, load_poses_3d

SEQUENCES = (("S9", "Walking 1", 0.0), ("S9", "Greeting", 1.3))   # subject, action, lateral offset (m)


def make_clip(data_3d: Path, cameras_json: Path, frames: int = 150, frame_step: int = 2,
              pixel_noise: float = 1.5, seed: int = 0) -> dict:
    poses = load_poses_3d(data_3d)
    cameras = load_cameras(cameras_json)
    if "S9" not in cameras:
        raise KeyError(f"{cameras_json}: no cameras of S9 (has {sorted(cameras)})")
    camera = cameras["S9"][0]
    pinhole = CameraIntrinsics(camera.intrinsics.fx, camera.intrinsics.fy, camera.intrinsics.cx,
                               camera.intrinsics.cy, camera.intrinsics.width, camera.intrinsics.height)
    rng = np.random.default_rng(seed)
    truth, pixels = [], []
    for subject, action, offset in SEQUENCES:
        world = sequence(poses, data_3d, subject, action, (frames - 1) * frame_step + 1)
        world = world[: frames * frame_step: frame_step]
        if world.shape[1] == 32:
            world = world[:, H36M_32_TO_17]
        cam = world_to_camera(world, camera.rotation_world_to_cam, camera.center_world)
        cam = cam + np.array([offset, 0.0, 0.0])
        truth.append(cam)
        pixels.append(project(cam, pinhole) + rng.normal(0.0, pixel_noise, (len(cam), 17, 2)))
    truth = np.stack(truth, axis=1)                      # (T, P, 17, 3)
    pixels = np.stack(pixels, axis=1)                    # (T, P, 17, 2)
    scores = np.clip(rng.normal(0.9, 0.05, pixels.shape[:-1]), 0.0, 1.0)
    return {
        "pixels": pixels.astype(np.float32), "scores": scores.astype(np.float32),
        "truth_camera_m": truth.astype(np.float32), "ids": np.array(["walker", "greeter"]),
        "camera_matrix": pinhole.matrix, "image_size": np.array([pinhole.width, pinhole.height]),
        "fps": np.array(30.0), "layout": np.array("h36m_17"),
        "source": np.array("Human3.6M S9 (Walking 1, Greeting), camera 54138969 without distortion; "
                           "non-commercial research use only"),
    }


def sequence(poses: dict, data_3d: Path, subject: str, action: str, frames: int) -> np.ndarray:
    """``poses[subject][action]``, which must have at least ``frames`` frames (KeyError naming
    the file otherwise: the people's clips are stacked frame by frame)."""
    found = poses.get(subject, {}).get(action)
    if found is None:
        raise KeyError(f"{data_3d}: no {subject} {action!r}, which the clip is made of")
    if len(found) < frames:
        raise KeyError(f"{data_3d}: {subject} {action!r} has {len(found)} frames, the clip needs {frames}")
    return found


def clip_path(out: str) -> Path:
    """``--out`` as written: numpy's savez names a file without the .npz suffix with it added."""
    path = Path(out)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def write_atomically(path: Path, clip: dict) -> None:
    """The clip written beside ``path`` and renamed over it: an interrupted run leaves the old clip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as f:            # a file object: savez adds no suffix to it
            np.savez_compressed(f, **clip)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-3d", default=str(DEFAULT_DATA / "data_3d_h36m.npz"))
    parser.add_argument("--cameras", default=str(DEFAULT_DATA / "cameras.json"))
    parser.add_argument("--out", default="cfi_pose_ros/data/demo_clip_h36m_s9.npz",
                        help="the clip (.npz; added when missing)")
    args = parser.parse_args(argv)
    out = clip_path(args.out)
    try:
        clip = make_clip(Path(args.data_3d), Path(args.cameras))
        write_atomically(out, clip)
    except (KeyError, ValueError, OSError) as error:     # data without the clip's sequences, an unwritable --out
        raise SystemExit(f"error: {error_text(error)}") from None
    print(f"wrote {out}: {clip['pixels'].shape[0]} frames, {clip['pixels'].shape[1]} people")


if __name__ == "__main__":
    main()
