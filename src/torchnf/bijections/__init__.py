"""Bijections: invertible maps that return their log-determinant with every call."""

from .autoregressive import MaskedAutoregressive
from .base import Bijection, Compose, Invert
from .coupling import Coupling, coupling_mask
from .linear import ElementwiseAffine, LULinear, Permutation, Reverse
from .normalization import ActNorm, BatchNorm, Standardization
from .sliced import SlicedTransform
from .spline import ElementwiseSpline

__all__ = [
    "ActNorm",
    "BatchNorm",
    "Bijection",
    "Compose",
    "Coupling",
    "ElementwiseAffine",
    "ElementwiseSpline",
    "Invert",
    "LULinear",
    "MaskedAutoregressive",
    "Permutation",
    "Reverse",
    "SlicedTransform",
    "Standardization",
    "coupling_mask",
]
