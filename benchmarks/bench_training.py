"""Training throughput: the trainer's step as it was against the new defaults, in one run.

Every row runs the trainer's own step (``training.train.train_step``: flip and
noise augmentation, forward, MPJPE loss, backward, Adam) on the same model
(D=128, L_d=3, H=8) and batch (512) for ``--steps`` timed steps after the
warm-up (compiling happens at set-up, before any step is timed), and prints
samples/s and the ratio to the first row, "before (fp32 defaults)": fp32 eager,
plain-matmul attention, Adam's per-parameter loop, a ``loss.item()`` every step,
torch's default threads; the trainer as it was before the speed work. "before
(shipped weights' flags)" adds ``--amp bf16 --threads 1``, the flags the previous
weights were trained with. The rest take one choice away from the new defaults
at a time, so each choice is measured (the precision probe runs once per
attention kernel, so its noise cannot give such a row a precision of its own).
Rounds alternate the rows; the best round of each row is reported (the machine
is shared).

Last it prints the bound the step's matrix products put on any trainer of this
model on this machine: their FLOPs per step (``torch.utils.flop_counter``)
over the best rate this machine multiplies large matrices at, in the new
defaults' precision, measured in the same run. No kernel choice outside the
products can beat that many samples/s.

The figures also go to ``--out`` (``outputs/bench_training/``): ``throughput.json``
and ``throughput.png``, each row's samples/s against the 3x target and that bound.

    python -P benchmarks/bench_training.py                 # ~3-5 minutes on 2 cores
    python -P benchmarks/bench_training.py --steps 5 --rounds 1 --dim 32   # smoke run
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

from cfi_pose_ros.arguments import non_negative_int, positive_int
from cfi_pose_ros.model import CFIConfig, CFINet, use_fused_attention
from training.losses import LOSSES
from training.speed import cpu_model, default_threads
from training.synthetic import synthetic_pose_set
from training.train import NO_AUGMENTATION, build_forward_loss, make_optimizer, probe_precision, train_step


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str = "auto"     # auto = the trainer's probe
    threads: int = 0            # 0 = every core (new default); -1 = torch's own default
    compile: str = "auto"
    attention: str = "matmul"
    fused_adam: bool = True
    item_every_step: bool = False


BEFORE = Variant("before (fp32 defaults)", precision="fp32", threads=-1, compile="off", attention="matmul",
                 fused_adam=False, item_every_step=True)
NEW_DEFAULTS = Variant("new defaults")
VARIANTS = (
    BEFORE,
    Variant("before (shipped weights' flags: --amp bf16 --threads 1)", precision="bf16", threads=1,
            compile="off", attention="matmul", fused_adam=False, item_every_step=True),
    NEW_DEFAULTS,
    Variant("new defaults, fp32 forced", precision="fp32"),
    Variant("new defaults, bf16 forced", precision="bf16"),
    Variant("new defaults without torch.compile", compile="off"),
    Variant("new defaults with SDPA attention", attention="sdpa"),
    Variant("new defaults with Adam's loop", fused_adam=False),
)


class Row:
    def __init__(self, variant: Variant, args, data, probed: dict[str, str]):
        """``probed``: the trainer's precision probe's answer per attention kernel, shared by the
        rows. The probe times eager steps of the model with its own Adam, so it asks the same
        question of every row with that attention; probed again per row, its noise gave a row
        another precision than the new defaults' (a row meant to differ only in Adam or compiling
        then differed in precision too)."""
        self.variant = variant
        self.threads = {0: default_threads(), -1: torch.get_num_threads()}.get(variant.threads, variant.threads)
        torch.set_num_threads(self.threads)
        torch.manual_seed(0)
        device = torch.device("cpu")
        self.model = CFINet(CFIConfig(dim=args.dim, depth=args.depth, heads=args.heads))
        if variant.attention == "sdpa":
            use_fused_attention(self.model)
        self.optimizer = (make_optimizer(self.model, 1e-4, device) if variant.fused_adam
                          else torch.optim.Adam(self.model.parameters(), lr=1e-4))
        self.x, self.y = data
        loss_fn = LOSSES["mpjpe"]
        batch = (self.x[:args.batch_size], self.y[:args.batch_size])
        self.precision = variant.precision
        if variant.precision == "auto":
            if variant.attention not in probed:
                probed[variant.attention], _ = probe_precision(SimpleNamespace(amp="auto", batch_size=args.batch_size),
                                                               self.model, *data, loss_fn, device)
            self.precision = probed[variant.attention]
        self.forward_loss, self.compiled = build_forward_loss(self.model, loss_fn, self.precision, device,
                                                              variant.compile, *batch)
        self.step_args = SimpleNamespace(**{**vars(NO_AUGMENTATION), "no_flip": False, "noise_std": 0.01,
                                            "noise_prob": 0.5})
        self.batch_size = args.batch_size
        self.best = 0.0

    def run(self, steps: int, warmup: int) -> float:
        torch.set_num_threads(self.threads)
        n = len(self.x) // self.batch_size
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            sl = slice((i % n) * self.batch_size, (i % n + 1) * self.batch_size)
            loss = train_step(self.forward_loss, self.optimizer, self.x[sl], self.y[sl], self.step_args)
            if self.variant.item_every_step:
                loss.item()
        rate = steps * self.batch_size / (time.perf_counter() - start)
        self.best = max(self.best, rate)
        return rate


def matmul_flops_per_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass's matrix products (mm, addmm, bmm) at this batch."""
    counter = FlopCounterMode(display=False)
    with counter:
        LOSSES["mpjpe"](model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def peak_matmul_rate(precision: str, threads: int, size: int = 2048, repeats: int = 8) -> float:
    """The best FLOP/s of a large square product in ``precision`` (bf16: autocast, as the trainer
    runs), best of ``repeats``: the most this machine's cores give any matrix product."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        best = float("inf")
        for _ in range(repeats + 1):              # the first one warms up
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


TARGET_RATIO = 3.0      # issue #12: the new defaults at >= 3x the samples/s of the fp32 defaults


def plot(table: dict, path: Path) -> None:
    """Each row's best samples/s as a bar, with the 3x target and the matrix products' bound."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    baseline = rows[0]["samples_per_s"]
    fig, ax = plt.subplots(figsize=(9.0, 0.45 * len(rows) + 2.2))
    names = [row["trainer"] for row in rows][::-1]          # the first row on top
    rates = [row["samples_per_s"] for row in rows][::-1]
    bars = ax.barh(names, rates, color=["tab:orange" if n.startswith("before") else "tab:blue" for n in names])
    ax.bar_label(bars, labels=[f"{r:.0f} ({r / baseline:.2f}x)" for r in rates], padding=3, fontsize=8)
    ax.axvline(TARGET_RATIO * baseline, color="tab:red", linestyle="--",
               label=f"target: {TARGET_RATIO:g}x before ({TARGET_RATIO * baseline:.0f})")
    bound = table["products_bound_samples_per_s"]
    ax.axvline(bound, color="0.3", linestyle=":", label=f"matrix products alone at peak rate ({bound:.0f})")
    ax.set(xlabel="samples/s (best round)", xlim=(0, 1.15 * max(bound, *rates)),
           title=f"Training throughput, D={table['model']['dim']} batch {table['model']['batch_size']}\n"
                 f"{table['cpu']}")
    ax.title.set_fontsize(9)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(table: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(table, indent=2) + "\n")
    plot(table, out / "throughput.png")
    return out / "throughput.json", out / "throughput.png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=positive_int, default=128)
    parser.add_argument("--depth", type=positive_int, default=3)
    parser.add_argument("--heads", type=positive_int, default=8, help="must divide --dim")
    parser.add_argument("--batch-size", type=positive_int, default=512)
    parser.add_argument("--steps", type=positive_int, default=15, help="timed steps per row and round")
    parser.add_argument("--warmup", type=non_negative_int, default=3)
    parser.add_argument("--rounds", type=positive_int, default=2)
    parser.add_argument("--out", default="outputs/bench_training", help="throughput.json and .png go here")
    args = parser.parse_args(argv)
    try:
        CFIConfig(dim=args.dim, depth=args.depth, heads=args.heads)
    except ValueError as error:     # --heads that does not divide --dim: a traceback once the data was built
        parser.error(f"--dim {args.dim} --heads {args.heads}: {error}")

    poses = synthetic_pose_set(args.batch_size * 8, seed=0)
    data = (torch.from_numpy(poses.inputs_2d), torch.from_numpy(poses.targets_3d))
    cpu = f"{cpu_model()}, {default_threads()} cores usable, torch {torch.__version__}"
    print(f"CPU: {cpu}; "
          f"model D={args.dim} L_d={args.depth} H={args.heads}, batch {args.batch_size}", flush=True)
    rows, probed = [], {}
    for variant in VARIANTS:
        started = time.perf_counter()
        rows.append(Row(variant, args, data, probed))
        print(f"  set up {variant.name}: {rows[-1].precision}, {rows[-1].compiled}, "
              f"{rows[-1].threads} threads ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)
    for round_index in range(args.rounds):
        for row in rows:
            rate = row.run(args.steps, args.warmup)
            print(f"  round {round_index + 1}: {row.variant.name}: {rate:.0f} samples/s", file=sys.stderr, flush=True)

    baseline = rows[0].best
    print()
    print("| trainer | precision | threads | compile | attention | Adam | samples/s | vs before (fp32 defaults) |")
    print("|---|---|---:|---|---|---|---:|---:|")
    for row in rows:
        v = row.variant
        print(f"| {v.name} | {row.precision} | {row.threads} | {row.compiled.split(' (')[0]} | {v.attention} | "
              f"{'fused' if v.fused_adam else 'loop'} | {row.best:.0f} | {row.best / baseline:.2f}x |")

    new_defaults = next(row for row in rows if row.variant == NEW_DEFAULTS)
    flops = matmul_flops_per_step(new_defaults.model, data[0][:args.batch_size], data[1][:args.batch_size])
    rate = peak_matmul_rate(new_defaults.precision, new_defaults.threads)
    floor_s = flops / rate
    print()
    print(f"Matrix products of one step: {flops / 1e9:.1f} GFLOP; this machine's best {new_defaults.precision} "
          f"product rate: {rate / 1e9:.0f} GFLOP/s ({new_defaults.threads} threads), so the products alone take "
          f">= {floor_s * 1e3:.0f} ms per step: at most {args.batch_size / floor_s:.0f} samples/s, "
          f"{args.batch_size / floor_s / baseline:.2f}x before, even if everything else cost nothing. "
          f"The new defaults' step: {args.batch_size / new_defaults.best * 1e3:.0f} ms.")

    table = {
        "cpu": cpu, "model": {"dim": args.dim, "depth": args.depth, "heads": args.heads, "batch_size": args.batch_size},
        "steps": args.steps, "rounds": args.rounds,
        "rows": [{"trainer": row.variant.name, "precision": row.precision, "threads": row.threads,
                  "compile": row.compiled, "attention": row.variant.attention,
                  "adam": "fused" if row.variant.fused_adam else "loop", "samples_per_s": row.best,
                  "vs_before": row.best / baseline} for row in rows],
        "matmul_gflop_per_step": flops / 1e9, "peak_matmul_gflop_per_s": rate / 1e9,
        "products_bound_samples_per_s": args.batch_size / floor_s,
    }
    print("wrote " + " and ".join(map(str, write_results(table, Path(args.out)))))


if __name__ == "__main__":
    main()
