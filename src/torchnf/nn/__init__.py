"""Networks used inside bijections: MLPs and MADE."""

from .made import MADE, MaskedLinear
from .mlp import MLP, ResidualBlock

__all__ = ["MADE", "MLP", "MaskedLinear", "ResidualBlock"]
