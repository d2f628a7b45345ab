"""Settings shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from torchnf.baselines import GaussianBaseline
from torchnf.datasets import two_moons

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # parallel workers share the cores instead of each taking all of them
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of many tiny calls (the root finder's): threads only add synchronization
    there, which on a loaded machine (more busy threads than cores) makes them over ten times slower. Modules that
    fit real models keep torch's default, which is faster on an idle machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def moons_split() -> tuple[np.ndarray, np.ndarray, float]:
    """The quality tests' two moons: 4,000 training points, 1,000 test points, and the test log-likelihood of a
    full-covariance Gaussian fitted to the training points (nats per point), the baseline flows must beat."""
    x = two_moons(5000, noise=0.05, seed=0)  # shuffled, so a slice is a random split
    train, test = x[:4000], x[4000:]
    return train, test, float(GaussianBaseline().fit(train).log_prob(test).mean())
