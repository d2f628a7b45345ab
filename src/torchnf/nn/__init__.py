"""Networks used inside bijections: MLPs, MADE, Lipschitz-constrained networks and ODE dynamics."""

from .conv import ConvNet, ConvResidualBlock
from .dynamics import DynamicsNet
from .lipschitz import LipschitzMLP, LipSwish, SpectralLinear
from .made import MADE, MaskedLinear
from .mlp import MLP, ResidualBlock

__all__ = [
    "MADE",
    "MLP",
    "ConvNet",
    "ConvResidualBlock",
    "DynamicsNet",
    "LipSwish",
    "LipschitzMLP",
    "MaskedLinear",
    "ResidualBlock",
    "SpectralLinear",
]
