"""The training and study command lines refuse what no run can use, in one line and before any
work: numbers out of range, an --out that holds another run, a --resume with nothing (or
something else) to resume, an --init-weights of another model, outputs the study cannot write."""
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import training.evaluate as evaluate_module
import training.train as train_module
from cfi_pose_ros.weights import load_weights
from test_h36m_data import camera_entries
from training import study

torch.set_num_threads(1)
# the tiny run of test_training.py: compile off and fp32, 2 steps an epoch
ARGS = ["--synthetic", "600", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "64",
        "--max-steps-per-epoch", "2", "--threads", "1", "--seed", "3", "--name", "tiny",
        "--compile", "off", "--amp", "off", "--eval-noise-std", "0"]


def run_cli(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    """``python -m training.train ARGS`` in this process (as the command line calls main):
    the exit code (0 when it returned) and stderr's last line."""
    monkeypatch.setattr(sys, "argv", ["train"] + args)
    try:
        train_module.main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    lines = capsys.readouterr().err.strip().splitlines()
    return code, lines[-1] if lines else ""


def read_metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A finished 1-epoch run to resume, overwrite and start from."""
    out = tmp_path_factory.mktemp("run")
    train_module.main(ARGS + ["--epochs", "1", "--out", str(out)])
    return out


@pytest.mark.parametrize("flag, value, expected", [
    ("--batch-size", "0", "an integer >= 1"),      # ZeroDivisionError
    ("--batch-size", "-1", "an integer >= 1"),     # with a budget: no step ever spent it, it ran forever
    ("--budget-minutes", "-1", "a number >= 0"),   # ignored: trained --epochs
    ("--budget-minutes", "nan", "a number >= 0"),
    ("--budget-samples", "-1000", "an integer >= 0"),
    ("--epochs", "0", "an integer >= 1"),          # exited 0 having written nothing
    ("--threads", "-1", "an integer in [1, 1024]"),    # traceback
    ("--threads", "100000", "an integer in [1, 1024]"),    # segfault (exit 139) at the first step
    ("--threads", "1" + "0" * 400, "an integer in [1, 1024]"),     # OverflowError traceback (math.isfinite)
    ("--batch-size", "-1" + "0" * 400, "an integer >= 1"),
    ("--ema-decay", "1.5", "a number in [0, 1)"),  # traceback
    ("--stride", "0", "an integer >= 1"),
    ("--test-stride", "-2", "an integer >= 1"),
    ("--lr", "0", "a number > 0"),
    ("--lr", "inf", "a number > 0"),
    ("--dim", "0", "an integer >= 1"),
    ("--depth", "-1", "an integer >= 1"),
    ("--heads", "0", "an integer >= 1"),
    ("--noise-prob", "1.5", "a number in [0, 1]"),
    ("--placement-prob", "-0.1", "a number in [0, 1]"),
    ("--dropout", "1", "a number in [0, 1)"),
    ("--warmup", "1", "a number in [0, 1)"),       # the cosine schedule divided by 1 - warmup
    ("--checkpoint-minutes", "-5", "a number >= 0"),
    ("--max-steps-per-epoch", "-1", "an integer >= 0"),
    ("--seed", "-1", "an integer in [0, 2**63)"),
    ("--seed", str(2**63), "an integer in [0, 2**63)"),
    ("--mlp-ratio", "1e300", "a number in (0, 64]"),      # a torch traceback building the model
    ("--eval-noise-std", "1e300", "a number in [0, 1]"),  # overflowed float32: the metrics' SVD failed
    ("--noise-std", "1e39", "a number in [0, 1]"),       # overflowed the float32 inputs: "diverged ... --resume"
    ("--outlier-max-shift", "1e300", "a number in [0, 2]"),
])
def test_numbers_no_run_can_use_are_refused_at_parse_time(flag, value, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_module.main(ARGS + ["--epochs", "1", flag, value, "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert f"argument {flag}: must be {expected}, not {value}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_combinations_no_model_can_have_are_refused_at_parse_time(tmp_path, capsys):
    for extra, expected in ((["--heads", "5"], "--heads 5: dim (32) must be divisible by heads (5)"),
                            (["--placement-distance", "10", "2"], "NEAR must not be farther than FAR"),
                            (["--resume", "--overwrite"], "not allowed with argument")):
        with pytest.raises(SystemExit) as stop:
            train_module.main(ARGS + extra + ["--out", str(tmp_path / "out")])
        assert stop.value.code == 2 and expected in capsys.readouterr().err, extra


def test_zero_still_means_off_where_the_help_says_so():
    args = train_module.parse_args(ARGS + ["--budget-minutes", "0", "--budget-samples", "0", "--ema-decay", "0",
                                           "--max-steps-per-epoch", "0", "--checkpoint-minutes", "0",
                                           "--noise-std", "0", "--synthetic", "0"])
    assert (args.budget_minutes, args.budget_samples, args.ema_decay, args.max_steps_per_epoch,
            args.checkpoint_minutes, args.synthetic) == (0.0, 0, 0.0, 0, 0.0, 0)


def test_a_new_run_into_an_earlier_one_is_refused_and_overwrite_starts_clean(one_epoch, tmp_path, monkeypatch,
                                                                              capsys):
    """It overwrote the checkpoint and weights and appended a second "epoch 1" to metrics.jsonl."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--out", str(out)])
    assert code == 1
    assert error.startswith(f"error: --out {out} already holds a run (checkpoint.safetensors")
    assert "--resume" in error and "--overwrite" in error
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # an --overwrite run refused later (here its --init-weights) leaves the earlier run as it was
    code, error = run_cli(monkeypatch, capsys, ARGS[:] + ["--epochs", "1", "--overwrite", "--init-weights",
                                                          str(out / "nothing.safetensors"), "--out", str(out)])
    assert code == 1 and "nothing.safetensors" in error
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    (out / "checkpoint.safetensors.tmp").write_bytes(b"left by a killed run")
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--overwrite", "--seed", "4", "--out", str(out)])
    assert code == 0
    assert [line["epoch"] for line in read_metrics(out)] == [1]
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["epoch"] == 1 and len(meta["history"]) == 1 and meta["args"]["seed"] == 4
    assert not (out / "checkpoint.safetensors.tmp").exists()


def test_compile_on_that_fails_is_one_line_naming_auto(tmp_path, monkeypatch, capsys):
    """It ended in a RuntimeError traceback (exit 1)."""
    import training.speed as speed

    def no_compiler(function):
        raise RuntimeError("no C++ compiler found\nmore lines")

    monkeypatch.setattr(speed.torch, "compile", no_compiler)
    args = ARGS[:]
    args[args.index("--compile") + 1] = "on"
    code, error = run_cli(monkeypatch, capsys, args + ["--epochs", "1", "--out", str(tmp_path / "run")])
    assert code == 1
    assert error == ("error: --compile on: torch.compile failed (RuntimeError: no C++ compiler found); "
                     "--compile auto trains eager instead")


def test_an_overwrite_refused_by_its_compile_leaves_the_earlier_run(one_epoch, tmp_path, monkeypatch, capsys):
    """--overwrite deleted the earlier run before torch.compile failed: the run was refused and
    nothing was left of either. Every check comes first now, the clearing just before the first step."""
    import training.speed as speed

    def no_compiler(function):
        raise RuntimeError("no C++ compiler found")

    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(speed.torch, "compile", no_compiler)
    args = ARGS[:]
    args[args.index("--compile") + 1] = "on"
    code, error = run_cli(monkeypatch, capsys, args + ["--epochs", "1", "--overwrite", "--out", str(out)])
    assert code == 1 and error.startswith("error: --compile on: torch.compile failed")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_with_nothing_to_resume_is_refused(tmp_path, monkeypatch, capsys):
    """It started a new run from scratch, as if --resume had not been given."""
    out = tmp_path / "empty"
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--resume", "--out", str(out)])
    assert code == 1
    assert error == (f"error: --resume: {out} holds no checkpoint.safetensors to continue; leave out --resume "
                     f"to start a new run there")
    assert not out.exists()


def test_a_run_killed_before_its_first_checkpoint_is_told_the_one_way_on(tmp_path, monkeypatch, capsys):
    """A run killed while its first evaluation saved (its weights and curves written, the checkpoint
    not yet) was told by --resume to leave --resume out, and without it to pass --resume: each
    refusal advised the other. Both name --overwrite now, and neither deletes anything."""
    class Killed(BaseException):
        """what the process leaves when it is killed here (kill -9, the OOM killer)"""

    def killed(*args, **kwargs):
        raise Killed

    out = tmp_path / "run"
    monkeypatch.setattr(train_module, "save_checkpoint", killed)
    with pytest.raises(Killed):
        train_module.main(ARGS + ["--epochs", "1", "--out", str(out)])
    monkeypatch.undo()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"tiny.safetensors", "tiny.json", "curves.png"} <= set(before) and "checkpoint.safetensors" not in before

    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--resume", "--out", str(out)])
    assert code == 1
    assert error == (f"error: --resume: {out} holds no checkpoint.safetensors to continue; the run there stopped "
                     f"before its first checkpoint (curves.png, tiny.safetensors, tiny.json): pass --overwrite "
                     f"instead of --resume to start it again")
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--out", str(out)])
    assert code == 1
    assert error == (f"error: --out {out} already holds a run (curves.png, tiny.safetensors, tiny.json); it has no "
                     f"checkpoint to continue; pass --overwrite to start a new one in its place")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--overwrite", "--out", str(out)])
    assert code == 0 and (out / "checkpoint.safetensors").is_file()


def test_resume_of_a_run_that_spent_its_budget_with_another_budget_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                                           capsys):
    """A larger --budget-samples on --resume of a finished budget run was ignored: "resumed from ...",
    no step, exit 0. The run's schedule ended at its own budget: training on is a new run from its
    weights, which the refusal names. With the budget it was given, nothing more to do (exit 0)."""
    out = tmp_path / "budget"
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--budget-samples", "256", "--out", str(out)])
    assert code == 0 and read_metrics(out)[-1]["samples"] == 256     # 2 steps of 64 an epoch, 2 epochs
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--budget-samples", "1024", "--resume", "--out", str(out)])
    assert code == 1
    assert error == (f"error: --resume with --budget-samples 1024: the run in {out} has spent the budget it was "
                     f"started with, and its schedule ended there. To train on from its weights, start a new run: "
                     f"--init-weights {out / 'tiny'}.safetensors --out <new folder>")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    train_module.main(ARGS + ["--budget-samples", "256", "--resume", "--out", str(out)])
    assert f"[train] the run in {out} has spent its budget: nothing more to do" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_of_a_finished_budget_run_names_only_init_weights_and_loads_no_data(tmp_path, monkeypatch, capsys):
    """It advised "more --epochs", which a budget run ignores, and said so only after loading the
    data and compiling the step."""
    out = tmp_path / "budget"
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--budget-samples", "128", "--out", str(out)])
    assert code == 0
    monkeypatch.setattr(train_module, "load_data", lambda args: pytest.fail("loaded the data"))
    code, said = run_cli(monkeypatch, capsys, ["--epochs", "50", "--resume", "--out", str(out)])
    assert code == 0
    assert said == (f"[train] the run in {out} has spent its budget: nothing more to do (a new run with "
                    f"--init-weights {out / 'tiny'}.safetensors trains on)")


def test_resume_of_another_model_or_a_damaged_checkpoint_is_one_line(one_epoch, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    bigger = ARGS[:]
    bigger[bigger.index("--dim") + 1] = "64"
    code, error = run_cli(monkeypatch, capsys, bigger + ["--epochs", "2", "--resume", "--out", str(out)])
    assert code == 1                                               # was a ValueError traceback
    assert error.startswith(f"error: --resume: --dim 64 (the run's: 32): the run in {out} was started otherwise")

    checkpoint = out / "checkpoint.safetensors"
    for size in (checkpoint.stat().st_size // 2, 100):            # cut after its header, and inside it
        data = (one_epoch / "checkpoint.safetensors").read_bytes()
        checkpoint.write_bytes(data[:size])
        code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "2", "--resume", "--out", str(out)])
        assert code == 1, size                                     # was a SafetensorError traceback
        assert error.startswith(f"error: {checkpoint}: not a checkpoint that can be resumed"), error
        assert error.endswith("start the run again with --overwrite")
    assert [line["epoch"] for line in read_metrics(out)] == [1]


def test_a_checkpoint_whose_tensors_do_not_fit_its_model_is_refused_in_one_line(one_epoch, tmp_path, monkeypatch,
                                                                               capsys):
    """Tensors of another --dim under a checkpoint's metadata (its hashes matching them: written so, or
    saved before the hashes) were refused with torch's reason, a line per tensor: 60 lines."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from cfi_pose_ros.model import CFIConfig, CFINet
    from training.checkpoint import TENSORS_SHA256, tensors_sha256

    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    wider = CFINet(CFIConfig(dim=64, depth=1, heads=4)).state_dict()
    tensors.update({f"model.{name}": tensor.contiguous() for name, tensor in wider.items()})
    save_file(tensors, str(out / "checkpoint.safetensors"), metadata={**metadata, TENSORS_SHA256: tensors_sha256(tensors)})
    monkeypatch.setattr(sys, "argv", ["train", "--epochs", "2", "--resume", "--out", str(out)])
    with pytest.raises(SystemExit) as stop:
        train_module.main()
    err = capsys.readouterr().err
    assert stop.value.code == 1 and len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(rf"error: {re.escape(str(out / 'checkpoint.safetensors'))}: not a checkpoint that can be "
                        rf"resumed \(Error\(s\) in loading state_dict for CFINet: size mismatch for \S+: .* \(and "
                        rf"\d+ more\)\); start the run again with --overwrite", err.strip()), err
    assert [line["epoch"] for line in read_metrics(out)] == [1]


def test_init_weights_of_another_architecture_names_the_difference_in_one_line(one_epoch, tmp_path, monkeypatch,
                                                                               capsys):
    bigger = ARGS[:]
    bigger[bigger.index("--dim") + 1] = "64"
    weights = one_epoch / "tiny.safetensors"
    code, error = run_cli(monkeypatch, capsys, bigger + ["--epochs", "1", "--init-weights", str(weights),
                                                         "--out", str(tmp_path / "tuned")])
    assert code == 1                                               # was a ValueError traceback
    assert error.startswith(f"error: --init-weights {weights}: its model differs from this run's (dim 32 in "
                            f"the weights, 64 in this run)")


@pytest.mark.parametrize("edit, where, expected", [
    # trained the whole run, then a TypeError traceback at its first save: nothing saved
    (lambda record: record["compute"].update(cpu_hours="2.5"), "compute.cpu_hours", "a number of hours"),
    (lambda record: record.update(compute="x"), "compute", "an object"),          # AttributeError traceback
    (lambda record: record.update(commands=5), "commands", "a list of command lines"),     # TypeError traceback
    # saved as a list of its letters, exit 0
    (lambda record: record.update(commands="python -m training.train"), "commands", "a list of command lines"),
    (lambda record: record.update(samples_seen=-3), "samples_seen", "a count"),
], ids=["cpu_hours text", "compute text", "commands number", "commands text", "samples_seen negative"])
def test_init_weights_whose_training_record_is_malformed_are_refused_in_one_line_before_any_work(
        one_epoch, tmp_path, monkeypatch, capsys, edit, where, expected):
    """The training record of the --init-weights JSON, which loading checks only to be an object,
    is what the run carries on (its commands, CPU hours and samples); a hand edit of it is refused
    by name, not met as a traceback at the end of the run."""
    weights = tmp_path / "edited.safetensors"
    shutil.copy(one_epoch / "tiny.safetensors", weights)
    config = json.loads((one_epoch / "tiny.json").read_text())
    edit(config["training"])
    weights.with_suffix(".json").write_text(json.dumps(config))
    out = tmp_path / "tuned"
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--init-weights", str(weights),
                                                       "--out", str(out)])
    assert code == 1
    assert error.startswith(f"error: --init-weights {weights}: its JSON's training.{where} must be {expected}"), error
    assert not (out / "tiny.json").exists()


def test_study_resumes_only_the_runs_it_left_a_checkpoint_of(tmp_path):
    """The study passed --resume to every run, which now refuses a directory with nothing to resume."""
    run = study.StudyRun(64, 5, 0.5)
    assert "--resume" not in study.run_arguments(run, tmp_path)
    (tmp_path / run.name).mkdir()
    (tmp_path / run.name / "checkpoint.safetensors").write_bytes(b"")
    assert "--resume" in study.run_arguments(run, tmp_path)
    args = train_module.parse_args(study.run_arguments(run, tmp_path))
    assert args.resume and args.out == str(tmp_path / run.name)


def finished_study_run(out, name: str) -> None:
    """What a study run that spent its budget leaves for final_record (so no training runs here)."""
    (out / name).mkdir(parents=True)
    record = {"samples": 1000, "test_mpjpe_mm": 80.0, "test_p_mpjpe_mm": 60.0, "train_seconds": 30.0}
    (out / name / "checkpoint.json").write_text(json.dumps({"run_state": {"finished": True}, "history": [record]}))


def test_study_checks_its_outputs_before_the_runs(tmp_path, capsys):
    """A --curve of a missing directory failed with FileNotFoundError after every run had trained."""
    finished_study_run(tmp_path / "runs", "d64_s5_b0.5")
    common = ["--runs", "d64_s5_b0.5", "--short", "0.5", "--out", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as stop:
        study.main(common + ["--doc", str(tmp_path / "doc"), "--curve", "long", str(tmp_path / "missing")])
    assert stop.value.code == 2
    assert f"--curve long {tmp_path / 'missing'}: no metrics.jsonl there" in capsys.readouterr().err
    assert not (tmp_path / "doc.md").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as stop:
        study.main(common + ["--doc", str(tmp_path / "file" / "doc")])
    assert stop.value.code == 2 and "--doc" in capsys.readouterr().err
    rows = study.main(common + ["--doc", str(tmp_path / "doc")])      # and with outputs it can write, it writes
    assert [run.name for run, _ in rows] == ["d64_s5_b0.5"] and (tmp_path / "doc.png").is_file()


def test_a_refused_study_run_is_one_line_naming_the_run_with_advice_the_study_can_follow(tmp_path, capsys):
    """study.main calls train.main(argv), which re-raises a refusal for such a caller: each was a
    traceback (8-11 frames), here after the first run had finished, advising train's --resume or
    --overwrite, which the study sets itself."""
    out = tmp_path / "runs"
    finished_study_run(out, "d64_s5_b0.5")
    (out / "d128_s5_b0.5").mkdir()
    (out / "d128_s5_b0.5" / "curves.png").write_bytes(b"")       # a run stopped before its first checkpoint
    with pytest.raises(SystemExit) as stop:
        study.main(["--runs", "d64_s5_b0.5", "d128_s5_b0.5", "--short", "0.5", "--out", str(out),
                    "--doc", str(tmp_path / "doc")])
    assert stop.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (f"error: run 2/2 of the study (d128_s5_b0.5): --out {out / 'd128_s5_b0.5'} already holds "
                         f"a run (curves.png); it has no checkpoint to continue; move {out / 'd128_s5_b0.5'} away (or delete it) and run the study "
                         f"again to train this run afresh (the finished runs are kept)")
    assert "Traceback" not in "\n".join(lines) and not (tmp_path / "doc.md").exists()
    (tmp_path / "file").write_text("")                 # an --out that is a file: refused before any run
    with pytest.raises(SystemExit) as stop:
        study.main(["--runs", "d64_s5_b0.5", "--short", "0.5", "--out", str(tmp_path / "file"),
                    "--doc", str(tmp_path / "doc")])
    assert stop.value.code == 2 and f"--out {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


def test_a_study_run_stopped_by_a_signal_says_the_study_goes_on_from_it(tmp_path, capsys, monkeypatch):
    """train.main re-raises a stop for a caller that passes argv: the study said nothing of it (a
    TrainingStopped traceback) nor that its own command, run again, resumes the stopped run."""
    import signal

    from training.stopping import TrainingStopped

    def stopped_run(argv):
        out = argv[argv.index("--out") + 1]
        raise TrainingStopped(signal.SIGTERM, "at step 5 (epoch 1, step 5 of 9)", out)

    monkeypatch.setattr(train_module, "main", stopped_run)
    out = tmp_path / "runs"
    finished_study_run(out, "d64_s5_b0.5")
    with pytest.raises(SystemExit) as stop:
        study.main(["--runs", "d64_s5_b0.5", "d128_s5_b0.5", "--short", "0.5", "--out", str(out),
                    "--doc", str(tmp_path / "doc")])
    assert stop.value.code == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "study: run 2/2 (d128_s5_b0.5) stopped by SIGTERM at step 5 (epoch 1, step 5 of 9), its checkpoint "
        "saved; the same study command goes on from there")


SAVE_BEHIND = "save behind"


@pytest.mark.parametrize("copy_text", [
    SAVE_BEHIND,                                                            # TypeError in the table
    "[]",                                                                   # AttributeError
    '{"run_state": "finished", "history": []}',                             # AttributeError
    '{"run_state": {"finished": true}}',                                     # KeyError
    '{"run_state": {"finished": true}, "history": [3]}',                    # TypeError in the table
    '{"run_state": {"finished": true}, "history": [{"samples": 1}]}',       # KeyError in the table
    '{"run_state": {"finished": true}, "history": [{"samples": 1, "test_mpjpe_mm": "80", '
    '"test_p_mpjpe_mm": 60}]}',                                              # ValueError in the table
    "[" * 100000,                                                           # RecursionError
])
def test_a_study_tabulates_a_finished_run_whose_readable_checkpoint_copy_is_behind_or_damaged(
        tmp_path, monkeypatch, copy_text):
    """checkpoint.json is a readable copy of the checkpoint's own metadata, renamed into place after
    checkpoint.safetensors: a study killed between the two left a copy saying "not finished" of a
    finished run (SAVE_BEHIND); the study resumed it (train: nothing more to do), read the copy again
    and failed with a TypeError in its table. A copy that no save writes (edited or damaged) ended
    the study in a traceback too, at every run again. The study resumes such a run (the trainer
    reads the checked metadata: nothing more to do) and tabulates its last record."""
    out = tmp_path / "runs"
    run = study.StudyRun(64, 5, 0.5)
    tiny = [value if value != "tiny" else "cfi" for value in ARGS] + ["--budget-samples", "128"]
    monkeypatch.setattr(study, "run_arguments", lambda r, o: tiny + ["--out", str(o / r.name)]
                        + (["--resume"] if (o / r.name / "checkpoint.safetensors").exists() else []))
    train_module.main(study.run_arguments(run, out))
    copy = json.loads((out / run.name / "checkpoint.json").read_text())
    finished = copy["history"][-1]
    if copy_text == SAVE_BEHIND:
        copy["run_state"]["finished"], copy["history"] = False, []      # as the save before the last wrote it
        copy_text = json.dumps(copy)
    (out / run.name / "checkpoint.json").write_text(copy_text)
    rows = study.main(["--runs", run.name, "--short", "0.5", "--out", str(out), "--doc", str(tmp_path / "doc")])
    assert rows == [(run, finished)] and (tmp_path / "doc.md").is_file()


@pytest.mark.parametrize("flag", ["--short", "--long"])
def test_study_budgets_must_be_positive(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        study.main([flag, "0", "--out", str(tmp_path / "runs"), "--doc", str(tmp_path / "doc")])
    assert stop.value.code == 2 and f"argument {flag}: must be a number > 0, not 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_mlp_the_weights_loader_refuses_is_refused_at_parse_time(tmp_path, capsys):
    """--mlp-ratio 0.01 (with --dim 32: int(0.32) = 0 hidden units) trained to its end, exit 0, and
    wrote weights that load_weights refuses; the trainer now applies the loader's checks. The
    smallest ratio that leaves one hidden unit trains, and its weights load."""
    with pytest.raises(SystemExit) as stop:
        train_module.main(ARGS + ["--epochs", "1", "--mlp-ratio", "0.01", "--out", str(tmp_path / "none")])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "error: --dim 32 --mlp-ratio 0.01: mlp_ratio (0.01) leaves the MLP no hidden units" in error
    assert not (tmp_path / "none").exists()
    train_module.main(ARGS + ["--epochs", "1", "--mlp-ratio", "0.04", "--out", str(tmp_path / "one")])
    _, info = load_weights(tmp_path / "one" / "tiny.safetensors")
    assert info.model.mlp_ratio == 0.04


@pytest.mark.parametrize("extra, expected", [
    # the weights went beside --out (as --out's own name), or outside the run's files
    (["--name", ""], "argument --name: must be a file name without a folder (the weights are written into --out), "
                     "not ''"),
    (["--name", "sub/tiny"], "argument --name: must be a file name without a folder"),
    (["--name", ".."], "argument --name: must be a file name without a folder"),
    # the weights were overwritten by the run's checkpoint
    (["--name", "checkpoint"], "argument --name: must not be 'checkpoint', the name of the run's checkpoint"),
    # saved less the ending, over the checkpoint (which was then saved over them): exit 0, no weights
    (["--name", "checkpoint.safetensors"], "argument --name: must be a name without an ending (.safetensors and "
                                           ".json are added), not 'checkpoint.safetensors'"),
    (["--name", "checkpoint.json"], "argument --name: must be a name without an ending"),
    # parsed within (-90, 90), then a ValueError traceback from the input domain (within 80) after the data loaded
    (["--placement-angles", "-85", "-20", "30", "15"], "argument --placement-angles: must be a number in [-80, 80], "
                                                       "not -85"),
    # the input domain the run records became NaN: a traceback
    (["--placement-distance", "1e300", "1e308"], "argument --placement-distance: must be a number in (0, 100], "
                                                 "not 1e300"),
    # the current directory, without a word (--out "$OUTDIR" with OUTDIR unset)
    (["--out", ""], "argument --out: must name a directory (. for the current one), not ''"),
])
def test_names_and_distances_no_run_can_use_are_refused_at_parse_time(extra, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_module.main(ARGS + ["--epochs", "1", "--out", str(tmp_path / "out")] + extra)
    assert stop.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_largest_placement_distance_and_evaluation_jitter_train(tmp_path):
    """The upper ends of the bounds are runs that work (finite losses, errors and input domain)."""
    record = train_module.main(ARGS + ["--epochs", "1", "--placement-prob", "1", "--placement-distance", "100", "100",
                                       "--eval-noise-std", "1", "--out", str(tmp_path)])
    assert all(np.isfinite(record[key]) for key in ("train_loss", "test_mpjpe_mm", "test_mpjpe_mm_noisy"))
    domain = json.loads((tmp_path / "tiny.json").read_text())["input_domain"]
    assert all(np.isfinite(domain["person_scale_range"])) and domain["person_scale_range"][0] > 0


def test_evaluate_refuses_threads_no_machine_has(capsys):
    """--threads 100000 segfaulted (exit 139) in the first forward pass."""
    with pytest.raises(SystemExit) as stop:
        evaluate_module.main(["--threads", "100000"])
    assert stop.value.code == 2
    assert "argument --threads: must be an integer in [1, 1024], not 100000" in capsys.readouterr().err


def test_evaluate_refuses_an_empty_out(capsys):
    """--out "" evaluated into the current directory without a word."""
    with pytest.raises(SystemExit) as stop:
        evaluate_module.main(["--weights", "no/such.safetensors", "--out", ""])
    assert stop.value.code == 2
    assert "argument --out: must name a directory (. for the current one), not ''" in capsys.readouterr().err


def h36m_files(folder, frames: int, seed: int = 0) -> list[str]:
    """Tiny Human3.6M files (the public layouts) of S1 and S9, two actions of ``frames`` random
    32-joint poses each, seen by four cameras each; returns the flags that train and test on them."""
    rng = np.random.default_rng(seed)
    subjects = ("S1", "S9")
    poses = {subject: {action: (np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.3, (frames, 32, 3))).astype(np.float32)
                       for action in ("Walking", "Eating")} for subject in subjects}
    folder.mkdir(parents=True)
    np.savez_compressed(folder / "data_3d_h36m.npz", positions_3d=poses)
    (folder / "cameras.json").write_text(json.dumps({s: camera_entries(i) for i, s in enumerate(subjects)}))
    return ["--data-3d", str(folder / "data_3d_h36m.npz"), "--cameras", str(folder / "cameras.json"),
            "--train-subjects", "S1", "--test-subjects", "S9"]


def test_resume_on_other_data_is_refused_in_one_line_and_the_same_data_moved_resumes(tmp_path, monkeypatch,
                                                                                     capsys):
    """--data-3d and --cameras may change on --resume (files that moved), but another file of 40
    poses a sequence instead of 20 resumed: its epoch closed without a step and metrics.jsonl mixed
    two test sets. The checkpoint holds the poses' counts and a hash of them; the weights' record too."""
    on_data = ARGS[2:] + ["--epochs", "2"]                   # ARGS less --synthetic 600
    data = h36m_files(tmp_path / "data", frames=20)
    out = tmp_path / "run"
    code, _ = run_cli(monkeypatch, capsys, on_data + data + ["--epochs", "1", "--out", str(out)])
    assert code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    advice = (f"resume with the data the run was started on (moved files are fine), or start a new run from its "
              f"weights: --init-weights {out / 'tiny'}.safetensors --out <new folder>")
    more = h36m_files(tmp_path / "more", frames=40)
    code, error = run_cli(monkeypatch, capsys, on_data + more + ["--resume", "--out", str(out)])
    assert code == 1
    assert error == (f"error: --resume: {' '.join(more[:4])} give 320 training poses (the run's: 160) and 320 test "
                     f"poses (the run's: 160); {advice}")
    other = h36m_files(tmp_path / "other", frames=20, seed=1)
    code, error = run_cli(monkeypatch, capsys, on_data + other + ["--resume", "--out", str(out)])
    assert code == 1
    assert error == (f"error: --resume: {' '.join(other[:4])} give other training poses (as many, 160, but not the "
                     f"same) and other test poses (as many, 160, but not the same); {advice}")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    shutil.move(tmp_path / "data", tmp_path / "moved")
    moved = [flag.replace(str(tmp_path / "data"), str(tmp_path / "moved")) for flag in data]
    code, _ = run_cli(monkeypatch, capsys, on_data + moved + ["--resume", "--out", str(out)])
    assert code == 0 and [line["epoch"] for line in read_metrics(out)] == [1, 2]
    training = json.loads((out / "tiny.json").read_text())["training"]
    fingerprint = json.loads((out / "checkpoint.json").read_text())["run_state"]["data_fingerprint"]
    assert training["data_fingerprint"] == fingerprint
    assert (fingerprint["train_poses"], fingerprint["test_poses"]) == (160, 160)
    assert len(fingerprint["train_sha256"]) == len(fingerprint["test_sha256"]) == 64
    assert (training["data"]["data_3d"], training["data"]["cameras"]) == (moved[1], moved[3])


@contextmanager
def unwritable(folder):
    """``folder`` made unwritable for this process: by its mode, or where that does not hold
    (root) by the immutable attribute; the test is skipped where neither does."""
    folder.chmod(0o555)
    immutable = os.access(folder, os.W_OK) and subprocess.run(["chattr", "+i", str(folder)],
                                                              capture_output=True).returncode == 0
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("no way to make a folder unwritable here")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_evaluate_record_into_a_folder_it_cannot_write_is_refused_before_evaluating(one_epoch, tmp_path,
                                                                                    monkeypatch, capsys):
    """--record of weights in a read-only folder evaluated in full (11 minutes on S9 with flip test),
    then failed with an OSError traceback; the folder is now checked first, as --out is."""
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("tiny.safetensors", "tiny.json"):
        shutil.copy(one_epoch / name, weights / name)
    data = h36m_files(tmp_path / "data", frames=8)
    data = [data[0], data[1], data[2], data[3], "--subjects", "S9"]
    monkeypatch.setattr(sys, "argv", ["evaluate", "--weights", str(weights / "tiny.safetensors"), *data,
                                      "--threads", "1", "--out", str(tmp_path / "eval"), "--record"])
    with unwritable(weights):
        with pytest.raises(SystemExit) as stop:
            evaluate_module.main()
    assert stop.value.code == (f"error: --record: {weights} is not writable, so the means cannot be written into "
                               f"tiny.json; leave out --record, or copy the weights (.safetensors and .json) to a "
                               f"folder you can write")
    assert not (tmp_path / "eval" / "eval.json").exists()
    evaluate_module.main()                  # writable, it evaluates and records
    assert "S9_gt2d_all_frames_reference_view" in json.loads((weights / "tiny.json").read_text())["metrics"]


def test_resume_into_an_out_it_cannot_write_is_refused_before_training(one_epoch, tmp_path, monkeypatch, capsys):
    """--resume skipped the writability check a new run gets: it trained, then failed with a
    SafetensorError traceback at its first save."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with unwritable(out):
        code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "2", "--resume", "--out", str(out)])
    assert code == 1 and error == f"error: --out {out}: the directory is not writable"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_run_into_an_out_another_run_is_writing_is_refused(one_epoch, tmp_path, monkeypatch, capsys):
    """Two runs started into one --out at once were both let in: their metrics.jsonl lines and
    checkpoints interleaved. A running run holds <out>/.lock (here the test holds it)."""
    import fcntl
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "2", "--resume", "--out", str(out)])
        assert code == 1
        assert error == (f"error: --out {out}: another run is writing into it now (it holds {out / '.lock'}); wait "
                         f"for it to end, or pick another --out")
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "2", "--resume", "--out", str(out)])
    assert code == 0 and [line["epoch"] for line in read_metrics(out)] == [1, 2]


def test_a_run_refused_after_it_held_its_out_leaves_nothing_of_it(one_epoch, tmp_path, monkeypatch, capsys):
    """A run refused once it held --out (a --batch-size its data does not fill, an --init-weights of
    another model: found after the folder and its lock were made) left the folder it had made, and
    its parents, holding only .lock; an empty folder that was there got the .lock. The lock of a
    run that ran, and one another run holds, stay (test_a_run_into_an_out_another_run_is_writing)."""
    made = tmp_path / "made" / "deeper" / "run"
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--batch-size", "100000", "--out", str(made)])
    assert code == 1 and error.startswith("error: 600 training poses do not fill one batch of 100000")
    assert not (tmp_path / "made").exists()
    bigger = ARGS[:]
    bigger[bigger.index("--dim") + 1] = "64"
    code, error = run_cli(monkeypatch, capsys, bigger + ["--init-weights", str(one_epoch / "tiny.safetensors"),
                                                         "--out", str(made)])
    assert code == 1 and error.startswith(f"error: --init-weights {one_epoch / 'tiny.safetensors'}: its model")
    assert not (tmp_path / "made").exists()
    there = tmp_path / "there"
    there.mkdir()
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--batch-size", "100000", "--out", str(there)])
    assert code == 1 and list(there.iterdir()) == []
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--out", str(there)])
    assert code == 0 and (there / ".lock").is_file()


def test_a_run_that_locks_a_lock_file_a_refused_run_removed_locks_one_at_the_name(tmp_path, monkeypatch, capsys):
    """A refused run removes the lock file it made (above) while it holds it: a run that had opened
    that file meanwhile, and locks it once it is released, would hold a lock no third run sees, in
    a folder that is gone. It opens the name again (the folder made again) and runs there. Here the
    refused run's removal falls between this run's open and its flock, where it can fall."""
    import fcntl
    out = tmp_path / "run"
    flock = fcntl.flock
    removed = []

    def removed_first(file, operation):
        if not removed and operation & fcntl.LOCK_EX:
            (out / ".lock").unlink()
            out.rmdir()
            removed.append(True)
        return flock(file, operation)

    monkeypatch.setattr(fcntl, "flock", removed_first)
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--out", str(out)])
    assert removed and code == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.json", "checkpoint.safetensors",
                                                      "curves.png", "metrics.jsonl", "tiny.json", "tiny.safetensors"]


@pytest.mark.parametrize("kind", ["directory", "FIFO", "broken symbolic link"])
def test_a_lock_file_that_is_no_file_is_refused_in_one_line(one_epoch, tmp_path, kind):
    """No run makes <out>/.lock anything but a file: a folder there was an IsADirectoryError traceback,
    a FIFO waited for a reader for ever (a resume that never started), a broken link a refusal
    saying that other runs kept removing it."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    (out / ".lock").unlink(missing_ok=True)
    {"directory": lambda lock: lock.mkdir(), "FIFO": os.mkfifo,
     "broken symbolic link": lambda lock: lock.symlink_to(tmp_path / "nowhere")}[kind](out / ".lock")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}
    run = subprocess.run([sys.executable, "-P", "-m", "training.train", "--epochs", "2", "--resume", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stderr.strip() == (
        f"error: --out {out}: {out / '.lock'} is a {kind}, not the lock file a run holds there; move it away"), \
        run.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before


def test_resume_of_a_checkpoint_that_is_no_file_says_so(one_epoch, tmp_path, monkeypatch, capsys):
    """A folder (or FIFO) named checkpoint.safetensors: --resume said the run "holds no
    checkpoint.safetensors", listing checkpoint.safetensors among its files, and advised --overwrite,
    which refuses it."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    (out / "checkpoint.safetensors").unlink()
    (out / "checkpoint.safetensors").mkdir()
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "2", "--resume", "--out", str(out)])
    assert code == 1 and error == (f"error: --resume: {out / 'checkpoint.safetensors'} is a directory, not a "
                                   f"checkpoint; move it away")


def test_data_that_do_not_fit_in_memory_are_one_line(tmp_path, monkeypatch, capsys):
    """--synthetic 10**15 was numpy's _ArrayMemoryError traceback. (7 PiB: past any address space, so
    the allocation fails at once even where the kernel overcommits.)"""
    out = tmp_path / "run"
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--synthetic", str(10**15), "--out", str(out)])
    assert code == 1 and error.startswith("error: the synthetic poses do not fit in memory (Unable to allocate"), error
    assert error.endswith("); ask for fewer (--synthetic)") and not out.exists()


def test_a_checkpoint_given_as_weights_is_said_to_be_one(one_epoch, tmp_path, monkeypatch, capsys):
    """A run's checkpoint.safetensors as --init-weights (or training.evaluate's --weights) was refused as
    "format is None, expected 'cfi_pose_ros.weights/1'", naming neither what it is nor the weights."""
    expected = (f"error: {one_epoch / 'checkpoint.json'}: a training run's checkpoint, not weights; the run's "
                f"weights are {one_epoch / 'tiny.safetensors'}")
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--init-weights", str(one_epoch / "checkpoint.safetensors"),
                                                       "--out", str(tmp_path / "run")])
    assert code == 1 and error == expected and not (tmp_path / "run").exists()
    monkeypatch.setattr(sys, "argv", ["evaluate", "--weights", str(one_epoch / "checkpoint.safetensors"),
                                      "--out", str(tmp_path / "eval")])
    with pytest.raises(SystemExit) as stop:
        evaluate_module.main()
    assert stop.value.code == expected and not (tmp_path / "eval").exists()     # SystemExit(its line): exit 1


@pytest.mark.parametrize("resume", [[], ["--resume"], ["--overwrite"]], ids=["new", "resume", "overwrite"])
def test_an_out_that_is_a_file_is_said_so_in_one_line(tmp_path, capsys, resume):
    """`--out FILE --resume` said FILE "holds no checkpoint.safetensors to continue" (exit 1), a new
    run mkdir's "cannot make the directory (File exists)"; an --out under a file "(Not a directory)"."""
    (tmp_path / "file").write_text("")
    for out, expected in ((tmp_path / "file", f"--out {tmp_path / 'file'} is a file, not a folder: give a folder"),
                          (tmp_path / "file" / "run", f"--out {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a "
                                                      f"file, not a folder: give another --out")):
        with pytest.raises(SystemExit) as stop:
            train_module.main(ARGS + ["--out", str(out), *resume])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.splitlines()[-1].endswith(f": error: {expected}"), err
        assert "Traceback" not in err
    assert (tmp_path / "file").read_text() == ""


def test_a_resume_refusal_names_the_runs_own_weights(one_epoch, tmp_path, monkeypatch, capsys):
    """`--out X --resume --lr 0.5` of a run named tiny advised --init-weights X/cfi.safetensors (the
    command line's default --name), a file that does not exist."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    code, error = run_cli(monkeypatch, capsys, ["--lr", "0.5", "--resume", "--out", str(out)])
    assert code == 1 and error.startswith("error: --resume: --lr 0.5 (the run's: 0.001)")
    assert error.endswith(f"--init-weights {out / 'tiny'}.safetensors --out <new folder>")


def test_a_run_on_detected_2d_resumes_after_its_files_moved(tmp_path, monkeypatch, capsys):
    """--data-3d and --cameras could change on --resume, --data-2d not: a run on detected 2D was
    refused once its files had moved ("--data-2d ... (the run's: ...)"); the data's fingerprint
    guards what the file holds."""
    data = h36m_files(tmp_path / "data", frames=20)
    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "data" / "data_2d.npz", positions_2d={
        subject: {action: [rng.uniform(0, 1000, (20, 17, 2)).astype(np.float32) for _ in range(4)]
                  for action in ("Walking", "Eating")} for subject in ("S1", "S9")})
    data += ["--data-2d", str(tmp_path / "data" / "data_2d.npz")]
    out = tmp_path / "run"
    code, _ = run_cli(monkeypatch, capsys, ARGS[2:] + data + ["--epochs", "1", "--out", str(out)])
    assert code == 0
    shutil.move(tmp_path / "data", tmp_path / "moved")
    moved = [flag.replace(str(tmp_path / "data"), str(tmp_path / "moved")) for flag in data]
    code, error = run_cli(monkeypatch, capsys, moved + ["--epochs", "2", "--resume", "--out", str(out)])
    assert code == 0, error
    assert [line["epoch"] for line in read_metrics(out)] == [1, 2]


def test_a_run_that_diverges_before_its_first_checkpoint_is_not_told_to_resume(tmp_path, monkeypatch, capsys):
    """A run that diverged at its first step was told "then --resume", which is refused without a checkpoint."""
    monkeypatch.setattr(train_module, "train_step", lambda *a, **k: torch.tensor(float("nan")))
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--out", str(tmp_path)])
    assert code == 1
    assert error.endswith("the training loss is nan; no checkpoint had been saved. Lower --lr or use --amp off, "
                          "and start the run again")


def test_overwrite_with_another_name_deletes_the_earlier_runs_weights(one_epoch, tmp_path, monkeypatch, capsys):
    """--overwrite --name other deleted the earlier run's checkpoint and metrics but left its
    weights (tiny.*) beside the new run's."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    other = ARGS[:]
    other[other.index("--name") + 1] = "other"
    code, _ = run_cli(monkeypatch, capsys, other + ["--epochs", "1", "--overwrite", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == [
        "checkpoint.json", "checkpoint.safetensors", "curves.png", "metrics.jsonl", "other.json", "other.safetensors"]


def test_overwrite_clears_what_killed_saves_left_and_refuses_a_folder_in_a_files_place(one_epoch, tmp_path,
                                                                                         monkeypatch, capsys):
    """--overwrite deleted the run's files but not the ``.partial`` files a save killed in mid-write
    leaves beside them (weights, curves, metrics), and a folder in a file's place (here
    curves.png) ended it in an IsADirectoryError traceback after the run's checks. Now such a
    folder is refused in one line before any work, the earlier run as it was, and a run let in
    leaves none of the partial files."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    partials = ["tiny.safetensors.partial", "tiny.json.partial", "curves.png.partial", "metrics.jsonl.partial",
                "checkpoint.safetensors.tmp", "checkpoint.json.tmp"]
    for name in partials:
        (out / name).write_bytes(b"left by a killed save")
    (out / "curves.png").unlink()
    (out / "curves.png").mkdir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    process = subprocess.run([sys.executable, "-P", "-m", "training.train", *ARGS, "--epochs", "1", "--overwrite",
                              "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             timeout=300)
    err = process.stderr
    assert process.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"error: --overwrite: {out / 'curves.png'} is a directory, not a file "
                                            f"of a run; move it away, or pick another --out"), err[-3000:]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    (out / "curves.png").rmdir()
    code, _ = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--overwrite", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == [
        "checkpoint.json", "checkpoint.safetensors", "curves.png", "metrics.jsonl", "tiny.json", "tiny.safetensors"]


def test_the_checkpoint_gets_the_default_mode_as_the_weights_do(tmp_path):
    """checkpoint.safetensors was created 0600 (safetensors' own mode) while every other file of the
    run got 0666 less the umask: a run in a group's shared folder could not be resumed by another
    member of the group (its checkpoint could not be read). Here under umask 002, a group's."""
    out = tmp_path / "run"
    process = subprocess.run([sys.executable, "-P", "-m", "training.train", *ARGS, "--epochs", "1", "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300,
                             preexec_fn=lambda: os.umask(0o002))
    assert process.returncode == 0, process.stderr[-3000:]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert modes == {name: "0o664" for name in ("checkpoint.safetensors", "checkpoint.json", "curves.png",
                                               "metrics.jsonl", "tiny.json", "tiny.safetensors", ".lock")}, modes


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_command_in_one_line_with_its_checkpoint_saved(tmp_path, signal_name):
    """`python -m training.train` sent Ctrl-C (or a cluster's SIGTERM) mid-run: a KeyboardInterrupt
    traceback (or death by SIGTERM), the steps since the last checkpoint lost. Now: the checkpoint
    of the step it stopped at, one line saying how to go on, exit 128 + the signal's number."""
    import signal
    import time

    out = tmp_path / "run"
    # about 30 steps an epoch, each evaluated; no periodic checkpoint in the run's life
    args = ARGS + ["--max-steps-per-epoch", "0", "--synthetic", "2000", "--epochs", "1000",
                   "--checkpoint-minutes", "60", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-P", "-m", "training.train", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").is_file():        # its first epoch evaluated: it trains on
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
        process.send_signal(getattr(signal, signal_name))
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    last = err.strip().splitlines()[-1]
    assert process.returncode == 128 + getattr(signal, signal_name), err[-3000:]
    assert re.fullmatch(rf"training: stopped by {signal_name} at step (\d+) \(epoch \d+, step \d+ of \d+\); its "
                        rf"checkpoint is saved: go on with python -m training.train --out {re.escape(str(out))} "
                        rf"--resume", last), last
    step = int(re.search(r"at step (\d+)", last).group(1))
    assert "Traceback" not in err
    assert json.loads((out / "checkpoint.json").read_text())["run_state"]["global_step"] == step
    epochs = len(read_metrics(out))
    record = train_module.main(["--out", str(out), "--resume", "--epochs", str(epochs + 1)])
    assert record["epoch"] == epochs + 1


def _file_size_limited(limit: int):
    """A ``preexec_fn``: files of this process and its children end at ``limit`` bytes; a write past
    it fails with EFBIG ("File too large"), as one past a full disk fails with ENOSPC."""
    import resource
    import signal

    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # the write fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_files


@pytest.mark.parametrize("limit, what, name", [(50_000, "the weights", "tiny.safetensors"),
                                                (200_000, "the checkpoint", "checkpoint.safetensors")],
                         ids=["weights", "checkpoint"])
def test_a_save_the_disk_cannot_hold_is_one_line_and_leaves_the_previous_save(one_epoch, tmp_path, limit, what,
                                                                               name):
    """A full disk at a save ended in a SafetensorError traceback. Now: one line naming what could not
    be written, where and the OS's reason, exit 1, and the previous weights and checkpoint as they were
    (no partial file left beside them). Limits between the run's file sizes (weights 105 kB, curves
    38 kB, checkpoint 324 kB) make the weights' write, or only the checkpoint's, fail."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    process = subprocess.run([sys.executable, "-P", "-m", "training.train", *ARGS, "--epochs", "2", "--resume",
                              "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             timeout=300, preexec_fn=_file_size_limited(limit))
    err = process.stderr
    assert process.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == f"error: could not write {what} {out / name}: File too large", err[-3000:]
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after["checkpoint.safetensors"] == before["checkpoint.safetensors"]
    assert after["checkpoint.json"] == before["checkpoint.json"]
    if what == "the weights":
        assert after == before
    assert not [p for p in after if p.endswith((".partial", ".tmp"))], sorted(after)
    record = train_module.main(["--out", str(out), "--resume", "--epochs", "2"])     # nothing was lost
    assert record["epoch"] == 2


@pytest.mark.parametrize("flag", ["--train-subjects", "--test-subjects"])
def test_a_subject_named_twice_is_refused_at_parse_time(capsys, tmp_path, flag):
    """`--train-subjects S1 S5 S1` loaded S1 twice and trained on it twice as often; a test subject
    named twice was counted twice in every evaluation (as evaluate's --subjects was)."""
    with pytest.raises(SystemExit) as stop:         # at parse time: no data read, no --out made
        train_module.parse_args([flag, "S1", "S5", "S1", "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {flag}: S1 is named twice; name each once")


def test_resume_of_a_run_without_a_budget_with_one_says_the_run_had_none(one_epoch, monkeypatch, capsys):
    """It said the run "was started with another budget" of a run started with none."""
    before = {p.name: p.read_bytes() for p in one_epoch.iterdir()}
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--budget-samples", "1024", "--resume", "--out",
                                                       str(one_epoch)])
    assert code == 1
    assert error == (f"error: --resume with --budget-samples 1024: the run in {one_epoch} was started without a "
                     f"budget (its learning rate decays each epoch), and a budget's schedule runs from a run's "
                     f"first step. To train on from its weights, start a new run: --init-weights "
                     f"{one_epoch / 'tiny'}.safetensors --out <new folder>")
    assert {p.name: p.read_bytes() for p in one_epoch.iterdir()} == before


def _resume_in_a_process(out, epochs: int, limit: int | None = None) -> subprocess.CompletedProcess:
    """``python -m training.train --resume`` of the tiny run in ``out`` (files limited to ``limit`` bytes)."""
    return subprocess.run([sys.executable, "-P", "-m", "training.train", *ARGS, "--epochs", str(epochs), "--resume",
                           "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=300, preexec_fn=None if limit is None else _file_size_limited(limit))


def _one_line_write_error(process: subprocess.CompletedProcess, what: str, path, reason: str) -> None:
    err = process.stderr
    assert process.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == f"error: could not write {what} {path}: {reason}", err[-3000:]


def test_curves_the_run_cannot_write_are_one_line_and_a_later_resume_draws_them(one_epoch, tmp_path):
    """curves.png that could not be written (here a folder in its place) ended the run in an
    IsADirectoryError traceback from matplotlib; it is one line now, the checkpoint and metrics.jsonl
    as the previous save left them, and a resume once it can be written trains that epoch again."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    (out / "curves.png").unlink()
    (out / "curves.png").mkdir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    process = _resume_in_a_process(out, epochs=2)
    _one_line_write_error(process, "the training curves", out / "curves.png", "Is a directory")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for name in ("checkpoint.safetensors", "checkpoint.json", "metrics.jsonl"):
        assert after[name] == before[name], name
    assert not [p for p in after if p.endswith((".partial", ".tmp"))], sorted(after)
    (out / "curves.png").rmdir()
    record = train_module.main(["--out", str(out), "--resume", "--epochs", "2"])
    assert record["epoch"] == 2 and [r["epoch"] for r in read_metrics(out)] == [1, 2]
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_a_metrics_line_the_run_cannot_write_is_one_line_and_a_resume_writes_it(tmp_path):
    """The metrics.jsonl line of an evaluation (written after its checkpoint) that could not be
    written, here metrics.jsonl turned into a folder while the run trained its second epoch: an
    IsADirectoryError traceback. Now one line, exit 1; the checkpoint holds the evaluation, and a
    resume writes metrics.jsonl from it, every epoch's line once."""
    import time

    out = tmp_path / "run"
    args = ARGS + ["--max-steps-per-epoch", "0", "--synthetic", "6000", "--epochs", "3", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-P", "-m", "training.train", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().endswith("\n")):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
            time.sleep(0.02)
        (out / "metrics.jsonl").unlink()
        (out / "metrics.jsonl").mkdir()
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    _one_line_write_error(subprocess.CompletedProcess(process.args, process.returncode, None, err),
                          "the metrics", out / "metrics.jsonl", "Is a directory")
    saved = json.loads((out / "checkpoint.json").read_text())
    assert [r["epoch"] for r in saved["history"]] == [1, 2]
    assert not [p.name for p in out.iterdir() if p.name.endswith((".partial", ".tmp"))]
    (out / "metrics.jsonl").rmdir()
    record = train_module.main(["--out", str(out), "--resume"])
    assert record["epoch"] == 3 and [r["epoch"] for r in read_metrics(out)] == [1, 2, 3]


def test_metrics_a_resume_cannot_rewrite_are_one_line_and_left_as_they_were(one_epoch, tmp_path):
    """--resume rewrites metrics.jsonl from the checkpoint first; a disk that could not hold it
    (here files limited to 100 bytes, the file 253) was an OSError traceback, and the file was left
    cut at the limit. Now one line, exit 1, every file as it was, and a resume that can write goes on."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before["metrics.jsonl"]) > 100
    process = _resume_in_a_process(out, epochs=2, limit=100)
    _one_line_write_error(process, "the metrics", out / "metrics.jsonl", "File too large")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    record = train_module.main(["--out", str(out), "--resume", "--epochs", "2"])
    assert record["epoch"] == 2 and [r["epoch"] for r in read_metrics(out)] == [1, 2]


def test_metrics_lines_are_appended_to_the_file_a_reader_follows(tmp_path, monkeypatch):
    """metrics.jsonl was written anew at each evaluation and renamed over the file: `tail -f` went on
    following the old file and saw no line after the first epoch (`tail -F` saw it replaced each
    epoch). Now each evaluation's line is appended: a real 3-epoch run, the file opened after its
    first evaluation is the file at the end, and the reader holding it open reads the later lines."""
    out = tmp_path / "run"
    followed = {}
    evaluate_and_save = train_module.evaluate_and_save

    def follow_after_the_first(run, *args):
        record = evaluate_and_save(run, *args)
        if not followed:
            reader = open(out / "metrics.jsonl")
            followed.update(reader=reader, inode=os.fstat(reader.fileno()).st_ino, lines=reader.readlines())
        return record

    monkeypatch.setattr(train_module, "evaluate_and_save", follow_after_the_first)
    train_module.main(ARGS + ["--epochs", "3", "--out", str(out)])
    with followed["reader"] as reader:
        assert [json.loads(line)["epoch"] for line in followed["lines"]] == [1]
        assert [json.loads(line)["epoch"] for line in reader.readlines()] == [2, 3]
    assert os.stat(out / "metrics.jsonl").st_ino == followed["inode"]
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3]


@pytest.mark.parametrize("earlier", [1, 2])
def test_a_metrics_line_the_disk_cannot_hold_is_one_error_and_cuts_nothing(tmp_path, earlier):
    """The line appended at an evaluation to a disk that cannot hold it (files limited to a few bytes
    past the earlier lines): part of the line was written before the OS refused the rest. Now
    WriteError's one line, and the file as it was, the earlier lines whole and no part of the new one."""
    history = [{"epoch": epoch, "test_mpjpe_mm": 100.0 - epoch, "note": "x" * 60} for epoch in range(1, 4)]
    out = tmp_path / "run"
    out.mkdir()
    before = train_module.metrics_text(history[:earlier])
    (out / "metrics.jsonl").write_text(before)
    child = ("import json, sys\nfrom pathlib import Path\nfrom cfi_pose_ros.files import WriteError\n"
             "from training.train import append_metrics\n"
             "try:\n    append_metrics(Path(sys.argv[1]), json.loads(sys.argv[2]))\n"
             "except WriteError as error:\n    sys.exit(f'error: {error}')\n")
    process = subprocess.run([sys.executable, "-P", "-c", child, str(out), json.dumps(history[:earlier + 1])],
                             capture_output=True, text=True, timeout=120,
                             preexec_fn=_file_size_limited(len(before.encode()) + 10))
    _one_line_write_error(process, "the metrics", out / "metrics.jsonl", "File too large")
    assert (out / "metrics.jsonl").read_text() == before
    train_module.append_metrics(out, history[:earlier + 1])         # a disk with room: appended
    assert read_metrics(out) == history[:earlier + 1]


def test_a_study_table_or_plot_it_cannot_write_is_one_line_and_leaves_the_previous_one(tmp_path, capsys):
    """The study's own files, written after every run: a table it could not write (a folder in its
    place) and a plot the disk could not hold (files limited between the table's size and the plot's)
    were OSError tracebacks, and the plot was left cut at the limit. Now one line each, exit 1, and
    the previous table and plot as they were."""
    out, doc = tmp_path / "runs", tmp_path / "doc"
    finished_study_run(out, "d64_s5_b0.5")
    command = ["--runs", "d64_s5_b0.5", "--short", "0.5", "--out", str(out), "--doc", str(doc)]
    study.main(command)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert len(before["doc.md"]) < 20_000 < len(before["doc.png"])
    process = subprocess.run([sys.executable, "-P", "-m", "training.study", *command], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, timeout=300, preexec_fn=_file_size_limited(20_000))
    _one_line_write_error(process, "the study's plot", doc.with_suffix(".png"), "File too large")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    (tmp_path / "doc.md").unlink()
    (tmp_path / "doc.md").mkdir()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        study.main(command)
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 1 and lines[-1] == f"error: could not write the study's table {doc}.md: Is a directory"
    assert (tmp_path / "doc.png").read_bytes() == before["doc.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.md", "doc.png", "runs"]


def test_evaluate_record_of_weights_saved_over_during_the_evaluation_is_refused_in_one_line(one_epoch, tmp_path):
    """`training.evaluate --record` measures the tensors it loaded, then writes the means into the JSON:
    weights saved over them meanwhile (here by this test, once the evaluation's bar shows) were given
    the old tensors' means. Now one line naming both tensors' SHA-256, exit 1, eval.json written (it
    names the tensors measured), nothing recorded, and the new weights load."""
    import threading
    import time

    from cfi_pose_ros.model import CFINet
    from cfi_pose_ros.weights import read_weights_info, save_weights

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("tiny.safetensors", "tiny.json"):
        shutil.copy(one_epoch / name, weights / name)
    measured = read_weights_info(weights / "tiny.safetensors").sha256
    data = h36m_files(tmp_path / "data", frames=1500)
    process = subprocess.Popen([sys.executable, "-P", "-m", "training.evaluate", "--weights",
                                str(weights / "tiny.safetensors"), *data[:4], "--subjects", "S9", "--threads", "1",
                                "--batch-size", "2", "--out", str(tmp_path / "eval"), "--record"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: process.stderr.read(1), "")))
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while "predict" not in "".join(err):             # loaded and measuring
            assert process.poll() is None and time.monotonic() < deadline, "".join(err)[-3000:]
            time.sleep(0.01)
        model, info = load_weights(weights / "tiny.safetensors")
        torch.manual_seed(5)
        save_weights(CFINet(model.config), weights / "tiny", training=info.training, metrics={"S9_gt2d": {}})
        assert process.wait(timeout=300) == 1, "".join(err)[-3000:]
    finally:
        process.kill()
        reader.join()
    err = "".join(err)
    now = read_weights_info(weights / "tiny.safetensors").sha256
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"error: {weights / 'tiny.json'}: describes other tensors (SHA-256 {now[:12]}...) than the ones measured "
        f"({measured[:12]}...): the weights were saved again since they were loaded; nothing recorded, measure "
        f"these ones")
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["tensors_sha256"] == measured
    assert load_weights(weights / "tiny.safetensors")[1].metrics == {"S9_gt2d": {}}
