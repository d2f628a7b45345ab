"""Elementwise monotone transformers, parameterized by a conditioner."""

from .affine import Affine, Shift
from .base import Transformer

__all__ = ["Affine", "Shift", "Transformer"]
