"""Settings shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of many tiny calls (the root finder's): threads only add synchronization
    there, which on a loaded machine (more busy threads than cores) makes them over ten times slower. Modules that
    fit real models keep torch's default, which is faster on an idle machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
