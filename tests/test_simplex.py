"""The short-axis softmax and log-softmax agree with torch's, values and gradients."""

from __future__ import annotations

import pytest
import torch

from torchnf.transformers import simplex


@pytest.mark.parametrize("length", [2, 8, simplex.SHORT, 40])
def test_simplex_matches_torch(length: int) -> None:
    raw = 30 * torch.randn(6, length, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(simplex.softmax(raw), torch.softmax(raw, -1), rtol=0, atol=1e-15)
    torch.testing.assert_close(simplex.log_softmax(raw), torch.log_softmax(raw, -1), rtol=0, atol=1e-13)
    weights = torch.randn(6, length, dtype=torch.float64)
    (ours,) = torch.autograd.grad((simplex.log_softmax(raw) * weights).sum(), raw)
    (theirs,) = torch.autograd.grad((torch.log_softmax(raw, -1) * weights).sum(), raw)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
