"""Learning-rate schedules over a fixed compute budget, and an EMA of the weights.

A budget run knows where it stands as ``progress`` in [0, 1]: the larger of
training seconds / budget seconds and samples / budget samples. The learning
rate is a function of progress only, so the schedule ends exactly at the budget
whatever the machine's speed, and a resumed run continues on the same curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("cosine", "onecycle", "constant")


@dataclass(frozen=True)
class BudgetSchedule:
    """Learning rate as a function of progress through the budget.

    * ``cosine``: linear warm-up from ``peak/25`` over ``warmup`` of the budget,
      then a cosine decay to ``final_fraction * peak_lr``. The warm-up starts where
      one-cycle does, not at 0: the first step is taken at ``lr(0)``, and at 0 it
      would be a step that moves nothing but Adam's moments.
    * ``onecycle``: Smith's one-cycle, rising as ``torch.optim.lr_scheduler.OneCycleLR``
      does by default (cosine from ``peak/25`` up to the peak over 30 % of the budget),
      then cosine down to ``peak/1e4`` (OneCycleLR's default ends lower, at
      ``peak/25/1e4``; the shipped weights were trained with this one).
    * ``constant``: the same linear warm-up, then the peak to the end, for an
      averaged model (``--ema-decay``) of a trajectory that never anneals. Why it
      was tried: a fine-tune whose one-cycle annealed to ~0 ended with EMA and raw
      weights alike and worse on S9 than its EMA while the rate was high (40.8
      against 40.0 mm). Measured (README, shipped weights): a constant-rate
      fine-tune's EMA stayed at 40.5-40.7 mm, no better.
    """
    peak_lr: float
    kind: str = "cosine"
    warmup: float = 0.05
    final_fraction: float = 0.01

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.kind!r}")

    def lr(self, progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        if self.kind == "onecycle":
            rise, start, end = 0.3, self.peak_lr / 25, self.peak_lr / 1e4
            if p < rise:
                return _cosine_between(start, self.peak_lr, p / rise)
            return _cosine_between(self.peak_lr, end, (p - rise) / (1 - rise))
        if p < self.warmup:
            start = self.peak_lr / 25
            return start + (self.peak_lr - start) * p / self.warmup
        if self.kind == "constant":
            return self.peak_lr
        return _cosine_between(self.peak_lr, self.peak_lr * self.final_fraction,
                               (p - self.warmup) / (1 - self.warmup))


def _cosine_between(start: float, end: float, t: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class Budget:
    """How far a run is through its budget (minutes and/or samples; 0 = no limit of that kind)."""
    minutes: float = 0.0
    samples: int = 0

    @property
    def enabled(self) -> bool:
        return self.minutes > 0 or self.samples > 0

    def progress(self, seconds: float, samples: int) -> float:
        parts = []
        if self.minutes > 0:
            parts.append(seconds / (self.minutes * 60))
        if self.samples > 0:
            parts.append(samples / self.samples)
        return max(parts) if parts else 0.0


class WeightEMA:
    """Exponential moving average of a model's floating-point state.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates,
    so short runs are not dominated by their random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self._model_params = [p for p in model.parameters()]
        self.shadow = [p.detach().clone() for p in self._model_params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self._model_params], 1.0 - decay)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``model.state_dict()`` with the averaged parameters in place of the raw ones."""
        averaged = {id(p): s for p, s in zip(self._model_params, self.shadow)}
        names = {id(p): name for name, p in model.named_parameters()}
        state = dict(model.state_dict())
        for key, shadow in averaged.items():
            state[names[key]] = shadow
        return state

    def load(self, tensors: list[torch.Tensor], updates: int) -> None:
        if len(tensors) != len(self.shadow):
            raise ValueError(f"EMA state has {len(tensors)} tensors, the model {len(self.shadow)}")
        with torch.no_grad():
            for shadow, value in zip(self.shadow, tensors):
                shadow.copy_(value)
        self.updates = updates
