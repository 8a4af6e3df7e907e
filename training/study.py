"""Accuracy against compute: short budget runs of several widths and frame strides.

Each run is one ``training.train`` run with a time budget (warm-up + cosine unless the run is
marked onecycle, EMA, detector-noise augmentation unless marked no noise), evaluated on S9 with GT 2D
and with jittered 2D. Finished runs are kept under ``--out`` and skipped when
the study is run again, so it resumes. Writes ``<doc>.png`` (S9 MPJPE against
the training budget, one line per width/stride/variant) and ``<doc>.md`` (the
table), by default ``docs/accuracy_vs_compute.*``.

    python -m training.study                                  # the README's study (about 30 minutes on 2 cores)
    python -m training.study --runs d128_s5_b2 --out runs/study --doc runs/study/d128_s5_b2   # one run of it
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from training import train as train_module
from cfi_pose_ros.arguments import output_directory, positive_float
from cfi_pose_ros.files import WriteError, write_replacing
from training.checkpoint import CHECKPOINT_JSON, CheckpointError, has_checkpoint
from training.evaluate import error_text
from training.stopping import TrainingStopped


@dataclass(frozen=True)
class StudyRun:
    dim: int
    stride: int
    minutes: float
    schedule: str = "cosine"
    noise: bool = True
    extra: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        tags = [f"d{self.dim}", f"s{self.stride}", f"b{self.minutes:g}"]
        if self.schedule != "cosine":
            tags.append(self.schedule)
        if not self.noise:
            tags.append("nonoise")
        return "_".join(tags)

    @property
    def label(self) -> str:
        parts = [f"D={self.dim}", f"stride {self.stride}"]
        if self.schedule != "cosine":
            parts.append(self.schedule)
        if not self.noise:
            parts.append("no noise aug.")
        return ", ".join(parts)


def default_runs(short: float = 2.0, long: float = 4.0) -> list[StudyRun]:
    runs = [StudyRun(dim, 5, short) for dim in (64, 128, 256)]
    runs += [StudyRun(128, 1, short), StudyRun(128, 5, short, schedule="onecycle"),
             StudyRun(128, 5, short, noise=False)]
    # the longer budget with the schedule the short runs measured better
    runs += [StudyRun(dim, 5, long, schedule="onecycle") for dim in (64, 128)]
    return runs


# fp32: the precision probe's choice on this project's machines (benchmarks/bench_training.py), fixed
# here so that a probe disturbed by other work cannot change one run of the comparison.
COMMON = ["--amp", "off", "--depth", "3", "--heads", "8", "--batch-size", "512", "--lr", "2e-3", "--ema-decay", "0.999",
          "--test-stride", "10", "--eval-noise-std", "0.01", "--seed", "0", "--name", "cfi"]


def run_arguments(run: StudyRun, out: Path) -> list[str]:
    """The run's training command: --resume where an interrupted study left its checkpoint (train
    refuses --resume with nothing to resume, and a new run into a directory that holds one)."""
    noise = ["--noise-std", "0.01", "--noise-prob", "0.5"] if run.noise else ["--noise-std", "0"]
    resume = ["--resume"] if has_checkpoint(out / run.name) else []
    return COMMON + noise + ["--dim", str(run.dim), "--stride", str(run.stride),
                             "--budget-minutes", str(run.minutes), "--schedule", run.schedule,
                             "--out", str(out / run.name), *resume, *run.extra]


def refusal_text(error: Exception, directory: Path) -> str:
    """A refused run's reason as the study can act on it. train's closing advice ("pass --resume to
    continue it or --overwrite ...", "start the run again with --overwrite", "--init-weights ...
    --out <new folder>", "resume with the model flags ...") names train's flags, which the study
    sets itself; for a run folder that cannot be continued, the study's remedy is a fresh run there."""
    text = error_text(error)
    if not isinstance(error, (train_module.RunRefused, CheckpointError, train_module.TrainingDiverged)):
        return text                     # the data, the weights, a name: nothing the study's flags set
    for mark in ("; ", ". To "):
        reason, found, _ = text.rpartition(mark)
        if found:
            text = reason
            break
    if isinstance(error, train_module.TrainingDiverged):
        return text
    return (f"{text}; move {directory} away (or delete it) and run the study again to train this run afresh "
            f"(the finished runs are kept)")


TABLE_KEYS = ("samples", "test_mpjpe_mm", "test_p_mpjpe_mm")
TABLE_KEYS_OPTIONAL = ("test_mpjpe_mm_raw", "test_mpjpe_mm_noisy")   # a run without EMA or noise has none


def final_record(directory: Path) -> dict | None:
    """The last evaluation of a run that has spent its budget, read from its checkpoint's readable
    copy, else None: then the study resumes the run, and the trainer reads the checkpoint's own
    (checked) metadata. A copy that is not what a save writes (edited by hand, or damaged: a list,
    a "run_state" of a string, a last record without the table's numbers) is read as None too; it
    ended the study in an AttributeError or in its table's KeyError, at every run again."""
    try:
        meta = json.loads((directory / CHECKPOINT_JSON).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    run_state = meta.get("run_state") if isinstance(meta, dict) else None
    history = meta.get("history") if isinstance(meta, dict) else None
    if not (isinstance(run_state, dict) and run_state.get("finished") is True and isinstance(history, list)
            and history and isinstance(history[-1], dict)):
        return None
    record = history[-1]
    numbers = all(type(record.get(key)) in (int, float) for key in TABLE_KEYS) and all(
        type(record[key]) in (int, float) for key in TABLE_KEYS_OPTIONAL if key in record)
    return record if numbers else None


def table(rows: list[tuple[StudyRun, dict]]) -> str:
    lines = ["| run | D | stride | budget (min) | samples (M) | S9 MPJPE GT 2D | raw (no EMA) | P-MPJPE | "
             "MPJPE noisy 2D (5 px) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run, r in rows:
        lines.append(f"| {run.label} | {run.dim} | {run.stride} | {run.minutes:g} | {r['samples'] / 1e6:.2f} | "
                     f"{r['test_mpjpe_mm']:.1f} | {r.get('test_mpjpe_mm_raw', float('nan')):.1f} | "
                     f"{r['test_p_mpjpe_mm']:.1f} | {r.get('test_mpjpe_mm_noisy', float('nan')):.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[tuple[StudyRun, dict]], path: Path, curves: dict[str, list[dict]] | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_table) = plt.subplots(1, 2, figsize=(15, 5.5), gridspec_kw={"width_ratios": [1, 1.25]})
    groups: dict[str, list[tuple[float, float]]] = {}
    for run, r in rows:
        groups.setdefault(run.label, []).append((run.minutes, r["test_mpjpe_mm"]))
    for label, points in sorted(groups.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    for label, history in (curves or {}).items():
        ax.plot([h["train_seconds"] / 60 for h in history], [h["test_mpjpe_mm"] for h in history],
                ls="--", marker=".", label=f"{label} (evaluated during its run)")
        ax.set_xscale("log")
    ax.set(xlabel="training budget (minutes on this machine's 2 cores)", ylabel="S9 MPJPE (mm, GT 2D, EMA)",
           title="accuracy against compute")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax_table.axis("off")
    cells = [[run.label, f"{run.minutes:g}", f"{r['samples'] / 1e6:.2f}", f"{r['test_mpjpe_mm']:.1f}",
              f"{r.get('test_mpjpe_mm_raw', float('nan')):.1f}", f"{r.get('test_mpjpe_mm_noisy', float('nan')):.1f}"]
             for run, r in rows]
    tab = ax_table.table(cellText=cells, colLabels=["run", "min", "samples (M)", "MPJPE", "raw", "noisy 2D"],
                         loc="center", cellLoc="right")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.auto_set_column_width(col=list(range(6)))
    tab.scale(1, 1.3)
    fig.tight_layout()
    try:
        write_replacing("the study's plot", path, lambda partial: fig.savefig(partial, dpi=100, format="png"))
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> list[tuple[StudyRun, dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/study", help="one directory per run")
    parser.add_argument("--doc", default="docs/accuracy_vs_compute", help="plot and table path (no suffix)")
    parser.add_argument("--runs", nargs="+", default=None, help="only these run names")
    parser.add_argument("--curve", nargs=2, action="append", default=[], metavar=("LABEL", "RUN_DIR"),
                        help="also draw a longer run's evaluations (its metrics.jsonl) against training time")
    parser.add_argument("--short", type=positive_float, default=2.0, help="short budget (minutes)")
    parser.add_argument("--long", type=positive_float, default=4.0, help="long budget (minutes)")
    args = parser.parse_args(argv)
    # the outputs the runs end in, checked before the runs (they failed after all of them)
    for label, directory in args.curve:
        if not (Path(directory) / "metrics.jsonl").is_file():
            parser.error(f"--curve {label} {directory}: no metrics.jsonl there")
    doc = Path(args.doc)
    try:
        doc.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--doc {doc}: cannot make its directory ({error.strerror or error})")
    try:
        out = output_directory(args.out)        # a file as --out was the first run's refusal
    except ValueError as error:
        parser.error(str(error))
    study_runs = default_runs(args.short, args.long)
    # a name that matches no run (a typo, or one made with another --short/--long) would leave
    # nothing to tabulate: the plot then failed with an IndexError after an empty table was written
    unknown = sorted(set(args.runs or ()) - {r.name for r in study_runs})
    if unknown:
        parser.error(f"--runs {' '.join(unknown)}: not a run of this study "
                     f"(with --short {args.short:g} --long {args.long:g}: {', '.join(r.name for r in study_runs)})")
    runs = [r for r in study_runs if args.runs is None or r.name in args.runs]
    rows = []
    for index, run in enumerate(runs):
        record = final_record(out / run.name)
        if record is None:
            print(f"[study] {index + 1}/{len(runs)}: {run.name}", file=sys.stderr, flush=True)
            try:
                # the run's own last evaluation, not checkpoint.json read again: that readable copy is
                # renamed into place after the checkpoint, and one left a save behind (a kill between
                # the two) said "not finished" of a run that had finished: the table failed with a
                # TypeError, at every run of the study again
                record = train_module.main(run_arguments(run, out))
            except train_module.RUN_REFUSALS as error:
                print(f"error: run {index + 1}/{len(runs)} of the study ({run.name}): "
                      f"{refusal_text(error, out / run.name)}", file=sys.stderr)
                raise SystemExit(1) from None
            except TrainingStopped as stopped:
                print(f"study: run {index + 1}/{len(runs)} ({run.name}) stopped by "
                      f"{signal.Signals(stopped.signum).name} {stopped.where}, its checkpoint saved; the same "
                      f"study command goes on from there", file=sys.stderr)
                raise SystemExit(stopped.exit_code) from None
            except KeyboardInterrupt:   # before the run's first step, or a second Ctrl-C while it stopped
                print(f"study: interrupted by SIGINT in run {index + 1}/{len(runs)} ({run.name}); the same "
                      f"study command goes on from the run's last checkpoint", file=sys.stderr)
                raise SystemExit(128 + signal.SIGINT) from None
        rows.append((run, record))
    curves = {label: [json.loads(line) for line in (Path(directory) / "metrics.jsonl").read_text().splitlines()]
              for label, directory in args.curve}
    try:
        write_replacing("the study's table", doc.with_suffix(".md"), lambda partial: partial.write_text(table(rows)))
        plot(rows, doc.with_suffix(".png"), curves)
    except WriteError as error:     # the runs are kept: the same command writes these again
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
