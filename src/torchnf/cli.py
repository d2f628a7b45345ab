"""The ``torchnf`` command."""

from __future__ import annotations

import click

from .demo import run_demo

__all__ = ["main"]


@click.group()
@click.version_option(package_name="torchnf")
def main() -> None:
    """Normalizing flows from the shell."""


@main.command()
@click.option("--steps", default=2000, show_default=True, help="Maximum number of training steps.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
def demo(steps: int, seed: int) -> None:
    """Fit RealNVP to two moons and compare it with a Gaussian."""
    result = run_demo(steps=steps, seed=seed)
    click.echo(result.table())
    click.echo(
        f"\n{result.steps} steps in {result.seconds:.1f} s; log-likelihoods in nats per point (higher is better)."
    )
