"""Human3.6M loading under the standard protocol, on tiny files in the public layouts."""
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from cfi_pose_ros.skeleton import H36M_32_TO_17
from training.h36m import (ACTION_CLASSES, action_class, build_pose_set, load_cameras,
                           load_detections_2d, load_h36m, load_poses_3d)

T = 7                                   # frames per tiny sequence
KEPT = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)   # the README's list
DISTORTION = ([-0.207, 0.248, -0.003], [-0.0014, -0.00098])             # H36M-like (k1 k2 k3), (p1 p2)
ACTIONS = {"S1": ("Directions 1", "Walking", "TakingPhoto", "WalkingDog 1"),
           "S11": ("Directions", "Directions 1", "Eating 2")}


def look_at(center, target=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World (z up) -> camera (x right, y down, z forward) rotation looking at ``target``."""
    z = np.asarray(target, float) - np.asarray(center, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def camera_entries(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    cams = []
    for i, (cam_id, res_h) in enumerate((("54138969", 1002), ("55011271", 1000),
                                        ("58860488", 1000), ("60457274", 1002))):
        angle = np.pi / 4 + i * np.pi / 2 + rng.uniform(-0.2, 0.2)
        center = [5 * np.cos(angle), 5 * np.sin(angle), 1.6 + rng.uniform(-0.1, 0.1)]
        radial, tangential = DISTORTION if i else ([0.0, 0.0, 0.0], [0.0, 0.0])
        cams.append({"id": cam_id, "res_w": 1000, "res_h": res_h,
                     "R_world_to_cam": look_at(center, (0, 0, 1.0 + rng.uniform(-0.1, 0.1))).tolist(),
                     "center_world_m": center,
                     "focal_length": [1145.0 + rng.uniform(-5, 5), 1143.8 + rng.uniform(-5, 5)],
                     "center": [512.5 + rng.uniform(-5, 5), 508.1 + rng.uniform(-5, 5)],
                     "radial_distortion": radial, "tangential_distortion": tangential})
    return cams


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    poses = {subject: {action: (np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.4, (T, 32, 3))).astype(np.float32)
                       for action in actions} for subject, actions in ACTIONS.items()}
    np.savez_compressed(tmp_path / "data_3d_h36m.npz", positions_3d=poses)
    cameras = {subject: camera_entries(i) for i, subject in enumerate(ACTIONS)}
    (tmp_path / "cameras.json").write_text(json.dumps(cameras, indent=1))
    # detections: one camera shorter than the mocap, one longer, two equal
    lengths = (T - 2, T + 3, T, T)
    detections = {subject: {action: [rng.uniform(0, 1000, (n, 17, 2)).astype(np.float32) for n in lengths]
                            for action in actions} for subject, actions in ACTIONS.items()}
    np.savez_compressed(tmp_path / "data_2d_h36m_test.npz", positions_2d=detections)
    return {"dir": tmp_path, "poses": poses, "cameras": cameras, "detections": detections,
            "data_3d": tmp_path / "data_3d_h36m.npz", "cameras_json": tmp_path / "cameras.json",
            "data_2d": tmp_path / "data_2d_h36m_test.npz"}


def to_camera(cam: dict, point_world) -> np.ndarray:
    r = np.array(cam["R_world_to_cam"])
    return r @ (np.asarray(point_world, dtype=np.float64) - np.array(cam["center_world_m"]))


def project_by_hand(cam: dict, x_cam) -> np.ndarray:
    """The README's 3d-pose-baseline formula, one point at a time."""
    xx = np.array([x_cam[0] / x_cam[2], x_cam[1] / x_cam[2]])
    r2 = xx[0] ** 2 + xx[1] ** 2
    k1, k2, k3 = cam["radial_distortion"]
    p1, p2 = cam["tangential_distortion"]
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = p1 * xx[1] + p2 * xx[0]
    xxx = xx * (radial + tan) + np.array([p2, p1]) * r2
    return np.array(cam["focal_length"]) * xxx + np.array(cam["center"])


def normalise_by_hand(uv, w, h) -> np.ndarray:
    return np.asarray(uv) / w * 2 - np.array([1.0, h / w])


def sequence_rows(pose_set, subject_index: int, action: str, camera: int) -> np.ndarray:
    label = ACTION_CLASSES.index(action_class(action))
    return np.flatnonzero((pose_set.subject_ids == subject_index) & (pose_set.camera_ids == camera)
                          & (pose_set.action_ids == label))


def test_action_classes():
    assert action_class("Directions 1") == "Directions"
    assert action_class("Directions") == "Directions"
    assert action_class("SittingDown 2") == "SittingDown"
    assert action_class("TakingPhoto 1") == "Photo"
    assert action_class("WalkingDog") == "WalkDog"
    assert len(ACTION_CLASSES) == 15


def test_loaders_read_the_public_layouts(files):
    poses = load_poses_3d(files["data_3d"])
    assert set(poses) == {"S1", "S11"}
    assert poses["S1"]["Walking"].shape == (T, 32, 3) and poses["S1"]["Walking"].dtype == np.float32
    cameras = load_cameras(files["cameras_json"])
    assert [c.id for c in cameras["S1"]] == ["54138969", "55011271", "58860488", "60457274"]
    k = cameras["S1"][0].intrinsics
    assert (k.width, k.height) == (1000, 1002)
    assert k.fx == files["cameras"]["S1"][0]["focal_length"][0]
    assert cameras["S1"][1].intrinsics.radial == tuple(DISTORTION[0])
    np.testing.assert_array_equal(cameras["S11"][2].rotation_world_to_cam,
                                  files["cameras"]["S11"][2]["R_world_to_cam"])
    detections = load_detections_2d(files["data_2d"])
    assert len(detections["S1"]["Walking"]) == 4
    assert detections["S1"]["Walking"][0].shape == (T - 2, 17, 2)


def test_loaders_reject_wrong_files(files, tmp_path):
    with pytest.raises(ValueError, match="positions_3d"):
        load_poses_3d(files["data_2d"])
    with pytest.raises(ValueError, match="positions_2d"):
        load_detections_2d(files["data_3d"])
    np.savez(tmp_path / "plain.npz", positions_3d=np.zeros((3, 17, 3)))
    with pytest.raises(ValueError, match="not a pickled object"):
        load_poses_3d(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a dataset file"):
        load_poses_3d(tmp_path / "text.npz")


class _RunsCodeWhenUnpickled:
    """What a hostile dataset file can hold: unpickling it calls ``Path.touch``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_dataset_file_that_would_run_code_is_refused_without_running_it(tmp_path):
    """np.load(allow_pickle=True), which the loaders used, runs any callable a file names."""
    marker = tmp_path / "code_ran"
    hostile = tmp_path / "data_3d_h36m.npz"
    np.savez(hostile, positions_3d=np.array({"S1": {"Walking": _RunsCodeWhenUnpickled(marker)}}, dtype=object))
    with np.load(hostile, allow_pickle=True) as data:      # what the loaders did
        data["positions_3d"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match="is not part of a dataset"):
        load_poses_3d(hostile)
    assert not marker.exists()


def test_targets_are_selected_root_relative_camera_frame(files):
    pose_set = load_h36m(files["data_3d"], files["cameras_json"], ("S1",))
    assert pose_set.targets_3d.dtype == np.float32 and pose_set.targets_3d.shape[1:] == (17, 3)
    world = files["poses"]["S1"]["Walking"].astype(np.float64)
    for c, cam in enumerate(files["cameras"]["S1"]):
        rows = sequence_rows(pose_set, 0, "Walking", c)
        assert len(rows) == T
        for t in range(T):
            expected = np.array([to_camera(cam, world[t, k]) for k in KEPT])
            expected -= expected[0]
            np.testing.assert_allclose(pose_set.targets_3d[rows[t]], expected, atol=2e-6)
            np.testing.assert_array_equal(pose_set.targets_3d[rows[t], 0], 0.0)
    assert tuple(H36M_32_TO_17) == KEPT


def test_gt_2d_is_the_projection_normalised(files):
    pose_set = load_h36m(files["data_3d"], files["cameras_json"], ("S1",))
    assert pose_set.inputs_2d.dtype == np.float32 and pose_set.inputs_2d.shape[1:] == (17, 2)
    world = files["poses"]["S1"]["Directions 1"].astype(np.float64)
    for c, cam in enumerate(files["cameras"]["S1"]):
        rows = sequence_rows(pose_set, 0, "Directions 1", c)
        w, h = cam["res_w"], cam["res_h"]
        for t in (0, T - 1):
            uv = np.array([project_by_hand(cam, to_camera(cam, world[t, k])) for k in KEPT])
            if c == 0:       # undistorted: plain pinhole
                x = np.array([to_camera(cam, world[t, k]) for k in KEPT])
                pinhole = np.array(cam["focal_length"]) * x[:, :2] / x[:, 2:] + np.array(cam["center"])
                np.testing.assert_allclose(uv, pinhole, rtol=1e-12)
            else:            # the distortion matters at this size
                x = np.array([to_camera(cam, world[t, k]) for k in KEPT])
                pinhole = np.array(cam["focal_length"]) * x[:, :2] / x[:, 2:] + np.array(cam["center"])
                assert np.abs(uv - pinhole).max() > 0.05
            np.testing.assert_allclose(pose_set.inputs_2d[rows[t]], normalise_by_hand(uv, w, h),
                                       rtol=1e-5, atol=2e-6)


def test_normalisation_of_known_pixels():
    """uv / w * 2 - [1, h / w]: the image centre of a square image is (0, 0)."""
    from cfi_pose_ros.camera import normalize_screen
    px = np.array([[[0.0, 0.0], [500.0, 501.0], [1000.0, 1002.0]]])
    np.testing.assert_allclose(normalize_screen(px, 1000, 1002),
                               [[[-1.0, -1.002], [0.0, 0.0], [1.0, 1.002]]])
    np.testing.assert_allclose(normalize_screen(np.array([[[320.0, 240.0]]]), 640, 480), [[[0.0, 0.0]]])


def test_labels_and_s11_directions_dropped(files):
    pose_set = load_h36m(files["data_3d"], files["cameras_json"], ("S1", "S11"))
    assert pose_set.subjects == ("S1", "S11")
    assert pose_set.action_ids.dtype == np.int16 and pose_set.subject_ids.dtype == np.int16
    assert pose_set.camera_ids.dtype == np.int8
    # S1: 4 actions, S11: "Directions 1" and "Eating 2" (only the sequence named exactly
    # "Directions" is dropped, as VideoPose3D does); 4 cameras, T frames
    assert len(pose_set) == (4 + 2) * 4 * T
    s1 = pose_set.subject_ids == 0
    s11 = pose_set.subject_ids == 1
    assert {ACTION_CLASSES[a] for a in pose_set.action_ids[s1]} == {"Directions", "Walking", "Photo", "WalkDog"}
    assert {ACTION_CLASSES[a] for a in pose_set.action_ids[s11]} == {"Directions", "Eating"}
    assert sorted(np.unique(pose_set.camera_ids)) == [0, 1, 2, 3]
    assert np.bincount(pose_set.camera_ids).tolist() == [6 * T] * 4


def test_stride(files):
    full = load_h36m(files["data_3d"], files["cameras_json"], ("S1",))
    strided = load_h36m(files["data_3d"], files["cameras_json"], ("S1",), stride=3)
    per_sequence = len(range(0, T, 3))
    assert len(strided) == 4 * 4 * per_sequence
    for c in range(4):
        a = sequence_rows(full, 0, "Walking", c)
        b = sequence_rows(strided, 0, "Walking", c)
        np.testing.assert_array_equal(strided.targets_3d[b], full.targets_3d[a][::3])
        np.testing.assert_array_equal(strided.inputs_2d[b], full.inputs_2d[a][::3])


def test_detections_trim_to_the_shorter_length(files):
    pose_set = load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=files["data_2d"])
    gt = load_h36m(files["data_3d"], files["cameras_json"], ("S1",))
    for c, expected_len in enumerate((T - 2, T, T, T)):
        rows = sequence_rows(pose_set, 0, "Walking", c)
        gt_rows = sequence_rows(gt, 0, "Walking", c)
        assert len(rows) == expected_len
        cam = files["cameras"]["S1"][c]
        pixels = files["detections"]["S1"]["Walking"][c][:expected_len].astype(np.float64)
        np.testing.assert_allclose(pose_set.inputs_2d[rows],
                                   normalise_by_hand(pixels, cam["res_w"], cam["res_h"]), atol=2e-6)
        # the 3D targets are the mocap's first frames, unchanged by the 2D source
        np.testing.assert_array_equal(pose_set.targets_3d[rows], gt.targets_3d[gt_rows][:expected_len])


# Each COCO-17 keypoint (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles; left
# before right) from an H36M-17 joint, written out by hand: eyes and ears on the head.
COCO_FROM_H36M = (9, 10, 10, 10, 10, 11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3)
VIDEOPOSE3D_METADATA = {"coco": {"layout_name": "coco", "num_joints": 17,
                                 "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]]},
                        "h36m": {"layout_name": "h36m", "num_joints": 17,
                                 "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}}


def test_detections_in_coco_layout_are_lifted_in_the_h36m_order(files, tmp_path):
    """VideoPose3D's Detectron files (data_2d_h36m_detectron_pt_coco.npz) hold COCO's keypoint order,
    named by their metadata's layout_name: they were read as H36M-17 (the nose as the pelvis, the
    eyes as the hips), a wrong number without a word. Now converted as the node converts a COCO
    detector's keypoints; a file of metadata 'h36m' is read as it is; another layout is refused."""
    h36m_order = files["detections"]
    coco = {s: {a: [cam[:, COCO_FROM_H36M] for cam in cams] for a, cams in actions.items()}
            for s, actions in h36m_order.items()}
    np.savez_compressed(tmp_path / "coco.npz", positions_2d=coco, metadata=VIDEOPOSE3D_METADATA["coco"])
    loaded = load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=tmp_path / "coco.npz")
    reference = load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=files["data_2d"])
    np.testing.assert_array_equal(loaded.targets_3d, reference.targets_3d)
    kept_as_detected = [1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16]
    np.testing.assert_allclose(loaded.inputs_2d[:, kept_as_detected], reference.inputs_2d[:, kept_as_detected],
                               atol=1e-6)
    hips, shoulders = reference.inputs_2d[:, [1, 4]], reference.inputs_2d[:, [11, 14]]
    np.testing.assert_allclose(loaded.inputs_2d[:, 0], hips.mean(axis=1), atol=1e-6)          # pelvis
    np.testing.assert_allclose(loaded.inputs_2d[:, 8], shoulders.mean(axis=1), atol=1e-6)     # thorax
    np.testing.assert_allclose(loaded.inputs_2d[:, 7], np.concatenate([hips, shoulders], axis=1).mean(axis=1),
                               atol=1e-6)                                                     # spine
    np.testing.assert_allclose(loaded.inputs_2d[:, 9], reference.inputs_2d[:, 9], atol=1e-6)  # nose

    np.savez_compressed(tmp_path / "h36m.npz", positions_2d=h36m_order, metadata=VIDEOPOSE3D_METADATA["h36m"])
    same = load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=tmp_path / "h36m.npz")
    np.testing.assert_array_equal(same.inputs_2d, reference.inputs_2d)

    np.savez_compressed(tmp_path / "mpii.npz", positions_2d=h36m_order,
                        metadata={"layout_name": "mpii", "num_joints": 16})
    with pytest.raises(ValueError, match="'mpii'.*'h36m' and 'coco'"):
        load_detections_2d(tmp_path / "mpii.npz")


def test_detections_with_stride(files):
    pose_set = load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=files["data_2d"],
                         stride=2)
    assert len(sequence_rows(pose_set, 0, "Walking", 0)) == len(range(0, T - 2, 2))
    assert len(sequence_rows(pose_set, 0, "Walking", 1)) == len(range(0, T, 2))


def test_action_filter_and_errors(files):
    poses = load_poses_3d(files["data_3d"])
    cameras = load_cameras(files["cameras_json"])
    walking = build_pose_set(poses, cameras, ("S1",), actions=("Walking",))
    assert len(walking) == 4 * T
    with pytest.raises(KeyError, match="S7"):
        build_pose_set(poses, cameras, ("S7",))
    poses["S1"]["Juggling 1"] = poses["S1"]["Walking"]
    with pytest.raises(ValueError, match="unknown action class"):
        build_pose_set(poses, cameras, ("S1",))
    with pytest.raises(ValueError, match="no frames"):
        build_pose_set(poses, cameras, ("S11",), actions=("Walking",))


def test_17_joint_input_is_used_as_is(files):
    poses = load_poses_3d(files["data_3d"])
    cameras = load_cameras(files["cameras_json"])
    full = build_pose_set(poses, cameras, ("S1",))
    reduced = {"S1": {a: v[:, list(KEPT)] for a, v in poses["S1"].items()}}
    again = build_pose_set(reduced, cameras, ("S1",))
    np.testing.assert_array_equal(full.targets_3d, again.targets_3d)
    np.testing.assert_array_equal(full.inputs_2d, again.inputs_2d)


def test_subset_keeps_rows_aligned(files):
    pose_set = load_h36m(files["data_3d"], files["cameras_json"], ("S1", "S11"))
    mask = pose_set.camera_ids == 2
    sub = pose_set.subset(mask)
    assert len(sub) == mask.sum() and set(sub.camera_ids.tolist()) == {2}
    np.testing.assert_array_equal(sub.targets_3d, pose_set.targets_3d[mask])
    assert sub.subjects == pose_set.subjects


def test_the_console_scripts_exit_0_after_a_run_that_succeeded(files, monkeypatch, capsys, tmp_path):
    """`pip install .` makes setup.py's console scripts: a wrapper that calls the named function with
    no arguments and hands what it returns to ``sys.exit``. ``training.train:main`` returns the run's
    record (a dict), so `cfi-train` printed it and exited 1 after a run that had succeeded (and
    `cfi-evaluate` alike). Each target is called here as that wrapper calls it."""
    import importlib
    import re

    from conftest import REPO

    targets = dict(re.findall(r'"(cfi-[a-z]+)=([\w.]+:\w+)"', (REPO / "setup.py").read_text()))
    assert set(targets) == {"cfi-train", "cfi-evaluate", "cfi-export"}, targets
    tiny_run = ["--synthetic", "600", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "64",
                "--max-steps-per-epoch", "2", "--epochs", "1", "--threads", "1", "--seed", "3", "--name", "tiny",
                "--compile", "off", "--amp", "off", "--eval-noise-std", "0", "--out", str(tmp_path / "run")]
    weights = str(tmp_path / "run" / "tiny.safetensors")
    argv = {"cfi-train": tiny_run,
            "cfi-evaluate": ["--weights", weights, "--data-3d", str(files["data_3d"]), "--cameras",
                             str(files["cameras_json"]), "--subjects", "S1", "--threads", "1",
                             "--out", str(tmp_path / "evaluation")],
            "cfi-export": ["--weights", weights, "--onnx", str(tmp_path / "lifter.onnx")]}
    for command in ("cfi-train", "cfi-evaluate", "cfi-export"):
        module, function = targets[command].split(":")
        monkeypatch.setattr(sys, "argv", [command] + argv[command])
        with pytest.raises(SystemExit) as stop:
            sys.exit(getattr(importlib.import_module(module), function)())
        assert stop.value.code in (0, None), (command, stop.value.code, capsys.readouterr().err[-2000:])
    assert (tmp_path / "evaluation" / "eval.json").is_file() and (tmp_path / "lifter.onnx").is_file()


def test_evaluation_cli_records_its_means_in_the_weights_json(files, tmp_path):
    import torch

    from cfi_pose_ros.camera import H36M_PERSON_SCALE_RANGE
    from cfi_pose_ros.model import CFIConfig, CFINet
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS, load_weights, save_weights
    from training.evaluate import main as evaluate

    torch.manual_seed(0)
    weights = save_weights(CFINet(CFIConfig(dim=16, depth=1, heads=2)), tmp_path / "w" / "tiny.safetensors",
                           metrics={"S9_gt2d": {"mpjpe_mm": 1.0}})
    common = ["--weights", str(weights), "--data-3d", str(files["data_3d"]), "--cameras",
              str(files["cameras_json"]), "--subjects", "S1", "--threads", "1"]
    plain = evaluate(common + ["--out", str(tmp_path / "plain"), "--record"])
    flipped = evaluate(common + ["--flip-test", "--stride", "2", "--out", str(tmp_path / "flip"), "--record"])
    evaluate(common + ["--out", str(tmp_path / "again")])        # without --record: the JSON is left alone
    # a packaged file by name, as the node takes it
    packaged = evaluate([*common[2:], "--weights", "cfi_h36m_d128", "--stride", "4", "--out", str(tmp_path / "named")])
    assert packaged["weights"] == str(DEFAULT_WEIGHTS.with_name("cfi_h36m_d128.safetensors"))
    # the model alone, without the node's person-scale clamp, and on the literature's input (pixels
    # over the image's width, not the node's reference view): keys of their own
    unclamped = evaluate(common + ["--no-scale-clamp", "--out", str(tmp_path / "model"), "--record"])
    image_view = evaluate(common + ["--image-view", "--out", str(tmp_path / "image"), "--record"])
    assert tuple(plain["person_scale_range"]) == H36M_PERSON_SCALE_RANGE and unclamped["person_scale_range"] is None
    assert plain["view"] == "reference camera" and image_view["view"] == "image"
    assert plain["mpjpe"]["mean_over_actions"] != image_view["mpjpe"]["mean_over_actions"]

    _, info = load_weights(weights)                              # tensors and checksum untouched
    assert set(info.metrics) == {"S9_gt2d", "S1_gt2d_all_frames_reference_view",
                                 "S1_gt2d_stride2_flip_test_reference_view",
                                 "S1_gt2d_all_frames_no_scale_clamp_reference_view", "S1_gt2d_all_frames"}
    assert info.metrics["S9_gt2d"] == {"mpjpe_mm": 1.0}
    assert info.metrics["S1_gt2d_all_frames"]["mpjpe_mm"] == pytest.approx(image_view["mpjpe"]["mean_over_actions"])
    recorded = info.metrics["S1_gt2d_all_frames_reference_view"]
    assert recorded["mpjpe_mm"] == pytest.approx(plain["mpjpe"]["mean_over_actions"])
    assert recorded["p_mpjpe_mm"] == pytest.approx(plain["p_mpjpe"]["mean_over_actions"])
    assert recorded["frames"] == plain["frames"] == 4 * 4 * T
    assert "--record" in recorded["command"]
    # quoted as a shell reads it (an --out with a space was recorded as two words)
    spaced = common + ["--out", str(tmp_path / "an eval"), "--stride", "4"]
    assert shlex.split(evaluate(spaced)["command"]) == ["python", "-m", "training.evaluate", *spaced]
    assert info.metrics["S1_gt2d_stride2_flip_test_reference_view"]["mpjpe_mm"] == pytest.approx(
        flipped["mpjpe"]["mean_over_actions"])
    assert flipped["frames"] < plain["frames"]


def test_evaluation_without_the_lower_body_lifts_what_the_node_would_be_given(files, tmp_path):
    """--missing-joints: the 2D those joints lack is filled as the node fills a joint it has no
    detection for (each sits on its nearest seen ancestor, a root without one on the mean of the
    seen joints), the error is over all 17 joints, and --record keys it apart."""
    import torch

    from cfi_pose_ros.model import CFIConfig, CFINet
    from cfi_pose_ros.skeleton import H36M_17, H36M_LOWER_BODY
    from cfi_pose_ros.weights import load_weights, save_weights
    from training.evaluate import main as evaluate, with_joints_missing
    from training.h36m import load_h36m

    poses = load_h36m(files["data_3d"], files["cameras_json"], ("S1",), None, 1)
    cut = with_joints_missing(poses, H36M_LOWER_BODY)
    upper = [H36M_17.index(n) for n in H36M_17.joint_names if n not in H36M_LOWER_BODY]
    np.testing.assert_array_equal(cut.inputs_2d[:, upper], poses.inputs_2d[:, upper])
    np.testing.assert_allclose(cut.inputs_2d[:, 0], poses.inputs_2d[:, upper].mean(axis=1), rtol=0, atol=1e-6)
    for joint in H36M_LOWER_BODY[1:]:                     # hips, knees, ankles: on the pelvis' stand-in
        np.testing.assert_array_equal(cut.inputs_2d[:, H36M_17.index(joint)], cut.inputs_2d[:, 0])
    np.testing.assert_array_equal(cut.targets_3d, poses.targets_3d)

    torch.manual_seed(0)
    weights = save_weights(CFINet(CFIConfig(dim=16, depth=1, heads=2)), tmp_path / "w" / "tiny.safetensors")
    common = ["--weights", str(weights), "--data-3d", str(files["data_3d"]), "--cameras",
              str(files["cameras_json"]), "--subjects", "S1", "--threads", "1", "--record"]
    whole = evaluate(common + ["--out", str(tmp_path / "whole")])
    waist_up = evaluate(common + ["--missing-joints", *reversed(H36M_LOWER_BODY), "--out", str(tmp_path / "cut")])
    ankles = evaluate(common + ["--missing-joints", "left_ankle", "--out", str(tmp_path / "ankle")])
    assert waist_up["missing_joints"] == list(reversed(H36M_LOWER_BODY)) and whole["missing_joints"] == []
    assert len({r["mpjpe"]["mean_over_actions"] for r in (whole, waist_up, ankles)}) == 3
    _, info = load_weights(weights)
    assert info.metrics["S1_gt2d_all_frames_reference_view_without_lower_body"]["mpjpe_mm"] == pytest.approx(
        waist_up["mpjpe"]["mean_over_actions"])
    assert "S1_gt2d_all_frames_reference_view_without_left_ankle" in info.metrics


def test_evaluation_without_every_joint_is_refused(files, tmp_path, capsys):
    """With all 17 --missing-joints none is seen, so none is filled: the lifter was given every
    joint, the means were the whole 2D's, and --record wrote them as "without" all 17."""
    from cfi_pose_ros.skeleton import H36M_17
    from training.evaluate import main as evaluate

    weights = tiny_weights(tmp_path)
    before = weights.with_suffix(".json").read_text()
    with pytest.raises(SystemExit) as stop:
        evaluate(["--weights", str(weights), "--data-3d", str(files["data_3d"]),
                  "--cameras", str(files["cameras_json"]), "--subjects", "S1", "--threads", "1", "--record",
                  "--missing-joints", *H36M_17.joint_names, "--out", str(tmp_path / "eval")])
    assert stop.value.code == 2
    assert ("--missing-joints: at least one joint must stay, not all 17 (with none seen the lifter would be given "
            "them all)") in capsys.readouterr().err
    assert weights.with_suffix(".json").read_text() == before and not (tmp_path / "eval").exists()


def test_evaluation_cli_names_a_missing_subject_in_one_line(files, tmp_path, monkeypatch, capsys):
    """`--subjects S9 S11` where the data has no S11 (the shared copy here): one line, exit 1."""
    import sys

    import torch

    from cfi_pose_ros.model import CFIConfig, CFINet
    from cfi_pose_ros.weights import save_weights
    from training.evaluate import main as evaluate

    torch.manual_seed(0)
    weights = save_weights(CFINet(CFIConfig(dim=16, depth=1, heads=2)), tmp_path / "w" / "tiny.safetensors")
    cameras = {k: v for k, v in files["cameras"].items() if k != "S11"}
    (tmp_path / "cameras_without_s11.json").write_text(json.dumps(cameras))
    for subjects, cameras_file, expected in ((["S1", "S7"], files["cameras_json"], "subject S7 not in the 3D file"),
                                             (["S11"], tmp_path / "cameras_without_s11.json",
                                              "subject S11 not in the cameras file")):
        monkeypatch.setattr(sys, "argv", ["evaluate", "--weights", str(weights), "--data-3d", str(files["data_3d"]),
                                          "--cameras", str(cameras_file), "--subjects", *subjects])
        with pytest.raises(SystemExit) as exit_info:
            evaluate()
        assert str(exit_info.value).startswith("error: ") and expected in str(exit_info.value)


# --- files that are not what they claim: one line naming the file and the entry, before any work ---

from training.h36m import DatasetError   # noqa: E402


def write_cameras(path, cameras) -> Path:
    path.write_text(json.dumps(cameras))
    return path


def test_a_cameras_file_that_is_not_one_is_refused_naming_the_entry(files, tmp_path):
    """A list, a focal length or width of 0 and a missing key failed deep in the evaluation
    (AttributeError, LinAlgError, "error: focal_length"); 3 of a subject's 4 cameras evaluated on 3."""
    good = files["cameras"]

    def changed(subject, camera, **entries):
        cameras = json.loads(json.dumps(good))
        cameras[subject][camera].update(entries)
        return cameras

    without_focal = json.loads(json.dumps(good))
    del without_focal["S1"][2]["focal_length"]
    cases = [([good["S1"]], "holds a JSON list, not {subject: [4 cameras]}"),
             ({**good, "S1": good["S1"][:3]}, "S1 has 3 cameras, not the 4 of Human3.6M"),
             (changed("S1", 1, focal_length=[0, 0]), "S1 camera 1: focal_length [0.0, 0.0] is not positive"),
             (changed("S11", 3, res_w=0), "S11 camera 3: 'res_w' is 0, not a positive number of pixels"),
             (changed("S1", 0, center=[float("nan"), 500.0]), "S1 camera 0: 'center' is [nan, 500.0], not 2 finite"),
             (changed("S1", 0, R_world_to_cam=np.eye(3).tolist()[:2]), "S1 camera 0: 'R_world_to_cam' is"),
             (changed("S1", 0, R_world_to_cam=(2 * np.eye(3)).tolist()), "R_world_to_cam is not a rotation"),
             (without_focal, "S1 camera 2: no 'focal_length'")]
    for index, (cameras, expected) in enumerate(cases):
        path = write_cameras(tmp_path / f"cameras_{index}.json", cameras)
        with pytest.raises(DatasetError) as error:
            load_cameras(path)
        assert str(error.value).startswith(f"{path}: ") and expected in str(error.value), str(error.value)
    (tmp_path / "broken.json").write_text('{"S1": [')
    with pytest.raises(DatasetError, match="broken.json: not a cameras file"):
        load_cameras(tmp_path / "broken.json")


def test_a_camera_that_sees_the_people_behind_it_is_refused_naming_it(files, tmp_path):
    """A rotation of the other convention (camera to world) passes every check of the camera alone,
    but put people behind 2 of 4 cameras, whose mirrored projections were trained and evaluated on
    without a word. So is a camera turned to look away from them."""
    cameras = json.loads(json.dumps(files["cameras"]))
    rotation = np.array(cameras["S1"][2]["R_world_to_cam"])
    cameras["S1"][2]["R_world_to_cam"] = (np.diag([-1.0, 1.0, -1.0]) @ rotation).tolist()    # looks away
    transposed = json.loads(json.dumps(files["cameras"]))
    for camera in transposed["S1"]:
        camera["R_world_to_cam"] = np.array(camera["R_world_to_cam"]).T.tolist()
    for name, changed, camera in (("away.json", cameras, "2"), ("transposed.json", transposed, r"\d")):
        path = write_cameras(tmp_path / name, changed)
        load_cameras(path)                      # each camera alone is one
        with pytest.raises(DatasetError) as error:
            load_h36m(files["data_3d"], path, ("S1",))
        message = str(error.value)
        assert re.fullmatch(rf"{re.escape(str(path))}: S1 camera {camera}: '[^']+' stands behind it \(a joint at z = "
                            r"-\d+\.\d\d m in the camera's frame\); R_world_to_cam must turn world axes into the "
                            r"camera's and center_world_m be in the 3D file's metres", message), message
    assert len(load_h36m(files["data_3d"], files["cameras_json"], ("S1",))) == 4 * T * len(ACTIONS["S1"])


def test_a_3d_file_with_sequences_the_protocol_cannot_use_is_refused(files, tmp_path):
    """One NaN failed in the metrics' SVD after the whole evaluation; 20 joints inside the model."""
    def poses_with(sequence):
        data = {s: dict(a) for s, a in files["poses"].items()}
        data["S1"]["Walking"] = sequence
        return data

    walking = files["poses"]["S1"]["Walking"]
    with_nan = walking.copy()
    with_nan[3, 5, 1] = np.nan
    cases = [(with_nan, "holds non-finite values"),
             (np.zeros((T, 20, 3), np.float32), "shape (7, 20, 3), not (frames, 17 or 32 joints, 3)"),
             (walking[..., :2], "shape (7, 32, 2)"),
             (walking[:0], "shape (0, 32, 3)"),
             ([[1.0, 2.0, 3.0]], "a list, not an array of numbers")]
    for index, (sequence, expected) in enumerate(cases):
        path = tmp_path / f"data_3d_{index}.npz"
        np.savez(path, positions_3d=poses_with(sequence))
        with pytest.raises(DatasetError) as error:
            load_h36m(path, files["cameras_json"], ("S1",))
        assert str(error.value).startswith(f"{path}: S1 'Walking': ") and expected in str(error.value), index


def test_a_2d_file_with_sequences_the_protocol_cannot_use_is_refused(files, tmp_path):
    """3 cameras failed with an IndexError, 16 joints inside the model, a NaN after the whole
    evaluation, a missing sequence as "error: Directions 1"."""
    walking = files["detections"]["S1"]["Walking"]
    with_nan = [c.copy() for c in walking]
    with_nan[2][1, 0, 0] = np.inf
    cases = [(walking[:3], "S1 'Walking': 3 cameras, not the 4 of Human3.6M"),
             ([c[:, :16] for c in walking],
              "S1 'Walking' camera 0: shape (5, 16, 2), not (frames, 17 joints, 2 or 3)"),
             (with_nan, "S1 'Walking' camera 2: holds non-finite values")]
    for index, (sequence, expected) in enumerate(cases):
        detections = {s: dict(a) for s, a in files["detections"].items()}
        detections["S1"]["Walking"] = sequence
        path = tmp_path / f"data_2d_{index}.npz"
        np.savez(path, positions_2d=detections)
        with pytest.raises(DatasetError) as error:
            load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=path)
        assert str(error.value).startswith(f"{path}: {expected}"), str(error.value)
    scores = {s: {a: [np.concatenate([c, np.ones(c.shape[:2] + (1,), c.dtype)], axis=2) for c in cams]
                  for a, cams in acts.items()} for s, acts in files["detections"].items()}
    np.savez(tmp_path / "with_scores.npz", positions_2d=scores)      # (T, 17, 3) with scores stays usable
    assert len(load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=tmp_path / "with_scores.npz"))
    detections = {s: dict(a) for s, a in files["detections"].items()}
    del detections["S1"]["Walking"]
    np.savez(tmp_path / "missing.npz", positions_2d=detections)
    with pytest.raises(KeyError, match=r"missing.npz: no S1 'Walking' \(a sequence of the 3D file\)"):
        load_h36m(files["data_3d"], files["cameras_json"], ("S1",), data_2d=tmp_path / "missing.npz")


def tiny_weights(tmp_path):
    import torch

    from cfi_pose_ros.model import CFIConfig, CFINet
    from cfi_pose_ros.weights import save_weights

    torch.manual_seed(0)
    return save_weights(CFINet(CFIConfig(dim=16, depth=1, heads=2)), tmp_path / "w" / "tiny.safetensors")


def test_evaluation_cli_refuses_bad_input_in_one_line_before_evaluating(files, tmp_path, monkeypatch, capsys):
    """An --out that is a file failed with FileExistsError after the whole evaluation; a NaN in
    the data with LinAlgError; a bad --batch-size, --threads or --stride deep in the run."""
    import sys

    from training.evaluate import main as evaluate

    common = ["evaluate", "--weights", str(tiny_weights(tmp_path)), "--data-3d", str(files["data_3d"]),
              "--cameras", str(files["cameras_json"]), "--subjects", "S1", "--threads", "1"]
    (tmp_path / "a_file").write_text("")
    # said as what it is (mkdir's "File exists" named no folder), a usage error as export's output under a file
    monkeypatch.setattr(sys, "argv", common + ["--out", str(tmp_path / "a_file")])
    with pytest.raises(SystemExit) as stop:
        evaluate()
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: --out {tmp_path / 'a_file'} is a file, not a "
                                                             f"folder: give a folder")
    with_nan = {s: dict(a) for s, a in files["poses"].items()}
    with_nan["S1"]["Walking"] = with_nan["S1"]["Walking"].copy()
    with_nan["S1"]["Walking"][0, 0, 0] = np.nan
    np.savez(tmp_path / "nan_3d.npz", positions_3d=with_nan)
    monkeypatch.setattr(sys, "argv", common + ["--data-3d", str(tmp_path / "nan_3d.npz"), "--out", str(tmp_path / "nan")])
    with pytest.raises(SystemExit) as stop:
        evaluate()
    assert str(stop.value).startswith(f"error: {tmp_path / 'nan_3d.npz'}: S1 'Walking': holds non-finite values"), \
        str(stop.value)
    for flag, value, rule in (("--batch-size", "0", ">= 1"), ("--batch-size", "-1", ">= 1"),
                              ("--threads", "-1", "in [1, 1024]"), ("--stride", "0", ">= 1")):
        monkeypatch.setattr(sys, "argv", common + [flag, value, "--out", str(tmp_path / "out")])
        with pytest.raises(SystemExit) as stop:
            evaluate()
        assert stop.value.code == 2
        assert f"argument {flag}: must be an integer {rule}, not {value}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluation_refuses_an_out_whose_results_are_directories_before_evaluating(files, tmp_path, monkeypatch,
                                                                                  capsys):
    """An --out holding a directory eval.json: the whole evaluation ran, then eval.md was replaced
    and eval.json could not be (not the pair written together)."""
    from training.evaluate import main as evaluate

    out = tmp_path / "out"
    (out / "eval.json").mkdir(parents=True)
    (out / "eval.md").write_text("earlier\n")
    monkeypatch.setattr(sys, "argv", ["evaluate", "--weights", str(tiny_weights(tmp_path)), "--data-3d",
                                      str(files["data_3d"]), "--cameras", str(files["cameras_json"]),
                                      "--subjects", "S1", "--threads", "1", "--out", str(out)])
    with pytest.raises(SystemExit) as stop:
        evaluate()
    assert str(stop.value) == (f"error: --out {out}: {out / 'eval.json'} is a directory, where the results "
                               f"are written; move it or choose another --out")
    assert (out / "eval.md").read_text() == "earlier\n" and "MPJPE" not in capsys.readouterr().out


def test_a_refused_evaluation_leaves_no_out_folder_it_made(files, tmp_path, monkeypatch):
    """--out is made before the evaluation (a bad one is found at once), and a run then refused for
    its subjects left it behind, empty: `outputs/eval` in the current folder with the default --out.
    An --out that was there before stays."""
    from training.evaluate import main as evaluate

    common = ["evaluate", "--weights", str(tiny_weights(tmp_path)), "--data-3d", str(files["data_3d"]),
              "--cameras", str(files["cameras_json"]), "--subjects", "S7", "--threads", "1"]
    (tmp_path / "there").mkdir()
    before = sorted(path.name for path in tmp_path.iterdir())
    for out in (tmp_path / "new" / "eval", tmp_path / "there" / "eval", tmp_path / "there"):
        monkeypatch.setattr(sys, "argv", common + ["--out", str(out)])
        with pytest.raises(SystemExit) as stop:
            evaluate()
        assert "subject S7 not in the 3D file" in str(stop.value)
        assert sorted(path.name for path in tmp_path.iterdir()) == before
    assert not list((tmp_path / "there").iterdir())


def test_a_batch_the_memory_cannot_hold_is_one_line_naming_the_flag(files, tmp_path):
    """`--batch-size 1000000000` lifts every pose in one pass: on 240,000 poses under a 4 GB
    address-space cap, a RuntimeError traceback from torch's allocator ("DefaultCPUAllocator:
    can't allocate memory") in the attention; the default batch lifts them in 7 s."""
    import subprocess

    rng = np.random.default_rng(0)
    poses = {"S1": {"Walking": (np.array([0, 0, 1.0]) + rng.normal(0, 0.4, (60000, 32, 3))).astype(np.float32)}}
    np.savez(tmp_path / "big_3d.npz", positions_3d=poses)
    probe = ("import resource, runpy, sys\n"
             "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
             "sys.argv[0] = 'evaluate'\n"
             "runpy.run_module('training.evaluate', run_name='__main__')\n")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-P", "-c", probe, "--weights", str(tiny_weights(tmp_path)),
                          "--data-3d", str(tmp_path / "big_3d.npz"), "--cameras", str(files["cameras_json"]),
                          "--subjects", "S1", "--threads", "1", "--batch-size", "1000000000", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith(
        "error: lifting 240000 poses at once (--batch-size 1000000000) needs more memory than there is"), \
        run.stderr[-2000:]
    assert not out.exists()


def test_a_cameras_file_nested_past_the_json_parser_s_depth_is_one_line(files, tmp_path, monkeypatch):
    """A cameras.json of 200,000 nested lists: a RecursionError traceback from json.load in
    training.evaluate (and training.train), where any other file that is not JSON is one line."""
    from training.evaluate import main as evaluate

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    monkeypatch.setattr(sys, "argv", ["evaluate", "--weights", str(tiny_weights(tmp_path)), "--data-3d",
                                      str(files["data_3d"]), "--cameras", str(deep), "--subjects", "S1",
                                      "--threads", "1", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        evaluate()
    assert str(stop.value).startswith(f"error: {deep}: not a cameras file (maximum recursion depth exceeded"), \
        str(stop.value)


def test_evaluation_refuses_a_subject_named_twice(files, tmp_path, monkeypatch, capsys):
    """`--subjects S1 S1` lifted S1's frames twice: "frames" 224 for S1's 112, the title and the
    --record key S1+S1, each mean over the same frames counted twice, exit 0."""
    from training.evaluate import main as evaluate

    monkeypatch.setattr(sys, "argv", ["evaluate", "--weights", str(tiny_weights(tmp_path)), "--data-3d",
                                      str(files["data_3d"]), "--cameras", str(files["cameras_json"]),
                                      "--subjects", "S1", "S11", "S1", "--threads", "1", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        evaluate()
    assert stop.value.code == 2
    assert "error: --subjects: S1 is named twice" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluation_results_the_disk_cannot_hold_end_in_one_line_with_the_earlier_ones_kept(
        files, tmp_path, monkeypatch, file_size_limit):
    """eval.json the disk could not hold was an OSError traceback after the whole evaluation, with
    eval.json cut to what fitted (the earlier run's results lost) beside the new run's eval.md; a
    --record that could not write the weights' JSON was a traceback too."""
    import errno
    import os

    import training.evaluate as evaluate_module

    out = tmp_path / "out"
    common = ["evaluate", "--weights", str(tiny_weights(tmp_path)), "--data-3d", str(files["data_3d"]),
              "--cameras", str(files["cameras_json"]), "--subjects", "S1", "--threads", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", common)
    evaluate_module.main()
    before = {name: (out / name).read_bytes() for name in ("eval.md", "eval.json")}
    assert len(before["eval.md"]) < 400 < len(before["eval.json"])
    monkeypatch.setattr(sys, "argv", common + ["--stride", "2"])     # other numbers: a changed file shows
    with file_size_limit(400), pytest.raises(SystemExit) as stop:
        evaluate_module.main()
    assert str(stop.value) == f"error: could not write the evaluation's results {out / 'eval.json'}: File too large"
    assert {name: (out / name).read_bytes() for name in ("eval.md", "eval.json")} == before
    assert sorted(path.name for path in out.iterdir()) == ["eval.json", "eval.md"]     # no partial file left

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(evaluate_module, "record_metrics", disk_full)
    monkeypatch.setattr(sys, "argv", common + ["--record"])
    with pytest.raises(SystemExit) as stop:
        evaluate_module.main()
    assert str(stop.value) == (f"error: could not write --record's means into {tmp_path / 'w' / 'tiny.json'}: "
                               f"No space left on device (eval.md and eval.json were written)")


# --- the demo clip ---

def clip_files(tmp_path, frames: int = 300, actions=("Walking 1", "Greeting")) -> list[str]:
    rng = np.random.default_rng(1)
    poses = {"S9": {a: (np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.3, (frames, 32, 3))).astype(np.float32)
                    for a in actions}}
    np.savez(tmp_path / "clip_3d.npz", positions_3d=poses)
    write_cameras(tmp_path / "clip_cameras.json", {"S9": camera_entries(9)})
    return ["--data-3d", str(tmp_path / "clip_3d.npz"), "--cameras", str(tmp_path / "clip_cameras.json")]


def test_demo_clip_names_the_file_it_wrote(tmp_path, capsys):
    """numpy adds .npz to a name without it: "wrote clip" named a file that was not there."""
    from training.make_demo_clip import main as make_demo_clip

    make_demo_clip(clip_files(tmp_path) + ["--out", str(tmp_path / "out" / "clip")])
    written = tmp_path / "out" / "clip.npz"
    assert capsys.readouterr().out.startswith(f"wrote {written}: 150 frames, 2 people")
    with np.load(written) as clip:
        assert clip["pixels"].shape == (150, 2, 17, 2) and clip["truth_camera_m"].shape == (150, 2, 17, 3)
    assert sorted(p.name for p in written.parent.iterdir()) == ["clip.npz"]     # no temporary file left


def test_demo_clip_from_data_without_its_sequences_is_one_line(tmp_path):
    """A KeyError traceback; too short a sequence failed in np.stack."""
    from training.make_demo_clip import main as make_demo_clip

    for frames, actions, expected in ((300, ("Walking 1",), "no S9 'Greeting', which the clip is made of"),
                                      (100, ("Walking 1", "Greeting"), "S9 'Walking 1' has 100 frames, the clip "
                                                                       "needs 299")):
        args = clip_files(tmp_path, frames, actions)
        with pytest.raises(SystemExit) as stop:
            make_demo_clip(args + ["--out", str(tmp_path / "clip.npz")])
        assert str(stop.value) == f"error: {tmp_path / 'clip_3d.npz'}: {expected}"
        assert not (tmp_path / "clip.npz").exists()


def test_a_missing_data_file_says_where_the_data_can_be_given(tmp_path):
    """An installed package looks for Human3.6M beside the install, not the source checkout: the
    bare "No such file" named a path the user never chose, and not how to choose one."""
    for load, name in ((load_cameras, "cameras.json"), (load_poses_3d, "data_3d_h36m.npz")):
        with pytest.raises(DatasetError) as error:
            load(tmp_path / name)
        text = str(error.value)
        assert text.startswith(f"{tmp_path / name}: cannot read") and "--data-3d" in text and "CFI_H36M_DIR" in text
    unreadable = tmp_path / "cameras.json"
    unreadable.mkdir()                     # there, but not a file: no hint about where data is looked for
    with pytest.raises(DatasetError) as error:
        load_cameras(unreadable)
    assert "CFI_H36M_DIR" not in str(error.value)


@pytest.mark.parametrize("flag", ["--data-3d", "--cameras", "--data-2d"])
def test_a_fifo_named_as_a_data_file_is_one_line_not_a_wait_for_a_writer(flag, files, tmp_path):
    """A FIFO as --data-3d, --cameras or --data-2d hung training.train and training.evaluate in
    open() (the auditor's runs still blocked after 20 s): the loaders now open through
    open_regular_file, as the weights loader does, and name what the path is."""
    import os

    from conftest import no_longer_than
    from training.evaluate import main as evaluate
    from training.train import main as train

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = {"--data-3d": str(files["data_3d"]), "--cameras": str(files["cameras_json"]),
            "--data-2d": str(files["data_2d"]), flag: str(fifo)}
    expected = rf"^{re.escape(str(fifo))}: a FIFO, not an? {'cameras' if flag == '--cameras' else 'npz dataset'} file$"
    data_flags = [item for pair in data.items() for item in pair]
    weights = str(tiny_weights(tmp_path))
    for name, run in (("training.train", lambda: train(
                          data_flags + ["--train-subjects", "S1", "--test-subjects", "S1", "--dim", "16", "--depth",
                                        "1", "--heads", "4", "--threads", "1", "--compile", "off", "--amp", "off",
                                        "--out", str(tmp_path / "run")])),
                      ("training.evaluate", lambda: evaluate(
                          data_flags + ["--weights", weights, "--subjects", "S1", "--threads", "1",
                                        "--out", str(tmp_path / "eval")]))):
        with no_longer_than(20, f"{name} {flag} {fifo}"), pytest.raises(DatasetError, match=expected):
            run()


def npz_with_member(path: Path, member: bytes, compression=None) -> Path:
    """``path`` holding ``positions_3d.npy`` = ``member`` stored as is; ``compression`` (a zip
    method number) or ``"encrypted"`` patched into its local and central headers afterwards."""
    import struct
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("positions_3d.npy", member)
    data = bytearray(path.read_bytes())
    for signature, flags_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = data.index(signature)
        if compression == "encrypted":
            data[at + flags_at] |= 1
        elif compression is not None:
            data[at + method_at:at + method_at + 2] = struct.pack("<H", compression)
    path.write_bytes(bytes(data))
    return path


def pickled_member(pickle_bytes: bytes) -> bytes:
    """A .npy of a 0-d object array whose pickle is ``pickle_bytes``."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    return header.getvalue() + pickle_bytes


def a_good_member() -> bytes:
    import io

    member = io.BytesIO()
    np.save(member, np.array({"S1": {"Walking": np.zeros((2, 17, 3))}}, dtype=object), allow_pickle=True)
    return member.getvalue()


@pytest.mark.parametrize("member, compression, reason", [
    (b"hello world, not npy", None, "the magic string is not correct"),                  # ValueError
    (b"", None, "EOF: reading magic string"),                                           # ValueError
    (b"\x93NUMPY\x09\x00\x10\x00{'descr': 5}    \n", None, "'positions_3d' is .npy format version 9.0"),
    (pickled_member(b"\x80\x02cnumpy\ndtype\nX\x03\x00\x00\x00zzz\x85R."), None,       # TypeError
     "data type 'zzz' not understood"),
    (pickled_member(b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nK\x01\x85R."), None,  # TypeError
     "_reconstruct() missing 2 required positional arguments"),
    (pickled_member(b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
                    b"(K\x01K\x05\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x85R\x89C\x00tb."), None,
     "an array of 5 float64 values pickled with 0 bytes"),                              # UnpicklingError
    (pickled_member(b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x0004\x85R."), None,           # SyntaxError
     "leading zeros in decimal integer literals are not permitted"),
    (a_good_member(), 99, "That compression method is not supported"),                  # NotImplementedError
    (a_good_member(), "encrypted", "is encrypted"),                                     # RuntimeError
], ids=["npy_magic", "empty_member", "npy_version_9", "unknown_dtype", "reconstruct_args", "setstate_size",
        "dtype_04", "compression_99", "encrypted"])
def test_a_malformed_npz_is_a_dataset_error_naming_the_file_and_why(tmp_path, member, compression, reason):
    """ValueError, TypeError, NotImplementedError and RuntimeError from numpy, the unpickler and
    zipfile went past train.py's one-line errors as tracebacks."""
    path = npz_with_member(tmp_path / "data_3d_h36m.npz", member, compression)
    with pytest.raises(DatasetError) as error:
        load_poses_3d(path)
    text = str(error.value)
    assert text.startswith(f"{path}: ") and reason in text and "\n" not in text, text


def pickled_array(shape: bytes, dtype_name: bytes, dtype_state: bytes, data: bytes) -> bytes:
    """Protocol 2 opcodes of numpy's pickle of an ndarray: ``_reconstruct(ndarray, (0,), b'b')`` given
    the state ``(1, shape, dtype(dtype_name) with dtype_state, False, data)``."""
    import struct

    dtype = b"cnumpy\ndtype\nX" + struct.pack("<I", len(dtype_name)) + dtype_name + b"\x89\x88\x87R" + dtype_state + b"b"
    return (b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            b"(K\x01" + shape + dtype + b"\x89" + data + b"tb")


NO_SHAPE, ONE_ITEM = b")", b"K\x01\x85"                                    # (), (1,)
MINUS_ONE = b"J\xff\xff\xff\xff"
OBJECT_STATE = b"(K\x03X\x01\x00\x00\x00|NNN" + MINUS_ONE + MINUS_ONE + b"K\x3ft"  # (3, '|', None x3, -1, -1, 63)


# Each was a SIGSEGV in numpy's dtype.__setstate__ or ndarray.__setstate__ (found among 145,000 randomly
# corrupted data_3d files); a subprocess, so that the crash is a failed test, not the end of the run.
@pytest.mark.parametrize("member, reason", [
    # a NONE of the f4 dtype's state lost: numpy read the 6-entry form and took -1 for its fields dict
    (pickled_array(ONE_ITEM, b"f4", b"(K\x03X\x01\x00\x00\x00<N" + MINUS_ONE + MINUS_ONE + b"K\x00t", b"C\x04\x00\x00\x00\x00"),
     "a dtype 'f4' whose pickled state is not numpy's for it"),
    # 'O8' become 'M8' and keeping the object flags: datetimes taken for object pointers
    (pickled_array(NO_SHAPE, b"M8", OBJECT_STATE, b"]}a"), "a dtype 'M8', not a number or object type"),
    # the 0-d object array's APPEND become POP: one item read from an empty list
    (pickled_array(NO_SHAPE, b"O8", OBJECT_STATE, b"]"), "an object array of 1 items pickled with 0 items"),
], ids=["dtype_state_short", "datetime_with_object_flags", "object_array_without_items"])
def test_a_corrupted_pickle_that_crashed_numpy_is_a_dataset_error(tmp_path, member, reason):
    import subprocess

    path = npz_with_member(tmp_path / "data_3d_h36m.npz", pickled_member(b"\x80\x02" + member + b"."))
    load = ("import sys\nfrom training.h36m import DatasetError, load_poses_3d\ntry:\n    load_poses_3d(sys.argv[1])\n"
            "except DatasetError as error:\n    print(error)\n")
    run = subprocess.run([sys.executable, "-P", "-c", load, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"exit status {run.returncode}: {run.stderr}"
    assert run.stdout == f"{path}: not a dataset file this loader reads ({reason})\n", run.stdout + run.stderr


def test_a_good_pickle_in_each_numpy_form_loads(tmp_path):
    """What the stand-ins for numpy's reconstruction must keep: the values of a big-endian array (in the
    machine's byte order, as numpy's unpickling gives it), Fortran order, numeric
    kinds, object arrays holding arrays, arrays shared in the pickle, and protocol 5's _frombuffer."""
    import io
    import pickle

    from training.h36m import load_pickled_entry

    shared = np.arange(6, dtype=">f8").reshape(2, 3)
    nested = np.empty(2, dtype=object)
    nested[0], nested[1] = np.zeros(2, np.float32), {"x": [np.ones(1, np.int16)]}
    poses = {"S1": {"a": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)), "b": shared,
                    "c": [shared, np.array([True, False]), np.array([1 + 2j], np.complex64), np.zeros((0, 17, 3))],
                    "d": nested}}
    for protocol in (3, 4, 5):         # protocol 2 pickles bytes with _codecs.encode, refused as before
        member = io.BytesIO()
        np.lib.format.write_array_header_1_0(member, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array(poses, dtype=object), member, protocol=protocol)
        path = npz_with_member(tmp_path / f"p{protocol}.npz", member.getvalue())
        got = load_pickled_entry(path, "positions_3d")["S1"]
        assert got["a"].flags.f_contiguous and np.array_equal(got["a"], poses["S1"]["a"])
        assert got["b"].dtype == np.float64 and np.array_equal(got["b"], shared) and got["c"][0] is got["b"]
        for read, written in zip(got["c"][1:], poses["S1"]["c"][1:]):
            assert read.dtype == written.dtype and read.shape == written.shape and np.array_equal(read, written)
        assert got["d"].dtype == object and got["d"].shape == (2,) and np.array_equal(got["d"][0], nested[0])
        assert np.array_equal(got["d"][1]["x"][0], nested[1]["x"][0]) and got["a"].flags.writeable


def test_the_training_cli_names_a_malformed_npz_in_one_line(tmp_path):
    import subprocess
    import sys

    path = npz_with_member(tmp_path / "data_3d_h36m.npz", a_good_member(), 99)
    run = subprocess.run([sys.executable, "-P", "-m", "training.train", "--data-3d", str(path), "--cameras",
                          str(tmp_path / "cameras.json"), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stderr == (f"error: {path}: not a dataset file this loader reads (That compression method is "
                          f"not supported)\n"), run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_evaluation_of_a_lifter_that_collapsed_to_a_point_reports_its_error():
    """A network whose head outputs the same point for every joint (a dead or diverged run): its
    P-MPJPE is each target's spread about its centroid, not a NaN table, and not the
    LinAlgError ('SVD did not converge') that ended the evaluation, and the trainer's per-epoch one."""
    from cfi_pose_ros.model import CFIConfig, CFINet
    from training.evaluate import evaluate_pose_set
    import torch
    from training.h36m import PoseSet
    model = CFINet(CFIConfig(dim=32, depth=1, heads=4)).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    rng = np.random.default_rng(0)
    targets = rng.normal(0, 0.3, (6, 17, 3)).astype(np.float32)
    targets -= targets[:, :1]
    poses = PoseSet(rng.uniform(-0.5, 0.5, (6, 17, 2)).astype(np.float32), targets,
                    np.array([0, 0, 0, 5, 5, 5], np.int16), np.zeros(6, np.int16), np.zeros(6, np.int8), ("S9",))
    result = evaluate_pose_set(model, poses)
    spread = 1000 * np.linalg.norm(targets - targets.mean(axis=1, keepdims=True), axis=-1).mean(axis=-1)
    per_action = result["p_mpjpe"]["per_action"]
    assert per_action == pytest.approx({ACTION_CLASSES[0]: spread[:3].mean(), ACTION_CLASSES[5]: spread[3:].mean()},
                                       rel=1e-5)
    assert result["p_mpjpe"]["mean_over_actions"] == pytest.approx((spread[:3].mean() + spread[3:].mean()) / 2,
                                                                   rel=1e-5)
    # root-aligned MPJPE: every predicted joint sits on the pelvis
    assert result["mpjpe"]["mean_over_frames"] == pytest.approx(
        1000 * np.linalg.norm(targets, axis=-1).mean(), rel=1e-5)
