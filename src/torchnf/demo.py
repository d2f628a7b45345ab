"""The main job: fit a flow to a built-in data set and compare it with a Gaussian baseline."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .architectures import RealNVP
from .baselines import GaussianBaseline
from .datasets import two_moons
from .flow import Flow

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """Mean log-likelihoods (nats per point) of the flow and of the Gaussian baseline."""

    flow_train: float
    flow_test: float
    gaussian_train: float
    gaussian_test: float
    steps: int
    seconds: float

    def table(self) -> str:
        """The results as a Markdown table."""
        return "\n".join(
            [
                "| model | train log-likelihood | test log-likelihood |",
                "|---|---|---|",
                f"| RealNVP | {self.flow_train:.3f} | {self.flow_test:.3f} |",
                f"| full-covariance Gaussian | {self.gaussian_train:.3f} | {self.gaussian_test:.3f} |",
            ]
        )


def run_demo(steps: int = 2000, seed: int = 0, progress: bool | None = None) -> DemoResult:
    """Fit :class:`~torchnf.RealNVP` to two moons (4,000 training and 2,000 test points, noise 0.05)."""
    torch.manual_seed(seed)
    data = torch.as_tensor(two_moons(6000, noise=0.05, seed=seed), dtype=torch.float32)
    train, test = data[:4000], data[4000:]
    flow = Flow(RealNVP(2))
    start = time.perf_counter()
    history = flow.fit(train, steps=steps, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    gaussian = GaussianBaseline().fit(train.double())
    with torch.no_grad():
        return DemoResult(
            flow_train=float(flow.log_prob(train).mean()),
            flow_test=float(flow.log_prob(test).mean()),
            gaussian_train=float(gaussian.log_prob(train.double()).mean()),
            gaussian_test=float(gaussian.log_prob(test.double()).mean()),
            steps=history.step[-1],
            seconds=seconds,
        )
