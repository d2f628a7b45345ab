"""Bijections: invertible maps that return their log-determinant with every call."""

from .autoregressive import MaskedAutoregressive
from .base import Bijection, Compose, Invert
from .continuous import ContinuousFlow, trace_method
from .coupling import Coupling, coupling_mask
from .linear import ElementwiseAffine, LULinear, Permutation, Reverse
from .normalization import ActNorm, BatchNorm, Standardization
from .planar import PlanarTransform
from .radial import RadialTransform
from .residual import ResidualTransform, log_det_method
from .sliced import SlicedTransform
from .spline import ElementwiseSpline
from .sylvester import SylvesterTransform

__all__ = [
    "ActNorm",
    "BatchNorm",
    "Bijection",
    "Compose",
    "ContinuousFlow",
    "Coupling",
    "ElementwiseAffine",
    "ElementwiseSpline",
    "Invert",
    "LULinear",
    "MaskedAutoregressive",
    "Permutation",
    "PlanarTransform",
    "RadialTransform",
    "ResidualTransform",
    "Reverse",
    "SlicedTransform",
    "Standardization",
    "SylvesterTransform",
    "coupling_mask",
    "log_det_method",
    "trace_method",
]
