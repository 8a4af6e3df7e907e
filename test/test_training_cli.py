"""The training and study command lines refuse what no run can use, in one line and before any
work: numbers out of range, an --out that holds another run, a --resume with nothing (or
something else) to resume, an --init-weights of another model, outputs the study cannot write."""
import json
import shutil
import sys

import pytest
import torch

import training.train as train_module
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
    ("--threads", "-1", "an integer >= 1"),        # traceback
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
    ("--seed", "-1", "an integer >= 0"),
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


def test_resume_with_nothing_to_resume_is_refused(tmp_path, monkeypatch, capsys):
    """It started a new run from scratch, as if --resume had not been given."""
    out = tmp_path / "empty"
    code, error = run_cli(monkeypatch, capsys, ARGS + ["--epochs", "1", "--resume", "--out", str(out)])
    assert code == 1
    assert error == (f"error: --resume: {out} holds no checkpoint.safetensors to continue; leave out --resume "
                     f"to start a new run there")
    assert not out.exists()


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


@pytest.mark.parametrize("flag", ["--short", "--long"])
def test_study_budgets_must_be_positive(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        study.main([flag, "0", "--out", str(tmp_path / "runs"), "--doc", str(tmp_path / "doc")])
    assert stop.value.code == 2 and f"argument {flag}: must be a number > 0, not 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
