"""Training losses on torch tensors ``(B, J, 3)``."""
from __future__ import annotations

import torch


def mpjpe_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-joint Euclidean distance (the loss the recipe trains with)."""
    return torch.linalg.vector_norm(predicted - target, dim=-1).mean()


def squared_error_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (9) of the paper: mean squared joint distance."""
    return ((predicted - target) ** 2).sum(dim=-1).mean()


LOSSES = {"mpjpe": mpjpe_loss, "mse": squared_error_loss}
