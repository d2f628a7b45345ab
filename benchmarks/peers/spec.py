"""What an equivalent model is: the shared architecture settings every library's builder receives."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODELS", "ModelSpec", "half_mask"]

MODELS: tuple[str, ...] = ("MAF", "RealNVP", "CouplingRQNSF", "MaskedAutoregressiveRQNSF")
"""The architectures compared, by their torchnf preset names."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture settings shared by all libraries.

    Attributes:
        layers: number of coupling or autoregressive layers.
        hidden: hidden widths of each conditioner network (coupling MLP or MADE).
        bins: number of spline bins (spline models only).
        bound: the spline acts on ``[-bound, bound]`` with identity (linear) tails outside.
    """

    layers: int = 5
    hidden: tuple[int, ...] = (128, 128)
    bins: int = 8
    bound: float = 5.0

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"layers must be at least 1, got {self.layers}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {self.hidden}")
        if self.bins < 2:
            raise ValueError(f"bins must be at least 2, got {self.bins}")

    def equal_width(self, library: str) -> int:
        """The single hidden width of libraries whose networks take one width and a depth."""
        if len(set(self.hidden)) != 1:
            raise ValueError(f"{library} networks have one hidden width; got hidden={list(self.hidden)}")
        return self.hidden[0]


def half_mask(dim: int, layer: int) -> list[bool]:
    """Which dimensions a coupling layer transforms: the upper half at even layers, the lower half at odd ones
    (the complement conditions the network), so consecutive layers alternate like torchnf's ``mask="half"``."""
    upper = [i >= dim // 2 for i in range(dim)]
    return upper if layer % 2 == 0 else [not m for m in upper]
