"""Convergence diagnostics of MCMC chains (:mod:`torchnf.mcmc.diagnostics`, :mod:`torchnf.mcmc.summaries`).

Three kinds of check: statistical (i.i.d. and AR(1) chains, whose effective sample size is known; chains off target,
which R-hat must flag), exact (the vectorized Geyer truncation against a plain loop over the definition, and against
ArviZ where it is installed), and the API (shapes, names, NumPy input, validation, edge cases).
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from torchnf.mcmc.diagnostics import effective_sample_size, rhat
from torchnf.mcmc.summaries import ChainSummary, summary, to_arviz


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def student_t2(*shape: int, seed: int) -> Tensor:
    """Student-t draws with 2 degrees of freedom (infinite variance): z / sqrt(chi2_2 / 2), chi2_2 = -2 log u."""
    g = gen(seed)
    z = torch.randn(*shape, generator=g, dtype=torch.float64)
    return z / torch.sqrt(-torch.log1p(-torch.rand(*shape, generator=g, dtype=torch.float64)))


def ar1(draws: int, chains: int, phi: float, seed: int, noise: Tensor | None = None) -> Tensor:
    """Stationary AR(1) chains x_t = phi x_{t-1} + e_t, shape (draws, chains); standard normal e_t unless given."""
    e = torch.randn(draws, chains, generator=gen(seed), dtype=torch.float64) if noise is None else noise
    x = torch.empty_like(e)
    x[0] = e[0] / math.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[t] = phi * x[t - 1] + e[t]
    return x


# ------------------------------------------------------------------------------------------ a plain reference
def reference_ess(chains: np.ndarray) -> float:
    """ESS of already split chains (chain, draw) written straight from the definition (Vehtari et al. 2021 §3.2):
    direct autocovariances, then Geyer's pairs summed one by one while positive, made monotone, with the paper's
    final half-pair term."""
    m, n = chains.shape
    centered = chains - chains.mean(axis=1, keepdims=True)
    acov = np.array([[np.dot(c[: n - t], c[t:]) / n for t in range(n)] for c in centered])
    w = acov[:, 0].mean() * n / (n - 1)
    var_plus = w * (n - 1) / n + chains.mean(axis=1).var(ddof=1)

    def rho(t: int) -> float:
        return 1.0 if t == 0 else 1 - (w - acov[:, t].mean()) / var_plus

    tau_pairs: list[float] = []  # monotone pair sums kept so far
    k = 0
    while True:
        pair = rho(2 * k) + rho(2 * k + 1)
        if pair <= 0 or 2 * (k + 1) + 2 >= n:  # stop at a non-positive pair, or at the last one there is
            break
        tau_pairs.append(min(pair, tau_pairs[-1]) if tau_pairs else pair)
        k += 1
    last = rho(2 * k)
    if pair < 0:
        last = max(last, 0.0)
    tau = -1 + 2 * sum(tau_pairs) + last
    total = m * n
    return total / max(tau, 1 / math.log10(total))


def split(x: np.ndarray) -> np.ndarray:
    """(draws, chains) → (2 chains, half) with the middle draw of an odd count dropped."""
    half = x.shape[0] // 2
    return np.concatenate([x[:half].T, x[x.shape[0] - half :].T])


@pytest.mark.parametrize("draws", [4, 5, 6, 7, 8, 9, 10, 13, 40, 301])
@pytest.mark.parametrize("phi", [-0.8, 0.0, 0.6, 0.97])
def test_basic_ess_matches_the_definition(draws: int, phi: float) -> None:
    x = ar1(draws, 3, phi, seed=draws)
    x[:, 1] += 0.5  # between-chain variance enters
    ours = float(effective_sample_size(x, "basic"))
    assert ours == pytest.approx(reference_ess(split(x.numpy())), rel=1e-9)


# ------------------------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize("kind", ["basic", "bulk", "tail"])
def test_iid_draws_have_ess_near_their_count(kind: str) -> None:
    x = torch.randn(4000, 4, 3, generator=gen(0))
    ess = effective_sample_size(x, kind)
    assert ess.shape == (3,) and ess.dtype == torch.float64
    assert torch.all((ess > 0.9 * 16000) & (ess < 1.1 * 16000)), ess


@pytest.mark.parametrize(("phi", "tolerance"), [(0.5, 0.07), (0.9, 0.15)])
def test_ar1_ess_matches_theory(phi: float, tolerance: float) -> None:
    """An AR(1) chain's integrated autocorrelation time is (1 + phi) / (1 - phi). Over 20 seeds the ratio of the
    estimate to the theory had sd 0.017 (phi = 0.5) and 0.038 (phi = 0.9): the tolerances are about 4 sd."""
    x = ar1(5000, 16, phi, seed=1)
    theory = x.numel() * (1 - phi) / (1 + phi)
    for kind in ("basic", "bulk"):  # a Gaussian chain: ranks change little
        assert float(effective_sample_size(x, kind)) == pytest.approx(theory, rel=tolerance)


def test_antithetic_chain_has_ess_above_its_count() -> None:
    x = ar1(4000, 2, -0.5, seed=2)
    assert float(effective_sample_size(x, "basic")) == pytest.approx(3 * 8000, rel=0.15)


def test_tail_ess_is_low_when_the_tails_mix_slowly() -> None:
    """Independent draws times a slowly varying scale (stochastic volatility): the bulk (the sign and rank of
    independent normals) mixes at once, the excursions into the tails come in long bursts."""
    log_scale = ar1(4000, 4, 0.99, seed=3) * math.sqrt(1 - 0.99**2)  # stationary sd 1
    x = torch.randn(4000, 4, generator=gen(4), dtype=torch.float64) * log_scale.exp()
    bulk, tail = float(effective_sample_size(x, "bulk")), float(effective_sample_size(x, "tail"))
    assert bulk > 0.8 * x.numel()
    assert tail < 0.3 * bulk


def test_rhat_is_one_for_mixed_chains() -> None:
    x = ar1(2000, 4, 0.5, seed=5)
    assert float(rhat(x)) < 1.01
    assert float(rhat(x, "basic")) < 1.01


@pytest.mark.parametrize("kind", ["rank", "basic"])
def test_rhat_flags_a_shifted_chain(kind: str) -> None:
    x = ar1(2000, 4, 0.5, seed=6)
    x[:, 2] += 1.5
    assert float(rhat(x, kind)) > 1.1


def test_rank_rhat_flags_a_chain_of_another_scale() -> None:
    """Same location, triple scale: invisible to split-R-hat of the raw draws, caught by the folded draws."""
    x = ar1(2000, 4, 0.0, seed=7)
    x[:, 0] *= 3.0
    assert float(rhat(x, "basic")) < 1.02
    assert float(rhat(x, "rank")) > 1.1


def test_one_drifting_chain_is_flagged_by_splitting() -> None:
    x = ar1(2000, 1, 0.5, seed=8) + torch.linspace(0, 4, 2000, dtype=torch.float64).unsqueeze(1)
    assert float(rhat(x)) > 1.1
    assert float(rhat(ar1(2000, 1, 0.5, seed=8))) < 1.02


def test_rank_diagnostics_ignore_monotone_transforms() -> None:
    x = ar1(1000, 4, 0.7, seed=9)
    x[:, 0] += 0.3
    for f in (torch.exp, lambda v: v**3):
        torch.testing.assert_close(effective_sample_size(f(x)), effective_sample_size(x))
        torch.testing.assert_close(rhat(f(x)), rhat(x))


def test_heavy_tails_break_basic_but_not_rank_diagnostics() -> None:
    """Cauchy draws have no mean, so basic ESS and R-hat are noise; the rank versions still see i.i.d. draws."""
    x = torch.tan(math.pi * (torch.rand(2000, 4, generator=gen(23), dtype=torch.float64) - 0.5))
    assert float(effective_sample_size(x, "bulk")) == pytest.approx(8000, rel=0.1)
    assert float(rhat(x)) < 1.01


# ---------------------------------------------------------------------------------------------------------- API
@pytest.mark.parametrize("event_shape", [(), (2, 3)])
def test_one_value_per_coordinate(event_shape: tuple[int, ...]) -> None:
    x = torch.randn(200, 3, *event_shape, generator=gen(10))
    flat = x.reshape(200, 3, -1)
    for fn, kind in [(effective_sample_size, "bulk"), (effective_sample_size, "tail"), (rhat, "rank")]:
        value = fn(x, kind)
        assert value.shape == event_shape and value.dtype == torch.float64
        each = torch.stack([fn(flat[:, :, i], kind) for i in range(flat.shape[-1])])
        torch.testing.assert_close(value.reshape(-1), each)


def test_numpy_input_gives_the_same_values() -> None:
    x = torch.randn(100, 2, 2, generator=gen(11), dtype=torch.float64)
    for kind in ("bulk", "tail", "basic"):
        torch.testing.assert_close(effective_sample_size(x.numpy(), kind), effective_sample_size(x, kind))
    torch.testing.assert_close(rhat(x.numpy()), rhat(x))
    assert effective_sample_size(np.arange(40).reshape(10, 4)).dtype == torch.float64  # integers are accepted


def test_odd_draw_counts_drop_the_middle_draw() -> None:
    x = torch.randn(101, 3, generator=gen(12))
    without_middle = torch.cat([x[:50], x[51:]])
    torch.testing.assert_close(effective_sample_size(x, "basic"), effective_sample_size(without_middle, "basic"))
    torch.testing.assert_close(rhat(x, "basic"), rhat(without_middle, "basic"))


def test_constant_coordinates_are_nan_without_warnings() -> None:
    x = torch.randn(50, 2, 3, generator=gen(13))
    x[..., 1] = 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = [effective_sample_size(x, k) for k in ("bulk", "tail", "basic")]
        values += [rhat(x, k) for k in ("rank", "basic")]
        table = summary(x)
    for v in values:
        assert math.isnan(v[1]) and bool(torch.isfinite(v[[0, 2]]).all())
    assert "nan" in str(table).splitlines()[3]
    stuck = torch.ones(20, 2)
    stuck[:, 1] = 2.0  # each chain constant, the chains differ
    assert math.isinf(rhat(stuck, "basic")) and math.isinf(rhat(stuck))


def test_summary_rows_names_and_table() -> None:
    x = torch.randn(300, 4, 2, 3, generator=gen(14))
    table = summary(x)
    assert isinstance(table, ChainSummary)
    assert table.names[:2] == ("x[0, 0]", "x[0, 1]") and len(table.names) == 6
    assert all(getattr(table, c).shape == (2, 3) for c in ChainSummary.COLUMNS)
    row = table.rows[4]
    assert set(row) == {"name", *ChainSummary.COLUMNS} and row["name"] == "x[1, 1]"
    assert row["mean"] == pytest.approx(float(x[:, :, 1, 1].double().mean()))
    assert row["q5"] == pytest.approx(float(np.quantile(x[:, :, 1, 1].numpy().astype(float), 0.05)))
    assert row["rhat"] == pytest.approx(float(rhat(x)[1, 1]))
    lines = str(table).splitlines()
    assert len(lines) == 2 + 6 and lines[0].startswith("| name") and lines[1].startswith("| :--")
    assert summary(x[..., 0, 0], names="theta").names == ("theta",)
    assert summary(x[..., 0, :], names=["a", "b", "c"]).names == ("a", "b", "c")
    with pytest.raises(ValueError, match="names must be a string or 3 strings"):
        summary(x[..., 0, :], names=["a", "b"])


@pytest.mark.parametrize(
    ("samples", "error", "match"),
    [
        (torch.randn(100), ValueError, r"samples must have shape \(draws, chains"),
        (torch.randn(3, 4), ValueError, "samples must have at least 4 draws"),
        (torch.randn(10, 0), ValueError, "at least one chain"),
        (torch.randn(10, 2, 0), ValueError, "empty event shape"),
        (torch.full((10, 2), math.nan), ValueError, "samples contains 20 NaN or infinite"),
        (np.array([["a"] * 2] * 10), TypeError, "samples must be a numeric array"),
        (torch.ones(10, 2, dtype=torch.complex64), TypeError, "samples must be real"),
    ],
)
def test_bad_samples_are_refused(samples: object, error: type[Exception], match: str) -> None:
    for call in (effective_sample_size, rhat, summary):
        with pytest.raises(error, match=match):
            call(samples)


def test_unknown_kinds_list_the_options() -> None:
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="unknown kind 'mean'; expected one of 'bulk', 'tail', 'basic'"):
        effective_sample_size(x, "mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected one of 'rank', 'basic'"):
        rhat(x, "folded")  # type: ignore[arg-type]


def test_to_arviz_without_arviz_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "arviz", None)  # makes `import arviz` fail
    with pytest.raises(ImportError, match="pip install arviz"):
        to_arviz(torch.randn(10, 2))


# ------------------------------------------------------------------------------------------------------ ArviZ
@pytest.fixture(scope="module")
def arviz() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ 0.x announces its refactor with a FutureWarning on import
        return pytest.importorskip("arviz")


def test_agrees_with_arviz(arviz: Any) -> None:
    """Same definitions, same numbers: bulk/tail/mean ESS and rank/split R-hat, on chains with ties, heavy tails,
    a shifted chain, odd draw counts. (Draw counts keep q (S - 1) off integers for q = 5%, 95%: at an integer
    position SciPy's quantile, which ArviZ uses, rounds below the draw, and one indicator flips.)"""
    heavy = student_t2(501, 4, seed=24)
    cases = {
        "ar1": ar1(1000, 4, 0.8, seed=15),
        "shifted": ar1(333, 3, 0.3, seed=16) + torch.tensor([0.0, 0.0, 0.7], dtype=torch.float64),
        "ties": torch.round(ar1(250, 2, 0.6, seed=17) * 2) / 2,
        "heavy": ar1(501, 4, 0.5, seed=18, noise=heavy),
        "short": ar1(9, 2, 0.2, seed=19),
    }
    methods = [("bulk", "bulk"), ("tail", "tail"), ("basic", "mean")]
    for name, x in cases.items():
        data = x.numpy().T  # ArviZ's (chain, draw)
        for ours, theirs in methods:
            expected = float(arviz.ess(data, method=theirs))
            assert float(effective_sample_size(x, ours)) == pytest.approx(expected, rel=1e-6), (name, ours)
        for ours, theirs in [("rank", "rank"), ("basic", "split")]:
            expected = float(arviz.rhat(data, method=theirs))
            assert float(rhat(x, ours)) == pytest.approx(expected, rel=1e-6), (name, ours)


def test_to_arviz_layout(arviz: Any) -> None:
    x = torch.randn(50, 3, 2, generator=gen(20))
    lp = torch.randn(50, 3, generator=gen(21))
    data = to_arviz(x, names="theta", log_prob=lp, sample_stats={"accept": torch.rand(50, 3, generator=gen(22))})
    theta = data.posterior["theta"]
    assert theta.dims[:2] == ("chain", "draw") and theta.shape == (3, 50, 2)
    np.testing.assert_array_equal(theta.values[1, 7], x[7, 1].numpy())
    np.testing.assert_array_equal(data.sample_stats["lp"].values, lp.numpy().T)
    assert data.sample_stats["accept"].shape == (3, 50)
    split_names = to_arviz(x, names=["a", "b"])
    np.testing.assert_array_equal(split_names.posterior["b"].values, x[..., 1].numpy().T)
    assert float(arviz.rhat(data)["theta"][0]) == pytest.approx(float(rhat(x)[0]), rel=1e-6)
    with pytest.raises(ValueError, match=r"log_prob must have shape \(50, 3\)"):
        to_arviz(x, log_prob=lp[:10])
