"""A run's optimiser and its learning-rate schedule.

AdamW, with weight decay on the weight matrices only; the learning rate warms up
linearly, then follows a cosine down to 5 % of its peak. With a time budget the schedule
follows the steps or the time, whichever runs out first (:meth:`Schedule.apply`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.models.bert import PreferenceModel
from core.training.config import TrainConfig


def build_optimizer(model: PreferenceModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters; biases, LayerNorms and vectors without decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(
            param
        )

    def groups() -> list[dict]:
        return [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    try:
        # One fused kernel per step instead of a dozen small ops per parameter.
        return torch.optim.AdamW(groups(), lr=config.lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups(), lr=config.lr)


@dataclass(frozen=True)
class Schedule:
    """The steps of a run and its learning rate at each."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, steps_per_epoch: int, config: TrainConfig) -> Schedule:
        """The schedule of ``config``'s epochs of ``steps_per_epoch`` steps."""
        total_steps = steps_per_epoch * config.epochs
        return cls(steps_per_epoch, total_steps, max(1, int(config.warmup * total_steps)))

    def apply(
        self, optimizer: torch.optim.Optimizer, peak: float, step: int, budget_used: float
    ) -> None:
        """Set the learning rate of ``step`` (counted over the run), ``budget_used`` being
        the share of the time budget spent (0 without one)."""
        # With a time budget the schedule follows whichever runs out first, the steps
        # or the time, so a cut-short run still ends annealed.
        lr_step = max(step, int(budget_used * self.total_steps))
        for group in optimizer.param_groups:
            group["lr"] = peak * _lr_at(lr_step, self.total_steps, self.warmup_steps)


def _lr_at(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * 0.95 + 0.05
