r"""The scikit-learn estimators of :mod:`torchnf.sklearn`: scikit-learn's own estimator checks, the API contract
(reproducibility, validation, pickling), pipelines and grid search, and the detector's thresholding rule.

The detector flags :math:`x` when :math:`\log p(x) < \text{offset\_}`, the ``contamination`` quantile of the
training scores; the last test checks that a flow's density level sets separate two moons from uniform clutter
better than a Gaussian's (EllipticEnvelope) by a margin of ROC AUC.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import joblib
import numpy as np
import pytest
import torch
from sklearn.covariance import EllipticEnvelope
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from torchnf import MAF
from torchnf.datasets import two_moons
from torchnf.sklearn import FlowDensityEstimator, FlowOutlierDetector

pytestmark = pytest.mark.usefixtures("one_thread")  # hundreds of tiny fits: threads only add synchronization

TINY = {"layers": 2, "hidden": (8,)}


def tiny_density(**params: Any) -> FlowDensityEstimator:
    return FlowDensityEstimator(**{"flow_options": TINY, "steps": 30, "random_state": 0, **params})


def tiny_detector(**params: Any) -> FlowOutlierDetector:
    return FlowOutlierDetector(**{"flow_options": TINY, "steps": 30, "random_state": 0, **params})


@pytest.fixture(scope="module")
def moons() -> np.ndarray:
    return two_moons(200, noise=0.1, seed=0)


@pytest.fixture(scope="module")
def fitted(moons: np.ndarray) -> FlowDensityEstimator:
    return tiny_density().fit(moons)


# -- scikit-learn's estimator checks -------------------------------------------------------------------------------


@parametrize_with_checks(
    [FlowDensityEstimator(flow_options=TINY, steps=20), FlowOutlierDetector(flow_options=TINY, steps=20)]
)
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


# -- the density estimator -----------------------------------------------------------------------------------------


def test_score_is_the_mean_log_likelihood(fitted: FlowDensityEstimator, moons: np.ndarray) -> None:
    scores = fitted.score_samples(moons)
    assert scores.dtype == np.float64 and scores.shape == (len(moons),)
    assert fitted.score(moons) == pytest.approx(scores.mean(), rel=1e-12)
    with torch.no_grad():
        direct = fitted.flow_.log_prob(torch.as_tensor(moons, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(scores, direct, rtol=1e-6)
    assert fitted.n_features_in_ == 2 and fitted.n_iter_ == 30 and fitted.history_ is fitted.flow_.history


def test_sample_is_an_array_reproducible_by_random_state(fitted: FlowDensityEstimator) -> None:
    draws = fitted.sample(7, random_state=3)
    assert isinstance(draws, np.ndarray) and draws.dtype == np.float64 and draws.shape == (7, 2)
    np.testing.assert_array_equal(draws, fitted.sample(7, random_state=3))
    assert not np.array_equal(draws, fitted.sample(7, random_state=4))
    assert fitted.sample().shape == (1, 2)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        fitted.sample(0)


def test_random_state_reproduces_a_fit_without_touching_torch_global_rng(moons: np.ndarray) -> None:
    before = torch.get_rng_state()
    first = tiny_density(random_state=5).fit(moons)
    first.sample(3, random_state=0)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(
        first.score_samples(moons), tiny_density(random_state=5).fit(moons).score_samples(moons)
    )
    assert not np.allclose(first.score_samples(moons), tiny_density(random_state=6).fit(moons).score_samples(moons))


def test_no_random_state_draws_from_numpy_global_generator(moons: np.ndarray) -> None:
    """As in scikit-learn, ``random_state=None`` uses NumPy's global generator, which np.random.seed fixes."""
    np.random.seed(11)
    first = tiny_density(random_state=None).fit(moons).score_samples(moons)
    np.random.seed(11)
    np.testing.assert_array_equal(first, tiny_density(random_state=None).fit(moons).score_samples(moons))


def test_preset_by_class_or_name_in_any_case(moons: np.ndarray) -> None:
    by_class = tiny_density(flow=MAF).fit(moons).score_samples(moons)
    np.testing.assert_array_equal(by_class, tiny_density(flow="maf").fit(moons).score_samples(moons))


def test_fit_options_reach_torchnf_fit(moons: np.ndarray) -> None:
    """fit_options={"epochs": 2} with steps=None: two passes over the 180 training rows in batches of 60."""
    estimator = tiny_density(
        steps=None, batch_size=60, patience=None, fit_options={"epochs": 2, "lr_schedule": "cosine"}
    )
    estimator.fit(moons)
    assert estimator.n_iter_ == 6
    assert estimator.history_.lr[-1] < 1e-4  # the cosine schedule decayed the rate to zero


def test_float64_flows(moons: np.ndarray) -> None:
    estimator = tiny_density(dtype="float64").fit(moons)
    assert estimator.flow_.dtype == torch.float64
    assert estimator.score_samples(moons).dtype == np.float64


INVALID = [
    ({"flow": "Nope"}, "unknown flow 'Nope'; expected a preset name"),
    ({"flow": 3}, "flow must be a preset name"),
    ({"flow": "Glow", "flow_options": None}, r"cannot build Glow .* for 2 feature\(s\): Glow acts on images"),
    ({"flow_options": {"hiden": (8,)}}, "cannot build RealNVP with flow_options=.*hiden"),
    ({"flow_options": [("layers", 2)]}, "flow_options must be a dict"),
    ({"steps": 0}, "steps must be a positive int or None, got 0"),
    ({"batch_size": 1.5}, "batch_size must be a positive int, got 1.5"),
    ({"lr": 0.0}, r"lr must be a number in \(0.0, inf\)"),
    ({"validation_fraction": 1.0}, r"validation_fraction must be a number in \[0.0, 1.0\)"),
    ({"patience": 0}, "patience must be a positive int or None"),
    ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
    ({"device": "nodevice"}, "device must name a torch device"),
    ({"fit_options": {"seed": 1}}, "fit_options may not set seed"),
    ({"fit_options": {"nope": 1}}, "unknown fit_options nope; expected options of torchnf.fit"),
    ({"flow": "SINF", "flow_options": None}, "steps and epochs count gradient steps, but SINF is fitted greedily"),
]


@pytest.mark.parametrize(("params", "message"), INVALID, ids=[str(p) for p, _ in INVALID])
def test_fit_refuses_invalid_hyperparameters(params: dict[str, Any], message: str, moons: np.ndarray) -> None:
    estimator = tiny_density(**params)  # no checks when constructed: scikit-learn's convention
    assert estimator.get_params()["flow"] == params.get("flow", "RealNVP")
    with pytest.raises(ValueError, match=message):
        estimator.fit(moons)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused(bad: float, fitted: FlowDensityEstimator, moons: np.ndarray) -> None:
    x = moons.copy()
    x[3, 1] = bad
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        tiny_density().fit(x)
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        fitted.score_samples(x)


def test_pickle_and_joblib_round_trip(fitted: FlowDensityEstimator, moons: np.ndarray, tmp_path: Any) -> None:
    scores, draws = fitted.score_samples(moons), fitted.sample(5, random_state=0)
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    buffer.seek(0)
    path = tmp_path / "detector.joblib"
    joblib.dump(tiny_detector().fit(moons), path)
    for restored in (pickle.loads(pickle.dumps(fitted)), joblib.load(buffer)):
        np.testing.assert_array_equal(restored.score_samples(moons), scores)
        np.testing.assert_array_equal(restored.sample(5, random_state=0), draws)
    detector = joblib.load(path)
    assert detector.predict(moons).shape == (len(moons),) and isinstance(detector.offset_, float)


# -- the outlier detector ------------------------------------------------------------------------------------------


def test_detector_thresholds_at_the_contamination_quantile(moons: np.ndarray) -> None:
    detector = tiny_detector(contamination=0.05).fit(moons)
    scores = detector.score_samples(moons)
    assert detector.offset_ == pytest.approx(np.percentile(scores, 5.0), rel=1e-12)
    np.testing.assert_allclose(detector.decision_function(moons), scores - detector.offset_)
    labels = detector.predict(moons)
    assert labels.dtype.kind == "i" and set(np.unique(labels)) == {-1, 1}
    assert np.sum(labels == -1) == 10  # ceil(0.05 * 200) rows of the training set
    np.testing.assert_array_equal(labels, np.where(scores >= detector.offset_, 1, -1))
    np.testing.assert_array_equal(tiny_detector(contamination=0.05).fit_predict(moons), labels)


def test_detector_flags_a_far_point(moons: np.ndarray) -> None:
    detector = tiny_detector(contamination=0.01, steps=100).fit(moons)
    assert detector.predict([[0.0, 1.0], [6.0, 6.0], [-4.0, 3.0]]).tolist() == [1, -1, -1]


@pytest.mark.parametrize(
    ("contamination", "message"),
    [
        ("auto", "contamination='auto' is not supported"),
        (0.0, r"contamination must be a number in \(0.0, 0.5\], got 0.0"),
        (0.6, r"contamination must be a number in \(0.0, 0.5\], got 0.6"),
        (None, "contamination must be a number"),
    ],
)
def test_detector_refuses_invalid_contamination(contamination: Any, message: str, moons: np.ndarray) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_detector(contamination=contamination).fit(moons)


# -- pipelines and grid search -------------------------------------------------------------------------------------


def test_pipeline_after_a_scaler_shifts_the_density_by_the_log_scales(moons: np.ndarray) -> None:
    """The flow standardizes its data itself, so the scaled fit is the raw fit seen in other units: the log-density
    of the scaled rows is the raw one plus :math:`\\sum_j \\log\\sigma_j` (float64, to compare closely)."""
    x = moons * [3.0, 0.5] + [10.0, -2.0]
    raw = tiny_density(dtype="float64").fit(x)
    pipeline = make_pipeline(StandardScaler(), tiny_density(dtype="float64")).fit(x)
    shift = np.log(pipeline[0].scale_).sum()
    np.testing.assert_allclose(pipeline.score_samples(x), raw.score_samples(x) + shift, rtol=1e-6)
    assert pipeline.score(x) == pytest.approx(raw.score(x) + shift, rel=1e-6)


def test_detector_in_a_pipeline_after_pca(moons: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    x = np.hstack([moons, moons @ rng.normal(size=(2, 2)) + 0.01 * rng.normal(size=(len(moons), 2))])  # rank ~2 in 4D
    pipeline = Pipeline([("pca", PCA(n_components=2)), ("detector", tiny_detector(contamination=0.1))]).fit(x)
    labels = pipeline.predict(x)
    assert labels.shape == (len(x),) and np.sum(labels == -1) == 20
    np.testing.assert_array_equal(pipeline.fit_predict(x), labels)
    detector = pipeline.named_steps["detector"]
    np.testing.assert_allclose(
        pipeline.decision_function(x), detector.score_samples(pipeline[0].transform(x)) - detector.offset_
    )


def test_grid_search_maximizes_the_held_out_log_likelihood(moons: np.ndarray) -> None:
    """The default score is the mean log-likelihood, higher is better: a trained flow beats an untrained one, and
    each candidate's cross-validated score is the mean of its folds' scores."""
    estimator = FlowDensityEstimator(flow_options=TINY, lr=5e-3, random_state=0)
    search = GridSearchCV(estimator, {"steps": [1, 100]}, cv=2).fit(moons)
    assert search.best_params_ == {"steps": 100}
    results = search.cv_results_
    assert search.best_score_ == pytest.approx(np.max(results["mean_test_score"]))
    folds = (results["split0_test_score"] + results["split1_test_score"]) / 2
    np.testing.assert_allclose(results["mean_test_score"], folds)
    assert search.score(moons) == pytest.approx(search.best_estimator_.score(moons))


def test_grid_search_over_presets_and_hidden_sizes_in_a_pipeline(moons: np.ndarray) -> None:
    pipeline = Pipeline([("scale", StandardScaler()), ("density", tiny_density(steps=20))])
    options = [{"layers": 2, "hidden": (4,)}, {"layers": 2, "hidden": (16,)}]
    grid = {"density__flow": ["RealNVP", "MAF"], "density__flow_options": options}
    search = GridSearchCV(pipeline, grid, cv=2).fit(moons)
    assert len(search.cv_results_["params"]) == 4 and np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_.named_steps["density"]
    assert best.flow == search.best_params_["density__flow"] and best.flow_options in options
    assert search.score(moons) == pytest.approx(search.best_estimator_.score(moons))


# -- quality ----------------------------------------------------------------------------------------------------------


def clutter(seed: int, n: int = 600, n_outliers: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Two moons (noise 0.06, label 1) and uniform clutter over their bounding box (label 0)."""
    rng = np.random.default_rng(seed)
    outliers = rng.uniform([-1.5, -1.0], [2.5, 1.5], size=(n_outliers, 2))
    return np.vstack([two_moons(n, noise=0.06, seed=seed), outliers]), np.r_[np.ones(n), np.zeros(n_outliers)]


def test_flow_detector_beats_a_gaussian_envelope_on_moons_with_clutter() -> None:
    """ROC AUC on fresh data after fitting to contaminated data (10% clutter). Over data seeds 0-9 (with
    random_state = seed) the flow's AUC was 0.85-0.95 against EllipticEnvelope's 0.72-0.83, ahead by 0.067 to 0.227
    (median 0.15), and its accuracy was 0.90-0.96; the margin asked is 0.05 (seed 0: 0.886 against 0.747). About
    3 s: fast enough for the default run."""
    x, _ = clutter(0)
    x_test, y_test = clutter(100)
    options = {"flow_options": {"layers": 4, "hidden": (32, 32)}, "steps": 400, "lr": 3e-3, "random_state": 0}
    detector = FlowOutlierDetector(contamination=0.1, **options).fit(x)
    envelope = EllipticEnvelope(contamination=0.1, random_state=0).fit(x)
    flow_auc = roc_auc_score(y_test, detector.score_samples(x_test))
    gaussian_auc = roc_auc_score(y_test, envelope.score_samples(x_test))
    assert flow_auc > gaussian_auc + 0.05, (flow_auc, gaussian_auc)
    assert np.mean(detector.predict(x_test) == np.where(y_test == 1, 1, -1)) > 0.9
