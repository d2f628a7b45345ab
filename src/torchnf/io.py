"""Saving and loading flows without pickle.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the weights as raw tensors, and in
its header a JSON config with the format version, the library version, the preset's name and keyword arguments,
the base distribution's, the dequantization's and the context embedding's (or null), the dtype, whether the data
standardization was fitted, the training history and the flow's metadata. Loading looks the names up in fixed registries
(:attr:`torchnf.Preset.registry`, :attr:`BaseDistribution.registry`, :attr:`Dequantization.registry`,
:attr:`ContextEmbedding.registry`), calls them
with plain JSON values and copies the tensors in: nothing in a file is ever executed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from .architectures import Preset
from .dequantization import Dequantization
from .distributed import on_main_process
from .distributions import BaseDistribution
from .embeddings import ContextEmbedding
from .flow import Flow
from .optimization import History

__all__ = ["FORMAT_VERSION", "ModelFileError", "load", "read_config", "save"]

FORMAT = "torchnf"
FORMAT_VERSION = 2
"""Format 2 added the context embedding; format 1 files (no embedding) load unchanged."""
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ModelFileError(ValueError):
    """A model file is missing parts, corrupted, tampered with, or from an unsupported version."""


def _library_version() -> str:
    from . import __version__

    return __version__


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data (tuples become lists); refuses anything else."""
    if isinstance(value, (tuple, list, torch.Size)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    raise TypeError(f"cannot save a config value of type {type(value).__name__}: {value!r}")


def flow_config(flow: Flow) -> dict[str, Any]:
    """The JSON config that rebuilds ``flow``'s structure (its weights are saved separately)."""
    if not isinstance(flow.bijection, Preset):
        raise TypeError(
            f"only flows built on a preset can be saved as a model file; this one is a {type(flow.bijection).__name__}"
            " (save its state_dict with safetensors and rebuild it in code instead)"
        )
    dtype = next(k for k, v in DTYPES.items() if v == flow.dtype) if flow.dtype in DTYPES.values() else None
    if dtype is None:
        raise TypeError(f"only float32 and float64 flows can be saved, this one is {flow.dtype}")
    history = None if flow.history is None else dataclasses.asdict(flow.history)

    def entry(part: Any) -> dict[str, Any] | None:
        return None if part is None else {"name": type(part).__name__, "kwargs": _plain(part.config)}

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": _library_version(),
        "preset": entry(flow.bijection),
        "base": entry(flow.base),
        "dequantization": entry(flow.dequantization),
        "embedding": entry(flow.embedding),
        "dtype": dtype,
        "standardized": bool(flow.standardization.fitted),
        "history": _plain(history),
        "metadata": _plain(flow.metadata),
    }


def save(flow: Flow, path: str | Path) -> None:
    """Write ``flow`` to ``path``: a safetensors file whose header holds the JSON config.

    Only flows whose bijection is a preset (``RealNVP``, ``MAF``, ...) and whose base distribution is a registered
    one can be saved this way, because loading rebuilds them from names and plain values.

    Under an initialized ``torch.distributed`` process group (a script run by ``torchrun``), only process 0 writes
    the file and the others wait until it is written (:func:`torchnf.distributed.on_main_process`), so that every
    process may read it afterwards; an error on process 0 is raised on every process. Every process must therefore
    call ``save``: guarding it with ``if rank == 0`` would leave process 0 waiting for the others.
    """
    config = flow_config(flow)
    path = Path(path)

    def write() -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in flow.state_dict().items()}
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save to {path}: the folder {path.parent} does not exist")
        safetensors.torch.save_file(tensors, str(path), metadata={"torchnf": json.dumps(config)})

    on_main_process(write)


def read_config(path: str | Path) -> dict[str, Any]:
    """The JSON config of a model file, checked for its format and version (the weights are not read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:  # safetensors raises several error types for damaged headers
        raise ModelFileError(f"{path} is not a readable model file (truncated or corrupted?): {error}") from None
    if "torchnf" not in metadata:
        raise ModelFileError(f"{path} is a safetensors file but not a torchnf model: its header has no torchnf config")
    try:
        config = json.loads(metadata["torchnf"])
    except json.JSONDecodeError as error:
        raise ModelFileError(f"the config in {path} is not valid JSON (tampered with?): {error}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"the config in {path} is not a torchnf model config")
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"the config in {path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by torchnf {config.get('library_version', '?')} in model format {version}; this "
            f"torchnf ({_library_version()}) reads formats up to {FORMAT_VERSION}: upgrade torchnf to load it"
        )
    return config


def _build(family: type, entry: Any, what: str, path: Path) -> Any:
    """Instantiate ``family.registry[entry['name']](**entry['kwargs'])``, wrapping every failure."""
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("name"), str)
        or not isinstance(entry.get("kwargs"), dict)
    ):
        raise ModelFileError(f"the {what} entry of the config in {path} is malformed: {entry!r}")
    cls = family.registry.get(entry["name"])
    if cls is None:
        known = ", ".join(sorted(family.registry))
        raise ModelFileError(f"{path} names an unknown {what} {entry['name']!r}; known: {known}")
    try:
        return cls(**entry["kwargs"])
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"the {what} config in {path} is invalid ({entry['name']}): {error}") from None


def load(path: str | Path, device: str | torch.device = "cpu") -> Flow:
    """Load a flow written by :meth:`Flow.save`, on ``device``; never executes code from the file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFileError: the file is truncated, corrupted, tampered with, of a newer format, or its weights do not
            match its config.
    """
    path = Path(path)
    config = read_config(path)
    dtype = DTYPES.get(config.get("dtype"))
    if dtype is None:
        raise ModelFileError(f"the config in {path} has an unsupported dtype {config.get('dtype')!r}")
    bijection = _build(Preset, config.get("preset"), "preset", path)
    base = _build(BaseDistribution, config.get("base"), "base distribution", path)
    entry = config.get("dequantization")
    dequantization = None if entry is None else _build(Dequantization, entry, "dequantization", path)
    entry = config.get("embedding")
    embedding = None if entry is None else _build(ContextEmbedding, entry, "context embedding", path)
    try:
        flow = Flow(bijection, base, dequantization, embedding=embedding)
    except (TypeError, ValueError) as error:
        raise ModelFileError(
            f"the preset, base distribution, dequantization and context embedding in {path} do not fit together: "
            f"{error}"
        ) from None
    try:
        weights = safetensors.torch.load_file(str(path))
    except Exception as error:  # damaged data sections surface here
        raise ModelFileError(f"the weights in {path} are unreadable (truncated or corrupted?): {error}") from None
    _load_weights(flow.to(dtype), weights, path)
    if bool(flow.standardization.fitted) != bool(config.get("standardized")):
        raise ModelFileError(f"the config in {path} disagrees with its weights about the data standardization")
    flow.history = _history(config.get("history"), path)
    metadata = config.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFileError(f"the metadata in {path} is malformed: expected a JSON object")
    flow.metadata = metadata
    return flow.to(device).eval()


def _load_weights(flow: Flow, weights: dict[str, torch.Tensor], path: Path) -> None:
    expected = flow.state_dict()
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        raise ModelFileError(
            f"the weights in {path} do not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, tensor in weights.items():
        if tensor.shape != expected[name].shape:
            raise ModelFileError(
                f"the weights in {path} do not match its config: {name} has shape {tuple(tensor.shape)}, expected "
                f"{tuple(expected[name].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelFileError(f"the weights in {path} hold non-finite values in {name}")
    flow.load_state_dict(weights)


def _history(entry: Any, path: Path) -> History | None:
    if entry is None:
        return None
    fields = {f.name for f in dataclasses.fields(History)}
    if not isinstance(entry, dict) or not entry.keys() <= fields:
        raise ModelFileError(f"the training history in {path} is malformed")
    floats = ("train_loss", "val_loss", "lr")  # non-finite values were saved as strings such as "nan"
    try:
        values = {k: [float(x) for x in v] if k in floats else v for k, v in entry.items()}
        if "metrics" in values:
            values["metrics"] = {str(k): [float(x) for x in v] for k, v in values["metrics"].items()}
        return History(**values)
    except (AttributeError, TypeError, ValueError):
        raise ModelFileError(f"the training history in {path} is malformed") from None
