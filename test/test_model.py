"""The CFI network: shapes, that every branch is wired in, ablations, equivariance, that it learns."""
import copy
import itertools

import numpy as np
import pytest
import torch

from cfi_pose_ros.model import CFIConfig, CFINet, normalized_adjacency
from cfi_pose_ros.skeleton import COCO_17, H36M_17

torch.set_num_threads(1)
SMALL = dict(dim=32, depth=2, heads=4)
BRANCHES = ("use_cfi_initial", "use_cfi_local", "use_cfi_global", "use_gramlp")


def make_model(seed: int = 0, **overrides) -> CFINet:
    torch.manual_seed(seed)
    model = CFINet(CFIConfig(**{**SMALL, **overrides}))
    # The init leaves biases at 0 and weights tiny; spread them so every path matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def inputs(batch: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 17, 2, generator=torch.Generator().manual_seed(seed)) * 0.3


def test_shapes_and_dtype():
    model = make_model()
    with torch.no_grad():
        for batch in (1, 5):
            out = model(inputs(batch))
            assert out.shape == (batch, 17, 3)
            assert out.dtype == torch.float32
            assert torch.isfinite(out).all()


def test_paper_default_config_runs():
    config = CFIConfig()
    assert (config.dim, config.depth, config.heads) == (512, 3, 8)
    model = CFINet(config).eval()
    with torch.no_grad():
        out = model(inputs(2))
    assert out.shape == (2, 17, 3) and out.dtype == torch.float32


def test_block_has_all_branches():
    block = make_model().blocks[0]
    for name in ("global_attn", "local_gcn", "cfi_global", "cfi_initial", "cfi_local", "mlp", "ff_gcn"):
        assert getattr(block, name) is not None, name


@pytest.mark.parametrize("path", ["cfi_global", "cfi_initial", "cfi_local", "ff_gcn", "local_gcn",
                                  "global_attn", "mlp"])
def test_zeroing_a_branch_changes_the_output(path):
    """Same weights, one branch's last projection set to zero: the output must change."""
    model = make_model()
    x = inputs()
    with torch.no_grad():
        before = model(x)
        for block in model.blocks:
            module = getattr(block, path)
            last = {"ff_gcn": lambda m: m.linear, "local_gcn": lambda m: m.linear,
                    "global_attn": lambda m: m.proj, "mlp": lambda m: m.net[-2]}.get(
                path, lambda m: m.attn.proj)(module)
            last.weight.zero_()
            last.bias.zero_()
        after = model(x)
    assert not torch.allclose(before, after, atol=1e-4)


@pytest.mark.parametrize("branch", BRANCHES)
def test_switching_a_branch_off_removes_its_parameters(branch):
    full = set(make_model().state_dict())
    ablated_model = make_model(**{branch: False})
    ablated = set(ablated_model.state_dict())
    assert ablated < full
    module = {"use_cfi_initial": "cfi_initial", "use_cfi_local": "cfi_local",
              "use_cfi_global": "cfi_global", "use_gramlp": "ff_gcn"}[branch]
    assert {k.split(".")[2] for k in full - ablated} == {module}
    assert getattr(ablated_model.blocks[0], module) is None


@pytest.mark.parametrize("flags", list(itertools.product([True, False], repeat=4)),
                         ids=lambda f: "".join("1" if v else "0" for v in f))
def test_every_ablation_runs_and_trains(flags):
    model = make_model(depth=1, **dict(zip(BRANCHES, flags))).train()
    out = model(inputs(4))
    assert out.shape == (4, 17, 3) and torch.isfinite(out).all()
    out.square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unused, f"parameters without gradient: {unused}"
    assert model.flops_per_pose() > 0


def test_vanilla_transformer_has_no_graph_or_cross_attention():
    model = make_model(use_cfi_initial=False, use_cfi_local=False, use_cfi_global=False,
                       use_gramlp=False)
    assert not model.config.uses_cfi
    names = set(model.state_dict())
    assert not any(k in n for n in names for k in ("gcn", "cfi_"))
    full = make_model()
    assert model.flops_per_pose() < full.flops_per_pose()
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize("dim, heads", [(30, 4), (512, 7), (10, 3)])
def test_dim_not_divisible_by_heads_raises(dim, heads):
    with pytest.raises(ValueError, match="divisible"):
        CFIConfig(dim=dim, heads=heads)


@pytest.mark.parametrize("field", ["depth", "dim", "heads", "num_joints"])
def test_nonpositive_sizes_raise(field):
    with pytest.raises(ValueError):
        CFIConfig(**{**SMALL, field: 0})


def test_config_dict_round_trip():
    config = CFIConfig(dim=64, depth=2, heads=8, use_cfi_local=False, dropout=0.1)
    assert CFIConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        CFIConfig.from_dict({**config.to_dict(), "width": 3})


def test_layout_must_match_joint_count():
    with pytest.raises(ValueError):
        CFINet(CFIConfig(**SMALL, num_joints=16))
    CFINet(CFIConfig(**SMALL), layout=COCO_17)           # another 17-joint graph is fine


def test_adjacency_is_normalised_skeleton():
    adj = normalized_adjacency(H36M_17)
    assert adj.shape == (17, 17) and np.allclose(adj, adj.T)
    assert np.all(np.diag(adj) > 0)
    for a, b in H36M_17.edges:
        degree_a = 1 + sum(1 for e in H36M_17.edges if a in e)
        degree_b = 1 + sum(1 for e in H36M_17.edges if b in e)
        assert adj[a, b] == pytest.approx(1 / np.sqrt(degree_a * degree_b))
    assert adj[3, 16] == 0                               # right ankle and right wrist: no bone


def test_permuting_the_batch_permutes_the_output():
    model = make_model()
    x = inputs(9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, out_perm = model(x), model(x[perm])
    torch.testing.assert_close(out_perm, out[perm], rtol=1e-5, atol=1e-6)


def test_poses_are_independent_in_a_batch():
    model = make_model()
    x = inputs(4)
    with torch.no_grad():
        alone = model(x[:1])
        x2 = x.clone()
        x2[1:] = 5.0
        together = model(x2)[:1]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-6)


def test_joint_identity_matters():
    """The per-joint embedding breaks attention's permutation symmetry over joints."""
    model = make_model()
    x = inputs(2)
    perm = torch.tensor(H36M_17.flip_permutation())
    with torch.no_grad():
        assert not torch.allclose(model(x[:, perm]), model(x)[:, perm], atol=1e-4)


def test_a_few_hundred_adam_steps_halve_the_loss():
    from training.losses import mpjpe_loss
    from training.synthetic import synthetic_pose_set

    data = synthetic_pose_set(1024, seed=3)
    x, y = torch.from_numpy(data.inputs_2d), torch.from_numpy(data.targets_3d)
    torch.manual_seed(0)
    model = CFINet(CFIConfig(dim=32, depth=1, heads=4))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            return mpjpe_loss(model(x), y).item()

    initial = evaluate()
    model.train()
    for _ in range(200):
        idx = torch.randint(0, len(x), (128,), generator=generator)
        loss = mpjpe_loss(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = evaluate()
    assert final < 0.5 * initial, (initial, final)


def test_fused_attention_computes_the_same_function_and_gradients():
    from cfi_pose_ros.model import use_fused_attention
    torch.manual_seed(0)
    plain = CFINet(CFIConfig(dim=64, depth=2, heads=8))
    fused = use_fused_attention(copy.deepcopy(plain))
    x = torch.randn(32, 17, 2)
    out_plain, out_fused = plain(x), fused(x)
    torch.testing.assert_close(out_fused, out_plain, rtol=1e-5, atol=1e-6)
    out_plain.square().sum().backward()
    out_fused.square().sum().backward()
    # float32 rounding differs between the kernels: compare against the gradients' overall scale
    # (some, e.g. a key LayerNorm's bias, are zero up to rounding: softmax ignores a shift of every key)
    scale = max(float(p.grad.abs().max()) for p in plain.parameters())
    for (name, a), b in zip(plain.named_parameters(), fused.parameters()):
        assert float((b.grad - a.grad).abs().max()) <= 1e-6 * scale, name
    assert not any(getattr(m, "fused_attention", False) for m in use_fused_attention(fused, False).modules())
