"""Bijections: invertible maps that return their log-determinant with every call."""

from .autoregressive import MaskedAutoregressive
from .base import Bijection, Compose, Invert
from .continuous import ContinuousFlow, trace_method
from .coupling import Coupling, coupling_mask
from .image_coupling import ImageCoupling, image_mask
from .invertible_conv import InvertibleConv1x1
from .linear import ElementwiseAffine, LULinear, Permutation, Reverse
from .logit import Logit
from .multiscale import Multiscale
from .normalization import ActNorm, BatchNorm, Standardization
from .planar import PlanarTransform
from .radial import RadialTransform
from .residual import ResidualTransform, log_det_method
from .sliced import SlicedTransform
from .spline import ElementwiseSpline
from .squeeze import Squeeze
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
    "ImageCoupling",
    "Invert",
    "InvertibleConv1x1",
    "LULinear",
    "Logit",
    "MaskedAutoregressive",
    "Multiscale",
    "Permutation",
    "PlanarTransform",
    "RadialTransform",
    "ResidualTransform",
    "Reverse",
    "SlicedTransform",
    "Squeeze",
    "Standardization",
    "SylvesterTransform",
    "coupling_mask",
    "image_mask",
    "log_det_method",
    "trace_method",
]
