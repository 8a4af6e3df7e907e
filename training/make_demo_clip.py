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
from pathlib import Path

import numpy as np

from cfi_pose_ros.camera import CameraIntrinsics, project, world_to_camera
from cfi_pose_ros.skeleton import H36M_32_TO_17
from training.evaluate import DEFAULT_DATA
from training.h36m import load_cameras, load_poses_3d

SEQUENCES = (("S9", "Walking 1", 0.0), ("S9", "Greeting", 1.3))   # subject, action, lateral offset (m)


def make_clip(data_3d: Path, cameras_json: Path, frames: int = 150, frame_step: int = 2,
              pixel_noise: float = 1.5, seed: int = 0) -> dict:
    poses = load_poses_3d(data_3d)
    camera = load_cameras(cameras_json)["S9"][0]
    pinhole = CameraIntrinsics(camera.intrinsics.fx, camera.intrinsics.fy, camera.intrinsics.cx,
                               camera.intrinsics.cy, camera.intrinsics.width, camera.intrinsics.height)
    rng = np.random.default_rng(seed)
    truth, pixels = [], []
    for subject, action, offset in SEQUENCES:
        world = poses[subject][action][: frames * frame_step: frame_step][:, H36M_32_TO_17]
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-3d", default=str(DEFAULT_DATA / "data_3d_h36m.npz"))
    parser.add_argument("--cameras", default=str(DEFAULT_DATA / "cameras.json"))
    parser.add_argument("--out", default="cfi_pose_ros/data/demo_clip_h36m_s9.npz")
    args = parser.parse_args(argv)
    clip = make_clip(Path(args.data_3d), Path(args.cameras))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **clip)
    print(f"wrote {args.out}: {clip['pixels'].shape[0]} frames, {clip['pixels'].shape[1]} people")


if __name__ == "__main__":
    main()
