r"""scikit-learn estimators backed by a normalizing flow: a density estimator and an outlier detector.

Both fit a :class:`~torchnf.flow.Flow`, built from a preset of :attr:`torchnf.Preset.registry` (``"RealNVP"``,
``"MAF"``, ``"CouplingRQNSF"``, ...), to the rows :math:`x_1, \dots, x_n \in \mathbb R^D` of ``X`` by maximum
likelihood (:func:`torchnf.fit`), and score a row by its log-density in the units of ``X``,

.. math::

    s(x) = \log p_\theta(x) = \log p_Z\big(f_\theta(x)\big) + \log\big|\det J_{f_\theta}(x)\big|,

which is what ``score_samples`` returns (higher: more typical of the training data). They follow the
scikit-learn API (Buitinck et al. 2013, *API design for machine learning software: experiences from the
scikit-learn project*): hyperparameters are constructor arguments, stored unchanged and checked in ``fit``;
what ``fit`` learns ends with an underscore (``flow_``, ``history_``, ``n_features_in_``); estimators clone,
pickle, and work inside a :class:`~sklearn.pipeline.Pipeline` and :class:`~sklearn.model_selection.GridSearchCV`.
In a pipeline the density is that of the data the flow receives: after a ``StandardScaler`` it is shifted by the
constant :math:`\sum_j \log\sigma_j` (rankings of rows and of models are unchanged); after a ``PCA`` with fewer
components it is the density of the projection.

A fit is reproducible through ``random_state``, which seeds the initialization of the flow, the validation split
and the minibatch order, inside :func:`torch.random.fork_rng`: the global torch random state is left untouched.
"""

from __future__ import annotations

import inspect
import logging
import numbers
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, DensityMixin, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .architectures import Preset
from .flow import Flow
from .training import fit as fit_flow

if TYPE_CHECKING:
    from sklearn.utils import Tags

__all__ = ["FlowDensityEstimator", "FlowOutlierDetector"]

logger = logging.getLogger(__name__)

SCORE_CHUNK = 8192  # rows per log_prob call when scoring
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# options of torchnf.fit that the estimators set themselves, so fit_options may not
RESERVED_FIT_OPTIONS = frozenset(
    [
        "validation_data",
        "validation_context",
        "steps",
        "batch_size",
        "lr",
        "validation_fraction",
        "patience",
        "seed",
        "progress",
    ]
)
FIT_OPTIONS = frozenset(inspect.signature(fit_flow).parameters) - {"flow", "x", "context"} - RESERVED_FIT_OPTIONS


# -- checks of hyperparameters, run by fit -------------------------------------------------------------------------


def _preset_type(flow: Any) -> type[Preset]:
    """The preset class that ``flow`` names (case-insensitively, like the command line's ``--arch``) or is."""
    if isinstance(flow, type) and issubclass(flow, Preset):
        return flow
    choices = ", ".join(sorted(Preset.registry))
    if isinstance(flow, str):
        names = {name.lower(): name for name in Preset.registry}
        if flow.lower() in names:
            return Preset.registry[names[flow.lower()]]
        raise ValueError(f"unknown flow {flow!r}; expected a preset name: {choices}")
    raise ValueError(f"flow must be a preset name ({choices}) or a torchnf.Preset subclass, got {flow!r}")


def _options(value: Any, name: str) -> dict[str, Any]:
    """A copy of a dictionary of keyword arguments (``None``: none), refusing anything else."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{name} must be a dict of keyword arguments or None, got {value!r}")
    return dict(value)


def _int(name: str, value: Any, *, optional: bool = False) -> int | None:
    """A positive integer (NumPy integers too, as parameter grids make them), or ``None`` when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        expected = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def _real(name: str, value: Any, low: float, high: float, *, closed_low: bool, closed_high: bool) -> float:
    """A real number in the interval from ``low`` to ``high``, closed at either end as told."""
    inside = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and (low <= value if closed_low else low < value)
        and (value <= high if closed_high else value < high)
    )
    if not inside:
        interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def _dtype(value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {value!r}")


def _device(value: Any) -> torch.device:
    try:
        return torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {value!r}") from None


def _contamination(value: Any) -> float:
    if isinstance(value, str) and value == "auto":
        raise ValueError(
            "contamination='auto' is not supported: a log-density has no threshold that holds for every data set "
            "(rescaling the data by A shifts it by -log|det A|), so give the expected proportion of outliers, a "
            "number in (0, 0.5]"
        )
    return _real("contamination", value, 0.0, 0.5, closed_low=False, closed_high=True)


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generators for the block, restoring the global random state (CPU and ``device``) after it."""
    devices = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _seed(random_state: Any) -> int:
    """A torch seed drawn from a scikit-learn ``random_state`` (``None``: NumPy's global generator)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


# -- the shared estimator --------------------------------------------------------------------------------------------


class _FlowEstimator(BaseEstimator):
    """Fitting and scoring shared by :class:`FlowDensityEstimator` and :class:`FlowOutlierDetector`."""

    def __init__(
        self,
        flow: str | type[Preset] = "RealNVP",
        flow_options: dict[str, Any] | None = None,
        *,
        steps: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-3,
        validation_fraction: float = 0.1,
        patience: int | None = 10,
        fit_options: dict[str, Any] | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.flow = flow
        self.flow_options = flow_options
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.fit_options = fit_options
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    def _fit_flow(self, X: ArrayLike) -> np.ndarray:
        """Check the hyperparameters and ``X``, fit ``flow_`` and return ``X`` as a float array."""
        preset_type = _preset_type(self.flow)
        flow_options = _options(self.flow_options, "flow_options")
        fit_options = _options(self.fit_options, "fit_options")
        reserved = sorted(set(fit_options) & RESERVED_FIT_OPTIONS)
        if reserved:
            raise ValueError(
                f"fit_options may not set {', '.join(reserved)}: the estimator's own parameters (or fit) set them"
            )
        unknown = sorted(set(fit_options) - FIT_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown fit_options {', '.join(unknown)}; expected options of torchnf.fit: "
                f"{', '.join(sorted(FIT_OPTIONS))}"
            )
        training = {
            "steps": _int("steps", self.steps, optional=True),
            "batch_size": _int("batch_size", self.batch_size),
            "lr": _real("lr", self.lr, 0.0, np.inf, closed_low=False, closed_high=False),
            "validation_fraction": _real(
                "validation_fraction", self.validation_fraction, 0.0, 1.0, closed_low=True, closed_high=False
            ),
            "patience": _int("patience", self.patience, optional=True),
        }
        dtype, device = _dtype(self.dtype), _device(self.device)

        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        seed = _seed(self.random_state)
        with _seeded(seed, device):
            try:
                bijection = preset_type(X.shape[1], **flow_options)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"cannot build {preset_type.__name__} with flow_options={flow_options} for {X.shape[1]} "
                    f"feature(s): {error}"
                ) from error
            flow = Flow(bijection).to(dtype=dtype, device=device)
            x = torch.tensor(X, dtype=dtype, device=device)  # a copy: X may be a read-only memory map
            history = fit_flow(flow, x, **training, **fit_options, seed=seed, progress=False)
        self.flow_ = flow
        self.history_ = history
        self.n_iter_ = history.step[-1] if history.step else 0
        logger.info(
            "fitted %s to %d rows of %d features: %s", preset_type.__name__, X.shape[0], X.shape[1], history.stop_reason
        )
        return X

    def _log_density(self, X: np.ndarray) -> np.ndarray:
        """Log-density of each row of a validated float array, in float64, in evaluation mode."""
        flow = self.flow_
        scores = np.empty(X.shape[0], dtype=np.float64)
        was_training = flow.training
        flow.eval()
        try:
            with torch.no_grad():
                for start in range(0, X.shape[0], SCORE_CHUNK):
                    chunk = torch.tensor(X[start : start + SCORE_CHUNK], dtype=flow.dtype, device=flow.device)
                    scores[start : start + SCORE_CHUNK] = flow.log_prob(chunk).double().cpu().numpy()
        finally:
            flow.train(was_training)
        if not np.isfinite(scores).all():
            logger.warning("%d of %d log-densities are not finite", int((~np.isfinite(scores)).sum()), len(scores))
        return scores

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        r"""The log-density :math:`\log p(x)` of each row of ``X`` under the fitted flow (nats, float64)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self._log_density(X)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        # A fixed random_state reproduces a fit exactly with torch's CPU kernels, not necessarily with CUDA's.
        try:
            tags.non_deterministic = _device(self.device).type != "cpu"
        except ValueError:
            tags.non_deterministic = False
        return tags


# -- the public estimators -------------------------------------------------------------------------------------------


class FlowDensityEstimator(DensityMixin, _FlowEstimator):
    r"""Density estimation with a normalizing flow, as a scikit-learn estimator.

    ``fit`` maximizes the log-likelihood :math:`\sum_i \log p_\theta(x_i)` of the rows of ``X`` over the parameters
    :math:`\theta` of a flow built from a preset (minibatch Adam, early stopping on a held-out fraction of the rows
    whose best weights are kept; see :func:`torchnf.fit`). Then

    * ``score_samples(X)`` is :math:`\log p_\theta(x)` per row, in nats, in the units of ``X``;
    * ``score(X)`` is the **mean** log-likelihood :math:`\frac1n\sum_{i=1}^n \log p_\theta(x_i)`, as
      :meth:`sklearn.mixture.GaussianMixture.score` (not the total of :meth:`sklearn.neighbors.KernelDensity.score`):
      it compares across cross-validation folds of different sizes, and is what ``GridSearchCV`` maximizes;
    * ``sample(n)`` draws :math:`x = f_\theta^{-1}(z)`, :math:`z \sim p_Z`, as an ``(n, D)`` array, like
      :meth:`sklearn.neighbors.KernelDensity.sample`.

    A flow (Papamakarios et al. 2021, *Normalizing flows for probabilistic modeling and inference*, JMLR 22)
    evaluates both exactly, unlike a kernel density estimate, whose cost grows with the training set.

    Args:
        flow: the preset: a name of :attr:`torchnf.Preset.registry` (any case), such as ``"RealNVP"``, ``"MAF"``,
            ``"NICE"``, ``"CouplingRQNSF"`` or ``"SINF"`` (fitted greedily, without ``steps``), or a
            :class:`~torchnf.Preset` subclass. Image presets (Glow, MultiscaleRealNVP) do not model table rows.
        flow_options: keyword arguments of the preset, such as ``{"layers": 4, "hidden": (64, 64)}``.
        steps: the maximum number of optimizer steps (``None``: :func:`torchnf.fit`'s default, up to 5,000).
        batch_size: rows per step.
        lr: the learning rate.
        validation_fraction: the share of the rows held out for early stopping, in [0, 1) (0: none).
        patience: evaluations without a better validation loss before stopping (``None``: never stop early).
        fit_options: further keyword arguments of :func:`torchnf.fit`, such as ``{"lr_schedule": "cosine"}``,
            ``{"epochs": 20}`` or ``{"weight_decay": 1e-5}``.
        dtype: the flow's floating-point type, ``"float32"`` (the default, as for :class:`~torchnf.flow.Flow`) or
            ``"float64"`` (slower, more precise); scores and samples are returned in float64 either way.
        device: the torch device to fit and score on, such as ``"cpu"`` or ``"cuda"``.
        random_state: seeds the initialization, the validation split and the minibatch order (an int for
            reproducible fits; ``None``: drawn from NumPy's global generator, as in scikit-learn).

    Attributes:
        flow_: the fitted :class:`~torchnf.flow.Flow`.
        history_: the :class:`~torchnf.History` of the fit.
        n_iter_: the optimizer steps taken (layers, for a greedily fitted preset).
        n_features_in_: the number of features seen by ``fit``.
        feature_names_in_: their names, when ``X`` had string column names.

    Example:
        >>> import numpy as np
        >>> from torchnf.sklearn import FlowDensityEstimator
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> density = FlowDensityEstimator(flow_options={"layers": 2, "hidden": (16,)}, steps=50, random_state=0)
        >>> density = density.fit(X)
        >>> density.score_samples(X[:3]).shape
        (3,)
        >>> bool(-3.2 < density.score(X) < -2.6)  # a standard normal's mean log-density is -2.84 in 2D
        True
        >>> density.sample(5, random_state=0).shape
        (5, 2)
    """

    def fit(self, X: ArrayLike, y: Any = None) -> FlowDensityEstimator:
        """Fit the flow to the rows of ``X`` of shape ``(n_samples, n_features)``, ``n_samples >= 2``; ``y`` is
        ignored. Returns the estimator."""
        self._fit_flow(X)
        return self

    def score(self, X: ArrayLike, y: Any = None) -> float:
        r"""The mean log-likelihood :math:`\frac1n\sum_i \log p(x_i)` of the rows of ``X`` (nats per row; higher is
        better); ``y`` is ignored."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: int | np.random.RandomState | None = None) -> np.ndarray:
        """Draw ``n_samples`` rows from the fitted flow: an array of shape ``(n_samples, n_features)``, float64.

        ``random_state`` makes the draw reproducible (``None``: seeded from NumPy's global generator); the global
        torch random state is untouched.
        """
        check_is_fitted(self)
        n = _int("n_samples", n_samples)
        with _seeded(_seed(random_state), self.flow_.device):
            samples = self.flow_.sample(n)
        return samples.double().cpu().numpy()


class FlowOutlierDetector(OutlierMixin, _FlowEstimator):
    r"""Density-based outlier detection with a normalizing flow, as a scikit-learn estimator.

    A row is an outlier when it falls outside the density level set that holds the fraction
    :math:`1 - c` of the training rows (Pimentel, Clifton, Clifton and Tarassenko 2014, *A review of novelty
    detection*, Signal Processing 99, section 3). With :math:`s(x) = \log p_\theta(x)` the log-density of the flow
    fitted to the rows :math:`x_1, \dots, x_n` of ``X`` (as :class:`FlowDensityEstimator` fits it) and
    :math:`c` = ``contamination``,

    .. math::

        \text{offset\_} = Q_c\big(s(x_1), \dots, s(x_n)\big), \qquad
        \text{decision\_function}(x) = s(x) - \text{offset\_}, \qquad
        \text{predict}(x) = \begin{cases} +1 & \text{decision\_function}(x) \ge 0 \\ -1 & \text{otherwise,}
        \end{cases}

    where :math:`Q_c` is the empirical :math:`c`-quantile (:func:`numpy.percentile`, linear interpolation), as in
    :class:`sklearn.covariance.EllipticEnvelope` and :class:`sklearn.ensemble.IsolationForest`: ``score_samples``
    is higher for more normal rows, ``decision_function`` is negative for outliers, and about the fraction
    :math:`c` of the training rows is flagged (exactly :math:`\lceil cn \rceil` when the scores are distinct).
    The training rows score higher than new rows drawn from the same distribution, since the flow was fitted to
    them, so new data see somewhat more than the fraction :math:`c` flagged.

    ``contamination`` is a number in (0, 0.5]; ``"auto"`` (IsolationForest's and LocalOutlierFactor's default) is
    not supported: their scores have a scale-free threshold, whereas a log-density shifts with the units of the
    data. The default 0.1 is EllipticEnvelope's. A flow is a density estimate, so this detects rows of low density;
    in high dimensions (images) a flow can give higher density to data unlike its training data (Nalisnick et al.
    2019, *Do deep generative models know what they don't know?*).

    Args:
        flow: the preset name or class (see :class:`FlowDensityEstimator`).
        flow_options: keyword arguments of the preset.
        contamination: the proportion of outliers in the training data, in (0, 0.5].
        steps, batch_size, lr, validation_fraction, patience, fit_options, dtype, device, random_state: as for
            :class:`FlowDensityEstimator`.

    Attributes:
        offset_: the threshold on ``score_samples``: the ``contamination`` quantile of the training rows' scores.
        flow_, history_, n_iter_, n_features_in_, feature_names_in_: as for :class:`FlowDensityEstimator`.

    Example:
        >>> import numpy as np
        >>> from torchnf.sklearn import FlowOutlierDetector
        >>> rng = np.random.default_rng(0)
        >>> X = np.vstack([rng.normal(size=(300, 2)), [[6.0, 6.0]]])
        >>> detector = FlowOutlierDetector(
        ...     flow_options={"layers": 2, "hidden": (16,)}, contamination=0.01, steps=50, random_state=0
        ... ).fit(X)
        >>> detector.predict([[0.0, 0.0], [6.0, 6.0]])
        array([ 1, -1])
    """

    def __init__(
        self,
        flow: str | type[Preset] = "RealNVP",
        flow_options: dict[str, Any] | None = None,
        *,
        contamination: float = 0.1,
        steps: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-3,
        validation_fraction: float = 0.1,
        patience: int | None = 10,
        fit_options: dict[str, Any] | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        super().__init__(
            flow,
            flow_options,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            validation_fraction=validation_fraction,
            patience=patience,
            fit_options=fit_options,
            dtype=dtype,
            device=device,
            random_state=random_state,
        )
        self.contamination = contamination

    def fit(self, X: ArrayLike, y: Any = None) -> FlowOutlierDetector:
        """Fit the flow to the rows of ``X`` and set ``offset_`` from their scores; ``y`` is ignored. Returns the
        estimator."""
        contamination = _contamination(self.contamination)
        X = self._fit_flow(X)
        self.offset_ = float(np.percentile(self._log_density(X), 100.0 * contamination))
        return self

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers, non-negative for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: ArrayLike) -> np.ndarray:
        """+1 for each inlier row of ``X`` (``decision_function >= 0``), -1 for each outlier."""
        return np.where(self.decision_function(X) >= 0, 1, -1)
