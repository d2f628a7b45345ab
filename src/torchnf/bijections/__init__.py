"""Bijections: invertible maps that return their log-determinant with every call."""

from .autoregressive import MaskedAutoregressive
from .base import Bijection, Compose, Invert
from .coupling import Coupling, coupling_mask
from .linear import ElementwiseAffine, LULinear, Permutation, Reverse
from .normalization import ActNorm, BatchNorm, Standardization

__all__ = [
    "ActNorm",
    "BatchNorm",
    "Bijection",
    "Compose",
    "Coupling",
    "ElementwiseAffine",
    "Invert",
    "LULinear",
    "MaskedAutoregressive",
    "Permutation",
    "Reverse",
    "Standardization",
    "coupling_mask",
]
