"""The training script end to end on synthetic poses: outputs, resume, weights, evaluation tables."""
import json
import shutil

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
ARGS = ["--synthetic", "2000", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "256",
        "--max-steps-per-epoch", "4", "--threads", "1", "--seed", "3", "--name", "tiny"]
CONFIG = CFIConfig(dim=32, depth=1, heads=4)


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


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """One 2-epoch run, recording the optimizer state at its last checkpoint."""
    out = tmp_path_factory.mktemp("run")
    saved = {}
    original = train_module.save_checkpoint

    def recording_save(directory, model, optimizer, epoch, history, extra):
        saved["optimizer"] = optimizer_snapshot(optimizer)
        saved["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        saved["epoch"] = epoch
        return original(directory, model, optimizer, epoch, history, extra)

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

    def recording_load(directory, model, optimizer):
        meta = original(directory, model, optimizer)
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


def test_resume_of_a_finished_run_does_nothing_more(two_epochs, tmp_path):
    source, record, _ = two_epochs
    out = tmp_path / "again"
    shutil.copytree(source, out)
    train_module.main(ARGS + ["--epochs", "2", "--out", str(out), "--resume"])
    assert [line["epoch"] for line in read_metrics(out)] == [1, 2]


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
