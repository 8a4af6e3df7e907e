"""Train the CFI lifter on Human3.6M (or synthetic poses).

Defaults are the paper's recipe (sec. 4.2: Adam, lr 1e-3 decayed by 0.95 per
epoch, 20 epochs, batch 512, L_d=3, D=512, H=8) with two differences the paper
does not state: the MPJPE loss (the L2 norm per joint; eq. 9 is its square,
``--loss mse``) and train-time flip augmentation (``--no-flip`` drops it).
``--budget-minutes`` / ``--budget-samples`` replace the epoch count by a fixed
compute budget with a one-cycle (or warm-up + cosine) schedule that ends
exactly at the budget. Writes into ``--out``: the final weights
(safetensors + JSON), a resumable checkpoint, ``metrics.jsonl`` (one line per
evaluation) and ``curves.png``. An --out that holds a run is refused unless the
command says what to do with it: ``--resume`` or ``--overwrite``.

Speed choices are measured at start, not assumed: every core
(``--threads``), the precision (``--amp auto``: a timed probe keeps fp32 unless
bf16 is really faster on this CPU), ``torch.compile`` (``--compile auto``, eager
if it fails), Adam's fused kernel, and the attention kernel (``--attention``).

    python -m training.train --out runs/paper                 # paper recipe
    python -m training.train --out runs/paper --resume        # continue it
    python -m training.train --out runs/paper --overwrite     # start it again (deletes the earlier run)
    python -m training.train --dim 128 --budget-minutes 60 --ema-decay 0.999 --out runs/cpu
    python -m training.train --dim 128 --budget-minutes 30 --init-weights runs/cpu/cfi.safetensors --out runs/more
    torchrun --nproc-per-node 4 -m training.train --out runs/ddp   # several GPUs (DDP)
    python -m training.train --no-cfi-initial --no-cfi-local --no-cfi-global --no-gramlp  # Table 4 baseline
"""
from __future__ import annotations

import argparse
import copy
import fcntl
import hashlib
import json
import os
import shlex
import stat
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

if __name__ == "__main__":
    # a stop signal while torch loads below ends the command in one line, 130 or 143, until main()
    # takes over (it was a KeyboardInterrupt traceback from inside an import, exit -2)
    from cfi_pose_ros.interrupts import exit_quietly_on_stop_signals
    exit_quietly_on_stop_signals("training")

import numpy as np
import torch
from tqdm import tqdm

from cfi_pose_ros.files import WriteError, append_file, special_file_kind, write_replacing
from cfi_pose_ros.interrupts import (StopSignalsInterrupt, interrupt_signal, interrupted_exit_code,
                                    stop_signals_held)
from cfi_pose_ros.model import CFIConfig, CFINet, use_fused_attention
from cfi_pose_ros.weights import WeightsError, config_value_problem, load_weights, save_weights
from cfi_pose_ros.camera import H36M_INPUT_DOMAIN, H36M_REFERENCE_CAMERA, LifterInputDomain, person_scale
from cfi_pose_ros.arguments import EachOnce, directory_name, folders_to_make, non_negative_float, non_negative_int, \
    not_a_folder, number_in, output_directory, positive_float, positive_int, probability, remove_empty
from training.augment import (cut_at_image_bottom, detector_noise, displace_joints, drop_joints, random_flip,
                              virtual_placement)
from training.checkpoint import (CHECKPOINT, CHECKPOINT_JSON, CHECKPOINT_PARTIALS, CheckpointError, config_difference,
                                 has_checkpoint, load_checkpoint, process_rng_state, read_checkpoint_meta,
                                 save_checkpoint, set_process_rng_state, unresumable)
from training.evaluate import DEFAULT_DATA, error_text, evaluate_pose_set, record_name, with_detector_noise
from training.h36m import TRAIN_SUBJECTS, DatasetError, PoseSet, load_h36m
from training.losses import LOSSES
from training.schedule import SCHEDULES, Budget, BudgetSchedule, WeightEMA
from training.stopping import StopRequests, TrainingStopped
from training.speed import PRECISIONS, CompileFailed, autocast_context, choose_precision, compile_or_eager, \
    cpu_model, default_threads, keep_freed_memory, seconds_per_step, thread_count

# The training clock (a module attribute so that tests can drive a minutes budget).
clock = time.perf_counter


class TrainingDiverged(RuntimeError):
    """The loss or the weights became non-finite: nothing is saved from this point."""


class RunRefused(ValueError):
    """The run cannot start as asked (its --out, --resume or --init-weights); nothing was written."""


# What a run writes into --out besides its weights (--name .safetensors/.json).
RUN_FILES = (CHECKPOINT, CHECKPOINT_JSON, "metrics.jsonl", "curves.png")
# The file a running run holds locked in --out (holding_out).
LOCK = ".lock"


# train_step's augmentation settings with every augmentation off (the precision probe, benchmarks).
NO_AUGMENTATION = argparse.Namespace(no_flip=True, noise_std=0.0, noise_prob=0.0, outlier_prob=0.0,
                                     outlier_max_shift=0.0, missing_prob=0.0, missing_max=0,
                                     cut_prob=0.0, placement_prob=0.0)

# --seed takes 0 <= seed < 2**63; the per-step seeds derived from it go through torch_seed.
SEED_LIMIT = 2**63
# The upper ends of three flags, so that no value a run accepts ends in a traceback:
# a person 100 m away is about 20 px tall in the reference camera (f = 1147 px), which no keypoint
# detector finds (--placement-distance 1e300 1e308 underflowed, and the input domain the run
# records became NaN); jitter of std 1 is 500 px per joint at 1000 px, half the image, past which
# the 2D is noise (--eval-noise-std 1e300 overflowed float32 and the metrics' SVD failed); the
# paper's MLP is 2x the width, transformers' 4x (--mlp-ratio 1e300 asked torch for a layer of
# 1e300 x --dim units).
MAX_PLACEMENT_DISTANCE_M = 100.0
MAX_EVAL_NOISE_STD = 1.0
MAX_MLP_RATIO = 64.0
# The training augmentations' magnitudes, for the same reason: --noise-std at most the evaluation
# jitter's 1, and an outlier moved at most 2 (1000 px at 1000 px, across the image): --noise-std
# 1e39 and --outlier-max-shift 1e300 overflowed the float32 inputs, and the run "diverged".
MAX_OUTLIER_SHIFT = 2.0
# the input domain the run records (camera.LifterInputDomain) holds angles within 80 degrees of the
# axis: -85 was parsed, then refused with a ValueError traceback after the data had loaded
MAX_PLACEMENT_ANGLE_DEG = 80.0


def seed_number(text: str) -> int:
    """--seed's argparse type: an integer in [0, 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63), not {text}")
    return value


def weights_name(text: str) -> str:
    """--name's argparse type: a file name inside --out. An empty one (or "." or "..") wrote the
    weights beside --out, as --out's own name; one with a folder in it went outside the run's
    files; "checkpoint" was overwritten by the run's checkpoint. One with the weights' own ending
    (.safetensors, .json) is saved without it (weights.weights_paths): "checkpoint.safetensors"
    wrote the weights over the checkpoint (and it over them), exit 0 and no weights left."""
    if text in ("", ".", "..") or any(sep in text for sep in ("/", os.sep, os.altsep, "\0") if sep):
        raise argparse.ArgumentTypeError(f"must be a file name without a folder (the weights are written into "
                                         f"--out), not {text!r}")
    if text.endswith((".safetensors", ".json")):
        raise argparse.ArgumentTypeError(f"must be a name without an ending (.safetensors and .json are "
                                         f"added), not {text!r}")
    if f"{text}.safetensors" in RUN_FILES or f"{text}.json" in RUN_FILES:
        raise argparse.ArgumentTypeError(f"must not be {text!r}, the name of the run's checkpoint")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--data-3d", default=str(DEFAULT_DATA / "data_3d_h36m.npz"))
    data.add_argument("--cameras", default=str(DEFAULT_DATA / "cameras.json"))
    data.add_argument("--data-2d", default=None, help="detected 2D for training/testing (GT 2D when absent)")
    data.add_argument("--train-subjects", nargs="+", default=list(TRAIN_SUBJECTS), action=EachOnce)
    data.add_argument("--test-subjects", nargs="+", default=["S9"], action=EachOnce)
    data.add_argument("--stride", type=positive_int, default=1, help="training frame stride")
    data.add_argument("--test-stride", type=positive_int, default=1,
                      help="test frame stride for per-epoch evaluation")
    data.add_argument("--synthetic", type=non_negative_int, default=0,
                      help="train on N synthetic poses instead of Human3.6M (tests, smoke runs)")
    data.add_argument("--no-flip", action="store_true", help="disable train-time flip augmentation")
    data.add_argument("--noise-std", type=number_in(float, 0, MAX_EVAL_NOISE_STD), default=0.0,
                      help="max std of detector-like 2D jitter (normalised units; 0.01 = 5 px at 1000 px; at "
                           "most 1, 500 px, as --eval-noise-std)")
    data.add_argument("--noise-prob", type=probability, default=0.5, help="share of each batch that gets jitter")
    data.add_argument("--outlier-prob", type=probability, default=0.0,
                      help="share of each batch with one joint moved like a detector's wrong joint")
    data.add_argument("--outlier-max-shift", type=number_in(float, 0, MAX_OUTLIER_SHIFT), default=0.4,
                      help="longest such move (normalised units; 0.4 = 200 px at 1000 px; at most 2, across "
                           "the image)")
    data.add_argument("--missing-prob", type=probability, default=0.0,
                      help="share of each batch with joints missing (filled as the node fills them)")
    data.add_argument("--missing-max", type=number_in(int, 0, 16), default=2,
                      help="most joints missing in one pose (one joint at least stays)")
    data.add_argument("--cut-prob", type=probability, default=0.0,
                      help="share of each batch whose joints below a random line are missing, as the image's "
                           "bottom edge cuts off a person close to the camera (waist, knees, ankles)")
    data.add_argument("--placement-prob", type=probability, default=0.0,
                      help="share of each batch shown as the reference camera sees the same pose elsewhere "
                           "(another distance and angle off the axis; the input the node gives the lifter)")
    data.add_argument("--placement-distance", type=number_in(float, 0, MAX_PLACEMENT_DISTANCE_M, low_open=True),
                      nargs=2, default=(2.0, 15.0), metavar=("NEAR", "FAR"),
                      help="distances of such placements from the camera (metres, drawn log-uniformly; at most "
                           "100: a person farther away is under 20 px tall, which no detector finds)")
    data.add_argument("--placement-angles", type=number_in(float, -MAX_PLACEMENT_ANGLE_DEG, MAX_PLACEMENT_ANGLE_DEG),
                      nargs=4, default=(-30.0, -20.0, 30.0, 15.0),
                      metavar=("LOW_X", "LOW_Y", "HIGH_X", "HIGH_Y"),
                      help="angles of the pelvis' ray off the axis for such placements (degrees, across and "
                           "up/down, y down; drawn uniformly; within 80 of the axis)")
    model = p.add_argument_group("model (paper: depth 3, dim 512, heads 8)")
    model.add_argument("--dim", type=positive_int, default=512)
    model.add_argument("--depth", type=positive_int, default=3)
    model.add_argument("--heads", type=positive_int, default=8, help="must divide --dim")
    model.add_argument("--mlp-ratio", type=number_in(float, 0, MAX_MLP_RATIO, low_open=True), default=2.0,
                       help="MLP width over --dim (at most 64; --dim x ratio must leave it a hidden unit)")
    model.add_argument("--dropout", type=number_in(float, 0, 1, high_open=True), default=0.0)
    for branch in ("initial", "local", "global"):
        model.add_argument(f"--no-cfi-{branch}", action="store_true", help=f"ablate the CFI({branch}) term")
    model.add_argument("--no-gramlp", action="store_true", help="plain MLP instead of GraMLP")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=positive_int, default=20)
    opt.add_argument("--batch-size", type=positive_int, default=512)
    opt.add_argument("--lr", type=positive_float, default=1e-3)
    opt.add_argument("--lr-decay", type=number_in(float, 0, 1, low_open=True), default=0.95,
                     help="multiplied into lr after every epoch")
    opt.add_argument("--loss", choices=sorted(LOSSES), default="mpjpe")
    opt.add_argument("--max-steps-per-epoch", type=non_negative_int, default=0,
                     help="cap on steps per epoch (0 = all)")
    opt.add_argument("--seed", type=seed_number, default=0, help="0 <= seed < 2**63")
    opt.add_argument("--budget-minutes", type=non_negative_float, default=0.0,
                     help="train for this many minutes of training-step time (epochs ignored; 0 = off)")
    opt.add_argument("--budget-samples", type=non_negative_int, default=0,
                     help="train on this many samples (epochs ignored; 0 = off)")
    opt.add_argument("--schedule", choices=SCHEDULES, default="onecycle",
                     help="lr schedule of a budget run (peak = --lr); one-cycle measured better than warm-up + "
                          "cosine in the accuracy-vs-compute study (docs/accuracy_vs_compute.md)")
    opt.add_argument("--warmup", type=number_in(float, 0, 1, high_open=True), default=0.05,
                     help="warm-up share of a cosine or constant budget schedule")
    opt.add_argument("--ema-decay", type=number_in(float, 0, 1, high_open=True), default=0.0,
                     help="keep an EMA of the weights (e.g. 0.999), evaluated and saved instead of the raw "
                          "ones (0 = off)")
    opt.add_argument("--eval-noise-std", type=number_in(float, 0, MAX_EVAL_NOISE_STD), default=0.01,
                     help="also evaluate with this fixed 2D jitter (normalised units; 0 = skip; at most 1, "
                          "500 px at 1000 px, past which the 2D is noise)")
    opt.add_argument("--checkpoint-minutes", type=non_negative_float, default=5.0,
                     help="also checkpoint this often within an epoch (for --resume; 0 = after every step)")
    speed = p.add_argument_group("speed (each choice measured at start)")
    speed.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                       help="precision: auto = bf16 on CUDA, on a CPU a timed probe (fp32 unless bf16 is faster)")
    speed.add_argument("--threads", type=thread_count, default=None,
                       help="CPU threads for torch (default: every core; 1 to 1024)")
    speed.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                       help="torch.compile the training step (auto: eager if compiling fails)")
    speed.add_argument("--attention", choices=("sdpa", "matmul"), default="matmul",
                       help="attention kernel in training: scaled_dot_product_attention or the plain matmul "
                            "graph export uses (same function; with 17 tokens on a CPU the compiled matmul "
                            "graph measured faster: benchmarks/bench_training.py)")
    p.add_argument("--out", type=directory_name, default="runs/cfi", help="output directory")
    earlier_run = p.add_mutually_exclusive_group()
    earlier_run.add_argument("--resume", action="store_true",
                             help="continue from --out/checkpoint.*, with the run's own flags where these leave "
                                  "them out")
    earlier_run.add_argument("--overwrite", action="store_true",
                             help="start a new run in an --out that holds one (its checkpoint, metrics and "
                                  "weights are deleted); without --resume or --overwrite such an --out is refused")
    p.add_argument("--init-weights", default=None,
                   help="start from this weights file (fine-tuning: a new schedule on trained weights; the "
                        "model flags must match its config); its commands and CPU-hours carry into the record")
    p.add_argument("--name", type=weights_name, default="cfi",
                   help="file name of the final weights in --out (no folder, no ending)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the checks that take more than one argument."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = model_config_from_args(args)
    except ValueError as error:                 # e.g. --heads that does not divide --dim
        parser.error(f"--dim {args.dim} --depth {args.depth} --heads {args.heads}: {error}")
    # the weights loader's own checks: such a run trained to its end and wrote weights that no
    # one could load (--mlp-ratio 0.01 with --dim 16: an MLP of no hidden units)
    problem = config_value_problem(config)
    if problem:
        parser.error(f"--dim {args.dim} --mlp-ratio {args.mlp_ratio:g}: {problem}")
    problem = not_a_folder(args.out)
    if problem:             # a usage error, as export's output under a file (--resume: "holds no checkpoint")
        parser.error(problem)
    near, far = args.placement_distance
    if near > far:
        parser.error(f"--placement-distance {near:g} {far:g}: NEAR must not be farther than FAR")
    (low_x, low_y), (high_x, high_y) = placement_angles(args)
    if low_x > high_x or low_y > high_y:
        parser.error(f"--placement-angles {' '.join(f'{a:g}' for a in args.placement_angles)}: "
                     f"each LOW must not exceed its HIGH")
    # which flags the command line gave (--resume takes the others from the run it continues)
    # (argparse sets no default where the namespace has the attribute already)
    unset = object()
    given = build_parser().parse_args(argv, namespace=argparse.Namespace(**{name: unset for name in vars(args)}))
    args.given = sorted(name for name, value in vars(given).items() if value is not unset)
    return args


def torch_seed(value: int) -> int:
    """``value`` as a seed torch's generators take (0 <= seed < 2**64), reduced modulo 2**64. That
    leaves every value below 2**64 as it was, so the seeds that worked before draw what they drew
    (their runs and checkpoints go on bit for bit); a larger one ended the run at its first step
    ("Overflow when unpacking long long": --seed 18446634 and up made the step seeds larger)."""
    return value % 2**64


def epoch_order_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's shuffle of the training poses."""
    return torch_seed(seed * 1000 + epoch)


def augmentation_seed(seed: int, rank: int, global_step: int) -> int:
    """The seed of a step's augmentation draws: a function of (seed, rank, step) only, so a resumed
    run draws what the uninterrupted one would have, on every rank and device."""
    return torch_seed((seed * 1_000_003 + rank) * 1_000_003 + global_step)


def model_config_from_args(args) -> CFIConfig:
    return CFIConfig(dim=args.dim, depth=args.depth, heads=args.heads, mlp_ratio=args.mlp_ratio,
                     dropout=args.dropout, use_cfi_initial=not args.no_cfi_initial,
                     use_cfi_local=not args.no_cfi_local, use_cfi_global=not args.no_cfi_global,
                     use_gramlp=not args.no_gramlp)


def placement_angles(args) -> tuple[tuple[float, float], tuple[float, float]]:
    """``--placement-angles`` as ``((low_x, low_y), (high_x, high_y))``, as camera.reference_view takes them."""
    low_x, low_y, high_x, high_y = args.placement_angles
    return (low_x, low_y), (high_x, high_y)


def trained_input_domain(args, targets: torch.Tensor) -> LifterInputDomain | None:
    """Where the people of this run's training input stand (None: Human3.6M's, without
    ``--placement-prob``): Human3.6M's cone of pelvis angles widened to the placements', and its
    person-scale range widened to the 1st-99th percentile of the placed people's sizes (drawn
    for up to 20000 training poses, as the placement draws them)."""
    if args.placement_prob <= 0:
        return None
    sample = targets[torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))[:20000]].cpu()
    placed = virtual_placement(torch.zeros(sample.shape[:2] + (2,)), sample, 1.0, tuple(args.placement_distance),
                               placement_angles(args), H36M_REFERENCE_CAMERA, torch.Generator().manual_seed(0))
    low, high = np.percentile(person_scale(placed.double().numpy()), (1, 99))
    (h36m_low_x, h36m_low_y), (h36m_high_x, h36m_high_y) = H36M_INPUT_DOMAIN.pelvis_angles_deg
    (low_x, low_y), (high_x, high_y) = placement_angles(args)
    h36m_low, h36m_high = H36M_INPUT_DOMAIN.person_scale_range
    return LifterInputDomain(((min(low_x, h36m_low_x), min(low_y, h36m_low_y)),
                              (max(high_x, h36m_high_x), max(high_y, h36m_high_y))),
                             (round(min(float(low), h36m_low), 4), round(max(float(high), h36m_high), 4)))


def load_data(args) -> tuple[PoseSet, PoseSet]:
    if args.synthetic:
        from training.synthetic import synthetic_pose_set
        return (synthetic_pose_set(args.synthetic, seed=args.seed),
                synthetic_pose_set(max(args.synthetic // 10, 64), seed=args.seed + 1))
    train = load_h36m(args.data_3d, args.cameras, tuple(args.train_subjects), args.data_2d, args.stride)
    test = load_h36m(args.data_3d, args.cameras, tuple(args.test_subjects), args.data_2d, args.test_stride)
    return train, test


def plot_curves(history: list[dict], path: Path, marks: dict[str, float] | None = None) -> None:
    """Training loss and test errors against samples; ``marks`` = {label: samples} draws
    a dashed line (e.g. where a fine-tune took over). ``WriteError`` where ``path`` cannot be
    written, the previous plot left as it was."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [h["samples"] / 1e6 for h in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(samples, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="training samples (millions)", ylabel="train loss", title="training loss")
    ax_err.plot(samples, [h["test_mpjpe_mm"] for h in history], marker="o", label="MPJPE")
    ax_err.plot(samples, [h["test_p_mpjpe_mm"] for h in history], marker="o", label="P-MPJPE")
    if any("test_mpjpe_mm_raw" in h for h in history):
        ax_err.plot(samples, [h.get("test_mpjpe_mm_raw") for h in history], ls="--", label="MPJPE (raw, no EMA)")
    if any("test_mpjpe_mm_noisy" in h for h in history):
        ax_err.plot(samples, [h.get("test_mpjpe_mm_noisy") for h in history], ls=":", label="MPJPE (noisy 2D)")
    ax_err.set(xlabel="training samples (millions)", ylabel="mm", title="test error (mean over actions)")
    ax_err.legend()
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        for label, at in (marks or {}).items():
            ax.axvline(at / 1e6, color="grey", ls="--", lw=1)
            ax.text(at / 1e6, 0.98, f" {label}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    fig.tight_layout()
    try:
        write_replacing("the training curves", path, lambda partial: fig.savefig(partial, dpi=100, format="png"))
    finally:
        plt.close(fig)


@dataclass
class RunState:
    """Where a run stands; saved in the checkpoint so ``--resume`` continues exactly here."""
    epoch: int = 0                  # epochs completed
    step_in_epoch: int = 0          # steps done in the current epoch
    global_step: int = 0
    samples: int = 0                # training samples seen (all ranks)
    train_seconds: float = 0.0      # time spent in training steps (excludes evaluation, saving, compiling)
    finished: bool = False          # a budget run that has spent its budget
    epoch_loss_sum: float = 0.0     # the current epoch's summed loss and steps so far (a mid-epoch resume
    epoch_steps: int = 0            # reports the whole epoch, as an uninterrupted run does)
    precision: str = ""
    cpu: str = ""                   # the CPU model the precision was chosen on
    compile: str = ""
    threads: int = 0
    cpu_seconds: float = 0.0        # train_seconds x the threads (of all processes) of each part of the run
    cpus: list[str] = field(default_factory=list)           # every CPU model and precision
    precisions: list[str] = field(default_factory=list)     # a part of the run trained on
    typical_step_seconds: float = 0.0   # what a stalled step counts at most 5 times (StepTimer)
    commands: list[str] = field(default_factory=list)
    init_weights: dict = field(default_factory=dict)    # what --init-weights started from
    data_fingerprint: dict = field(default_factory=dict)  # the poses it trains and tests on (data_fingerprint)
    grad_scaler: dict = field(default_factory=dict)     # an fp16 run's loss scale (GradScaler.state_dict)


def init_from_weights(model: torch.nn.Module, path: str, config: CFIConfig) -> dict:
    """Load a trained weights file into ``model`` (same architecture); returns its provenance."""
    source, info = load_weights(path)
    if info.model != config:
        raise RunRefused(f"--init-weights {path}: its model differs from this run's "
                         f"({config_difference(info.model, config, 'the weights')}); pass the same "
                         f"--dim/--depth/--heads/--mlp-ratio and ablation flags")
    model.load_state_dict(source.state_dict())
    return {"path": str(path), "sha256": info.sha256, "metrics": info.metrics,
            **inherited_provenance(path, info.training)}


def inherited_provenance(path: str, training: dict) -> dict:
    """``samples_seen``, ``cpu_hours`` and ``commands`` of the training record of the weights a run
    starts from (``--init-weights path``), which the run adds its own to in the record it saves.
    The record is the JSON's, which loading checks only to be an object: a hand-edited
    ``"cpu_hours": "2.5"`` trained the whole run and then failed its first save in a TypeError
    traceback (nothing saved), ``"compute": "x"`` or ``"commands": 5`` ended the start in one, and
    ``"commands": "python -m ..."`` was saved as a list of its letters. Refused now, before any work."""
    def refuse(where: str, expected: str, value) -> RunRefused:
        return RunRefused(f"--init-weights {path}: its JSON's training.{where} must be {expected}, "
                          f"not {value!r:.60}; correct or remove it there")

    compute = training.get("compute", {})
    if not isinstance(compute, dict):
        raise refuse("compute", "an object", compute)
    cpu_hours = compute.get("cpu_hours", 0.0)
    if isinstance(cpu_hours, bool) or not isinstance(cpu_hours, (int, float)) \
            or not 0 <= cpu_hours < float("inf"):
        raise refuse("compute.cpu_hours", "a number of hours, 0 or more", cpu_hours)
    samples_seen = training.get("samples_seen", 0)
    if isinstance(samples_seen, bool) or not isinstance(samples_seen, int) or samples_seen < 0:
        raise refuse("samples_seen", "a count, 0 or more", samples_seen)
    commands = training.get("commands", [])
    if not isinstance(commands, list) or not all(isinstance(command, str) for command in commands):
        raise refuse("commands", "a list of command lines (strings)", commands)
    return {"samples_seen": samples_seen, "cpu_hours": float(cpu_hours), "commands": list(commands)}


def run_files(args) -> list[str]:
    return [*RUN_FILES, f"{args.name}.safetensors", f"{args.name}.json"]


def test_set_names(args) -> list[str]:
    """What the run is evaluated on, as its metrics' key names it (``record_name``): the test
    subjects, or ``synthetic`` (a --synthetic run's were recorded as S9's)."""
    return ["synthetic"] if args.synthetic else list(args.test_subjects)


def earlier_run_files(args, out: Path) -> list[str]:
    """The files of a run (``run_files``) that ``out`` holds."""
    return [name for name in run_files(args) if (out / name).exists()]


def check_out(args, out: Path) -> None:
    """Refuse, before any work, an --out this run would mix with another: a new run into one that
    holds a run (it overwrote the checkpoint and weights and appended a second "epoch 1" to its
    metrics) unless --overwrite, and --resume of one with nothing to resume (it started afresh).
    Either way an --out this run cannot write: a resumed run trained, then failed with a
    SafetensorError traceback at its first save."""
    if args.resume:
        try:
            mode = os.stat(out / CHECKPOINT).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            # no run makes one: it was "holds no checkpoint.safetensors" listing checkpoint.safetensors
            # among the run's files, and advised --overwrite, which refuses it
            raise RunRefused(f"--resume: {out / CHECKPOINT} is {special_file_kind(mode)}, not a checkpoint; move "
                             f"it away")
        if not has_checkpoint(out):
            # a run stopped before its first checkpoint (killed while its first evaluation saved)
            # leaves its weights and curves: "leave out --resume" was then refused for them, and
            # that refusal advised --resume
            left = earlier_run_files(args, out)
            raise RunRefused(f"--resume: {out} holds no {CHECKPOINT} to continue; " + (
                f"the run there stopped before its first checkpoint ({', '.join(left)}): pass --overwrite "
                f"instead of --resume to start it again" if left else "leave out --resume to start a new run there"))
    else:
        earlier = earlier_run_files(args, out)
        if earlier and not args.overwrite:
            way_on = "pass --resume to continue it or " if has_checkpoint(out) else \
                "it has no checkpoint to continue; pass "
            raise RunRefused(f"--out {out} already holds a run ({', '.join(earlier)}); {way_on}--overwrite to "
                             f"start a new one in its place")
        if args.overwrite:
            # what --overwrite would delete must be files: a folder in a file's place (no run makes
            # one) ended it in an IsADirectoryError traceback once its checks had passed
            for name in overwritten_names(args, out):
                try:
                    mode = os.lstat(out / name).st_mode
                except OSError:
                    continue
                if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                    raise RunRefused(f"--overwrite: {out / name} is {special_file_kind(mode)}, not a file of a "
                                     f"run; move it away, or pick another --out")
    try:
        output_directory(out)
    except ValueError as error:
        raise RunRefused(str(error)) from None


# What a resumed run may be given anew: how it runs, not what it learns (and --epochs, to go on).
# --data-2d as --data-3d and --cameras: the data's fingerprint guards what it holds, and a run on a
# --data-2d that had moved could not be resumed at all.
RESUME_MAY_CHANGE = frozenset({"epochs", "threads", "amp", "compile", "attention", "checkpoint_minutes",
                               "data_3d", "cameras", "data_2d", "name", "init_weights"})
NOT_RUN_FLAGS = frozenset({"out", "resume", "overwrite", "command_line", "given"})


def resumed_arguments(args: argparse.Namespace, saved_args: dict, out: Path, finished: bool) -> argparse.Namespace:
    """--resume: the flags of the run it continues wherever the command line leaves them out.
    The defaults stood in for them: `--out X --resume` of a budget run with an EMA went on as a
    20-epoch run without one. A flag given with another value than the run's is refused (but those
    of ``RESUME_MAY_CHANGE``); so is another budget (a longer run is a new one, from these weights:
    the schedule ends at the budget)."""
    def plain(value):       # as the checkpoint's JSON holds it (tuples are lists there)
        return json.loads(json.dumps(value))

    given = set(getattr(args, "given", vars(args)))
    merged = copy.copy(args)
    changed = []
    for name, value in saved_args.items():
        if name in NOT_RUN_FLAGS or not hasattr(args, name):
            continue
        if name not in given:
            setattr(merged, name, value)
        elif name not in RESUME_MAY_CHANGE and plain(getattr(args, name)) != plain(value):
            changed.append(name)
    if not changed:
        return merged
    # the run's own weights: the command line's --name (or its default, cfi) named a file that
    # does not exist in a run of another --name
    weights = out / f"{saved_args.get('name', merged.name)}.safetensors"
    if {"budget_minutes", "budget_samples"} & set(changed):
        budget = (f"with --budget-minutes {args.budget_minutes:g}" if args.budget_minutes else
                  f"with --budget-samples {args.budget_samples}" if args.budget_samples else "without a budget")
        had = (f"--budget-minutes {saved_args['budget_minutes']:g}" if saved_args.get("budget_minutes") else
               f"--budget-samples {saved_args['budget_samples']}" if saved_args.get("budget_samples") else None)
        # what the run had, not "another budget": a run started without one was told it had one
        where = ("has spent the budget it was started with, and its schedule ended there" if finished else
                 f"was started with {had}, and its schedule ends at that one" if had else
                 "was started without a budget (its learning rate decays each epoch), and a budget's schedule "
                 "runs from a run's first step")
        raise RunRefused(f"--resume {budget}: the run in {out} {where}. To train on from its weights, start a "
                         f"new run: --init-weights {weights} --out <new folder>")
    flags = ", ".join(f"--{name.replace('_', '-')} {plain(getattr(args, name))} (the run's: {saved_args[name]})"
                      for name in changed)
    raise RunRefused(f"--resume: {flags}: the run in {out} was started otherwise; leave these out to continue "
                     f"it as it was started, or start a new run from its weights: "
                     f"--init-weights {weights} --out <new folder>")


def check_saved_run(out: Path, saved: dict) -> None:
    """CheckpointError where a checkpoint's run arguments or state (``saved``: its metadata) are
    none a run of this command can have: each argument must pass the check its flag's value passes
    on the command line, each state field must be one RunState has, of its type. Taken as they were,
    a --batch-size of 0 ended --resume in a ZeroDivisionError, a --name of ../x saved the weights
    outside --out, a run state of an unknown field in a TypeError."""
    def refused(what: str) -> CheckpointError:
        return unresumable(out / CHECKPOINT, what)

    for action in build_parser()._actions:
        if action.dest not in saved.get("args", {}):
            continue
        value = saved["args"][action.dest]
        if value == action.default:
            continue
        flag = action.option_strings[0] if action.option_strings else action.dest
        if action.nargs == 0:       # store_true
            if type(value) is not bool:
                raise refused(f"its run's {flag} is {json.dumps(value)[:60]}")
            continue
        values = value if action.nargs is not None and isinstance(value, list) else [value]
        if action.nargs is not None and not isinstance(value, list) and value is not None:
            raise refused(f"its run's {flag} is {json.dumps(value)[:60]}, not a list")
        for item in values:
            if item is None and action.default is None:
                continue
            try:
                if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                    raise ValueError("not a value of the flag")
                # the value the flag's own check gives for it, of its type: "32" for --dim is no 32
                parsed = item if action.type is None else action.type(str(item))
                if type(parsed) is not type(item) and not (type(parsed) is float and type(item) is int):
                    raise ValueError(f"not a value of type {type(parsed).__name__}")
                if action.choices is not None and item not in action.choices:
                    raise ValueError(f"not one of {sorted(map(str, action.choices))}")
            except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
                raise refused(f"its run's {flag} {json.dumps(item)[:60]}: {error}") from None
    kinds = {f.name: type(getattr(RunState(), f.name)) for f in fields(RunState)}
    for name, value in saved.get("run_state", {}).items():
        kind = kinds.get(name)
        if kind is None:
            raise refused(f"its run state holds {name!r}, which no run has")
        if not (type(value) is kind or (kind is float and type(value) is int)):
            raise refused(f"its run state's {name} is {json.dumps(value)[:60]}, not of type {kind.__name__}")


def run_has_ended(args, out: Path, saved: dict) -> bool:
    """--resume of a run that has ended (a preempted job run again as it was; the checkpoint's
    metadata ``saved``): nothing more to do, said in a line (it said nothing), decided before the
    data and the compiled step (which it loaded and compiled first). An epoch run goes on when
    --epochs asks for more; a budget run does not (it ignores --epochs, which it was advised)."""
    finished = saved.get("run_state", {}).get("finished", False)
    budget = any((args.budget_minutes, args.budget_samples))
    if not finished and (budget or saved["epoch"] < args.epochs):
        return False
    weights = f"a new run with --init-weights {out / args.name}.safetensors"
    print(f"[train] the run in {out} has {'spent its budget' if finished else 'done its epochs'}: nothing more "
          f"to do ({weights if budget else f'more --epochs, or {weights},'} trains on)", file=sys.stderr)
    return True


def metrics_text(history: list[dict]) -> str:
    """metrics.jsonl's text of ``history``: one line per evaluation."""
    return "".join(json.dumps(record) + "\n" for record in history)


def write_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl as ``history``, written anew and renamed over the file: at --resume, as the
    checkpoint's evaluations (a run stopped between a line and its checkpoint wrote the line again
    when resumed, and the lines of evaluations after the checkpoint are dropped). ``WriteError``
    where the disk cannot hold it, the file as it was."""
    text = metrics_text(history)
    write_replacing("the metrics", out / "metrics.jsonl", lambda partial: partial.write_text(text))


def append_metrics(out: Path, history: list[dict]) -> None:
    """The line of ``history``'s last evaluation appended to metrics.jsonl (one write, synced), which
    holds the evaluations before it: a ``tail -f`` of the file follows the run. Each evaluation
    rewrote the file and renamed it over the old one, which ``tail -f`` went on following without
    another line (``tail -F`` saw it replaced each epoch). A disk that cannot hold the line leaves
    the file as it was (cut back to the earlier lines, no part of the line left): ``WriteError``, and
    the checkpoint, written before the line, holds the evaluation for the resume that writes it. A
    file that does not hold the evaluations before (removed or cut since) is written whole."""
    path = out / "metrics.jsonl"
    earlier = len(metrics_text(history[:-1]).encode())
    if not append_file("the metrics", path, metrics_text(history[-1:]).encode(), earlier):
        write_metrics(out, history)


def partial_names(name: str) -> list[str]:
    """What a save of the file ``name`` killed in mid-write leaves beside it (write_replacing's, and
    save_weights' for the weights)."""
    return [f"{name}.partial"]


def overwritten_names(args, out: Path) -> list[str]:
    """What --overwrite deletes in ``out``: the run's files, its weights under the earlier run's own
    --name too (with another --name they stayed beside the new run's, with the earlier run's record),
    and what a save killed in mid-write left beside any of them (its ``.partial`` files, the
    checkpoint's ``.tmp`` ones): they stayed, taking the disk's space, beside the new run's."""
    names = [*run_files(args)]
    try:
        earlier = read_checkpoint_meta(out).get("args", {}).get("name") if has_checkpoint(out) else None
    except CheckpointError:         # a damaged checkpoint: its run's weights cannot be named
        earlier = None
    if isinstance(earlier, str) and earlier and Path(earlier).name == earlier:
        names += [f"{earlier}.safetensors", f"{earlier}.json"]
    names += [partial for name in names for partial in partial_names(name)]
    return list(dict.fromkeys([*names, *CHECKPOINT_PARTIALS]))


def clear_earlier_run(args, out: Path) -> None:
    """--overwrite: delete the earlier run's files (``overwritten_names``) once this run has passed
    every check (a refused run leaves them as they were; check_out refused a folder among them)."""
    for name in overwritten_names(args, out):
        try:
            (out / name).unlink(missing_ok=True)
        except OSError as error:    # put there since check_out, or a folder it may not write
            raise RunRefused(f"--overwrite: could not delete {out / name}: {error.strerror or error}") from error


def training_record(args, state: RunState) -> dict:
    """What the weights' JSON says about how they were made."""
    data = "synthetic" if args.synthetic else {
        "dataset": "Human3.6M", "train_subjects": args.train_subjects,
        "input_2d": args.data_2d or "ground truth (projected with distortion)",
        "data_3d": args.data_3d, "cameras": args.cameras,
        "stride": args.stride, "flip_augmentation": not args.no_flip,
        "noise_std": args.noise_std, "noise_prob": args.noise_prob,
        "outlier_prob": args.outlier_prob, "outlier_max_shift": args.outlier_max_shift,
        "missing_prob": args.missing_prob, "missing_max": args.missing_max, "cut_prob": args.cut_prob,
        "placement_prob": args.placement_prob, "placement_distance_m": list(args.placement_distance),
        "placement_angles_deg": [list(a) for a in placement_angles(args)]}
    budget = Budget(args.budget_minutes, args.budget_samples)
    recipe = {k: getattr(args, k) for k in ("batch_size", "lr", "loss", "max_steps_per_epoch", "seed",
                                             "ema_decay", "attention")}
    if budget.enabled:
        recipe.update(budget_minutes=args.budget_minutes, budget_samples=args.budget_samples,
                      schedule=args.schedule, warmup=args.warmup)
    else:
        recipe.update(epochs=args.epochs, lr_decay=args.lr_decay)
    this_run_cpu_hours = state.cpu_seconds / 3600
    record = {
        "data": data, "data_fingerprint": state.data_fingerprint,
        "epochs_done": state.epoch, "samples_seen": state.samples, "recipe": recipe,
        "command": state.commands[-1] if state.commands else "",
        # every command behind these weights, the --init-weights chain first
        "commands": state.init_weights.get("commands", []) + list(state.commands),
        "compute": {"train_hours": state.train_seconds / 3600,
                    "cpu_hours": this_run_cpu_hours + state.init_weights.get("cpu_hours", 0.0),
                    "cpu_hours_this_run": this_run_cpu_hours,
                    "threads": state.threads, "cpu": "; ".join(state.cpus) or cpu_model(),
                    "precision": "; ".join(state.precisions) or state.precision,
                    "compile": state.compile, "torch": torch.__version__},
        "licence": "" if args.synthetic else "trained on Human3.6M: non-commercial research use only",
    }
    if state.init_weights:
        record["init_weights"] = {k: v for k, v in state.init_weights.items() if k != "commands"}
    return record


def setup_distributed() -> tuple[int, int, torch.device, object]:
    """Rank, world size, device and the group the processes agree in on the host (when to
    checkpoint, each one's random state; None: the default group, or a single process); DDP
    process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    group = None
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if backend == "nccl":       # over NCCL each such agreement would wait for the GPU
            group = torch.distributed.new_group(backend="gloo")
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local), group
    return rank, world, torch.device("cpu"), group


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam; the fused kernel (one pass over every parameter) where this build has it."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=device.type != "cpu" or None)


def probe_precision(args, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    loss_fn, device: torch.device) -> tuple[str, dict[str, float]]:
    """The precision to train in: given, bf16 on CUDA, or timed on a throw-away copy on the CPU."""
    if args.amp in ("bf16", "fp16"):
        return args.amp, {}
    if args.amp == "off":
        return "fp32", {}
    if device.type == "cuda":
        return "bf16", {}
    probe_model = copy.deepcopy(model)
    probe_optimizer = torch.optim.Adam(probe_model.parameters(), lr=1e-9)
    x, y = inputs[:args.batch_size], targets[:args.batch_size]

    def time_precision(precision: str, limit: float) -> float:
        forward_loss, _ = build_forward_loss(probe_model, loss_fn, precision, device, "off", x, y)
        return seconds_per_step(lambda: train_step(forward_loss, probe_optimizer, x, y, NO_AUGMENTATION),
                                limit=limit)

    return choose_precision(time_precision)


def build_forward_loss(model: torch.nn.Module, loss_fn, precision: str, device: torch.device,
                       compile_mode: str, probe_x: torch.Tensor, probe_y: torch.Tensor):
    """The training loss of a batch in ``precision``, compiled when that works here.

    Returns the function and how it runs (``compiled``, ``off`` or the reason it is eager).
    """
    def forward_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast_context(precision, device):
            pred = model(x)
        return loss_fn(pred.float(), y)

    def compile_probe(candidate) -> None:
        candidate(probe_x, probe_y).backward()     # compiles forward and backward now, not mid-run
        model.zero_grad(set_to_none=True)

    return compile_or_eager(forward_loss, compile_mode, compile_probe)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaling: fp16 holds nothing below 6e-8, and the backward pass of an fp16
    product flushed smaller gradients to zero (a loss scaled by 1e-6 trained nothing, its gradients
    all zero). bf16 has fp32's range and needs none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def train_step(forward_loss, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               args, ema: WeightEMA | None = None, generator: torch.Generator | None = None,
               scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """One optimisation step on a batch (augmentation included); returns the detached loss.

    Nothing here waits for a value: the caller reads the loss only when it logs. With ``scaler``
    (fp16) the gradients are of the scaled loss, and a step whose gradients overflowed is skipped
    while the scale backs off.
    """
    if args.placement_prob > 0:     # before the flip, which mirrors input and target together
        x = virtual_placement(x, y, args.placement_prob, tuple(args.placement_distance),
                              placement_angles(args), H36M_REFERENCE_CAMERA, generator)
    if not args.no_flip:
        x, y = random_flip(x, y, generator)
    x = detector_noise(x, args.noise_std, args.noise_prob, generator)
    x = displace_joints(x, args.outlier_prob, args.outlier_max_shift, generator)
    x = drop_joints(x, args.missing_prob, args.missing_max, generator=generator)
    x = cut_at_image_bottom(x, args.cut_prob, generator=generator)
    loss = forward_loss(x, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if ema is not None:
        ema.update()
    return loss.detach()


@dataclass
class Run:
    """A training run as it goes: what its epochs, evaluations and checkpoints share."""
    args: argparse.Namespace
    out: Path
    rank: int
    world: int
    device: torch.device
    group: object                   # where the processes agree (setup_distributed)
    threads: int
    model: CFINet
    optimizer: torch.optim.Optimizer
    ema: WeightEMA | None
    state: RunState
    history: list[dict]
    inputs: torch.Tensor
    targets: torch.Tensor
    test_set: PoseSet
    noisy_test_set: PoseSet | None
    input_domain: LifterInputDomain | None
    forward_loss: Callable
    budget: Budget
    schedule: BudgetSchedule | None
    steps_per_epoch: int
    step_timer: "StepTimer"
    scaler: torch.amp.GradScaler | None         # fp16's (grad_scaler)
    stop: StopRequests = field(default_factory=StopRequests)     # entered by train()

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    def agree_after_step(self, checkpoint_due: bool) -> tuple[bool, bool]:
        """What every process does after a step, together: a checkpoint (rank 0's clock decides:
        ``checkpoint_due`` of the others is not read) and whether to stop (any process's stop
        signal: torchrun hands its own to every worker, but a rank that stopped alone would leave
        the others waiting in the next step's all-reduce). One all-reduce, both answers."""
        stop = self.stop.signum is not None
        if self.world == 1:
            return checkpoint_due or stop, stop
        flags = torch.tensor([checkpoint_due and self.main_process, stop], dtype=torch.uint8)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX, group=self.group)
        checkpoint_due, stop = (bool(flag) for flag in flags)
        return checkpoint_due or stop, stop

    def gather_rng_states(self) -> list[dict] | None:
        """Every process's random state (checkpoint.process_rng_state), by rank, on rank 0 (None on
        the others); every process must call it. Each draws its own dropout masks: only rank 0's
        state was saved, and every process of a resumed run went on from it."""
        own = process_rng_state(self.device)
        if self.world == 1:
            return [own]
        # fixed-size byte tensors, so a plain all_gather (gather_object would pickle them); the aborts
        # at exit once put down to gather_object were gloo freeing these at finalization (see cli)
        gathered = {}
        for name, state in own.items():
            parts = [torch.empty_like(state) for _ in range(self.world)]
            torch.distributed.all_gather(parts, state, group=self.group)
            gathered[name] = parts
        states = [{name: parts[rank] for name, parts in gathered.items()} for rank in range(self.world)]
        return states if self.main_process else None

    def save_checkpoint(self, rng_states: list[dict]) -> None:
        """The checkpoint, with the random states of ``gather_rng_states`` but this process's own
        as it is now: an evaluation since may have drawn from it (an EMA model's initial weights),
        and the uninterrupted run goes on from here."""
        self.state.grad_scaler = self.scaler.state_dict() if self.scaler is not None else {}
        save_checkpoint(self.out, self.model, self.optimizer, self.state.epoch, self.history,
                        {"args": vars(self.args), "run_state": asdict(self.state)}, ema=self.ema,
                        rng_states=[process_rng_state(self.device), *rng_states[1:]])


@contextmanager
def holding_out(args, out: Path, rank: int):
    """--out checked (``check_out``) and to this run alone while it runs (rank 0 holds it; the
    others write nothing): two runs started into one --out at once were both let in, and their
    metrics.jsonl lines and checkpoints interleaved. The lock file stays after a run (``out_lock``);
    a run that ends before it has written anything (refused at start: a --batch-size its data does
    not fill, an --init-weights of another model; or Ctrl-C while it loaded) leaves nothing, where it
    left the folders it had made holding its lock."""
    made = folders_to_make(out)
    lock, created, interrupted = nullcontext(), False, None
    try:
        # a stop signal after the folders or the lock file were made and before the try below left
        # them behind (a Ctrl-C as soon as .lock appeared); held, it is raised in that try
        with stop_signals_held():
            check_out(args, out)
            if rank == 0:
                lock, created, made = out_lock(out, made)
    except KeyboardInterrupt as interrupt:     # raised as the held block ends: all of it was done
        interrupted = interrupt
    except BaseException:
        remove_empty(made)          # made, then found not writable, or locked by another run
        raise
    with lock:
        try:
            if interrupted is not None:
                raise interrupted
            yield
        except BaseException:
            if created:
                remove_unused_out(out, made)
            raise


def out_lock(out: Path, made: list[Path]):
    """``out/LOCK`` opened and locked (``flock``), whether this run created it, and the folders made
    for it (``made``, as ``holding_out`` takes it); RunRefused while another run holds it.
    ``remove_unused_out`` deletes a lock file while it holds it: a run that had opened that file
    before, and locks it once it is released, holds a lock no later run sees (a third run would
    create a new file beside it and lock that one too). So the file locked must be the one at the
    name, or this run opens the name again (the folder made again where the other run removed it)."""
    for _ in range(100):        # each round another run removed the folder: not for ever
        try:
            try:
                descriptor = os.open(out / LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                created = True
            except FileExistsError:
                # no run makes anything else there: a folder was an IsADirectoryError traceback, a FIFO
                # waited for a reader for ever, a broken link looked like a file removed again and again
                try:
                    mode = os.stat(out / LOCK).st_mode
                except FileNotFoundError:
                    mode = None if not os.path.lexists(out / LOCK) else 0
                if mode is not None and not stat.S_ISREG(mode):
                    kind = special_file_kind(mode) if mode else "a broken symbolic link"
                    raise RunRefused(f"--out {out}: {out / LOCK} is {kind}, not the lock file a run holds there; "
                                     f"move it away") from None
                descriptor = os.open(out / LOCK, os.O_WRONLY | os.O_NONBLOCK)
                created = False
        except FileNotFoundError:       # removed, with its folder, by a run refused meanwhile
            made = folders_to_make(out)
            try:
                output_directory(out)
            except ValueError as error:
                raise RunRefused(str(error)) from None
            continue
        lock = os.fdopen(descriptor, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RunRefused(f"--out {out}: another run is writing into it now (it holds {out / LOCK}); wait "
                             f"for it to end, or pick another --out") from None
        held = os.fstat(lock.fileno())
        try:
            named = os.stat(out / LOCK)
            if (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
                return lock, created, made
        except FileNotFoundError:
            pass
        lock.close()
    raise RunRefused(f"--out {out}: other runs keep removing {out / LOCK}; pick another --out")


def remove_unused_out(out: Path, made: list[Path]) -> None:
    """The lock file this run created in ``out`` (held: see ``out_lock``) removed where the folder
    holds nothing else, and then the folders made for the run (``made``) where they are empty. A
    folder that holds anything else (a run's files, a file put there meanwhile) stays as it is."""
    try:
        if [entry.name for entry in os.scandir(out)] != [LOCK]:
            return
        os.unlink(out / LOCK)
    except OSError:
        return
    remove_empty(made)


def train(args) -> dict:
    out = Path(args.out)
    rank = int(os.environ.get("RANK", "0"))
    with holding_out(args, out, rank):
        saved = read_checkpoint_meta(out) if args.resume else None
        if saved is not None:
            check_saved_run(out, saved)
            args = resumed_arguments(args, saved.get("args", {}), out,
                                     saved.get("run_state", {}).get("finished", False))
            if run_has_ended(args, out, saved):
                if rank == 0:
                    write_metrics(out, saved["history"])
                return saved["history"][-1] if saved["history"] else {}
        run = start_run(args, out, saved)
        # from the first step: a signal before it (loading the data, compiling) has nothing to
        # save, and ends the run as it would have (main says so in one line)
        with run.stop:
            try:
                while not run.state.finished and (run.budget.enabled or run.state.epoch < run.args.epochs):
                    steps_done, loss_sum, started = train_epoch(run)
                    if steps_done or run.state.finished:
                        rng_states = run.gather_rng_states()        # every process, for rank 0's checkpoint
                        if run.main_process and (steps_done or not run.history):
                            evaluate_and_save(run, steps_done, loss_sum, started, rng_states)
            except TrainingStopped:         # every process stops at the same step (agree_after_step)
                leave_together(run)
                raise
        leave_together(run)
    return run.history[-1] if run.history else {}


def leave_together(run: Run) -> None:
    """Every process leaves the process group together (not after an error only one of them
    raised: the others would wait in the barrier forever), none while rank 0 still evaluates and
    saves. How the processes then end: ``cli``."""
    if run.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def stopped_run(run: Run) -> TrainingStopped:
    """What a run stopped by a signal says: where it stopped and how to go on (its checkpoint was
    just saved, by the step's agreement)."""
    state = run.state
    return TrainingStopped(run.stop.signum, f"at step {state.global_step} (epoch {state.epoch + 1}, step "
                                            f"{state.step_in_epoch} of {run.steps_per_epoch})", run.out)


def start_run(args, out: Path, saved: dict | None) -> Run:
    """Everything before the first step (``out`` checked and held, a resumed run's own arguments
    and checkpoint metadata ``saved`` read, by ``train``): threads, the model (from --init-weights
    or the checkpoint), the data, the precision and the (compiled) step."""
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    # for the evaluations (see keep_freed_memory); a D=128 training step on 2 threads faults no
    # page in either way and ran as fast (1482 vs 1570 samples/s, best of 3, within the spread)
    keep_freed_memory()
    rank, world, device, group = setup_distributed()
    if saved is not None:
        check_same_processes(args, out, saved, world)
    torch.manual_seed(torch_seed(args.seed + rank))
    # quoted as a shell reads it: an --out with a space in it was recorded as two words, and the
    # command behind the weights could not be run again as written
    command = "python -m training.train " + shlex.join(sys.argv[1:] if args.command_line is None
                                                       else args.command_line)

    # the model, --init-weights and the checkpoint before the data, so that a mismatch is refused
    # in seconds, not after loading Human3.6M (none of them draws from the data's random numbers)
    config = model_config_from_args(args)
    model = CFINet(config).to(device)
    if args.attention == "sdpa":
        use_fused_attention(model)
    state = RunState()
    if args.init_weights and not args.resume:      # a resumed run's checkpoint has its start already
        state.init_weights = init_from_weights(model, args.init_weights, config)
    optimizer = make_optimizer(model, args.lr, device)
    ema = WeightEMA(model, args.ema_decay) if args.ema_decay > 0 else None
    history: list[dict] = []
    resumed_rng = None
    if saved is not None:
        state, history = restore_run(args, out, model, optimizer, ema, saved, rank, device)
        resumed_rng = process_rng_state(device)     # set again after the probes below, which draw from it
    try:
        train_set, test_set = load_data(args)
    except MemoryError as error:        # --synthetic 10**12: a numpy _ArrayMemoryError traceback
        raise RunRefused(f"the {'synthetic poses' if args.synthetic else 'data'} do not fit in memory ({error}); "
                         f"{'ask for fewer (--synthetic)' if args.synthetic else 'take fewer frames (--stride)'}") \
            from None
    fingerprint = data_fingerprint(train_set, test_set)
    if saved is not None:
        check_same_data(args, out, state.data_fingerprint, fingerprint)
        if rank == 0:
            write_metrics(out, history)
            print(f"resumed from {out} at epoch {state.epoch}, step {state.global_step}", file=sys.stderr)
    state.data_fingerprint = fingerprint
    noisy_test_set = with_detector_noise(test_set, args.eval_noise_std) if args.eval_noise_std > 0 else None
    state.commands.append(command)
    state.threads = threads
    loss_fn = LOSSES[args.loss]
    inputs = torch.from_numpy(train_set.inputs_2d).to(device)
    targets = torch.from_numpy(train_set.targets_3d).to(device)
    if len(inputs) // world < args.batch_size:   # no full batch: no step would run (a budget run: forever)
        raise SystemExit(f"error: {len(inputs)} training poses{f' over {world} processes' if world > 1 else ''} "
                         f"do not fill one batch of {args.batch_size}; lower --batch-size (or --stride)")

    input_domain = trained_input_domain(args, targets)
    precision, precision_note = run_precision(args, state, model, inputs, targets, loss_fn, device,
                                              (lambda chosen: rank0_precision(chosen, group)) if world > 1 else None)
    ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                 if world > 1 else model)
    forward_loss, state.compile = build_forward_loss(
        ddp_model, loss_fn, precision, device, "off" if world > 1 else args.compile,
        inputs[:args.batch_size], targets[:args.batch_size])
    scaler = grad_scaler(precision, device)
    if scaler is not None and state.grad_scaler:    # resumed in fp16: the scale it had reached
        scaler.load_state_dict(state.grad_scaler)
    if resumed_rng is not None:
        # as the checkpoint left it: the probes' steps drew dropout masks from it, so a resumed run
        # with --dropout went on otherwise than the uninterrupted one
        set_process_rng_state(resumed_rng, device)
    budget = Budget(args.budget_minutes, args.budget_samples)
    steps_per_epoch = len(inputs) // world // args.batch_size
    if args.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.max_steps_per_epoch)
    if args.overwrite and rank == 0:
        # last, after every check that can refuse the run: cleared before the input domain, the
        # precision probe and torch.compile, a run those refused (--compile on without a C++
        # compiler) left nothing of the earlier run
        clear_earlier_run(args, out)
    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"train {len(train_set)} poses, test {len(test_set)}, {n_params / 1e6:.2f}M parameters, "
              f"device {device}, world {world}, {threads} threads, precision {precision}{precision_note}, "
              f"{state.compile}, attention {args.attention}",
              file=sys.stderr)
    return Run(args=args, out=out, rank=rank, world=world, device=device, group=group, threads=threads, model=model,
               optimizer=optimizer, ema=ema, state=state, history=history, inputs=inputs, targets=targets,
               test_set=test_set, noisy_test_set=noisy_test_set, input_domain=input_domain,
               forward_loss=forward_loss, scaler=scaler, budget=budget,
               schedule=BudgetSchedule(args.lr, args.schedule, args.warmup) if budget.enabled else None,
               steps_per_epoch=steps_per_epoch, step_timer=StepTimer(state.typical_step_seconds or None))


def restore_run(args, out: Path, model: CFINet, optimizer: torch.optim.Optimizer, ema: WeightEMA | None,
                meta: dict, rank: int, device: torch.device) -> tuple[RunState, list[dict]]:
    """--resume: the model, optimizer, EMA and this process's random state as the checkpoint (its
    metadata ``meta``) left them; returns the run's state and its evaluations so far."""
    meta = load_checkpoint(out, model, optimizer, ema, meta=meta, rank=rank, device=device)
    saved_state = meta.get("run_state", {})
    state = RunState(**{**asdict(RunState()), **saved_state, "epoch": meta["epoch"]})
    if "cpu_seconds" not in saved_state:    # a checkpoint from before the count: its one part
        state.cpu_seconds = state.train_seconds * state.threads * meta.get("processes", 1)
    return state, meta["history"]


def check_same_processes(args, out: Path, meta: dict, world: int) -> None:
    """--resume with as many processes as the run had (its checkpoint's metadata ``meta``): each
    process draws its own batches and dropout masks and resumes from its own random state, and the
    batch of a step is --batch-size x the processes. (A checkpoint from before the count, with rank
    0's random state only, resumes as it did.)"""
    saved = meta.get("processes")
    if saved is not None and saved != world:
        def processes(n: int) -> str:
            return f"{n} process{'es' if n > 1 else ''}"
        raise RunRefused(f"--resume: the run in {out} was trained by {processes(saved)}, this is {processes(world)}; "
                         f"resume it with as many (torchrun --nproc-per-node {saved}), or start a new run from its "
                         f"weights: --init-weights {out / args.name}.safetensors --out <new folder>")


def data_fingerprint(train_set: PoseSet, test_set: PoseSet) -> dict:
    """What a resumed run must find again in its data: the training and test poses' counts and a
    SHA-256 of the arrays it learns from and is measured on (2D inputs, 3D targets, actions).
    Whole arrays: S1 and S5-S8 (1.46 M poses, 0.5 GB) hash in 0.6 s, against 7 s to load them."""
    def digest(poses: PoseSet) -> str:
        sha = hashlib.sha256()
        for array in (poses.inputs_2d, poses.targets_3d, poses.action_ids):
            array = np.ascontiguousarray(array)
            sha.update(f"{array.dtype.str}{array.shape}".encode())
            sha.update(memoryview(array).cast("B"))
        return sha.hexdigest()

    return {"train_poses": len(train_set), "test_poses": len(test_set),
            "train_sha256": digest(train_set), "test_sha256": digest(test_set)}


def check_same_data(args, out: Path, saved: dict, found: dict) -> None:
    """--resume on the data the run was started on (its checkpoint's fingerprint ``saved``); the
    files may have moved (--data-3d and --cameras may change), their poses may not: another
    --data-3d resumed, its epoch closed without a step, and metrics.jsonl mixed two test sets.
    (A checkpoint from before the fingerprint has none to compare.)"""
    if not saved or saved == found:
        return
    differences = []
    for part, name in (("train", "training"), ("test", "test")):
        count = f"{part}_poses"
        if found[count] != saved.get(count):
            differences.append(f"{found[count]} {name} poses (the run's: {saved.get(count)})")
        elif found[f"{part}_sha256"] != saved.get(f"{part}_sha256"):
            differences.append(f"other {name} poses (as many, {found[count]}, but not the same)")
    files = (f"--synthetic {args.synthetic}" if args.synthetic else f"--data-3d {args.data_3d} --cameras {args.cameras}"
             + (f" --data-2d {args.data_2d}" if args.data_2d else ""))
    raise RunRefused(f"--resume: {files} give {' and '.join(differences)}; "
                     f"resume with the data the run was started on (moved files are fine), or start a new run from "
                     f"its weights: --init-weights {out / args.name}.safetensors --out <new folder>")


def rank0_precision(precision: str, group) -> str:
    """Rank 0's ``precision``, on every process of a torchrun run (each must call it)."""
    index = torch.tensor([PRECISIONS.index(precision)], dtype=torch.int64)
    torch.distributed.broadcast(index, src=0, group=group)
    return PRECISIONS[int(index)]


def run_precision(args, state: RunState, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  loss_fn, device: torch.device, agree: Callable[[str], str] | None = None) -> tuple[str, str]:
    """The precision to train in and how it was chosen (for the log), recorded in ``state``; with
    ``agree`` (several processes) the one it returns for this process's choice."""
    if args.amp == "auto" and state.precision and state.cpu == cpu_model():
        # resumed on the same kind of CPU: the precision the run started in, not a new probe, which
        # other work on the machine can skew (a probe beside a test run once took fp32 at 1.7x the
        # step time of the bf16 the run had started in)
        precision, note, timings = state.precision, " (as the run started on this CPU model)", {}
    else:
        precision, timings = probe_precision(args, model, inputs, targets, loss_fn, device)
        note = f" (probe: {', '.join(f'{k} {v:.3f} s/step' for k, v in timings.items())})" if timings else ""
    if agree is not None:
        # every process probes on its own, and two sharing the cores can time bf16 apart: one
        # trained in bf16, the other in fp32, and the weights' record named rank 0's alone
        agreed = agree(precision)
        note += "" if agreed == precision else f" (rank 0's choice: {agreed})"
        precision = agreed
    if not state.typical_step_seconds and precision in timings:
        state.typical_step_seconds = timings[precision]
    state.precision, state.cpu = precision, cpu_model()
    for seen, now in ((state.cpus, state.cpu), (state.precisions, precision)):
        if now not in seen:
            seen.append(now)
    return precision, note


def train_epoch(run: Run) -> tuple[int, torch.Tensor, float]:
    """The current epoch's steps from where it stands (mid-epoch in a resumed run) to its end or to
    the end of the budget; returns its steps, summed loss and start time, for its evaluation."""
    args, state, optimizer = run.args, run.state, run.optimizer
    run.model.train()
    generator = torch.Generator().manual_seed(epoch_order_seed(args.seed, state.epoch))
    order = torch.randperm(len(run.inputs), generator=generator)[run.rank::run.world].to(run.device)
    first_step = state.step_in_epoch
    started, loss_sum, steps_done = time.time(), torch.zeros(()), 0
    if first_step:                  # resumed mid-epoch: the steps before the checkpoint count too
        loss_sum, steps_done = torch.tensor(state.epoch_loss_sum), state.epoch_steps
    last_checkpoint = clock()
    desc = f"epoch {state.epoch + 1}" + ("" if run.budget.enabled else f"/{args.epochs}")
    bar = tqdm(range(first_step, run.steps_per_epoch), desc=desc, disable=not run.main_process, unit="step",
               initial=first_step, total=run.steps_per_epoch)
    for step in bar:
        step_started = clock()
        if run.schedule is not None:
            progress = run.budget.progress(state.train_seconds, state.samples)
            if progress >= 1.0:
                state.finished = True
                break
            for group in optimizer.param_groups:
                group["lr"] = run.schedule.lr(progress)
        idx = order[step * args.batch_size:(step + 1) * args.batch_size]
        augmentation_rng = torch.Generator(device=run.device).manual_seed(
            augmentation_seed(args.seed, run.rank, state.global_step))
        loss = train_step(run.forward_loss, optimizer, run.inputs[idx], run.targets[idx], args, run.ema,
                          augmentation_rng, run.scaler)
        loss_sum += loss
        steps_done += 1
        state.step_in_epoch = step + 1
        state.global_step += 1
        state.samples += len(idx) * run.world
        now = clock()
        counted = run.step_timer.count(now - step_started)
        state.train_seconds += counted
        # every process's threads: a torchrun run of 2 processes counted the CPU time of one
        state.cpu_seconds += counted * run.threads * run.world
        state.typical_step_seconds = run.step_timer.typical
        if run.world > 1 and run.budget.minutes > 0:
            # every rank must see the same budget: one that stopped alone would leave the
            # others waiting in the next step's all-reduce
            seconds = torch.tensor([state.train_seconds], dtype=torch.float64, device=run.device)
            torch.distributed.all_reduce(seconds, op=torch.distributed.ReduceOp.MAX)
            state.train_seconds = float(seconds)
        if steps_done % 20 == 1:
            check_finite(None, None, loss.item(), state, run.out)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        checkpoint_now, stop_now = run.agree_after_step(now - last_checkpoint > args.checkpoint_minutes * 60)
        if checkpoint_now:
            # every process, together: each gives its random state (a rank that stopped alone
            # would leave the others waiting)
            check_finite(run.model, run.ema, float(loss_sum), state, run.out)
            rng_states = run.gather_rng_states()
            if run.main_process:
                state.epoch_loss_sum, state.epoch_steps = float(loss_sum), steps_done
                run.save_checkpoint(rng_states)
            last_checkpoint = clock()
        if stop_now:
            bar.close()
            raise stopped_run(run)
    bar.close()
    if run.budget.enabled and run.budget.progress(state.train_seconds, state.samples) >= 1.0:
        state.finished = True
    if state.step_in_epoch >= run.steps_per_epoch:
        state.epoch += 1
        state.step_in_epoch = 0
        if run.schedule is None:
            for group in optimizer.param_groups:
                group["lr"] *= args.lr_decay
    return steps_done, loss_sum, started


def evaluate_and_save(run: Run, steps_done: int, loss_sum: torch.Tensor, started: float,
                      rng_states: list[dict]) -> dict:
    """Evaluate (the EMA and the raw weights), then write the weights, curves, checkpoint (with
    every process's random state, ``rng_states``) and the metrics line, in that order (see below)."""
    args, state, model, ema = run.args, run.state, run.model, run.ema
    mean_loss = float(loss_sum) / max(steps_done, 1)
    check_finite(model, ema, mean_loss, state, run.out)
    eval_model = model
    record = {"epoch": state.epoch, "steps": steps_done, "global_step": state.global_step,
              "samples": state.samples, "train_loss": mean_loss,
              "lr": run.optimizer.param_groups[0]["lr"], "train_seconds": state.train_seconds}
    # a bar for each pass: on all of S9 each takes minutes, which passed without a sign
    def evaluate(weights: CFINet, poses: PoseSet, label: str) -> dict:
        return evaluate_pose_set(weights, poses, progress=run.main_process, label=label)

    if ema is not None:
        raw = evaluate(model, run.test_set, "test, raw weights")
        record["test_mpjpe_mm_raw"] = raw["mpjpe"]["mean_over_actions"]
        record["test_p_mpjpe_mm_raw"] = raw["p_mpjpe"]["mean_over_actions"]
        eval_model = CFINet(model.config).to(run.device)
        eval_model.load_state_dict(ema.state_dict(model))
    result = evaluate(eval_model, run.test_set, "test, EMA weights" if ema is not None else "test")
    record["test_mpjpe_mm"] = result["mpjpe"]["mean_over_actions"]
    record["test_p_mpjpe_mm"] = result["p_mpjpe"]["mean_over_actions"]
    if run.noisy_test_set is not None:
        noisy = evaluate(eval_model, run.noisy_test_set, "test, noisy 2D")
        record["test_mpjpe_mm_noisy"] = noisy["mpjpe"]["mean_over_actions"]
        record["test_p_mpjpe_mm_noisy"] = noisy["p_mpjpe"]["mean_over_actions"]
    record["seconds"] = time.time() - started
    run.history.append(record)
    print(json.dumps(record), file=sys.stderr)
    # The weights are rewritten at every evaluation, so an interrupted run still leaves usable
    # weights; before the checkpoint, which may mark the run finished: a run stopped between the
    # two was "done" when resumed, with the last evaluation's weights (or none)
    metrics = {"mpjpe_mm": record["test_mpjpe_mm"], "p_mpjpe_mm": record["test_p_mpjpe_mm"],
               "test_stride": args.test_stride, "epoch": state.epoch, "samples": state.samples}
    if run.noisy_test_set is not None:
        metrics.update(noisy_2d_std=args.eval_noise_std, noisy_mpjpe_mm=record["test_mpjpe_mm_noisy"],
                       noisy_p_mpjpe_mm=record["test_p_mpjpe_mm_noisy"])
    save_weights(eval_model, run.out / args.name, training=training_record(args, state),
                 metrics={record_name(test_set_names(args), bool(args.data_2d)): metrics},
                 input_domain=run.input_domain)
    plot_curves(run.history, run.out / "curves.png")
    run.save_checkpoint(rng_states)
    append_metrics(run.out, run.history)
    return record


class StepTimer:
    """The training time a step counts against the budget: its wall time, but at most
    ``STALL_FACTOR`` x the typical step, so a suspended process (SIGSTOP, a laptop's sleep,
    a debugger) does not spend the budget without training."""
    STALL_FACTOR = 5.0

    def __init__(self, typical: float | None = None):
        # the run's typical step so far (a resumed run's, or the precision probe's): uncapped over
        # its first 10 steps, one suspended in them spent a minutes budget (and a resumed part's
        # first steps were the same)
        self.typical = typical

    def count(self, seconds: float) -> float:
        if self.typical is None:
            self.typical = seconds
            return seconds
        counted = min(seconds, self.STALL_FACTOR * self.typical)
        self.typical = 0.9 * self.typical + 0.1 * counted
        return counted


def check_finite(model: torch.nn.Module | None, ema: WeightEMA | None, loss: float, state: RunState,
                 out: Path) -> None:
    """Stop a diverged run before it writes anything: the last checkpoint and weights stay as they
    were. The way on names --resume only where there is a checkpoint (``out``'s): a run that
    diverged at its first steps was told to --resume, which is refused without one."""
    problem = None
    if not torch.isfinite(torch.tensor(loss)):
        problem = f"the training loss is {loss}"
    tensors = [] if model is None else [*model.parameters(), *(ema.shadow if ema is not None else [])]
    if problem is None and tensors and not all(bool(torch.isfinite(t).all()) for t in tensors):
        problem = "the weights hold non-finite values"
    if problem:
        saved = ("nothing was saved after the last checkpoint. Lower --lr or use --amp off, then --resume"
                 if has_checkpoint(out) else
                 "no checkpoint had been saved. Lower --lr or use --amp off, and start the run again")
        raise TrainingDiverged(f"training diverged at step {state.global_step} (epoch {state.epoch + 1}): "
                               f"{problem}; {saved}")


# What refuses a run in one line (main; training.study alike): diverged; bad --out, --resume,
# --init-weights, subjects or data files; --compile on that fails; a save the disk cannot hold.
RUN_REFUSALS = (TrainingDiverged, RunRefused, CheckpointError, WeightsError, DatasetError, KeyError, CompileFailed,
                WriteError)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.command_line = argv
    try:
        if argv is not None:        # called from Python: a signal is the caller's to handle
            return train(args)
        # before the first step (the run's own StopRequests from there) SIGTERM too ends the run in
        # one line, the folder it made removed (holding_out): it was SIGTERM's default death, which
        # left that folder holding .lock
        with StopSignalsInterrupt("training"):
            return train(args)
    except RUN_REFUSALS as error:
        if argv is not None:
            raise
        print(f"error: {error_text(error)}", file=sys.stderr)
        raise SystemExit(1) from None
    except TrainingStopped as stopped:
        if argv is not None:
            raise
        if int(os.environ.get("RANK", "0")) == 0:     # one line, not one per process
            print(f"training: {stopped}", file=sys.stderr)
        raise SystemExit(stopped.exit_code) from None
    except KeyboardInterrupt as interrupt:
        if argv is not None:
            raise
        # before the first step (nothing to save yet), or a second signal during a stop
        print(f"training: interrupted by {interrupt_signal(interrupt).name}; --out holds what the run's last "
              f"checkpoint wrote (nothing, before the first)", file=sys.stderr)
        raise SystemExit(interrupted_exit_code(interrupt)) from None


def cli() -> int:
    """The ``cfi-train`` command (setup.py) and ``python -m training.train``: exit status 0 after a
    run (``main`` returns the run's record, and the wrapper setuptools writes hands what it gets to
    ``sys.exit``, which printed that dict and exited 1 after a run that had succeeded).

    A process of a torchrun run (WORLD_SIZE > 1) ends with ``os._exit``, its output flushed, not
    through the interpreter's finalization: gloo's worker threads drop their last collectives a
    moment after those complete, and one that did so while Python finalized needed the GIL for the
    tensors' Python objects and was ended inside a destructor: "terminate called without an active
    exception", SIGABRT and exit -6 after a run that had succeeded (a core of the DDP test: a
    barrier's work freeing an all_gather's in ``ProcessGroupGloo::runLoop``). Every file the run
    writes is synced before it is renamed into place (``cfi_pose_ros.files``), so nothing is lost."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        main()
        return 0
    try:
        main()
        status = 0
    except SystemExit as leaving:
        status = exit_status(leaving.code)
    except BaseException:               # a traceback as Python would print it, then the same exit
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def exit_status(code) -> int:
    """The status ``sys.exit(code)`` ends a process with: 0 for None, an int as it is, anything
    else printed to stderr and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    cli()
