"""Weights files: exact round trip, and every broken file stops with a WeightsError saying why."""
import json
import math
import os
import pickle
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import PEAK_RSS_SOURCE
from cfi_pose_ros.model import CFIConfig, CFINet
from cfi_pose_ros.weights import (FORMAT, WeightsError, load_weights, read_weights_info,
                                  record_metrics, save_weights, weights_paths)

CONFIG = CFIConfig(dim=16, depth=1, heads=2)


def edit_json(path, edit) -> None:
    """``edit`` the JSON config of the weights at ``path`` in place."""
    config_path = path.with_suffix(".json")
    config = json.loads(config_path.read_text())
    edit(config)
    config_path.write_text(json.dumps(config))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = CFINet(CONFIG)
    # non-trivial values everywhere (the init leaves biases at 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_weights(model, tmp_path / "tiny", training={"data": "unit test"},
                        metrics={"S9": {"mpjpe_mm": 12.5}})
    return model, path


def test_round_trip_is_exact(saved):
    model, path = saved
    assert path.suffix == ".safetensors" and path.is_file()
    assert path.with_suffix(".json").is_file()
    loaded, info = load_weights(path)
    assert info.model == CONFIG
    assert info.training == {"data": "unit test"}
    assert info.metrics == {"S9": {"mpjpe_mm": 12.5}}
    assert info.joint_layout == "h36m_17" and "uv / image_width" in info.normalization
    assert not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    x = torch.randn(5, 17, 2)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_weights_and_exported_files_get_the_mode_a_new_file_gets(tmp_path):
    """safetensors and mkstemp create files 0600: weights trained, or an ONNX file exported, by one
    account could not be read by a node running as another. They get 0666 less the umask, as a file
    made with open() does."""
    import os

    from cfi_pose_ros.inference.cache import atomic_write_bytes

    previous = os.umask(0o022)
    try:
        path = save_weights(CFINet(CFIConfig(dim=16, depth=1, heads=2)), tmp_path / "w.safetensors")
        atomic_write_bytes(tmp_path / "m.onnx", b"onnx")
        os.umask(0o077)                 # a private umask is kept
        private = save_weights(CFINet(CFIConfig(dim=16, depth=1, heads=2)), tmp_path / "p.safetensors")
    finally:
        os.umask(previous)
    for made, mode in [(path, 0o644), (path.with_suffix(".json"), 0o644), (tmp_path / "m.onnx", 0o644),
                       (private, 0o600)]:
        assert made.stat().st_mode & 0o777 == mode, made


def test_any_of_the_three_names_finds_the_pair(saved):
    _, path = saved
    for name in (path, path.with_suffix(".json"), path.with_suffix("")):
        assert read_weights_info(name).model == CONFIG
        load_weights(name)


def test_a_dotted_name_is_its_own_weights_file(tmp_path):
    """`model.v2.safetensors` was read as `model.safetensors` (Path.with_suffix): another model,
    loaded without a word, where that file existed; saving `--name cfi.v2` wrote `cfi.*`."""
    older, newer = CFINet(CONFIG), CFINet(replace(CONFIG, depth=CONFIG.depth + 1))
    save_weights(older, tmp_path / "model")
    saved_as = save_weights(newer, tmp_path / "model.v2")
    assert saved_as == tmp_path / "model.v2.safetensors"
    assert weights_paths(tmp_path / "model.v2") == (saved_as, tmp_path / "model.v2.json")
    for name in (saved_as, tmp_path / "model.v2.json", tmp_path / "model.v2"):
        assert read_weights_info(name).model == newer.config
    assert read_weights_info(tmp_path / "model.safetensors").model == CONFIG


def test_config_json_contents(saved):
    _, path = saved
    config = json.loads(path.with_suffix(".json").read_text())
    assert config["format"] == FORMAT
    assert config["model"]["dim"] == 16
    assert len(config["tensors_sha256"]) == 64


def test_missing_files(tmp_path, saved):
    _, path = saved
    with pytest.raises(WeightsError, match="missing"):
        load_weights(tmp_path / "nothing_here.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(WeightsError, match=r"missing.*\.json"):
        load_weights(path)


@pytest.mark.parametrize("kind", ["a FIFO", "a directory"])
def test_a_weights_path_that_is_no_file_says_what_it_is(saved, kind):
    """A FIFO or a folder in place of the tensor file was "weights file missing"."""
    import os

    _, path = saved
    path.unlink()
    os.mkfifo(path) if kind == "a FIFO" else path.mkdir()
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))}: {kind}, not a weights file"):
        load_weights(path)


def test_missing_tensor_file(saved):
    _, path = saved
    path.unlink()
    with pytest.raises(WeightsError, match=r"missing.*\.safetensors"):
        load_weights(path)


@pytest.mark.parametrize("with_checksum", [True, False])
def test_a_truncated_file_is_refused_as_such(saved, with_checksum):
    _, path = saved
    if not with_checksum:
        edit_json(path, lambda config: config.pop("tensors_sha256"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightsError, match="unreadable safetensors.*truncated"):
        load_weights(path)


@pytest.mark.parametrize("kind", ["padded", "declared"])
def test_a_huge_tensor_file_is_refused_before_it_is_hashed(saved, kind):
    """The whole file was hashed before its header was read: the weights followed by a 64 GiB hole
    (free on disk), or a header declaring one 64 GiB tensor, kept load_weights hashing for minutes
    before it said what was wrong. A fresh process, so that a hang ends at the timeout."""
    import struct

    _, path = saved
    if kind == "padded":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size + (64 << 30))
        expected = "unreadable safetensors file"
    else:
        header = json.dumps({"blocks.0.huge": {"dtype": "F32", "shape": [16 << 30], "data_offsets": [0, 64 << 30]}})
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header.encode())
            f.truncate(8 + len(header) + (64 << 30))
        expected = "do not match the architecture in the config"
    message, _ = _load_in_a_fresh_process(path, timeout=20)
    assert expected in message, message


def test_corrupted_bytes_fail_the_checksum(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF                               # one flipped byte inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match"):
        load_weights(path)


def test_json_for_another_architecture(saved):
    _, path = saved
    edit_json(path, lambda config: (config["model"].update(dim=32, heads=4), config.pop("tensors_sha256")))
    with pytest.raises(WeightsError, match=r"do not match the architecture.*dim=32.*wrong shape"):
        load_weights(path)


def test_json_with_an_ablated_branch(saved):
    _, path = saved
    edit_json(path, lambda config: config["model"].update(use_cfi_local=False))
    with pytest.raises(WeightsError, match="unexpected"):
        load_weights(path)


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["model"].update(heads=4), "heads"),           # the same tensor shapes, another model
    (lambda c: c["model"].update(dropout=0.5), "dropout"),
])
def test_a_json_that_describes_another_model_with_the_same_tensor_shapes_is_refused(saved, edit, field):
    """What the shapes do not tell is recorded in the tensor file's header (covered by the
    SHA-256): a JSON edited to other heads loaded before and lifted people 0.38 m elsewhere."""
    _, path = saved
    edit_json(path, edit)
    with pytest.raises(WeightsError, match=rf"describes another model.*{field}: JSON"):
        load_weights(path)


COCO_LAYOUT = ("joint_layout", "coco_17", r"joint layout 'coco_17' of a 17-joint model; the lifter is given the 17 "
                                         r"joints of 'h36m_17'")
OTHER_NORMALISATION = ("normalization", "uv / 1000", r"input normalised as 'uv / 1000'; the lifter is given 'screen: ")


@pytest.mark.parametrize("key, value, message, recorded", [
    (*COCO_LAYOUT, True), (*COCO_LAYOUT, False), (*OTHER_NORMALISATION, True), (*OTHER_NORMALISATION, False),
    ("normalization", None, r"input normalised as None; the lifter is given 'screen: ", False),
], ids=["coco_17, recorded too", "coco_17", "another normalisation, recorded too", "another normalisation",
        "no normalisation"])
def test_weights_for_another_joint_order_or_normalisation_are_refused(tmp_path, recorded, key, value, message):
    """The pipeline gives every lifter H36M-17 joints, screen-normalised: weights whose JSON (and
    the tensor file's own record, where it has one) said they learned COCO-17 or another
    normalisation loaded, checksum consistent, and lifted every joint as another one."""
    from safetensors.torch import save_file

    from cfi_pose_ros.weights import MEANING_KEY, file_sha256

    model = CFINet(CONFIG)
    path = save_weights(model, tmp_path / "other_input")
    config = json.loads(path.with_suffix(".json").read_text())
    meaning = {k: config[k] for k in ("model", "joint_layout", "normalization")}
    for described in (config, meaning):
        described[key] = value
    save_file(model.state_dict(), str(path),
              metadata={MEANING_KEY: json.dumps(meaning, sort_keys=True)} if recorded else None)
    config["tensors_sha256"] = file_sha256(path)
    path.with_suffix(".json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_a_file_saved_before_the_meaning_record_still_loads(saved):
    """Weights files written without the header record (earlier releases, other tools) load as
    before: their JSON is all there is to go by."""
    from safetensors.torch import load_file, save_file
    from cfi_pose_ros.weights import file_sha256

    model, path = saved
    save_file(load_file(str(path)), str(path))
    edit_json(path, lambda config: config.update(tensors_sha256=file_sha256(path)))
    loaded, _ = load_weights(path)
    x = torch.randn(2, 17, 2)
    assert torch.equal(loaded(x), model.eval()(x))


@pytest.mark.parametrize("channels", [{"in_channels": 3}, {"out_channels": 2}, {"out_channels": 4}])
def test_a_model_not_of_pixels_in_and_3d_joints_out_is_refused_in_one_line(tmp_path, channels):
    """Such a model is a real CFINet, its file consistent: it loaded, then failed inside torch
    (in_channels 3: "mat1 and mat2 shapes cannot be multiplied") or lifted (N, 17, 2) joints."""
    path = save_weights(CFINet(replace(CONFIG, **channels)), tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match=r"the lifter takes pixels \(x, y\) and gives \(x, y, z\): "
                                           r"in_channels 2, out_channels 3"):
        load_weights(path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(format="something/else"), "format"),
    (lambda c: c["model"].update(colour="blue"), "bad model config"),
    (lambda c: c["model"].update(dim=30, heads=4), "bad model config"),
    (lambda c: c.update(joint_layout="coco_17_ish"), "joint layout"),
    # values the config's constructor let through, that failed later inside torch or a CLI
    (lambda c: c["model"].update(dim=32.0), "dim must be an int"),
    (lambda c: c["model"].update(depth=True), "depth must be an int"),
    (lambda c: c["model"].update(mlp_ratio=-1), "no hidden units"),
    (lambda c: c["model"].update(mlp_ratio=float("nan")), "mlp_ratio must be a float"),
    (lambda c: c["model"].update(dropout=1.5), "dropout"),
    (lambda c: c["model"].update(use_gramlp=1), "use_gramlp must be a bool"),
    (lambda c: c.update(tensors_sha256=5), "'tensors_sha256' must be a str"),
    (lambda c: c.update(training=[1]), "'training' must be a dict"),
    (lambda c: c.update(metrics="good"), "'metrics' must be a dict"),
    (lambda c: c.update(joint_layout=["h36m_17"]), "joint layout"),
    # RuntimeError from torch and OverflowError from float arithmetic before, naming no file
    (lambda c: c["model"].update(in_channels=-1), r"in_channels \(-1\) must be from 1 to"),
    (lambda c: c["model"].update(out_channels=-3), r"out_channels \(-3\) must be from 1 to"),
    (lambda c: c["model"].update(mlp_ratio=1e308), r"mlp_ratio \(1e\+308\) makes the MLP infinitely wide"),
    (lambda c: c["model"].update(mlp_ratio=10**400), "mlp_ratio must be a float"),
    # a TypeError of the constructor's checks ("'<' not supported between instances of 'str' and
    # 'int'"), a KeyError's bare "'model'", the letters of a string as unknown keys
    (lambda c: c["model"].update(dim="128"), "dim must be an int, not '128'"),
    (lambda c: c["model"].update(heads=None), "heads must be an int, not None"),
    (lambda c: c.pop("model"), 'no model config'),
    (lambda c: c.update(model="dim"), "the model config must be an object of its fields, not 'dim'"),
])
def test_bad_json_fields(saved, edit, message):
    _, path = saved
    edit_json(path, edit)
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


@pytest.mark.parametrize("text", ["{not json", '{"model": {"dim": ' + "9" * 5000 + "}}"],
                         ids=["syntax", "an int of 5000 digits"])      # the second: Python's ValueError before
def test_invalid_json(saved, text):
    _, path = saved
    path.with_suffix(".json").write_text(text)
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_weights(path)


def test_loading_never_unpickles(saved, monkeypatch):
    _, path = saved

    def refuse(*args, **kwargs):
        raise AssertionError("weights loading must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model, _ = load_weights(path)
    assert isinstance(model, CFINet)


# ------------------------------------------------------------- issue 13: items 1 and 11

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_tensors_with_a_consistent_checksum_are_rejected(tmp_path, value):
    """What save_weights writes after a diverged run: every check of the file passes, the values are garbage."""
    model = CFINet(CONFIG)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    path = save_weights(model, tmp_path / "diverged")
    with pytest.raises(WeightsError, match=r"tensors contain NaN or inf.*diverged"):
        load_weights(path)


def test_one_non_finite_value_is_enough(saved):
    model, path = saved
    with torch.no_grad():
        model.head.bias[1] = float("nan")
    save_weights(model, path)
    with pytest.raises(WeightsError, match=r"1 of \d+ tensors contain NaN or inf \(e\.g\. head\.bias: 1 of 3"):
        load_weights(path)


def _create(path):
    from cfi_pose_ros.inference import create_lifter

    return create_lifter(str(path), backend="torch", log=lambda *_: None)


def test_zeroed_weights_are_refused_before_use(tmp_path):
    """Every tensor zero: finite, consistent checksum, and every person lifted to one point (the node
    published skeletons of 17 joints at one place). Refused by the reference check every backend
    runs before its first use."""
    model = CFINet(CONFIG)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    path = save_weights(model, tmp_path / "zeroed")
    with pytest.raises(WeightsError, match=r"these weights lift every pose to one point "
                                           r"\(every joint within 1 mm of the others\): untrained or zeroed"):
        _create(path)


def test_weights_whose_output_ignores_the_input_are_refused_before_use(tmp_path):
    """The input embedding zeroed: every joint a token of its own (the joint embedding), so the
    skeleton has an extent, but every person is lifted to that one skeleton."""
    torch.manual_seed(0)
    model = CFINet(CONFIG)
    with torch.no_grad():
        model.embed.weight.zero_()
        model.embed.bias.zero_()
    path = save_weights(model, tmp_path / "blind")
    with pytest.raises(WeightsError, match=r"these weights lift every pose to the same "
                                           r"skeleton \(.*\): they do not read their input"):
        _create(path)


@pytest.mark.parametrize("config", [CONFIG, CFIConfig(dim=8, depth=1, heads=1), CFIConfig(dim=32, depth=1, heads=4),
                                    CFIConfig(dim=128, depth=3, heads=8), CFIConfig()],
                         ids=["d16", "d8", "d32", "d128", "default"])
def test_freshly_initialised_weights_pass_the_degenerate_output_check_by_far(tmp_path, config):
    """Many tests (and a training run's first checkpoint) load untrained weights: their skeletons
    span 10 cm and more, and differ by 5 cm and more from person to person, against the 1 mm refused."""
    from cfi_pose_ros.inference.reference import DEGENERATE_EXTENT_M, output_extent

    for seed in range(3):
        torch.manual_seed(seed)
        extent, spread = output_extent(CFINet(config).eval())
        assert extent > 50 * DEGENERATE_EXTENT_M and spread > 20 * DEGENERATE_EXTENT_M, (seed, extent, spread)
    torch.manual_seed(0)
    _create(save_weights(CFINet(config), tmp_path / "fresh"))


@pytest.mark.parametrize("name", ["cfi_h36m", "cfi_h36m_d128", "cfi_h36m_wide", "cfi_h36m_wide_cut"])
def test_every_packaged_weights_lift_people_in_metres_by_a_margin(name):
    """What the lifting node requires of its weights (not_people_in_metres), on every packaged file,
    with room to spare on each side of the range it takes: size, upright, spine in order, left joints
    on the side the 2D input has them, and no mirror images (the nose ahead of the face)."""
    from cfi_pose_ros.inference.reference import (MAX_NOSE_BEHIND_FRACTION, MIN_PAIR_DIRECTION_COSINE,
                                                  MIN_SIDE_AGREEMENT, MIN_SPINE_STEP_FRACTION, MIN_UPRIGHT_FRACTION,
                                                  PERSON_SIZE_RANGE, not_people_in_metres, reference_inputs,
                                                  reference_person_measures)
    from cfi_pose_ros.skeleton import H36M_17, MEAN_BODY_HEIGHT_M
    from cfi_pose_ros.weights import packaged_weights, resolve_weights

    assert name in packaged_weights()
    lifter = _create(resolve_weights(name))
    assert not_people_in_metres(lifter.lift) is None
    lifted = lifter.lift(reference_inputs(32, seed=0)).astype(float)
    size = float(np.median(H36M_17.size_relative_to_mean(lifted)))
    assert 2.5 * PERSON_SIZE_RANGE[0] < size < PERSON_SIZE_RANGE[1] / 2.5, size
    head_above_ankles = float(np.median(lifted[:, (3, 6), 1].mean(axis=1) - lifted[:, 10, 1]))
    assert head_above_ankles > 2 * MIN_UPRIGHT_FRACTION * size * MEAN_BODY_HEIGHT_M, head_above_ankles
    measured = reference_person_measures(lifter.lift)
    print(name, measured)
    height = measured["height"]
    assert min(measured["spine_steps"]) > 4 * MIN_SPINE_STEP_FRACTION * height, measured
    assert min(measured["side_agreement"]) > 0.9 and min(measured["side_people"]) >= 20, measured
    # every pair of joints points the way the 2D input has it, so that any two swapped point against
    # it by more than what is refused
    assert measured["pair_cosine"] > -1.6 * MIN_PAIR_DIRECTION_COSINE, measured
    # the nose ahead of the face by more than the mirror image (the same weights with z negated)
    # has it behind, which is over twice what is refused
    assert measured["nose_ahead"] > 2 * MAX_NOSE_BEHIND_FRACTION * height, measured
    mirror = reference_person_measures(lambda x: lifter.lift(x) * np.float32([1, 1, -1]))
    assert mirror["nose_ahead"] == pytest.approx(-measured["nose_ahead"], abs=1e-6)
    assert -mirror["nose_ahead"] > 2 * MAX_NOSE_BEHIND_FRACTION * height
    assert MIN_SIDE_AGREEMENT < 0.5


@pytest.mark.parametrize("how, expected", [
    ("depth", r"as mirror images of themselves: the nose 5\d mm behind the face, .*depth axis negated"),
    ("x", r"with the left_hip on the other side of the right_hip than their 2D input has it: 100% of the \d+ "
          r"people .*output's x negated"),
    ("left_right_order", r"as mirror images of themselves: the nose 5\d mm behind the face.*left and right "
                         r"joints swapped"),
])
def test_weights_that_lift_mirrored_or_side_swapped_people_are_told_by_file(tmp_path, how, expected):
    """The d128 weights with the output layer's depth row negated (every person lifted as a mirror
    image, the nose behind the head), its x row negated (each left joint lifted where the right one
    is: a robot reaching for the published left wrist reaches for the right one), or the joint
    embedding's left and right rows swapped (a model that reads and writes the layout's joints in
    another order, lifting mirror images): each lifts people of the right size, upright, and passed
    the check the lifting node and offline lifting run. It says what they do now, naming the file."""
    from hostile import mirrored_weights

    from cfi_pose_ros.inference.reference import check_lifts_people_in_metres

    path = mirrored_weights(tmp_path / how, how)
    lifter = _create(path)
    with pytest.raises(WeightsError, match=re.escape(str(path)) + ": these weights cannot be used to publish "
                                           "people: they lift standing adults " + expected):
        check_lifts_people_in_metres(lifter.lift, path)


_HEAD_AND_PELVIS = [10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 11, 12, 13, 14, 15, 16]
_HEAD_AND_THORAX = [0, 1, 2, 3, 4, 5, 6, 7, 10, 9, 8, 11, 12, 13, 14, 15, 16]
_WRISTS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 14, 15, 13]


@pytest.mark.parametrize("wiring, expected", [
    ("output_left_right", r"with the left_hip on the other side of the right_hip .*: 100% of"),
    ("input_left_right", r"with the left_hip on the other side of the right_hip .*: 100% of"),
    ("output_wrists", r"with the left_wrist on the other side of the right_wrist .*: 100% of"),
    ("output_head_pelvis", r"with the thorax 0\.\d+ m below the pelvis .*not in h36m_17's order"),
    ("output_head_thorax", r"with the head 0\.\d+ m below the thorax .*not in h36m_17's order"),
    ("output_turned_about_y", r"with the left_hip on the other side of the right_hip .*: 100% of"),
])
def test_lifters_whose_joints_are_wired_otherwise_are_refused(wiring, expected):
    """The d128 weights' lifter with its output or input joints permuted (left and right by the
    layout's flip pairs; the wrists alone; head and pelvis; head and thorax) or its output turned
    half a turn about the vertical axis: people of the right size with the head above the ankles,
    which not_people_in_metres took. A lifter whose joints are permuted on the input side (a model
    expecting another joint order) is a function like any lifter; the check takes any."""
    from cfi_pose_ros.inference.reference import not_people_in_metres
    from cfi_pose_ros.skeleton import H36M_17
    from cfi_pose_ros.weights import resolve_weights

    lift = _create(resolve_weights("cfi_h36m_d128")).lift
    flip = H36M_17.flip_permutation()
    wired = {
        "output_left_right": lambda x: lift(x)[:, flip],
        "input_left_right": lambda x: lift(np.ascontiguousarray(x[:, flip])),
        "output_wrists": lambda x: lift(x)[:, _WRISTS],
        "output_head_pelvis": lambda x: lift(x)[:, _HEAD_AND_PELVIS],
        "output_head_thorax": lambda x: lift(x)[:, _HEAD_AND_THORAX],
        "output_turned_about_y": lambda x: lift(x) * np.float32([-1, 1, -1]),
    }[wiring]
    problem = not_people_in_metres(wired)
    assert problem is not None and re.match("they lift standing adults " + expected, problem), problem


def _swapped(lift, first: str, second: str):
    """``lift`` with output joints ``first`` and ``second`` swapped (a wrong joint order in an export, or
    in the 3D poses a model was trained on)."""
    from cfi_pose_ros.skeleton import H36M_17

    order = list(range(H36M_17.num_joints))
    a, b = H36M_17.index(first), H36M_17.index(second)
    order[a], order[b] = b, a
    return lambda x: lift(x)[:, order]


@pytest.mark.parametrize("first, second", [
    ("right_elbow", "right_wrist"), ("left_knee", "left_ankle"),         # along a limb
    ("thorax", "neck_nose"),                                             # up the head
    ("right_hip", "left_knee"), ("left_shoulder", "right_elbow"),        # across the body
])
def test_weights_that_lift_two_joints_swapped_are_told_by_file(first, second):
    """The d128 weights' lifter with two output joints swapped: people of the right size, upright,
    spine in order, each left joint on the side of its right twin and the nose ahead of the face, so
    92 of the 136 single swaps passed the check the lifting node and offline lifting run, and the
    node published a wrist where the elbow is. Swapped back, they fit the 2D input: the check names
    the pair, the measured cosine and the file."""
    from cfi_pose_ros.inference.reference import check_lifts_people_in_metres
    from cfi_pose_ros.weights import resolve_weights

    path = resolve_weights("cfi_h36m_d128")
    wired = _swapped(_create(path).lift, first, second)
    with pytest.raises(WeightsError, match=re.escape(str(path)) + ": these weights cannot be used to publish people: "
                       rf"they lift standing adults with the {first} and {second} swapped: seen from the camera, "
                       rf"the direction from the lifted {second} to the {first} is against their 2D input's "
                       r"\(cosine -0\.9\d summed over 32 people, refused below -0\.5; .*not in h36m_17's order"):
        check_lifts_people_in_metres(wired, path)


@pytest.mark.parametrize("name", ["cfi_h36m", "cfi_h36m_d128", "cfi_h36m_wide", "cfi_h36m_wide_cut"])
def test_every_single_output_swap_of_the_packaged_weights_is_refused(name):
    """Each of the 136 swaps of two output joints of every packaged file is refused; the pair check
    alone sees each, its worst pair being the swapped one, far below what it refuses."""
    from cfi_pose_ros.inference.reference import (_PAIRS, MIN_PAIR_DIRECTION_COSINE, joint_pair_direction_cosines,
                                                  not_people_in_metres, reference_inputs)
    from cfi_pose_ros.skeleton import H36M_17
    from cfi_pose_ros.weights import resolve_weights

    inputs = reference_inputs(32, seed=0)
    lifted = _create(resolve_weights(name)).lift(inputs)

    def recorded(x):        # the check lifts these people alone: lifting them once takes 136 times less
        assert np.array_equal(x, inputs)
        return lifted

    assert len(_PAIRS) == 136
    for first, second in _PAIRS:
        names = H36M_17.joint_names[first], H36M_17.joint_names[second]
        assert not_people_in_metres(_swapped(recorded, *names)) is not None, names
        cosines = joint_pair_direction_cosines(inputs.astype(float), _swapped(recorded, *names)(inputs).astype(float))
        assert _PAIRS[int(np.argmin(cosines))] == (first, second), names
        assert cosines.min() < 1.6 * MIN_PAIR_DIRECTION_COSINE, (names, cosines.min())


@pytest.mark.parametrize("epochs", [1, 3], ids=["31_steps", "93_steps"])
def test_a_model_trained_a_little_is_not_refused(tmp_path, epochs):
    """A model trained 93 steps on synthetic people (test MPJPE about 220 mm; what a training run's
    early checkpoints are) lifts people the node may publish: its nose sits about where its face is
    (no model learns that first), and some of its left joints fall on the wrong side, neither near
    what is refused. After 31 steps it barely follows its input's x, y yet: its worst pair of
    joints points against the 2D input about as often as with it (cosine -0.14 to 0.08 over seeds
    3, 5, 7, 11, 13), far from a swapped pair of the packaged weights (-0.91 or less). The check is
    against wrongly wired files, not weak models."""
    import training.train as train_module
    from cfi_pose_ros.inference.reference import (MAX_NOSE_BEHIND_FRACTION, MIN_PAIR_DIRECTION_COSINE,
                                                  MIN_SIDE_AGREEMENT, not_people_in_metres,
                                                  reference_person_measures)

    torch.set_num_threads(1)
    out = tmp_path / "run"
    train_module.main(["--synthetic", "4000", "--dim", "32", "--depth", "1", "--heads", "4", "--batch-size", "128",
                       "--max-steps-per-epoch", "40", "--epochs", str(epochs), "--threads", "1", "--seed", "3",
                       "--name", "early", "--compile", "off", "--amp", "off", "--eval-noise-std", "0",
                       "--out", str(out)])
    lift = _create(out / "early.safetensors").lift
    measured = reference_person_measures(lift)
    print(measured)
    assert not_people_in_metres(lift) is None
    if epochs == 1:
        assert measured["pair_cosine"] > MIN_PAIR_DIRECTION_COSINE / 2, measured
        return
    assert min(measured["side_agreement"]) > 2 * MIN_SIDE_AGREEMENT, measured
    assert measured["nose_ahead"] > -MAX_NOSE_BEHIND_FRACTION * measured["height"] / 2, measured
    assert measured["pair_cosine"] > 0, measured       # every pair of joints the way round the input has it


@pytest.mark.parametrize("factor, expected", [
    (1000.0, r"skeletons 15\d\d m tall \(899 times the mean adult's bones.*not people in metres"),
    (0.01, r"skeletons 0\.015\d* m tall \(0\.00899 times the mean adult's bones.*not people in metres"),
    (-1.0, r"the head 1\.\d+ m below the ankles .*negated or y-up output axes"),
], ids=["millimetres", "centimetres_down", "negated"])
def test_weights_that_lift_no_person_in_metres_are_told_by_file(tmp_path, factor, expected):
    """The d128 weights' output layer scaled by 1000 (a model trained in millimetres), by 0.01, or
    negated: each loads and lifts (a lifter does not judge units), and the check the lifting node
    and offline lifting run says what the people came out as, naming the file."""
    from hostile import weights_in_other_units

    from cfi_pose_ros.inference.reference import check_lifts_people_in_metres

    path = weights_in_other_units(tmp_path / "other_units", factor)
    lifter = _create(path)
    with pytest.raises(WeightsError, match=re.escape(str(path)) + ": these weights cannot be used to publish "
                                           "people: they lift standing adults .*" + expected):
        check_lifts_people_in_metres(lifter.lift, path)


def _load_in_a_fresh_process(path, timeout: float | None = None) -> tuple[str, float]:
    """``(load_weights' error message, peak memory growth in MiB)``, measured in a new process
    (which a hang ends at ``timeout``)."""
    import subprocess
    import sys

    probe = (
        PEAK_RSS_SOURCE + "import sys\n"
        "from cfi_pose_ros.weights import WeightsError, load_weights\n"
        "before = peak_rss()\n"
        "try:\n"
        "    load_weights(sys.argv[1])\n"
        "except WeightsError as exc:\n"
        "    print(exc)\n"
        "print((peak_rss() - before) / 2**20)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True,
                         timeout=timeout)
    message, grown_mib = out.stdout.strip().rsplit("\n", 1)
    return message, float(grown_mib)


def test_a_tampered_dim_fails_before_anything_is_allocated(saved):
    """The SHA-256 covers only the tensors: a JSON edited to a bigger model must not make
    load_weights build it (dim 2048 allocated 1.3 GB before the shape check). Measured in a
    fresh process."""
    _, path = saved
    config = json.loads(path.with_suffix(".json").read_text())
    config["model"]["dim"] = 1024           # CFINet(dim=1024, depth=1) holds ~100 MB of tensors
    path.with_suffix(".json").write_text(json.dumps(config))
    message, grown_mib = _load_in_a_fresh_process(path)
    assert "do not match the architecture in the config (dim=1024" in message, message
    assert grown_mib < 30, f"peak memory grew by {grown_mib:.0f} MiB"


def test_a_config_of_a_gigabyte_fails_without_being_read(saved):
    """The JSON was read whole before it was parsed: a config padded to 1 GiB (a sparse file, free on
    disk) took 2.3 GB; one of 20 GiB all the memory a robot has. Measured in a fresh process."""
    _, path = saved
    with open(path.with_suffix(".json"), "r+b") as f:
        f.truncate(1 << 30)                  # the config, then NUL bytes up to 1 GiB (a hole)
    message, grown_mib = _load_in_a_fresh_process(path)
    assert message == f"{path.with_suffix('.json')}: more than {16 << 20} bytes, not a weights config", message
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB"


@pytest.mark.parametrize("edit, message", [
    ({"depth": 10**9}, r"depth 1000000000 needs \d+ tensors, the file has \d+"),
    ({"dim": 10**9, "heads": 1}, r"dim 1000000000 is more than the largest tensor in the file holds"),
], ids=["depth", "dim"])
def test_a_config_bigger_than_its_tensor_file_fails_at_once(saved, edit, message):
    """Even the meta-device model of the shape check was built first: depth 10**9 never finished
    (the node hung in configure), dim 10**9 overflowed inside torch with a RuntimeError that did
    not say which file was wrong. A fresh process, so that a hang ends at the timeout."""
    _, path = saved
    config = json.loads(path.with_suffix(".json").read_text())
    config["model"].update(edit)
    path.with_suffix(".json").write_text(json.dumps(config))
    error, _ = _load_in_a_fresh_process(path, timeout=60)
    assert "do not match the architecture in the config" in error
    assert re.search(message, error), error


def test_a_config_wider_than_any_matrix_of_its_tensor_file_fails_naming_the_file(saved):
    """A tensor file of one tensor of 2**31 one-byte values (2 GiB, a sparse file: nothing on the
    disk) let a JSON of dim 2**31 past the widths' check, and building the meta-device shapes
    overflowed torch ("Storage size calculation overflowed", a RuntimeError naming no file: a
    traceback in the export command, a configure failure that did not say which file was wrong)."""
    import struct

    _, path = saved
    values = 2**31
    header = json.dumps({"x": {"dtype": "U8", "shape": [values], "data_offsets": [0, values]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + values)
    edit_json(path, lambda config: config["model"].update(dim=values, heads=1, mlp_ratio=1.0, depth=1))
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(path))}: tensors do not match the architecture in the "
                                           rf"config \(dim={values}, depth=1\): its dim x dim .* matrix of "
                                           rf"{values * values} values is more than all the file's tensors hold "
                                           rf"\({values} values\)"):
        load_weights(path)


@pytest.mark.parametrize("config", [CONFIG, replace(CONFIG, mlp_ratio=7.0), replace(CONFIG, mlp_ratio=0.25),
                                    replace(CONFIG, use_cfi_initial=False, use_cfi_local=False,
                                            use_cfi_global=False, use_gramlp=False)],
                         ids=["default", "wide MLP", "narrow MLP", "every branch off"])
def test_every_model_holds_the_matrices_the_file_check_asks_of_it(config):
    """The check above takes every model to hold a dim x dim matrix and a dim x MLP-width one."""
    from cfi_pose_ros.weights import expected_shapes

    sizes = {math.prod(shape) for shape in expected_shapes(config).values()}
    assert config.dim * config.dim in sizes
    assert config.dim * int(config.dim * config.mlp_ratio) in sizes


def test_a_tensor_header_past_a_megabyte_is_refused_before_it_is_parsed(saved):
    """safetensors parses headers of up to 100 MB: 37 MB of empty tensors padding a file whose JSON
    claims 10,000 blocks took 2.5 s and 800 MB before any check, and building the shapes of that
    model 45 s and 2.5 GB in all. A header is refused past 1 MiB (the packaged weights' are 18 kB)."""
    import struct

    _, path = saved
    raw = path.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    header = raw[8:8 + length] + b" " * (1 << 20)         # JSON whitespace: safetensors reads it as before
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + length:])
    with pytest.raises(WeightsError, match=rf"a header of {len(header)} bytes, more than 1048576"):
        load_weights(path)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_expected_shapes_name_every_block_as_the_model_does(depth):
    """expected_shapes builds at most two blocks and names the rest after the second."""
    from cfi_pose_ros.weights import expected_shapes

    config = replace(CONFIG, depth=depth)
    with torch.device("meta"):
        built = {k: tuple(v.shape) for k, v in CFINet(config).state_dict().items()}
    assert expected_shapes(config) == built


@pytest.mark.parametrize("name, record_name", [("cfi_h36m", "S9_gt2d_all_frames"),
                                               ("cfi_h36m_d128", "S9_gt2d_all_frames"),
                                               ("cfi_h36m_wide", "S9_gt2d_all_frames_flip_test_reference_view"),
                                               ("cfi_h36m_wide_cut", "S9_gt2d_all_frames_flip_test_reference_view")])
def test_bundled_weights_load_lift_and_carry_their_s9_record(name, record_name):
    """Every bundled weights file passes every load check and lifts a person to a plausible
    skeleton; its JSON records the all-frames S9 evaluation (GT 2D) the README quotes, and the
    command; the weights trained with placed people say so in their input domain."""
    from cfi_pose_ros.camera import H36M_INPUT_DOMAIN
    import numpy as np
    import torch

    from cfi_pose_ros.weights import DEFAULT_WEIGHTS

    from safetensors import safe_open
    from cfi_pose_ros.weights import MEANING_KEY

    model, info = load_weights(DEFAULT_WEIGHTS.with_name(name + ".safetensors"))
    with safe_open(str(DEFAULT_WEIGHTS.with_name(name + ".safetensors")), framework="pt") as f:
        assert json.loads(f.metadata()[MEANING_KEY])["model"] == info.model.to_dict()
    record = info.metrics[record_name]
    assert record["frames"] == 294176 and 30.0 < record["mpjpe_mm"] < 41.0 and record["p_mpjpe_mm"] < 31.0
    assert record["command"].startswith("python -m training.evaluate")
    assert info.training["commands"] and info.training["compute"]["cpu_hours"] > 0
    placed = info.training["data"].get("placement_prob", 0) > 0
    assert placed == name.startswith("cfi_h36m_wide") and (info.input_domain != H36M_INPUT_DOMAIN) == placed
    assert (info.training["data"].get("cut_prob", 0) > 0) == (name == "cfi_h36m_wide_cut")
    # Synthetic people (other bodies and cameras than Human3.6M): mean joint error against their truth.
    from training.synthetic import synthetic_pose_set
    poses = synthetic_pose_set(8, seed=0)
    with torch.no_grad():
        joints = model(torch.from_numpy(poses.inputs_2d)).numpy()
    assert np.isfinite(joints).all()
    error_mm = 1000 * np.linalg.norm(joints - poses.targets_3d, axis=-1).mean()
    assert error_mm < 200, error_mm      # untrained: ~540 mm; the bundled weights: 120-130 mm


def test_the_default_weights_meet_the_s9_target_as_the_node_ships_them():
    """Issue #12's target, S9 GT 2D all frames <= 40.0 mm MPJPE / <= 31.0 mm P-MPJPE, holds for the
    record the default weights carry of the node's default: flip test as ``flip_test`` defaults, the
    reference camera's view (the node with a CameraInfo). ``cfi_h36m``, the default before, reads
    40.58 mm there and met it only with flip test on, which the node does not ship."""
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS

    flip = "_flip_test" if PARAMETERS_BY_NAME["flip_test"].default else ""
    record = read_weights_info(DEFAULT_WEIGHTS).metrics[f"S9_gt2d_all_frames{flip}_reference_view"]
    assert record["frames"] == 294176 and ("--flip-test" in record["command"]) == bool(flip)
    assert record["mpjpe_mm"] <= 40.0 and record["p_mpjpe_mm"] <= 31.0, record
    h36m = read_weights_info(DEFAULT_WEIGHTS.with_name("cfi_h36m.safetensors")).metrics
    assert h36m[f"S9_gt2d_all_frames{flip}_reference_view"]["mpjpe_mm"] > record["mpjpe_mm"]


def test_weights_setting_resolves_bundled_names_and_keeps_paths(tmp_path, monkeypatch):
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME, lifter_options
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS, resolve_weights

    assert resolve_weights("") == str(DEFAULT_WEIGHTS)
    assert resolve_weights("cfi_h36m_d128") == str(DEFAULT_WEIGHTS.with_name("cfi_h36m_d128.safetensors"))
    assert resolve_weights("cfi_h36m_wide_cut") == str(DEFAULT_WEIGHTS)     # the default is a bundled file by name
    assert resolve_weights("cfi_h36m_wide") == str(DEFAULT_WEIGHTS.with_name("cfi_h36m_wide.safetensors"))
    assert resolve_weights("cfi_h36m") == str(DEFAULT_WEIGHTS.with_name("cfi_h36m.safetensors"))
    for as_given in ("no_such_bundle", "cfi_h36m_d128.safetensors", str(tmp_path / "cfi_h36m_d128"), "./cfi_h36m"):
        assert resolve_weights(as_given) == as_given           # a path stays a path, even a missing one
    # ROS passes `weights: ~/models/cfi.safetensors` on as written: it was "weights file missing"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_weights("~/models/cfi.safetensors") == str(tmp_path / "models" / "cfi.safetensors")
    options = lifter_options(lambda name: "cfi_h36m_d128" if name == "weights" else PARAMETERS_BY_NAME[name].default)
    assert options["weights"] == str(DEFAULT_WEIGHTS.with_name("cfi_h36m_d128.safetensors"))


def test_an_interrupted_save_leaves_the_previous_pair_loadable(saved, monkeypatch):
    """Both files are written beside their final names and renamed over them: a save that dies
    before the renames (a full disk, a kill) leaves the last good weights, not a checksum mismatch."""
    from pathlib import Path

    from cfi_pose_ros.files import WriteError

    model, path = saved
    before = {k: v.clone() for k, v in load_weights(path)[0].state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def dies(self, target):
        raise OSError("no space left on device")

    monkeypatch.setattr(Path, "replace", dies)
    with pytest.raises(WriteError, match="no space"):
        save_weights(model, path)
    monkeypatch.undo()
    loaded, _ = load_weights(path)
    assert all(torch.equal(v, before[k]) for k, v in loaded.state_dict().items())
    save_weights(model, path)                                   # and a save that completes replaces them
    assert not torch.equal(load_weights(path)[0].state_dict()["head.bias"], before["head.bias"])


def test_a_weights_name_a_folder_holds_is_one_write_error_and_leaves_no_partial_file(saved):
    """The renames were outside save_weights' handling: a folder at the tensor file's name was an
    IsADirectoryError traceback (of training.train too), with both partial files left beside it."""
    from cfi_pose_ros.files import WriteError

    model, path = saved
    folder = path.parent / "other.safetensors"
    folder.mkdir()
    with pytest.raises(WriteError) as error:
        save_weights(model, path.parent / "other")
    assert str(error.value) == f"could not write the weights {folder}: Is a directory"
    assert sorted(p.name for p in path.parent.iterdir()) == ["other.safetensors", "tiny.json", "tiny.safetensors"]


def _save_killed_after_the_tensors(source, path, plus: float):
    """A process that loads the weights ``source``, adds ``plus`` to every parameter and saves them
    as ``path``, killed (SIGKILL) right after the tensors' rename, before the JSON's."""
    import subprocess
    import sys

    child = f"""
import os, pathlib, signal, torch
from cfi_pose_ros.weights import load_weights, save_weights
model, _ = load_weights({str(source)!r})
with torch.no_grad():
    for p in model.parameters():
        p.add_({plus!r})
rename = pathlib.Path.replace
def killed_after_the_tensors(self, target):
    rename(self, target)
    if str(target).endswith(".safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)
pathlib.Path.replace = killed_after_the_tensors
save_weights(model, {str(path)!r}, metrics={{"new": {{}}}})
"""
    return subprocess.run([sys.executable, "-P", "-c", child], capture_output=True, text=True, timeout=120)


def test_a_save_killed_between_its_two_renames_is_refused_with_the_way_to_finish_it(saved):
    """The tensors are renamed over the pair before the JSON: a save killed between the two leaves the
    new tensors beside the old JSON, refused ("SHA-256 ... does not match"), and the new JSON whole
    beside them (``<name>.json.partial``, written before either rename), describing these tensors.
    The refusal says so and how to finish the save; the load itself changes no file."""
    model, path = saved
    assert _save_killed_after_the_tensors(path, path, plus=1.0).returncode == -9
    left = sorted(p.name for p in path.parent.iterdir())
    assert left == ["tiny.json", "tiny.json.partial", "tiny.safetensors"]
    partial = path.parent / "tiny.json.partial"
    with pytest.raises(WeightsError, match=re.escape(f"a save stopped between its two files left {partial}, which "
                                                     "describes these tensors: rename it over tiny.json")):
        load_weights(path)
    assert sorted(p.name for p in path.parent.iterdir()) == left            # nothing changed by the load
    partial.replace(path.parent / "tiny.json")
    loaded, info = load_weights(path)
    assert info.metrics == {"new": {}}
    expected = dict(model.named_parameters())
    assert all(torch.equal(value, expected[name] + 1.0) for name, value in loaded.named_parameters())


def test_a_first_save_killed_between_its_two_renames_says_how_to_finish_it(saved):
    """The first save of a name killed between the renames left the tensors and no JSON: "weights
    file missing: first.json", with nothing of the whole JSON lying beside it as first.json.partial."""
    _, path = saved
    first = path.parent / "first"
    assert _save_killed_after_the_tensors(path, first, plus=0.0).returncode == -9
    partial = path.parent / "first.json.partial"
    with pytest.raises(WeightsError, match=re.escape(f"weights file missing: {path.parent / 'first.json'}")
                       + ".*" + re.escape(f"a save stopped between its two files left {partial}, which describes "
                                          "these tensors: rename it over first.json")):
        load_weights(first)
    partial.replace(path.parent / "first.json")
    assert load_weights(first)[1].metrics == {"new": {}}


def bytes_read_by_this_process() -> int:
    """What the kernel counts this process as having read (/proc/self/io's rchar)."""
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def test_a_big_tensor_file_without_its_json_is_refused_without_being_read(tmp_path):
    """A tensor file with no JSON beside it was hashed whole before "weights file missing" (for the
    hint of a save stopped between its renames, which needs a <name>.json.partial there): a 16 GiB
    safetensors file of another program kept a node's configure 58 s. Hashed now only where such a
    JSON names a SHA-256."""
    other = tmp_path / "other.safetensors"
    with open(other, "wb") as f:
        f.truncate(1 << 30)          # a hole: a gigabyte to read, none on the disk
    before = bytes_read_by_this_process()
    with pytest.raises(WeightsError, match=re.escape(f"weights file missing: {tmp_path / 'other.json'} (")):
        load_weights(other)
    assert bytes_read_by_this_process() - before < 1 << 20


def test_tensors_of_another_dtype_are_refused_even_with_a_matching_checksum(saved):
    """float64 (or integer) tensors were cast to float32 without a word: not the file that was trained."""
    from safetensors.torch import save_file

    from cfi_pose_ros.weights import file_sha256

    model, path = saved
    save_file({k: v.double() for k, v in model.state_dict().items()}, str(path))
    edit_json(path, lambda config: config.update(tensors_sha256=file_sha256(path)))
    with pytest.raises(WeightsError, match=r"not float32 \(e.g. .*: F64\)"):
        load_weights(path)


def test_a_json_nested_too_deep_is_not_valid_json(saved):
    _, path = saved
    path.with_suffix(".json").write_text("[" * 100_000)
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_weights(path)


def test_an_input_domain_travels_with_the_weights_and_a_bad_one_is_refused(saved, tmp_path):
    """Where the training people stood is part of the weights (their JSON's input_domain): it
    loads back, a file without one has Human3.6M's, and a broken one stops the load saying so."""
    from cfi_pose_ros.camera import H36M_INPUT_DOMAIN, LifterInputDomain
    from cfi_pose_ros.inference import create_lifter

    model, path = saved
    assert read_weights_info(path).input_domain == H36M_INPUT_DOMAIN
    wide = LifterInputDomain(((-30.0, -20.0), (30.0, 15.0)), (0.05, 0.6))
    wide_path = save_weights(model, tmp_path / "wide", input_domain=wide)
    assert read_weights_info(wide_path).input_domain == wide
    assert load_weights(wide_path)[1].input_domain == wide
    # and the lifter made from them says so (one from a model in memory: Human3.6M's)
    assert create_lifter(wide_path, backend="torch", cache_dir=tmp_path).input_domain == wide
    assert create_lifter(model, backend="torch", cache_dir=tmp_path).input_domain == H36M_INPUT_DOMAIN
    config_path = wide_path.with_suffix(".json")
    config = json.loads(config_path.read_text())
    for bad, message in ((dict(config["input_domain"], person_scale_range=[0.6, 0.05]), "0 < low < high"),
                         (dict(config["input_domain"], person_scale_range=[0.05, float("inf")]), "finite"),
                         # an int past float64's range: numpy's "ufunc 'isfinite' not supported" was the message
                         (dict(config["input_domain"], person_scale_range=[0.05, 10**400]), "finite number"),
                         (dict(config["input_domain"], pelvis_angles_deg=[[-95, -20], [30, 15]]), "80 degrees"),
                         (dict(config["input_domain"], pelvis_angles_deg=[[-30, "-20"], [30, 15]]), "finite number"),
                         (dict(config["input_domain"], pelvis_angles_deg=[-30, 30]), r"\[\[low_x"),
                         ({"person_scale_range": [0.05, 0.6]}, "exactly"), ("wide", "exactly")):
        config_path.write_text(json.dumps(dict(config, input_domain=bad)))
        with pytest.raises(WeightsError, match=f"bad input domain.*{message}"):
            load_weights(wide_path)


def test_the_input_domain_is_covered_by_the_tensor_files_record(tmp_path):
    """The input domain (where the training people stood: what the node turns and zooms every
    person into) was in the JSON only: an edited one loaded without a word. A JSON that names one
    for weights saved without one is refused as well."""
    from dataclasses import replace as replaced

    from cfi_pose_ros.camera import H36M_INPUT_DOMAIN

    wider = replaced(H36M_INPUT_DOMAIN, person_scale_range=(0.1, 0.9))
    for domain, edited in ((wider, H36M_INPUT_DOMAIN), (None, wider)):
        path = save_weights(CFINet(CONFIG), tmp_path / "domain", input_domain=domain)
        assert read_weights_info(path).input_domain == (domain or H36M_INPUT_DOMAIN)
        load_weights(path)
        edit_json(path, lambda config: config.update(input_domain=edited.to_dict()))
        with pytest.raises(WeightsError, match="describes another model.*input_domain: JSON"):
            load_weights(path)


def test_a_json_without_the_tensors_checksum_is_refused(saved):
    """Without tensors_sha256 the tensors of another model of the same shapes loaded as this one's."""
    _, path = saved
    edit_json(path, lambda config: config.pop("tensors_sha256"))
    with pytest.raises(WeightsError, match="has no tensors_sha256"):
        load_weights(path)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_json_an_editor_saved_with_a_byte_order_mark_loads_and_takes_a_record(saved, encoding):
    """The JSON is read as bytes (json finds their encoding), so such a file loaded; the record read
    it as text, and `training.evaluate --record` ended the whole evaluation in a JSONDecodeError
    traceback ("Unexpected UTF-8 BOM") or a UnicodeDecodeError."""
    model, path = saved
    config_path = path.with_suffix(".json")
    config_path.write_bytes(config_path.read_text().encode(encoding))
    loaded, info = load_weights(path)
    record_metrics(path, "S11", {"mpjpe_mm": 40.0}, info.sha256)
    loaded, info = load_weights(path)
    assert info.metrics == {"S9": {"mpjpe_mm": 12.5}, "S11": {"mpjpe_mm": 40.0}}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_concurrent_records_into_one_weights_file_keep_every_entry(saved, tmp_path):
    """Two `python -m training.evaluate --record` on one weights file at once: both wrote the one
    `<name>.json.partial` (one's rename then failed with FileNotFoundError, or renamed the other's
    half-written file over the JSON), and each read the JSON before the other wrote it, so the
    later write dropped the earlier one's entry. Four processes of 25 records each, started together."""
    import subprocess
    import sys
    import time

    _, path = saved
    start = time.time() + 3.0               # past every process's imports: they write at once
    writer = ("import sys, time\n"
              "from cfi_pose_ros.weights import record_metrics\n"
              "time.sleep(max(0.0, float(sys.argv[3]) - time.time()))\n"
              "for k in range(25):\n"
              "    record_metrics(sys.argv[1], f'{sys.argv[2]}_{k}', {'mpjpe_mm': k}, sys.argv[4])\n")
    measured = read_weights_info(path).sha256
    processes = [subprocess.Popen([sys.executable, "-P", "-c", writer, str(path), f"w{i}", str(start), measured],
                                  stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors
    info = read_weights_info(path)
    assert set(info.metrics) == {"S9"} | {f"w{i}_{k}" for i in range(4) for k in range(25)}, \
        sorted(set(info.metrics) ^ ({"S9"} | {f"w{i}_{k}" for i in range(4) for k in range(25)}))
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]
    load_weights(path)


def test_a_record_of_tensors_saved_over_since_is_refused_and_the_weights_still_load(saved):
    """`training.evaluate --record` measures the tensors, then writes the means into the JSON: weights
    saved again in between (a training run into the same --out) got the old tensors' means in the new
    JSON, under the new tensors' name. The record now says which tensors it measured."""
    _, path = saved
    measured = read_weights_info(path).sha256
    torch.manual_seed(1)
    newer = save_weights(CFINet(CONFIG), path, metrics={"S9": {"mpjpe_mm": 99.0}})
    now = read_weights_info(newer).sha256
    assert now != measured
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(path.with_suffix('.json')))}: describes other tensors "
                                           rf"\(SHA-256 {now[:12]}\.\.\.\) than the ones measured "
                                           rf"\({measured[:12]}\.\.\.\)"):
        record_metrics(path, "S9_gt2d_all_frames", {"mpjpe_mm": 12.0}, measured)
    _, info = load_weights(path)
    assert info.sha256 == now and info.metrics == {"S9": {"mpjpe_mm": 99.0}}
    record_metrics(path, "S9_gt2d_all_frames", {"mpjpe_mm": 98.0}, now)       # of the tensors there: recorded
    assert load_weights(path)[1].metrics["S9_gt2d_all_frames"] == {"mpjpe_mm": 98.0}


def test_saves_and_records_at_once_keep_the_weights_loadable(saved):
    """A record that read the JSON just before a save renamed its files over the pair wrote that older
    JSON back, with the older tensors' tensors_sha256: the weights no longer loaded (SHA-256 mismatch;
    13 of 300 such rounds here). The save's renames now wait for the record's lock, and the record
    refuses tensors it did not measure. Each round a save of the other model and a record of the model
    saved before start at once (threads); after each the weights load, and the JSON holds no metrics
    of the tensors saved over (a record before the save is replaced by it, one after it is refused)."""
    import threading

    _, path = saved
    torch.manual_seed(2)
    models = [CFINet(CONFIG), CFINet(CONFIG)]
    save_weights(models[0], path)
    refused = 0
    for k in range(300):
        together, outcome = threading.Barrier(2), {}
        measured = read_weights_info(path).sha256

        def save():
            together.wait()
            save_weights(models[(k + 1) % 2], path)

        def record():
            together.wait()
            try:
                record_metrics(path, f"r{k}", {"round": k}, measured)
            except WeightsError as error:
                outcome["refused"] = str(error)

        threads = [threading.Thread(target=save), threading.Thread(target=record)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _, info = load_weights(path)
        assert info.sha256 != measured and f"r{k}" not in info.metrics, (k, outcome)
        assert "describes other tensors" in outcome.get("refused", "describes other tensors")
        refused += "refused" in outcome
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]
    print(f"{refused} of 300 records refused")


# Every save that writes a file beside its name and renames it over it, each into a folder of its own:
# the shared helpers (write_replacing, write_together: curves, metrics at a resume, the study's and the
# evaluation's files), the weights (and a record into them) and the checkpoint.
DURABLE_SAVES = r"""
import json, os, sys
from pathlib import Path
import torch
from cfi_pose_ros.files import write_replacing, write_together
from cfi_pose_ros.inference.cache import atomic_write_bytes
from cfi_pose_ros.model import CFIConfig, CFINet
from cfi_pose_ros.weights import read_weights_info, record_metrics, save_weights
from training.checkpoint import save_checkpoint

root, events = Path(sys.argv[1]), []
if sys.argv[2] == "record":         # no strace: the calls recorded in the process
    fsync, replace = os.fsync, os.replace
    def recorded_fsync(descriptor):
        events.append(["fsync", os.readlink(f"/proc/self/fd/{descriptor}")])
        return fsync(descriptor)
    def recorded_replace(source, target, **kwargs):
        events.append(["rename", os.path.abspath(source), os.path.abspath(target)])
        return replace(source, target, **kwargs)
    os.fsync, os.replace = recorded_fsync, recorded_replace
for name in ("helper", "helper-two", "weights", "checkpoint", "cache"):
    (root / name).mkdir()
atomic_write_bytes(root / "cache" / "engine.bin", b"an engine")    # the node's engine cache
write_replacing("a file", root / "helper" / "one.txt", lambda partial: partial.write_text("one"))
write_together("two files", {root / "helper-two" / "x.md": lambda partial: partial.write_text("x"),
                             root / "helper-two" / "y.json": lambda partial: partial.write_text("{}")})
model = CFINet(CFIConfig(dim=16, depth=1, heads=2))
path = save_weights(model, root / "weights" / "tiny")
record_metrics(path, "S9", {"mpjpe_mm": 1.0}, read_weights_info(path).sha256)
optimizer = torch.optim.Adam(model.parameters())
model(torch.randn(2, 17, 2)).sum().backward()
optimizer.step()
save_checkpoint(root / "checkpoint", model, optimizer, 1, [], {})
if events:
    (root / "events.json").write_text(json.dumps(events))
"""


def _strace_events(log: str) -> list[list[str]]:
    """``[["fsync", path], ["rename", source, target]]`` in order, from ``strace -y``'s log (an
    fsync's descriptor shown with its path, ``3</run/x.partial>``); calls that failed left out."""
    import re

    events = []
    for line in log.splitlines():
        if not re.search(r"\)\s+= 0$", line):
            continue
        call = re.match(r"(?:\d+\s+)?(\w+)\((.*)\)\s+= 0$", line)
        if call is None:
            continue
        name, arguments = call.groups()
        if name in ("fsync", "fdatasync"):
            events.append(["fsync", re.fullmatch(r"\d+<(.*)>", arguments).group(1)])
        elif name in ("rename", "renameat", "renameat2"):
            events.append(["rename", *re.findall(r'"((?:[^"\\]|\\.)*)"', arguments)[:2]])
    return events


def test_saves_sync_each_file_before_its_rename_and_the_folder_after(tmp_path):
    """No save synced anything: a file written beside its name and renamed over it is crash-safe on a
    power loss (a robot's battery pulled, a kernel panic) only if its data reaches the disk before the
    rename and the folder's entry after it; ext4's delayed allocation, or XFS, could otherwise leave a
    zero-length or garbage file under the final name, the previous one gone. A real save of each kind
    in a process, its system calls traced (strace; without it, os.fsync and os.replace recorded in the
    process): each renamed file synced once before its rename, each folder once per save after it."""
    import shutil
    import subprocess
    import sys

    root = tmp_path.resolve() / "saves"        # as the traced descriptors' paths show it
    root.mkdir()
    command = [sys.executable, "-P", "-c", DURABLE_SAVES, str(root)]
    strace = shutil.which("strace")
    if strace and subprocess.run([strace, "-o", "/dev/null", "true"], capture_output=True).returncode == 0:
        log = tmp_path / "strace.log"
        done = subprocess.run([strace, "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
                               "-e", "signal=none", "-o", str(log), *command, "strace"], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        events = _strace_events(log.read_text())
    else:       # no strace, or no ptrace here (a container): the process records the calls itself
        done = subprocess.run([*command, "record"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        events = json.loads((root / "events.json").read_text())
    events = [event for event in events if all(path == str(root) or path.startswith(f"{root}/")
                                               for path in event[1:])]
    # into the final names (safetensors' own rename of its temporary file to the partial one left out)
    renames = [(index, event[1], event[2]) for index, event in enumerate(events)
               if event[0] == "rename" and not event[2].endswith((".partial", ".tmp"))]
    assert sorted(target.removeprefix(str(root) + "/") for _, _, target in renames) == [
        "cache/engine.bin", "checkpoint/checkpoint.json", "checkpoint/checkpoint.safetensors", "helper-two/x.md",
        "helper-two/y.json",
        "helper/one.txt", "weights/tiny.json", "weights/tiny.json", "weights/tiny.safetensors"], events
    for index, source, target in renames:
        synced = [at for at, event in enumerate(events) if event == ["fsync", source]]
        assert len(synced) == 1 and synced[0] < index, (source, events)
        parent = os.path.dirname(target)
        assert any(event == ["fsync", parent] for event in events[index + 1:]), (target, events)
    folders = {}
    for event in events:
        if event[0] == "fsync" and os.path.isdir(event[1]):
            folders[os.path.basename(event[1])] = folders.get(os.path.basename(event[1]), 0) + 1
    # one a save: the weights' folder once for the save, once for the record into it
    assert folders == {"helper": 1, "helper-two": 1, "weights": 2, "checkpoint": 1, "cache": 1}, events
