"""Presets: named architectures composed from the parts in :mod:`torchnf.bijections`.

Each preset is a :class:`~torchnf.bijections.Compose` whose constructor arguments are plain values (ints, floats,
strings, tuples), recorded in :attr:`Preset.config`, so a model can be rebuilt from its config alone. Every
preset is registered by class name in :attr:`Preset.registry`.
"""

from .affine import IAF, MAF, NICE, RealNVP
from .base import ACTIVATIONS, Preset
from .continuous import FFJORD
from .images import Glow, MultiscaleRealNVP
from .neural import UMNNMAF, CouplingNAF, MaskedAutoregressiveNAF
from .planar import Planar, Radial, Sylvester
from .residual import InvertibleResNet, ResFlow
from .sinf import SINF
from .splines import (
    CouplingLRS,
    CouplingRQNSF,
    InverseAutoregressiveRQNSF,
    MaskedAutoregressiveLRS,
    MaskedAutoregressiveRQNSF,
)

__all__ = [
    "ACTIVATIONS",
    "FFJORD",
    "IAF",
    "MAF",
    "NICE",
    "SINF",
    "UMNNMAF",
    "CouplingLRS",
    "CouplingNAF",
    "CouplingRQNSF",
    "Glow",
    "InverseAutoregressiveRQNSF",
    "InvertibleResNet",
    "MaskedAutoregressiveLRS",
    "MaskedAutoregressiveNAF",
    "MaskedAutoregressiveRQNSF",
    "MultiscaleRealNVP",
    "Planar",
    "Preset",
    "Radial",
    "RealNVP",
    "ResFlow",
    "Sylvester",
]
