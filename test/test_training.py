"""The training script end to end on synthetic poses: outputs, resume, weights, evaluation tables."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import training.train as train_module
from cfi_pose_ros.model import CFIConfig, CFINet
from cfi_pose_ros.weights import load_weights
from training.evaluate import ACTION_HEADINGS, evaluate_pose_set, markdown_table
from training.h36m import ACTION_CLASSES
from training.synthetic import synthetic_pose_set

torch.set_num_threads(1)
# compile off and fp32: these tests are about the run's bookkeeping (torch.compile is tested once below).
ARGS = ["--synthetic", "2000", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "256",
        "--max-steps-per-epoch", "4", "--threads", "1", "--seed", "3", "--name", "tiny",
        "--compile", "off", "--amp", "off", "--eval-noise-std", "0"]
CONFIG = CFIConfig(dim=32, depth=1, heads=4)


def without(args: list[str], flag: str) -> list[str]:
    """``args`` less ``flag`` and its value."""
    i = args.index(flag)
    return args[:i] + args[i + 2:]


def optimizer_snapshot(optimizer: torch.optim.Optimizer) -> dict:
    state = optimizer.state_dict()
    return {"lr": [g["lr"] for g in state["param_groups"]],
            "state": {i: {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in s.items()}
                      for i, s in state["state"].items()}}


def assert_same_optimizer_state(a: dict, b: dict) -> None:
    assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)
    assert a["state"].keys() == b["state"].keys() and a["state"]
    for index in a["state"]:
        assert a["state"][index].keys() == b["state"][index].keys()
        for key, value in a["state"][index].items():
            other = b["state"][index][key]
            if key == "step":
                assert float(value) == float(other)
            else:
                assert torch.equal(value, other), (index, key)


def assert_same_weights(run_a, run_b) -> None:
    """The two runs' weights (``tiny.safetensors`` in each folder) are equal, bit for bit."""
    a, _ = load_weights(run_a / "tiny.safetensors")
    b, _ = load_weights(run_b / "tiny.safetensors")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """One 2-epoch run, recording the optimizer state at its last checkpoint."""
    out = tmp_path_factory.mktemp("run")
    saved = {}
    original = train_module.save_checkpoint

    def recording_save(directory, model, optimizer, epoch, history, extra, **kwargs):
        saved["optimizer"] = optimizer_snapshot(optimizer)
        saved["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        saved["epoch"] = epoch
        return original(directory, model, optimizer, epoch, history, extra, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "save_checkpoint", recording_save)
    try:
        record = train_module.main(ARGS + ["--epochs", "2", "--out", str(out)])
    finally:
        mp.undo()
    return out, record, saved


def read_metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_all_outputs(two_epochs):
    out, record, saved = two_epochs
    for name in ("tiny.safetensors", "tiny.json", "metrics.jsonl", "curves.png",
                 "checkpoint.safetensors", "checkpoint.json"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = read_metrics(out)
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[-1] == record
    for line in lines:
        assert line["steps"] == 4
        assert np.isfinite(line["train_loss"]) and line["train_loss"] > 0
        assert 0 < line["test_p_mpjpe_mm"] <= line["test_mpjpe_mm"] * 1.5
    assert lines[0]["lr"] == pytest.approx(1e-3 * 0.95)
    assert lines[1]["lr"] == pytest.approx(1e-3 * 0.95 ** 2)
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["epoch"] == 2 and saved["epoch"] == 2
    assert meta["history"] == lines


def test_weights_json_describes_the_run(two_epochs):
    out, record, _ = two_epochs
    config = json.loads((out / "tiny.json").read_text())
    assert CFIConfig.from_dict(config["model"]) == CONFIG
    assert config["training"]["data"] == "synthetic"
    assert config["training"]["epochs_done"] == 2
    (metrics,) = config["metrics"].values()
    assert metrics["mpjpe_mm"] == record["test_mpjpe_mm"]
    assert metrics["p_mpjpe_mm"] == record["test_p_mpjpe_mm"]


def test_the_recorded_command_runs_again_as_written(tmp_path):
    """The weights' commands were the arguments joined by spaces: an --out with a space in it read
    as two words, so the command behind the weights could not be run again as recorded."""
    import shlex

    args = ARGS + ["--epochs", "1", "--out", str(tmp_path / "a run")]
    train_module.main(args)
    training = json.loads((tmp_path / "a run" / "tiny.json").read_text())["training"]
    assert shlex.split(training["command"]) == ["python", "-m", "training.train", *args]
    assert training["commands"] == [training["command"]]


def test_weights_load_back_and_give_the_same_outputs(two_epochs):
    out, record, saved = two_epochs
    model, info = load_weights(out / "tiny.safetensors")
    assert info.model == CONFIG
    reference = CFINet(CONFIG)
    reference.load_state_dict(saved["model"])
    reference.eval()
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    x = torch.from_numpy(synthetic_pose_set(32, seed=11).inputs_2d)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    # and they are the weights the last epoch was evaluated with
    args = train_module.build_parser().parse_args(ARGS + ["--out", str(out)])
    _, test_set = train_module.load_data(args)                # the per-epoch test set
    result = evaluate_pose_set(model, test_set)
    assert result["mpjpe"]["mean_over_actions"] == pytest.approx(record["test_mpjpe_mm"], rel=1e-5)
    assert result["p_mpjpe"]["mean_over_actions"] == pytest.approx(record["test_p_mpjpe_mm"], rel=1e-5)


def test_evaluation_lifts_each_pose_on_its_own_whatever_the_batch():
    """The evaluation's batch (PREDICT_BATCH, chosen for speed) changes no prediction, flip test
    and the reference view's turn included: the same poses in batches of 7 and of 512 agree."""
    from training.evaluate import PREDICT_BATCH, predict

    torch.manual_seed(0)
    model = CFINet(CONFIG)
    poses = synthetic_pose_set(40, seed=3).inputs_2d
    rotations = np.broadcast_to(np.eye(3, dtype=np.float32), (40, 3, 3))
    whole = predict(model, poses, PREDICT_BATCH, flip_test=True, rotations=rotations)
    assert whole.shape == (40, 17, 3)
    np.testing.assert_allclose(predict(model, poses, 7, flip_test=True, rotations=rotations), whole, atol=1e-5)


def test_evaluation_measures_poses_pelvis_centred_in_either_view():
    """As the node publishes them: in the image view (no rotations) the predicted pelvis' residual
    was measured as error (1.2 mm mean on S9), in the reference view not."""
    from training.evaluate import predict

    torch.manual_seed(0)
    model = CFINet(CONFIG)
    poses = synthetic_pose_set(8, seed=3).inputs_2d
    with torch.no_grad():
        raw = model(torch.from_numpy(poses)).numpy()
    assert np.abs(raw[:, 0]).max() > 1e-3                 # the model's own pelvis is not at 0
    image_view = predict(model, poses)
    assert np.array_equal(image_view[:, 0], np.zeros((8, 3), np.float32))
    np.testing.assert_allclose(image_view, raw - raw[:, :1], atol=1e-6)


FAULTS_OF_REPEATED_BLOCKS = """
import resource, sys
import numpy as np
from training.speed import keep_freed_memory
if sys.argv[1] == "keep" and not keep_freed_memory():
    print("not glibc")
    sys.exit()
def faults_of_a_30mb_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(30 << 20, dtype=np.uint8)           # allocated, written, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print([faults_of_a_30mb_block() for _ in range(4)])
"""


def test_kept_freed_memory_is_reused_without_page_faults():
    """An activation-sized block freed and allocated again: glibc's defaults mapped it anew the
    second time (the kernel zeroing every page again); after keep_freed_memory() it comes back from
    the heap with no page fault. Each case in a fresh process (the setting is process-wide)."""
    import subprocess

    faults = {}
    for case in ("default", "keep"):
        run = subprocess.run([sys.executable, "-P", "-c", FAULTS_OF_REPEATED_BLOCKS, case],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        if run.stdout.strip() == "not glibc":
            pytest.skip("the C library is not glibc: keep_freed_memory() changes nothing")
        faults[case] = json.loads(run.stdout)
    first = faults["keep"][0]
    assert first > 0 and max(faults["keep"][1:]) < first / 10, faults
    assert faults["default"][1] > first / 2, faults        # what it changes: the second block faulted


def test_checkpoint_holds_the_saved_optimizer_state(two_epochs):
    out, _, saved = two_epochs
    tensors = load_file(str(out / "checkpoint.safetensors"))
    for key, value in saved["model"].items():
        assert torch.equal(tensors["model." + key], value)
    for index, state in saved["optimizer"]["state"].items():
        for name, value in state.items():
            if name != "step":
                assert torch.equal(tensors[f"optim.{index}.{name}"], value)


def test_resume_continues_at_epoch_three(two_epochs, tmp_path):
    source, _, saved = two_epochs
    out = tmp_path / "resumed"
    shutil.copytree(source, out)
    before = (out / "metrics.jsonl").read_text()
    restored = {}
    original = train_module.load_checkpoint

    def recording_load(directory, model, optimizer, ema=None, **kwargs):
        meta = original(directory, model, optimizer, ema, **kwargs)
        restored["optimizer"] = optimizer_snapshot(optimizer)
        restored["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return meta

    epochs_run = []
    original_eval = train_module.evaluate_pose_set

    def counting_eval(model, poses, *args, **kwargs):
        epochs_run.append(1)
        return original_eval(model, poses, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "load_checkpoint", recording_load)
    mp.setattr(train_module, "evaluate_pose_set", counting_eval)
    try:
        record = train_module.main(ARGS + ["--epochs", "3", "--out", str(out), "--resume"])
    finally:
        mp.undo()

    assert_same_optimizer_state(restored["optimizer"], saved["optimizer"])
    for key, value in saved["model"].items():
        assert torch.equal(restored["model"][key], value), key
    assert len(epochs_run) == 1                                  # only epoch 3 was trained
    lines = read_metrics(out)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert (out / "metrics.jsonl").read_text().startswith(before)
    assert record == lines[-1] and record["epoch"] == 3
    assert record["lr"] == pytest.approx(1e-3 * 0.95 ** 3)
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["epoch"] == 3 and len(meta["history"]) == 3
    config = json.loads((out / "tiny.json").read_text())
    assert config["training"]["epochs_done"] == 3
    _, info = load_weights(out / "tiny.safetensors")
    assert info.training["epochs_done"] == 3


def test_resume_reads_the_checkpoint_state_from_the_tensor_file(two_epochs, tmp_path):
    """Tensors and metadata are one file (one rename), so a run killed between writing the tensors
    and the readable checkpoint.json cannot resume from one epoch's weights with another's state."""
    source, _, _ = two_epochs
    out = tmp_path / "stale"
    shutil.copytree(source, out)
    meta = json.loads((out / "checkpoint.json").read_text())
    (out / "checkpoint.json").write_text(json.dumps({**meta, "epoch": 1, "history": meta["history"][:1]}))
    record = train_module.main(ARGS + ["--epochs", "3", "--out", str(out), "--resume"])
    assert record["epoch"] == 3 and [line["epoch"] for line in read_metrics(out)] == [1, 2, 3]


def test_damaged_checkpoint_tensors_are_refused_and_one_saved_before_the_hash_resumes(two_epochs, tmp_path):
    """4000 bytes zeroed (or set to 0xFF) inside a checkpoint's tensor data resumed without a word:
    safetensors checks the header and the lengths, not the bytes. The header now holds a SHA-256
    of the tensors; a checkpoint saved before it has none and resumes as before."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from training.checkpoint import CheckpointError

    source, _, _ = two_epochs
    out = tmp_path / "damaged"
    shutil.copytree(source, out)
    path = out / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    damaged = slice(len(data) - 20000, len(data) - 16000)      # the auditor's: inside the tensor data
    assert any(data[damaged])
    data[damaged] = bytes(4000)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"^{path}: damaged, not a checkpoint that can be resumed"):
        train_module.main(ARGS + ["--epochs", "3", "--out", str(out), "--resume"])
    assert [line["epoch"] for line in read_metrics(out)] == [1, 2]

    from training.checkpoint import TENSORS_SHA256

    old = tmp_path / "before_the_hash"
    shutil.copytree(source, old)
    with safe_open(str(old / "checkpoint.safetensors"), framework="pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    assert TENSORS_SHA256 in metadata
    del metadata[TENSORS_SHA256]
    save_file(tensors, str(old / "checkpoint.safetensors"), metadata=metadata)
    record = train_module.main(ARGS + ["--epochs", "3", "--out", str(old), "--resume"])
    assert record["epoch"] == 3 and [line["epoch"] for line in read_metrics(old)] == [1, 2, 3]


def rewrite_checkpoint_metadata(out, edit) -> None:
    """The checkpoint in ``out`` saved again with ``edit(metadata)``'s header metadata, its tensors
    (and their SHA-256) as they were."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = out / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    edit(metadata)
    save_file(tensors, str(path), metadata=metadata)


def test_damaged_checkpoint_metadata_is_refused_and_one_saved_before_its_hash_resumes(two_epochs, tmp_path):
    """The tensors' SHA-256 left the metadata beside them unchecked: one byte of the header's
    '"epoch": 2' turned to 1 (the tensor data and the header's length as they were) resumed a
    2-epoch run at epoch 1 without a word, and trained its second epoch again."""
    from training.checkpoint import METADATA_SHA256, CheckpointError

    source, _, _ = two_epochs
    out = tmp_path / "damaged"
    shutil.copytree(source, out)
    path = out / "checkpoint.safetensors"
    data = path.read_bytes()
    # the first "epoch" of the header's text is the checkpoint's own (the model's config is before it)
    assert data.index(b'\\"epoch\\": 2,') < data.index(b'\\"history\\"')
    path.write_bytes(data.replace(b'\\"epoch\\": 2,', b'\\"epoch\\": 1,', 1))
    with pytest.raises(CheckpointError, match=rf"^{path}: damaged, not a checkpoint that can be resumed "
                                              r"\(its metadata does not match"):
        train_module.main(ARGS + ["--epochs", "3", "--out", str(out), "--resume"])
    assert [line["epoch"] for line in read_metrics(out)] == [1, 2]

    old = tmp_path / "before_the_hash"
    shutil.copytree(source, old)
    rewrite_checkpoint_metadata(old, lambda metadata: metadata.pop(METADATA_SHA256))
    record = train_module.main(ARGS + ["--epochs", "3", "--out", str(old), "--resume"])
    assert record["epoch"] == 3 and [line["epoch"] for line in read_metrics(old)] == [1, 2, 3]


@pytest.mark.parametrize("edit, message", [
    (lambda meta: "[" * 100000 + "]" * 100000, "maximum recursion depth"),     # RecursionError traceback
    (lambda meta: json.dumps({**meta, "epoch": "2"}), "its metadata's 'epoch' is \"2\""),   # TypeError
    (lambda meta: json.dumps({**meta, "history": [1, 2]}), "its metadata's 'history' is [1, 2]"),
    (lambda meta: json.dumps({**meta, "adam_steps": [1]}), "its metadata's 'adam_steps' is [1]"),  # AttributeError
    (lambda meta: json.dumps({**meta, "lr": "x"}), "its metadata's 'lr' is \"x\""),    # torch's TypeError
    (lambda meta: json.dumps({**meta, "processes": "1"}), "its metadata's 'processes' is \"1\""),
    (lambda meta: json.dumps({**meta, "args": []}), "its metadata's 'args' is []"),
    (lambda meta: json.dumps({**meta, "run_state": []}), "its metadata's 'run_state' is []"),
    # the run's own arguments and state, taken as they were: a ZeroDivisionError, the weights saved
    # outside --out, TypeErrors
    (lambda meta: json.dumps({**meta, "args": {**meta["args"], "batch_size": 0}}), "its run's --batch-size 0"),
    (lambda meta: json.dumps({**meta, "args": {**meta["args"], "name": "../elsewhere"}}),
     "its run's --name \"../elsewhere\""),
    (lambda meta: json.dumps({**meta, "args": {**meta["args"], "dim": "32"}}), "its run's --dim \"32\""),
    (lambda meta: json.dumps({**meta, "run_state": {**meta["run_state"], "foo": 1}}), "its run state holds 'foo'"),
])
def test_checkpoint_metadata_that_no_save_writes_is_one_line(two_epochs, tmp_path, edit, message):
    """Metadata whose SHA-256 matches but that is not what save_checkpoint writes (a file made by
    hand, or by another program) ended --resume in a traceback, each in another part of the run."""
    from training.checkpoint import CHECKPOINT_JSON, METADATA_SHA256, text_sha256

    source, _, _ = two_epochs
    out = tmp_path / "edited"
    shutil.copytree(source, out)

    def rewrite(metadata):
        metadata[CHECKPOINT_JSON] = edit(json.loads(metadata[CHECKPOINT_JSON]))
        metadata[METADATA_SHA256] = text_sha256(metadata[CHECKPOINT_JSON])

    rewrite_checkpoint_metadata(out, rewrite)
    finished = subprocess.run([sys.executable, "-P", "-m", "training.train", "--out", str(out), "--resume",
                               "--epochs", "3"], capture_output=True, text=True, timeout=300)
    lines = finished.stderr.strip().splitlines()
    assert finished.returncode == 1 and "Traceback" not in finished.stderr, finished.stderr[-2000:]
    assert lines[-1].startswith(f"error: {out / 'checkpoint.safetensors'}: not a checkpoint that can be resumed")
    assert message in lines[-1]
    assert [line["epoch"] for line in read_metrics(out)] == [1, 2]


def test_a_training_set_smaller_than_one_batch_is_refused_at_start(tmp_path):
    """No step could run: an epoch run ended having written nothing, a budget run never ended."""
    args = without(without(ARGS, "--synthetic"), "--batch-size") + ["--synthetic", "200", "--batch-size", "256"]
    for budget in (["--epochs", "2"], ["--budget-samples", "1000"]):
        with pytest.raises(SystemExit, match="do not fill one batch of 256"):
            train_module.main(args + budget + ["--out", str(tmp_path)])


def test_resume_of_a_finished_run_does_nothing_more_saying_so_and_more_epochs_go_on(two_epochs, tmp_path, capsys):
    """A preempted job run again as it was: --resume of a run that has done its epochs does nothing
    more, and says so in a line (it said nothing). With --epochs asking for more, it goes on."""
    source, record, _ = two_epochs
    out = tmp_path / "again"
    shutil.copytree(source, out)
    train_module.main(ARGS + ["--epochs", "2", "--out", str(out), "--resume"])
    assert [line["epoch"] for line in read_metrics(out)] == [1, 2]
    assert (f"[train] the run in {out} has done its epochs: nothing more to do (more --epochs, or a new run "
            f"with --init-weights {out / 'tiny'}.safetensors, trains on)") in capsys.readouterr().err
    train_module.main(ARGS + ["--epochs", "3", "--out", str(out), "--resume"])
    assert [line["epoch"] for line in read_metrics(out)] == [1, 2, 3]


def test_study_refuses_a_run_name_it_does_not_have(tmp_path, capsys):
    """A typo, or a name made with other budgets, selected nothing: the study wrote an empty table
    and failed in the plot with an IndexError. Now one line that lists the runs there are."""
    from training import study
    with pytest.raises(SystemExit) as stop:
        study.main(["--runs", "d128_s5_b3", "--short", "0.5", "--out", str(tmp_path / "runs"),
                    "--doc", str(tmp_path / "doc")])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "--runs d128_s5_b3: not a run of this study" in error and "d128_s5_b0.5" in error
    assert not (tmp_path / "doc.md").exists()


def all_classes_pose_set():
    poses = synthetic_pose_set(150, seed=5)
    poses.action_ids = (np.arange(len(poses)) % 15).astype(np.int16)
    return poses


def test_evaluation_table_has_the_paper_layout():
    torch.manual_seed(0)
    model = CFINet(CONFIG)
    poses = all_classes_pose_set()
    result = evaluate_pose_set(model, poses)
    assert result["frames"] == 150
    for name in ("mpjpe", "p_mpjpe"):
        per_action = result[name]["per_action"]
        assert list(per_action) == list(ACTION_CLASSES)
        assert result[name]["mean_over_actions"] == pytest.approx(np.mean(list(per_action.values())))
        assert result[name]["mean_over_frames"] > 0
    table = markdown_table(result, "S9, GT 2D")
    lines = table.strip().splitlines()
    assert len(lines) == 4
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["S9, GT 2D"] + [ACTION_HEADINGS[a] for a in ACTION_CLASSES] + ["Avg"]
    assert header[1:6] == ["Dir.", "Disc.", "Eat", "Greet", "Phone"]
    assert lines[1].count("---") == 17
    for line, label, name in ((lines[2], "MPJPE (mm)", "mpjpe"), (lines[3], "P-MPJPE (mm)", "p_mpjpe")):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == label and len(cells) == 17
        values = [float(c) for c in cells[1:]]
        expected = [result[name]["per_action"][a] for a in ACTION_CLASSES] + [result[name]["mean_over_actions"]]
        np.testing.assert_allclose(values, expected, atol=0.05 + 1e-9)


def test_evaluation_with_some_classes_only_lists_those():
    torch.manual_seed(0)
    model = CFINet(CONFIG)
    poses = all_classes_pose_set()
    poses = poses.subset(np.isin(poses.action_ids, [ACTION_CLASSES.index("Walking"),
                                                    ACTION_CLASSES.index("Eating")]))
    result = evaluate_pose_set(model, poses, flip_test=True)
    assert list(result["mpjpe"]["per_action"]) == ["Eating", "Walking"]
    header = markdown_table(result, "x").splitlines()[0]
    assert header == "| x | Eat | Walk | Avg |"


# --- speed choices, budget schedule, EMA, divergence ---------------------------------------------

from training import speed                                          # noqa: E402
from training.schedule import Budget, BudgetSchedule, WeightEMA       # noqa: E402


def test_precision_probe_keeps_fp32_where_bf16_is_slower():
    # An AVX2-only CPU: bf16 autocast is emulated and ten times slower.
    limits = {}

    def timing(precision, limit):
        limits[precision] = limit
        return {"fp32": 2.0, "bf16": 25.0}[precision]

    choice, timings = speed.choose_precision(timing)
    assert choice == "fp32" and timings == {"fp32": 2.0, "bf16": 25.0}
    assert limits == {"fp32": float("inf"), "bf16": 6.0}       # bf16 may stop after one slow step


def test_precision_probe_takes_bf16_only_when_clearly_faster():
    assert speed.choose_precision(lambda p, limit: {"fp32": 2.0, "bf16": 1.0}[p])[0] == "bf16"
    assert speed.choose_precision(lambda p, limit: {"fp32": 2.0, "bf16": 1.95}[p])[0] == "fp32"   # a tie is fp32


def test_precision_probe_skips_a_precision_that_fails():
    def timing(precision, limit):
        if precision == "bf16":
            raise RuntimeError("not supported on this CPU")
        return 1.0
    choice, timings = speed.choose_precision(timing)
    assert choice == "fp32" and timings["bf16"] == float("inf")


def test_seconds_per_step_is_the_median_of_the_timed_calls():
    ticks = iter([0.0, 9.0, 10.0, 11.0, 20.0, 23.0, 30.0, 32.0])      # warm-up 9 s, then 1, 3, 2 s
    calls = []
    assert speed.seconds_per_step(lambda: calls.append(1), steps=3, warmup=1, clock=lambda: next(ticks)) == 2.0
    assert len(calls) == 4


def test_seconds_per_step_stops_at_the_first_call_over_the_limit():
    ticks = iter([0.0, 30.0])
    calls = []
    assert speed.seconds_per_step(lambda: calls.append(1), clock=lambda: next(ticks), limit=6.0) == 30.0
    assert len(calls) == 1


@pytest.mark.parametrize("timings, chosen", [({"fp32": 2.0, "bf16": 25.0}, "fp32"),
                                             ({"fp32": 2.0, "bf16": 1.0}, "bf16")])
def test_trainer_uses_the_probed_precision(monkeypatch, tmp_path, timings, chosen):
    """The run trains in (and records) what the probe picks: bf16 where it is faster, which fp32,
    the run's fallback, is not (a stub that picked fp32 only could not tell a trainer that ignored it)."""
    original = train_module.choose_precision
    monkeypatch.setattr(train_module, "choose_precision",
                        lambda time_step: original(lambda p, limit: timings[p]))
    args = without(ARGS, "--amp") + ["--epochs", "1", "--out", str(tmp_path)]
    train_module.main(args)
    record = json.loads((tmp_path / "tiny.json").read_text())["training"]
    assert record["compute"]["precision"] == chosen
    assert record["compute"]["cpu"] == speed.cpu_model() and record["compute"]["threads"] == 1


def test_compile_falls_back_to_eager_with_the_reason():
    def probe(candidate):
        raise RuntimeError("no C++ compiler")
    function = lambda x: x  # noqa: E731
    result, how = speed.compile_or_eager(function, "auto", probe)
    assert result is function and "no C++ compiler" in how
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        speed.compile_or_eager(function, "on", probe)
    assert speed.compile_or_eager(function, "off", probe) == (function, "off")

    def silent_probe(candidate):                # an error without a message (an IndexError before)
        raise RuntimeError()
    assert speed.compile_or_eager(function, "auto", silent_probe) == (function, "eager (torch.compile failed: "
                                                                                "RuntimeError: )")


def test_compiled_training_step_matches_eager():
    torch.manual_seed(0)
    x = torch.from_numpy(synthetic_pose_set(64, seed=1).inputs_2d)
    y = torch.from_numpy(synthetic_pose_set(64, seed=1).targets_3d)
    losses = {}
    for mode in ("off", "on"):
        torch.manual_seed(0)
        model = CFINet(CONFIG)
        forward_loss, how = train_module.build_forward_loss(model, train_module.LOSSES["mpjpe"], "fp32",
                                                            torch.device("cpu"), mode, x, y)
        assert how == ("off" if mode == "off" else "compiled")
        losses[mode] = forward_loss(x, y)
        losses[mode].backward()
        losses[mode + "_grad"] = model.embed.weight.grad.clone()
    assert torch.allclose(losses["on"], losses["off"], rtol=1e-5)
    assert torch.allclose(losses["on_grad"], losses["off_grad"], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_budget_schedule_warms_up_and_ends_low(kind):
    schedule = BudgetSchedule(peak_lr=2e-3, kind=kind)
    lrs = [schedule.lr(p) for p in np.linspace(0, 1, 201)]
    assert max(lrs) == pytest.approx(2e-3, rel=1e-3)
    assert lrs[0] < 2e-3 / 20 and lrs[-1] < 2e-3 / 50
    peak = int(np.argmax(lrs))
    assert np.all(np.diff(lrs[:peak + 1]) >= 0) and np.all(np.diff(lrs[peak:]) <= 0)
    assert schedule.lr(1.5) == schedule.lr(1.0)


def test_constant_schedule_warms_up_then_holds_the_peak():
    schedule = BudgetSchedule(peak_lr=2e-3, kind="constant", warmup=0.1)
    assert schedule.lr(0.0) == pytest.approx(2e-3 / 25)
    assert schedule.lr(0.05) == pytest.approx((2e-3 / 25 + 2e-3) / 2)
    assert [schedule.lr(p) for p in (0.1, 0.5, 1.0, 1.5)] == [2e-3] * 4


@pytest.mark.parametrize("kind", ["cosine", "onecycle", "constant"])
def test_first_step_of_every_schedule_has_a_learning_rate(kind):
    # A run's first step is taken at progress 0: at lr 0 it would only move Adam's moments.
    assert BudgetSchedule(peak_lr=2e-3, kind=kind).lr(0.0) == pytest.approx(2e-3 / 25)


def test_budget_progress_is_the_larger_share():
    assert Budget(minutes=1, samples=1000).progress(30, 900) == pytest.approx(0.9)
    assert Budget(minutes=1).progress(45, 10 ** 9) == pytest.approx(0.75)
    assert not Budget().enabled


def test_samples_budget_ends_at_the_budget(tmp_path):
    args = without(ARGS, "--max-steps-per-epoch")
    record = train_module.main(args + ["--budget-samples", "3000", "--out", str(tmp_path)])
    # 2000 poses / 256 = 7 steps per epoch; 3000 samples need 12 steps: one epoch and 5 steps.
    assert record["samples"] == 12 * 256 and record["global_step"] == 12
    assert record["lr"] < 1e-3 / 25                       # the last step ran at the end of the schedule
    lines = read_metrics(tmp_path)
    assert [line["samples"] for line in lines] == [7 * 256, 12 * 256]
    again = train_module.main(args + ["--budget-samples", "3000", "--out", str(tmp_path), "--resume"])
    assert again == record                                 # a spent budget trains no more


def test_minutes_budget_ends_at_the_budget(monkeypatch, tmp_path):
    ticks = iter(range(0, 10 ** 6, 6))                       # every clock read advances 6 s
    monkeypatch.setattr(train_module, "clock", lambda: next(ticks))
    args = without(ARGS, "--max-steps-per-epoch")
    record = train_module.main(args + ["--budget-minutes", "1", "--out", str(tmp_path)])
    # each step reads the clock twice (6 s of training time): 10 steps spend the minute
    assert record["global_step"] == 10 and record["train_seconds"] == pytest.approx(60)


def test_a_suspended_step_does_not_spend_the_budget(monkeypatch, tmp_path):
    now = [0.0]
    monkeypatch.setattr(train_module, "clock", lambda: now[0])
    original, calls = train_module.train_step, []

    def six_second_step(*a, **k):
        calls.append(1)
        now[0] += 3600 if len(calls) == 12 else 6           # step 12: the process sleeps for an hour
        return original(*a, **k)

    monkeypatch.setattr(train_module, "train_step", six_second_step)
    args = without(ARGS, "--max-steps-per-epoch")
    record = train_module.main(args + ["--budget-minutes", "1.5", "--out", str(tmp_path)])
    # 11 steps of 6 s, then the suspended one counts as 5 typical steps (30 s), not an hour: 96 s > 90 s
    assert record["global_step"] == 12
    assert record["train_seconds"] == pytest.approx(96)


def budget_run(checkpoint_minutes: str) -> list[str]:
    """The tiny run as a 5000-sample budget run with an EMA: 7 steps an epoch, 20 in all."""
    return (without(ARGS, "--max-steps-per-epoch")
            + ["--budget-samples", "5000", "--checkpoint-minutes", checkpoint_minutes, "--ema-decay", "0.9"])


def train_step_doing(monkeypatch, call: int, before_step) -> list:
    """``train_module.train_step`` patched to run ``before_step()`` before its ``call``-th call;
    returns the list its calls are counted in. ``monkeypatch.undo()`` puts the real one back."""
    original, calls = train_module.train_step, []

    def step(*a, **k):
        calls.append(1)
        if len(calls) == call:
            before_step()
        return original(*a, **k)

    monkeypatch.setattr(train_module, "train_step", step)
    return calls


def test_interrupted_budget_run_resumes_to_the_same_weights(monkeypatch, tmp_path):
    args = budget_run(checkpoint_minutes="0")
    whole = train_module.main(args + ["--out", str(tmp_path / "whole")])

    def interrupt():
        raise KeyboardInterrupt

    train_step_doing(monkeypatch, 10, interrupt)       # mid-epoch 2, after a mid-epoch checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_module.main(args + ["--out", str(tmp_path / "split")])
    monkeypatch.undo()
    # a flag of what it learns given otherwise is refused; left out, it is the run's (the defaults
    # stood in: `--out X --resume` went on as a 20-epoch paper-size run without the EMA)
    with pytest.raises(train_module.RunRefused, match=r"--ema-decay 0.5 \(the run's: 0.9\)"):
        train_module.main(args + ["--out", str(tmp_path / "split"), "--resume", "--ema-decay", "0.5"])
    resumed = train_module.main(["--out", str(tmp_path / "split"), "--resume"])
    assert resumed["global_step"] == whole["global_step"] == 20
    assert resumed["lr"] == whole["lr"]
    assert_same_weights(tmp_path / "whole", tmp_path / "split")
    record = json.loads((tmp_path / "split" / "tiny.json").read_text())["training"]
    assert len(record["commands"]) == 2 and record["commands"][1].endswith("--resume")
    # the epoch cut by the interruption is recorded whole (its steps before the checkpoint count)
    assert ([(m["epoch"], m["steps"], m["train_loss"]) for m in read_metrics(tmp_path / "split")]
            == [(m["epoch"], m["steps"], m["train_loss"]) for m in read_metrics(tmp_path / "whole")])


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler during the test, as in a terminal: a suite started as a background
    job (`pytest ... &`) inherits SIGINT ignored, and a second signal was then ignored with it."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("signals", [1, 2])
def test_a_stop_signal_stops_at_the_steps_end_with_a_checkpoint_and_a_second_at_once(monkeypatch, tmp_path, signals,
                                                                                      python_sigint_handler):
    """The first SIGINT mid-epoch (no periodic checkpoint due: --checkpoint-minutes 60) saves a
    checkpoint at the end of that step, from which --resume gives the uninterrupted run's weights;
    a second SIGINT stops at once (KeyboardInterrupt, as without a handler), saving nothing more."""
    import signal

    args = budget_run(checkpoint_minutes="60")
    whole = train_module.main(args + ["--out", str(tmp_path / "whole")])

    def signal_now():
        for _ in range(signals):
            signal.raise_signal(signal.SIGINT)

    handler_before = signal.getsignal(signal.SIGINT)
    calls = train_step_doing(monkeypatch, 10, signal_now)     # mid-epoch 2 (7 steps an epoch)
    if signals == 2:
        with pytest.raises(KeyboardInterrupt):
            train_module.main(args + ["--out", str(tmp_path / "split")])
        assert len(calls) == 10         # the checkpoint is still epoch 1's evaluation's
        assert json.loads((tmp_path / "split" / "checkpoint.json").read_text())["run_state"]["global_step"] == 7
        return
    with pytest.raises(train_module.TrainingStopped, match=r"stopped by SIGINT at step 10 \(epoch 2, step 3 of 7\); "
                                                           r"its checkpoint is saved: go on with python -m "
                                                           r"training.train --out \S+split --resume"):
        train_module.main(args + ["--out", str(tmp_path / "split")])
    assert len(calls) == 10 and signal.getsignal(signal.SIGINT) is handler_before
    saved = json.loads((tmp_path / "split" / "checkpoint.json").read_text())["run_state"]
    assert (saved["global_step"], saved["epoch"], saved["step_in_epoch"]) == (10, 1, 3)
    monkeypatch.undo()
    resumed = train_module.main(["--out", str(tmp_path / "split"), "--resume"])
    assert resumed["global_step"] == whole["global_step"] == 20
    assert_same_weights(tmp_path / "whole", tmp_path / "split")


def test_fp16_scales_the_loss_so_that_small_gradients_still_train():
    """fp16 holds nothing below 6e-8: the backward pass of an fp16 product flushed the gradients of
    a loss scaled by 1e-6 to zero, and Adam's step moved no weight. With the run's GradScaler the
    same step trains (bf16, with fp32's range, gets no scaler)."""
    cpu = torch.device("cpu")
    x, y = torch.randn(64, 17, 2), torch.randn(64, 17, 3)

    def weights_moved(scaler) -> bool:
        torch.manual_seed(0)
        model = CFINet(CONFIG)
        before = [t.detach().clone() for t in model.parameters()]
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        tiny_loss = lambda pred, target: 1e-6 * train_module.LOSSES["mpjpe"](pred, target)   # noqa: E731
        forward_loss, _ = train_module.build_forward_loss(model, tiny_loss, "fp16", cpu, "off", x, y)
        train_module.train_step(forward_loss, optimizer, x, y, train_module.NO_AUGMENTATION, scaler=scaler)
        return any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    assert not weights_moved(None)
    assert weights_moved(train_module.grad_scaler("fp16", cpu))
    assert train_module.grad_scaler("bf16", cpu) is None and train_module.grad_scaler("fp32", cpu) is None


def test_an_fp16_run_resumes_with_its_loss_scale_to_the_uninterrupted_runs_weights(tmp_path):
    args = ARGS + ["--amp", "fp16"]            # the last --amp is argparse's
    whole = train_module.main(args + ["--epochs", "2", "--out", str(tmp_path / "whole")])
    train_module.main(args + ["--epochs", "1", "--out", str(tmp_path / "split")])
    scale = json.loads((tmp_path / "split" / "checkpoint.json").read_text())["run_state"]["grad_scaler"]
    assert scale["scale"] > 0 and scale["_growth_tracker"] == 4      # 4 steps without an overflow
    resumed = train_module.main(args + ["--epochs", "2", "--out", str(tmp_path / "split"), "--resume"])
    assert resumed["train_loss"] == whole["train_loss"]
    scales = [json.loads((tmp_path / run / "checkpoint.json").read_text())["run_state"]["grad_scaler"]
              for run in ("whole", "split")]
    assert scales[0] == scales[1] and scales[0]["_growth_tracker"] == 8     # the scale went on, not anew
    assert_same_weights(tmp_path / "whole", tmp_path / "split")


def test_noisy_2d_accuracy_is_reported_beside_the_clean(tmp_path):
    record = train_module.main(ARGS + ["--epochs", "1", "--eval-noise-std", "0.02", "--out", str(tmp_path)])
    assert record["test_mpjpe_mm_noisy"] > record["test_mpjpe_mm"]
    # a synthetic run's test set is synthetic: it was recorded as S9's
    metrics = json.loads((tmp_path / "tiny.json").read_text())["metrics"]["synthetic_gt2d"]
    assert metrics["noisy_2d_std"] == 0.02 and metrics["noisy_mpjpe_mm"] == record["test_mpjpe_mm_noisy"]


def test_ema_weights_differ_from_raw_and_are_saved(tmp_path):
    saved_states = {}
    original = train_module.save_weights

    def recording_save(model, path, **kwargs):
        saved_states["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return original(model, path, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "save_weights", recording_save)
    try:
        record = train_module.main(ARGS + ["--epochs", "2", "--ema-decay", "0.9", "--out", str(tmp_path)])
    finally:
        mp.undo()
    tensors = load_file(str(tmp_path / "checkpoint.safetensors"))
    raw = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model, _ = load_weights(tmp_path / "tiny.safetensors")
    names = [name for name, _ in model.named_parameters()]
    for index, name in enumerate(names):
        assert torch.equal(model.state_dict()[name], tensors[f"ema.{index}"]), name
        assert torch.equal(saved_states["model"][name], tensors[f"ema.{index}"]), name
    assert any(not torch.equal(model.state_dict()[n], raw[n]) for n in names)
    assert record["test_mpjpe_mm"] != record["test_mpjpe_mm_raw"]


def test_weight_ema_follows_the_decay_ramp():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = WeightEMA(model, decay=0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update()                                   # first update: decay min(0.99, 2/11)
    assert ema.shadow[0].item() == pytest.approx(1 - 2 / 11)


def test_non_finite_loss_stops_training_without_saving(monkeypatch, tmp_path):
    original = train_module.train_step
    calls = []

    def diverging_step(*args, **kwargs):
        calls.append(1)
        loss = original(*args, **kwargs)
        return loss * float("nan") if len(calls) > 5 else loss

    monkeypatch.setattr(train_module, "train_step", diverging_step)
    with pytest.raises(train_module.TrainingDiverged, match="non-finite|nan"):
        train_module.main(ARGS + ["--epochs", "3", "--out", str(tmp_path)])
    # epoch 1 (4 steps) was saved; nothing of the diverged epoch 2 was
    assert [line["epoch"] for line in read_metrics(tmp_path)] == [1]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 1


def test_diverged_run_exits_with_a_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(train_module, "train_step", lambda *a, **k: torch.tensor(float("nan")))
    monkeypatch.setattr(sys, "argv", ["train"] + ARGS + ["--epochs", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        train_module.main()
    assert exit_info.value.code == 1
    assert "training diverged" in capsys.readouterr().err
    assert not (tmp_path / "tiny.safetensors").exists()


def test_init_weights_starts_from_the_file_and_carries_its_record(two_epochs, tmp_path):
    source = two_epochs[0] / "tiny.safetensors"
    trained, info = load_weights(source)
    # lr 1e-9: a fine-tune that barely moves must end where its source was, not at a fresh init
    record = train_module.main(without(ARGS, "--max-steps-per-epoch")
                               + ["--budget-samples", "512", "--lr", "1e-9", "--init-weights", str(source),
                                  "--out", str(tmp_path)])
    assert record["global_step"] == 2
    tuned, tuned_info = load_weights(tmp_path / "tiny.safetensors")
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[key], value, atol=1e-6, rtol=0)
    fresh = CFINet(CONFIG).state_dict()
    assert not torch.allclose(fresh["head.weight"], tuned.state_dict()["head.weight"])
    training = tuned_info.training
    assert training["commands"][:len(info.training["commands"])] == info.training["commands"]
    assert "--init-weights" in training["commands"][-1]
    assert training["init_weights"]["sha256"] == info.sha256
    assert training["compute"]["cpu_hours"] == pytest.approx(
        training["compute"]["cpu_hours_this_run"] + info.training["compute"]["cpu_hours"])


def test_init_weights_of_another_architecture_is_refused(two_epochs, tmp_path):
    args = ARGS[:]
    args[args.index("--dim") + 1] = "64"
    with pytest.raises(ValueError, match="differs from this run"):
        train_module.main(args + ["--epochs", "1", "--init-weights", str(two_epochs[0] / "tiny.safetensors"),
                                  "--out", str(tmp_path)])


@pytest.mark.slow
def test_distributed_training_resumes_exactly_and_a_minutes_budget_ends_on_every_rank(tmp_path):
    """torchrun, two CPU processes (gloo): 1 epoch + --resume gives the 2-epoch run's weights (each
    rank's augmentation draws are a function of seed, rank and step, so nothing depends on which RNG
    state was saved); and a --budget-minutes run ends on both ranks together (each decided on its own
    clock: one left the process group while the other waited in the next all-reduce)."""
    import os
    import subprocess

    args = ["--synthetic", "2000", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "64",
            "--max-steps-per-epoch", "6", "--threads", "1", "--seed", "7", "--name", "tiny", "--compile", "off",
            "--amp", "off", "--eval-noise-std", "0", "--noise-std", "0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(*extra):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               "-m", "training.train", *args, *extra], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    torchrun("--epochs", "2", "--out", str(tmp_path / "whole"))
    torchrun("--epochs", "1", "--out", str(tmp_path / "split"))
    torchrun("--epochs", "2", "--out", str(tmp_path / "split"), "--resume")
    whole, _ = load_weights(tmp_path / "whole" / "tiny.safetensors")
    split, _ = load_weights(tmp_path / "split" / "tiny.safetensors")
    for key, value in whole.state_dict().items():
        assert torch.equal(value, split.state_dict()[key]), key
    # both processes' CPU time, at 1 thread each (one process's was counted)
    compute = json.loads((tmp_path / "whole" / "tiny.json").read_text())["training"]["compute"]
    assert compute["cpu_hours_this_run"] == pytest.approx(2 * 1 * compute["train_hours"])

    torchrun("--budget-minutes", "0.05", "--out", str(tmp_path / "budget"))
    assert json.loads((tmp_path / "budget" / "checkpoint.json").read_text())["run_state"]["finished"]


def test_placements_train_on_other_inputs_and_the_weights_say_where_their_people_stood(two_epochs, tmp_path):
    """--placement-prob: the same poses seen elsewhere reach the step (the loss differs from the
    plain run's, step for step), and the weights' JSON records the wider input domain the node
    will turn and zoom people into; weights trained without it keep Human3.6M's."""
    from cfi_pose_ros.camera import H36M_INPUT_DOMAIN
    from cfi_pose_ros.weights import read_weights_info

    plain_out, plain, _ = two_epochs
    placed = train_module.main(ARGS + ["--epochs", "2", "--placement-prob", "0.5", "--placement-distance", "2",
                                       "15", "--out", str(tmp_path)])
    assert placed["train_loss"] != plain["train_loss"]
    info = read_weights_info(tmp_path / "tiny.safetensors")
    assert info.input_domain.pelvis_angles_deg == ((-30.0, -20.0), (30.0, 15.0))
    low, high = info.input_domain.person_scale_range
    h36m_low, h36m_high = H36M_INPUT_DOMAIN.person_scale_range
    # people at 15 m are half the size of Human3.6M's farthest (6.9 m), at 2 m 1.6x its nearest (3.3 m)
    assert low < 0.6 * h36m_low and high > 1.5 * h36m_high
    data = json.loads((tmp_path / "tiny.json").read_text())["training"]["data"]
    assert data == "synthetic"       # the synthetic set has no Human3.6M record; the args are in the command
    assert "--placement-prob 0.5" in json.loads((tmp_path / "tiny.json").read_text())["training"]["command"]
    assert read_weights_info(plain_out / "tiny.safetensors").input_domain == H36M_INPUT_DOMAIN
    assert "input_domain" not in json.loads((plain_out / "tiny.json").read_text())


def test_cut_people_reach_the_step_and_the_weights_say_so(two_epochs, tmp_path):
    """--cut-prob: the joints below a line are missing in that share of each batch (the loss differs
    from the plain run's), and the weights' JSON records the share."""
    _, plain, _ = two_epochs
    cut = train_module.main(ARGS + ["--epochs", "2", "--cut-prob", "0.5", "--out", str(tmp_path)])
    assert cut["train_loss"] != plain["train_loss"]
    assert "--cut-prob 0.5" in json.loads((tmp_path / "tiny.json").read_text())["training"]["command"]


def test_a_resumed_run_keeps_its_precision_on_the_same_cpu_and_probes_again_on_another(monkeypatch, tmp_path):
    """A probe beside other work can pick another precision than the run started in: on the same
    CPU model the resumed run keeps the first choice; on another CPU it measures again."""
    probed = []

    def choose(timings):
        def recording_choose(time_step):
            probed.append(timings)
            return speed.choose_precision(lambda p, limit: timings[p])
        return recording_choose

    args = without(ARGS, "--amp") + ["--out", str(tmp_path)]
    monkeypatch.setattr(train_module, "choose_precision", choose({"fp32": 2.0, "bf16": 1.0}))
    train_module.main(args + ["--epochs", "1"])
    monkeypatch.setattr(train_module, "choose_precision", choose({"fp32": 1.0, "bf16": 2.0}))  # a busy probe
    train_module.main(args + ["--epochs", "2", "--resume"])
    assert len(probed) == 1
    assert json.loads((tmp_path / "tiny.json").read_text())["training"]["compute"]["precision"] == "bf16"
    monkeypatch.setattr(train_module, "cpu_model", lambda: "another CPU")
    train_module.main(args + ["--epochs", "3", "--resume"])
    assert len(probed) == 2
    compute = json.loads((tmp_path / "tiny.json").read_text())["training"]["compute"]
    # every part's CPU and precision (the record named only the last part's)
    assert (compute["precision"], compute["cpu"].split("; ")[1]) == ("bf16; fp32", "another CPU")


@pytest.mark.parametrize("stopped_in", ["save_weights", "save_checkpoint"])
def test_a_run_stopped_while_saving_its_last_evaluation_resumes_to_the_whole_runs_files(monkeypatch, tmp_path,
                                                                                        stopped_in):
    """Stopped between the checkpoint that marks the run finished and its weights, --resume found
    "nothing more to do" and the weights stayed the previous evaluation's (or none); stopped between
    the metrics line and the checkpoint, the resumed run wrote that line twice."""
    args = without(ARGS, "--max-steps-per-epoch") + ["--budget-samples", "3000"]
    train_module.main(args + ["--out", str(tmp_path / "whole")])
    evaluations = len(read_metrics(tmp_path / "whole"))
    assert evaluations >= 2
    original, calls = getattr(train_module, stopped_in), []

    def stopped_at_the_last(*a, **k):
        calls.append(1)
        if len(calls) == evaluations:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(train_module, stopped_in, stopped_at_the_last)
    with pytest.raises(KeyboardInterrupt):
        train_module.main(args + ["--out", str(tmp_path / "split")])
    monkeypatch.setattr(train_module, stopped_in, original)
    train_module.main(args + ["--out", str(tmp_path / "split"), "--resume"])
    assert_same_weights(tmp_path / "whole", tmp_path / "split")
    assert ([(m["epoch"], m["steps"], m["train_loss"]) for m in read_metrics(tmp_path / "split")]
            == [(m["epoch"], m["steps"], m["train_loss"]) for m in read_metrics(tmp_path / "whole")])


def test_a_step_suspended_early_or_just_after_a_resume_does_not_spend_the_budget(monkeypatch, tmp_path):
    """The cap on a stalled step (5 typical steps) began at a run's 11th step, and at each resumed
    part's: one suspended before spent the whole minutes budget and the schedule jumped to its end."""
    now = [0.0]
    monkeypatch.setattr(train_module, "clock", lambda: now[0])
    original = train_module.train_step
    args = without(ARGS, "--max-steps-per-epoch") + ["--budget-minutes", "1.5", "--checkpoint-minutes", "0"]

    def steps_of_six_seconds(suspended: int, interrupted: int = 0):
        calls = []

        def step(*a, **k):
            calls.append(1)
            if len(calls) == interrupted:
                raise KeyboardInterrupt
            now[0] += 3600 if len(calls) == suspended else 6
            return original(*a, **k)
        return step

    monkeypatch.setattr(train_module, "train_step", steps_of_six_seconds(suspended=3))
    record = train_module.main(args + ["--out", str(tmp_path / "early")])
    # 2 steps of 6 s, the suspended one as 5 of them (30 s), then 8 more: 90 s
    assert (record["global_step"], record["train_seconds"]) == (11, pytest.approx(90))

    monkeypatch.setattr(train_module, "train_step", steps_of_six_seconds(suspended=0, interrupted=5))
    with pytest.raises(KeyboardInterrupt):
        train_module.main(args + ["--out", str(tmp_path / "resumed")])
    monkeypatch.setattr(train_module, "train_step", steps_of_six_seconds(suspended=2))
    record = train_module.main(args + ["--out", str(tmp_path / "resumed"), "--resume"])
    # 4 steps before the stop, then 1, the suspended one as 30 s, and 5 more
    assert (record["global_step"], record["train_seconds"]) == (11, pytest.approx(90))


def test_processes_torchrun_starts_on_a_host_share_its_cores(monkeypatch):
    """Each process of `torchrun --nproc-per-node 2` took every core for its threads: 2 CPU processes
    ran 2 threads each on 2 cores, 9x slower than 1 each. torchrun tells each process how many it
    started on the host (LOCAL_WORLD_SIZE), which a process on its own does not have."""
    import os

    from training.speed import default_threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads() == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_threads() == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * cores))       # more processes than cores: one each
    assert default_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "x")                    # not torchrun's: every core
    assert default_threads() == cores


def test_cpu_hours_count_each_part_of_a_run_at_its_own_threads(monkeypatch, tmp_path):
    """All of a run's training time was multiplied by the last part's --threads."""
    now = [0.0]
    monkeypatch.setattr(train_module, "clock", lambda: now[0])
    original = train_module.train_step

    def six_second_step(*a, **k):
        now[0] += 6
        return original(*a, **k)

    monkeypatch.setattr(train_module, "train_step", six_second_step)
    threads = torch.get_num_threads()
    args = without(ARGS, "--threads") + ["--out", str(tmp_path)]
    try:
        train_module.main(args + ["--epochs", "1", "--threads", "1"])
        train_module.main(args + ["--epochs", "2", "--threads", "2", "--resume"])
    finally:
        torch.set_num_threads(threads)
    compute = json.loads((tmp_path / "tiny.json").read_text())["training"]["compute"]
    # 4 steps of 6 s on 1 thread, 4 on 2
    assert compute["cpu_hours_this_run"] == pytest.approx((4 * 6 * 1 + 4 * 6 * 2) / 3600)
    assert compute["train_hours"] == pytest.approx(8 * 6 / 3600)


def test_a_resumed_run_with_dropout_draws_what_the_whole_run_draws(monkeypatch, tmp_path):
    """The checkpoint restores the random state; the start-up probes (a compiled training step,
    the precision probe) then drew dropout masks from it, so the resumed run went on otherwise.
    The probe's draws are stood in for by drawing after build_forward_loss."""
    original = train_module.build_forward_loss

    def drawing_as_a_probe_step_does(*a, **k):
        built = original(*a, **k)
        torch.rand(1000)
        return built

    monkeypatch.setattr(train_module, "build_forward_loss", drawing_as_a_probe_step_does)
    args = ARGS + ["--dropout", "0.1"]
    train_module.main(args + ["--epochs", "2", "--out", str(tmp_path / "whole")])
    train_module.main(args + ["--epochs", "1", "--out", str(tmp_path / "split")])
    train_module.main(args + ["--epochs", "2", "--out", str(tmp_path / "split"), "--resume"])
    assert_same_weights(tmp_path / "whole", tmp_path / "split")


def test_every_seed_argparse_takes_trains_and_the_seeds_that_worked_draw_as_before(tmp_path, capsys):
    """--seed 18446634 and up ended the run at its first step ("Overflow when unpacking long long":
    the augmentation's step seed passed 2**64); the largest seed --seed takes trains too."""
    for seed in (20261205, 2**63 - 1):
        record = train_module.main(ARGS + ["--epochs", "1", "--seed", str(seed), "--out", str(tmp_path / str(seed))])
        assert (record["epoch"], record["global_step"]) == (1, 4)
    with pytest.raises(SystemExit) as stop:
        train_module.parse_args(ARGS + ["--seed", str(2**63)])
    assert stop.value.code == 2
    assert f"argument --seed: must be an integer in [0, 2**63), not {2**63}" in capsys.readouterr().err
    # the step and epoch seeds of a seed that worked are what they were, so its checkpoints resume bit for bit
    assert train_module.augmentation_seed(18446633, 1, 5) == (18446633 * 1_000_003 + 1) * 1_000_003 + 5
    assert train_module.epoch_order_seed(18446633, 7) == 18446633 * 1000 + 7


def test_every_evaluation_pass_shows_its_progress(tmp_path, capsys):
    """The per-epoch evaluation's passes (raw and EMA weights, noisy 2D) ran with their progress
    bars off: on all of S9 each took minutes without a sign."""
    train_module.main(ARGS + ["--epochs", "1", "--ema-decay", "0.9", "--eval-noise-std", "0.01",
                              "--out", str(tmp_path)])
    err = capsys.readouterr().err
    for label in ("test, raw weights", "test, EMA weights", "test, noisy 2D"):
        assert f"{label}: 100%" in err, label


# Trains as training.train does, but raises KeyboardInterrupt on every process at its train_step
# call N (argv[1]), once all have come to it: rank 0 has then written its checkpoint of the step before.
INTERRUPTED_TRAINING = """
import sys
import torch
import training.train as train_module

stop_at, calls = int(sys.argv[1]), []
original = train_module.train_step

def interrupted_step(*args, **kwargs):
    calls.append(1)
    if len(calls) == stop_at:
        torch.distributed.barrier()
        raise KeyboardInterrupt
    return original(*args, **kwargs)

train_module.train_step = interrupted_step
sys.argv[1:] = sys.argv[2:]
train_module.cli()                  # as python -m training.train ends
"""


@pytest.mark.slow
def test_distributed_training_with_dropout_resumes_each_process_from_its_own_random_state(tmp_path):
    """torchrun, two CPU processes (gloo), --dropout: the checkpoint held rank 0's random state
    only and every process was given it on --resume, so rank 1 drew rank 0's dropout masks and the
    run went on otherwise. Interrupted at an epoch's end and mid-epoch (--checkpoint-minutes 0),
    each resumed part gives the whole run's weights; with an EMA, whose evaluation draws from rank
    0's state before its checkpoint. A resume with another number of processes is refused."""
    import os
    import subprocess

    script = tmp_path / "interrupted_training.py"
    script.write_text(INTERRUPTED_TRAINING)
    args = ["--synthetic", "2000", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "64",
            "--max-steps-per-epoch", "4", "--threads", "1", "--seed", "7", "--name", "tiny", "--compile", "off",
            "--amp", "off", "--eval-noise-std", "0", "--dropout", "0.2", "--ema-decay", "0.9", "--epochs", "2",
            "--checkpoint-minutes", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(*command) -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               *command], env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout[-3000:] + done.stderr[-3000:]

    code, log = torchrun("-m", "training.train", *args, "--out", str(tmp_path / "whole"))
    assert code == 0, log
    split = str(tmp_path / "split")
    code, log = torchrun(str(script), "5", *args, "--out", split)           # at epoch 2's first step
    assert code != 0 and json.loads((tmp_path / "split" / "checkpoint.json").read_text())["epoch"] == 1, log
    assert "exitcode  : 130" in log and "terminate called" not in log, log     # each: interrupted by SIGINT
    code, log = torchrun(str(script), "3", *args, "--out", split, "--resume")   # after its second
    meta = json.loads((tmp_path / "split" / "checkpoint.json").read_text())
    assert code != 0 and meta["run_state"]["global_step"] == 6 and "terminate called" not in log, log
    code, log = torchrun("-m", "training.train", *args, "--out", split, "--resume")
    assert code == 0, log
    whole, _ = load_weights(tmp_path / "whole" / "tiny.safetensors")
    resumed, _ = load_weights(tmp_path / "split" / "tiny.safetensors")
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key

    assert json.loads((tmp_path / "split" / "checkpoint.json").read_text())["processes"] == 2
    with pytest.raises(train_module.RunRefused, match=r"^--resume: the run in .* was trained by 2 processes, this "
                                                      r"is 1 process; resume it with as many \(torchrun "
                                                      r"--nproc-per-node 2\)"):
        train_module.main(args + ["--epochs", "3", "--out", split, "--resume"])


# Trains as training.train does, but each process's precision probe times bf16 otherwise (rank 0: faster
# than fp32, rank 1: slower), as two processes probing on shared cores can, and each writes the
# precision it trains in to <argv[1]>/precision.<rank>.
PROBES_APART = """
import os
import sys
import training.train as train_module

rank, folder = int(os.environ["RANK"]), sys.argv[1]
timings = {"fp32": 2.0, "bf16": 1.0 if rank == 0 else 2.5}
choose = train_module.choose_precision
train_module.choose_precision = lambda time_step: choose(lambda precision, limit: timings[precision])
build = train_module.build_forward_loss

def recording_build(model, loss_fn, precision, *args, **kwargs):
    with open(os.path.join(folder, f"precision.{rank}"), "w") as f:
        f.write(precision)
    return build(model, loss_fn, precision, *args, **kwargs)

train_module.build_forward_loss = recording_build
sys.argv[1:] = sys.argv[2:]
train_module.cli()
"""


def test_torchrun_processes_train_in_the_precision_rank_0_probed(tmp_path):
    """Each process of a torchrun run probed the precision on its own: where their timings fell
    apart, rank 0 trained in bf16 and rank 1 in fp32, and the weights' record said bf16."""
    import os
    import subprocess

    script = tmp_path / "probes_apart.py"
    script.write_text(PROBES_APART)
    out = tmp_path / "run"
    args = ["--synthetic", "1000", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "64",
            "--max-steps-per-epoch", "2", "--threads", "1", "--name", "tiny", "--compile", "off",
            "--eval-noise-std", "0", "--epochs", "1", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), str(tmp_path), *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [(tmp_path / f"precision.{rank}").read_text() for rank in (0, 1)] == ["bf16", "bf16"]
    assert json.loads((out / "tiny.json").read_text())["training"]["compute"]["precision"] == "bf16"


# torchrun's two processes end while gloo's worker threads still hold collectives whose tensors'
# Python objects they must free. Rank 1 leaves with four all_gathers queued and holds the GIL in an
# exit handler (a foreign call through PyDLL keeps it) until after rank 0 has joined them: its
# worker, done, waits for the GIL, and gets it only once Python is finalizing. Rank 0 leaves right
# after its own four. Through the interpreter's finalization (``main()`` alone) 6 of 6 runs aborted.
LATE_COLLECTIVES = """
import atexit, ctypes, time
import torch
import torch.distributed as dist
import training.train as train_module

def late_collectives(argv=None):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    dist.barrier()
    if rank == 1:
        for _ in range(4):
            parts = [torch.zeros(4) for _ in range(2)]
            work = dist.all_gather(parts, torch.ones(4), async_op=True)
            del parts, work
        atexit.register(ctypes.PyDLL(None).usleep, 2_500_000)
        print("rank 1 leaves")              # not flushed: os._exit must not lose it
        return {}
    time.sleep(1.0)
    try:
        for _ in range(4):
            dist.all_gather([torch.zeros(4) for _ in range(2)], torch.ones(4))
    except RuntimeError:                    # rank 1 may be gone with its share
        pass
    print("rank 0 leaves")
    return {}

train_module.main = late_collectives
train_module.cli()
"""


@pytest.mark.slow
def test_torchrun_processes_leaving_while_gloo_holds_collectives_exit_0_with_their_output(tmp_path):
    """A process of a torchrun run ended through the interpreter's finalization, and a gloo worker
    that freed a finished collective's tensors then needed the GIL and was ended inside a destructor
    ("terminate called without an active exception", SIGABRT): now and then in the DDP test, after
    a run that had succeeded. The command (``cli``) ends such a process with os._exit, flushed."""
    import os
    import subprocess

    script = tmp_path / "late_collectives.py"
    script.write_text(LATE_COLLECTIVES)
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               str(script)], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=120)
        log = done.stdout + done.stderr
        assert done.returncode == 0 and "terminate called" not in log, log
        assert "rank 0 leaves" in done.stdout and "rank 1 leaves" in done.stdout, log


# The command's exit for each way main ends, in a process that believes it is one of torchrun's.
ENDING = """
import sys
import training.train as train_module

def ending(argv=None):
    case = sys.argv[1]
    print("ran", case)
    if case == "record":
        return {"epoch": 1}
    if case == "error":
        raise ValueError("a bad value")
    raise SystemExit({"130": 130, "none": None, "text": "error: told"}[case])

train_module.main = ending
train_module.cli()
print("after cli")
"""


@pytest.mark.parametrize("case, status, err", [("record", 0, ""), ("130", 130, ""), ("none", 0, ""),
                                               ("text", 1, "error: told"), ("error", 1, "ValueError: a bad value")])
def test_a_torchrun_process_exits_with_the_status_python_would_give(tmp_path, case, status, err):
    """os._exit (above) with what sys.exit or an uncaught exception would have given: the status,
    the message or traceback, and stdout not lost."""
    import os
    import subprocess

    script = tmp_path / "ending.py"
    script.write_text(ENDING)
    done = subprocess.run([sys.executable, str(script), case], env={**os.environ, "WORLD_SIZE": "2"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr
    assert done.stdout.splitlines() == [f"ran {case}"], done.stdout
    assert err in done.stderr
