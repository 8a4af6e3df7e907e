"""What can be checked of the GPU backends without a GPU (issue 15).

* Reduced-precision numerics on the *shipped* weights (whatever
  ``DEFAULT_WEIGHTS`` is): the graph the cuda backend captures and the strongly
  typed TensorRT build runs is run in fp16/bf16 on the CPU (fp32 accumulation,
  like tensor cores) through the very check a GPU lifter runs at start-up.
* The TF32 switch, in a fresh interpreter (it is process-wide state).
* TensorRT's calls, against a stand-in for the ``tensorrt`` module and for the
  CUDA calls PyTorch would make (:class:`FakeGPU`, :class:`FakeTensorRT`): the
  subject of those tests is what the backend asks of TensorRT and CUDA, which
  cannot run here. The stand-in "engine" runs the float32 model on the CPU (plus
  an adjustable error), so the start-up check and the failure cache run for real.
* The import graph of the package: no circles.
"""
from __future__ import annotations

import ast
import contextlib
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from cfi_pose_ros.inference import TOLERANCES, BackendUnavailable, ReferenceMismatch, create_lifter
from cfi_pose_ros.inference import cache, cuda_backend, tensorrt_backend
from cfi_pose_ros.inference.batching import COMPILED_BATCH_SIZES
from cfi_pose_ros.inference.fused import COMPUTE_DTYPES, FusedCFINet
from cfi_pose_ros.inference.reference import check_against_reference, reference_inputs, reference_outputs
from cfi_pose_ros.model import CFIConfig, CFINet
from cfi_pose_ros.weights import DEFAULT_WEIGHTS, load_weights

PACKAGE = Path(__file__).resolve().parents[1] / "cfi_pose_ros"


# ----------------------------------------------------------------- 1. reduced precision, shipped weights
@pytest.fixture(scope="module")
def shipped():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"no shipped weights at {DEFAULT_WEIGHTS}")
    return load_weights(DEFAULT_WEIGHTS)[0]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_on_the_shipped_weights_passes_the_gpu_start_up_check(shipped, precision):
    """The check a GPU lifter runs (same inputs, sizes, tolerance), on the CPU, with headroom.

    Half the tolerance on the check's own people: a GPU rounds in another order
    (other GEMM kernels, fused layers), so passing only at the edge here would
    be a coin toss there. And the worst of a larger realistic crowd stays within
    the tolerance, which is what the tolerance promises users.
    """
    torch.set_num_threads(2)
    graph = FusedCFINet(shipped, COMPUTE_DTYPES[precision])

    def run_fixed(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return graph(torch.from_numpy(batch)).numpy()

    tolerance = TOLERANCES[precision]
    diff = check_against_reference(run_fixed, shipped, COMPILED_BATCH_SIZES, tolerance, f"cpu {precision}")
    assert diff <= tolerance / 2, f"{precision}: {diff:.2e} m on the check's inputs, tolerance {tolerance:g} m"
    crowd = reference_inputs(64, seed=7)
    worst = float(np.abs(run_fixed(crowd) - reference_outputs(shipped, crowd)).max())
    assert worst <= tolerance, f"{precision}: {worst:.2e} m worst of 64 people, tolerance {tolerance:g} m"
    assert diff > 1e-6 and worst > 1e-6    # really ran in reduced precision


def test_reduced_precision_graph_keeps_the_first_block_attention_graph_mixing_and_norms_in_fp32():
    """What TensorRT's strongly typed build sees: the exported fp16 graph's types."""
    import onnx

    from cfi_pose_ros.inference.onnx_export import export_model

    model = CFINet(CFIConfig(dim=32, depth=2, heads=4)).eval()
    graph = FusedCFINet(model, torch.float16)       # the first block, which reads the 2D positions, in fp32
    assert [block.w_in.dtype for block in graph.blocks] == [torch.float32, torch.float16]
    proto = onnx.shape_inference.infer_shapes(export_model(model, precision="fp16"), strict_mode=True)
    types_of = {v.name: v.type.tensor_type.elem_type for v in
                list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output)}
    types_of.update({t.name: t.data_type for t in proto.graph.initializer})
    producer = {out: node for node in proto.graph.node for out in node.output}
    kinds = {node.op_type for node in proto.graph.node}
    assert {"Softmax", "LayerNormalization", "Cast"} <= kinds
    fp16_matmuls = 0
    for node in proto.graph.node:
        if node.op_type in ("Softmax", "LayerNormalization"):
            assert types_of[node.input[0]] == onnx.TensorProto.FLOAT, node.name
        if node.op_type == "Softmax":    # the logits' matmul and its operands are fp32
            logits = producer[node.input[0]]
            assert logits.op_type == "MatMul"
            assert [types_of[i] for i in logits.input] == [onnx.TensorProto.FLOAT] * 2
        if node.op_type in ("MatMul", "Gemm") and types_of.get(node.input[1]) == onnx.TensorProto.FLOAT16:
            fp16_matmuls += 1
    assert fp16_matmuls >= 5        # the weight matmuls do run in fp16


def test_fused_graph_copies_the_weights():
    """Changing the source model after fusing must not change the fused graph (fp32 biases were shared)."""
    model = CFINet(CFIConfig(dim=32, depth=1, heads=4)).eval()
    graph = FusedCFINet(model)
    x = torch.from_numpy(reference_inputs(2))
    with torch.inference_mode():
        before = graph(x).clone()
        for p in model.parameters():
            p.add_(1.0)
        assert torch.equal(graph(x), before)


# ----------------------------------------------------------------- 2. TF32 switch
TF32_SCRIPT = r"""
import json, sys, torch
from cfi_pose_ros.inference.cuda_backend import true_fp32_matmuls
matmul = torch.backends.cuda.matmul
setup = sys.argv[1]
if setup == "new api tf32":
    matmul.fp32_precision = "tf32"
elif setup == "legacy medium":
    torch.set_float32_matmul_precision("medium")
before = matmul.fp32_precision
with true_fp32_matmuls():
    inside = matmul.fp32_precision
    reductions = [matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction]
after = {"fp32_precision": matmul.fp32_precision,
         "reductions": [matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction]}
if setup == "legacy medium":
    after["legacy"] = torch.get_float32_matmul_precision()      # raised after the old save/restore
print(json.dumps({"before": before, "inside": inside, "inside_reductions": reductions, "after": after}))
"""


@pytest.mark.parametrize("setup, restored", [
    ("default", {"fp32_precision": "none", "reductions": [True, True]}),
    ("new api tf32", {"fp32_precision": "tf32", "reductions": [True, True]}),
    ("legacy medium", {"fp32_precision": "tf32", "reductions": [True, True], "legacy": "medium"}),
])
def test_tf32_is_off_while_capturing_and_restored_whatever_api_the_process_used(setup, restored):
    result = subprocess.run([sys.executable, "-c", TF32_SCRIPT, setup], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["inside"] == "ieee" and state["inside_reductions"] == [False, False]
    assert state["after"] == restored


# ----------------------------------------------------------------- stand-ins for CUDA and TensorRT
class FakeStream:
    cuda_stream = 1234

    def __init__(self, device=None):
        self.device = device

    def synchronize(self):
        pass

    def wait_stream(self, other):
        pass


class FakeGPU:
    """The CUDA calls the backends make, on the CPU: which device is current, and device memory
    as CPU tensors that a fake engine can find again by address."""

    def __init__(self, monkeypatch, capabilities=None):
        self.capabilities = capabilities or {0: (9, 0), 1: (8, 6)}
        self.current = 0
        self.memory: dict[int, torch.Tensor] = {}
        gpu, real_empty = self, torch.empty

        def empty(*shape, dtype=None, device=None, pin_memory=False, **kwargs):
            tensor = real_empty(*shape, dtype=dtype, **kwargs)
            gpu.memory[tensor.data_ptr()] = tensor
            return tensor

        class device:     # torch.cuda.device
            def __init__(self, which):
                self.index = which if isinstance(which, int) else torch.device(which).index

            def __enter__(self):
                self.previous, gpu.current = gpu.current, self.index

            def __exit__(self, *exc):
                gpu.current = self.previous

        monkeypatch.setattr(torch, "empty", empty)
        monkeypatch.setattr(torch.cuda, "device", device)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: gpu.current)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"Fake GPU {gpu.index(d)}")
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: gpu.capabilities[gpu.index(d)])
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)   # true by emulation
        monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
        monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
        monkeypatch.setattr(cuda_backend, "cuda_unavailable_reason", lambda: None)
        monkeypatch.setattr(tensorrt_backend, "cuda_unavailable_reason", lambda: None)

    def index(self, device) -> int:
        if device is None:
            return self.current
        device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        return self.current if device.index is None else device.index


class FakeTensorRT(types.ModuleType):
    """The parts of the ``tensorrt`` module the backend uses; records on which device each call ran.

    ``version`` picks what exists: ``BuilderFlag.FP16`` up to 10.x, the
    ``STRONGLY_TYPED`` flag from 10.x until ``strongly_typed_flag=False`` (a
    release that drops it), ``EXPLICIT_BATCH`` before 10. Built "engines" run
    ``model`` on the CPU and add ``error`` metres.
    """

    float32 = "float32"

    def __init__(self, gpu: FakeGPU, model: CFINet, version: str = "10.13.0.35", *,
                 strongly_typed_flag: bool = True, cuda_starts: bool = True, bind_ok: bool = True):
        super().__init__("tensorrt")
        self.__version__ = version
        self.gpu, self.model, self.error = gpu, model, 0.0
        self.calls: list[tuple] = []
        self.loggers: list[object] = []
        major = int(version.split(".")[0])
        fake = self
        flags = {"EXPLICIT_BATCH": 0} if major < 10 else {}
        if major >= 10 and strongly_typed_flag:
            flags["STRONGLY_TYPED"] = 1
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(**flags)
        builder_flags = {"TF32": 7}
        if major <= 10:
            builder_flags["FP16"] = 0
        self.BuilderFlag = types.SimpleNamespace(**builder_flags)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)

        def start_cuda(what: str) -> None:     # what trt.Builder/trt.Runtime do first
            if not cuda_starts:
                raise TypeError("pybind11::init(): factory function returned nullptr")
            fake.calls.append((what, gpu.current))

        class Logger:
            WARNING = 2

            def __init__(self, severity):
                fake.loggers.append(self)

        class Config:
            def __init__(self):
                self.set, self.cleared = [], []

            def set_memory_pool_limit(self, pool, size):
                self.workspace = size

            def set_flag(self, flag):
                self.set.append(flag)

            def clear_flag(self, flag):
                self.cleared.append(flag)

            def add_optimization_profile(self, profile):
                self.profile = profile

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                self.shape = tuple(opt)

        class Builder:
            def __init__(self, logger):
                start_cuda("Builder")

            def create_network(self, flags):
                return types.SimpleNamespace(flags=flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build", gpu.current, network.flags, sorted(config.set), sorted(config.cleared)))
                return json.dumps({"shape": config.profile.shape}).encode()

        class OnnxParser:
            def __init__(self, network, logger):
                self.num_errors = 0

            def parse(self, data):
                return True

        class Context:
            def __init__(self, shape):
                self.shape, self.addresses = shape, {}

            def set_input_shape(self, name, shape):
                return tuple(shape) == self.shape

            def get_tensor_shape(self, name):
                return (self.shape[0], self.shape[1], 3)

            def set_tensor_address(self, name, address):
                self.addresses[name] = address
                return bind_ok

            def execute_async_v3(self, stream):
                keypoints = gpu.memory[self.addresses["keypoints_2d"]]
                with torch.inference_mode():
                    out = fake.model(keypoints.clone()) + fake.error
                gpu.memory[self.addresses["joints_3d"]].copy_(out)
                return True

        class Engine:
            num_io_tensors = 2

            def __init__(self, shape):
                self.shape = shape

            def get_tensor_name(self, i):
                return ("keypoints_2d", "joints_3d")[i]

            def get_tensor_dtype(self, name):
                return fake.float32

            def create_execution_context(self):
                fake.calls.append(("context", gpu.current))
                return Context(self.shape)

        class Runtime:
            def __init__(self, logger):
                start_cuda("Runtime")

            def deserialize_cuda_engine(self, plan):
                fake.calls.append(("deserialize", gpu.current))
                return Engine(tuple(json.loads(plan)["shape"]))

        self.Logger, self.Builder, self.Runtime, self.OnnxParser = Logger, Builder, Runtime, OnnxParser

    def count(self, what: str) -> int:
        return sum(call[0] == what for call in self.calls)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return CFINet(CFIConfig(dim=32, depth=1, heads=4)).eval()


@pytest.fixture
def fake_trt(monkeypatch, tiny):
    """A factory: ``fake_trt(**FakeTensorRT options)`` installs a fake GPU and ``tensorrt`` module."""
    gpu = FakeGPU(monkeypatch)
    # The fake parser ignores the graph, so skip the (real, tested elsewhere) ONNX export.
    monkeypatch.setattr(tensorrt_backend, "exported_onnx", lambda *args, **kwargs: (b"onnx", "memory"))
    monkeypatch.setattr(tensorrt_backend, "exporter_unavailable_reason", lambda: None)
    tensorrt_backend.tensorrt_cuda_variant.cache_clear()

    def install(**options):
        trt = FakeTensorRT(gpu, tiny, **options)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt
    yield install
    tensorrt_backend.tensorrt_cuda_variant.cache_clear()


def trt_lifter(tiny, cache_dir, **kwargs):
    kwargs.setdefault("batch_sizes", (1, 4))
    return tensorrt_backend.TensorRTLifter(tiny, weights_sha256="f" * 64, cache_dir=cache_dir,
                                           log=lambda *_: None, **kwargs)


# ----------------------------------------------------------------- 3. clear errors
def test_tensorrt_that_cannot_start_cuda_is_backend_unavailable_with_the_reason(fake_trt, tiny, tmp_path):
    fake_trt(cuda_starts=False)
    with pytest.raises(BackendUnavailable, match=r"^tensorrt: trt.Runtime could not start CUDA "
                                                 r"\(pybind11.*nullptr\); TensorRT 10.13.0.35 is .* and torch "
                                                 r".* uses CUDA .*: install the tensorrt-cu.* package that "
                                                 r"matches torch.version.cuda"):
        trt_lifter(tiny, tmp_path)


def test_auto_falls_back_when_tensorrt_cannot_start_cuda(fake_trt, tiny, tmp_path, monkeypatch):
    from cfi_pose_ros.inference import factory

    fake_trt(cuda_starts=False)
    monkeypatch.setattr(factory, "available_backends", lambda precision: {
        "tensorrt": None, "cuda": "simulated: no CUDA graphs", "onnxruntime": "simulated", "torch": None})
    lines = []
    lifter = create_lifter(tiny, cache_dir=tmp_path, log=lines.append)
    assert lifter.backend == "torch"
    assert any("skipped tensorrt: failed to start (BackendUnavailable: tensorrt: trt.Runtime could not start CUDA"
               in line for line in lines), lines


@pytest.mark.parametrize("error", [RuntimeError("TensorRT's ONNX parser rejected\nthe graph"),
                                   TypeError("pybind11::init(): factory function returned nullptr")])
def test_export_cli_tensorrt_errors_are_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, error):
    from cfi_pose_ros import export

    def failing_build(*args, **kwargs):
        raise error

    monkeypatch.setattr(tensorrt_backend, "build_engine_files", failing_build)
    model = CFINet(CFIConfig(dim=32, depth=1, heads=4)).eval()
    from cfi_pose_ros.weights import save_weights
    weights = save_weights(model, tmp_path / "m.safetensors")
    code = export.main(["--weights", str(weights), "--onnx", str(tmp_path / "m.onnx"),
                        "--tensorrt-engine", str(tmp_path / "m.engine")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert " ".join(str(error).split()) in err


# ----------------------------------------------------------------- 4. devices and guards
def test_engines_are_built_loaded_and_given_contexts_on_the_lifters_device(fake_trt, tiny, tmp_path):
    trt = fake_trt()
    lifter = trt_lifter(tiny, tmp_path, device="cuda:1")         # the current device stays 0
    assert trt.gpu.current == 0
    on = {what: {call[1] for call in trt.calls if call[0] == what} for what in
          ("Runtime", "Builder", "build", "deserialize", "context")}
    assert on == {what: {1} for what in on}, trt.calls
    keypoints = reference_inputs(3, seed=5)
    np.testing.assert_allclose(lifter.lift(keypoints), reference_outputs(tiny, keypoints), atol=1e-5)
    assert lifter.describe()["device"] == "cuda:1" and lifter.describe()["gpu"] == "Fake GPU 1"


def test_one_tensorrt_logger_for_the_process(fake_trt, tiny, tmp_path):
    trt = fake_trt()
    trt_lifter(tiny, tmp_path)
    trt_lifter(tiny, tmp_path, precision="fp16")
    assert len(trt.loggers) == 1 and trt.count("Runtime") == 2


@pytest.mark.parametrize("version, strongly_flag, network_flags, set_flags", [
    ("8.6.1", False, 1 << 0, [0]),       # weakly typed: EXPLICIT_BATCH, fp16 through BuilderFlag.FP16
    ("10.13.0.35", True, 1 << 1, []),    # STRONGLY_TYPED flag, fp16 from the typed graph
    ("11.4.1", True, 0, []),             # always strongly typed: the deprecated flag is not passed
    ("12.0.0", False, 0, []),            # a release without the flag and without FP16 must still work
])
def test_strong_typing_is_decided_by_the_tensorrt_version(fake_trt, tiny, tmp_path, version, strongly_flag,
                                                          network_flags, set_flags):
    trt = fake_trt(version=version, strongly_typed_flag=strongly_flag)
    lifter = trt_lifter(tiny, tmp_path, precision="fp16", batch_sizes=(2,))
    (build,) = [call for call in trt.calls if call[0] == "build"]
    assert build[2] == network_flags and build[3] == set_flags and build[4] == [trt.BuilderFlag.TF32]
    builder = lifter.describe()["builder"]
    assert builder["onnx_precision"] == ("fp32" if version.startswith("8.") else "fp16")


@pytest.mark.parametrize("version", ["8.4.3.1", "8.2.1.8", "7.1.3"])
def test_a_tensorrt_older_than_the_io_api_it_needs_is_refused_and_auto_falls_back(fake_trt, tiny, tmp_path,
                                                                                  monkeypatch, version):
    from cfi_pose_ros.inference import factory

    trt = fake_trt(version=version)
    with pytest.raises(BackendUnavailable, match=rf"^tensorrt: TensorRT {re.escape(version)} is not 8.5 or later, "
                                                 r"the first with the name-based I/O API .*install TensorRT >= 8.5$"):
        trt_lifter(tiny, tmp_path)
    assert not trt.calls                        # refused before a builder was made, not after a build
    assert tensorrt_backend.tensorrt_unavailable_reason().startswith(f"TensorRT {version} is not 8.5 or later")
    monkeypatch.setattr(factory, "available_backends", lambda precision: {
        "tensorrt": None, "cuda": "simulated: no CUDA graphs", "onnxruntime": "simulated", "torch": None})
    lines = []
    assert create_lifter(tiny, cache_dir=tmp_path, log=lines.append).backend == "torch"
    assert any(f"skipped tensorrt: failed to start (BackendUnavailable: tensorrt: TensorRT {version} is not 8.5"
               in line for line in lines), lines


def test_a_refused_tensor_address_is_an_error(fake_trt, tiny, tmp_path):
    fake_trt(bind_ok=False)
    with pytest.raises(tensorrt_backend.EngineError, match="refused the device address of tensor keypoints_2d"):
        trt_lifter(tiny, tmp_path)


def test_bf16_guard_looks_at_the_lifters_device_not_is_bf16_supported(monkeypatch, tiny):
    gpu = FakeGPU(monkeypatch, capabilities={0: (9, 0), 1: (7, 5)})
    assert torch.cuda.is_bf16_supported()        # what the old guard asked: true through emulation
    assert cuda_backend.bf16_unavailable_reason(torch.device("cuda", 0)) is None
    with pytest.raises(BackendUnavailable, match=r"cuda: bf16 needs compute capability >= 8.0, "
                                                 r"Fake GPU 1 \(cuda:1\) is 7.5"):
        cuda_backend.CudaGraphLifter(tiny, precision="bf16", device="cuda:1")
    assert gpu.current == 0


def test_engine_cache_key_tells_cuda_builds_and_builder_settings_apart(fake_trt, tiny, tmp_path, monkeypatch):
    from importlib import metadata

    trt = fake_trt()
    keys = {}
    for variant in ("cu12", "cu13"):
        monkeypatch.setattr(metadata, "packages_distributions",
                            lambda v=variant: {"tensorrt": [f"tensorrt-{v}-bindings"]})
        tensorrt_backend.tensorrt_cuda_variant.cache_clear()
        keys[variant] = trt_lifter(tiny, tmp_path, batch_sizes=(1,)).engine_files[1]
    assert keys["cu12"] != keys["cu13"] and trt.count("build") == 2
    sidecar = json.loads(cache.sidecar_path(Path(keys["cu13"])).read_text())
    assert sidecar["fields"]["tensorrt_cuda"] == "cu13"
    assert sidecar["fields"]["builder"]["clear_flags"] == ["TF32"]


def test_a_failed_engine_is_recorded_for_its_key_and_not_rebuilt(fake_trt, tiny, tmp_path, monkeypatch):
    trt = fake_trt()
    trt.error = 0.05                      # 5 cm off: fails the fp32 check
    with pytest.raises(ReferenceMismatch, match="differs from the PyTorch float32 reference"):
        trt_lifter(tiny, tmp_path, batch_sizes=(4,))
    (record,) = tmp_path.glob("tensorrt-engine/*.failed.json")
    saved = json.loads(record.read_text())
    assert "differs from the PyTorch float32 reference" in saved["reason"]
    assert saved["tolerance_m"] == TOLERANCES["fp32"] and not list(tmp_path.glob("tensorrt-engine/*.engine"))
    with pytest.raises(ReferenceMismatch, match=r"failed for this key on .* and is not built again: .*"
                                                r"\(delete .*failed.json to retry\)"):
        trt_lifter(tiny, tmp_path, batch_sizes=(4,))
    assert trt.count("build") == 1        # no second build of minutes
    trt.error = 0.0
    trt_lifter(tiny, tmp_path, batch_sizes=(2,))    # another key (batch size) is not blocked by the record
    assert trt.count("build") == 2
    monkeypatch.setitem(TOLERANCES, "fp32", 0.1)      # a new tolerance retries, and a pass clears the record
    trt_lifter(tiny, tmp_path, batch_sizes=(4,))
    assert trt.count("build") == 3 and not record.exists()


def test_an_engine_is_keyed_by_the_exporter_that_wrote_the_graph_it_was_built_from(fake_trt, tiny, tmp_path,
                                                                                      monkeypatch):
    """The engine is built from the ONNX export, and the export's own cache is keyed by the torch
    that exported it: after a torch upgrade the graph TensorRT parses is a new one, so neither an
    engine nor a failure recorded for the old export may stand for it."""
    trt = fake_trt()
    monkeypatch.setattr(torch, "__version__", "2.12.0")
    trt.error = 0.05                      # the old export's engine fails its check: recorded
    with pytest.raises(ReferenceMismatch):
        trt_lifter(tiny, tmp_path, batch_sizes=(4,))
    trt.error = 0.0
    monkeypatch.setattr(torch, "__version__", "2.13.0")
    lifter = trt_lifter(tiny, tmp_path, batch_sizes=(4,))       # the new export is built, not refused
    assert trt.count("build") == 2
    sidecar = json.loads(cache.sidecar_path(Path(lifter.engine_files[4])).read_text())
    assert sidecar["fields"]["exporter"].startswith("torch-2.13.0-")
    trt_lifter(tiny, tmp_path, batch_sizes=(4,))                 # and cached for that exporter
    assert trt.count("build") == 2
    monkeypatch.setattr(torch, "__version__", "2.14.0")
    trt_lifter(tiny, tmp_path, batch_sizes=(4,))                 # an engine of another export is not loaded
    assert trt.count("build") == 3


def test_a_good_engine_is_cached_and_loaded_on_the_next_start(fake_trt, tiny, tmp_path):
    trt = fake_trt()
    first = trt_lifter(tiny, tmp_path)
    second = trt_lifter(tiny, tmp_path)
    assert trt.count("build") == 2 and trt.count("deserialize") == 4
    assert first.engine_files == second.engine_files


def test_an_unwritable_engine_cache_keeps_the_engine_it_built(fake_trt, tiny, tmp_path):
    """The engine is built and checked; a cache that cannot be written (here a file where the
    directory should be) must not throw it away, as the ONNX export's cache does not."""
    trt = fake_trt()
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file, not a directory")
    lifter = trt_lifter(tiny, not_a_dir, batch_sizes=(1,))
    assert trt.count("build") == 1 and lifter.engine_files == {1: "memory"}


# ----------------------------------------------------------------- import graph
def _module_imports() -> dict[str, set[str]]:
    """``{module: modules of this package it imports}``, function-level imports included."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    targets.add(full if full in modules else source)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_no_module_of_the_package_imports_in_a_circle():
    graph = _module_imports()
    assert "cfi_pose_ros.inference.onnx_export" in graph["cfi_pose_ros.export"]

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for target in graph[node]:
                if target == start:
                    return path + [start]
                if target not in seen:
                    seen.add(target)
                    stack.append((target, path + [target]))
        return None

    cycles = [cycle for cycle in map(cycle_from, sorted(graph)) if cycle]
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


# ----------------------------------------------------------------- 5. the GPU check script
def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    if cuda_backend.cuda_unavailable_reason() is None:
        pytest.skip("a GPU is available: run benchmarks/gpu_check.py itself")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == (f"gpu_check: no GPU here ({cuda_backend.cuda_unavailable_reason()}); "
                                     "nothing to check.")
    assert not list(tmp_path.iterdir())
