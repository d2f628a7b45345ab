"""Evaluating a flow for a report: log-densities in chunks, and sampling under a seed that leaves the caller's
random state as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from ..flow import Flow

CHUNK = 8192  # points per log_prob call


@contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Seed the generators the flow samples from, restoring the caller's random state afterwards."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
    else:
        count = torch.get_device_module(device.type).device_count()
        with torch.random.fork_rng(devices=range(count), device_type=device.type):
            torch.manual_seed(seed)
            yield


def _log_prob(flow: Flow, x: Tensor, chunk: int | None = None) -> Tensor:
    """Log-densities of validated points, in chunks (of :data:`CHUNK` points by default)."""
    chunk = CHUNK if chunk is None else chunk
    return torch.cat([flow.unchecked_log_prob(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])
