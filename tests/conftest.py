"""Settings shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """The tests' tensors are tiny: intra-op threads only add synchronization, which on a loaded machine (more busy
    threads than cores) makes many small calls, such as the root finder's, over ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
