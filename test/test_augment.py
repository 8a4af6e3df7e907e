"""Training-time augmentation of 2D input: the wrong and missing joints a detector produces."""
import numpy as np
import torch

from cfi_pose_ros.skeleton import H36M_17
from training.augment import displace_joints, drop_joints


def poses(batch: int = 256) -> torch.Tensor:
    return torch.randn(batch, 17, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_displace_joints_moves_one_joint_by_at_most_the_shift():
    x = poses()
    moved = displace_joints(x, probability=1.0, max_shift=0.4, generator=torch.Generator().manual_seed(1))
    distance = (moved - x).norm(dim=-1)                       # (B, 17)
    assert ((distance > 0).sum(dim=1) <= 1).all()             # one joint per pose (a zero-length move: none)
    assert ((distance > 0).sum(dim=1) == 1).float().mean() > 0.99
    assert distance.max() <= 0.4 + 1e-12 and distance.max() > 0.3
    hit = torch.bincount(distance.argmax(dim=1), minlength=17)
    assert (hit > 0).all()                                    # every joint can be the wrong one


def test_displace_joints_touches_only_the_chosen_share():
    x = poses(4000)
    moved = displace_joints(x, probability=0.25, max_shift=0.4, generator=torch.Generator().manual_seed(2))
    share = float((moved != x).any(dim=(1, 2)).double().mean())
    assert 0.22 < share < 0.28
    assert torch.equal(displace_joints(x, 0.0, 0.4), x)


def test_drop_joints_fills_one_or_two_joints_as_the_node_does():
    x = poses()
    dropped = drop_joints(x, probability=1.0, max_joints=2, generator=torch.Generator().manual_seed(3))
    changed = (dropped != x).any(dim=-1)                      # (B, 17)
    counts = changed.sum(dim=1)
    assert counts.min() >= 1 and counts.max() <= 2 and (counts == 2).any()
    for pose, original, missing in zip(dropped.numpy(), x.numpy(), changed.numpy()):
        np.testing.assert_allclose(pose, H36M_17.fill_missing(original, ~missing), rtol=0, atol=1e-12)
    assert torch.equal(drop_joints(x, 0.0, 2), x)
