"""Saving and loading flows: exact round trips, and a clear error for every kind of damaged file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors
import safetensors.torch
import torch
from bijection_registry import perturb

import torchnf
from torchnf import IAF, MAF, NICE, DiagonalNormal, Flow, Preset, RealNVP
from torchnf.bijections import Compose, Coupling
from torchnf.io import FORMAT_VERSION, ModelFileError, flow_config, read_config

D, C = 3, 2
SMALL = {"layers": 2, "hidden": [16, 16]}
SMALL_IMAGE = {"levels": 1, "steps": 1, "hidden_channels": 4}
SMALL_OPTIONS = {"SINF": {"layers": 2, "knots": 6}, "Glow": SMALL_IMAGE, "MultiscaleRealNVP": SMALL_IMAGE}
"""Presets without conditioner networks, and image presets, take their own small options."""
IMAGE = (1, 4, 4)
"""The event shape of the image presets (their latent is a vector of the same size)."""
PRESETS = sorted(Preset.registry)
UNCONDITIONAL = {"SINF"}


def event_shape(name: str) -> tuple[int, ...]:
    """The data shape ``small_flow`` builds preset ``name`` for."""
    return IMAGE if "hidden_channels" in SMALL_OPTIONS.get(name, {}) else (D,)


def data(name: str, n: int, dtype: torch.dtype) -> torch.Tensor:
    """``n`` points for preset ``name``: images in (0, 1) (the logit pre-transform's domain), vectors N(1, 4)."""
    shape = event_shape(name)
    return torch.rand(n, *shape, dtype=dtype) if shape == IMAGE else torch.randn(n, *shape, dtype=dtype) * 2 + 1


def small_flow(name: str, context_shape: int | None = None, dtype: torch.dtype = torch.float32) -> Flow:
    """A perturbed (non-identity) flow of preset ``name`` with a fitted standardization (for vector data) and a
    history."""
    torch.manual_seed(0)
    shape = event_shape(name)
    bijection = Preset.registry[name](shape, context_shape, **SMALL_OPTIONS.get(name, SMALL))
    flow = Flow(bijection, DiagonalNormal(bijection.latent_shape.numel()))
    flow = flow.to(dtype)
    x = data(name, 64, dtype)
    context = None if context_shape is None else torch.randn(64, context_shape, dtype=dtype)
    flow.fit(x, context, steps=3, progress=False, seed=0, method="gradient")
    perturb(flow, seed=1)
    return flow


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A saved RealNVP model file."""
    path = tmp_path / "model.safetensors"
    small_flow("RealNVP").save(path)
    return path


def rewrite(path: Path, edit_config: Callable[[dict[str, Any]], Any] | None = None, **replace: torch.Tensor) -> None:
    """Rewrite a model file with its config edited in place and some weights replaced."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    weights = {**safetensors.torch.load_file(str(path)), **replace}
    config = json.loads(metadata["torchnf"])
    if edit_config is not None:
        edit_config(config)
    safetensors.torch.save_file(weights, str(path), metadata={"torchnf": json.dumps(config)})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("context_shape", [None, C], ids=["unconditional", "conditional"])
@pytest.mark.parametrize("name", PRESETS)
def test_round_trip_is_exact(tmp_path: Path, name: str, context_shape: int | None, dtype: torch.dtype) -> None:
    """A loaded flow gives bit-identical log-densities and, under the same seed, identical samples."""
    if context_shape is not None and name in UNCONDITIONAL:
        pytest.skip(f"{name} is unconditional")
    flow = small_flow(name, context_shape, dtype)
    flow.save(tmp_path / "m.safetensors")
    loaded = torchnf.load(tmp_path / "m.safetensors")
    x = data(name, 20, dtype)
    c = None if context_shape is None else torch.randn(20, context_shape, dtype=dtype)
    assert loaded.dtype == dtype and not loaded.training
    assert torch.equal(loaded.log_prob(x, c), flow.log_prob(x, c))
    c1 = None if c is None else c[0]
    torch.manual_seed(3)
    expected = flow.sample(7, c1)
    torch.manual_seed(3)
    assert torch.equal(loaded.sample(7, c1), expected)
    assert loaded.history == flow.history
    assert type(loaded.bijection) is type(flow.bijection)
    assert flow_config(loaded)["preset"] == flow_config(flow)["preset"]


def test_config_records_what_rebuilds_the_flow(saved: Path) -> None:
    """The header holds the format and library versions, the preset, base, dtype and standardization."""
    config = read_config(saved)
    assert config["format_version"] == FORMAT_VERSION
    assert config["library_version"] == torchnf.__version__
    assert config["preset"]["name"] == "RealNVP" and config["preset"]["kwargs"]["layers"] == 2
    assert config["base"] == {"name": "DiagonalNormal", "kwargs": {"event_shape": 3, "learnable": True}}
    assert config["dtype"] == "float32" and config["standardized"] is True
    assert config["dequantization"] is None


def test_loading_onto_a_device_moves_everything(saved: Path) -> None:
    """``device=`` places parameters and buffers there (CPU here; CUDA when available)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    flow = torchnf.load(saved, device=device)
    assert all(t.device.type == device for t in [*flow.parameters(), *flow.buffers()])


def test_a_flow_without_a_preset_cannot_be_saved(tmp_path: Path) -> None:
    """Only presets can be rebuilt from a config; anything else is refused with advice."""
    flow = Flow(Compose([Coupling(D, hidden=(8,))]))
    with pytest.raises(TypeError, match="only flows built on a preset can be saved"):
        flow.save(tmp_path / "m.safetensors")


def test_saving_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    """The error names the missing folder."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        small_flow("NICE").save(tmp_path / "nowhere" / "m.safetensors")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def cut_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x01 this is not a model file" * 10)


def pickle_file(path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, path)  # a pickle: must be refused, never unpickled


def plain_safetensors(path: Path) -> None:
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(path))


def edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    return lambda path: rewrite(path, change)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (truncate, "unreadable|not a readable model file"),
    "header-cut": (cut_header, "not a readable model file"),
    "garbage": (garbage, "not a readable model file"),
    "pickle": (pickle_file, "not a readable model file"),
    "no-config": (plain_safetensors, "not a torchnf model"),
    "newer-format": (edit(lambda c: c.update(format_version=FORMAT_VERSION + 1)), "upgrade torchnf"),
    "bad-format-version": (edit(lambda c: c.update(format_version="one")), "invalid format_version"),
    "unknown-preset": (edit(lambda c: c["preset"].update(name="os.system")), "unknown preset 'os.system'"),
    "unknown-argument": (edit(lambda c: c["preset"]["kwargs"].update(payload="rm -rf /")), "preset config .* invalid"),
    "bad-argument": (edit(lambda c: c["preset"]["kwargs"].update(activation="evil")), "unknown activation"),
    "malformed-base": (edit(lambda c: c.update(base="StandardNormal")), "base distribution entry .* malformed"),
    "shape-mismatch": (edit(lambda c: c["preset"]["kwargs"].update(hidden=[17, 16])), "has shape"),
    "layer-mismatch": (edit(lambda c: c["preset"]["kwargs"].update(layers=3)), "missing"),
    "unknown-dtype": (edit(lambda c: c.update(dtype="int8")), "unsupported dtype"),
    "standardization-flag": (edit(lambda c: c.update(standardized=False)), "standardization"),
    "malformed-history": (edit(lambda c: c.update(history={"steps": 3})), "history .* malformed"),
}


@pytest.mark.parametrize(("damage", "message"), DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_files_get_a_clear_error(saved: Path, damage: Callable[[Path], None], message: str) -> None:
    """Truncated, corrupted, foreign, tampered and too-new files raise ModelFileError naming the problem."""
    damage(saved)
    with pytest.raises(ModelFileError, match=message):
        torchnf.load(saved)


def test_tampered_json_is_refused(saved: Path) -> None:
    """A config that is not JSON is reported as such."""
    weights = safetensors.torch.load_file(str(saved))
    safetensors.torch.save_file(weights, str(saved), metadata={"torchnf": "{not json"})
    with pytest.raises(ModelFileError, match="not valid JSON"):
        torchnf.load(saved)


def test_non_finite_weights_are_refused(saved: Path) -> None:
    """A weight tensor holding NaN is refused rather than loaded into a model that returns NaN."""
    name = next(k for k in safetensors.torch.load_file(str(saved)) if k.endswith("weight"))
    poisoned = safetensors.torch.load_file(str(saved))[name].clone()
    poisoned.view(-1)[0] = float("nan")
    rewrite(saved, **{name: poisoned})
    with pytest.raises(ModelFileError, match="non-finite"):
        torchnf.load(saved)


def test_missing_file_is_named(tmp_path: Path) -> None:
    """The error names the path."""
    with pytest.raises(FileNotFoundError, match=r"no model file at .*absent"):
        torchnf.load(tmp_path / "absent.safetensors")


def test_history_with_non_finite_losses_round_trips(tmp_path: Path) -> None:
    """NaN entries of a history (intervals whose every step was skipped) survive saving."""
    flow = small_flow("MAF")
    assert flow.history is not None
    flow.history.train_loss[0] = float("nan")
    flow.save(tmp_path / "m.safetensors")
    loaded = torchnf.load(tmp_path / "m.safetensors").history
    assert loaded is not None and loaded.train_loss[0] != loaded.train_loss[0]


def test_every_preset_is_covered() -> None:
    """The round-trip test runs over the whole preset registry, which includes the four core presets."""
    assert {"NICE", "RealNVP", "MAF", "IAF"} <= set(PRESETS)
    assert all(cls in Preset.registry.values() for cls in (NICE, RealNVP, MAF, IAF))


def test_metadata_round_trips(tmp_path: Path) -> None:
    """``flow.metadata`` (JSON values) is saved and restored; a non-JSON value is refused when saving."""
    flow = small_flow("NICE")
    flow.metadata = {"columns": ["a", "b", "c"], "source": "data.csv", "rows": 64}
    flow.save(tmp_path / "m.safetensors")
    assert torchnf.load(tmp_path / "m.safetensors").metadata == flow.metadata
    flow.metadata = {"bad": object()}
    with pytest.raises(TypeError, match="cannot save a config value"):
        flow.save(tmp_path / "m.safetensors")
