"""Evaluate weights on Human3.6M the way the literature reports it.

MPJPE and P-MPJPE (mm) per action class, each the frame average over the
chosen subjects and all four cameras, and their unweighted mean ("Avg"),
written as a Markdown table in the layout of the paper's Table 2 and as JSON.

By default the lifter sees the 2D as the lift node sees a camera's keypoints with its CameraInfo:
each camera's pixels moved to the reference camera's view (``camera.reference_view``) and people
outside the training data's size range zoomed into it (``camera.clamp_person_scale``);
``--image-view --no-scale-clamp`` is the literature's input (pixels over the image's width).

    python -m training.evaluate --weights cfi_pose_ros/weights/cfi_h36m.safetensors \\
        --subjects S9 --out outputs/eval_s9
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path

if __name__ == "__main__":
    # a stop signal while torch loads below ends the command in one line, 130 or 143, until main()
    # takes over (it was a KeyboardInterrupt traceback from inside an import)
    from cfi_pose_ros.interrupts import exit_quietly_on_stop_signals
    exit_quietly_on_stop_signals("evaluate")

import numpy as np
import torch
from tqdm import tqdm

from cfi_pose_ros.camera import (H36M_PELVIS_ANGLES_DEG, CameraIntrinsics, clamp_person_scale, denormalize_screen,
                                 lifter_input_in_reference_view, square_pixel_camera, undistort_pixels)
from cfi_pose_ros.metrics import PerClassError, mpjpe, p_mpjpe
from cfi_pose_ros.skeleton import H36M_17, H36M_LOWER_BODY
from cfi_pose_ros.weights import DEFAULT_WEIGHTS, WeightsError, load_weights, record_metrics, resolve_weights, \
    weights_paths
from cfi_pose_ros.arguments import (EachOnce, directory_name, folders_to_make, not_a_folder, output_directory,
                                   positive_int, remove_empty)
from cfi_pose_ros.files import WriteError, write_error, write_together
from cfi_pose_ros.interrupts import (StopSignalsInterrupt, interrupt_signal, interrupted_exit_code,
                                    stop_signals_held)
from training.augment import flip_poses
from training.h36m import ACTION_CLASSES, H36MCamera, PoseSet, load_cameras, load_h36m
from training.speed import keep_freed_memory, thread_count

# Column headings of the paper's tables.
ACTION_HEADINGS = {"Directions": "Dir.", "Discussion": "Disc.", "Eating": "Eat", "Greeting": "Greet",
                   "Phoning": "Phone", "Photo": "Photo", "Posing": "Pose", "Purchases": "Pur.",
                   "Sitting": "Sit", "SittingDown": "SitD.", "Smoking": "Smoke", "Waiting": "Wait",
                   "WalkDog": "WalkD.", "Walking": "Walk", "WalkTogether": "WalkT."}
# The Human3.6M files: $CFI_H36M_DIR, else ../shared/data/h36m beside the repository.
DEFAULT_DATA = Path(os.environ.get("CFI_H36M_DIR",
                                   Path(__file__).resolve().parents[1].parent / "shared" / "data" / "h36m"))


def node_view(pixels: np.ndarray, intrinsics: CameraIntrinsics, pelvis_angles_deg=H36M_PELVIS_ANGLES_DEG
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs_2d, rotations)``: people's pixels ``(N, 17, 2)`` of a Human3.6M camera as the lift
    node gives them to the lifter with that camera's K (square pixels, then
    :func:`cfi_pose_ros.camera.lifter_input_in_reference_view` with the weights' ``pelvis_angles_deg``),
    and each person's rotation (camera -> view) that turns the lifted pose back. The pixels keep
    Human3.6M's lens distortion, as the literature's GT 2D does (its tangential model is not
    CameraInfo's plumb_bob)."""
    square, _ = square_pixel_camera(intrinsics.matrix, (intrinsics.width, intrinsics.height))
    return lifter_input_in_reference_view(undistort_pixels(pixels, intrinsics.matrix, None, square), square,
                                          pelvis_angles_deg)


def reference_view_inputs(poses: PoseSet, cameras: dict[str, list[H36MCamera]],
                          pelvis_angles_deg=H36M_PELVIS_ANGLES_DEG) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs_2d, rotations)``: :func:`node_view` of every pose of ``poses``."""
    inputs = np.empty_like(poses.inputs_2d)
    rotations = np.empty((len(poses), 3, 3))
    for subject_index, subject in enumerate(poses.subjects):
        for camera_index, camera in enumerate(cameras[subject]):
            rows = (poses.subject_ids == subject_index) & (poses.camera_ids == camera_index)
            if not rows.any():
                continue
            k = camera.intrinsics
            pixels = denormalize_screen(poses.inputs_2d[rows], k.width, k.height)
            inputs[rows], rotations[rows] = node_view(pixels, k, pelvis_angles_deg)
    return inputs, rotations


# People per forward pass when evaluating. Not more: at 4096 the D=256 model's activations are
# 70-290 MB each, past the largest block glibc's malloc keeps for reuse (32 MiB), so every one was
# a fresh mapping the kernel zeroed page by page: lifting 16384 poses on 2 threads took 35 s, 28
# of its 68 CPU-seconds in the kernel (15 M page faults); at 512, 22 s (and 18 s with
# keep_freed_memory, no kernel time left; a development script, this machine, quiet). The same
# outputs, to float rounding: each pose is lifted on its own.
PREDICT_BATCH = 512
# What an evaluation writes into --out, together (write_results).
RESULT_FILES = ("eval.md", "eval.json")


@torch.no_grad()
def predict(model: torch.nn.Module, inputs_2d: np.ndarray, batch_size: int = PREDICT_BATCH,
            flip_test: bool = False, progress: bool = False,
            person_scale_range: tuple[float, float] | None = None,
            rotations: np.ndarray | None = None, label: str = "predict") -> np.ndarray:
    """Lift ``(N, 17, 2)`` -> ``(N, 17, 3)``; with ``flip_test`` average with the mirrored input;
    with ``person_scale_range`` people outside it zoomed into it first, as the node does
    (:func:`cfi_pose_ros.camera.clamp_person_scale`); with ``rotations`` (camera -> view, see
    :func:`reference_view_inputs`) each pose turned back into its camera's axes. Each pose is
    pelvis-centred, as the node publishes it (``pipeline``): the image-view numbers and the
    trainer's per-epoch ones had included the predicted pelvis' residual (1.2 mm mean, 12 mm at
    most on S9), the reference-view numbers not. ``label`` names the pass on the progress bar."""
    model.eval()
    if person_scale_range is not None:
        inputs_2d = clamp_person_scale(inputs_2d, person_scale_range)
    device = next(model.parameters()).device
    outputs = []
    for start in tqdm(range(0, len(inputs_2d), batch_size), disable=not progress, desc=label, unit="batch"):
        batch = torch.from_numpy(np.ascontiguousarray(inputs_2d[start:start + batch_size])).to(device)
        pred = model(batch)
        if flip_test:
            pred = (pred + flip_poses(model(flip_poses(batch)))) / 2
        outputs.append(pred.float().cpu().numpy())
    predicted = np.concatenate(outputs)
    predicted = predicted - predicted[:, :1]
    if rotations is not None:
        predicted = (predicted @ rotations).astype(np.float32)
    return predicted


def with_detector_noise(poses: PoseSet, std: float, seed: int = 0) -> PoseSet:
    """A copy of ``poses`` whose 2D input carries fixed Gaussian jitter of ``std`` (normalised
    units: 0.01 is 5 px on a 1000 px wide image), the same draw every time for a seed."""
    noise = np.random.default_rng(seed).normal(0.0, std, poses.inputs_2d.shape).astype(np.float32)
    return dataclasses.replace(poses, inputs_2d=poses.inputs_2d + noise)


def with_joints_missing(poses: PoseSet, joint_names: list[str] | tuple[str, ...]) -> PoseSet:
    """A copy of ``poses`` whose 2D input lacks these joints, filled as the node fills a joint it has
    no detection for (:meth:`JointLayout.fill_missing`, on the pixels, an affine map of these
    normalised coordinates): a person the image's bottom edge cuts off at the waist has no
    pelvis, hips, knees or ankles."""
    valid = np.ones(poses.inputs_2d.shape[:2], bool)
    valid[:, [H36M_17.index(name) for name in joint_names]] = False
    return dataclasses.replace(poses, inputs_2d=H36M_17.fill_missing(poses.inputs_2d, valid).astype(np.float32))


def evaluate_pose_set(model: torch.nn.Module, poses: PoseSet, flip_test: bool = False,
                      batch_size: int = PREDICT_BATCH, progress: bool = False,
                      person_scale_range: tuple[float, float] | None = None,
                      cameras: dict[str, list[H36MCamera]] | None = None,
                      pelvis_angles_deg=H36M_PELVIS_ANGLES_DEG, label: str = "predict") -> dict:
    """Per-action MPJPE / P-MPJPE in mm and the unweighted mean over actions; with ``cameras`` the
    lifter sees the 2D in the reference camera's view (:func:`reference_view_inputs`); with
    ``progress`` a bar named ``label``."""
    inputs, rotations = reference_view_inputs(poses, cameras, pelvis_angles_deg) if cameras else \
        (poses.inputs_2d, None)
    predicted = predict(model, inputs, batch_size, flip_test, progress, person_scale_range, rotations, label)
    labels = np.array(ACTION_CLASSES)[poses.action_ids]
    result = {}
    for name, fn in (("mpjpe", mpjpe), ("p_mpjpe", p_mpjpe)):
        metric = PerClassError(name, fn)
        metric.update(predicted, poses.targets_3d, labels)
        per_class = metric.per_class()
        result[name] = {"per_action": {a: per_class[a] for a in ACTION_CLASSES if a in per_class},
                        "mean_over_actions": metric.mean_over_classes(),
                        "mean_over_frames": metric.mean_over_poses()}
    result["frames"] = len(poses)
    return result


def markdown_table(result: dict, title: str) -> str:
    actions = [a for a in ACTION_CLASSES if a in result["mpjpe"]["per_action"]]
    header = "| " + title + " | " + " | ".join(ACTION_HEADINGS[a] for a in actions) + " | Avg |"
    lines = [header, "|" + "---|" * (len(actions) + 2)]
    for name, label in (("mpjpe", "MPJPE (mm)"), ("p_mpjpe", "P-MPJPE (mm)")):
        row = result[name]
        cells = [f"{row['per_action'][a]:.1f}" for a in actions]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {row['mean_over_actions']:.1f} |")
    return "\n".join(lines) + "\n"


def error_text(error: Exception) -> str:
    """An error as the CLIs print it: a KeyError's own message, not its repr in quotes."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), type=resolve_weights,
                        help="weights file (.safetensors with its .json), or a packaged one's name (cfi_h36m_d128)")
    parser.add_argument("--data-3d", default=str(DEFAULT_DATA / "data_3d_h36m.npz"))
    parser.add_argument("--cameras", default=str(DEFAULT_DATA / "cameras.json"))
    parser.add_argument("--data-2d", default=None,
                        help="detected 2D keypoints (VideoPose3D positions_2d npz); GT 2D when absent")
    parser.add_argument("--subjects", nargs="+", default=["S9"], action=EachOnce)
    parser.add_argument("--stride", type=positive_int, default=1, help="frame stride (1 = all frames, the protocol)")
    parser.add_argument("--flip-test", action="store_true", help="test-time flip augmentation")
    parser.add_argument("--no-scale-clamp", action="store_true",
                        help="lift people as they are; by default those smaller or larger than the "
                             "training data's are zoomed into its range first, as the node does")
    parser.add_argument("--image-view", action="store_true",
                        help="lift the pixels over each image's width (the literature's input); by default "
                             "each camera's are moved to the reference camera's view first, as the node does "
                             "with a CameraInfo")
    parser.add_argument("--missing-joints", nargs="+", default=[], choices=H36M_17.joint_names, metavar="JOINT",
                        help="lift without these 2D joints, filled as the node fills a joint it has no detection "
                             "for (a person seen from the waist up: pelvis right_hip left_hip right_knee left_knee "
                             "right_ankle left_ankle); the error is still over all 17 joints")
    parser.add_argument("--batch-size", type=positive_int, default=PREDICT_BATCH,
                        help="poses per forward pass (larger ones cost page faults, and memory: see PREDICT_BATCH)")
    parser.add_argument("--threads", type=thread_count, default=None, help="CPU threads for torch (1 to 1024)")
    parser.add_argument("--out", type=directory_name, default="outputs/eval",
                        help="directory for eval.md and eval.json")
    parser.add_argument("--record", action="store_true",
                        help="also write the means into the weights' JSON (metrics.<record_name>), "
                             "as done for the shipped weights")
    args = parser.parse_args(argv)
    if set(args.missing_joints) == set(H36M_17.joint_names):
        # with none seen, fill_missing has nothing to fill from and leaves the 2D as it is: the
        # lifter was given every joint, and --record wrote its means as "without" all 17
        parser.error("--missing-joints: at least one joint must stay, not all 17 (with none seen the lifter "
                     "would be given them all)")
    problem = not_a_folder(args.out)
    if problem:             # a usage error, as training.train's and export's
        parser.error(problem)
    made = folders_to_make(args.out)
    try:
        return run(args, argv)
    except BaseException:
        # --out is made before the evaluation (a bad one found at once); a run refused or stopped
        # after that left it behind, empty (`outputs/eval` in the current folder by default)
        remove_empty(made)
        raise


def run(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """``main`` once its arguments are checked."""
    if argv is not None:        # called from Python: a signal is the caller's to handle
        return write_results(args, *evaluate_command(args, argv))
    written = False
    try:
        with StopSignalsInterrupt("evaluate"):
            evaluated = evaluate_command(args, argv)
            with stop_signals_held():       # eval.md, eval.json and --record's means: all or none
                result = write_results(args, *evaluated)
                written = True
    # --record of weights saved over since they were measured; results the disk cannot hold
    except (WeightsError, WriteError) as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt as interrupt:
        print(f"evaluate: interrupted by {interrupt_signal(interrupt).name}; "
              + ("its results were written first" if written else "nothing written"), file=sys.stderr)
        raise SystemExit(interrupted_exit_code(interrupt)) from None
    return result


def evaluate_command(args: argparse.Namespace, argv: list[str] | None) -> tuple[dict, Path]:
    """What ``main`` does once its arguments are parsed, up to writing: the result, and the folder
    (made before the evaluation: a bad --out failed only after it, 11 min on S9)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()         # each batch's activations reused, not faulted in again

    try:
        out = output_directory(args.out)
        for name in RESULT_FILES:       # found only after the evaluation, with eval.md already replaced
            if (out / name).is_dir():
                raise ValueError(f"--out {out}: {out / name} is a directory, where the results are written; "
                                 f"move it or choose another --out")
        model, info = load_weights(args.weights)
        if args.record:
            check_record_writable(args.weights)
        poses = load_h36m(args.data_3d, args.cameras, tuple(args.subjects), args.data_2d, args.stride)
        if args.missing_joints:
            poses = with_joints_missing(poses, args.missing_joints)
        cameras = None if args.image_view else load_cameras(args.cameras)
    except (WeightsError, KeyError, ValueError, OSError) as error:   # bad --out, weights, subjects or files
        if argv is not None:
            raise
        raise SystemExit(f"error: {error_text(error)}") from None
    scale_range = None if args.no_scale_clamp else info.input_domain.person_scale_range
    try:
        result = evaluate_pose_set(model, poses, args.flip_test, args.batch_size, progress=True,
                                   person_scale_range=scale_range, cameras=cameras,
                                   pelvis_angles_deg=info.input_domain.pelvis_angles_deg)
    except (MemoryError, RuntimeError) as error:
        # torch's allocator raises RuntimeError ("DefaultCPUAllocator: can't allocate memory"): a
        # --batch-size of 10**9 lifted every pose in one pass, a traceback under a memory cap
        if argv is not None or not (isinstance(error, MemoryError) or "allocate memory" in str(error)):
            raise
        raise SystemExit(f"error: lifting {min(args.batch_size, len(poses))} poses at once (--batch-size "
                         f"{args.batch_size}) needs more memory than there is; give a smaller --batch-size "
                         f"(default {PREDICT_BATCH})") from None
    result.update(weights=str(args.weights), subjects=args.subjects, stride=args.stride,
                  input_2d=args.data_2d or "ground truth", flip_test=args.flip_test,
                  missing_joints=args.missing_joints,
                  person_scale_range=scale_range, view="image" if args.image_view else "reference camera",
                  tensors_sha256=info.sha256,       # what was measured: --record refuses other tensors
                  command="python -m training.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv))
    return result, out


def write_results(args: argparse.Namespace, result: dict, out: Path) -> dict:
    """eval.md and eval.json in ``out``, the table printed, and with --record the means in the
    weights' JSON. ``WriteError`` where the disk cannot hold them: eval.md and eval.json are then
    both as they were (they were written in place, and eval.json the disk could not hold was cut,
    an earlier run's results lost, beside the new eval.md, in an OSError traceback)."""
    title = f"{'+'.join(args.subjects)}, {'GT' if not args.data_2d else 'detected'} 2D"
    table, record = markdown_table(result, title), json.dumps(result, indent=2) + "\n"
    write_together("the evaluation's results", {out / "eval.md": lambda partial: partial.write_text(table),
                                                out / "eval.json": lambda partial: partial.write_text(record)})
    print(markdown_table(result, title))
    if args.record:
        name = record_name(args.subjects, args.data_2d is not None, args.stride, args.flip_test,
                           result["person_scale_range"] is not None, not args.image_view, args.missing_joints)
        try:
            record_metrics(args.weights, name, {"mpjpe_mm": result["mpjpe"]["mean_over_actions"],
                                                "p_mpjpe_mm": result["p_mpjpe"]["mean_over_actions"],
                                                "frames": result["frames"], "command": result["command"]},
                           result["tensors_sha256"])
        except OSError as error:        # the JSON is replaced whole or left as it was
            written = write_error("--record's means into", weights_paths(args.weights)[1], error)
            raise WriteError(f"{written} (eval.md and eval.json were written)") from error
        print(f"recorded as metrics.{name} in the JSON of {args.weights}")
    return result


def check_record_writable(weights: str | Path) -> None:
    """``--record`` writes the weights' JSON anew beside it (a partial file renamed over it): refuse,
    before the evaluation, a folder that cannot be written (it failed with an OSError traceback
    only after the whole evaluation)."""
    _, config_path = weights_paths(weights)
    if not os.access(config_path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"--record: {config_path.parent} is not writable, so the means cannot be written into "
                         f"{config_path.name}; leave out --record, or copy the weights (.safetensors and .json) "
                         f"to a folder you can write")


def record_name(subjects: list[str], detected_2d: bool, stride: int | None = None, flip_test: bool = False,
                scale_clamp: bool = True, reference_view: bool = False, missing_joints=()) -> str:
    """``S9_gt2d_all_frames_flip_test`` and the like: what was measured, as a key of the weights'
    ``metrics`` (without a stride: the trainer's own evaluation, ``S9_gt2d``); ``_reference_view``:
    in the reference camera's view, as the node lifts with a CameraInfo; ``_without_<joints>``: with
    those 2D joints missing (``_without_lower_body``: pelvis, hips, knees and ankles)."""
    parts = ["+".join(subjects), "detected2d" if detected_2d else "gt2d"]
    if stride is not None:
        parts.append("all_frames" if stride == 1 else f"stride{stride}")
    missing = sorted(set(missing_joints), key=H36M_17.index)
    without = ["without_" + ("lower_body" if tuple(missing) == H36M_LOWER_BODY else "_".join(missing))] if missing else []
    return "_".join(parts + (["flip_test"] if flip_test else []) + ([] if scale_clamp else ["no_scale_clamp"])
                    + (["reference_view"] if reference_view else []) + without)


def cli() -> int:
    """The ``cfi-evaluate`` command (setup.py): ``main`` returns the evaluation's record, and the
    wrapper setuptools writes hands what it gets to ``sys.exit``, which printed that dict and
    exited 1 after a run that had succeeded."""
    main()
    return 0


if __name__ == "__main__":
    main()
