"""Peak memory of a measured stretch of code.

CPU: the growth of the process's resident set (RSS). Linux keeps a high-water mark (``VmHWM`` in
``/proc/self/status``) that writing ``5`` to ``/proc/self/clear_refs`` resets to the current RSS, so the peak of a
stretch is ``VmHWM`` after it minus ``VmRSS`` before it. This counts every byte the stretch made resident (tensors,
autograd buffers, optimizer state, allocator overhead, lazily created thread pools and kernels), not only tensors,
and it under-counts memory the allocator kept from earlier work in the same process: hence one fresh worker
process per measurement (the default). Where the reset is not allowed, :class:`RssPeak` falls back to the growth of
``ru_maxrss``, which is only meaningful in a fresh process. CUDA: ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus what was allocated before: tensor memory only.
"""

from __future__ import annotations

import re
import resource
from pathlib import Path
from typing import Protocol

import torch

__all__ = ["CudaPeak", "PeakMeter", "RssPeak", "meter"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMeter(Protocol):
    """Measures the peak memory growth between :meth:`start` and :meth:`stop`."""

    method: str

    def start(self) -> None: ...

    def stop(self) -> int | None:
        """The peak growth in bytes, or ``None`` when it cannot be measured."""
        ...


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class RssPeak:
    """Peak resident-set growth of this process (see the module docstring)."""

    def __init__(self) -> None:
        self.exact = _status_kib("VmHWM") is not None and _reset_high_water_mark()
        self.method = "peak RSS growth (VmHWM reset)" if self.exact else "ru_maxrss growth"
        self._before = 0

    def start(self) -> None:
        """Reset the high-water mark and remember the current RSS."""
        if self.exact:
            _reset_high_water_mark()
            self._before = _status_kib("VmRSS") or 0
        else:
            self._before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stop(self) -> int | None:
        """Peak RSS since :meth:`start` minus the RSS at :meth:`start`, in bytes."""
        peak = _status_kib("VmHWM") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return None if peak is None else max(0, peak - self._before) * 1024


class CudaPeak:
    """Peak CUDA tensor memory growth on one device."""

    method = "torch.cuda.max_memory_allocated growth"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._before = 0

    def start(self) -> None:
        """Reset the device's peak statistics and remember what is allocated."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._before = torch.cuda.memory_allocated(self.device)

    def stop(self) -> int | None:
        """Peak allocated since :meth:`start` minus what was allocated then, in bytes."""
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) - self._before


def meter(device: torch.device) -> PeakMeter:
    """The meter for ``device``."""
    return CudaPeak(device) if device.type == "cuda" else RssPeak()
