"""The three operations timed: a training step, a batch of densities and a batch of samples."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .adapter import Built

__all__ = ["OPERATIONS", "TITLES", "operation"]

OPERATIONS: tuple[str, ...] = ("train_step", "log_prob", "sample")

TITLES: dict[str, str] = {
    "train_step": "Training step (mean log_prob, backward, Adam step)",
    "log_prob": "log_prob of a batch, no_grad",
    "sample": "Sampling a batch, no_grad",
}


def operation(name: str, built: Built, x: Tensor, lr: float = 1e-3) -> Callable[[], None]:
    """A call doing one ``name`` on ``built``: ``x`` is the batch of data (its length is also the sample count)."""
    module = built.module
    if name == "train_step":
        module.train()
        optimizer = built.adam(module.parameters(), lr)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = -built.log_prob(x).mean()
            loss.backward()
            optimizer.step()

        return train_step
    module.eval()
    if name == "log_prob":

        def log_prob() -> None:
            with torch.no_grad():
                built.log_prob(x)

        return log_prob
    if name == "sample":

        def sample() -> None:
            with torch.no_grad():
                built.sample(len(x))

        return sample
    raise ValueError(f"unknown operation {name!r}; expected one of {', '.join(OPERATIONS)}")
