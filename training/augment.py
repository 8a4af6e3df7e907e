"""Training-time and test-time augmentation on batched torch tensors."""
from __future__ import annotations

import torch

from cfi_pose_ros.skeleton import H36M_17, JointLayout


def flip_poses(poses: torch.Tensor, layout: JointLayout = H36M_17) -> torch.Tensor:
    """Mirror poses ``(B, J, C)`` about the camera's vertical plane: negate x, swap left/right.

    Valid for screen-normalised 2D (x is centred on 0) and camera-frame 3D alike.
    """
    perm = torch.as_tensor(layout.flip_permutation(), device=poses.device)
    flipped = poses[:, perm].clone()
    flipped[..., 0] = -flipped[..., 0]
    return flipped


def random_flip(inputs_2d: torch.Tensor, targets_3d: torch.Tensor, generator: torch.Generator | None = None,
                probability: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip a random half of the batch (inputs and targets together)."""
    mask = torch.rand(len(inputs_2d), generator=generator, device=inputs_2d.device) < probability
    inputs_2d = torch.where(mask[:, None, None], flip_poses(inputs_2d), inputs_2d)
    targets_3d = torch.where(mask[:, None, None], flip_poses(targets_3d), targets_3d)
    return inputs_2d, targets_3d


def detector_noise(inputs_2d: torch.Tensor, max_std: float, probability: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Add per-joint Gaussian jitter like a 2D detector's, to a random share of the batch.

    Each chosen pose gets a standard deviation drawn uniformly in ``[0, max_std]``
    (screen-normalised units: 0.01 is 5 px on a 1000 px wide image), so the
    model sees clean and noisy input alike and keeps its accuracy on clean 2D.
    """
    if max_std <= 0 or probability <= 0:
        return inputs_2d
    batch = len(inputs_2d)
    chosen = (torch.rand(batch, generator=generator, device=inputs_2d.device) < probability).float()
    std = torch.rand(batch, generator=generator, device=inputs_2d.device) * max_std * chosen
    noise = torch.randn(inputs_2d.shape, generator=generator, device=inputs_2d.device)
    return inputs_2d + noise * std[:, None, None]


def displace_joints(inputs_2d: torch.Tensor, probability: float, max_shift: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Move one random joint of a random share of the batch, like a detector's wrong joint.

    The shift has a uniform length in ``[0, max_shift]`` (screen-normalised units: 0.4 is
    200 px on a 1000 px wide image) and a uniform direction; the 3D target keeps the true
    joint, so the lifter learns not to bend the skeleton towards a joint that does not fit.
    """
    if probability <= 0 or max_shift <= 0:
        return inputs_2d
    batch, joints = inputs_2d.shape[:2]
    device = inputs_2d.device
    chosen = (torch.rand(batch, generator=generator, device=device) < probability).to(inputs_2d.dtype)
    joint = torch.randint(0, joints, (batch,), generator=generator, device=device)
    length = torch.rand(batch, generator=generator, device=device) * max_shift * chosen
    angle = torch.rand(batch, generator=generator, device=device) * (2 * torch.pi)
    shift = torch.stack((torch.cos(angle), torch.sin(angle)), dim=-1) * length[:, None]
    one_joint = torch.nn.functional.one_hot(joint, joints).to(inputs_2d.dtype)
    return inputs_2d + one_joint[..., None] * shift[:, None, :]


def drop_joints(inputs_2d: torch.Tensor, probability: float, max_joints: int, layout: JointLayout = H36M_17,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Make 1 to ``max_joints`` random joints of a random share of the batch missing.

    They are filled exactly as the node fills a joint it has no detection for (or one its
    root solve rejected): :meth:`JointLayout.fill_missing`, so the lifter learns to read
    the folded limbs it will be given.
    """
    if probability <= 0 or max_joints < 1:
        return inputs_2d
    batch, joints = inputs_2d.shape[:2]
    device = inputs_2d.device
    chosen = torch.rand(batch, generator=generator, device=device) < probability
    count = torch.randint(1, max_joints + 1, (batch,), generator=generator, device=device)
    rank = torch.rand(batch, joints, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    missing = chosen[:, None] & (rank < count[:, None])
    return layout.fill_missing(inputs_2d, ~missing)
