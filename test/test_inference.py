"""Fixed-shape inference: backends agree with eager PyTorch, padding/chunking, cache keys, errors, export CLI.

A small model (dim 32, depth 1, 4 heads) with every parameter perturbed (so
LayerNorm affines and biases are non-trivial and the fused graph's folding is
really exercised) is saved with save_weights into a temporary directory.
CUDA and TensorRT tests skip with the reason when this machine cannot run them.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cfi_pose_ros.inference import (BACKENDS, COMPILED_BATCH_SIZES, CPU_BATCH_SIZES, TOLERANCES, BackendUnavailable, Lifter,
                                    ReferenceMismatch, available_backends, backend_unavailable_reason,
                                    create_lifter, engine_cache_key, engine_key_fields)
from cfi_pose_ros.inference import batching, cache
from cfi_pose_ros.inference.fused import FusedCFINet
from cfi_pose_ros.inference.reference import check_against_reference, reference_inputs
from cfi_pose_ros.model import CFIConfig, CFINet
from cfi_pose_ros.weights import WeightsError, read_weights_info, save_weights

SMALL = CFIConfig(dim=32, depth=1, heads=4)
ATOL = 1e-4   # metres


def perturbed_model(config: CFIConfig = SMALL, seed: int = 0) -> CFINet:
    torch.manual_seed(seed)
    model = CFINet(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "norm" in name else 0.05))
    return model


def realistic_inputs(n: int, seed: int = 3) -> np.ndarray:
    """H36M-geometry people seen by random cameras (the training data generator), screen-normalised."""
    from training.synthetic import synthetic_pose_set

    return synthetic_pose_set(max(n, 1), seed=seed).inputs_2d[:n]


def eager(model: CFINet, keypoints: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(keypoints)).numpy()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(model, weights path, cache dir) shared by the module so the ONNX export runs once."""
    root = tmp_path_factory.mktemp("inference")
    model = perturbed_model()
    return model, save_weights(model, root / "small.safetensors"), root / "cache"


@pytest.fixture(scope="module")
def ort_lifter(small):
    if backend_unavailable_reason("onnxruntime"):
        pytest.skip(f"onnxruntime: {backend_unavailable_reason('onnxruntime')}")
    _, weights, cache_dir = small
    return create_lifter(weights, backend="onnxruntime", cache_dir=cache_dir, threads=1, log=lambda *_: None)


@pytest.fixture(scope="module")
def torch_lifter(small):
    _, weights, cache_dir = small
    return create_lifter(weights, backend="torch", cache_dir=cache_dir, log=lambda *_: None)


# ----------------------------------------------------------------- batching (pure)
@pytest.mark.parametrize("count, expected", [
    (0, []),
    (1, [(0, 1, 1)]),
    (3, [(0, 3, 4)]),
    (16, [(0, 16, 16)]),
    (17, [(0, 16, 16), (16, 17, 1)]),
    (40, [(0, 16, 16), (16, 32, 16), (32, 40, 8)]),
])
def test_plan_chunks(count, expected):
    chunks = batching.plan_chunks(count, COMPILED_BATCH_SIZES)
    assert [(c.start, c.stop, c.size) for c in chunks] == expected
    assert sum(c.count for c in chunks) == count
    assert all(c.size in COMPILED_BATCH_SIZES and 0 <= c.padding < c.size for c in chunks)


def test_padded_size_and_batch_size_validation():
    assert [batching.padded_size(n, (1, 2, 4, 8, 16)) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]
    assert batching.normalize_batch_sizes([8, 1, 4, 1]) == (1, 4, 8)
    with pytest.raises(ValueError, match="largest batch size"):
        batching.padded_size(17, (1, 16))
    for bad in ([], [0, 1], [2, -1], [1.5], ["4"], [True]):
        with pytest.raises(ValueError, match="batch_sizes"):
            batching.normalize_batch_sizes(bad)


def test_batch_sizes_have_an_upper_bound(small):
    """Issue 13, item 11: [4096] was accepted (4 GB, 10-15 s per one-person frame)."""
    assert batching.normalize_batch_sizes([batching.MAX_BATCH_SIZE, 1]) == (1, batching.MAX_BATCH_SIZE)
    with pytest.raises(ValueError, match=rf"batch size 4096 is larger than {batching.MAX_BATCH_SIZE}"):
        batching.normalize_batch_sizes([1, 4096])
    with pytest.raises(ValueError, match="larger than"):       # refused before anything is built
        create_lifter(small[0], backend="torch", batch_sizes=[4096], log=lambda *_: None)


def test_pad_and_unpad():
    batch = np.arange(3 * 17 * 2, dtype=np.float32).reshape(3, 17, 2)
    padded = batching.pad_batch(batch, 8)
    assert padded.shape == (8, 17, 2)
    np.testing.assert_array_equal(padded[:3], batch)
    np.testing.assert_array_equal(padded[3:], np.repeat(batch[-1:], 5, axis=0))   # repeats the last person
    assert batching.pad_batch(batch, 3) is batch                                   # full: no copy
    np.testing.assert_array_equal(batching.unpad(padded, 3), batch)
    with pytest.raises(ValueError):
        batching.pad_batch(batch, 2)
    with pytest.raises(ValueError):
        batching.pad_batch(batch[:0], 4)


@pytest.mark.parametrize("count", [0, 1, 3, 16, 17, 40])
def test_run_in_fixed_batches_keeps_order_and_only_uses_fixed_sizes(count):
    keypoints = np.random.default_rng(count).normal(size=(count, 17, 2)).astype(np.float32)
    seen = []

    def run(batch):
        seen.append(batch.shape[0])
        return np.concatenate([batch, batch[..., :1] * 2], axis=-1)   # a per-person function

    out = batching.run_in_fixed_batches(keypoints, COMPILED_BATCH_SIZES, run, (17, 3))
    assert out.shape == (count, 17, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., :2], keypoints)
    np.testing.assert_array_equal(out[..., 2], keypoints[..., 0] * 2)
    assert all(size in COMPILED_BATCH_SIZES for size in seen)
    assert len(seen) == len(batching.plan_chunks(count, COMPILED_BATCH_SIZES))


def test_validate_keypoints():
    ok = batching.validate_keypoints(np.zeros((2, 17, 2), dtype=np.float64))
    assert ok.dtype == np.float32 and ok.flags.c_contiguous
    assert batching.validate_keypoints([[[0, 0]] * 17]).shape == (1, 17, 2)
    for bad in (np.zeros((17, 2)), np.zeros((2, 17, 3)), np.zeros((2, 16, 2)), np.zeros((1, 2, 17)),
                np.array([["a", "b"]] * 17)[None]):
        with pytest.raises(ValueError, match=r"\(N, 17, 2\)"):
            batching.validate_keypoints(bad)


# ----------------------------------------------------------------- the fused graph
@pytest.mark.parametrize("flags", list(itertools.product([True, False], repeat=4))[::3])
def test_fused_graph_equals_cfinet(flags):
    config = CFIConfig(dim=32, depth=2, heads=4, use_cfi_global=flags[0], use_cfi_initial=flags[1],
                       use_cfi_local=flags[2], use_gramlp=flags[3])
    model = perturbed_model(config, seed=sum(flags))
    x = torch.from_numpy(realistic_inputs(24))
    with torch.inference_mode():
        expected = model(x)
        for portable in (False, True):
            np.testing.assert_allclose(FusedCFINet(model, portable_gelu=portable)(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype, precision", [(torch.float16, "fp16"), (torch.bfloat16, "bf16")])
def test_fused_graph_reduced_precision_within_tolerance(dtype, precision):
    model = perturbed_model()
    x = torch.from_numpy(realistic_inputs(16))
    with torch.inference_mode():
        got = FusedCFINet(model, dtype)(x)
        assert got.dtype == torch.float32
        assert float((got - model(x)).abs().max()) < TOLERANCES[precision]


# ----------------------------------------------------------------- backends vs eager PyTorch
@pytest.mark.parametrize("count", [0, 1, 3, 16, 17, 40])
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_backend_matches_eager_pytorch(backend, count, small, request):
    lifter = request.getfixturevalue(f"{'ort' if backend == 'onnxruntime' else 'torch'}_lifter")
    model = small[0]
    keypoints = realistic_inputs(count)
    out = lifter.lift(keypoints)
    assert out.shape == (count, 17, 3) and out.dtype == np.float32
    if count:
        assert float(np.abs(out - eager(model, keypoints)).max()) < ATOL


def test_lifter_interface(ort_lifter, torch_lifter):
    for lifter in (ort_lifter, torch_lifter):
        assert isinstance(lifter, Lifter)
        assert lifter.backend in BACKENDS and lifter.precision == "fp32"
        assert lifter.batch_sizes == CPU_BATCH_SIZES   # the CPU backends' default: no padded rows
        info = lifter.describe()
        json.dumps(info)
        assert info["backend"] == lifter.backend and info["max_abs_diff_vs_reference_m"] < ATOL
        assert len(info["weights_sha256"]) == 64
        empty = lifter.lift(np.zeros((0, 17, 2), np.float32))
        assert empty.shape == (0, 17, 3) and empty.dtype == np.float32


def test_padding_never_changes_a_real_persons_output(small, ort_lifter):
    _, weights, cache_dir = small
    padded = create_lifter(weights, backend="onnxruntime", batch_sizes=COMPILED_BATCH_SIZES, cache_dir=cache_dir,
                           threads=1, log=lambda *_: None)
    assert padded.batch_sizes == COMPILED_BATCH_SIZES
    keypoints = realistic_inputs(5)                     # runs as a batch of 8: three padded rows
    alone = np.concatenate([ort_lifter.lift(keypoints[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(padded.lift(keypoints), alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [np.zeros((17, 2)), np.zeros((3, 17, 3)), np.zeros((3, 14, 2))])
def test_wrong_input_shape_is_a_value_error(ort_lifter, bad):
    with pytest.raises(ValueError, match=r"\(N, 17, 2\)"):
        ort_lifter.lift(bad)


def test_onnx_export_is_cached_by_weights_hash(small, ort_lifter):
    _, weights, cache_dir = small
    source = ort_lifter.describe()["onnx"]
    assert source.startswith(str(cache_dir)) and source.endswith(".onnx")
    lines = []
    again = create_lifter(weights, backend="onnxruntime", cache_dir=cache_dir, threads=1, log=lines.append)
    assert again.describe()["onnx"] == source and not any("exporting" in line for line in lines)


def test_an_onnx_export_is_cached_per_onnxscript_version(tmp_path, small, monkeypatch):
    """torch.onnx.export(dynamo=True) translates and optimises the graph with onnxscript: another
    onnxscript writes another graph, which a cached export of the old one (and a TensorRT engine or
    failure keyed like it) must not stand for."""
    import onnxscript

    model, weights, _ = small
    first = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lambda *_: None)
    monkeypatch.setattr(onnxscript, "__version__", onnxscript.__version__ + ".post1")
    lines = []
    again = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lines.append)
    assert any("not cached yet; exporting" in line for line in lines), lines
    assert again.describe()["onnx"] != first.describe()["onnx"]
    assert len(list(tmp_path.glob("onnx/*.onnx"))) == 2


def test_corrupted_cached_onnx_is_exported_again(tmp_path, small):
    model, weights, _ = small
    lines = []
    first = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lines.append)
    path = first.describe()["onnx"]
    with open(path, "r+b") as f:      # flip bytes inside the file: SHA-256 no longer matches the sidecar
        f.seek(-64, 2)
        f.write(b"\0" * 16)
    lines.clear()
    second = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lines.append)
    assert any("SHA-256" in line for line in lines)
    keypoints = realistic_inputs(4)
    assert float(np.abs(second.lift(keypoints) - eager(model, keypoints)).max()) < ATOL


def test_a_cached_onnx_that_onnxruntime_cannot_load_is_exported_again(tmp_path, small):
    """Garbage under a sidecar that records its SHA-256 passed the cache's checks, and the
    InvalidProtobuf of making the session ended `offline --backend onnxruntime` at every start."""
    model, weights, _ = small
    first = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1)
    path = Path(first.describe()["onnx"])
    garbage = np.random.default_rng(0).bytes(5000)
    path.write_bytes(garbage)
    sidecar = json.loads(cache.sidecar_path(path).read_text())
    sidecar["sha256"] = hashlib.sha256(garbage).hexdigest()
    cache.sidecar_path(path).write_text(json.dumps(sidecar))
    assert cache.load(path, sidecar["fields"])[0] == garbage             # what the lifter is given
    lines = []
    second = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lines.append)
    assert any("cached export cannot be loaded" in line and "INVALID_PROTOBUF" in line for line in lines), lines
    assert second.describe()["onnx"] == str(path)
    assert path.read_bytes() != garbage and cache.load(path, sidecar["fields"])[0] == path.read_bytes()
    keypoints = realistic_inputs(4)
    assert float(np.abs(second.lift(keypoints) - eager(model, keypoints)).max()) < ATOL


def test_a_cached_onnx_that_loads_but_does_not_run_is_exported_again(tmp_path, small):
    """A graph under a sidecar that matches it, which onnxruntime loads but cannot run with the
    lifter's one input (a second input): the ValueError of onnxruntime's Python wrapper ("Required
    inputs ... are missing") failed every start with the onnxruntime backend (the node's configure
    each time), the file left in the cache."""
    import onnx
    from onnx import TensorProto, helper

    model, weights, _ = small
    first = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lambda *_: None)
    path = Path(first.describe()["onnx"])
    keypoints = helper.make_tensor_value_info("keypoints_2d", TensorProto.FLOAT, ["batch", 17, 2])
    other = helper.make_tensor_value_info("other", TensorProto.FLOAT, ["batch", 17, 3])
    joints = helper.make_tensor_value_info("joints_3d", TensorProto.FLOAT, ["batch", 17, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["other"], ["joints_3d"])], "two_inputs",
                              [keypoints, other], [joints])
    two_inputs = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(two_inputs))
    path.write_bytes(two_inputs)
    sidecar = json.loads(cache.sidecar_path(path).read_text())
    sidecar["sha256"] = hashlib.sha256(two_inputs).hexdigest()
    cache.sidecar_path(path).write_text(json.dumps(sidecar))
    lines = []
    second = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lines.append)
    assert any("cached export cannot be loaded" in line and "missing" in line for line in lines), lines
    assert second.describe()["onnx"] == str(path) and cache.load(path, sidecar["fields"])[0] == path.read_bytes()
    assert path.read_bytes() != two_inputs
    keypoints = realistic_inputs(4)
    assert float(np.abs(second.lift(keypoints) - eager(model, keypoints)).max()) < ATOL


def test_an_fp16_export_of_other_float32_blocks_is_not_served_from_the_cache(tmp_path, small, monkeypatch):
    """FLOAT32_BLOCKS went from 0 to 1 with the same cache key: fp16 exports of the old graph (2.7 mm
    off, against 0.85 mm) went on being loaded, and so would engines and recorded engine failures."""
    from cfi_pose_ros.inference import fused
    from cfi_pose_ros.inference.onnx_export import exported_onnx

    model, weights, _ = small
    sha256 = read_weights_info(weights).sha256
    exports = {}
    for blocks in (0, 1):
        monkeypatch.setattr(fused, "FLOAT32_BLOCKS", blocks)
        lines = []
        exports[blocks] = exported_onnx(model, sha256, tmp_path, "fp16", lines.append)
        assert any("exporting" in line for line in lines), (blocks, lines)
    assert exports[0][1] != exports[1][1] and exports[0][0] != exports[1][0]


def test_a_cache_folder_given_with_a_tilde_is_in_the_home_folder(tmp_path, small, monkeypatch):
    """ROS expands nothing in a parameters file: `engine_cache_dir: ~/.cache/cfi` made a folder named
    `~` wherever the node was started."""
    _, weights, _ = small
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    lifter = create_lifter(weights, backend="onnxruntime", cache_dir="~/cfi_cache", threads=1, log=lambda *_: None)
    assert lifter.describe()["onnx"].startswith(str(tmp_path / "home" / "cfi_cache"))
    assert not (tmp_path / "~").exists()


def test_two_processes_needing_one_export_at_once_export_it_once(tmp_path, small):
    """Two lifters starting together (a launch file with two cameras) both exported the same graph
    and renamed their files over each other's, so a file could end beside the other's sidecar (and
    be exported again at every start); one now waits for the other and loads its export."""
    import subprocess
    import sys

    if backend_unavailable_reason("onnxruntime"):
        pytest.skip(f"onnxruntime: {backend_unavailable_reason('onnxruntime')}")
    _, weights, _ = small
    go = tmp_path / "go"
    program = (
        "import sys, time, pathlib\n"
        "from cfi_pose_ros.inference import create_lifter\n"
        "go = pathlib.Path(sys.argv[1])\n"
        "while not go.exists(): time.sleep(0.005)\n"
        "create_lifter(sys.argv[2], backend='onnxruntime', cache_dir=sys.argv[3], threads=1,\n"
        "              log=lambda line: print(line, flush=True))\n")
    children = [subprocess.Popen([sys.executable, "-c", program, str(go), str(weights), str(tmp_path / "cache")],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    time.sleep(3.0)                  # both imported and polling
    go.touch()
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    exports = sum(line.startswith("onnx export:") and "exporting" in line
                  for out in outputs for line in out.splitlines())
    assert exports == 1, outputs
    (onnx,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
    assert json.loads(cache.sidecar_path(onnx).read_text())["sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()


def test_reference_check_rejects_a_wrong_backend():
    model = perturbed_model()
    good = lambda batch: eager(model, batch)                       # noqa: E731
    assert check_against_reference(good, model, (1, 4), 1e-4, "same") < 1e-6
    with pytest.raises(ReferenceMismatch, match=r"batch size 1 .*\(tolerance 0.0001 m\)"):
        check_against_reference(lambda b: good(b) + 1e-3, model, (1, 4), 1e-4, "off by a millimetre")
    with pytest.raises(ReferenceMismatch, match="NaN"):
        check_against_reference(lambda b: good(b) * np.nan, model, (2,), 1e-4, "nan")
    assert reference_inputs(8).shape == (8, 17, 2)



# ----------------------------------------------------------------- unusable models (issue 13, item 1)
def nan_model() -> CFINet:
    """What a diverged training run leaves: every parameter NaN."""
    model = perturbed_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model


def overflowing_head_model() -> CFINet:
    """Finite weights whose output is not: the head's weights at 3e38 overflow on every person."""
    model = perturbed_model()
    with torch.no_grad():
        model.head.weight.fill_(3e38)
    return model


CPU_BACKENDS = [b for b in ("onnxruntime", "torch") if backend_unavailable_reason(b) is None]


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["auto"])
@pytest.mark.parametrize("make_model", [nan_model, overflowing_head_model])
def test_every_backend_refuses_a_model_whose_output_is_not_finite(backend, make_model, tmp_path):
    """torch included: before, ONNX Runtime's check refused such a model, auto fell back to torch,
    which checked nothing, and the node published NaN keypoints."""
    lines = []
    with pytest.raises(WeightsError, match="gives NaN or inf for 16 of 16 plausible people"):
        create_lifter(make_model(), backend=backend, cache_dir=tmp_path, log=lines.append)
    assert not any("auto chose" in line for line in lines), lines


def test_the_torch_lifter_itself_runs_the_start_up_check():
    from cfi_pose_ros.inference.torch_backend import TorchLifter

    with pytest.raises(WeightsError, match="NaN or inf"):
        TorchLifter(nan_model())
    lifter = TorchLifter(perturbed_model(), batch_sizes=(1, 3))
    assert lifter.max_abs_diff is not None and lifter.max_abs_diff < 1e-6


def test_auto_stops_at_a_non_finite_weights_file(tmp_path):
    path = save_weights(nan_model(), tmp_path / "diverged.safetensors")
    with pytest.raises(WeightsError, match="tensors contain NaN or inf"):
        create_lifter(path, cache_dir=tmp_path, log=lambda *_: None)


@pytest.mark.skipif("onnxruntime" not in CPU_BACKENDS, reason="onnxruntime not available here")
def test_auto_says_the_outputs_scale_where_the_onnx_graph_of_huge_outputs_differs(tmp_path):
    """The d128 weights' output layer times 1000 (a model trained in millimetres): float32 rounding
    of kilometre outputs passes the 0.1 mm tolerance, and auto's log said only that ONNX Runtime
    "differs from the PyTorch float32 reference by 0.000458 m", a broken backend by the look of it.
    It now says how large the outputs are, the relative difference, and asks whether they are in
    metres (the lifting node refuses such weights: test_weights.py)."""
    from hostile import weights_in_other_units

    path = weights_in_other_units(tmp_path / "millimetres", 1000.0)
    lines = []
    lifter = create_lifter(path, cache_dir=tmp_path, threads=1, log=lines.append)
    assert lifter.backend == "torch", lines
    (skipped,) = [line for line in lines if "auto skipped onnxruntime" in line]
    assert re.search(r"differs from the PyTorch float32 reference by [0-9.e-]+ m \(tolerance 0\.0001 m\), "
                     r"[0-9.e-]+ of the \d{3,4} m its coordinates reach \(are these weights' outputs in metres\?\); "
                     r"refusing to use it", skipped), skipped


# ----------------------------------------------------------------- engine cache keys (pure)
BUILDER = {"network": "strongly typed", "network_flags": ["STRONGLY_TYPED"], "onnx_precision": "fp16",
           "set_flags": [], "clear_flags": ["TF32"], "workspace_bytes": 1 << 30, "profile": "min=opt=max"}
BASE_KEY = dict(weights_sha256="a" * 64, tensorrt_version="10.13.0", tensorrt_cuda="cu12",
                gpu_name="NVIDIA Jetson AGX Orin", compute_capability=(8, 7), precision="fp16",
                input_shape=(4, 17, 2), graph="cfi-fused/1", opset=18, exporter="torch-2.13.0-dynamo",
                builder=BUILDER)


@pytest.mark.parametrize("field, value", [
    ("weights_sha256", "b" * 64), ("tensorrt_version", "10.14.1"), ("tensorrt_cuda", "cu13"),
    ("gpu_name", "NVIDIA GeForce RTX 4090"), ("compute_capability", (8, 9)), ("precision", "fp32"),
    ("input_shape", (8, 17, 2)), ("graph", "cfi-fused/2"), ("opset", 20), ("exporter", "torch-2.14.0-dynamo"),
    ("builder", {**BUILDER, "workspace_bytes": 1 << 28}), ("builder", {**BUILDER, "clear_flags": []}),
    # a weights JSON may describe another model over the same tensors (heads): another function
    ("model", {"dim": 32, "heads": 2}),
])
def test_engine_cache_key_changes_with_each_field(field, value):
    assert engine_cache_key(**BASE_KEY) == engine_cache_key(**dict(BASE_KEY))     # deterministic
    assert engine_cache_key(**{**BASE_KEY, field: value}) != engine_cache_key(**BASE_KEY)
    path = cache.cache_path("/c", engine_key_fields(**{**BASE_KEY, field: value}), ".engine")
    assert path != cache.cache_path("/c", engine_key_fields(**BASE_KEY), ".engine")


def test_engine_cache_never_loads_a_mismatched_or_corrupted_file(tmp_path):
    fields = engine_key_fields(**BASE_KEY)
    path = cache.cache_path(tmp_path, fields, ".engine")
    assert path.name.startswith("cfi-aaaaaaaaaaaa-fp16-b4-") and path.parent.name == "tensorrt-engine"
    assert cache.load(path, fields) == (None, "not cached yet")
    cache.store(path, b"plan bytes", fields)
    assert cache.load(path, fields) == (b"plan bytes", "")
    other = engine_key_fields(**{**BASE_KEY, "tensorrt_version": "10.14.1"})
    data, reason = cache.load(path, other)                  # same file, different expected key
    assert data is None and "tensorrt_version" in reason
    path.write_bytes(b"other plan")
    data, reason = cache.load(path, fields)
    assert data is None and "SHA-256" in reason
    cache.sidecar_path(path).write_text("{not json")
    assert cache.load(path, fields)[0] is None
    for broken in ({"fields": 5}, {"fields": [[1]]}, [1, 2], None):     # JSON, but not a sidecar
        cache.sidecar_path(path).write_text(json.dumps(broken))
        assert cache.load(path, fields)[0] is None


def test_a_cache_entry_that_is_no_regular_file_is_one_that_does_not_match(tmp_path):
    """An engine cache whose sidecar (``<onnx>.json``) was a FIFO hung the lifter 11 minutes in
    read_text(), waiting for a writer; a failure record that was one would have too. Now such an
    entry is not there (said as the reason), and storing renames a regular file over it."""
    import os

    from conftest import no_longer_than

    fields = engine_key_fields(**BASE_KEY)
    path = cache.cache_path(tmp_path, fields, ".engine")
    cache.store(path, b"plan bytes", fields)
    good_sidecar = cache.sidecar_path(path).read_bytes()
    cache.sidecar_path(path).unlink()
    os.mkfifo(cache.sidecar_path(path))
    os.mkfifo(cache.failure_path(path))
    with no_longer_than(20, "loading an engine whose sidecar is a FIFO"):
        assert cache.load(path, fields) == (None, f"sidecar {cache.sidecar_path(path).name} is a FIFO")
        assert cache.load_failure(path, fields) is None
    cache.store(path, b"plan bytes", fields)
    cache.store_failure(path, fields, "a reason")
    assert cache.sidecar_path(path).read_bytes() == good_sidecar and cache.load(path, fields) == (b"plan bytes", "")
    assert cache.load_failure(path, fields)["reason"] == "a reason"
    cache.sidecar_path(path).unlink()
    cache.sidecar_path(path).mkdir()               # a folder in its place: no match, and no rename over it
    assert cache.load(path, fields) == (None, f"sidecar {cache.sidecar_path(path).name} is a directory")


def test_onnx_export_replaces_a_sidecar_that_is_a_fifo(tmp_path, small):
    """The auditor's case: the ONNX export's sidecar replaced by a FIFO; the lifter waited on it."""
    import os

    from conftest import no_longer_than

    _, weights, _ = small
    first = create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lambda *_: None)
    sidecar = cache.sidecar_path(Path(first.describe()["onnx"]))
    sidecar.unlink()
    os.mkfifo(sidecar)
    lines = []
    with no_longer_than(120, "creating a lifter whose cached ONNX sidecar is a FIFO"):
        create_lifter(weights, backend="onnxruntime", cache_dir=tmp_path, threads=1, log=lines.append)
    assert any(f"sidecar {sidecar.name} is a FIFO; exporting" in line for line in lines), lines
    assert sidecar.is_file()


# ----------------------------------------------------------------- create_lifter: names, errors, auto
@pytest.mark.parametrize("policy, allow, force_stop", [("run", "1", "1"), ("off", "0", "0"),
                                                       ("always", "1", "0")])
def test_onnxruntime_spinning_policy_sets_the_session_options(small, policy, allow, force_stop):
    """'run' (the default) spins only while a pose is being lifted; the session must say so."""
    from cfi_pose_ros.inference.onnxruntime_backend import OnnxRuntimeLifter

    if backend_unavailable_reason("onnxruntime"):
        pytest.skip(f"onnxruntime: {backend_unavailable_reason('onnxruntime')}")
    model, _, cache_dir = small
    lifter = OnnxRuntimeLifter(model, batch_sizes=(1,), threads=2, spinning=policy, cache_dir=cache_dir,
                               weights_sha256="spinning-test")
    options = lifter._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == allow
    assert options.get_session_config_entry("session.force_spinning_stop") == force_stop
    assert lifter.describe()["spinning"] == policy
    x = realistic_inputs(1)
    np.testing.assert_allclose(lifter.lift(x), eager(model, x), atol=1e-4)
    with pytest.raises(ValueError, match="valid: run, off, always"):
        OnnxRuntimeLifter(model, spinning="sometimes", cache_dir=cache_dir, weights_sha256="spinning-test")


def test_an_onnxruntime_session_leaves_its_callers_floats_as_they_were(small):
    """session.set_denormal_as_zero (for ONNX Runtime's threads) also set FTZ/DAZ on the thread that
    made the session: after it, that thread's own numpy flushed subnormals to zero (hypothesis
    refused to run there: "we can't represent subnormal floats right now"). Seen when the session
    is the process's first and comes from the cached export, as at a node's start: fresh processes."""
    import subprocess
    import sys

    if backend_unavailable_reason("onnxruntime"):
        pytest.skip(f"onnxruntime: {backend_unavailable_reason('onnxruntime')}")
    _, weights, cache_dir = small
    probe = ("import sys\n"
             "from cfi_pose_ros.inference import create_lifter\n"
             "from cfi_pose_ros.inference.onnxruntime_backend import flushes_subnormals\n"
             "assert not flushes_subnormals()\n"
             "create_lifter(sys.argv[1], backend='onnxruntime', cache_dir=sys.argv[2], log=lambda *_: None)\n"
             "print('flushes subnormals:', flushes_subnormals())\n")
    for _ in range(2):          # the first may export; the second loads the cached export
        run = subprocess.run([sys.executable, "-c", probe, str(weights), str(cache_dir)], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[-1] == "flushes subnormals: False"


def test_unknown_names_are_value_errors_listing_the_valid_ones(small):
    _, weights, cache_dir = small
    with pytest.raises(ValueError, match="valid: auto, tensorrt, cuda, onnxruntime, torch"):
        create_lifter(weights, backend="openvino", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="valid: fp32, fp16, bf16"):
        create_lifter(weights, precision="int8", cache_dir=cache_dir)
    for backend in ("onnxruntime", "torch"):
        with pytest.raises(ValueError, match="only tensorrt and cuda support it"):
            create_lifter(weights, backend=backend, precision="fp16", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="threads"):
        create_lifter(weights, backend="torch", threads=0, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="batch_sizes"):
        create_lifter(weights, backend="torch", batch_sizes=(), cache_dir=cache_dir)


@pytest.mark.parametrize("backend", ["tensorrt", "cuda"])
def test_explicit_gpu_backend_here_says_why_it_is_unavailable(backend, small):
    reason = backend_unavailable_reason(backend)
    if reason is None:
        pytest.skip(f"{backend} is available on this machine")
    _, weights, cache_dir = small
    with pytest.raises(BackendUnavailable, match=f"^{backend}: ") as info:
        create_lifter(weights, backend=backend, cache_dir=cache_dir)
    assert reason in str(info.value)
    assert isinstance(info.value, RuntimeError)
    if backend == "tensorrt" and "not importable" in reason:
        assert "Python module 'tensorrt' not importable" in str(info.value)


def test_auto_picks_the_fastest_available_and_logs_why_faster_ones_were_skipped(small):
    _, weights, cache_dir = small
    status = available_backends()
    expected = next(name for name, reason in status.items() if reason is None)
    lines = []
    lifter = create_lifter(weights, cache_dir=cache_dir, threads=1, log=lines.append)
    assert lifter.backend == expected
    if status["tensorrt"] is not None and status["cuda"] is not None:   # a CPU-only machine like CI
        assert lifter.backend == ("onnxruntime" if status["onnxruntime"] is None else "torch")
    for name in BACKENDS[:BACKENDS.index(expected)]:
        assert any(f"skipped {name}: {status[name]}" in line for line in lines), lines
    assert f"auto chose {expected}" in lines[-1]


def test_auto_accepts_a_logger_and_falls_back_when_a_backend_fails_to_start(small, monkeypatch, caplog):
    from cfi_pose_ros.inference import factory

    _, weights, cache_dir = small
    real_build = factory._build

    def broken_onnxruntime(backend, *args):
        if backend == "onnxruntime":
            raise RuntimeError("simulated start-up failure")
        return real_build(backend, *args)

    monkeypatch.setattr(factory, "_build", broken_onnxruntime)
    monkeypatch.setattr(factory, "available_backends", lambda precision: {
        "tensorrt": "simulated: no tensorrt", "cuda": "simulated: no GPU", "onnxruntime": None, "torch": None})
    with caplog.at_level(logging.INFO, logger="cfi_test"):
        lifter = create_lifter(weights, cache_dir=cache_dir, log=logging.getLogger("cfi_test"))
    assert lifter.backend == "torch"
    assert "skipped onnxruntime: failed to start (RuntimeError: simulated start-up failure)" in caplog.text
    assert "skipped tensorrt: simulated: no tensorrt" in caplog.text


def test_auto_with_reduced_precision_needs_a_gpu_backend(small):
    status = available_backends("fp16")
    if status["tensorrt"] is None or status["cuda"] is None:
        pytest.skip("a GPU backend is available here")
    _, weights, cache_dir = small
    with pytest.raises(BackendUnavailable, match="no backend can run fp16 here: tensorrt: .*; cuda: .*"
                                                 "onnxruntime: does not run fp16 \\(only tensorrt and cuda do\\)"):
        create_lifter(weights, precision="fp16", cache_dir=cache_dir)


# ----------------------------------------------------------------- GPU backends (skip without one)
def _skip_unless(backend: str) -> None:
    reason = backend_unavailable_reason(backend)
    if reason:
        pytest.skip(f"{backend} backend unavailable here: {reason}")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_graphs_match_eager_pytorch(small, precision):
    _skip_unless("cuda")
    if precision == "bf16":
        from cfi_pose_ros.inference.cuda_backend import bf16_unavailable_reason

        if bf16_unavailable_reason(torch.device("cuda", torch.cuda.current_device())):
            pytest.skip("this GPU has no native bf16")
    model, weights, cache_dir = small
    lifter = create_lifter(weights, backend="cuda", precision=precision, cache_dir=cache_dir, log=lambda *_: None)
    for count in (0, 1, 3, 17, 40):
        keypoints = realistic_inputs(count)
        out = lifter.lift(keypoints)
        assert out.shape == (count, 17, 3)
        if count:
            assert float(np.abs(out - eager(model, keypoints)).max()) < TOLERANCES[precision]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engines_match_eager_pytorch_and_are_cached(small, tmp_path, precision):
    _skip_unless("tensorrt")
    model, weights, _ = small
    lines = []
    lifter = create_lifter(weights, backend="tensorrt", precision=precision, batch_sizes=(1, 4),
                           cache_dir=tmp_path, log=lines.append)
    assert sum("building" in line for line in lines) == 2
    keypoints = realistic_inputs(6)
    assert float(np.abs(lifter.lift(keypoints) - eager(model, keypoints)).max()) < TOLERANCES[precision]
    lines.clear()
    again = create_lifter(weights, backend="tensorrt", precision=precision, batch_sizes=(1, 4),
                          cache_dir=tmp_path, log=lines.append)
    assert sum("cached engine" in line for line in lines) == 2 and not any("building" in line for line in lines)
    engine = again.describe()["engines"][4]
    sidecar = json.loads(cache.sidecar_path(Path(engine)).read_text())
    sidecar["fields"]["gpu_name"] = "some other GPU"     # a key that does not match: rebuilt, never loaded
    cache.sidecar_path(Path(engine)).write_text(json.dumps(sidecar))
    lines.clear()
    create_lifter(weights, backend="tensorrt", precision=precision, batch_sizes=(4,), cache_dir=tmp_path,
                  log=lines.append)
    assert any("building" in line and "key mismatch (gpu_name differ)" in line for line in lines), lines


# ----------------------------------------------------------------- export CLI
def test_export_cli_writes_a_checked_onnx_with_only_the_batch_axis_dynamic(small, tmp_path, capsys):
    import onnx

    from cfi_pose_ros.export import main
    from cfi_pose_ros.inference.onnx_export import INPUT_NAME, OPSET, OUTPUT_NAME, dynamic_axes, run_onnx

    model, weights, _ = small
    out = tmp_path / "small.onnx"
    assert main(["--weights", str(weights), "--onnx", str(out)]) == 0
    assert "max |ONNX - PyTorch|" in capsys.readouterr().out
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == OPSET >= 17
    assert dynamic_axes(proto) == {INPUT_NAME: [(0, "batch")], OUTPUT_NAME: [(0, "batch")]}
    dims = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
            for v in (proto.graph.input[0], proto.graph.output[0])]
    assert dims == [["batch", 17, 2], ["batch", 17, 3]]
    for count in (1, 5, 16):
        keypoints = realistic_inputs(count, seed=11)
        assert float(np.abs(run_onnx(proto, keypoints) - eager(model, keypoints)).max()) < ATOL


def test_a_packaged_weights_file_is_taken_by_name_everywhere_the_node_takes_it(tmp_path, capsys):
    """`weights:=cfi_h36m_d128` works for the node and offline; create_lifter, export and evaluate
    answered "weights file missing: cfi_h36m_d128.safetensors" without a word of the packaged names."""
    from cfi_pose_ros.export import main
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS, WeightsError, load_weights

    path = DEFAULT_WEIGHTS.with_name("cfi_h36m_d128.safetensors")
    keypoints = realistic_inputs(3, seed=5)
    by_name = create_lifter("cfi_h36m_d128", backend="torch", threads=1).lift(keypoints)
    by_path = create_lifter(str(path), backend="torch", threads=1).lift(keypoints)
    np.testing.assert_array_equal(by_name, by_path)
    assert main(["--weights", "cfi_h36m_d128", "--onnx", str(tmp_path / "d128.onnx")]) == 0
    assert "max |ONNX - PyTorch|" in capsys.readouterr().out
    with pytest.raises(WeightsError, match="packaged: cfi_h36m, cfi_h36m_d128, cfi_h36m_wide, cfi_h36m_wide_cut"):
        load_weights("cfi_h36m_d64")


def test_export_cli_tensorrt_without_tensorrt_fails_with_the_reason(small, tmp_path, capsys):
    reason = backend_unavailable_reason("tensorrt")
    if reason is None:
        pytest.skip("tensorrt is available here")
    from cfi_pose_ros.export import main

    _, weights, _ = small
    code = main(["--weights", str(weights), "--onnx", str(tmp_path / "m.onnx"),
                 "--tensorrt-engine", str(tmp_path / "m.engine"), "--precision", "fp16", "--batch-sizes", "1", "4"])
    assert code == 2
    assert f"tensorrt: {reason}" in capsys.readouterr().err
    assert (tmp_path / "m.onnx").is_file() and not list(tmp_path.glob("*.engine"))


def test_export_cli_names_the_file_it_cannot_write_and_refuses_a_directory_before_exporting(
        small, tmp_path, capsys, file_size_limit, monkeypatch):
    """An ONNX file the disk could not hold was `error: [Errno 27] File too large`, naming no file;
    an --onnx that is a directory was found only after the export (minutes with engines) and named
    the temporary file: `error: [Errno 21] Is a directory: 'dir.onnx.qwef_3kk.tmp' -> 'dir.onnx'`; one
    under a file was found after it too, as `could not write the ONNX file a_file/m.onnx: File exists`."""
    import cfi_pose_ros.export as export_module
    from cfi_pose_ros.export import main

    _, weights, _ = small
    out = tmp_path / "m.onnx"
    assert main(["--weights", str(weights), "--onnx", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    with file_size_limit(len(before) // 2):
        code = main(["--weights", str(weights), "--onnx", str(out), "--opset", "17"])
    assert code == 1
    assert capsys.readouterr().err == f"error: could not write the ONNX file {out}: File too large\n"
    assert out.read_bytes() == before and sorted(path.name for path in tmp_path.iterdir()) == ["m.onnx"]

    def no_export(*args, **kwargs):
        raise AssertionError("exported before the output was checked")

    monkeypatch.setattr(export_module, "export_onnx", no_export)
    (tmp_path / "dir.onnx").mkdir()
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "m.b4.engine").mkdir()
    for extra, named in ((["--onnx", str(tmp_path / "dir.onnx")], tmp_path / "dir.onnx"),
                         (["--onnx", str(tmp_path / "n.onnx"), "--tensorrt-engine", str(tmp_path / "engines"),
                           "--batch-sizes", "4"], tmp_path / "engines"),
                         (["--onnx", str(tmp_path / "n.onnx"), "--tensorrt-engine",
                           str(tmp_path / "engines" / "m.engine"), "--batch-sizes", "1", "4"],
                          tmp_path / "engines" / "m.b4.engine")):
        with pytest.raises(SystemExit) as stop:
            main(["--weights", str(weights), *extra])
        assert stop.value.code == 2
        assert f"error: {named} is a directory: give a file path" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    for under in (tmp_path / "a_file" / "m.onnx", tmp_path / "a_file" / "sub" / "m.onnx"):
        with pytest.raises(SystemExit) as stop:
            main(["--weights", str(weights), "--onnx", str(under)])
        assert stop.value.code == 2
        assert f"error: {under}: {tmp_path / 'a_file'} is a file, not a folder" in capsys.readouterr().err


def test_export_cli_never_writes_over_the_weights_it_reads(small, tmp_path, capsys):
    """`--onnx` naming the weights' own .safetensors (or .json) replaced the trained weights with
    ONNX and answered 0. Refused before anything is written, as is an output not named .onnx and an
    engine path that is one of the weights' files."""
    import hashlib

    from cfi_pose_ros.export import main

    _, weights, _ = small
    files = [weights.with_suffix(".safetensors"), weights.with_suffix(".json")]
    before = [hashlib.sha256(path.read_bytes()).hexdigest() for path in files]
    for extra in (["--onnx", str(files[0])], ["--onnx", str(files[1])], ["--onnx", str(tmp_path / "m.engine")],
                  ["--onnx", str(tmp_path / "m.onnx"), "--tensorrt-engine", str(files[0]), "--batch-sizes", "4"],
                  # the engine's sidecar (<engine>.json) would be the weights' config
                  ["--onnx", str(tmp_path / "m.onnx"), "--tensorrt-engine", str(files[0].with_suffix("")),
                   "--batch-sizes", "4"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--weights", str(weights), *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert ("a file of the weights read" in err or "ends in .onnx" in err) and "Traceback" not in err, err
    assert [hashlib.sha256(path.read_bytes()).hexdigest() for path in files] == before
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_takes_a_symlink_loop_in_one_line(small, tmp_path, capsys):
    """A symbolic link to itself as --onnx or --weights: a RuntimeError traceback ("Symlink loop")
    from the check that no output is one of the weights' files, before anything was read."""
    from cfi_pose_ros.export import main

    _, weights, _ = small
    (tmp_path / "loop.onnx").symlink_to("loop.onnx")
    (tmp_path / "loop.safetensors").symlink_to("loop.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        main(["--weights", str(weights), "--onnx", str(tmp_path / "loop.onnx")])
    assert exit_info.value.code == 2
    assert (f"error: {tmp_path / 'loop.onnx'}: a symbolic link that leads back to itself: give another output path"
            in capsys.readouterr().err)
    assert main(["--weights", str(tmp_path / "loop.safetensors"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'loop.safetensors'}: cannot read (Too many levels of symbolic links)")
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_refuses_an_engine_batch_size_below_one(small, tmp_path, capsys):
    """`--batch-sizes 0` was taken (an engine profile no input can use, found only by TensorRT)."""
    from cfi_pose_ros.export import main

    _, weights, _ = small
    with pytest.raises(SystemExit) as exit_info:
        main(["--weights", str(weights), "--onnx", str(tmp_path / "m.onnx"), "--batch-sizes", "4", "0"])
    assert exit_info.value.code == 2
    assert "argument --batch-sizes: must be an integer in [1, 256], not 0" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_refuses_an_engine_batch_size_no_engine_takes_before_exporting(small, tmp_path, capsys):
    """`--batch-sizes 1000000000` was taken: the ONNX export ran and its file was written, then
    (TensorRT installed) build_engine_files refused sizes past MAX_BATCH_SIZE, exit 2, or (not
    installed) only TensorRT's absence was named."""
    from cfi_pose_ros.export import main
    from cfi_pose_ros.inference.batching import MAX_BATCH_SIZE

    _, weights, _ = small
    for size in (str(MAX_BATCH_SIZE + 1), "1000000000"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--weights", str(weights), "--onnx", str(tmp_path / "m.onnx"),
                  "--tensorrt-engine", str(tmp_path / "m.engine"), "--batch-sizes", "4", size])
        assert exit_info.value.code == 2
        assert (f"argument --batch-sizes: must be an integer in [1, {MAX_BATCH_SIZE}], not {size}"
                in capsys.readouterr().err)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("flags", [["--batch-sizes", "1", "8"], ["--precision", "fp16"],
                                   ["--precision", "fp32", "--batch-sizes", "4"]])
def test_export_cli_refuses_engine_flags_without_an_engine(small, tmp_path, capsys, flags):
    """`--batch-sizes` or `--precision` without `--tensorrt-engine` were ignored: an fp32 ONNX
    file written, exit 0, as if the engines asked for had been built."""
    from cfi_pose_ros.export import main

    _, weights, _ = small
    with pytest.raises(SystemExit) as exit_info:
        main(["--weights", str(weights), "--onnx", str(tmp_path / "m.onnx"), *flags])
    assert exit_info.value.code == 2
    named = " and ".join(flag for flag in ("--precision", "--batch-sizes") if flag in flags)
    verb = "apply" if " and " in named else "applies"
    assert f"{named} only {verb} to TensorRT engines: add --tensorrt-engine PATH" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_writes_the_opset_asked_for_or_says_it_cannot(small, tmp_path, capsys):
    """`--opset 99` printed "opset 99" over a file of opset 18 (the exporter fell back without an
    error). The opset printed is the file's; one beyond what onnx knows is refused."""
    import onnx

    from cfi_pose_ros.export import main
    from cfi_pose_ros.inference.onnx_export import written_opset

    _, weights, _ = small
    out = tmp_path / "m.onnx"
    assert main(["--weights", str(weights), "--onnx", str(out), "--opset", "17"]) == 0
    assert written_opset(onnx.load(str(out))) == 17 and "opset 17," in capsys.readouterr().out
    assert main(["--weights", str(weights), "--onnx", str(tmp_path / "n.onnx"), "--opset", "99"]) == 1
    err = capsys.readouterr().err
    assert "opset must be" in err and "got 99" in err and not (tmp_path / "n.onnx").exists()


# ----------------------------------------------------------------- flip test

# The H36M-17 left/right pairs written out by hand (not from skeleton.py), for an independent mirror.
HAND_PAIRS = ((1, 4), (2, 5), (3, 6), (14, 11), (15, 12), (16, 13))


def hand_mirror(poses: np.ndarray) -> np.ndarray:
    out = poses.copy()
    for a, b in HAND_PAIRS:
        out[:, a], out[:, b] = poses[:, b], poses[:, a]
    out[..., 0] *= -1
    return out


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_flip_test_is_the_mirror_average_of_a_known_pose(backend, request):
    lifter = request.getfixturevalue("torch_lifter" if backend == "torch" else "ort_lifter")
    keypoints = realistic_inputs(3, seed=8)
    try:
        lifter.flip_test = False
        direct, mirrored = lifter.lift(keypoints), lifter.lift(hand_mirror(keypoints))
        lifter.flip_test = True
        flipped = lifter.lift(keypoints)
    finally:
        lifter.flip_test = False
    expected = (direct + hand_mirror(mirrored)) / 2
    np.testing.assert_allclose(flipped, expected, atol=1e-5)
    assert np.abs(flipped - direct).max() > 1e-4          # the mirrored lift really contributes
    assert lifter.describe()["flip_test"] is False


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_flip_test_equals_the_evaluation_cli(backend, small, tmp_path):
    from training.evaluate import predict

    model, weights, _ = small
    keypoints = realistic_inputs(21, seed=9)               # 42 rows: more than one fixed batch
    lifter = create_lifter(weights, backend=backend, cache_dir=tmp_path, threads=1, flip_test=True,
                           log=lambda *_: None)
    assert lifter.flip_test
    lifted = lifter.lift(keypoints)
    # the evaluation measures poses pelvis-centred, as the node publishes them
    np.testing.assert_allclose(lifted - lifted[:, :1], predict(model, keypoints, flip_test=True), atol=ATOL)


def test_flip_test_sends_the_mirrored_copies_in_the_same_batch(torch_lifter):
    calls = []
    original = torch_lifter._run_fixed
    torch_lifter._run_fixed = lambda batch: calls.append(len(batch)) or original(batch)
    try:
        torch_lifter.flip_test = True
        torch_lifter.lift(realistic_inputs(5))
    finally:
        torch_lifter.flip_test = False
        del torch_lifter._run_fixed
    assert calls == [10]


@pytest.mark.parametrize("lock_file_writable", [True, False])
def test_one_builder_at_a_time_makes_the_second_wait_for_the_first(tmp_path, monkeypatch, lock_file_writable):
    """Two nodes starting at once export (or build) one artefact once: the second waits, says so,
    and goes on when the first is done. A lock file of another account (a group's shared cache) is
    not writable here; opened for writing only, the second went on at once, without the lock."""
    import os
    import threading
    import time

    from cfi_pose_ros.inference import cache

    artefact = tmp_path / "cache" / "model.onnx"
    first_holds, first_done = threading.Event(), threading.Event()

    def first():
        with cache.one_builder_at_a_time(artefact, lambda line: None):
            first_holds.set()
            time.sleep(0.6)
            first_done.set()

    holder = threading.Thread(target=first)
    holder.start()
    assert first_holds.wait(5)
    if not lock_file_writable:
        real_open = os.open

        def open_as_another_account(path, flags, *args):
            if flags & (os.O_RDWR | os.O_WRONLY):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args)
        monkeypatch.setattr(cache.os, "open", open_as_another_account)
    said = []
    with cache.one_builder_at_a_time(artefact, said.append, poll_s=0.05):
        assert first_done.is_set()
    holder.join()
    assert said == ["cache: another process is building model.onnx; waiting for it"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e30, -2e3])
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_person_beyond_any_image_is_nan_on_every_backend_and_alone(small, backend, bad):
    """Keypoints no image holds (not finite, or beyond MAX_INPUT_COORDINATE) give that person NaN
    on every backend, and the others what they get without them. At 1e30 torch returned NaN and
    onnxruntime a finite, made-up pose."""
    from cfi_pose_ros.inference.base import MAX_INPUT_COORDINATE

    if backend_unavailable_reason(backend):
        pytest.skip(f"{backend}: {backend_unavailable_reason(backend)}")
    model, weights, cache_dir = small
    people = realistic_inputs(5)
    people[2, 7, 0] = bad
    with create_lifter(weights, backend=backend, cache_dir=cache_dir, threads=1, log=lambda *_: None) as lifter:
        for flip_test in (False, True):
            lifter.flip_test = flip_test
            poses = lifter.lift(people)
            assert np.isnan(poses[2]).all()
            others = np.delete(people, 2, axis=0)
            assert np.array_equal(np.delete(poses, 2, axis=0), lifter.lift(others))
            if not flip_test:
                assert np.allclose(np.delete(poses, 2, axis=0), eager(model, others), atol=ATOL)
        edge = realistic_inputs(1)
        edge[0, 0, 0] = MAX_INPUT_COORDINATE              # at the limit: still a person
        assert np.isfinite(lifter.lift(edge)).all()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_closed_lifter_says_so(small, backend):
    """After close(), onnxruntime raised "'NoneType' object has no attribute 'run'" and torch went on."""
    if backend_unavailable_reason(backend):
        pytest.skip(f"{backend}: {backend_unavailable_reason(backend)}")
    _, weights, cache_dir = small
    lifter = create_lifter(weights, backend=backend, cache_dir=cache_dir, threads=1, log=lambda *_: None)
    assert lifter.lift(realistic_inputs(2)).shape == (2, 17, 3)
    lifter.close()
    with pytest.raises(RuntimeError, match=f"this {backend} lifter is closed"):
        lifter.lift(realistic_inputs(2))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_lifter_closed_by_another_thread_while_lifting_says_so(small, backend):
    """A close() between two batches of a lift in another thread: onnxruntime raised AttributeError
    ('NoneType' object has no attribute 'run'), not the RuntimeError a closed lifter raises."""
    import threading

    if backend_unavailable_reason(backend):
        pytest.skip(f"{backend}: {backend_unavailable_reason(backend)}")
    _, weights, cache_dir = small
    lifter = create_lifter(weights, backend=backend, cache_dir=cache_dir, threads=1, batch_sizes=(1,),
                           log=lambda *_: None)
    started, closed = threading.Event(), threading.Event()
    run_fixed = lifter._run_fixed

    def first_batch_closes(batch):          # the other thread's close lands between two batches
        started.set()
        closed.wait(10)
        return run_fixed(batch)

    lifter._run_fixed = first_batch_closes
    outcome = []

    def lift() -> None:
        try:
            lifter.lift(realistic_inputs(3))
            outcome.append("finished")
        except Exception as exc:        # noqa: BLE001 - what it raised is the result
            outcome.append(exc)

    worker = threading.Thread(target=lift)
    worker.start()
    assert started.wait(10)
    lifter.close()
    closed.set()
    worker.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError), outcome
    assert "closed while lifting" in str(outcome[0])


def test_the_temporary_files_of_a_process_killed_while_writing_the_cache_are_removed_by_the_next(tmp_path, small):
    """A lifter killed between the creation of the cache's temporary file and its rename (here by
    the kernel: SIGXFSZ at a file-size limit below the export's size, in the middle of its write)
    left ``<name>.onnx.<random>.tmp`` for good; every such start one more. The next start that takes
    the artefact's lock removes it; another artefact's temporary file (another process may be
    writing it under its own lock) stays."""
    import os
    import signal
    import subprocess
    import sys

    if backend_unavailable_reason("onnxruntime"):
        pytest.skip(f"onnxruntime: {backend_unavailable_reason('onnxruntime')}")
    model, weights, _ = small
    cache_dir = tmp_path / "cache"
    program = (
        "import resource, signal, sys\n"
        "from cfi_pose_ros.inference import create_lifter\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)      # Python ignores it: the kernel's default kills\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "create_lifter(sys.argv[1], backend='onnxruntime', cache_dir=sys.argv[2], threads=1)\n")
    # ONNX Runtime keeps a telemetry database under ~/.cache/Microsoft, past the limit as it grows:
    # a file of that name where its folder would be keeps the limit to the cache's own write
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    (home / ".cache" / "Microsoft").touch()
    child = subprocess.run([sys.executable, "-c", program, str(weights), str(cache_dir)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")})
    assert child.returncode == -signal.SIGXFSZ, child.stderr
    (leftover,) = (cache_dir / "onnx").glob("*.onnx.*.tmp")
    assert leftover.stat().st_size == 4096
    others = cache_dir / "onnx" / "cfi-000000000000-fp32-0000000000000000.onnx.abcd1234.tmp"
    others.write_bytes(b"being written")
    lifter = create_lifter(weights, backend="onnxruntime", cache_dir=cache_dir, threads=1, log=lambda *_: None)
    assert not leftover.exists() and others.read_bytes() == b"being written"
    assert sorted(p.name for p in (cache_dir / "onnx").glob("*.tmp")) == [others.name]
    keypoints = realistic_inputs(4)
    assert lifter.describe()["onnx"] != "memory"
    assert float(np.abs(lifter.lift(keypoints) - eager(model, keypoints)).max()) < ATOL


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_live_model_passed_to_create_lifter_is_left_as_it_was(backend, tmp_path):
    """create_lifter(model) with a training script's live model (in train mode, float64 here) set it
    to eval mode and, on the torch backend, cast it to float32 in place (and moved it to the CPU),
    and the lifter ran on the caller's very parameters: the next optimiser step changed the lifter's
    answers, which its reference check and cache key (a hash of the tensors then) no longer spoke
    for. The lifter takes a copy; the caller's model keeps its mode, dtype, device and parameters."""
    if backend_unavailable_reason(backend):
        pytest.skip(f"{backend}: {backend_unavailable_reason(backend)}")
    model = perturbed_model().double().train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    lifter = create_lifter(model, backend=backend, cache_dir=tmp_path, threads=1, log=lambda *_: None)
    assert model.training
    assert all(tensor.dtype == torch.float64 for tensor in model.state_dict().values())
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    inputs = realistic_inputs(4)
    answer = lifter.lift(inputs)
    with torch.no_grad():                   # the caller trains on
        for parameter in model.parameters():
            parameter.add_(0.1)
    np.testing.assert_array_equal(lifter.lift(inputs), answer)
