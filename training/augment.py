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
