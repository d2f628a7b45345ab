"""``permute_last``: a gather in both passes, with first and second derivatives of a permutation."""

from __future__ import annotations

import torch

from torchnf.bijections.permute import permute_last


def test_values_and_derivatives() -> None:
    permutation = torch.tensor([2, 0, 3, 1])
    inverse = torch.argsort(permutation)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(permute_last(x, permutation, inverse), x[..., permutation], rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda v: permute_last(v, permutation, inverse), (x,))
    assert torch.autograd.gradgradcheck(lambda v: permute_last(v, permutation, inverse).square(), (x,))
