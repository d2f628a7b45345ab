"""torchnf: normalizing flows for PyTorch: distributions you can both sample and evaluate exactly."""

from importlib.metadata import PackageNotFoundError, version

from .architectures import (
    FFJORD,
    IAF,
    MAF,
    NICE,
    SINF,
    UMNNMAF,
    CouplingLRS,
    CouplingNAF,
    CouplingRQNSF,
    Glow,
    InverseAutoregressiveRQNSF,
    InvertibleResNet,
    MaskedAutoregressiveLRS,
    MaskedAutoregressiveNAF,
    MaskedAutoregressiveRQNSF,
    MultiscaleRealNVP,
    Planar,
    Preset,
    Radial,
    RealNVP,
    ResFlow,
    Sylvester,
)
from .bijections import Bijection, Compose, Invert
from .distributions import ConditionalDiagonalNormal, DiagonalNormal, StandardNormal
from .flow import Flow
from .io import load
from .training import History, fit

try:
    __version__ = version("torchnf")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "FFJORD",
    "IAF",
    "MAF",
    "NICE",
    "SINF",
    "UMNNMAF",
    "Bijection",
    "Compose",
    "ConditionalDiagonalNormal",
    "CouplingLRS",
    "CouplingNAF",
    "CouplingRQNSF",
    "DiagonalNormal",
    "Flow",
    "Glow",
    "History",
    "InverseAutoregressiveRQNSF",
    "Invert",
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
    "StandardNormal",
    "Sylvester",
    "fit",
    "load",
]
