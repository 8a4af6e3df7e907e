"""Train the CFI lifter on Human3.6M (or synthetic poses).

Defaults are the paper's recipe: Adam, lr 1e-3 decayed by 0.95 per epoch,
20 epochs, batch 512, MPJPE loss, L_d=3, D=512, H=8, train-time flip
augmentation. Writes into ``--out``: the final weights (safetensors + JSON),
a resumable checkpoint, ``metrics.jsonl`` (one line per epoch) and
``curves.png`` (loss and test MPJPE per epoch).

    python -m training.train --out runs/paper                 # paper recipe
    python -m training.train --out runs/paper --resume        # continue it
    torchrun --nproc-per-node 4 -m training.train --out runs/ddp   # several GPUs (DDP)
    python -m training.train --no-cfi-initial --no-cfi-local --no-cfi-global --no-gramlp  # Table 4 baseline
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from cfi_pose_ros.model import CFIConfig, CFINet
from cfi_pose_ros.weights import save_weights
from training.augment import detector_noise, random_flip
from training.checkpoint import load_checkpoint, save_checkpoint
from training.evaluate import DEFAULT_DATA, evaluate_pose_set
from training.h36m import TRAIN_SUBJECTS, PoseSet, load_h36m
from training.losses import LOSSES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--data-3d", default=str(DEFAULT_DATA / "data_3d_h36m.npz"))
    data.add_argument("--cameras", default=str(DEFAULT_DATA / "cameras.json"))
    data.add_argument("--data-2d", default=None, help="detected 2D for training/testing (GT 2D when absent)")
    data.add_argument("--train-subjects", nargs="+", default=list(TRAIN_SUBJECTS))
    data.add_argument("--test-subjects", nargs="+", default=["S9"])
    data.add_argument("--stride", type=int, default=1, help="training frame stride")
    data.add_argument("--test-stride", type=int, default=1, help="test frame stride for per-epoch evaluation")
    data.add_argument("--synthetic", type=int, default=0,
                      help="train on N synthetic poses instead of Human3.6M (tests, smoke runs)")
    data.add_argument("--no-flip", action="store_true", help="disable train-time flip augmentation")
    data.add_argument("--noise-std", type=float, default=0.0,
                      help="max std of detector-like 2D jitter (normalised units; 0.01 = 5 px at 1000 px)")
    data.add_argument("--noise-prob", type=float, default=0.5, help="share of each batch that gets jitter")
    model = p.add_argument_group("model (paper: depth 3, dim 512, heads 8)")
    model.add_argument("--dim", type=int, default=512)
    model.add_argument("--depth", type=int, default=3)
    model.add_argument("--heads", type=int, default=8)
    model.add_argument("--mlp-ratio", type=float, default=2.0)
    model.add_argument("--dropout", type=float, default=0.0)
    for branch in ("initial", "local", "global"):
        model.add_argument(f"--no-cfi-{branch}", action="store_true", help=f"ablate the CFI({branch}) term")
    model.add_argument("--no-gramlp", action="store_true", help="plain MLP instead of GraMLP")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=20)
    opt.add_argument("--batch-size", type=int, default=512)
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--lr-decay", type=float, default=0.95, help="multiplied into lr after every epoch")
    opt.add_argument("--loss", choices=sorted(LOSSES), default="mpjpe")
    opt.add_argument("--max-steps-per-epoch", type=int, default=0, help="cap on steps per epoch (0 = all)")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                     help="mixed precision: auto = bf16 on CUDA, off on CPU")
    opt.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--out", default="runs/cfi", help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.*")
    p.add_argument("--name", default="cfi", help="file name of the final weights in --out")
    return p


def model_config_from_args(args) -> CFIConfig:
    return CFIConfig(dim=args.dim, depth=args.depth, heads=args.heads, mlp_ratio=args.mlp_ratio,
                     dropout=args.dropout, use_cfi_initial=not args.no_cfi_initial,
                     use_cfi_local=not args.no_cfi_local, use_cfi_global=not args.no_cfi_global,
                     use_gramlp=not args.no_gramlp)


def load_data(args) -> tuple[PoseSet, PoseSet]:
    if args.synthetic:
        from training.synthetic import synthetic_pose_set
        return (synthetic_pose_set(args.synthetic, seed=args.seed),
                synthetic_pose_set(max(args.synthetic // 10, 64), seed=args.seed + 1))
    train = load_h36m(args.data_3d, args.cameras, tuple(args.train_subjects), args.data_2d, args.stride)
    test = load_h36m(args.data_3d, args.cameras, tuple(args.test_subjects), args.data_2d, args.test_stride)
    return train, test


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
    ax_err.plot(epochs, [h["test_mpjpe_mm"] for h in history], marker="o", label="MPJPE")
    ax_err.plot(epochs, [h["test_p_mpjpe_mm"] for h in history], marker="o", label="P-MPJPE")
    ax_err.set(xlabel="epoch", ylabel="mm", title="test error (mean over actions)")
    ax_err.legend()
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_record(args, epochs_done: int) -> dict:
    """What the weights' JSON says about how they were made."""
    data = "synthetic" if args.synthetic else {
        "dataset": "Human3.6M", "train_subjects": args.train_subjects,
        "input_2d": args.data_2d or "ground truth (projected with distortion)",
        "stride": args.stride, "flip_augmentation": not args.no_flip,
        "noise_std": args.noise_std, "noise_prob": args.noise_prob}
    return {
        "data": data, "epochs_done": epochs_done,
        "recipe": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "lr_decay", "loss",
                                                  "max_steps_per_epoch", "seed", "amp")},
        "command": "python -m training.train " + " ".join(sys.argv[1:]),
        "licence": "" if args.synthetic else "trained on Human3.6M: non-commercial research use only",
    }


def setup_distributed() -> tuple[int, int, torch.device]:
    """Rank, world size and device; DDP process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def autocast_context(mode: str, device: torch.device):
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" else "off"
    if mode == "off":
        return nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def train(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = setup_distributed()
    main_process = rank == 0
    torch.manual_seed(args.seed + rank)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train_set, test_set = load_data(args)
    config = model_config_from_args(args)
    model = CFINet(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history: list[dict] = []
    start_epoch = 0
    if args.resume and (out / "checkpoint.json").exists():
        meta = load_checkpoint(out, model, optimizer)
        history, start_epoch = meta["history"], meta["epoch"]
        if main_process:
            print(f"resumed from {out} at epoch {start_epoch}", file=sys.stderr)
    ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                 if world > 1 else model)
    loss_fn = LOSSES[args.loss]
    inputs = torch.from_numpy(train_set.inputs_2d).to(device)
    targets = torch.from_numpy(train_set.targets_3d).to(device)
    if main_process:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"train {len(train_set)} poses, test {len(test_set)}, {n_params / 1e6:.2f}M parameters, "
              f"device {device}, world {world}", file=sys.stderr)

    for epoch in range(start_epoch, args.epochs):
        model.train()
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(inputs), generator=generator)[rank::world].to(device)
        steps = len(order) // args.batch_size
        if args.max_steps_per_epoch:
            steps = min(steps, args.max_steps_per_epoch)
        started, loss_sum = time.time(), 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", disable=not main_process, unit="step")
        for step in bar:
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            x, y = inputs[idx], targets[idx]
            if not args.no_flip:
                x, y = random_flip(x, y)
            x = detector_noise(x, args.noise_std, args.noise_prob)
            with autocast_context(args.amp, device):
                pred = ddp_model(x)
            loss = loss_fn(pred.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        for group in optimizer.param_groups:
            group["lr"] *= args.lr_decay
        if not main_process:
            continue
        result = evaluate_pose_set(model, test_set)
        record = {"epoch": epoch + 1, "steps": steps, "train_loss": loss_sum / max(steps, 1),
                  "test_mpjpe_mm": result["mpjpe"]["mean_over_actions"],
                  "test_p_mpjpe_mm": result["p_mpjpe"]["mean_over_actions"],
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started}
        history.append(record)
        print(json.dumps(record), file=sys.stderr)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(out, model, optimizer, epoch + 1, history, {"args": vars(args)})
        # The weights are rewritten every epoch, so an interrupted run still leaves usable weights.
        save_weights(model, out / args.name, training=training_record(args, epoch + 1),
                     metrics={f"{'+'.join(args.test_subjects)}_{'gt2d' if not args.data_2d else 'detected2d'}": {
                         "mpjpe_mm": record["test_mpjpe_mm"], "p_mpjpe_mm": record["test_p_mpjpe_mm"],
                         "test_stride": args.test_stride, "epoch": epoch + 1}})
        plot_curves(history, out / "curves.png")

    if world > 1:
        torch.distributed.destroy_process_group()
    return history[-1] if history else {}


def main(argv: list[str] | None = None) -> dict:
    return train(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
