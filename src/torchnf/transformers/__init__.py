"""Elementwise monotone transformers, parameterized by a conditioner."""

from .affine import Affine, Shift
from .base import Transformer
from .sigmoid import DeepDenseSigmoid, DeepSigmoid
from .splines import LinearRationalSpline, RationalQuadraticSpline
from .umnn import UMNN

__all__ = [
    "UMNN",
    "Affine",
    "DeepDenseSigmoid",
    "DeepSigmoid",
    "LinearRationalSpline",
    "RationalQuadraticSpline",
    "Shift",
    "Transformer",
]
